//! The known-answer self-test through the real service path: test encoders that map each
//! self-test photo and label to chosen vectors prove the pass and fail paths exactly; the
//! bundled random model, once its manifest stops saying so, fails it, and the daemon then
//! refuses READY and answers /health 503 naming the photo; `hailo-clip selftest` prints the
//! same verdict as a table.

mod common;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use image::RgbImage;
use ndarray::Array2;
use serde_json::Value;
use tower::ServiceExt;

use common::*;
use hailo_clip::config::Config;
use hailo_clip::encoder::{Encoder, EncoderError, EncoderInfo, ImageEncoder, TextEncoder};
use hailo_clip::http::router;
use hailo_clip::preprocess::{decode_rgb, resize_square, ResizeMode};
use hailo_clip::service::selftest::{SelfTestOutcome, SelfTestSet};
use hailo_clip::service::{ModelInfo, Service};

const DIM: usize = 8;
const SIZE: u32 = 224;

fn basis(i: usize) -> Vec<f32> {
    (0..DIM).map(|k| if k == i { 1.0 } else { 0.0 }).collect()
}

fn info() -> EncoderInfo {
    EncoderInfo {
        backend: hailo_clip::encoder::Backend::Cpu,
        source: "test encoder".into(),
        reason: String::new(),
        engine: None,
        engine_library: None,
        hailo: None,
    }
}

/// Maps each prepared self-test photo (by its pixels) to a chosen vector; anything else
/// (the warm-up's grey square) to a vector of ones.
struct PhotoEncoder(HashMap<Vec<u8>, Vec<f32>>);

impl Encoder for PhotoEncoder {
    fn embedding_dim(&self) -> usize {
        DIM
    }
    fn max_batch(&self) -> usize {
        8
    }
    fn info(&self) -> EncoderInfo {
        info()
    }
}

impl ImageEncoder for PhotoEncoder {
    fn input_size(&self) -> u32 {
        SIZE
    }
    fn resize_mode(&self) -> ResizeMode {
        ResizeMode::ShortestEdgeCenterCrop
    }
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        let mut out = Array2::ones((images.len(), DIM));
        for (i, image) in images.iter().enumerate() {
            if let Some(v) = self.0.get(image.as_raw()) {
                out.row_mut(i).assign(&ndarray::ArrayView1::from(v));
            }
        }
        Ok(out)
    }
}

/// Maps token-id sequences to chosen vectors; anything else to a vector of ones.
struct LabelEncoder(HashMap<Vec<u32>, Vec<f32>>);

impl Encoder for LabelEncoder {
    fn embedding_dim(&self) -> usize {
        DIM
    }
    fn max_batch(&self) -> usize {
        64
    }
    fn info(&self) -> EncoderInfo {
        info()
    }
}

impl TextEncoder for LabelEncoder {
    fn encode_texts(&self, token_ids: &[Vec<u32>]) -> Result<Array2<f32>, EncoderError> {
        let mut out = Array2::ones((token_ids.len(), DIM));
        for (i, ids) in token_ids.iter().enumerate() {
            if let Some(v) = self.0.get(ids) {
                out.row_mut(i).assign(&ndarray::ArrayView1::from(v));
            }
        }
        Ok(out)
    }
}

/// A service whose photo i embeds as basis vector i and whose label `l` embeds as
/// `label_vector(l)`, with the given logit scale, not marked random.
async fn service(
    config: &Config,
    logit_scale: f32,
    label_vector: impl Fn(&str) -> Vec<f32>,
) -> Arc<Service> {
    let set = SelfTestSet::bundled();
    let photos = set
        .photos
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let rgb = decode_rgb(&p.bytes, 40_000_000).unwrap();
            let square = resize_square(&rgb, SIZE, ResizeMode::ShortestEdgeCenterCrop).unwrap();
            (square.into_raw(), basis(i))
        })
        .collect();
    let tokenizer = tokenizer(config);
    let labels = set
        .labels
        .iter()
        .map(|l| {
            let ids = tokenizer.encode(&set.template.replace("{}", l)).unwrap();
            (ids, label_vector(l))
        })
        .collect();
    let model = ModelInfo {
        name: "chosen-vectors".into(),
        embedding_dim: DIM,
        logit_scale,
        logit_bias: None,
        random_weights: false,
        immich_model: None,
    };
    let service = Service::start(
        Arc::new(PhotoEncoder(photos)),
        Arc::new(LabelEncoder(labels)),
        tokenizer,
        model,
        config,
    )
    .unwrap();
    service.warm_up().await.unwrap();
    Arc::new(service)
}

/// Each photo's expected label gets that photo's basis vector; the distractor its own.
fn right(label: &str) -> Vec<f32> {
    let set = SelfTestSet::bundled();
    let i = set
        .photos
        .iter()
        .position(|p| p.expected == label)
        .unwrap_or(DIM - 1);
    basis(i)
}

fn report(service: &Service) -> hailo_clip::service::selftest::SelfTestReport {
    match service.selftest() {
        SelfTestOutcome::Ran(r) => r,
        other => panic!("the self-test did not run: {other:?}"),
    }
}

async fn health(service: Arc<Service>) -> (StatusCode, Value) {
    let app = router(ready_state(service), 1 << 20);
    let response = app
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn selftest_passes_when_every_photo_gets_its_label() {
    let config = tiny_config();
    let service = service(&config, 100.0, right).await;
    let r = report(&service);
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.results.len(), 4);
    for result in &r.results {
        assert_eq!(result.got, result.expected);
        // Cosine 1 against 0 for the rest, times 100: the runner-up gets e^-100.
        assert!((result.margin - 1.0).abs() < 1e-6, "{r:?}");
    }
    let (status, body) = health(service).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["selftest"], "passed");
    assert_eq!(body["selftest_photos"], 4);
    assert!((body["selftest_smallest_margin"].as_f64().unwrap() - 1.0).abs() < 1e-6);
}

