//! Prometheus metrics: a recorder owned by whoever records (the HTTP layer, the service)
//! rather than a process-wide global, so two services in one process (tests, the CLI) never
//! mix their numbers. `GET /metrics` renders them in the text exposition format.

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Latency buckets from 1 ms to 30 s: a cached-prompt classify on a Hailo is milliseconds,
/// a large CPU batch is seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
            })
            .expect("bucket lists are non-empty constants")
            .build_recorder();
        let handle = recorder.handle();
        Metrics { recorder, handle }
    }

    /// Runs `f` with this recorder receiving the `metrics::` macros it calls.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. Without it they pile up until
    /// the next scrape: about 16 MiB per million samples on a daemon nobody scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// CPU time the calling thread has used: what a step costs the host, whatever else runs
/// beside it (wall time counts the moments the thread waited for a core).
pub fn thread_cpu_time() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is valid for writes; CLOCK_THREAD_CPUTIME_ID exists on every Linux.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if !ok {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// How often [`upkeep`] folds samples: at 1,000 requests/s that is 5,000 samples held.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs [`Metrics::run_upkeep`] on every recorder `recorders` gives, every `every`, forever.
pub async fn upkeep(
    every: std::time::Duration,
    recorders: impl Fn() -> Vec<std::sync::Arc<Metrics>>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        for m in recorders() {
            m.run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_recorders_do_not_mix() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.record(|| metrics::counter!("hailo_clip_test_total", "k" => "v").increment(3));
        a.record(|| metrics::histogram!("hailo_clip_test_seconds").record(0.003));
        assert!(
            a.render().contains("hailo_clip_test_total{k=\"v\"} 3"),
            "{}",
            a.render()
        );
        assert!(
            a.render()
                .contains("hailo_clip_test_seconds_bucket{le=\"0.005\"} 1"),
            "{}",
            a.render()
        );
        assert!(!b.render().contains("hailo_clip_test_total"));
    }
}
