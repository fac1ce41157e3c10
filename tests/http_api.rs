//! The HTTP API end to end on the bundled tiny model (real CPU inference): responses,
//! numbers, every error status, the queue (503 when full, batching, 504 past the deadline),
//! the text cache, and health that follows what the engine really does.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use image::RgbImage;
use ndarray::Array2;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::*;
use hailo_clip::config::Config;
use hailo_clip::encoder::{Encoder, EncoderError, EncoderInfo, ImageEncoder, TextEncoder};
use hailo_clip::http::{router, AppState};
use hailo_clip::preprocess::ResizeMode;
use hailo_clip::service::Service;

/// Wraps a real encoder to observe and steer it: counts calls and batch sizes, can hold
/// inferences at a gate, and can be told to fail.
struct Probe<E: ?Sized> {
    inner: Arc<E>,
    calls: AtomicUsize,
    items: AtomicUsize,
    batches: Mutex<Vec<usize>>,
    fail: AtomicBool,
    gate: Arc<(Mutex<bool>, Condvar)>,
    entered: AtomicUsize,
}

impl<E: ?Sized> Probe<E> {
    fn new(inner: Arc<E>) -> Arc<Self> {
        Arc::new(Probe {
            inner,
            calls: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
            fail: AtomicBool::new(false),
            gate: Arc::new((Mutex::new(true), Condvar::new())),
            entered: AtomicUsize::new(0),
        })
    }
    fn close_gate(&self) {
        *self.gate.0.lock().unwrap() = false;
    }
    fn open_gate(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }
    fn pass(&self, n: usize) -> Result<(), EncoderError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let (lock, cv) = &*self.gate;
        let _open = cv.wait_while(lock.lock().unwrap(), |open| !*open).unwrap();
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.items.fetch_add(n, Ordering::SeqCst);
        self.batches.lock().unwrap().push(n);
        if self.fail.load(Ordering::SeqCst) {
            return Err(EncoderError::failed("injected failure"));
        }
        Ok(())
    }
}

impl Encoder for Probe<dyn ImageEncoder> {
    fn embedding_dim(&self) -> usize {
        self.inner.embedding_dim()
    }
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    fn info(&self) -> EncoderInfo {
        self.inner.info()
    }
}

impl ImageEncoder for Probe<dyn ImageEncoder> {
    fn input_size(&self) -> u32 {
        self.inner.input_size()
    }
    fn resize_mode(&self) -> ResizeMode {
        self.inner.resize_mode()
    }
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        self.pass(images.len())?;
        self.inner.encode_images(images)
    }
}

impl Encoder for Probe<dyn TextEncoder> {
    fn embedding_dim(&self) -> usize {
        self.inner.embedding_dim()
    }
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    fn info(&self) -> EncoderInfo {
        self.inner.info()
    }
}

impl TextEncoder for Probe<dyn TextEncoder> {
    fn encode_texts(&self, ids: &[Vec<u32>]) -> Result<Array2<f32>, EncoderError> {
        self.pass(ids.len())?;
        self.inner.encode_texts(ids)
    }
}

struct Harness {
    app: Router,
    service: Arc<Service>,
    image: Arc<Probe<dyn ImageEncoder>>,
    text: Arc<Probe<dyn TextEncoder>>,
}

async fn harness_with(config: Config) -> Harness {
    let (image, text) = tiny_encoders(&config);
    let image = Probe::new(image);
    let text = Probe::new(text);
    let service = service_with(&config, image.clone(), text.clone()).await;
    let app = router(ready_state(service.clone()), config.limits.max_body_bytes);
    Harness {
        app,
        service,
        image,
        text,
    }
}

async fn harness() -> Harness {
    harness_with(tiny_config()).await
}

fn post_json(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
    (status, headers, body)
}

