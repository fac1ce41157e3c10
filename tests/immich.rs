//! Immich's remote machine-learning API, driven exactly as Immich's server drives it
//! (immich-app/immich `server/src/repositories/machine-learning.repository.ts`): `GET /ping`,
//! and `POST /predict` multipart with `entries` and a Blob `image` (filename "blob",
//! application/octet-stream) or a `text` field. The `clip` string must parse to the same
//! vector as /v1/embed/image and /v1/embed/text give for the same input.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::*;
use hailo_clip::http::{immich::Upstream, router, AppState, Ready};

const BOUNDARY: &str = "----immichFormBoundary7MA4YWxkTrZu0gW";
const VISUAL: &str = r#"{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}"#;
const TEXTUAL: &str =
    r#"{"clip":{"textual":{"modelName":"ViT-B-32__openai","options":{"language":"en"}}}}"#;

/// A multipart body as undici's FormData writes Immich's request.
fn form(entries: Option<&str>, image: Option<&[u8]>, text: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut part = |headers: String, content: &[u8]| {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    };
    if let Some(e) = entries {
        part(
            "Content-Disposition: form-data; name=\"entries\"".into(),
            e.as_bytes(),
        );
    }
    if let Some(i) = image {
        part(
            "Content-Disposition: form-data; name=\"image\"; filename=\"blob\"\r\nContent-Type: application/octet-stream".into(),
            i,
        );
    }
    if let Some(t) = text {
        part(
            "Content-Disposition: form-data; name=\"text\"".into(),
            t.as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The bundled model's files, declared compatible with Immich's ViT-B-32__openai (the
/// random weights do not matter here: only that both routes give the same vector).
async fn app(upstream: Option<Upstream>) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let manifest = dir.path().join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["immich_model"] = json!("ViT-B-32__openai");
    std::fs::write(&manifest, m.to_string()).unwrap();
    let mut config = tiny_config();
    config.model.dir = dir.path().to_path_buf();
    let (image, text) = tiny_encoders(&config);
    let service: Arc<_> = service_with(&config, image, text).await;
    // With an API key required, as on a daemon exposed to the network: every request here
    // sends it (`call`), except the one that checks the refusal.
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("{API_KEY}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    config.server.api_keys_file = Some(keys);
    let mut state = AppState::new()
        .with_access(hailo_clip::http::access::Access::from_config(&config.server).unwrap());
    if let Some(u) = upstream {
        state = state.with_immich_upstream(u);
    }
    let _ = state.ready.set(Ready {
        service,
        backend: hailo_clip::encoder::Backend::Cpu,
        reason: "test".into(),
    });
    (router(state, config.limits.max_body_bytes), dir)
}

const API_KEY: &str = "immich-test-key";

async fn call(app: &Router, mut request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    request
        .headers_mut()
        .insert("x-api-key", axum::http::HeaderValue::from_static(API_KEY));
    call_as_sent(app, request).await
}

async fn call_as_sent(app: &Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, content_type, body)
}

async fn predict(app: &Router, body: Vec<u8>) -> (StatusCode, Value) {
    let (status, _, body) = call(
        app,
        Request::post("/predict")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn ping_is_plain_pong() {
    let (app, _dir) = app(None).await;
    let (status, content_type, body) =
        call(&app, Request::get("/ping").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(body, b"pong");
}

#[tokio::test]
async fn predict_image_and_text_equal_the_embed_routes() {
    let (app, _dir) = app(None).await;
    let photo = std::fs::read(fixture("images/chelsea.webp")).unwrap();
    let (status, answer) = predict(&app, form(Some(VISUAL), Some(&photo), None)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The embedding is a JSON string holding the array (pgvector takes it as a literal).
    let literal = answer["clip"].as_str().expect("clip is a string");
    let clip: Vec<f32> = serde_json::from_str(literal).unwrap();
    assert_eq!(
        (
            answer["imageWidth"].as_u64(),
            answer["imageHeight"].as_u64()
        ),
        (Some(451), Some(300))
    );
    let (_, _, body) = call(
        &app,
        Request::post("/v1/embed/image")
            .header("content-type", "application/json")
            .body(Body::from(json!({"image": base64_of(&photo)}).to_string()))
            .unwrap(),
    )
    .await;
    let ours: Value = serde_json::from_slice(&body).unwrap();
    let ours = floats(&ours["embedding"]);
    assert_eq!(clip.len(), ours.len());
    assert!(cosine(&clip, &ours) >= 0.99999, "{}", cosine(&clip, &ours));
    let norm: f32 = clip.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5 && clip.iter().all(|x| x.is_finite()));

    // Text: whitespace collapsed as Immich's ML server does, no template.
    let (status, answer) = predict(
        &app,
        form(Some(TEXTUAL), None, Some("  a photo\n of a   cat ")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.get("imageWidth").is_none());
    let clip: Vec<f32> = serde_json::from_str(answer["clip"].as_str().unwrap()).unwrap();
    let (_, _, body) = call(
        &app,
        Request::post("/v1/embed/text")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"text": "a photo of a cat"}"#))
            .unwrap(),
    )
    .await;
    let ours: Value = serde_json::from_slice(&body).unwrap();
    assert!(cosine(&clip, &floats(&ours["embedding"])) >= 0.99999);

    // An image wins when both come; an org/ prefix and `::` are cleaned like Immich does.
    let entries = r#"{"clip":{"visual":{"modelName":"immich-app/ViT-B-32::openai"}}}"#;
    let (status, both) = predict(&app, form(Some(entries), Some(&photo), Some("a cat"))).await;
    assert_eq!(status, StatusCode::OK, "{both}");
    assert!(both.get("imageWidth").is_some());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn predict_errors_have_immichs_shapes() {
    let (app, _dir) = app(None).await;
    let (status, body) = predict(&app, form(Some(VISUAL), None, None)).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Either image or text must be provided"})
        )
    );
    for entries in [
        "{not json",
        r#"{"clip":{"textual":{}}}"#,
        r#"{"clip":["textual"]}"#,
    ] {
        let (status, body) = predict(&app, form(Some(entries), None, Some("cat"))).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"detail": "Invalid request format."})
            ),
            "{entries}"
        );
    }
    let (status, body) = predict(&app, form(None, None, Some("cat"))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "Invalid request format."})
        )
    );
    // Another CLIP model: refused, naming both, never answered with incompatible vectors.
    let other = r#"{"clip":{"textual":{"modelName":"ViT-L-14__openai"}}}"#;
    let (status, body) = predict(&app, form(Some(other), None, Some("cat"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("ViT-L-14__openai") && detail.contains("ViT-B-32__openai"),
        "{detail}"
    );
    // Faces without an upstream: 501, saying so.
    let faces = r#"{"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":0.7}},"recognition":{"modelName":"buffalo_l"}}}"#;
    let photo = std::fs::read(fixture("images/astronaut.png")).unwrap();
    let (status, body) = predict(&app, form(Some(faces), Some(&photo), None)).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("immich.upstream_url"),
        "{body}"
    );
}

