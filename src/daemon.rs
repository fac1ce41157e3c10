//! The daemon's life cycle: bind, load the encoders in the background (with /health
//! answering "starting"), warm up with a real inference, serve, and on SIGTERM or SIGINT
//! stop accepting, finish in-flight requests and release the encoders.
//!
//! Under systemd (`Type=notify`) it reports each step: `STATUS=` while loading, `READY=1`
//! only after the warm-up inference succeeded, `WATCHDOG=1` while the engine makes progress,
//! and `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET` those messages go nowhere.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use tokio::sync::watch;

use crate::backends;
use crate::config::Config;
use crate::encoder::{Backend, RANDOM_WEIGHTS_WARNING, TEST_DOUBLE_WARNING};
use crate::http::{self, AppState, Ready};
use crate::service::Service;

/// Loads the encoders and starts the service (workers running, not yet warmed up).
/// An error and its causes on one line, as anyhow's `{:#}` shows them, without repeating
/// a cause the message before it already says: the project's errors name their cause in
/// their own message (so `{}` alone is clear) and also keep it as `source()`.
pub fn report(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

pub async fn load_service(config: &Config) -> anyhow::Result<(Service, Backend, String)> {
    let cfg = config.clone();
    let encoders = tokio::task::spawn_blocking(move || backends::load(&cfg))
        .await
        .map_err(|e| anyhow::anyhow!("model loading crashed: {e}"))??;
    if encoders.model.random_weights {
        tracing::warn!("model {}: {RANDOM_WEIGHTS_WARNING}", encoders.model.name);
    }
    let on_double = [encoders.image.info(), encoders.text.info()]
        .iter()
        .any(|info| info.hailo.as_ref().is_some_and(|h| h.test_double));
    if on_double {
        tracing::warn!("{TEST_DOUBLE_WARNING}");
    }
    let (backend, reason) = (encoders.backend, encoders.reason.clone());
    let mut service = Service::start(
        encoders.image,
        encoders.text,
        encoders.tokenizer,
        encoders.model,
        config,
    )?;
    service.set_reasons(&encoders.reason, &encoders.text_reason);
    Ok((service, backend, reason))
}

/// Tells systemd (when it started us) what is happening; a failure to tell is only logged.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Says what start-up is doing, in /health and to systemd.
fn phase(state: &AppState, text: String) {
    notify(&[NotifyState::Status(&text)]);
    state.set_phase(text);
}

/// Asks the daemon's own listener for /health over loopback, as a client would: true when
/// an HTTP answer (any status) arrives within `within`.
async fn listener_answers(addr: SocketAddr, within: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        head.starts_with(b"HTTP/1.1 ").then_some(())
    };
    matches!(tokio::time::timeout(within, probe).await, Ok(Some(())))
}

/// Pings the systemd watchdog while the daemon can serve: the listener accepts and answers
/// /health at the address it listens on (loopback when that is 0.0.0.0 or ::; any HTTP
/// answer counts, a 403 from `server.allow_from` too), every worker runs, and the queue is
/// either empty or moving. A device recovery is progress, up to `recovery_limit`; a recovery stuck
/// past it is not. Otherwise the pings stop and systemd restarts us.
async fn watchdog(
    state: AppState,
    probe_addr: SocketAddr,
    interval: Duration,
    recovery_limit: Duration,
) {
    let mut last_done = u64::MAX;
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        // Before READY=1 systemd enforces TimeoutStartSec, not the watchdog.
        let Some(ready) = state.ready.get() else {
            continue;
        };
        if !listener_answers(probe_addr, interval.min(Duration::from_secs(2))).await {
            tracing::error!(
                "http://{probe_addr}/health does not answer: withholding the watchdog ping"
            );
            continue;
        }
        let service = &ready.service;
        let health = service.health();
        let stats = service.queue().stats();
        let done = stats.batches_done.load(Ordering::Relaxed);
        let moving = health.queue_depth == 0 || done != last_done;
        last_done = done;
        let stuck_recovering = health
            .device
            .as_ref()
            .and_then(|d| d.recovering_for)
            .is_some_and(|d| d > recovery_limit);
        if stuck_recovering {
            tracing::error!(
                "the Hailo device recovery is stuck past hailo.recovery_max_seconds: withholding the watchdog ping"
            );
        } else if health.workers_alive == health.workers && moving {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(
                "engine is not making progress ({} of {} workers alive, {} jobs waiting): withholding the watchdog ping",
                health.workers_alive,
                health.workers,
                health.queue_depth
            );
        }
    }
}

