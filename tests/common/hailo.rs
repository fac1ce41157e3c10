//! The Hailo-path tests' helpers: fake devices and HEF files for the HailoRT test double
//! (format in tests/hailo_fake/fake_hailort.cpp), configs pointing at them, the Hailo text
//! assets exported from the tiny checkpoint, and the expected outputs computed independently
//! of the backend from the double's documented transforms and the transformers goldens.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hailo_clip::config::{BackendChoice, Config, DevicePath};
use image::RgbImage;
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;
use tempfile::NamedTempFile;

use super::repo;

/// A golden file written by scripts/make_goldens.py.
pub fn golden(name: &str) -> PathBuf {
    repo().join("tests/fixtures/golden").join(name)
}

/// The text assets exported once per test binary from the tiny random HF CLIP fixture
/// (vocabulary 49408, hidden 32, embedding 32), kept in cargo's target tmp dir.
pub fn text_assets() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hailo-text-assets");
        hailo_clip::backends::hailo::assets::export(
            &repo().join("tests/fixtures/hf-clip-tiny-random"),
            &dir,
        )
        .unwrap();
        dir
    })
}

/// A fake device for the test double: a file whose content is the device's state ("ok" or
/// the HailoRT status creating a VDevice returns), named by its device id. HailoRT device
/// ids hold at most 31 characters, hence a short name in /tmp. Removed when dropped.
pub struct DeviceFile(NamedTempFile);

impl DeviceFile {
    pub fn new(state: &str) -> DeviceFile {
        let file = tempfile::Builder::new()
            .prefix("hcf")
            .tempfile_in("/tmp")
            .unwrap();
        let device = DeviceFile(file);
        device.set(state);
        device
    }

    pub fn set(&self, state: &str) {
        std::fs::write(self.0.path(), state).unwrap();
    }

    /// The value for `hailo.device_id`.
    pub fn id(&self) -> String {
        self.0.path().to_string_lossy().into_owned()
    }
}

/// Output quantization of a fake HEF stream: `None` is float32.
#[derive(Clone, Copy, Debug)]
pub struct Quant {
    pub zp: f32,
    pub scale: f32,
    pub max: f64,
}

pub const IMAGE_SIZE: u32 = 16;
pub const DIM: usize = 32;
pub const IMAGE_QUANT: Quant = Quant {
    zp: 50.0,
    scale: 0.025,
    max: 255.0,
};
pub const TEXT_QUANT: Quant = Quant {
    zp: 32768.0,
    scale: 0.0001,
    max: 65535.0,
};

/// A fake image-encoder HEF: 16×16×3 uint8 in, 32 values out.
pub fn image_hef(dir: &Path, output: &str, extra: &str) -> PathBuf {
    let path = dir.join("image.hef");
    std::fs::write(
        &path,
        format!(
            "hailo-clip-fake-hef 1\ntransform image_channel_means\ninput images {s} {s} 3 uint8 nhwc\noutput {output}\n{extra}",
            s = IMAGE_SIZE
        ),
    )
    .unwrap();
    path
}

pub const IMAGE_OUT_UINT8: &str = "embedding 1 1 32 uint8 nc 50 0.025";
pub const IMAGE_OUT_FLOAT: &str = "embedding 1 1 32 float32 nc";
/// Per-channel quantization (two quant infos): the backend must ask HailoRT for f32.
pub const IMAGE_OUT_PER_CHANNEL: &str = "embedding 1 1 32 uint8 nc 50 0.025 40 0.03";