/// A fake immich-machine-learning on 127.0.0.1 that records what it got and answers with
/// a fixed face result.
async fn fake_upstream() -> (String, Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>) {
    let seen: Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>> = Default::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/predict",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let ct = headers["content-type"].to_str().unwrap().to_string();
                record.lock().unwrap().push((ct, body.to_vec()));
                (
                    [("content-type", "application/json")],
                    r#"{"facial-recognition":[{"boundingBox":{"x1":1,"y1":2,"x2":3,"y2":4},"embedding":"[0.5]","score":0.9}],"imageHeight":512,"imageWidth":512}"#,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn non_clip_requests_go_to_the_upstream_unchanged() {
    let (url, seen) = fake_upstream().await;
    let (app, _dir) = app(Some(Upstream::new(
        &url,
        std::time::Duration::from_secs(10),
    )))
    .await;
    let faces = r#"{"facial-recognition":{"detection":{"modelName":"buffalo_l"},"recognition":{"modelName":"buffalo_l"}}}"#;
    let photo = std::fs::read(fixture("images/astronaut.png")).unwrap();
    let sent = form(Some(faces), Some(&photo), None);
    let (status, body) = predict(&app, sent.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["facial-recognition"][0]["score"], 0.9);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].0,
        format!("multipart/form-data; boundary={BOUNDARY}")
    );
    assert_eq!(seen[0].1, sent, "the body was not forwarded unchanged");
    drop(seen);
    // CLIP still runs here.
    let (status, body) = predict(&app, form(Some(TEXTUAL), None, Some("cat"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Immich's client sends no key (immich `server/src/repositories/machine-learning.repository.ts`:
/// a bare `fetch`): with keys required, /predict is refused in FastAPI's shape with
/// WWW-Authenticate, while /ping, which Immich polls for health, stays open.
#[tokio::test]
async fn predict_without_a_key_is_401_in_immichs_shape_and_ping_stays_open() {
    let (app, _dir) = app(None).await;
    let request = Request::post("/predict")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(form(Some(TEXTUAL), None, Some("a cat"))))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("API key"),
        "{body}"
    );
    let (status, _, pong) =
        call_as_sent(&app, Request::get("/ping").body(Body::empty()).unwrap()).await;
    assert_eq!((status, pong.as_slice()), (StatusCode::OK, &b"pong"[..]));
}
