//! Immich's model layout served as Immich serves it: a tiny random OpenCLIP model exported as
//! Immich's exporter does (tests/fixtures/immich-tiny-random, scripts/make_immich_fixture.py)
//! gives, on both CPU engines, the embeddings Immich's machine-learning service computes
//! (its text cleaning, tokenizer set-up and resize, run with onnxruntime:
//! tests/fixtures/golden/immich_*), through the same decode → resize → encode and
//! tokenize → encode path the daemon takes. Also: what such a directory is read as, and what
//! is refused with a reason.

mod common;

use std::path::Path;

use common::standin::copy_dir;
use common::*;
use hailo_clip::backends::cpu::{CpuImageEncoder, CpuTextEncoder};
use hailo_clip::encoder::{ImageEncoder, TextEncoder};
use hailo_clip::model::{Layout, ModelDir, PixelInput, TextInputs};
use hailo_clip::preprocess::{ResizeMode, SquareInput};

fn immich_dir() -> std::path::PathBuf {
    fixture("immich-tiny-random")
}

/// A copy of the fixture in a temporary directory called `name`, for edits.
fn copy_of_fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    copy_dir(&immich_dir(), &dst);
    (tmp, dst)
}

#[test]
fn the_layout_is_read_as_immich_reads_it() {
    let dir = ModelDir::open(&immich_dir()).unwrap();
    assert_eq!(dir.layout, Layout::Immich);
    let m = &dir.manifest;
    // No pull record: the directory's name is the model's name, and its Immich name.
    assert_eq!(m.name, "immich-tiny-random");
    assert_eq!(m.immich_model.as_deref(), Some("immich-tiny-random"));
    assert_eq!(m.embedding_dim, 32);
    assert_eq!(m.image_size, 224);
    assert_eq!(m.context_length, 77);
    assert_eq!(m.resize, ResizeMode::Immich);
    assert_eq!(m.logit_scale, 100.0);
    assert!(!m.random_weights);
    assert!(dir.image.batch_of_one && dir.text.batch_of_one);
    assert_eq!(dir.image.pixels, PixelInput::NormalizedF32);
    assert!(matches!(&dir.text.inputs, TextInputs::Ids { name, .. } if name == "text"));
    // Immich's config pads CLIP's BPE with <|endoftext|>.
    assert_eq!(dir.load_tokenizer().unwrap().pad_id(), 49407);
}

/// Unpadded ids: the golden rows up to their first pad (49407 after the BOS).
fn unpadded(row: ndarray::ArrayView1<i64>) -> Vec<u32> {
    let v: Vec<u32> = row.iter().map(|&x| x as u32).collect();
    let end = v.iter().skip(1).position(|&x| x == 49407).unwrap() + 1;
    v[..=end].to_vec()
}

fn check_texts(dir: &Path, which: &str) {
    let model = ModelDir::open(dir).unwrap();
    let tok = model.load_tokenizer().unwrap();
    let inputs = golden_json("immich_inputs.json");
    let prompts: Vec<String> = serde_json::from_value(inputs["prompts"].clone()).unwrap();
    let ids: ndarray::Array2<i64> =
        ndarray_npy::read_npy(fixture(&format!("golden/immich_text_ids_{which}.npy"))).unwrap();
    let golden = golden_f32(&format!("immich_text_embeds_{which}.npy"));
    let ours_ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode(p).unwrap()).collect();
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(ours_ids[i], unpadded(ids.row(i)), "{which}: ids of {p:?}");
    }
    for (name, engine) in cpu_engines() {
        let encoder = CpuTextEncoder::load(&model, &engine, tok.pad_id()).unwrap();
        let ours = encoder.encode_texts(&ours_ids).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let c = cosine(ours.row(i), golden.row(i));
            println!("{name} {which}: {p:?}: cosine {c:.7}");
            assert!(c >= 0.9999, "{name} {which}: {p:?}: cosine {c}");
        }
    }
}

#[test]
fn text_embeddings_equal_immichs_with_canonicalize() {
    check_texts(&immich_dir(), "canonical");
}

#[test]
fn text_embeddings_equal_immichs_without_canonicalize() {
    let (_tmp, dir) = copy_of_fixture("immich-tiny-random");
    let config = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    cfg["text_cfg"]
        .as_object_mut()
        .unwrap()
        .remove("tokenizer_kwargs");
    std::fs::write(&config, cfg.to_string()).unwrap();
    check_texts(&dir, "plain");
}

