//! A SigLIP-style model in Immich's layout served as Immich serves it: the tiny random
//! OpenCLIP model of scripts/make_siglip_fixture.py (tests/fixtures/immich-tiny-siglip: no
//! causal mask, last-position pooling, a head with a bias, context 64, a SentencePiece-style
//! tokenizer padding with `<pad>`, 256-px squash, mean and std 0.5) gives, on both CPU
//! engines, the embeddings Immich's machine-learning service computes
//! (tests/fixtures/golden/siglip_*), through the path the daemon takes. The Hailo path on the
//! same directory is tests/hailo/parity.rs.

mod common;

use common::*;
use hailo_clip::backends::cpu::{CpuImageEncoder, CpuTextEncoder};
use hailo_clip::encoder::{ImageEncoder, TextEncoder};
use hailo_clip::model::{Layout, ModelDir, TextPooling};
use hailo_clip::preprocess::ResizeMode;

fn siglip_dir() -> std::path::PathBuf {
    fixture("immich-tiny-siglip")
}

#[test]
fn a_siglip_directory_is_read_with_its_own_set_up() {
    let dir = ModelDir::open(&siglip_dir()).unwrap();
    assert_eq!(dir.layout, Layout::Immich);
    let m = &dir.manifest;
    assert_eq!(m.context_length, 64);
    assert_eq!(m.image_size, 256);
    assert_eq!(m.resize, ResizeMode::Stretch);
    assert_eq!(m.image_mean, [0.5; 3]);
    assert_eq!(m.image_std, [0.5; 3]);
    assert_eq!(dir.text.pooling, TextPooling::Last);
    let inputs = golden_json("siglip_inputs.json");
    assert_eq!(
        dir.load_tokenizer().unwrap().pad_id() as u64,
        inputs["pad_id"].as_u64().unwrap()
    );
    // The CLIP fixture pools at its end-of-text token.
    let clip = ModelDir::open(&fixture("immich-tiny-random")).unwrap();
    assert_eq!(clip.text.pooling, TextPooling::Argmax);
}

#[test]
fn siglip_text_embeddings_equal_immichs() {
    let model = ModelDir::open(&siglip_dir()).unwrap();
    let tok = model.load_tokenizer().unwrap();
    let inputs = golden_json("siglip_inputs.json");
    let prompts: Vec<String> = serde_json::from_value(inputs["prompts"].clone()).unwrap();
    let golden_ids: ndarray::Array2<i64> =
        ndarray_npy::read_npy(fixture("golden/siglip_text_ids.npy")).unwrap();
    let golden = golden_f32("siglip_text_embeds.npy");
    let pad = tok.pad_id();
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode(p).unwrap()).collect();
    for (i, p) in prompts.iter().enumerate() {
        // Immich pads to the context with <pad>; ours come unpadded.
        let mut row: Vec<u32> = golden_ids.row(i).iter().map(|&x| x as u32).collect();
        while row.last() == Some(&pad) {
            row.pop();
        }
        assert_eq!(ids[i], row, "ids of {p:?}");
    }
    for (name, engine) in cpu_engines() {
        let encoder = CpuTextEncoder::load(&model, &engine, pad).unwrap();
        let ours = encoder.encode_texts(&ids).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let c = cosine(ours.row(i), golden.row(i));
            println!("{name}: {p:?}: cosine {c:.7}");
            assert!(c >= 0.9999, "{name}: {p:?}: cosine {c}");
        }
    }
    // Padding is read (no causal mask): a prompt and a longer one that starts with it differ.
    assert!(cosine(golden.row(0), golden.row(3)) < 0.95);
}

#[test]
fn siglip_image_embeddings_equal_immichs_squashed() {
    let model = ModelDir::open(&siglip_dir()).unwrap();
    let inputs = golden_json("siglip_inputs.json");
    let files: Vec<String> = serde_json::from_value(inputs["images"].clone()).unwrap();
    let golden = golden_f32("siglip_image_embeds.npy");
    for (name, engine) in cpu_engines() {
        let encoder = CpuImageEncoder::load(&model, &engine).unwrap();
        let input = square_input(&encoder);
        assert_eq!((input.size, input.mode), (256, ResizeMode::Stretch));
        let ours = encoder.encode_images(&squares(&input, &files)).unwrap();
        for (i, f) in files.iter().enumerate() {
            let c = cosine(ours.row(i), golden.row(i));
            println!("{name}: {f}: cosine {c:.6}");
            assert!(c >= 0.999, "{name}: {f}: cosine {c}");
        }
    }
    assert!(cosine(golden.row(0), golden.row(3)) < 0.95);
}