/// A fake text-encoder HEF: [77, 32] in (natively uint16, so the backend must ask for
/// f32 input), [77, 32] uint16 out.
pub fn text_hef(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("text.hef");
    std::fs::write(
        &path,
        format!(
            "hailo-clip-fake-hef 1\ntransform text_rows\ninput tokens 1 77 32 uint16 nhwc 0 0.001\n\
             output states 1 77 32 uint16 nhwc 32768 0.0001\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// A fake text-encoder HEF whose rows mix every token so far (text_causal_mean), so texts
/// of the same length still get different states: [77, 32] f32 in, [77, 32] f32 out.
pub fn text_hef_causal_mean(dir: &Path) -> PathBuf {
    let path = dir.join("text.hef");
    std::fs::write(
        &path,
        "hailo-clip-fake-hef 1\ntransform text_causal_mean\ninput tokens 1 77 32 float32 nhwc\n\
         output states 1 77 32 float32 nhwc\n",
    )
    .unwrap();
    path
}

/// A config for the Hailo backend on the test double, rooted in `dir`: device node
/// `dir/hailo0`, HEFs `dir/image.hef` and `dir/text.hef` (written by the caller), text
/// assets from [`text_assets`], the CPU model for `text_encoder: cpu` and `auto` fallbacks.
pub fn config(dir: &Path) -> Config {
    std::fs::write(dir.join("hailo0"), "").unwrap();
    let mut c = Config {
        backend: BackendChoice::Hailo,
        ..Config::default()
    };
    c.model.dir = repo().join("assets/models/clip-tiny-random");
    c.performance.inference_threads = 1;
    c.hailo.resources_dir = text_assets().to_path_buf();
    c.hailo.image_hef = dir.join("image.hef");
    c.hailo.text_hef = dir.join("text.hef");
    c.hailo.device_path = DevicePath::Exact(dir.join("hailo0"));
    c.hailo.batch_size = 4;
    c.hailo.timeout_ms = 5_000;
    // The double's encoders are not CLIP, so their answers fail the known-answer self-test;
    // tests of other things serve anyway. tests/hailo/selftest.rs tests the self-test itself.
    c.selftest.enforce = false;
    c
}

fn quantized(v: f64, q: Quant) -> f32 {
    let level = (v / f64::from(q.scale) + f64::from(q.zp))
        .round()
        .clamp(0.0, q.max);
    (level as f32 - q.zp) * q.scale
}

/// What the double's image_channel_means transform gives for `image`, dequantized.
/// The float32 output frame the double writes for `image` (little-endian bytes).
pub fn expected_image_bytes(image: &RgbImage) -> Vec<u8> {
    expected_image(image, None)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

pub fn expected_image(image: &RgbImage, quant: Option<Quant>) -> Vec<f32> {
    let pixels = f64::from(image.width() * image.height());
    let mut mean = [0.0f64; 3];
    for pixel in image.pixels() {
        for c in 0..3 {
            mean[c] += f64::from(pixel[c]);
        }
    }
    for m in &mut mean {
        *m /= pixels;
    }
    (0..DIM)
        .map(|j| {
            let v = mean[j % 3] / 255.0 * ((j % 5) + 1) as f64 - (j % 2) as f64;
            quant.map_or(v as f32, |q| quantized(v, q))
        })
        .collect()
}

/// Rows of the transformers token embedding for the ids in token_embedding_row_ids.json.
pub fn golden_lut_row(id: u32) -> Vec<f32> {
    let ids: Vec<u32> = serde_json::from_str(
        &std::fs::read_to_string(golden("token_embedding_row_ids.json")).unwrap(),
    )
    .unwrap();
    let rows: Array2<f32> = read_npy(golden("token_embedding_rows.npy")).unwrap();
    let index = ids
        .iter()
        .position(|&i| i == id)
        .unwrap_or_else(|| panic!("no golden row for id {id}"));
    rows.row(index).to_vec()
}

/// The text path computed by hand: pad with 0, take the double's text_rows transform at the
/// first EOT (with the padding row, i.e. LUT[0] unless the text fills all 77 tokens),
/// dequantize, then project with the transformers text projection.
pub fn expected_text(ids: &[u32]) -> Vec<f32> {
    let eot_id = hailo_clip::tokenize::EOT_ID;
    let eot = ids.iter().position(|&i| i == eot_id).unwrap();
    let last = if ids.len() == 77 { ids[76] } else { 0 };
    let (eot_row, last_row) = (golden_lut_row(eot_id), golden_lut_row(last));
    let hidden: Vec<f32> = (0..DIM)
        .map(|k| {
            let v = f64::from(eot_row[(k + 1) % DIM])
                + 0.01 * eot as f64
                + 0.5 * f64::from(last_row[k]);
            quantized(v, TEXT_QUANT)
        })
        .collect();
    let projection: Array2<f32> = read_npy(golden("text_projection.npy")).unwrap();
    (0..projection.ncols())
        .map(|j| (0..DIM).map(|k| hidden[k] * projection[[k, j]]).sum())
        .collect()
}

pub fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance,
            "element {i}: {a} vs {e}\nactual {actual:?}\nexpected {expected:?}"
        );
    }
}

pub fn unit(v: &[f32]) -> Vec<f32> {
    let norm = Array1::from(v.to_vec())
        .dot(&Array1::from(v.to_vec()))
        .sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// A 16×16 image whose channels differ, so embeddings of different images point apart.
pub fn test_image(seed: u8) -> RgbImage {
    RgbImage::from_fn(IMAGE_SIZE, IMAGE_SIZE, |x, y| {
        image::Rgb([
            seed.wrapping_mul(37).wrapping_add((x * 7) as u8),
            seed.wrapping_mul(11).wrapping_add((y * 5) as u8),
            seed.wrapping_add((x + y) as u8),
        ])
    })
}

/// The daemon's own start-up path (load, warm up, ready) on `config`: its router, and the
/// service behind it.
pub async fn hailo_app(
    config: &Config,
) -> (axum::Router, std::sync::Arc<hailo_clip::service::Service>) {
    let (service, backend, reason) = hailo_clip::daemon::load_service(config).await.unwrap();
    service.warm_up().await.unwrap();
    let service = std::sync::Arc::new(service);
    let state = hailo_clip::http::AppState::new();
    assert!(state
        .ready
        .set(hailo_clip::http::Ready {
            service: service.clone(),
            backend,
            reason,
        })
        .is_ok());
    (
        hailo_clip::http::router(state, config.limits.max_body_bytes),
        service,
    )
}

/// An answer of the router: its status, Retry-After and JSON body (Null when not JSON).
pub struct Call {
    pub status: axum::http::StatusCode,
    pub retry_after: Option<String>,
    pub body: serde_json::Value,
}

pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> Call {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut builder = axum::http::Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header(axum::http::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(body.map_or_else(axum::body::Body::empty, |b| {
            axum::body::Body::from(b.to_string())
        }))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(axum::http::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Call {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or_default(),
    }
}

/// The text of /metrics.
pub async fn metrics_text(app: &axum::Router) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}