#[test]
fn image_embeddings_equal_immichs_including_previews() {
    let model = ModelDir::open(&immich_dir()).unwrap();
    let inputs = golden_json("immich_inputs.json");
    let files: Vec<String> = serde_json::from_value(inputs["images"].clone()).unwrap();
    assert!(files.iter().any(|f| f.starts_with("previews/")));
    let golden = golden_f32("immich_image_embeds.npy");
    for (name, engine) in cpu_engines() {
        let encoder = CpuImageEncoder::load(&model, &engine).unwrap();
        let input = square_input(&encoder);
        let squares = squares(&input, &files);
        // More than one image at once: the graph's batch is 1, so they run one by one.
        let ours = encoder.encode_images(&squares).unwrap();
        for (i, f) in files.iter().enumerate() {
            let c = cosine(ours.row(i), golden.row(i));
            println!("{name}: {f}: cosine {c:.6}");
            assert!(c >= 0.999, "{name}: {f}: cosine {c}");
        }
    }
    // Different photos are far apart, so the bound above has teeth.
    assert!(cosine(golden.row(0), golden.row(1)) < 0.95);
}

#[test]
fn everything_else_in_the_directory_is_ignored() {
    let (_tmp, dir) = copy_of_fixture("ViT-B-32__openai");
    for junk in [
        "visual/armnn/model.armnn",
        ".cache/huggingface/download/visual/model.onnx.metadata",
        "textual/rknpu/rk3566/model.rknn",
    ] {
        let path = dir.join(junk);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"junk").unwrap();
    }
    let model = ModelDir::open(&dir).unwrap();
    assert_eq!(model.manifest.name, "ViT-B-32__openai");
}

#[test]
fn what_cannot_be_served_is_refused_with_the_reason() {
    // NLLB needs Immich's language table.
    let (_tmp, dir) = copy_of_fixture("nllb-clip-base-siglip__v1");
    let err = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("nllb-clip-base-siglip__v1") && err.contains("FLORES-200"),
        "{err}"
    );

    // A resampling filter not done as PIL does it.
    let (_tmp, dir) = copy_of_fixture("m");
    let pre = dir.join("visual/preprocess_cfg.json");
    let text = std::fs::read_to_string(&pre)
        .unwrap()
        .replace("bicubic", "nearest");
    std::fs::write(&pre, text).unwrap();
    let err = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(err.contains("interpolation \"nearest\""), "{err}");

    // A text graph of other inputs.
    let (_tmp, dir) = copy_of_fixture("m");
    std::fs::copy(
        immich_dir().join("visual/model.onnx"),
        dir.join("textual/model.onnx"),
    )
    .unwrap();
    let err = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("textual/model.onnx") && err.contains("[\"image\"]"),
        "{err}"
    );

    // A pad token that is not in the vocabulary: refused when the tokenizer loads.
    let (_tmp, dir) = copy_of_fixture("m");
    std::fs::write(
        dir.join("textual/tokenizer_config.json"),
        r#"{"pad_token": "<pad>"}"#,
    )
    .unwrap();
    let err = ModelDir::open(&dir)
        .unwrap()
        .load_tokenizer()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("\"<pad>\""), "{err}");

    // A missing file is named.
    let (_tmp, dir) = copy_of_fixture("m");
    std::fs::remove_file(dir.join("visual/preprocess_cfg.json")).unwrap();
    let err = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(err.contains("visual/preprocess_cfg.json"), "{err}");
}

#[test]
fn a_pull_record_names_the_model() {
    let (_tmp, dir) = copy_of_fixture("whatever-the-dir-is-called");
    std::fs::write(
        dir.join("hailo-clip-pull.json"),
        serde_json::json!({
            "format_version": 1, "name": "ViT-B-32__openai", "repo": "immich-app/ViT-B-32__openai",
            "revision": "main", "commit": "0123456789abcdef0123456789abcdef01234567",
            "endpoint": "https://huggingface.co", "files": []
        })
        .to_string(),
    )
    .unwrap();
    let model = ModelDir::open(&dir).unwrap();
    assert_eq!(model.manifest.name, "ViT-B-32__openai");
    assert_eq!(
        model.manifest.immich_model.as_deref(),
        Some("ViT-B-32__openai")
    );
}

