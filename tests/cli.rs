//! The `hailo-clip` binary: one-shot commands, start-up errors that name what is wrong
//! with a non-zero exit, and the daemon's start → ready → SIGTERM → exit 0 cycle.

mod common;

use std::process::Command;

use common::*;

fn bin() -> Command {
    hailo_clip()
}

/// Runs `hailo-clip ARGS`: (exit code, stdout, stderr).
fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (Option<i32>, String, String) {
    let out = bin()
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `hailo-clip --config FILE ARGS` with FILE holding `yaml`: (exit code, stdout, stderr).
fn run_with_config(yaml: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = scratch();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--config", &config];
    all.extend(args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
    run(&all)
}

#[test]
fn classify_json_one_shot() {
    let (model, chelsea) = (tiny_model_dir(), fixture("images/chelsea.png"));
    let (code, out, err) = run(&[
        &"--model-dir",
        &model,
        &"classify",
        &"--json",
        &"--top-k",
        &"2",
        &chelsea,
        &"cat",
        &"dog",
        &"car",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"], "clip-tiny-random");
    let c = v["classifications"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["rank"], 1);
    assert!(c[0]["score"].as_f64().unwrap() >= c[1]["score"].as_f64().unwrap());
    // The random-weights warning is said loudly, on stderr.
    assert!(err.contains("RANDOM weights"), "{err}");
}

#[test]
fn embed_text_prints_unit_vectors() {
    let model = tiny_model_dir();
    let (code, out, err) = run(&[
        &"--model-dir",
        &model,
        &"embed",
        &"text",
        &"a photo of a cat",
        &"a dog",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["input"], "a dog");
    assert_eq!(lines[0]["dimension"], 32);
    let e: Vec<f64> = serde_json::from_value(lines[0]["embedding"].clone()).unwrap();
    assert!((e.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5);
    // Same numbers as transformers (prompt 0 of the goldens).
    let g = golden_f32("text_embeds.npy").row(0).to_vec();
    let n = g.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(e
        .iter()
        .zip(&g)
        .all(|(a, b)| (*a as f32 - b / n).abs() < 1e-4));
}

#[test]
fn missing_or_broken_model_is_a_named_error() {
    let chelsea = fixture("images/chelsea.png");
    let (code, _, err) = run(&[
        &"--model-dir",
        &"/nonexistent/clip-model",
        &"classify",
        &chelsea,
        &"cat",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("model directory /nonexistent/clip-model does not exist"),
        "{err}"
    );

    // A model directory whose visual.onnx is garbage.
    let scratch = scratch();
    let dir = scratch.path();
    for f in ["manifest.json", "textual.onnx", "tokenizer.json"] {
        std::fs::copy(tiny_model_dir().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("visual.onnx"), b"this is not onnx").unwrap();
    let embed = || run(&[&"--model-dir", &dir, &"embed", &"text", &"x"]);
    let (code, out, err) = embed();
    assert_eq!(code, Some(1));
    let visual = dir.join("visual.onnx");
    assert!(
        err.contains(&format!("cannot load ONNX model {}", visual.display())),
        "{err}"
    );
    assert!(out.is_empty(), "no output from a broken model");

    // Missing tokenizer.
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let (code, _, err) = embed();
    assert_eq!(code, Some(1));
    assert!(err.contains("tokenizer.json is missing"), "{err}");
}

#[test]
fn check_config_names_bad_keys_and_prints_good_config() {
    let (code, _, err) = run_with_config(
        "server:\n  port: 5000\n  hots: 0.0.0.0\n",
        &["check-config"],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("key `server.hots`") && err.contains("unknown field"),
        "{err}"
    );

    let (code, text, _) = run(&[&"check-config"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("is valid"), "{text}");
    assert!(
        text.contains("port: 5000") && text.contains("host: 127.0.0.1"),
        "{text}"
    );
}

#[test]
fn serve_becomes_ready_and_exits_zero_on_sigterm() {
    let port = free_port();
    let mut child = spawn_serve(port, &[]);
    let body = wait_ready(port);
    assert!(body.contains("\"model_loaded\":true"), "{body}");
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let log = stderr_log(&mut child);
    for line in [
        "loading encoders",
        "RANDOM weights",
        "encoders loaded: backend cpu (",
        "warm-up inference succeeded in",
        "ready: serving",
        "GET /health -> 200 in",
        "encoders released",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
}

#[test]
fn serve_with_missing_model_exits_non_zero() {
    let port = free_port().to_string();
    let (code, _, err) = run(&[
        &"--model-dir",
        &"/nonexistent/clip-model",
        &"serve",
        &"--port",
        &port,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/nonexistent/clip-model does not exist"),
        "{err}"
    );
}

#[test]
fn doctor_reports_a_bad_config_and_exits_non_zero() {
    let (code, text, _) = run_with_config("performance:\n  max_batch: 4\n", &["doctor"]);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("FAIL  config") && text.contains("performance.max_batch"),
        "{text}"
    );
    // It goes on with the other checks after a bad config.
    for name in [
        "device node",
        "HailoRT library",
        "driver",
        "CPU model",
        "port",
        "service",
        "memory",
        "temperature",
        "device users",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.lines().last().unwrap().ends_with("failed"), "{text}");
}

#[test]
fn check_model_loads_and_runs_a_model_and_answers_manifest_fields() {
    let model = tiny_model_dir();
    let (code, out, err) = run(&[&"check-model", &model]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("model clip-tiny-random in") && out.contains("loads and runs"),
        "{out}"
    );
    assert!(out.contains("random weights"), "{out}");
    let get = |field: &str| run(&[&"check-model", &model, &"--get", &field]);
    assert_eq!(get("name").1, "clip-tiny-random\n");
    assert_eq!(get("random_weights").1, "true\n");
    let (code, _, err) = get("colour");
    assert_eq!(code, Some(1));
    assert!(err.contains("no manifest field colour"), "{err}");

    // A truncated encoder: the manifest still answers, loading names the file.
    let scratch = scratch();
    for f in [
        "visual.onnx",
        "textual.onnx",
        "tokenizer.json",
        "manifest.json",
    ] {
        std::fs::copy(model.join(f), scratch.path().join(f)).unwrap();
    }
    let visual = scratch.path().join("visual.onnx");
    let bytes = std::fs::read(&visual).unwrap();
    std::fs::write(&visual, &bytes[..1000]).unwrap();
    let dir = &scratch.path();
    assert_eq!(
        run(&[&"check-model", dir, &"--get", &"name"]).1,
        "clip-tiny-random\n"
    );
    let (code, _, err) = run(&[&"check-model", dir]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&visual.display().to_string()), "{err}");
    // No manifest (and not Immich's layout either): not a model directory, even for --get.
    std::fs::remove_file(scratch.path().join("manifest.json")).unwrap();
    let (code, _, err) = run(&[&"check-model", dir, &"--get", &"name"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("is not a model directory: it has neither manifest.json"),
        "{err}"
    );
}

#[test]
fn check_config_get_prints_one_effective_value() {
    let yaml = "server:\n  port: 5123\nlimits:\n  max_prompts: 7\n";
    let get = |key: &str| run_with_config(yaml, &["check-config", "--get", key]);
    assert_eq!(get("server.port").1, "5123\n");
    assert_eq!(get("server.host").1, "127.0.0.1\n");
    assert_eq!(get("limits.max_prompts").1, "7\n");
    assert_eq!(
        get("model.dir").1,
        "/usr/local/share/hailo-clip/models/ViT-B-32__openai\n"
    );
    assert!(
        get("server").1.contains("port: 5123\n"),
        "{}",
        get("server").1
    );
    let (code, out, err) = get("server.colour");
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("no config key server.colour"), "{err}");
}

#[test]
fn check_text_assets_accepts_exported_files_and_names_a_broken_one() {
    let scratch = scratch();
    let dir = &scratch.path();
    let hf = repo().join("tests/fixtures/hf-clip-tiny-random");
    let (code, _, err) = run(&[&"export-text-assets", &"--hf-dir", &hf, &"--out", dir]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&[&"check-text-assets", dir]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok"), "{out}");
    let projection = scratch.path().join("text_projection.npy");
    std::fs::write(&projection, b"{\"not\": \"npy\"}").unwrap();
    let (code, _, err) = run(&[&"check-text-assets", dir]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&projection.display().to_string()), "{err}");
}
