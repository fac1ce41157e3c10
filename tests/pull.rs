//! `hailo-clip pull` against a stand-in Hub and Model Zoo bucket (tests/standins/hub.py, which
//! answers as huggingface.co and S3 do): only the model's files, verified, resumed after a
//! cut, refused when a byte is wrong with nothing installed, atomic over an existing model, a
//! no-op when the commit is installed, verified offline, and the HEFs and Hailo text files
//! for each chip and Model Zoo version. Nothing here reaches the internet. x86_64 only (CI
//! runs it there; scripts/test-aarch64.sh does not).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::standin::{publish_fixture, publish_hef, StandIn};
use common::*;
use sha2::{Digest, Sha256};

const REPO: &str = "immich-app/ViT-B-32__openai";
const NAME: &str = "ViT-B-32__openai";

struct Env {
    _tmp: tempfile::TempDir,
    hub: PathBuf,
    zoo: PathBuf,
    models: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let zoo = tmp.path().join("zoo");
    publish_fixture(&hub, REPO);
    std::fs::create_dir_all(&zoo).unwrap();
    Env {
        hub,
        zoo,
        models: tmp.path().join("models"),
        _tmp: tmp,
    }
}

fn pull(endpoint: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = hailo_clip();
    cmd.arg("pull")
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_TOKEN", "hf_secret_token")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("TRANSFORMERS_OFFLINE")
        .env_remove("HAILO_CLIP_ZOO_URL");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn sha256_file(p: &Path) -> String {
    hailo_clip::fetch::hex(&Sha256::digest(std::fs::read(p).unwrap()))
}

/// Every file under `dir` with its sha256, to prove a directory did not change.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    sha256_file(&p),
                ));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `Range` headers the CDN host (the stand-in's second host name) was sent.
fn cdn_ranges(hub: &StandIn) -> Vec<String> {
    hub.requests()
        .iter()
        .filter(|r| r["host"].as_str().unwrap().starts_with("localhost"))
        .filter_map(|r| {
            r["headers"]
                .get("range")
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect()
}

fn closed_port_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_pull_installs_only_the_models_files_verified_and_serves_by_its_name() {
    let e = env();
    let hub = StandIn::start(&e.hub, None, &[]);
    let to = e.models.join("whatever-dir-name");
    let out = pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("installed immich-app/ViT-B-32__openai at "),
        "{stdout}"
    );
    // Not a terminal: one line per fetched file.
    assert!(stderr.contains("fetched visual/model.onnx: "), "{stderr}");
    let mut files: Vec<String> = snapshot(&to).into_iter().map(|(p, _)| p).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "config.json",
            "hailo-clip-pull.json",
            "textual/model.onnx",
            "textual/tokenizer.json",
            "textual/tokenizer_config.json",
            "visual/model.onnx",
            "visual/preprocess_cfg.json",
        ]
    );
    // Every file equals the published one.
    for f in files.iter().filter(|f| *f != "hailo-clip-pull.json") {
        assert_eq!(
            sha256_file(&to.join(f)),
            sha256_file(&e.hub.join(REPO).join(f)),
            "{f}"
        );
    }
    // No staging directory is left beside it.
    let left: Vec<_> = std::fs::read_dir(&e.models)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["whatever-dir-name"]);
    // The model is called by its pulled name, whatever the directory is called.
    let name = hailo_clip()
        .args(["check-model", "--get", "name"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&name.stdout).trim(), NAME);
    let random = hailo_clip()
        .args(["check-model", "--get", "random_weights"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&random.stdout).trim(), "false");

    // The protocol as the Hub is spoken: the commit pinned, identity encoding asked, the
    // token sent to the endpoint's host and never to the CDN's.
    let requests = hub.requests();
    assert!(requests[0]["path"]
        .as_str()
        .unwrap()
        .starts_with("/api/models/immich-app/ViT-B-32__openai/revision/main"));
    assert_eq!(requests[0]["query"], "blobs=true");
    let mut cdn = 0;
    for r in &requests {
        let host = r["host"].as_str().unwrap();
        let auth = r["headers"].get("authorization");
        if host.starts_with("localhost") {
            cdn += 1;
            assert!(auth.is_none(), "token sent to the CDN: {r}");
        } else {
            assert_eq!(auth.unwrap(), "Bearer hf_secret_token", "{r}");
        }
        let path = r["path"].as_str().unwrap();
        assert!(!path.contains("rknpu") && !path.contains("armnn"), "{path}");
        if path.contains("/resolve/") {
            assert!(!path.contains("/resolve/main/"), "not pinned: {path}");
            assert_eq!(r["headers"]["accept-encoding"], "identity");
        }
    }
    assert_eq!(cdn, 2, "the two ONNX files come from the CDN host");
}