/// `POST /predict` as Immich's server sends it: multipart `entries` and `text` or a Blob
/// `image` (tests/immich.rs has the full protocol).
fn predict(port: u16, entries: &str, text: Option<&str>, image: Option<&[u8]>) -> (u16, String) {
    const B: &str = "----immichLayoutBoundary";
    let mut body = Vec::new();
    let mut part = |headers: &str, content: &[u8]| {
        body.extend_from_slice(format!("--{B}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    };
    part(
        "Content-Disposition: form-data; name=\"entries\"",
        entries.as_bytes(),
    );
    if let Some(t) = text {
        part(
            "Content-Disposition: form-data; name=\"text\"",
            t.as_bytes(),
        );
    }
    if let Some(i) = image {
        part(
            "Content-Disposition: form-data; name=\"image\"; filename=\"blob\"\r\nContent-Type: application/octet-stream",
            i,
        );
    }
    body.extend_from_slice(format!("--{B}--\r\n").as_bytes());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent
        .post(format!("http://127.0.0.1:{port}/predict"))
        .header("content-type", format!("multipart/form-data; boundary={B}"))
        .send(&body[..])
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

#[test]
fn an_immich_cache_directory_is_served_as_it_is_under_its_name() {
    let dir = immich_dir();
    let before = std::fs::read_dir(dir.join("visual")).unwrap().count();
    let scratch = scratch();
    // Random weights fail the known-answer self-test: serving anyway shows the rest.
    let config = scratch.path().join("c.yaml");
    std::fs::write(&config, "backend: cpu\nselftest:\n  enforce: false\n").unwrap();
    let port = free_port();
    let mut child = hailo_clip()
        .env("HAILO_CLIP_CONFIG", &config)
        .arg("--model-dir")
        .arg(&dir)
        .args(["serve", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let health = wait_ready(port);
    assert!(
        health.contains("\"model\":\"immich-tiny-random\""),
        "{health}"
    );
    // The known-answer self-test applies to this layout too: random weights fail it, and
    // /health says so.
    assert!(
        health.contains("\"selftest\":\"failed (not enforced)\""),
        "{health}"
    );

    let name = "immich-tiny-random";
    let inputs = golden_json("immich_inputs.json");
    let prompts: Vec<String> = serde_json::from_value(inputs["prompts"].clone()).unwrap();
    let images: Vec<String> = serde_json::from_value(inputs["images"].clone()).unwrap();
    let text_golden = golden_f32("immich_text_embeds_canonical.npy");
    let image_golden = golden_f32("immich_image_embeds.npy");
    let vector = |body: &str| -> ndarray::Array1<f32> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let clip: Vec<f32> = serde_json::from_str(v["clip"].as_str().unwrap()).unwrap();
        ndarray::Array1::from(clip)
    };
    let textual = format!(
        r#"{{"clip":{{"textual":{{"modelName":"{name}","options":{{"language":"en"}}}}}}}}"#
    );
    for i in [1, 2, 4] {
        let (status, body) = predict(port, &textual, Some(&prompts[i]), None);
        assert_eq!(status, 200, "{body}");
        let c = cosine(vector(&body).view(), text_golden.row(i));
        assert!(c >= 0.9999, "{:?}: cosine {c}", prompts[i]);
    }
    let visual = format!(r#"{{"clip":{{"visual":{{"modelName":"{name}"}}}}}}"#);
    let preview = images
        .iter()
        .position(|f| f == "previews/chelsea_preview.jpg")
        .unwrap();
    let bytes = std::fs::read(fixture(&images[preview])).unwrap();
    let (status, body) = predict(port, &visual, None, Some(&bytes));
    assert_eq!(status, 200, "{body}");
    let c = cosine(vector(&body).view(), image_golden.row(preview));
    assert!(c >= 0.999, "preview: cosine {c}");
    // Another model's name is refused, as for any model.
    let (status, body) = predict(
        port,
        r#"{"clip":{"textual":{"modelName":"ViT-B-32__openai"}}}"#,
        Some("a cat"),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ViT-B-32__openai"), "{body}");
    sigterm(&child);
    child.wait().unwrap();
    // Nothing was written into the model directory.
    assert_eq!(
        std::fs::read_dir(dir.join("visual")).unwrap().count(),
        before
    );
    assert!(!dir.join("hailo-clip-pull.json").exists());
}

#[test]
fn the_same_weights_give_the_same_embeddings_in_either_layout() {
    // tests/fixtures/immich-tiny-random-flat holds the Immich fixture's weights in the flat
    // layout (dynamic batch, padded with EOT): batch-of-one runs and cleaning must not change
    // what a clean prompt or an image embeds to.
    let immich = ModelDir::open(&immich_dir()).unwrap();
    let flat = ModelDir::open(&fixture("immich-tiny-random-flat")).unwrap();
    assert_eq!(flat.layout, Layout::Flat);
    let prompts = ["a photo of a cat", "a rocket launch"];
    let (ti, tf) = (
        immich.load_tokenizer().unwrap(),
        flat.load_tokenizer().unwrap(),
    );
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| ti.encode(p).unwrap()).collect();
    assert_eq!(
        ids,
        prompts
            .iter()
            .map(|p| tf.encode(p).unwrap())
            .collect::<Vec<_>>()
    );
    let files = [
        "images/chelsea.png",
        "images/rocket.jpg",
        "previews/coffee_preview.jpg",
    ];
    for (name, engine) in cpu_engines() {
        let a = CpuTextEncoder::load(&immich, &engine, ti.pad_id())
            .unwrap()
            .encode_texts(&ids)
            .unwrap();
        let b = CpuTextEncoder::load(&flat, &engine, tf.pad_id())
            .unwrap()
            .encode_texts(&ids)
            .unwrap();
        for (i, prompt) in prompts.iter().enumerate() {
            let c = cosine(a.row(i), b.row(i));
            assert!(c >= 0.99999, "{name}: {prompt}: cosine {c}");
        }
        let (ei, ef) = (
            CpuImageEncoder::load(&immich, &engine).unwrap(),
            CpuImageEncoder::load(&flat, &engine).unwrap(),
        );
        let input = SquareInput {
            size: 224,
            mode: ResizeMode::Immich,
            interpolation: ei.interpolation(),
            jpeg_scaled_decode: false,
        };
        let squares = squares(&input, &files);
        let (a, b) = (
            ei.encode_images(&squares).unwrap(),
            ef.encode_images(&squares).unwrap(),
        );
        for (i, f) in files.iter().enumerate() {
            let c = cosine(a.row(i), b.row(i));
            assert!(c >= 0.99999, "{name}: {f}: cosine {c}");
        }
    }
}

#[test]
fn raw_rgb_image_graphs_and_id_mask_text_graphs_are_fed_as_immich_feeds_them() {
    // The fixture's weights behind the other inputs Immich's sessions take
    // (tests/fixtures/immich-tiny-variants): u8 [1,S,S,3] raw RGB, and M-CLIP's
    // input_ids + attention_mask.
    let (_tmp, dir) = copy_of_fixture("immich-tiny-variant");
    for graph in ["visual/model.onnx", "textual/model.onnx"] {
        std::fs::copy(fixture("immich-tiny-variants").join(graph), dir.join(graph)).unwrap();
    }
    let model = ModelDir::open(&dir).unwrap();
    assert_eq!(model.image.pixels, PixelInput::RawU8);
    assert!(matches!(model.text.inputs, TextInputs::IdsAndMask { .. }));
    let tok = model.load_tokenizer().unwrap();
    let inputs = golden_json("immich_inputs.json");
    let prompts: Vec<String> = serde_json::from_value(inputs["prompts"].clone()).unwrap();
    let files: Vec<String> = serde_json::from_value(inputs["images"].clone()).unwrap();
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode(p).unwrap()).collect();
    let (text_golden, image_golden) = (
        golden_f32("immich_variant_text_embeds.npy"),
        golden_f32("immich_variant_image_embeds.npy"),
    );
    for (name, engine) in cpu_engines() {
        let texts = CpuTextEncoder::load(&model, &engine, tok.pad_id())
            .unwrap()
            .encode_texts(&ids)
            .unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let c = cosine(texts.row(i), text_golden.row(i));
            assert!(c >= 0.9999, "{name}: {p:?}: cosine {c}");
        }
        let encoder = CpuImageEncoder::load(&model, &engine).unwrap();
        let input = square_input(&encoder);
        let squares = squares(&input, &files);
        let images = encoder.encode_images(&squares).unwrap();
        for (i, f) in files.iter().enumerate() {
            let c = cosine(images.row(i), image_golden.row(i));
            assert!(c >= 0.999, "{name}: {f}: cosine {c}");
        }
    }
}
