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
    let loaded = TextAssets::load(&out, None).unwrap();
    let golden_ids: ndarray::Array2<i64> = read_npy(golden("text_input_ids.npy")).unwrap();
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(golden("text_prompts.json")).unwrap())
            .unwrap();
    for (prompt, row) in prompts.iter().zip(golden_ids.rows()).take(6) {
        let ids = loaded.setup.tokenizer.encode(prompt).unwrap();
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
    let err = TextAssets::load(dir.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(TOKENIZER_FILE) && err.contains("export-text-assets"),
        "{err}"
    );

    let dir = copy();
    let lut: Array2<f32> = read_npy(dir.path().join(LUT_FILE)).unwrap();
    write_npy(dir.path().join(LUT_FILE), &lut.mapv(f64::from)).unwrap();
    let err = TextAssets::load(dir.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(LUT_FILE) && err.contains("'<f8'") && err.contains("float32"),
        "{err}"
    );

    let dir = copy();
    write_npy(dir.path().join(LUT_FILE), &Array3::<f32>::zeros((2, 2, 2))).unwrap();
    let err = TextAssets::load(dir.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(LUT_FILE) && err.contains("2-D"), "{err}");

    let dir = copy();
    write_npy(dir.path().join(LUT_FILE), &Array2::<f32>::zeros((1000, 32))).unwrap();
    let err = TextAssets::load(dir.path(), None)
        .err()
        .unwrap()
        .to_string();
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
    let err = TextAssets::load(dir.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(PROJECTION_FILE) && err.contains("[16, 32]"),
        "{err}"
    );

    let dir = copy();
    std::fs::write(dir.path().join(PROJECTION_FILE), b"garbage").unwrap();
    let err = TextAssets::load(dir.path(), None)
        .err()
        .unwrap()
        .to_string();
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

/// The bundled flat model, copied, with its token embedding moved out of `textual.onnx` into
/// external data at `location` (offset 16 of whatever file that names). Returns the copy.
fn model_with_external_embedding(root: &std::path::Path, location: &str) -> std::path::PathBuf {
    use prost::Message;
    use tract_onnx::pb::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto};
    let src = repo().join("assets/models/clip-tiny-random");
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let graph_path = dir.join("textual.onnx");
    let mut model = ModelProto::decode(std::fs::read(&graph_path).unwrap().as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let table = graph
        .initializer
        .iter_mut()
        .find(|t| t.dims == [49408, 32])
        .expect("the token embedding");
    let bytes = std::mem::take(&mut table.raw_data);
    assert_eq!(bytes.len(), 49408 * 32 * 4);
    table.data_location = Some(DataLocation::External as i32);
    for (key, value) in [
        ("location", location.to_string()),
        ("offset", "16".to_string()),
        ("length", bytes.len().to_string()),
    ] {
        table.external_data.push(StringStringEntryProto {
            key: key.into(),
            value,
        });
    }
    std::fs::write(&graph_path, model.encode_to_vec()).unwrap();
    // The bytes, after 16 of padding, both inside and outside the model directory.
    let mut data = vec![0xAB; 16];
    data.extend_from_slice(&bytes);
    std::fs::write(dir.join("embedding.bin"), &data).unwrap();
    std::fs::write(root.join("outside.bin"), &data).unwrap();
    dir
}

#[test]
fn hailo_export_reads_external_data_only_inside_the_graphs_directory() {
    let export = |dir: &std::path::Path, out: &std::path::Path| {
        hailo_clip()
            .arg("--model-dir")
            .arg(dir)
            .args(["export-text-assets", "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    // Inside: the range offset..offset+length is the table, read exactly.
    let inside = scratch();
    let dir = model_with_external_embedding(inside.path(), "embedding.bin");
    let out_dir = inside.path().join("out");
    let out = export(&dir, &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(out_dir.join(LUT_FILE)).unwrap(),
        std::fs::read(text_assets().join(LUT_FILE)).unwrap()
    );

    // Outside, by each way out: refused, naming the location, and nothing written.
    for location in [
        "../outside.bin",
        "/dev/zero",
        "link.bin",
        "sub/../../outside.bin",
    ] {
        let tmp = scratch();
        let dir = model_with_external_embedding(tmp.path(), location);
        std::os::unix::fs::symlink(tmp.path().join("outside.bin"), dir.join("link.bin")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        let out_dir = tmp.path().join("out");
        let out = export(&dir, &out_dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{location}: {stderr}");
        assert!(
            stderr.contains(&format!("location {location:?}"))
                && stderr.contains("textual.onnx")
                && stderr.contains("the graph's directory"),
            "{location}: {stderr}"
        );
        assert!(!out_dir.join(LUT_FILE).exists(), "{location}");
        // The same rule for every reader of the graph: the model directory is refused whole.
        let err = hailo_clip::model::ModelDir::open(&dir)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("location {location:?}")), "{err}");
    }

    // A range past the file's end, or a length that is not the tensor's, is refused too.
    let short = scratch();
    let dir = model_with_external_embedding(short.path(), "embedding.bin");
    std::fs::write(dir.join("embedding.bin"), [0u8; 64]).unwrap();
    let err = hailo_clip::model::ModelDir::open(&dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("past the end of"), "{err}");
}

/// The lookup table is read by row from the file, never held: each row equals the `.npy`'s,
/// an id past the end and a file shorter than its header says are refused by name.
#[test]
fn hailo_token_table_reads_rows_from_the_file() {
    let dir = scratch();
    let path = dir.path().join(LUT_FILE);
    let table = Array2::from_shape_fn((300, 24), |(r, c)| r as f32 * 0.5 - c as f32 * 0.25);
    write_npy(&path, &table).unwrap();
    let lut = assets::TokenTable::open(&path).unwrap();
    assert_eq!((lut.rows(), lut.cols()), (300, 24));
    for id in [0u32, 1, 150, 299] {
        assert_eq!(lut.row(id).unwrap(), table.row(id as usize).to_vec());
    }
    let mut frame = vec![9u8];
    lut.append_row(7, &mut frame).unwrap();
    assert_eq!(frame.len(), 1 + 24 * 4);
    assert_eq!(frame[1..5], (7.0f32 * 0.5).to_le_bytes());
    let err = lut.row(300).unwrap_err();
    assert!(
        err.contains("token id 300") && err.contains("300 rows"),
        "{err}"
    );

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let err = assets::TokenTable::open(&path).err().unwrap().to_string();
    assert!(
        err.contains(LUT_FILE) && err.contains("fewer than its header's [300, 24]"),
        "{err}"
    );
}