#[test]
fn a_cut_transfer_resumes_with_range() {
    let e = env();
    let hub = StandIn::start(&e.hub, None, &["--cut", "visual/model.onnx=300000"]);
    let to = e.models.join(NAME);
    let out = pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("was cut after 300000 bytes"), "{stderr}");
    assert!(stderr.contains("resumed at 300000 bytes"), "{stderr}");
    // Each hop carries the range: the Hub's 302, then the CDN that serves it.
    let ranges = cdn_ranges(&hub);
    assert_eq!(ranges, ["bytes=300000-"]);
    assert_eq!(
        sha256_file(&to.join("visual/model.onnx")),
        sha256_file(&e.hub.join(REPO).join("visual/model.onnx"))
    );
}

#[test]
fn a_corrupt_byte_is_refused_naming_the_file_and_both_hashes_with_nothing_installed() {
    let e = env();
    let hub = StandIn::start(&e.hub, None, &["--flip", "textual/model.onnx=1000"]);
    let to = e.models.join(NAME);
    let out = pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let published = sha256_file(&e.hub.join(REPO).join("textual/model.onnx"));
    assert!(
        stderr.contains("textual/model.onnx: sha256 mismatch: expected ")
            && stderr.contains(&published),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!to.exists(), "a half model was installed");
}

#[test]
fn a_failed_pull_over_an_installed_model_leaves_it_as_it_was() {
    let e = env();
    let to = e.models.join(NAME);
    {
        let good = StandIn::start(&e.hub, None, &[]);
        assert!(
            pull(&good.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[])
                .status
                .success()
        );
    }
    let before = snapshot(&to);
    // The Hub now has a different text encoder, and serves it with a flipped byte.
    let textual = e.hub.join(REPO).join("textual/model.onnx");
    let mut bytes = std::fs::read(&textual).unwrap();
    bytes.extend_from_slice(b"\x00");
    std::fs::write(&textual, &bytes).unwrap();
    let bad = StandIn::start(&e.hub, None, &["--flip", "textual/model.onnx=2000"]);
    let out = pull(&bad.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("textual/model.onnx: sha256 mismatch"),
        "{stderr}"
    );
    assert_eq!(snapshot(&to), before, "the installed model changed");
}

#[test]
fn a_re_pull_of_the_installed_commit_is_a_no_op() {
    let e = env();
    let hub = StandIn::start(&e.hub, None, &[]);
    let to = e.models.join(NAME);
    assert!(
        pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[])
            .status
            .success()
    );
    let before = snapshot(&to);
    let asked = hub.requests().len();
    let out = pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("is already installed"), "{stdout}");
    let after = hub.requests();
    assert_eq!(
        after.len(),
        asked + 1,
        "only the revision was asked: {:?}",
        &after[asked..]
    );
    assert_eq!(snapshot(&to), before);
}

#[test]
fn offline_a_pull_of_an_installed_model_verifies_it() {
    let e = env();
    let to = e.models.join(NAME);
    {
        let hub = StandIn::start(&e.hub, None, &[]);
        assert!(
            pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[])
                .status
                .success()
        );
    }
    let unreachable = closed_port_endpoint();
    let out = pull(&unreachable, &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("offline: cannot reach the Hugging Face Hub at "),
        "{stdout}"
    );
    assert!(stdout.contains("was verified"), "{stdout}");
    let out = pull(
        &unreachable,
        &[NAME, "--to", to.to_str().unwrap()],
        &[("HF_HUB_OFFLINE", "1")],
    );
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with("offline: HF_HUB_OFFLINE is set"),
        "{stdout}"
    );
    // A damaged installed file is found: one byte changed, its size the same.
    flip_a_byte(&to.join("visual/preprocess_cfg.json"));
    let out = pull(
        &unreachable,
        &[NAME, "--to", to.to_str().unwrap()],
        &[("HF_HUB_OFFLINE", "1")],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("visual/preprocess_cfg.json: sha256 mismatch"),
        "{stderr}"
    );
    // Asking offline for HEFs the installed model does not have fails, saying so.
    flip_a_byte(&to.join("visual/preprocess_cfg.json"));
    let out = pull(
        &unreachable,
        &[
            NAME,
            "--to",
            to.to_str().unwrap(),
            "--hef",
            "--arch",
            "hailo10h",
            "--zoo-version",
            "v5.2.0",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stderr.contains("has no hailo10h HEFs of Model Zoo v5.2.0"),
        "{stderr}"
    );
    assert!(!to.join("hailo").exists());
}

