//! Batches formed under load, through the service's queue and workers as the daemon runs
//! them, on the double's costed device (`device_cost`: a job of n frames costs F + n x T,
//! one at a time): concurrent requests share jobs of more than one frame and each gets its
//! own embedding; a lone request is submitted at once, whatever `performance.batch_wait_ms`
//! says; with `hailo.batch_size: 1` every job is one frame and the run is bounded by the
//! batch-1 rate; uncached prompts of concurrent requests share text jobs. Jobs are counted
//! from `hailo_clip_device_jobs_total{network,frames}` in the service's /metrics.
use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::hailo::*;
use crate::common::scratch;
use hailo_clip::config::Config;
use hailo_clip::daemon::load_service;
use hailo_clip::service::Service;

async fn service(config: &Config) -> Arc<Service> {
    let (service, _, _) = load_service(config).await.unwrap();
    service.warm_up().await.unwrap();
    Arc::new(service)
}

/// A config whose image HEF costs `cost` ("F T" in ms) on the double's device, with jobs of
/// up to `batch` frames; the text HEF shares the device at the Model Zoo's text cost.
fn costed(dir: &std::path::Path, cost: &str, batch: u16) -> Config {
    image_hef(
        dir,
        IMAGE_OUT_FLOAT,
        &format!("queue_size {}\ndevice_cost {cost}\n", 2 * batch),
    );
    // Rows that mix every token so far (text_causal_mean), so that prompts of one length
    // still get different embeddings.
    let text = text_hef_causal_mean(dir);
    let hef = std::fs::read_to_string(&text).unwrap();
    std::fs::write(
        &text,
        format!("{hef}queue_size {}\ndevice_cost 11.5 8.66\n", 2 * batch),
    )
    .unwrap();
    let mut config = config(dir);
    config.hailo.batch_size = batch;
    config.performance.max_queue_size = 128;
    config
}

fn png(seed: u8) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    test_image(seed)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// The jobs of `network` submitted so far, by frame count.
fn jobs(service: &Service, network: &str) -> BTreeMap<usize, u64> {
    let text = service.metrics().render();
    let mut jobs = BTreeMap::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("hailo_clip_device_jobs_total{") else {
            continue;
        };
        let (labels, value) = labels.split_once("} ").unwrap();
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_string()
        };
        if label("network") == network {
            jobs.insert(label("frames").parse().unwrap(), value.parse().unwrap());
        }
    }
    jobs
}

/// Jobs submitted between two readings of [`jobs`].
fn since(before: &BTreeMap<usize, u64>, after: &BTreeMap<usize, u64>) -> BTreeMap<usize, u64> {
    after
        .iter()
        .map(|(&frames, &n)| (frames, n - before.get(&frames).copied().unwrap_or(0)))
        .filter(|&(_, n)| n > 0)
        .collect()
}

fn frames(jobs: &BTreeMap<usize, u64>) -> u64 {
    jobs.iter().map(|(&f, &n)| f as u64 * n).sum()
}