#[tokio::test]
async fn selftest_fails_naming_the_photo_when_labels_are_swapped() {
    let config = tiny_config();
    let swapped = |label: &str| match label {
        "cat" => right("rocket"),
        "rocket" => right("cat"),
        other => right(other),
    };
    let service = service(&config, 100.0, swapped).await;
    let r = report(&service);
    assert!(!r.passed());
    let wrong: Vec<(&str, &str)> = r
        .results
        .iter()
        .filter(|x| !x.passed)
        .map(|x| (x.photo.as_str(), x.got.as_str()))
        .collect();
    assert_eq!(wrong, [("cat.jpg", "rocket"), ("rocket.jpg", "cat")]);
    let (status, body) = health(service.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["selftest"], "failed");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("cat.jpg was classified as \"rocket\" (score 1.000), expected \"cat\"")
            && detail.contains(
                "rocket.jpg was classified as \"cat\" (score 1.000), expected \"rocket\""
            ),
        "{detail}"
    );
    // Wrong answers are not served.
    let app = router(ready_state(service), 1 << 20);
    let response = app
        .oneshot(
            Request::post("/v1/embed/text")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"text": "a cat"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "selftest_failed");
}

#[tokio::test]
async fn selftest_margin_is_enforced_and_enforce_false_serves_with_a_warning() {
    // Logit scale 1: the right label scores e/(e+4), each other 1/(e+4).
    let e = std::f32::consts::E;
    let margin = (e - 1.0) / (e + 4.0);
    let mut config = tiny_config();
    config.selftest.min_margin = 0.3;
    let service1 = service(&config, 1.0, right).await;
    let r = report(&service1);
    assert!(!r.passed());
    for result in &r.results {
        assert_eq!(result.got, result.expected);
        assert!((result.margin - margin).abs() < 1e-5, "{r:?}");
    }
    assert!(r.failure_detail().contains(&format!(
        "cat.jpg was classified as \"cat\" as expected, but only {margin:.3} ahead of the runner-up (selftest.min_margin 0.3)"
    )));

    config.selftest.enforce = false;
    let service2 = service(&config, 1.0, right).await;
    let (status, body) = health(service2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["selftest"], "failed (not enforced)");
    assert!(
        body["warning"]
            .as_str()
            .unwrap()
            .ends_with("serving anyway because selftest.enforce is false"),
        "{body}"
    );
}

#[tokio::test]
async fn selftest_is_skipped_for_random_weights() {
    let config = tiny_config();
    let (image, text) = tiny_encoders(&config);
    let service = service_with(&config, image, text).await;
    assert_eq!(
        service.selftest(),
        SelfTestOutcome::Skipped("random weights")
    );
    let (status, body) = health(service).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["selftest"], "skipped (random weights)");
}

/// The bundled model's files with `random_weights: false` in its manifest.
fn unmarked_random_model(dir: &Path) {
    for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let manifest = dir.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["random_weights"] = Value::Bool(false);
    std::fs::write(&manifest, m.to_string()).unwrap();
}

#[test]
fn daemon_with_wrong_answers_never_says_ready_and_health_names_the_photo() {
    let model = tempfile::tempdir().unwrap();
    unmarked_random_model(model.path());
    let sockets = tempfile::tempdir().unwrap();
    let socket_path = sockets.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let port = free_port();
    let mut child = hailo_clip()
        .arg("--model-dir")
        .arg(model.path())
        .args(["serve", "--port", &port.to_string()])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        assert!(Instant::now() < deadline, "no self-test verdict in /health");
        if let Some((status, body)) = http_get(port, "/health") {
            let v: Value = serde_json::from_str(&body).unwrap();
            if v.get("selftest").is_some() {
                assert_eq!(status, 503, "{body}");
                break v;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["selftest"], "failed");
    assert_eq!(body["model_loaded"], true);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("self-test failed: the model's answers are wrong (")
            && detail.contains(".jpg was classified as")
            && detail.contains("expected"),
        "{detail}"
    );
    // The status that replaces READY arrives; READY never does.
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while !messages
        .iter()
        .any(|m: &String| m.contains("STATUS=unhealthy"))
    {
        assert!(Instant::now() < deadline, "messages: {messages:?}");
        match socket.recv(&mut buf) {
            Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        !messages.iter().any(|m| m.contains("READY=1")),
        "{messages:?}"
    );
    sigterm(&child);
    let status = child.wait().unwrap();
    let log = stderr_log(&mut child);
    assert!(status.success(), "{log}");
    assert!(
        log.contains("self-test failed") && log.contains("not reporting ready"),
        "{log}"
    );
}

#[test]
fn selftest_command_prints_the_table_and_exits_non_zero_on_wrong_answers() {
    let model = tempfile::tempdir().unwrap();
    unmarked_random_model(model.path());
    let out = hailo_clip()
        .arg("--model-dir")
        .arg(model.path())
        .arg("selftest")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("photo") && stdout.contains("expected") && stdout.contains("WRONG"),
        "{stdout}"
    );
    for photo in ["cat.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg"] {
        assert!(stdout.contains(photo), "{stdout}");
    }
    assert!(stderr.contains("the self-test failed"), "{stderr}");

    let out = hailo_clip()
        .arg("--model-dir")
        .arg(tiny_model_dir())
        .arg("selftest")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("self-test skipped (random weights)"),
        "{stdout}"
    );
}
