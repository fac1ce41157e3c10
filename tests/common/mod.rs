//! The integration tests' one toolbox: fixture paths, golden arrays, a service built on
//! the bundled tiny model, scratch directories (tempfile), HTTP to a live daemon (ureq),
//! the `hailo-clip` binary as a child process, and in [`hailo`] the HailoRT test double's
//! fakes. Each test binary uses a different subset.
#![allow(dead_code)]

pub mod hailo;
pub mod standin;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ndarray::{Array2, ArrayView1};

use hailo_clip::config::Config;
use hailo_clip::encoder::{ImageEncoder, TextEncoder};
use hailo_clip::http::{AppState, Ready};
use hailo_clip::service::{ModelInfo, Service};
use hailo_clip::tokenize::TextTokenizer;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture image (tests/fixtures/images/FILE) as base64, for JSON requests.
pub fn image_b64(file: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(fixture(&format!("images/{file}"))).unwrap())
}

pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

pub fn tiny_model_dir() -> PathBuf {
    repo().join("assets/models/clip-tiny-random")
}

pub fn golden_f32(name: &str) -> Array2<f32> {
    let path = fixture(&format!("golden/{name}"));
    ndarray_npy::read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn golden_json(name: &str) -> serde_json::Value {
    let path = fixture(&format!("golden/{name}"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A JSON array of numbers (an embedding in a response) as floats.
pub fn floats(value: &serde_json::Value) -> Vec<f32> {
    let numbers = value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"));
    numbers.iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

pub fn cosine(a: ArrayView1<f32>, b: ArrayView1<f32>) -> f32 {
    a.dot(&b) / (a.dot(&a).sqrt() * b.dot(&b).sqrt())
}

pub fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A config that points at the bundled tiny model.
pub fn tiny_config() -> Config {
    let mut config = Config::default();
    config.model.dir = tiny_model_dir();
    config.backend = hailo_clip::config::BackendChoice::Cpu;
    config
}

pub fn model_info(config: &Config) -> ModelInfo {
    let manifest = hailo_clip::model::ModelDir::open(&config.model.dir)
        .unwrap()
        .manifest;
    ModelInfo {
        name: manifest.name,
        embedding_dim: manifest.embedding_dim,
        logit_scale: config.model.logit_scale.unwrap_or(manifest.logit_scale),
        logit_bias: config.model.logit_bias,
        random_weights: manifest.random_weights,
        immich_model: manifest.immich_model,
    }
}

pub fn tokenizer(config: &Config) -> TextTokenizer {
    TextTokenizer::from_file(&config.model.dir.join("tokenizer.json"), 77).unwrap()
}

/// Starts and warms up a service around the given encoders.
pub async fn service_with(
    config: &Config,
    image: Arc<dyn ImageEncoder>,
    text: Arc<dyn TextEncoder>,
) -> Arc<Service> {
    let service =
        Service::start(image, text, tokenizer(config), model_info(config), config).unwrap();
    service.warm_up().await.unwrap();
    Arc::new(service)
}

/// The tiny model's real CPU encoders.
pub fn tiny_encoders(config: &Config) -> (Arc<dyn ImageEncoder>, Arc<dyn TextEncoder>) {
    let loaded = hailo_clip::backends::load(config).unwrap();
    (loaded.image, loaded.text)
}

/// App state that is ready with `service`.
pub fn ready_state(service: Arc<Service>) -> AppState {
    let state = AppState::new();
    let _ = state.ready.set(Ready {
        service,
        backend: hailo_clip::encoder::Backend::Cpu,
        reason: "test".into(),
    });
    state
}

/// The CPU engines this machine can run: tract always, ONNX Runtime when its library loads
/// (scripts/fetch-onnxruntime.sh puts it where it is found). With
/// HAILO_CLIP_REQUIRE_ONNXRUNTIME=1 (CI sets it) a missing ONNX Runtime fails the test
/// instead of leaving it to tract alone.
pub fn cpu_engines() -> Vec<(&'static str, hailo_clip::backends::cpu::Engine)> {
    let (engines, missing) = hailo_clip::backends::cpu::Engine::available(2);
    if let Some(e) = missing {
        assert!(
            std::env::var_os("HAILO_CLIP_REQUIRE_ONNXRUNTIME").is_none(),
            "ONNX Runtime is required here but did not load: {e}"
        );
        println!("ONNX Runtime is not available ({e}): tract only");
    }
    engines
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hailo-clip-test-")
        .tempdir()
        .unwrap()
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn status_and_body(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Option<(u16, String)> {
    let mut response = response.ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// GET `path` from the daemon on `port`: (status, body), or None when it does not answer
/// within 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    status_and_body(
        agent(Duration::from_secs(5))
            .get(format!("http://127.0.0.1:{port}{path}"))
            .call(),
    )
}

/// POST a JSON `body` to `path`: (status, body). Waits up to 60 s (a request in flight
/// during a shutdown takes its time).
pub fn http_post_json(port: u16, path: &str, body: &str) -> (u16, String) {
    status_and_body(
        agent(Duration::from_secs(60))
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/json")
            .send(body),
    )
    .unwrap_or_else(|| panic!("POST {path} got no response"))
}

/// The `hailo-clip` binary, isolated from any config, model dir or log filter of the
/// machine running the tests. Under emulation it runs through the runner that runs the test
/// (scripts/run-aarch64.sh exports HAILO_CLIP_TEST_RUNNER): a process under qemu-user cannot
/// exec an aarch64 binary itself. The runner execs, so the child's pid is the daemon's.
pub fn hailo_clip() -> Command {
    let binary = env!("CARGO_BIN_EXE_hailo-clip");
    let mut c = match std::env::var_os("HAILO_CLIP_TEST_RUNNER") {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(binary);
            c
        }
        None => Command::new(binary),
    };
    c.env("HAILO_CLIP_CONFIG", repo().join("config/hailo-clip.yaml"))
        .env_remove("HAILO_CLIP_MODEL_DIR")
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM");
    c
}

/// `hailo-clip serve` on the tiny model at `port`, stderr captured.
pub fn spawn_serve(port: u16, envs: &[(&str, String)]) -> Child {
    let mut cmd = hailo_clip();
    cmd.arg("--model-dir")
        .arg(tiny_model_dir())
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// `hailo-clip serve` on the tiny model with `yaml` after a `server:` section naming a free
/// port (so `yaml` may add `server.*` keys, indented, then other sections), once ready.
pub fn serve_with(dir: &std::path::Path, yaml: &str) -> (Child, u16) {
    let port = free_port();
    let config = dir.join("config.yaml");
    std::fs::write(&config, format!("server:\n  port: {port}\n{yaml}")).unwrap();
    let child = spawn_serve(port, &[("HAILO_CLIP_CONFIG", config.display().to_string())]);
    wait_ready(port);
    (child, port)
}

/// The Python with onnx, numpy, onnxruntime and pillow that HAILO_CLIP_DOUBLE_PYTHON names
/// (scripts/test.sh makes it with scripts/double-venv.sh); None, said, when it is not set,
/// unless HAILO_CLIP_REQUIRE_DOUBLE_PYTHON is (CI), which fails instead.
pub fn double_python() -> Option<PathBuf> {
    match std::env::var_os("HAILO_CLIP_DOUBLE_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("HAILO_CLIP_REQUIRE_DOUBLE_PYTHON").is_none(),
                "HAILO_CLIP_DOUBLE_PYTHON is not set (scripts/test.sh sets it)"
            );
            eprintln!("HAILO_CLIP_DOUBLE_PYTHON is not set: skipped");
            None
        }
    }
}

/// Waits (up to 60 s) for /health to answer 200 and returns its body.
pub fn wait_ready(port: u16) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = http_get(port, "/health") {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Everything the (exited) child wrote to stderr.
pub fn stderr_log(child: &mut Child) -> String {
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

/// The square input exactly as the service builds it from an encoder.
pub fn square_input(
    encoder: &impl hailo_clip::encoder::ImageEncoder,
) -> hailo_clip::preprocess::SquareInput {
    hailo_clip::preprocess::SquareInput {
        size: encoder.input_size(),
        mode: encoder.resize_mode(),
        interpolation: encoder.interpolation(),
        jpeg_scaled_decode: true,
    }
}

/// The fixture images `files` brought to `input` as the service does.
pub fn squares(
    input: &hailo_clip::preprocess::SquareInput,
    files: &[impl AsRef<str>],
) -> Vec<image::RgbImage> {
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(fixture(f.as_ref())).unwrap();
            input
                .resize(&input.decode(&bytes, 100_000_000).unwrap())
                .unwrap()
        })
        .collect()
}
