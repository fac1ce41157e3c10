//! The Hailo path computes the model: on HEFs that run the model directory's own subgraphs,
//! cut where the Model Zoo's HEFs begin and end (scripts/make_double_hefs.py), the Hailo
//! backend (the host's part: tokenizer, lookup table, the row pooled, projection, image
//! format) answers as the CPU backend does on the same directory, within cosine 0.9999, for
//! /v1/embed/text, /v1/embed/image and Immich's /predict.
//!
//! make_double_hefs.py needs Python with onnx: HAILO_CLIP_DOUBLE_PYTHON names it
//! (scripts/test.sh makes target/double-venv and sets it); without it these tests say so and
//! pass, unless HAILO_CLIP_REQUIRE_DOUBLE_PYTHON is set (CI).

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::hailo::*;
use crate::common::standin::copy_dir;
use crate::common::{floats, repo, scratch};
use hailo_clip::config::{BackendChoice, Config, DevicePath};

/// `fixture` copied into `dir`, with the double's HEFs and the Hailo text files in its
/// hailo/hailo10h/, as a pull lays them out.
fn model_with_double_hefs(
    python: &Path,
    fixture: &str,
    name: &str,
    dir: &Path,
    extra: &[&str],
) -> PathBuf {
    // An Immich-layout model is named by its directory.
    let model = dir.join(name);
    copy_dir(&repo().join(fixture), &model);
    let out = std::process::Command::new(python)
        .arg(repo().join("scripts/make_double_hefs.py"))
        .arg(&model)
        .arg(&model)
        .arg("--hailo-clip")
        .arg(env!("CARGO_BIN_EXE_hailo-clip"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_double_hefs.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    model
}

fn configs(model: &Path, dir: &Path) -> (Config, Config) {
    let mut cpu = Config {
        backend: BackendChoice::Cpu,
        ..Config::default()
    };
    cpu.model.dir = model.to_path_buf();
    cpu.performance.inference_threads = 1;
    // Random weights: the known-answer self-test cannot pass (the subject here is parity).
    cpu.selftest.enabled = false;
    let mut hailo = cpu.clone();
    hailo.backend = BackendChoice::Hailo;
    std::fs::write(dir.join("hailo0"), "").unwrap();
    hailo.hailo.device_path = DevicePath::Exact(dir.join("hailo0"));
    hailo.hailo.timeout_ms = 60_000;
    (cpu, hailo)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

const PROMPTS: &[&str] = &[
    "a photo of a cat",
    "A Photo Of A CAT!",
    "a   photo\tof  a   dog ,  maybe...",
    "what's that? (a rocket; or a cup of coffee)",
    "naïve café — 東京 🚀",
];

/// A prompt far longer than the context: both paths truncate it the same way.
fn long_prompt() -> String {
    "a very long description of a garden with many flowers and trees ".repeat(12)
}

fn images() -> Vec<(&'static str, Vec<u8>)> {
    let read = |p: &str| std::fs::read(repo().join(p)).unwrap();
    vec![
        (
            "JPEG 1440-px preview",
            read("tests/fixtures/previews/chelsea_preview.jpg"),
        ),
        (
            "JPEG preview, EXIF 6",
            read("tests/fixtures/previews/rocket_preview_exif6.jpg"),
        ),
        (
            "grey JPEG preview",
            read("tests/fixtures/previews/camera_preview_gray.jpg"),
        ),
        ("PNG", read("tests/fixtures/images/coffee.png")),
        (
            "PNG with alpha",
            read("tests/fixtures/images/chelsea_alpha.png"),
        ),
        ("WebP", read("tests/fixtures/images/chelsea.webp")),
    ]
}

/// Immich's /predict with one multipart part besides `entries`.
async fn predict(app: &axum::Router, entries: Value, part: (&str, &[u8])) -> Vec<f32> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let boundary = "hailoclipparity";
    let mut body = Vec::new();
    let mut field = |name: &str, filename: Option<&str>, data: &[u8]| {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(f) = filename {
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    };
    field("entries", None, entries.to_string().as_bytes());
    let (name, data) = part;
    field(name, (name == "image").then_some("image.jpg"), data);
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/predict")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    let clip: Vec<f32> = serde_json::from_str(answer["clip"].as_str().unwrap()).unwrap();
    clip
}

async fn text_embeddings(app: &axum::Router, texts: &[String]) -> Vec<Vec<f32>> {
    let answer = call(
        app,
        "POST",
        "/v1/embed/text",
        Some(json!({ "text": texts })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect()
}

async fn image_embedding(app: &axum::Router, bytes: &[u8]) -> Vec<f32> {
    let image = base64::engine::general_purpose::STANDARD.encode(bytes);
    let answer = call(
        app,
        "POST",
        "/v1/embed/image",
        Some(json!({ "image": image })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    floats(&answer.body["embedding"])
}

/// Every answer of the Hailo path against the CPU path's; the smallest cosine.
async fn compare(cpu: &axum::Router, hailo: &axum::Router, immich_name: Option<&str>) -> f32 {
    let mut texts: Vec<String> = PROMPTS.iter().map(|p| p.to_string()).collect();
    texts.push(long_prompt());
    let mut worst = 1.0f32;
    let mut seen = Vec::new();
    let (a, b) = (
        text_embeddings(cpu, &texts).await,
        text_embeddings(hailo, &texts).await,
    );
    for ((text, a), b) in texts.iter().zip(&a).zip(&b) {
        let c = cosine(a, b);
        seen.push(format!("text {text:?}: {c:.6}"));
        worst = worst.min(c);
    }
    for (what, bytes) in images() {
        let c = cosine(
            &image_embedding(cpu, &bytes).await,
            &image_embedding(hailo, &bytes).await,
        );
        seen.push(format!("image {what}: {c:.6}"));
        worst = worst.min(c);
    }
    if let Some(name) = immich_name {
        let textual = json!({"clip": {"textual": {"modelName": name}}});
        let visual = json!({"clip": {"visual": {"modelName": name}}});
        for text in [PROMPTS[2].to_string(), long_prompt()] {
            let c = cosine(
                &predict(cpu, textual.clone(), ("text", text.as_bytes())).await,
                &predict(hailo, textual.clone(), ("text", text.as_bytes())).await,
            );
            seen.push(format!("/predict text {:?}: {c:.6}", &text[..20]));
            worst = worst.min(c);
        }
        let (what, bytes) = &images()[0];
        let c = cosine(
            &predict(cpu, visual.clone(), ("image", bytes)).await,
            &predict(hailo, visual, ("image", bytes)).await,
        );
        seen.push(format!("/predict image {what}: {c:.6}"));
        worst = worst.min(c);
    }
    println!("{}", seen.join("\n"));
    worst
}

async fn parity(fixture: &str, immich_name: Option<&str>, extra: &[&str]) -> Option<f32> {
    let python = crate::common::double_python()?;
    let dir = scratch();
    let name = immich_name.unwrap_or("model");
    let model = model_with_double_hefs(&python, fixture, name, dir.path(), extra);
    Some(serve_both_and_compare(&model, dir.path(), immich_name).await)
}

/// `model` served by the CPU backend and by the Hailo backend (both encoders on the
/// device, asserted), from `model.dir` alone; the smallest cosine between their answers.
async fn serve_both_and_compare(model: &Path, dir: &Path, immich_name: Option<&str>) -> f32 {
    let (cpu, hailo) = configs(model, dir);
    let (cpu_app, _) = hailo_app(&cpu).await;
    let (hailo_app_, service) = hailo_app(&hailo).await;
    assert_eq!(
        service.image_encoder().backend,
        hailo_clip::encoder::Backend::Hailo
    );
    assert_eq!(
        service.text_encoder().backend,
        hailo_clip::encoder::Backend::Hailo
    );
    compare(&cpu_app, &hailo_app_, immich_name).await
}

/// Parity on `fixture` within cosine 0.9999 (when the double's Python is there).
async fn assert_parity(fixture: &str, immich_name: Option<&str>, extra: &[&str]) {
    if let Some(worst) = parity(fixture, immich_name, extra).await {
        assert!(worst >= 0.9999, "the smallest cosine is {worst}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_path_on_the_models_own_subgraphs_answers_as_the_cpu_path_immich_layout() {
    assert_parity(
        "tests/fixtures/immich-tiny-random",
        Some("ViT-B-32__openai"),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_path_on_the_models_own_subgraphs_answers_as_the_cpu_path_flat_layout() {
    assert_parity("assets/models/clip-tiny-random", None, &[]).await;
}

/// The same with the HEFs' streams in the Model Zoo's formats (image uint8 in and out, text
/// uint16 in and out, ranges from calibration inputs): what the host's quantization at the
/// boundaries costs. Printed for docs/HAILO.md; the bound is loose, the figure is the point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_path_with_quantized_boundaries_stays_close_to_the_cpu_path() {
    if let Some(worst) = parity(
        "tests/fixtures/immich-tiny-random",
        Some("ViT-B-32__openai"),
        &["--quantize"],
    )
    .await
    {
        println!("quantized boundaries: smallest cosine {worst:.6}");
        assert!(worst >= 0.99, "the smallest cosine is {worst}");
    }
}

/// A SigLIP-style directory (tests/fixtures/immich-tiny-siglip: context 64 padded with
/// `<pad>`, last-position pooling, a head with a bias, 256-px squash): the text HEF gives the
/// last hidden states and the host pools the last row and applies the head with its bias.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_path_on_a_siglip_directory_answers_as_the_cpu_path() {
    assert_parity(
        "tests/fixtures/immich-tiny-siglip",
        Some("ViT-B-32-SigLIP2-256__webli"),
        &[],
    )
    .await;
}

/// The same with the text HEF ending where the Model Zoo's SigLIP text encoders end: the one
/// pooled embedding, the head inside (their postprocessing only L2-normalizes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hailo_path_on_a_siglip_text_hef_that_ends_with_the_head_answers_as_the_cpu_path() {
    assert_parity(
        "tests/fixtures/immich-tiny-siglip",
        Some("ViT-B-32-SigLIP2-256__webli"),
        &["--text-end", "embedding"],
    )
    .await;
}

/// `hailo-clip pull ViT-B-32-SigLIP2-256__webli --hef --arch hailo10h --zoo-version v5.2.0`
/// against the stand-in Hub (the SigLIP fixture under Immich's name) and Model Zoo (the
/// double's HEFs of that fixture under the Zoo's names): both HEFs and the SigLIP text path's
/// files land in the model directory, and `model.dir` alone then serves both encoders on the
/// device, as the CPU path answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pulled_siglip2_model_serves_both_encoders_on_the_device_from_model_dir_alone() {
    let Some(python) = crate::common::double_python() else {
        return;
    };
    let dir = scratch();
    let made = model_with_double_hefs(
        &python,
        "tests/fixtures/immich-tiny-siglip",
        "made",
        dir.path(),
        &[],
    );
    let zoo = dir.path().join("zoo");
    let arch_dir = zoo.join("v5.2.0/hailo10h");
    std::fs::create_dir_all(&arch_dir).unwrap();
    for (made_name, zoo_name) in [
        ("clip_image_encoder", "siglip2_b_32_256_image_encoder"),
        ("clip_text_encoder", "siglip2_b_32_256_text_encoder"),
    ] {
        // The graph the fake HEF runs stays where it was made: the pull fetches HEFs only.
        let made_dir = made.join("hailo/hailo10h");
        let hef = std::fs::read_to_string(made_dir.join(format!("{made_name}.hef")))
            .unwrap()
            .replace(
                &format!("transform onnx {made_name}.onnx"),
                &format!(
                    "transform onnx {}",
                    made_dir.join(format!("{made_name}.onnx")).display()
                ),
            );
        std::fs::write(arch_dir.join(format!("{zoo_name}.hef")), hef).unwrap();
    }
    let hub_root = dir.path().join("hub");
    crate::common::standin::publish_fixture_of(
        &hub_root,
        "immich-app/ViT-B-32-SigLIP2-256__webli",
        "immich-tiny-siglip",
    );
    let hub = crate::common::standin::StandIn::start(&hub_root, Some(&zoo), &[]);
    let model = dir.path().join("models/ViT-B-32-SigLIP2-256__webli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hailo-clip"))
        .args(["pull", "ViT-B-32-SigLIP2-256__webli", "--to"])
        .arg(&model)
        .args(["--hef", "--arch", "hailo10h", "--zoo-version", "v5.2.0"])
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HAILO_CLIP_ZOO_URL", hub.zoo_url())
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<String> = std::fs::read_dir(model.join("hailo/hailo10h"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "clip_tokenizer.json",
            "siglip2_b_32_256_image_encoder.hef",
            "siglip2_b_32_256_text_encoder.hef",
            "text_projection.npy",
            "text_projection_bias.npy",
            "token_embedding_lut.npy",
        ]
    );
    // Only model.dir is set: everything else is found there.
    let worst =
        serve_both_and_compare(&model, dir.path(), Some("ViT-B-32-SigLIP2-256__webli")).await;
    assert!(worst >= 0.9999, "the smallest cosine is {worst}");
}
