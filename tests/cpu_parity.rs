//! Parity of the CPU engine with Hugging Face transformers on the committed fixtures:
//! tokenizer ids, text embeddings, image preprocessing and image embeddings through the
//! full decode → preprocess → encode path, for both the quick_gelu and the gelu export.

mod common;

use hailo_clip::backends::cpu::Engine;

use common::*;
use hailo_clip::encoder::{ImageEncoder, TextEncoder};
use hailo_clip::model::ModelDir;
use hailo_clip::preprocess::{decode_rgb, normalize_nchw, resize_square, ResizeMode};
use hailo_clip::tokenize::{pad, TextTokenizer, EOT_ID};
use ndarray::{Array2, Array3, Axis};

fn padded(tok: &TextTokenizer, text: &str) -> Vec<u32> {
    pad(&tok.encode(text).unwrap(), 77, EOT_ID)
}

fn check_tokens(tok: &TextTokenizer, which: &str) -> usize {
    let goldens = golden_json("tokens.json");
    let goldens = goldens.as_array().unwrap();
    let mut mismatches = Vec::new();
    for entry in goldens {
        let text = entry["text"].as_str().unwrap();
        let expected: Vec<u32> = serde_json::from_value(entry["ids"].clone()).unwrap();
        if padded(tok, text) != expected {
            mismatches.push(text.to_string());
        }
    }
    assert!(
        mismatches.is_empty(),
        "{which}: {} of {} strings differ from CLIPTokenizerFast: {mismatches:?}",
        mismatches.len(),
        goldens.len()
    );
    goldens.len()
}

#[test]
fn tokenizer_matches_transformers_on_varied_strings() {
    let tok = TextTokenizer::from_file(&tiny_model_dir().join("tokenizer.json"), 77).unwrap();
    let n = check_tokens(&tok, "bundled tokenizer.json");
    assert!(n >= 200, "only {n} golden strings");
    // Long prompts are truncated to 77 with EOT kept last.
    let long = "cat ".repeat(200);
    let ids = tok.encode(&long).unwrap();
    assert_eq!(ids.len(), 77);
    assert_eq!((ids[0], ids[76]), (49406, 49407));
    assert_eq!(tok.encode("").unwrap(), vec![49406, 49407]);
}

#[test]
fn openai_reference_tokenizer_gives_the_same_ids() {
    // ../shared/clip-tokenizer holds OpenAI's tokenizer as shipped with the checkpoint; the
    // repo's own tokenizer is rebuilt from a registry package and must agree with it.
    let shared = repo().join("../shared/clip-tokenizer/tokenizer.json");
    if !shared.exists() {
        // A plain checkout has no ../shared; CI has it (.ci/run checks).
        println!(
            "skipped: {} is absent, so the cross-check with OpenAI's tokenizer cannot run",
            shared.display()
        );
        return;
    }
    let tok = TextTokenizer::from_file(&shared, 77).unwrap();
    check_tokens(&tok, "shared tokenizer.json");
}

#[test]
fn text_embeddings_match_transformers() {
    for (name, engine) in cpu_engines() {
        println!("engine {name}:");
        text_embeddings_match_transformers_on(&engine);
    }
}

fn text_embeddings_match_transformers_on(engine: &Engine) {
    let dir = ModelDir::open(&tiny_model_dir()).unwrap();
    let tok = TextTokenizer::from_file(&dir.tokenizer(), 77).unwrap();
    let encoder = hailo_clip::backends::cpu::CpuTextEncoder::load(&dir, engine, EOT_ID).unwrap();
    let prompts: Vec<String> = serde_json::from_value(golden_json("text_prompts.json")).unwrap();
    let golden_ids: Array2<i64> =
        ndarray_npy::read_npy(fixture("golden/text_input_ids.npy")).unwrap();
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode(p).unwrap()).collect();
    for (i, seq) in ids.iter().enumerate() {
        let expected: Vec<u32> = golden_ids.row(i).iter().map(|&v| v as u32).collect();
        assert_eq!(pad(seq, 77, EOT_ID), expected, "ids of prompt {i}");
    }
    let ours = encoder.encode_texts(&ids).unwrap();
    let golden = golden_f32("text_embeds.npy");
    let diff = max_abs_diff(&ours, &golden);
    println!(
        "text embeddings: {} prompts, max abs diff {diff:.2e}",
        prompts.len()
    );
    assert!(diff <= 1e-4, "max abs diff {diff}");
    // One at a time gives the same rows as the batch.
    let single = encoder.encode_texts(&ids[2..3]).unwrap();
    assert!(max_abs_diff(&single, &golden.slice(ndarray::s![2..3, ..]).to_owned()) <= 1e-4);
}

fn prepared(file: &str, size: u32) -> image::RgbImage {
    let bytes = std::fs::read(fixture(&format!("images/{file}"))).unwrap();
    let rgb = decode_rgb(&bytes, 100_000_000).unwrap();
    resize_square(&rgb, size, ResizeMode::ShortestEdgeCenterCrop).unwrap()
}

