//! ONNX Runtime libraries older than the one CI fetches by default: 1.20.1 (older than
//! 1.23, where `Level3` became ORT_ENABLE_LAYOUT, so a session built with it was refused)
//! serves, with `cpu.engine: onnxruntime` and `auto` alike, and answers as tract does; a
//! 1.16.3 (older than the C API 17 this build needs; a test double, tests/onnxruntime_old/)
//! makes `auto` fall back to tract saying why, and `onnxruntime` fail naming the version
//! it needs.
//!
//! 1.20.1 comes from `scripts/fetch-onnxruntime.sh --version 1.20.1` (.ci/run exports
//! HAILO_CLIP_ORT_1_20 with its path). Without it that test says so and passes, unless
//! HAILO_CLIP_REQUIRE_ONNXRUNTIME is set (CI).

mod common;

use common::{hailo_clip, scratch, tiny_model_dir};

fn library(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            assert!(
                std::env::var_os("HAILO_CLIP_REQUIRE_ONNXRUNTIME").is_none(),
                "{var} is not set: run scripts/fetch-onnxruntime.sh --version ... (see .ci/run)"
            );
            eprintln!("{var} is not set: skipped");
            None
        }
    }
}

/// `hailo-clip check-model` (ENGINE) or `embed text` (EMBED) of the tiny model with
/// `cpu.engine: ENGINE` and `ORT_DYLIB_PATH`: the output.
fn run(command: &[&str], engine: &str, library: Option<&str>) -> std::process::Output {
    let dir = scratch();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("cpu:\n  engine: {engine}\n")).unwrap();
    let mut cmd = hailo_clip();
    cmd.env("HAILO_CLIP_CONFIG", &config)
        .env("RUST_LOG", "info")
        .arg("--model-dir")
        .arg(tiny_model_dir())
        .args(command);
    match library {
        Some(path) => cmd.env("ORT_DYLIB_PATH", path),
        None => cmd.env_remove("ORT_DYLIB_PATH"),
    };
    cmd.output().unwrap()
}

fn embed(engine: &str, library: Option<&str>) -> std::process::Output {
    run(&["embed", "text", "a photo of a cat"], engine, library)
}

/// The engine line of `check-model`, and its exit code.
fn engine_line(engine: &str, library: Option<&str>) -> (Option<i32>, String) {
    let dir = tiny_model_dir();
    let out = run(&["check-model", dir.to_str().unwrap()], engine, library);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("engine: "))
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned());
    (out.status.code(), line)
}

fn embedding(out: &std::process::Output) -> Vec<f32> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let values = line
        .get("embedding")
        .unwrap_or(&line)
        .as_array()
        .unwrap_or_else(|| panic!("{stdout}"));
    values.iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

#[test]
fn onnxruntime_1_20_serves_with_onnxruntime_and_auto() {
    let Some(lib) = library("HAILO_CLIP_ORT_1_20") else {
        return;
    };
    let tract = embed("tract", None);
    assert!(
        tract.status.success(),
        "{}",
        String::from_utf8_lossy(&tract.stderr)
    );
    let expected = embedding(&tract);
    for engine in ["onnxruntime", "auto"] {
        let (code, line) = engine_line(engine, Some(&lib));
        assert_eq!(code, Some(0), "{engine}: {line}");
        assert!(
            line.starts_with("engine: onnxruntime ") && line.contains("(1.20.1)"),
            "{engine}: {line}"
        );
        let out = embed(engine, Some(&lib));
        assert!(
            out.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = embedding(&out);
        assert_eq!(got.len(), expected.len());
        let dot: f32 = got.iter().zip(&expected).map(|(a, b)| a * b).sum();
        assert!(dot > 0.9999, "{engine}: cosine with tract {dot}");
    }
}

#[test]
fn onnxruntime_1_16_makes_auto_fall_back_and_onnxruntime_name_the_version() {
    let dir = scratch();
    let lib = dir.path().join("libonnxruntime.so.1.16.3");
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(common::repo().join("tests/onnxruntime_old/libonnxruntime_1_16.c"))
        .status()
        .unwrap();
    assert!(cc.success());
    let lib = lib.to_string_lossy().into_owned();
    let (code, line) = engine_line("auto", Some(&lib));
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("engine: tract (")
            && line.contains("cpu.engine: auto and ONNX Runtime did not load (")
            && line.contains("expected version >= '1.17.x', but got '1.16.3'"),
        "{line}"
    );
    let ort = embed("onnxruntime", Some(&lib));
    let log = String::from_utf8_lossy(&ort.stderr);
    assert_eq!(ort.status.code(), Some(1), "{log}");
    assert!(log.contains("1.16.3") && log.contains(">= '1.17"), "{log}");
}
