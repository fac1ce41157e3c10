//! The `hailo-clip` binary: one-shot commands, start-up errors that name what is wrong
//! with a non-zero exit, and the daemon's start → ready → SIGTERM → exit 0 cycle.

mod common;

use std::process::Command;

use common::*;

fn bin() -> Command {
    hailo_clip()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hailo-clip-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `command` with a config file holding `yaml`; returns the temp dir and the output.
fn run_with_config(
    name: &str,
    yaml: &str,
    command: &str,
) -> (std::path::PathBuf, std::process::Output) {
    let dir = temp_dir(name);
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = bin()
        .arg("--config")
        .arg(&config)
        .arg(command)
        .output()
        .unwrap();
    (dir, out)
}

#[test]
fn classify_json_one_shot() {
    let out = bin()
        .args(["--model-dir"])
        .arg(tiny_model_dir())
        .args(["classify", "--json", "--top-k", "2"])
        .arg(fixture("images/chelsea.png"))
        .args(["cat", "dog", "car"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "clip-tiny-random");
    let c = v["classifications"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["rank"], 1);
    assert!(c[0]["score"].as_f64().unwrap() >= c[1]["score"].as_f64().unwrap());
    // The random-weights warning is said loudly, on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("RANDOM weights"));
}

#[test]
fn embed_text_prints_unit_vectors() {
    let out = bin()
        .arg("--model-dir")
        .arg(tiny_model_dir())
        .args(["embed", "text", "a photo of a cat", "a dog"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
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
    let out = bin()
        .args(["--model-dir", "/nonexistent/clip-model", "classify"])
        .arg(fixture("images/chelsea.png"))
        .arg("cat")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model directory /nonexistent/clip-model does not exist"),
        "{err}"
    );

    // A model directory whose visual.onnx is garbage.
    let dir = temp_dir("broken");
    for f in ["manifest.json", "textual.onnx", "tokenizer.json"] {
        std::fs::copy(tiny_model_dir().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("visual.onnx"), b"this is not onnx").unwrap();
    let out = bin()
        .arg("--model-dir")
        .arg(&dir)
        .args(["embed", "text", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot load ONNX model {}",
            dir.join("visual.onnx").display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no output from a broken model");

    // Missing tokenizer.
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let out = bin()
        .arg("--model-dir")
        .arg(&dir)
        .args(["embed", "text", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer.json is missing"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_config_names_bad_keys_and_prints_good_config() {
    let (dir, out) = run_with_config(
        "config",
        "server:\n  port: 5000\n  hots: 0.0.0.0\n",
        "check-config",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key `server.hots`") && err.contains("unknown field"),
        "{err}"
    );

    let out = bin().arg("check-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is valid"), "{text}");
    assert!(
        text.contains("port: 5000") && text.contains("host: 127.0.0.1"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
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
    let port = free_port();
    let out = bin()
        .args([
            "--model-dir",
            "/nonexistent/clip-model",
            "serve",
            "--port",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/clip-model does not exist"),
        "{err}"
    );
}

#[test]
fn doctor_reports_a_bad_config_and_exits_non_zero() {
    let (dir, out) = run_with_config("doctor", "performance:\n  max_batch: 4\n", "doctor");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
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
    std::fs::remove_dir_all(&dir).unwrap();
}
