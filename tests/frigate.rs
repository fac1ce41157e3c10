//! Frigate's semantic search through llama.cpp server's embeddings API: the replay of
//! Frigate's `LlamaCppClient` (tests/frigate/replay.py, written from
//! blakeblackshear/frigate frigate/genai/plugins/llama_cpp.py at commit
//! 06ce190d94488b2cfe0714372b4f71e011884bd8) against the real binary, with API keys off
//! (the media marker drawn at start) and on (the marker configured). The replay checks
//! that the embeddings equal /v1/embed/text and /v1/embed/image for the same texts and the
//! JPEG bytes Frigate sends, that bad input gets 4xx naming the item, and, with keys, 401
//! without one.
//!
//! replay.py needs numpy and pillow: HAILO_CLIP_DOUBLE_PYTHON names a Python with them
//! (scripts/test.sh makes target/double-venv and sets it); without it these tests say so
//! and pass, unless HAILO_CLIP_REQUIRE_DOUBLE_PYTHON is set (CI).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn replay(python: &std::path::Path, port: u16, extra: &[&str]) {
    let model = tiny_model_name();
    // Frigate's docs have users give base_url with /v1; the client strips it.
    let out = std::process::Command::new(python)
        .arg(repo().join("tests/frigate/replay.py"))
        .arg(format!("http://127.0.0.1:{port}/v1"))
        .arg(&model)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("replay: ok"), "{stdout}");
}

/// The bundled model's name, as /v1/models lists it.
fn tiny_model_name() -> String {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tiny_model_dir().join("manifest.json")).unwrap(),
    )
    .unwrap();
    manifest["name"].as_str().unwrap().to_string()
}

#[test]
fn frigates_llamacpp_client_gets_the_daemons_embeddings_without_keys() {
    let Some(python) = double_python() else {
        return;
    };
    let dir = scratch();
    let (child, port) = serve_with(dir.path(), "");
    replay(&python, port, &[]);
    sigterm(&child);
}

#[test]
fn frigates_llamacpp_client_gets_the_daemons_embeddings_with_a_key_and_a_set_marker() {
    let Some(python) = double_python() else {
        return;
    };
    let dir = scratch();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "frigate-key-for-tests\n").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (child, port) = serve_with(
        dir.path(),
        &format!(
            "  api_keys_file: {}\nllamacpp:\n  media_marker: <__frigate_test__>\n",
            keys.display()
        ),
    );
    replay(
        &python,
        port,
        &[
            "--api-key",
            "frigate-key-for-tests",
            "--marker",
            "<__frigate_test__>",
        ],
    );
    sigterm(&child);
}

#[test]
fn a_media_marker_with_whitespace_is_a_config_error() {
    let dir = scratch();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "llamacpp:\n  media_marker: \"<a b>\"\n").unwrap();
    let out = hailo_clip()
        .env("HAILO_CLIP_CONFIG", &config)
        .arg("check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("llamacpp.media_marker"), "{stderr}");
}
