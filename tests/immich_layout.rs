//! Immich's model layout served as Immich serves it: a tiny random OpenCLIP model exported as
//! Immich's exporter does (tests/fixtures/immich-tiny-random, scripts/make_immich_fixture.py)
//! gives, on both CPU engines, the embeddings Immich's machine-learning service computes
//! (its text cleaning, tokenizer set-up and resize, run with onnxruntime:
//! tests/fixtures/golden/immich_*), through the same decode → resize → encode and
//! tokenize → encode path the daemon takes. Also: what such a directory is read as, and what
//! is refused with a reason.

mod common;

use std::path::Path;

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

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
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
        // The square input exactly as the service builds it from the encoder.
        let input = SquareInput {
            size: encoder.input_size(),
            mode: encoder.resize_mode(),
            interpolation: encoder.interpolation(),
            jpeg_scaled_decode: true,
        };
        let squares: Vec<_> = files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(fixture(f)).unwrap();
                input.resize(&input.decode(&bytes, 100_000_000).unwrap()).unwrap()
            })
            .collect();
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
    assert!(err.contains("nllb-clip-base-siglip__v1") && err.contains("FLORES-200"), "{err}");

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
    assert!(err.contains("textual/model.onnx") && err.contains("[\"image\"]"), "{err}");

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
    assert_eq!(model.manifest.immich_model.as_deref(), Some("ViT-B-32__openai"));
}