/// Changes one byte of a file in place (its size stays).
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_re_pull_repairs_a_changed_byte_and_a_missing_file() {
    let e = env();
    let hub = StandIn::start(&e.hub, None, &[]);
    let to = e.models.join(NAME);
    let args = [NAME, "--to", to.to_str().unwrap()];
    assert!(pull(&hub.endpoint(), &args, &[]).status.success());
    let good = snapshot(&to);

    flip_a_byte(&to.join("visual/model.onnx"));
    let out = pull(&hub.endpoint(), &args, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("installed "), "{stdout}");
    assert_eq!(snapshot(&to), good);

    std::fs::remove_file(to.join("textual/tokenizer.json")).unwrap();
    let out = pull(&hub.endpoint(), &args, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("installed "), "{stdout}");
    assert_eq!(snapshot(&to), good);
}

#[test]
fn a_second_pull_into_the_same_directory_is_refused_while_one_runs() {
    use std::os::fd::AsRawFd;
    let e = env();
    let hub = StandIn::start(&e.hub, None, &[]);
    let to = e.models.join(NAME);
    std::fs::create_dir_all(&e.models).unwrap();
    // The lock a running pull holds.
    let lock = std::fs::File::create(e.models.join(format!(".{NAME}.pull.lock"))).unwrap();
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let out = pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another `hailo-clip pull` is installing into"),
        "{stderr}"
    );
    assert!(!to.exists());
    drop(lock);
    let out = pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn a_re_pull_without_hef_fetches_a_missing_hef_from_the_recorded_zoo() {
    let e = env();
    publish_hef(
        &e.zoo,
        "v5.2.0",
        "hailo10h",
        "clip_vit_b_32_image_encoder",
        30_000,
    );
    publish_hef(
        &e.zoo,
        "v5.2.0",
        "hailo10h",
        "clip_vit_b_32_text_encoder",
        20_000,
    );
    let hub = StandIn::start(&e.hub, Some(&e.zoo), &[]);
    let (out, to) = pull_hef(&e, &hub, "hailo10h", "v5.2.0");
    assert!(out.status.success(), "{}", text(&out).1);
    let good = snapshot(&to);
    let hef = to.join("hailo/hailo10h/clip_vit_b_32_image_encoder.hef");
    std::fs::remove_file(&hef).unwrap();
    flip_a_byte(&to.join("hailo/hailo10h/clip_vit_b_32_text_encoder.hef"));
    let out = pull(
        &hub.endpoint(),
        &[NAME, "--to", to.to_str().unwrap()],
        &[("HAILO_CLIP_ZOO_URL", "http://127.0.0.1:9/not-asked")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(snapshot(&to), good);
}

#[test]
fn errors_are_one_line_in_words_with_a_non_zero_exit() {
    let e = env();
    let hub = StandIn::start(&e.hub, None, &[]);
    let to = e.models.join("x");
    let to = to.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (
            vec!["nope__none", "--to", to],
            hub.endpoint(),
            "repository immich-app/nope__none was not found on http://127.0.0.1:",
        ),
        (
            vec![NAME, "--revision", "v9", "--to", to],
            hub.endpoint(),
            "repository immich-app/ViT-B-32__openai has no revision \"v9\"",
        ),
        (
            vec![NAME, "--to", to],
            closed_port_endpoint(),
            "cannot reach the Hugging Face Hub at http://127.0.0.1:",
        ),
        (
            vec![NAME, "--to", "/proc/hailo-clip-test/model"],
            hub.endpoint(),
            "/proc/hailo-clip-test",
        ),
        (
            vec!["../etc", "--to", to],
            hub.endpoint(),
            "is not a model name",
        ),
    ];
    for (args, endpoint, said) in cases {
        let out = pull(&endpoint, &args, &[]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(said),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    // No network names the endpoint and the variable that sets it.
    let out = pull(&closed_port_endpoint(), &[NAME, "--to", to], &[]);
    assert!(text(&out).1.contains("HF_ENDPOINT"));
    // A destination that is not a model directory is never replaced.
    let busy = e.models.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("precious.txt"), "keep").unwrap();
    let out = pull(
        &hub.endpoint(),
        &[NAME, "--to", busy.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is not a model directory"));
    assert_eq!(
        std::fs::read_to_string(busy.join("precious.txt")).unwrap(),
        "keep"
    );
}

/// `pull --hef` for one chip and Model Zoo version against the stand-in bucket.
fn pull_hef(e: &Env, hub: &StandIn, arch: &str, version: &str) -> (Output, PathBuf) {
    let to = e.models.join(format!("{NAME}-{arch}-{version}"));
    let out = pull(
        &hub.endpoint(),
        &[
            NAME,
            "--to",
            to.to_str().unwrap(),
            "--hef",
            "--arch",
            arch,
            "--zoo-version",
            version,
        ],
        &[("HAILO_CLIP_ZOO_URL", &hub.zoo_url())],
    );
    (out, to)
}

#[test]
fn hefs_come_from_the_model_zoo_for_each_chip_and_version() {
    let e = env();
    // What the Model Zoo publishes, by its docs (src/fetch/zoo.rs).
    publish_hef(
        &e.zoo,
        "v5.2.0",
        "hailo10h",
        "clip_vit_b_32_image_encoder",
        300_000,
    );
    publish_hef(
        &e.zoo,
        "v5.2.0",
        "hailo10h",
        "clip_vit_b_32_text_encoder",
        200_000,
    );
    publish_hef(
        &e.zoo,
        "v5.1.0",
        "hailo10h",
        "clip_vit_b_32_image_encoder",
        310_000,
    );
    publish_hef(&e.zoo, "v2.16.0", "hailo8", "clip_vit_b_32", 120_000);
    publish_hef(
        &e.zoo,
        "v2.16.0",
        "hailo8",
        "clip_text_encoder_vitb_32",
        110_000,
    );
    publish_hef(
        &e.zoo,
        "v2.18.0",
        "hailo8l",
        "clip_vit_b_32_image_encoder",
        130_000,
    );
    publish_hef(
        &e.zoo,
        "v2.18.0",
        "hailo8l",
        "clip_vit_b_32_text_encoder",
        140_000,
    );
    let hub = StandIn::start(
        &e.hub,
        Some(&e.zoo),
        &["--cut", "clip_vit_b_32_image_encoder.hef=100000"],
    );
    let weights = golden_json("immich_inputs.json")["text_weights"].clone();

    for (arch, version, hefs, text_files) in [
        (
            "hailo10h",
            "v5.2.0",
            vec!["clip_vit_b_32_image_encoder", "clip_vit_b_32_text_encoder"],
            true,
        ),
        (
            "hailo10h",
            "v5.1.0",
            vec!["clip_vit_b_32_image_encoder"],
            false,
        ),
        (
            "hailo8",
            "v2.16.0",
            vec!["clip_vit_b_32", "clip_text_encoder_vitb_32"],
            true,
        ),
        (
            "hailo8l",
            "v2.18.0",
            vec!["clip_vit_b_32_image_encoder", "clip_vit_b_32_text_encoder"],
            true,
        ),
    ] {
        let (out, to) = pull_hef(&e, &hub, arch, version);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{arch} {version}: {stdout}\n{stderr}");
        let dir = to.join("hailo").join(arch);
        let mut expected: Vec<String> = hefs.iter().map(|h| format!("{h}.hef")).collect();
        if text_files {
            expected.extend(
                [
                    "clip_tokenizer.json",
                    "text_projection.npy",
                    "token_embedding_lut.npy",
                ]
                .map(String::from),
            );
        }
        expected.sort();
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        assert_eq!(found, expected, "{arch} {version}");
        for h in &hefs {
            assert_eq!(
                sha256_file(&dir.join(format!("{h}.hef"))),
                sha256_file(&e.zoo.join(version).join(arch).join(format!("{h}.hef")))
            );
        }
        if text_files {
            // Exact copies of the text tower's weights, read from the pulled graph.
            let lut = hailo_clip::backends::hailo::assets::read_matrix(
                &dir.join("token_embedding_lut.npy"),
            )
            .unwrap();
            let proj =
                hailo_clip::backends::hailo::assets::read_matrix(&dir.join("text_projection.npy"))
                    .unwrap();
            let digest = |a: &ndarray::Array2<f32>| {
                let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
                hailo_clip::fetch::hex(&Sha256::digest(bytes))
            };
            assert_eq!(lut.shape(), [49408, 32]);
            assert_eq!(
                digest(&lut),
                weights["token_embedding"]["sha256"].as_str().unwrap()
            );
            assert_eq!(
                digest(&proj),
                weights["text_projection"]["sha256"].as_str().unwrap()
            );
            let check = hailo_clip()
                .arg("check-text-assets")
                .arg(&dir)
                .output()
                .unwrap();
            assert!(check.status.success(), "{}", text(&check).1);
        }
    }
    // The first image HEF was cut and resumed.
    assert!(hub.requests().iter().any(|r| r["headers"]
        .get("range")
        .is_some_and(|v| v == "bytes=100000-")));

    // A key that does not exist: S3's 403 AccessDenied (no list permission) in words.
    let (out, _) = pull_hef(&e, &hub, "hailo8l", "v2.17.0");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("clip_vit_b_32_image_encoder.hef is not in Model Zoo v2.17.0 for hailo8l")
            && stderr.contains("HTTP 403 AccessDenied"),
        "{stderr}"
    );
    drop(hub);
    let listable = StandIn::start(&e.hub, Some(&e.zoo), &["--zoo-listable"]);
    let (out, _) = pull_hef(&e, &listable, "hailo8l", "v2.17.0");
    assert!(
        text(&out).1.contains("HTTP 404 NoSuchKey"),
        "{}",
        text(&out).1
    );
    // A name with no twin lists those that have one.
    let out = pull(
        &listable.endpoint(),
        &[
            "ViT-H-14__laion2b-s32b-b79k",
            "--to",
            e.models.join("h").to_str().unwrap(),
            "--hef",
            "--arch",
            "hailo10h",
            "--zoo-version",
            "v5.2.0",
        ],
        &[("HAILO_CLIP_ZOO_URL", &listable.zoo_url())],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("ViT-H-14__laion2b-s32b-b79k has no twin")
            && stderr.contains("ViT-B-32__openai"),
        "{stderr}"
    );
}

#[test]
fn a_hef_that_differs_from_its_etag_is_refused() {
    let e = env();
    publish_hef(
        &e.zoo,
        "v5.1.0",
        "hailo10h",
        "clip_vit_b_32_image_encoder",
        200_000,
    );
    let hub = StandIn::start(
        &e.hub,
        Some(&e.zoo),
        &["--flip", "clip_vit_b_32_image_encoder.hef=777"],
    );
    let (out, to) = pull_hef(&e, &hub, "hailo10h", "v5.1.0");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("clip_vit_b_32_image_encoder.hef: MD5 (S3 ETag) mismatch"),
        "{stderr}"
    );
    assert!(!to.exists());
    // A multipart ETag is no MD5: size only, and the flipped byte is not seen. Said so here
    // because it is the bucket's limit, not pull's.
    drop(hub);
    let multipart = StandIn::start(&e.hub, Some(&e.zoo), &["--multipart-etag"]);
    let (out, _) = pull_hef(&e, &multipart, "hailo10h", "v5.1.0");
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn a_re_run_continues_the_part_an_earlier_run_left() {
    let e = env();
    let hub = StandIn::start(&e.hub, None, &[]);
    // What an earlier run that gave up mid-file left: the staging directory beside the
    // destination, named by the commit, holding the first bytes of the image encoder.
    let listing: serde_json::Value = serde_json::from_str(
        &ureq::get(format!(
            "{}/api/models/{REPO}/revision/main?blobs=true",
            hub.endpoint()
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap(),
    )
    .unwrap();
    let commit = listing["sha"].as_str().unwrap();
    let staging = e.models.join(format!(".{NAME}.pull-{}", &commit[..12]));
    std::fs::create_dir_all(staging.join("visual")).unwrap();
    let published = std::fs::read(e.hub.join(REPO).join("visual/model.onnx")).unwrap();
    std::fs::write(
        staging.join("visual/model.onnx.part"),
        &published[..400_000],
    )
    .unwrap();
    // And a staging directory of an older commit, which is of no use now.
    std::fs::create_dir_all(e.models.join(format!(".{NAME}.pull-0123456789ab"))).unwrap();

    let to = e.models.join(NAME);
    let out = pull(&hub.endpoint(), &[NAME, "--to", to.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("fetched visual/model.onnx: ")
            && stderr.contains("resumed at 400000 bytes"),
        "{stderr}"
    );
    let ranges = cdn_ranges(&hub);
    assert_eq!(ranges, ["bytes=400000-"]);
    assert_eq!(
        std::fs::read(to.join("visual/model.onnx")).unwrap(),
        published
    );
    let left: Vec<_> = std::fs::read_dir(&e.models)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [NAME], "staging directories left behind");
}