#[test]
fn preprocessing_matches_clip_image_processor() {
    let dir = ModelDir::open(&tiny_model_dir()).unwrap();
    let m = &dir.manifest;
    for stem in ["chelsea", "camera", "logo", "chelsea_alpha"] {
        let golden: Array3<f32> =
            ndarray_npy::read_npy(fixture(&format!("golden/pixel_values_{stem}.npy"))).unwrap();
        let ours = normalize_nchw(
            &[prepared(&format!("{stem}.png"), 224)],
            m.image_mean,
            m.image_std,
        );
        let ours = ours.index_axis(Axis(0), 0);
        // Differences in uint8 levels: PIL and fast_image_resize round their fixed-point
        // bicubic slightly differently, so most values agree exactly and a few by a level.
        let mut levels = Vec::with_capacity(ours.len());
        for c in 0..3 {
            let scale = m.image_std[c] * 255.0;
            for (a, b) in ours
                .index_axis(Axis(0), c)
                .iter()
                .zip(golden.index_axis(Axis(0), c).iter())
            {
                levels.push(((a - b).abs() * scale).round() as u32);
            }
        }
        let max = *levels.iter().max().unwrap();
        let mean = levels.iter().sum::<u32>() as f32 / levels.len() as f32;
        let within_one = levels.iter().filter(|&&l| l <= 1).count() as f32 / levels.len() as f32;
        println!(
            "pixel_values {stem}: max {max} levels, mean {mean:.3} levels, within one level {:.4}%",
            within_one * 100.0
        );
        assert!(max <= 4, "{stem}: max {max} levels");
        assert!(mean < 0.25, "{stem}: mean {mean} levels");
        assert!(
            within_one >= 0.998,
            "{stem}: only {within_one} within one level"
        );
    }
}

fn check_images(
    engine: &Engine,
    model_dir: &std::path::Path,
    files: &[String],
    golden: &Array2<f32>,
) -> Vec<f32> {
    let dir = ModelDir::open(model_dir).unwrap();
    let encoder = hailo_clip::backends::cpu::CpuImageEncoder::load(&dir, engine).unwrap();
    let images: Vec<_> = files
        .iter()
        .map(|f| prepared(f, dir.manifest.image_size))
        .collect();
    let ours = encoder.encode_images(&images).unwrap();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let c = cosine(ours.row(i), golden.row(i));
            println!("{}: {f}: cosine {c:.6}", dir.manifest.name);
            c
        })
        .collect()
}

#[test]
fn image_embeddings_match_transformers_on_real_photos() {
    let list = golden_json("images.json");
    let files: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_string())
        .collect();
    assert!(files.len() >= 6);
    for (name, engine) in cpu_engines() {
        println!("engine {name}:");
        let cosines = check_images(
            &engine,
            &tiny_model_dir(),
            &files,
            &golden_f32("image_embeds.npy"),
        );
        for (f, c) in files.iter().zip(&cosines) {
            assert!(*c >= 0.999, "{name}: {f}: cosine {c}");
        }
    }
    // Distinct photos are far apart, so the check above has teeth.
    let golden = golden_f32("image_embeds.npy");
    assert!(cosine(golden.row(0), golden.row(1)) < 0.95);
}

#[test]
fn gelu_export_matches_transformers() {
    for (name, engine) in cpu_engines() {
        println!("engine {name}:");
        gelu_export_matches_transformers_on(&engine);
    }
}

fn gelu_export_matches_transformers_on(engine: &Engine) {
    let dir = fixture("clip-tiny-gelu");
    let inputs = golden_json("gelu_inputs.json");
    let files: Vec<String> = serde_json::from_value(inputs["images"].clone()).unwrap();
    for (f, c) in files.iter().zip(check_images(
        engine,
        &dir,
        &files,
        &golden_f32("gelu_image_embeds.npy"),
    )) {
        assert!(c >= 0.999, "gelu {f}: cosine {c}");
    }
    let model = ModelDir::open(&dir).unwrap();
    let encoder = hailo_clip::backends::cpu::CpuTextEncoder::load(&model, engine, EOT_ID).unwrap();
    let ids: Array2<i64> =
        ndarray_npy::read_npy(fixture("golden/gelu_text_input_ids.npy")).unwrap();
    // Unpadded ids: up to and including the first EOT.
    let seqs: Vec<Vec<u32>> = ids
        .rows()
        .into_iter()
        .map(|r| {
            let v: Vec<u32> = r.iter().map(|&x| x as u32).collect();
            let end = v.iter().position(|&x| x == EOT_ID).unwrap();
            v[..=end].to_vec()
        })
        .collect();
    let diff = max_abs_diff(
        &encoder.encode_texts(&seqs).unwrap(),
        &golden_f32("gelu_text_embeds.npy"),
    );
    println!("gelu text embeddings: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "gelu text max abs diff {diff}");
}