async fn load_and_warm_up(config: &Config, state: &AppState) -> anyhow::Result<()> {
    phase(
        state,
        format!(
            "loading encoders ({} backend requested)",
            config.backend.as_str()
        ),
    );
    // Log lines carry their facts in the message itself, so `journalctl -u hailo-clip`
    // shows them without asking for the structured fields.
    let found_instead = if config.model.dir == Path::new(crate::config::FLAT_DEFAULT_MODEL_DIR)
        && !Path::new(crate::config::DEFAULT_MODEL_DIR).exists()
    {
        format!(
            "; the default {} is absent, so the flat export at the earlier default",
            crate::config::DEFAULT_MODEL_DIR
        )
    } else {
        String::new()
    };
    tracing::info!(
        "loading encoders (backend: {}, model.dir: {}{found_instead})",
        config.backend.as_str(),
        config.model.dir.display()
    );
    let (service, backend, reason) = load_service(config).await?;
    tracing::info!(
        "encoders loaded: backend {backend} ({reason}); image encoder {} on {}; text encoder {} on {} ({})",
        service.image_encoder().source,
        service.image_encoder().backend,
        service.text_encoder().source,
        service.text_encoder().backend,
        service.text_encoder().reason
    );
    phase(state, format!("warming up ({backend} backend)"));
    let started = std::time::Instant::now();
    service
        .warm_up()
        .await
        .map_err(|e| anyhow::anyhow!("warm-up inference failed: {e}"))?;
    tracing::info!(
        "warm-up inference succeeded in {} ms (self-test included)",
        started.elapsed().as_millis()
    );
    log_selftest(&service);
    let service = Arc::new(service);
    if service.device_status().is_some() {
        let limit = Duration::from_secs(config.hailo.recovery_max_seconds);
        tokio::spawn(supervise_device(service.clone(), limit));
    }
    let _ = state.ready.set(Ready {
        service,
        backend,
        reason,
    });
    Ok(())
}

/// How often the supervisor looks at the device's recovery.
const DEVICE_SUPERVISION: Duration = Duration::from_millis(200);
/// Past `hailo.recovery_max_seconds`, how long a recovery stuck in a call (a teardown or
/// an open that never returns) is given before the daemon exits anyway.
const RECOVERY_SLACK: Duration = Duration::from_secs(30);

/// Hands a re-created device back to serving once it passed the warm-up and the self-test
/// again, and exits non-zero, for systemd to restart the daemon, when a recovery ran past
/// `hailo.recovery_max_seconds`.
async fn supervise_device(service: Arc<Service>, limit: Duration) {
    let mut ticker = tokio::time::interval(DEVICE_SUPERVISION);
    loop {
        ticker.tick().await;
        let Some(status) = service.device_status() else {
            return;
        };
        let stuck = status
            .recovering_for
            .is_some_and(|d| d > limit + RECOVERY_SLACK);
        if status.gave_up || stuck {
            tracing::error!(
                "the Hailo device could not be recovered within hailo.recovery_max_seconds (last fault: {}); exiting for systemd to restart the daemon",
                status.last_fault.as_deref().unwrap_or("unknown")
            );
            notify(&[NotifyState::Status(
                "exiting: the Hailo device could not be recovered",
            )]);
            std::process::exit(1);
        }
        if status.needs_check {
            service.check_recovered_device().await;
        }
    }
}

/// Says how the self-test went: a failure is an error, or with `selftest.enforce: false` a
/// loud warning, naming each photo that came out wrong.
fn log_selftest(service: &Service) {
    use crate::service::selftest::SelfTestOutcome;
    let enforced = service.selftest_enforced();
    match service.selftest() {
        SelfTestOutcome::Ran(report) if report.passed() => tracing::info!(
            "self-test passed: {} photos classified right, smallest margin {:.3}",
            report.results.len(),
            report.smallest_margin()
        ),
        SelfTestOutcome::Ran(report) if enforced => tracing::error!(
            "{}; not reporting ready (selftest.enforce: true)",
            report.failure_detail()
        ),
        SelfTestOutcome::Ran(report) => tracing::warn!(
            "{}; SERVING ANYWAY because selftest.enforce is false: answers may be wrong",
            report.failure_detail()
        ),
        other => tracing::info!("self-test {}", other.summary(enforced)),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Reads `server.api_keys_file` again on every SIGHUP; a file that cannot be used leaves
/// the keys in force, and says why.
async fn reload_keys_on_sighup(access: std::sync::Arc<http::access::Access>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGHUP (API keys will not reload): {e}");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        match access.reload() {
            Ok(0) => tracing::info!("SIGHUP: no server.api_keys_file to reload"),
            Ok(n) => tracing::info!("SIGHUP: {n} API keys in force"),
            Err(e) => tracing::error!("SIGHUP: {e}; the keys in force stay"),
        }
    }
}

