//! The HTTP API on the Hailo backend (HailoRT test double, `cargo test --features
//! hailo-fake hailo`): /health names the backend, device, HailoRT version and HEFs; a busy
//! device gives 503 device_busy with Retry-After and /health follows it back to ok; the
//! embeddings served are the exact Hailo-path ones, L2-normalized.
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::hailo::*;
use crate::common::{floats, scratch};
use hailo_clip::config::Config;
use hailo_clip::daemon::load_service;
use hailo_clip::http::{router, AppState, Ready};

/// The daemon's own start-up path (load, warm up, ready) and its router.
async fn app(config: &Config) -> Router {
    let (service, backend, reason) = load_service(config).await.unwrap();
    service.warm_up().await.unwrap();
    let state = AppState::new();
    assert!(state
        .ready
        .set(Ready {
            service: Arc::new(service),
            backend,
            reason,
        })
        .is_ok());
    router(state, config.limits.max_body_bytes)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut builder = Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, serde_json::from_slice(&bytes).unwrap())
}

fn png(image: &image::RgbImage) -> String {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

fn setup(dir: &Path, control: &Path) -> Config {
    std::fs::write(control, "ok").unwrap();
    image_hef(
        dir,
        IMAGE_OUT_UINT8,
        &format!("control {}\n", control.display()),
    );
    text_hef(dir, "");
    config(dir)
}

#[tokio::test]
async fn hailo_health_reports_backend_device_runtime_and_hefs() {
    let dir = scratch();
    let config = setup(dir.path(), &dir.path().join("control"));
    let app = app(&config).await;
    let (status, _, body) = call(&app, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], "hailo");
    assert!(
        body["backend_reason"]
            .as_str()
            .unwrap()
            .contains("backend: hailo"),
        "{body}"
    );
    for (encoder, hef) in [("image_encoder", "image.hef"), ("text_encoder", "text.hef")] {
        let info = &body[encoder];
        assert_eq!(info["backend"], "hailo", "{body}");
        assert_eq!(info["device_id"], "fake-hailo10h:0", "{body}");
        assert_eq!(info["hailort_version"], "5.2.0", "{body}");
        assert_eq!(info["hef"], hef, "{body}");
        assert_eq!(
            info["source"],
            dir.path().join(hef).display().to_string(),
            "{body}"
        );
    }
    assert_eq!(body["model"], "clip-vit-base-patch32");
    assert_eq!(
        body["text_encoder"]["reason"],
        "hailo.text_encoder: auto and the text HEF and its files loaded"
    );
    // The double's encoders are not CLIP: the self-test fails, and this config serves anyway.
    assert_eq!(body["selftest"], "failed (not enforced)");
    // Health never claims more than is true: the answers come from the test double.
    let warning = body["warning"].as_str().unwrap();
    assert!(
        warning.contains(hailo_clip::encoder::TEST_DOUBLE_WARNING),
        "{warning}"
    );
}

/// scripts/serve-hailo-double.sh's setting: no self-test, and the warning still there.
#[tokio::test]
async fn hailo_double_with_the_selftest_off_says_so() {
    let dir = scratch();
    let mut config = setup(dir.path(), &dir.path().join("control"));
    config.selftest.enabled = false;
    let app = app(&config).await;
    let (status, _, body) = call(&app, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["selftest"], "skipped (selftest.enabled is false)");
    assert_eq!(body["warning"], hailo_clip::encoder::TEST_DOUBLE_WARNING);
}

/// HailoRT 5.1: no text HEF, so /health says the text encoder runs on the CPU, and why.
#[tokio::test]
async fn hailo_health_says_text_runs_on_the_cpu_without_a_text_hef() {
    let dir = scratch();
    let config = setup(dir.path(), &dir.path().join("control"));
    std::fs::remove_file(dir.path().join("text.hef")).unwrap();
    let app = app(&config).await;
    let (status, _, body) = call(&app, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["image_encoder"]["backend"], "hailo");
    assert_eq!(body["text_encoder"]["backend"], "cpu");
    let reason = body["text_encoder"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "hailo.text_encoder: auto and the text encoder cannot run on the device ("
        ) && reason.contains("text.hef"),
        "{reason}"
    );
}

#[tokio::test]
async fn hailo_busy_device_is_503_with_retry_after_and_recovers() {
    let dir = scratch();
    let control = dir.path().join("control");
    let config = setup(dir.path(), &control);
    let app = app(&config).await;
    let image = test_image(9);
    let request = json!({"image": png(&image)});

    std::fs::write(&control, "status HAILO_DEVICE_IN_USE").unwrap();
    let (status, retry_after, body) =
        call(&app, "POST", "/v1/embed/image", Some(request.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "device_busy", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HAILO_DEVICE_IN_USE"),
        "{body}"
    );
    assert!(retry_after.is_some());
    let (status, _, health) = call(&app, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "unhealthy");

    std::fs::write(&control, "ok").unwrap();
    let (status, _, body) = call(&app, "POST", "/v1/embed/image", Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_close(
        &floats(&body["embedding"]),
        &unit(&expected_image(&image, Some(IMAGE_QUANT))),
        1e-6,
    );
    let (status, _, health) = call(&app, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn hailo_device_timeout_fails_the_request_and_the_next_one_succeeds() {
    let dir = scratch();
    let control = dir.path().join("control");
    let mut config = setup(dir.path(), &control);
    config.hailo.timeout_ms = 100;
    let app = app(&config).await;
    let request = json!({"image": png(&test_image(3))});

    std::fs::write(&control, "delay 1500").unwrap();
    let (status, _, body) = call(&app, "POST", "/v1/embed/image", Some(request.clone())).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "device_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HAILO_TIMEOUT"),
        "{body}"
    );

    std::fs::write(&control, "ok").unwrap();
    let (status, _, body) = call(&app, "POST", "/v1/embed/image", Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn hailo_text_embedding_served_is_the_exact_hailo_path() {
    let dir = scratch();
    let config = setup(dir.path(), &dir.path().join("control"));
    let tokenizer = hailo_clip::tokenize::TextTokenizer::from_file(
        &text_assets().join("clip_tokenizer.json"),
        77,
    )
    .unwrap();
    let app = app(&config).await;
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/embed/text",
        Some(json!({"text": "a photo of a cat"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dimension"], DIM);
    // The golden rows cover BOS, EOT and padding; the text path reads only EOT's row and
    // the padding row, so the expected value needs no other id.
    let ids = tokenizer.encode("a photo of a cat").unwrap();
    assert_close(
        &floats(&body["embedding"]),
        &unit(&expected_text(&ids)),
        1e-5,
    );
}