/// Embeds `seeds`' images all at once, each request on its own task.
async fn embed_concurrently(service: &Arc<Service>, seeds: &[u8]) -> Vec<Vec<f32>> {
    let tasks: Vec<_> = seeds
        .iter()
        .map(|&seed| {
            let service = service.clone();
            tokio::spawn(async move { service.embed_image(png(seed)).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

fn assert_close(got: &[f32], expected: &[f32], what: &str) {
    let worst = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{what}: off by {worst}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_concurrent_requests_share_jobs_and_each_gets_its_own_embedding() {
    let dir = scratch();
    let config = costed(dir.path(), "20 2", 8);
    let service = service(&config).await;
    let seeds: Vec<u8> = (1..=48).collect();
    let expected: Vec<Vec<f32>> = seeds
        .iter()
        .map(|&s| unit(&expected_image(&test_image(s), None)))
        .collect();
    // The check below can only see a mix-up if the embeddings differ.
    for (i, a) in expected.iter().enumerate() {
        for b in &expected[i + 1..] {
            assert!(a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-3));
        }
    }
    let before = jobs(&service, "image");
    let histogram_before = service.metrics().render();
    let got = embed_concurrently(&service, &seeds).await;
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_close(got, expected, &format!("request {i}'s embedding"));
    }
    let submitted = since(&before, &jobs(&service, "image"));
    println!("image jobs by frames: {submitted:?}");
    assert_eq!(frames(&submitted), 48, "{submitted:?}");
    let largest = *submitted.keys().max().unwrap();
    assert!(largest > 1, "every job carried one frame: {submitted:?}");
    assert!(largest <= 8, "a job exceeded the batch size: {submitted:?}");
    // The batch-size histogram in /metrics says the same: inferences of more than one image.
    let count = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    let after = service.metrics().render();
    let ones = r#"hailo_clip_inference_batch_size_bucket{encoder="image",le="1"}"#;
    let all = r#"hailo_clip_inference_batch_size_count{encoder="image"}"#;
    let (ones, all) = (
        count(&after, ones) - count(&histogram_before, ones),
        count(&after, all) - count(&histogram_before, all),
    );
    assert_eq!(all as u64, submitted.values().sum::<u64>());
    assert!(ones < all, "{ones} of {all} inferences had one image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_lone_request_is_submitted_at_once() {
    let dir = scratch();
    let mut config = costed(dir.path(), "5 1", 8);
    // A part batch may wait up to a second for images on their way; a lone request has
    // none, so it must never wait.
    config.performance.batch_wait_ms = 1_000;
    let service = service(&config).await;
    // After a burst (on the CPU a worker then expects as many again) ...
    embed_concurrently(&service, &(1..=8).collect::<Vec<_>>()).await;
    // ... each lone request goes to the device as a job of one, at once.
    let mut fastest = Duration::MAX;
    for seed in [20u8, 21, 22] {
        let before = jobs(&service, "image");
        let started = Instant::now();
        let got = service.embed_image(png(seed)).await.unwrap();
        let took = started.elapsed();
        assert_close(
            &got,
            &unit(&expected_image(&test_image(seed), None)),
            "lone request",
        );
        assert_eq!(
            since(&before, &jobs(&service, "image")),
            BTreeMap::from([(1, 1)])
        );
        fastest = fastest.min(took);
    }
    // A 6 ms job; a request that waited for a batch would take the whole second, every
    // time. The fastest of three is under it however loaded the machine (no speed target:
    // the bound is the wait itself).
    assert!(fastest < Duration::from_millis(1_000), "{fastest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_batch_of_one_is_bounded_by_the_batch_one_rate() {
    let dir = scratch();
    let config = costed(dir.path(), "10 2", 1);
    let service = service(&config).await;
    let before = jobs(&service, "image");
    let started = Instant::now();
    let seeds: Vec<u8> = (1..=24).collect();
    let got = embed_concurrently(&service, &seeds).await;
    let took = started.elapsed();
    for (seed, got) in seeds.iter().zip(&got) {
        assert_close(
            got,
            &unit(&expected_image(&test_image(*seed), None)),
            "batch-1 request",
        );
    }
    assert_eq!(
        since(&before, &jobs(&service, "image")),
        BTreeMap::from([(1, 24)])
    );
    // 24 jobs of 10 + 2 ms, one at a time: no host can make the device faster.
    assert!(took >= Duration::from_millis(24 * 12), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_uncached_prompts_of_concurrent_requests_share_text_jobs() {
    let dir = scratch();
    let config = costed(dir.path(), "20 2", 8);
    let service = service(&config).await;
    let before = jobs(&service, "text");
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move {
                service
                    .embed_texts(&[format!("prompt number {i}")])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut embeddings = Vec::new();
    for task in tasks {
        embeddings.extend(task.await.unwrap());
    }
    let submitted = since(&before, &jobs(&service, "text"));
    println!("text jobs by frames: {submitted:?}");
    assert_eq!(frames(&submitted), 24, "{submitted:?}");
    assert!(*submitted.keys().max().unwrap() > 1, "{submitted:?}");
    // Each prompt got its own embedding back: what another service (no cache shared) gives
    // each text alone.
    let reference = self::service(&config).await;
    for (i, embedding) in embeddings.iter().enumerate() {
        let alone = reference
            .embed_texts(&[format!("prompt number {i}")])
            .await
            .unwrap();
        assert_close(embedding, &alone[0], &format!("prompt {i}"));
    }
    assert!(embeddings[0]
        .iter()
        .zip(&embeddings[1])
        .any(|(a, b)| (a - b).abs() > 1e-4));
}

/// 8 clients in a closed loop (each sends its next image when its answer comes): while one
/// job runs, the clients of the last one come back, and the job that forms waits for them
/// once the device is free, so jobs carry 8 frames rather than settling into 6 + 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_closed_loop_clients_fill_their_jobs() {
    let dir = scratch();
    let config = costed(dir.path(), "12.5 1.42", 8);
    let service = service(&config).await;
    let before = jobs(&service, "image");
    let clients: Vec<_> = (0..8u8)
        .map(|client| {
            let service = service.clone();
            tokio::spawn(async move {
                for round in 0..12u8 {
                    service.embed_image(png(client * 12 + round)).await.unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let submitted = since(&before, &jobs(&service, "image"));
    println!("image jobs by frames: {submitted:?}");
    assert_eq!(frames(&submitted), 96, "{submitted:?}");
    let in_full_jobs = 8 * submitted.get(&8).copied().unwrap_or(0);
    assert!(
        in_full_jobs * 2 >= 96,
        "fewer than half the frames went in jobs of 8: {submitted:?}"
    );
}