async fn expect_error(app: &Router, req: Request<Body>, status: u16, code: &str) -> Value {
    let (s, _, body) = send(app, req).await;
    assert_eq!(s.as_u16(), status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().len() > 5,
        "{body}"
    );
    body
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn health_is_ready_only_after_warm_up_and_says_the_model_is_random() {
    let starting = router(AppState::new(), 1 << 20);
    let (status, _, body) = send(
        &starting,
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "starting");
    assert_eq!(body["model_loaded"], false);

    let h = harness().await;
    let (status, _, body) =
        send(&h.app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "hailo-clip");
    assert_eq!(body["model_loaded"], true);
    assert_eq!(body["model"], "clip-tiny-random");
    assert_eq!(body["backend"], "cpu");
    assert_eq!(body["queue_depth"], 0);
    assert_eq!(body["queue_capacity"], 32);
    assert_eq!(body["workers"], 1);
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(body["warning"].as_str().unwrap().contains("RANDOM weights"));
    // Warm-up ran one real image and one real text inference.
    assert_eq!(h.image.calls.load(Ordering::SeqCst), 1);
    assert_eq!(h.text.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn classify_scores_are_softmax_of_scaled_cosines() {
    let h = harness().await;
    let prompts = ["cat", "dog", "car", "teapot"];
    let (status, _, body) = send(
        &h.app,
        post_json(
            "/v1/classify",
            &json!({"image": image_b64("chelsea.png"), "prompts": prompts}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model"], "clip-tiny-random");
    assert!(body["inference_time_ms"].as_f64().unwrap() > 0.0);
    let results = body["classifications"].as_array().unwrap();
    assert_eq!(results.len(), 4);

    // Recompute from the embed endpoints: cosine with the default template, softmax over
    // logit_scale × cosine.
    let (_, _, img) = send(
        &h.app,
        post_json(
            "/v1/embed/image",
            &json!({"image": image_b64("chelsea.png")}),
        ),
    )
    .await;
    let image = floats(&img["embedding"]);
    let texts: Vec<String> = prompts
        .iter()
        .map(|p| format!("a photo of a {p}"))
        .collect();
    let (_, _, txt) = send(&h.app, post_json("/v1/embed/text", &json!({"text": texts}))).await;
    let sims: Vec<f32> = txt["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| dot(&floats(e), &image))
        .collect();
    let scale = model_info(&tiny_config()).logit_scale;
    let exps: Vec<f32> = sims.iter().map(|s| (s * scale).exp()).collect();
    let total: f32 = exps.iter().sum();
    let mut previous = f64::INFINITY;
    for (rank, r) in results.iter().enumerate() {
        let i = prompts.iter().position(|p| *p == r["text"]).unwrap();
        assert_eq!(r["rank"], rank + 1);
        assert!(
            (r["similarity"].as_f64().unwrap() as f32 - sims[i]).abs() < 1e-5,
            "{r}"
        );
        assert!(
            (r["score"].as_f64().unwrap() as f32 - exps[i] / total).abs() < 1e-5,
            "{r}"
        );
        assert!(r["score"].as_f64().unwrap() <= previous);
        previous = r["score"].as_f64().unwrap();
    }
    let sum: f64 = results.iter().map(|r| r["score"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5);
    assert_eq!(body["scoring"], "softmax");
    let (_, _, health) = send(&h.app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health["scoring"], "softmax");
}

/// With model.logit_scale and model.logit_bias (SigLIP's trained pair), each prompt is
/// scored on its own: sigmoid(scale × similarity + bias), not a share of 1; `threshold` then
/// keeps the prompts that hold; the response and /health say "sigmoid".
#[tokio::test]
async fn with_a_logit_bias_each_prompt_is_scored_by_the_sigmoid() {
    let mut config = tiny_config();
    let (scale, bias) = (10.0f32, -2.5f32);
    config.model.logit_scale = Some(scale);
    config.model.logit_bias = Some(bias);
    let h = harness_with(config).await;
    let prompts = ["cat", "dog", "car", "teapot"];
    let classify = |threshold: Option<f32>| {
        let mut body = json!({"image": image_b64("chelsea.png"), "prompts": prompts});
        if let Some(t) = threshold {
            body["threshold"] = json!(t);
        }
        post_json("/v1/classify", &body)
    };
    let (status, _, body) = send(&h.app, classify(None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scoring"], "sigmoid");
    let results = body["classifications"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let mut scores = Vec::new();
    for r in results {
        let similarity = r["similarity"].as_f64().unwrap() as f32;
        let expected = 1.0 / (1.0 + (-(scale * similarity + bias)).exp());
        let score = r["score"].as_f64().unwrap() as f32;
        assert!((score - expected).abs() < 1e-4, "{r}: expected {expected}");
        scores.push(score);
    }
    let sum: f32 = scores.iter().sum();
    assert!(
        (sum - 1.0).abs() > 1e-3,
        "sigmoid scores happen to sum to 1: {scores:?}"
    );
    // A threshold between two scores keeps exactly the prompts above it.
    let mut sorted = scores.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let cut = (sorted[1] + sorted[2]) / 2.0;
    let (_, _, kept) = send(&h.app, classify(Some(cut))).await;
    assert_eq!(
        kept["classifications"].as_array().unwrap().len(),
        2,
        "{kept}"
    );
    let (_, _, health) = send(&h.app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health["scoring"], "sigmoid");
}

#[tokio::test]
async fn top_k_threshold_template_and_multipart() {
    let h = harness().await;
    let base = json!({"image": image_b64("coffee.png"), "prompts": ["cup", "cat", "car", "tree", "sky"], "template": "{}"});
    let (_, _, all) = send(&h.app, post_json("/v1/classify", &base)).await;
    let all = all["classifications"].as_array().unwrap().clone();
    assert_eq!(all.len(), 5);

    let mut req = base.clone();
    req["top_k"] = json!(2);
    let (_, _, top) = send(&h.app, post_json("/v1/classify", &req)).await;
    assert_eq!(
        top["classifications"].as_array().unwrap(),
        &all[..2].to_vec()
    );

    // Threshold after softmax: only prompts scoring at least this much stay.
    let cut = all[1]["score"].as_f64().unwrap();
    let mut req = base.clone();
    req["threshold"] = json!(cut);
    let (_, _, kept) = send(&h.app, post_json("/v1/classify", &req)).await;
    assert_eq!(
        kept["classifications"].as_array().unwrap(),
        &all[..2].to_vec()
    );

    // Multipart with the same fields gives the same answer.
    let boundary = "XyZ";
    let mut body = Vec::new();
    let mut part = |name: &str, value: &[u8], file: bool| {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if file {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"c.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
            );
        } else {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    };
    part(
        "image",
        &std::fs::read(fixture("images/coffee.png")).unwrap(),
        true,
    );
    for p in ["cup", "cat", "car", "tree", "sky"] {
        part("prompts", p.as_bytes(), false);
    }
    part("template", b"{}", false);
    part("top_k", b"2", false);
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let req = Request::post("/v1/classify")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let (status, _, multipart) = send(&h.app, req).await;
    assert_eq!(status, StatusCode::OK, "{multipart}");
    assert_eq!(
        multipart["classifications"].as_array().unwrap(),
        &all[..2].to_vec()
    );

    // A data URI works like plain base64.
    let mut req = base.clone();
    req["image"] = json!(format!("data:image/png;base64,{}", image_b64("coffee.png")));
    let (_, _, via_uri) = send(&h.app, post_json("/v1/classify", &req)).await;
    assert_eq!(via_uri["classifications"].as_array().unwrap(), &all);
}

#[tokio::test]
async fn template_list_averages_prompt_embeddings() {
    let h = harness().await;
    let templates = ["a photo of a {}", "a drawing of a {}"];
    let req = json!({"image": image_b64("astronaut.png"), "prompts": ["person", "rocket"], "template": templates});
    let (status, _, body) = send(&h.app, post_json("/v1/classify", &req)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, img) = send(
        &h.app,
        post_json(
            "/v1/embed/image",
            &json!({"image": image_b64("astronaut.png")}),
        ),
    )
    .await;
    let image = floats(&img["embedding"]);
    for r in body["classifications"].as_array().unwrap() {
        let p = r["text"].as_str().unwrap();
        let texts: Vec<String> = templates.iter().map(|t| t.replace("{}", p)).collect();
        let (_, _, e) = send(&h.app, post_json("/v1/embed/text", &json!({"text": texts}))).await;
        let rows: Vec<Vec<f32>> = e["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let mut mean: Vec<f32> = rows[0].iter().zip(&rows[1]).map(|(a, b)| a + b).collect();
        let norm = dot(&mean, &mean).sqrt();
        mean.iter_mut().for_each(|x| *x /= norm);
        assert!((r["similarity"].as_f64().unwrap() as f32 - dot(&mean, &image)).abs() < 1e-5);
    }
}

#[tokio::test]
async fn embeddings_are_unit_length_and_match_transformers() {
    let h = harness().await;
    let (status, _, body) = send(
        &h.app,
        post_json(
            "/v1/embed/image",
            &json!({"image": image_b64("rocket.jpg")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["dimension"], 32);
    assert_eq!(body["model"], "clip-tiny-random");
    let e = floats(&body["embedding"]);
    assert!((dot(&e, &e) - 1.0).abs() < 1e-5);
    let golden = golden_f32("image_embeds.npy");
    let g = golden.row(5).to_vec(); // rocket.jpg
    assert!(dot(&e, &g) / dot(&g, &g).sqrt() > 0.999);

    let (_, _, one) = send(
        &h.app,
        post_json("/v1/embed/text", &json!({"text": "a photo of a cat"})),
    )
    .await;
    assert_eq!(one["dimension"], 32);
    let t = floats(&one["embedding"]);
    let g = golden_f32("text_embeds.npy").row(0).to_vec();
    let gn: Vec<f32> = g.iter().map(|x| x / dot(&g, &g).sqrt()).collect();
    assert!(t.iter().zip(&gn).all(|(a, b)| (a - b).abs() < 1e-4));
}

#[tokio::test]
async fn bad_input_gets_the_right_4xx() {
    let mut config = tiny_config();
    config.limits.max_body_bytes = 200_000;
    config.limits.max_image_pixels = 100_000;
    config.limits.max_prompts = 3;
    config.limits.max_prompt_chars = 20;
    let h = harness_with(config).await;
    let app = &h.app;
    let classify = |body: Value| post_json("/v1/classify", &body);
    let png_b64 = |w: u32, h: u32| {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(w, h)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    };
    let png = png_b64(64, 48);
    let over_pixel_limit = png_b64(401, 300); // 120300 pixels, a small file

    expect_error(
        app,
        classify(json!({"image": "%%%", "prompts": ["a"]})),
        400,
        "invalid_base64",
    )
    .await;
    let bad_json = Request::post("/v1/classify")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"image\": "))
        .unwrap();
    expect_error(app, bad_json, 400, "invalid_json").await;
    let text_plain = Request::post("/v1/classify")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hi"))
        .unwrap();
    expect_error(app, text_plain, 415, "unsupported_media_type").await;
    let gif =
        base64::engine::general_purpose::STANDARD.encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    expect_error(
        app,
        classify(json!({"image": gif, "prompts": ["a"]})),
        415,
        "unsupported_image_format",
    )
    .await;
    let big = "A".repeat(300_000);
    expect_error(
        app,
        classify(json!({"image": big, "prompts": ["a"]})),
        413,
        "payload_too_large",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": []})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["a", "b", "c", "d"]})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["x".repeat(21)]})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["  "]})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["a"], "top_k": 0})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["a"], "threshold": 1.5})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["a"], "template": "no placeholder"})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["a"], "top_k": -1})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(app, classify(json!({"image": png})), 422, "invalid_request").await;
    expect_error(
        app,
        classify(json!({"image": png, "prompts": ["a"], "promts": 1})),
        422,
        "invalid_request",
    )
    .await;
    let body = expect_error(
        app,
        classify(json!({"image": over_pixel_limit, "prompts": ["a"]})),
        422,
        "image_too_large",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("401x300 = 120300 pixels"));
    let corrupt = base64::engine::general_purpose::STANDARD.encode(
        &base64::engine::general_purpose::STANDARD
            .decode(&png)
            .unwrap()[..60],
    );
    expect_error(
        app,
        classify(json!({"image": corrupt, "prompts": ["a"]})),
        400,
        "invalid_image",
    )
    .await;
    expect_error(
        app,
        post_json("/v1/embed/text", &json!({"text": []})),
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        app,
        Request::get("/v2/nothing").body(Body::empty()).unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        app,
        Request::get("/v1/classify").body(Body::empty()).unwrap(),
        405,
        "method_not_allowed",
    )
    .await;

    // None of that reached an encoder after warm-up, and the service is still healthy.
    assert_eq!(h.image.calls.load(Ordering::SeqCst), 1);
    let (status, _, _) = send(app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_503_with_retry_after_and_waiting_images_are_batched() {
    let mut config = tiny_config();
    // Three requests at once: one in the encoder, two waiting; a fourth is refused.
    config.performance.max_queue_size = 3;
    config.performance.max_batch_size = 4;
    let h = harness_with(config).await;
    h.image.close_gate();
    let req = || {
        post_json(
            "/v1/embed/image",
            &json!({"image": image_b64("chelsea.png")}),
        )
    };
    // The first job enters the encoder and is held there.
    let first = tokio::spawn(send_owned(h.app.clone(), req()));
    wait_until(|| h.image.entered.load(Ordering::SeqCst) == 2).await;
    // Two more fill the queue.
    let waiting: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send_owned(h.app.clone(), req())))
        .collect();
    wait_until(|| h.service.queue().depth() == 2).await;
    // Refused at admission, before its body is read.
    let (status, headers, body) = send(&h.app, req()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "queue_full");
    assert_eq!(
        body["error"]["message"],
        "3 requests are already in progress (performance.max_queue_size); retry shortly"
    );
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    let (_, _, health) = send(&h.app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health["queue_depth"], 2);

    h.image.open_gate();
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    for w in waiting {
        assert_eq!(w.await.unwrap().0, StatusCode::OK);
    }
    // warm-up (1), the held job (1), then the two waiting jobs in one inference (2).
    assert_eq!(*h.image.batches.lock().unwrap(), vec![1, 1, 2]);
}

/// A worker holding a part batch waits (up to `performance.batch_wait_ms`) for an image
/// another admitted request is still decoding, or until the batch is as large as the last
/// one; a lone request has nothing on its way and is answered without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_batch_waits_for_images_on_their_way_and_a_lone_one_does_not() {
    let mut config = tiny_config();
    config.performance.batch_wait_ms = 1_000;
    let h = harness_with(config).await;
    let req = || {
        post_json(
            "/v1/embed/image",
            &json!({"image": image_b64("chelsea.png")}),
        )
    };
    let started = std::time::Instant::now();
    let (status, _, _) = send(&h.app, req()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "a lone request waited {:?}",
        started.elapsed()
    );

    // Another request's image is being decoded: counted as on its way.
    let on_its_way = h.service.queue().image_incoming();
    let first = tokio::spawn(send_owned(h.app.clone(), req()));
    // Long after the first image reached the worker, which would have run it alone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let size = h.image.input_size();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = image::RgbImage::from_pixel(size, size, image::Rgb([90, 120, 30]));
    let embedding = h
        .service
        .queue()
        .encode_image(second, deadline, on_its_way)
        .await
        .unwrap();
    assert_eq!(embedding.len(), 32);
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    // warm-up (1), the lone request (1), then both in one inference (2).
    assert_eq!(*h.image.batches.lock().unwrap(), vec![1, 1, 2]);

    // The last batch held 2: a lone image now waits for a second one, as it does when the
    // clients of the last batch send their next images a moment after their answers.
    let third = tokio::spawn(send_owned(h.app.clone(), req()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fourth = image::RgbImage::from_pixel(size, size, image::Rgb([10, 200, 70]));
    let queue = h.service.queue();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    queue
        .encode_image(fourth, deadline, queue.image_incoming())
        .await
        .unwrap();
    assert_eq!(third.await.unwrap().0, StatusCode::OK);
    assert_eq!(*h.image.batches.lock().unwrap(), vec![1, 1, 2, 2]);
    // Nobody else comes: the next lone request waits out batch_wait_ms once, runs alone,
    // and the one after it no longer waits.
    assert_eq!(send(&h.app, req()).await.0, StatusCode::OK);
    let started = std::time::Instant::now();
    assert_eq!(send(&h.app, req()).await.0, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "a lone request waited {:?}",
        started.elapsed()
    );
    assert_eq!(*h.image.batches.lock().unwrap(), vec![1, 1, 2, 2, 1, 1]);
}

/// Uncached prompts of concurrent requests share one text inference, and a prompt another
/// request is already encoding is waited for, not encoded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prompts_are_batched_and_encoded_once() {
    let h = harness().await;
    h.text.close_gate();
    let embed = |text: &'static str| {
        tokio::spawn(send_owned(
            h.app.clone(),
            post_json("/v1/embed/text", &json!({ "text": text })),
        ))
    };
    // "alpha" enters the encoder and is held there.
    let alpha = embed("alpha");
    wait_until(|| h.text.entered.load(Ordering::SeqCst) == 2).await;
    let beta = embed("beta");
    let gamma = embed("gamma");
    wait_until(|| h.service.queue().depth() == 2).await;
    // Another "beta": it waits for the first one's embedding instead of queueing a job.
    let beta_again = embed("beta");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.service.queue().depth(), 2);
    h.text.open_gate();
    let mut answers = Vec::new();
    for task in [alpha, beta, gamma, beta_again] {
        let (status, _, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        answers.push(body["embedding"].clone());
    }
    assert_eq!(answers[1], answers[3]);
    assert_ne!(answers[1], answers[2]);
    // warm-up (1), "alpha" (1), then "beta" and "gamma" in one inference (2).
    assert_eq!(*h.text.batches.lock().unwrap(), vec![1, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_past_its_deadline_is_504() {
    let mut config = tiny_config();
    config.performance.request_timeout_ms = 300;
    let h = harness_with(config).await;
    h.image.close_gate();
    let req = post_json(
        "/v1/embed/image",
        &json!({"image": image_b64("chelsea.png")}),
    );
    let started = std::time::Instant::now();
    let (status, _, body) = send(&h.app, req).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    h.image.open_gate();
}

#[tokio::test]
async fn repeated_prompts_never_reach_the_text_encoder() {
    let h = harness().await;
    let prompts: Vec<String> = (0..40).map(|i| format!("object number {i}")).collect();
    let req = json!({"image": image_b64("chelsea.png"), "prompts": prompts});
    let (status, _, first) = send(&h.app, post_json("/v1/classify", &req)).await;
    assert_eq!(status, StatusCode::OK);
    let texts_after_first = h.text.items.load(Ordering::SeqCst);
    assert_eq!(texts_after_first, 1 + 40); // warm-up + one job with all 40 prompts
    let (_, _, second) = send(&h.app, post_json("/v1/classify", &req)).await;
    assert_eq!(h.text.items.load(Ordering::SeqCst), texts_after_first);
    assert_eq!(first["classifications"], second["classifications"]);
    assert_eq!(h.service.text_cache().stats(), (40, 40));
}

#[tokio::test]
async fn failed_inference_makes_health_unhealthy_until_one_succeeds() {
    let h = harness().await;
    h.image.fail.store(true, Ordering::SeqCst);
    let req = || {
        post_json(
            "/v1/embed/image",
            &json!({"image": image_b64("chelsea.png")}),
        )
    };
    expect_error(&h.app, req(), 500, "inference_failed").await;
    let (status, _, body) =
        send(&h.app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["detail"], "the most recent inference failed");
    h.image.fail.store(false, Ordering::SeqCst);
    let (status, _, _) = send(&h.app, req()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) =
        send(&h.app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

async fn send_owned(app: Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    send(&app, req).await
}

async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn metrics_count_requests_batches_cache_and_queue() {
    let h = harness().await;
    let req = json!({"image": image_b64("chelsea.png"), "prompts": ["cat", "dog"]});
    for _ in 0..2 {
        let (status, _, _) = send(&h.app, post_json("/v1/classify", &req)).await;
        assert_eq!(status, StatusCode::OK);
    }
    expect_error(
        &h.app,
        post_json("/v1/classify", &json!({"image": "%", "prompts": ["a"]})),
        400,
        "invalid_base64",
    )
    .await;
    // An invented method and an unknown path: fixed labels, never the client's words.
    for (method, path) in [("FOO", "/v1/classify"), ("GET", "/no/such/route/42")] {
        let response = h
            .app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(response.status().is_client_error());
    }
    let response = h
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "hailo_clip_http_requests_total{route=\"/v1/classify\",method=\"POST\",status=\"200\"} 2",
        "hailo_clip_http_requests_total{route=\"/v1/classify\",method=\"POST\",status=\"400\"} 1",
        "hailo_clip_http_requests_total{route=\"/v1/classify\",method=\"other\",status=\"405\"} 1",
        "hailo_clip_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 1",
        "hailo_clip_http_request_duration_seconds_count{route=\"/v1/classify\"} 4",
        // warm-up + two classify requests; prompts were encoded once (the second hit the cache)
        "hailo_clip_inference_batch_size_count{encoder=\"image\"} 3",
        "hailo_clip_inference_batch_size_count{encoder=\"text\"} 2",
        "hailo_clip_inference_batch_size_sum{encoder=\"text\"} 3",
        "hailo_clip_inference_seconds_count{encoder=\"image\"} 3",
        // the two request images (the warm-up image is made square, not decoded)
        "hailo_clip_image_decode_seconds_count 2",
        "hailo_clip_image_resize_seconds_count 2",
        "hailo_clip_text_cache_hits_total 2",
        "hailo_clip_text_cache_misses_total 2",
        "hailo_clip_text_cache_entries 2",
        "hailo_clip_queue_depth 0",
        "hailo_clip_queue_capacity 32",
        "hailo_clip_ready 1",
        "hailo_clip_info{version=\"0.1.0\",model=\"clip-tiny-random\",backend=\"cpu\",image_encoder=\"cpu\",text_encoder=\"cpu\",random_weights=\"true\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("FOO") && !text.contains("/no/such"),
        "{text}"
    );
}
