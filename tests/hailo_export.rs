//! `hailo-clip export-text-assets` and the text-asset checks, against the transformers
//! goldens of the tiny random CLIP fixture. Needs no Hailo library, so it runs in every
//! build; the names contain `hailo` so `cargo test hailo` selects them.

mod common;

use common::hailo::{golden, text_assets};
use common::{hailo_clip, repo, scratch};
use hailo_clip::backends::hailo::assets::{
    self, TextAssets, LUT_FILE, PROJECTION_FILE, TOKENIZER_FILE,
};
use ndarray::{Array2, Array3};
use ndarray_npy::{read_npy, write_npy};

fn hf_dir() -> std::path::PathBuf {
    repo().join("tests/fixtures/hf-clip-tiny-random")
}

#[test]
fn hailo_export_text_assets_matches_transformers() {
    let scratch = scratch();
    let out = scratch.path().join("resources");
    let summary = assets::export(&hf_dir(), &out).unwrap();
    assert_eq!(
        (summary.vocabulary, summary.hidden, summary.embedding),
        (49408, 32, 32)
    );
    // transformers' logit_scale_init_value, exponentiated.
    assert!((summary.logit_scale.unwrap() - 2.6592f32.exp()).abs() < 1e-4);

    let lut: Array2<f32> = read_npy(out.join(LUT_FILE)).unwrap();
    assert_eq!(lut.dim(), (49408, 32));
    let ids: Vec<usize> = serde_json::from_str(
        &std::fs::read_to_string(golden("token_embedding_row_ids.json")).unwrap(),
    )
    .unwrap();
    let rows: Array2<f32> = read_npy(golden("token_embedding_rows.npy")).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(lut.row(id), rows.row(i), "LUT row {id}");
    }
    let projection: Array2<f32> = read_npy(out.join(PROJECTION_FILE)).unwrap();
    let expected: Array2<f32> = read_npy(golden("text_projection.npy")).unwrap();
    assert_eq!(projection, expected);

    // hidden @ projection at the EOT row is transformers' text embedding.
    let hidden: Array2<f32> = read_npy(golden("text_eot_hidden.npy")).unwrap();
    let embeds: Array2<f32> = read_npy(golden("text_embeds.npy")).unwrap();
    let ours = hidden.dot(&projection);
    assert!(ours
        .iter()
        .zip(embeds.iter())
        .all(|(a, b)| (a - b).abs() < 1e-5));

    // The tokenizer encodes as transformers does.
    let loaded = TextAssets::load(&out).unwrap();
    let golden_ids: ndarray::Array2<i64> = read_npy(golden("text_input_ids.npy")).unwrap();
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(golden("text_prompts.json")).unwrap())
            .unwrap();
    for (prompt, row) in prompts.iter().zip(golden_ids.rows()).take(6) {
        let ids = loaded.tokenizer.encode(prompt).unwrap();
        let expected: Vec<u32> = row.iter().take(ids.len()).map(|&i| i as u32).collect();
        assert_eq!(ids, expected, "{prompt:?}");
    }
    assert!(out.join(TOKENIZER_FILE).is_file());
}

#[test]
fn hailo_export_text_assets_command_writes_the_files() {
    let scratch = scratch();
    let out = scratch.path().join("cli");
    let result = hailo_clip()
        .args(["export-text-assets", "--hf-dir"])
        .arg(hf_dir())
        .arg("--out")
        .arg(&out)
        // The export reads no config: a broken one must not matter.
        .env("HAILO_CLIP_CONFIG", "/nonexistent/hailo-clip.yaml")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    for file in [TOKENIZER_FILE, LUT_FILE, PROJECTION_FILE] {
        assert!(
            stdout.contains(&out.join(file).display().to_string()),
            "{stdout}"
        );
        assert!(out.join(file).is_file());
    }
    assert!(stdout.contains("text hidden size 32"), "{stdout}");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
}

#[test]
fn hailo_export_names_what_is_missing() {
    let scratch = scratch();
    let dir = scratch.path();
    let err = assets::export(dir, &dir.join("out"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::copy(
        hf_dir().join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let err = assets::export(dir, &dir.join("out"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::write(dir.join("model.safetensors"), b"not safetensors").unwrap();
    std::fs::copy(hf_dir().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let err = assets::export(dir, &dir.join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("not a safetensors file"),
        "{err}"
    );
}

#[test]
fn hailo_text_assets_errors_name_the_file() {
    let good = text_assets();
    let copy = || {
        let dir = scratch();
        for file in [TOKENIZER_FILE, LUT_FILE, PROJECTION_FILE] {
            std::fs::copy(good.join(file), dir.path().join(file)).unwrap();
        }
        dir
    };

    let dir = copy();
    std::fs::remove_file(dir.path().join(TOKENIZER_FILE)).unwrap();
    let err = TextAssets::load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains(TOKENIZER_FILE) && err.contains("export-text-assets"),
        "{err}"
    );

    let dir = copy();
    let lut: Array2<f32> = read_npy(dir.path().join(LUT_FILE)).unwrap();
    write_npy(dir.path().join(LUT_FILE), &lut.mapv(f64::from)).unwrap();
    let err = TextAssets::load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains(LUT_FILE) && err.contains("'<f8'") && err.contains("float32"),
        "{err}"
    );

    let dir = copy();
    write_npy(dir.path().join(LUT_FILE), &Array3::<f32>::zeros((2, 2, 2))).unwrap();
    let err = TextAssets::load(dir.path()).err().unwrap().to_string();
    assert!(err.contains(LUT_FILE) && err.contains("2-D"), "{err}");

    let dir = copy();
    write_npy(dir.path().join(LUT_FILE), &Array2::<f32>::zeros((1000, 32))).unwrap();
    let err = TextAssets::load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains(LUT_FILE) && err.contains("[1000, 32]"),
        "{err}"
    );

    let dir = copy();
    write_npy(
        dir.path().join(PROJECTION_FILE),
        &Array2::<f32>::zeros((16, 32)),
    )
    .unwrap();
    let err = TextAssets::load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains(PROJECTION_FILE) && err.contains("[16, 32]"),
        "{err}"
    );

    let dir = copy();
    std::fs::write(dir.path().join(PROJECTION_FILE), b"garbage").unwrap();
    let err = TextAssets::load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains(PROJECTION_FILE) && err.contains("not a .npy file"),
        "{err}"
    );
}

#[test]
fn hailo_export_from_a_model_directorys_text_graph_equals_the_checkpoints() {
    // The bundled flat model is the tiny checkpoint exported to ONNX: the weights found in
    // its textual.onnx by their role in the graph are the checkpoint's, byte for byte.
    let scratch = scratch();
    let from_graph = scratch.path().join("graph");
    let out = hailo_clip()
        .arg("--model-dir")
        .arg(repo().join("assets/models/clip-tiny-random"))
        .args(["export-text-assets", "--out"])
        .arg(&from_graph)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [LUT_FILE, PROJECTION_FILE, TOKENIZER_FILE] {
        assert_eq!(
            std::fs::read(from_graph.join(file)).unwrap(),
            std::fs::read(text_assets().join(file)).unwrap(),
            "{file}"
        );
    }
    // A graph with no token-embedding Gather is refused, naming the file.
    let model =
        hailo_clip::model::ModelDir::open(&repo().join("assets/models/clip-tiny-random")).unwrap();
    let mut image_as_text = model.clone();
    image_as_text.text.path = model.image.path.clone();
    let err = assets::export_from_onnx(&image_as_text, &scratch.path().join("x"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("visual.onnx") && err.contains("no Gather"),
        "{err}"
    );
}
