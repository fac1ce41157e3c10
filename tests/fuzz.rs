//! Property-based fuzzing on stable Rust (proptest) of every parser that reads outside
//! input: base64 and data-URI image fields, image decoding of mutated JPEG/PNG/WebP (seeded
//! from the fixtures), multipart bodies through the real router, the YAML config,
//! manifest.json and .npy loading. Each must return a typed error for bad input: no panic,
//! no unbounded time or memory (decoding is capped by the pixel limit it is given).
//!
//! CI runs a short round (PROPTEST_CASES unset: the counts below). A longer run:
//!     PROPTEST_CASES=20000 cargo test --release --test fuzz

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use tower::ServiceExt;

use common::*;
use hailo_clip::config::Config;
use hailo_clip::http::extract::decode_image_field;
use hailo_clip::http::router;
use hailo_clip::preprocess::{decode_cost, decode_rgb};

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The fixture photos, the seeds for mutation.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        ["rocket.jpg", "logo.png", "chelsea.webp", "rocket_exif6.jpg"]
            .iter()
            .map(|f| std::fs::read(fixture(&format!("images/{f}"))).unwrap())
            .collect()
    })
}

/// A seed photo with some bytes overwritten, some removed and the tail cut.
fn mutated_image() -> impl Strategy<Value = Vec<u8>> {
    (
        0..4usize,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        any::<prop::sample::Index>(),
        prop::bool::ANY,
    )
        .prop_map(|(seed, edits, cut, truncate)| {
            let mut bytes = seeds()[seed].clone();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()).max(8));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn image_field_parsing_never_panics(text in ".{0,200}") {
        match decode_image_field(&text) {
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e.status.as_u16(), 400 | 415), "{e:?}"),
        }
    }

    #[test]
    fn data_uris_of_any_shape(prefix in "data:[a-z/+.;=-]{0,30},?", payload in "[A-Za-z0-9+/=_ \\n-]{0,64}") {
        let text = format!("{prefix}{payload}");
        match decode_image_field(&text) {
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e.status.as_u16(), 400 | 415), "{e:?}"),
        }
    }

    #[test]
    fn mutated_images_decode_or_fail_typed(bytes in mutated_image()) {
        // 4 MP cap: a mutated header that claims a huge image is refused before decoding.
        let cost = decode_cost(&bytes, 4_000_000);
        match decode_rgb(&bytes, 4_000_000) {
            Ok(image) => {
                prop_assert!(u64::from(image.width()) * u64::from(image.height()) <= 4_000_000);
                prop_assert!(cost.is_ok());
            }
            Err(_) => {}
        }
    }

    #[test]
    fn yaml_config_parses_or_names_the_problem(text in "[a-z_:. \\n0-9{}\\[\\]-]{0,120}") {
        match Config::from_yaml(&text, Path::new("fuzz.yaml")) {
            Ok(c) => prop_assert!(c.validate().is_ok()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn yaml_config_with_real_keys(key in prop::sample::select(vec![
            "server.port", "server.max_connections", "performance.max_batch_size",
            "limits.decode_memory_mb", "selftest.min_margin", "hailo.device_path", "backend"]),
        value in prop::sample::select(vec!["0", "-1", "1e400", "auto", "\"\"", "[]", "{}", "99999999999999999999", "0.5", "~"])) {
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        let text = if field.is_empty() { format!("{section}: {value}\n") } else { format!("{section}:\n  {field}: {value}\n") };
        if let Err(e) = Config::from_yaml(&text, Path::new("fuzz.yaml")) {
            prop_assert!(e.to_string().contains(section), "{e}");
        }
    }

    #[test]
    fn manifest_json_loads_or_fails_typed(text in prop_oneof![
            ".{0,100}",
            "\\{\"format_version\": [0-9]{1,3}, \"name\": \".{0,5}\", \"embedding_dim\": -?[0-9]{1,6}\\}",
        ]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = hailo_clip::model::Manifest::load(&path) {
            prop_assert!(e.to_string().contains("manifest.json"), "{e}");
        }
    }

    #[test]
    fn npy_loading_fails_typed(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
                               cut in any::<prop::sample::Index>()) {
        let mut bytes = npy_seed().clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text_projection.npy");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = hailo_clip::backends::hailo::assets::read_matrix(&path) {
            prop_assert!(e.to_string().contains("text_projection.npy"), "{e}");
        }
    }
}

/// A small valid float32 .npy to mutate.
fn npy_seed() -> &'static Vec<u8> {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.npy");
        ndarray_npy::write_npy(&path, &ndarray::Array2::<f32>::eye(4)).unwrap();
        std::fs::read(path).unwrap()
    })
}

/// A multipart body built from arbitrary parts, some well-formed and some not.
fn multipart_body() -> impl Strategy<Value = Vec<u8>> {
    let part = (
        prop::sample::select(vec![
            "image",
            "prompts",
            "top_k",
            "threshold",
            "template",
            "x",
            "",
        ]),
        prop_oneof![
            ".{0,20}".prop_map(String::into_bytes),
            mutated_image().prop_map(|b| b[..b.len().min(4096)].to_vec()),
        ],
        prop::bool::ANY,
    );
    (prop::collection::vec(part, 0..5), prop::bool::ANY).prop_map(|(parts, close)| {
        let mut body = Vec::new();
        for (name, content, filename) in parts {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(if filename {
                b"\"; filename=\"f\"\r\n\r\n"
            } else {
                b"\"\r\n\r\n"
            });
            body.extend_from_slice(&content);
            body.extend_from_slice(b"\r\n");
        }
        if close {
            body.extend_from_slice(b"--XyZ--\r\n");
        }
        body
    })
}

fn app() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let config = tiny_config();
        let router = rt.block_on(async {
            let (image, text) = tiny_encoders(&config);
            let service: Arc<_> = service_with(&config, image, text).await;
            router(ready_state(service), config.limits.max_body_bytes)
        });
        (rt, router)
    })
}

proptest! {
    #![proptest_config(cases(200))]

    #[test]
    fn multipart_bodies_through_the_router_are_never_a_server_error(
        body in multipart_body(),
        route in prop::sample::select(vec!["/v1/classify", "/v1/embed/image"]),
    ) {
        let (rt, app) = app();
        let status = rt.block_on(async {
            app.clone()
                .oneshot(
                    Request::post(route)
                        .header("content-type", "multipart/form-data; boundary=XyZ")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap()
                .status()
        });
        prop_assert!(status == StatusCode::OK || status.is_client_error(), "{status}");
    }
}