/// Runs the daemon until a termination signal; an error means a non-zero exit.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let fd_limit = http::server::raise_fd_limit()
        .map_err(|e| anyhow::anyhow!("cannot read or raise the open-file limit: {e}"))?;
    let max_connections =
        http::server::effective_max_connections(config.server.max_connections, fd_limit);
    if max_connections < config.server.max_connections {
        tracing::warn!(
            "server.max_connections {} lowered to {max_connections}: the open-file limit is {fd_limit} (raise LimitNOFILE)",
            config.server.max_connections
        );
    }
    // Socket activation: systemd holds the socket, so while this process restarts,
    // connections wait in its backlog instead of being refused.
    let (listener, from_systemd) = match http::inherited_listener()? {
        Some(listener) => (listener, true),
        None => (http::bind(addr).await?, false),
    };
    let how = if from_systemd {
        "socket from systemd"
    } else {
        "bound"
    };
    let listening = listener.local_addr()?;
    tracing::info!(
        "listening on http://{listening} ({how}; at most {max_connections} connections, open-file limit {fd_limit})"
    );
    if from_systemd {
        tracing::info!(
            "systemd handed over the socket on {listening}: server.host and server.port ({addr}) are ignored; hailo-clip.socket's ListenStream= decides where the daemon listens"
        );
    }
    let addr = listening;
    let access = http::access::Access::from_config(&config.server)?;
    if access.key_count() > 0 {
        tracing::info!(
            "{} API keys from server.api_keys_file (reloaded on SIGHUP)",
            access.key_count()
        );
    }
    let mut state =
        AppState::new()
            .with_access(access)
            .with_receiving(http::receive::Receiving::new(
                config.limits.receiving_mb,
                config.limits.max_body_bytes,
                Duration::from_millis(config.server.body_timeout_ms),
            ));
    if let Some(marker) = &config.llamacpp.media_marker {
        state = state.with_media_marker(marker);
    }
    if let Some(url) = &config.immich.upstream_url {
        state = state.with_immich_upstream(http::immich::Upstream::new(
            url,
            Duration::from_millis(config.immich.upstream_timeout_ms),
        ));
        tracing::info!("Immich /predict requests that are not CLIP go to {url}");
    }
    let app = http::router(state.clone(), config.limits.max_body_bytes);
    let limits = http::server::ConnectionLimits {
        max_connections,
        header_timeout: Duration::from_millis(config.server.header_timeout_ms),
        shutdown_timeout: Duration::from_millis(config.server.shutdown_timeout_ms),
    };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::server::serve(
        listener,
        app,
        limits,
        state.connections.clone(),
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        },
    ));
    tokio::spawn(reload_keys_on_sighup(state.access.clone()));
    let upkeep_state = state.clone();
    let upkeep = tokio::spawn(crate::metrics::upkeep(
        crate::metrics::UPKEEP_INTERVAL,
        move || {
            let mut all = vec![upkeep_state.metrics.clone()];
            if let Some(ready) = upkeep_state.ready.get() {
                all.push(ready.service.metrics());
            }
            all
        },
    ));

    if let Some(period) = sd_notify::watchdog_enabled() {
        let probe = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            }
            ip if ip.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
            }
            _ => addr,
        };
        let recovery_limit =
            Duration::from_secs(config.hailo.recovery_max_seconds) + RECOVERY_SLACK;
        tokio::spawn(watchdog(state.clone(), probe, period / 2, recovery_limit));
    }

    let signal = termination_signal();
    tokio::pin!(signal);
    let mut load_error = None;
    tokio::select! {
        result = load_and_warm_up(&config, &state) => match result {
            Ok(()) => {
                let healthy = state.ready.get().is_some_and(|r| r.service.health().ready());
                if healthy {
                    tracing::info!("ready: serving on http://{addr}");
                    let status = format!("ready: serving on http://{addr}");
                    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
                } else {
                    // No READY=1: systemd's start times out, and /health says why.
                    notify(&[NotifyState::Status("unhealthy: the self-test failed; see the log or /health")]);
                }
                (&mut signal).await;
            }
            Err(e) => load_error = Some(e),
        },
        _ = &mut signal => {},
    }

    match &load_error {
        // systemctl status shows the last STATUS: make it the reason the start failed.
        Some(e) => notify(&[
            NotifyState::Stopping,
            NotifyState::Status(&format!("failed: {}", report(e))),
        ]),
        None => {
            notify(&[
                NotifyState::Stopping,
                NotifyState::Status("stopping: finishing in-flight requests"),
            ]);
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
        }
    }
    let _ = stop_tx.send(true);
    if let Err(e) = server.await {
        tracing::error!("server task failed: {e}");
    }
    upkeep.abort();
    if let Some(ready) = state.ready.get() {
        // Joining the worker threads blocks: not on a runtime thread.
        let service = ready.service.clone();
        match tokio::task::spawn_blocking(move || service.shutdown()).await {
            Ok(()) => tracing::info!("encoders released"),
            Err(e) => tracing::error!("releasing the encoders failed: {e}"),
        }
    }
    match load_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
