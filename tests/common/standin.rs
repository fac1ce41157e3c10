//! The stand-in Hub and Model Zoo bucket (tests/standins/hub.py) as a child process, and a
//! scratch layout for it: `hub/ORG/NAME/` repositories and `zoo/VERSION/ARCH/NAME.hef`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{fixture, repo};

pub struct StandIn {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl StandIn {
    /// Starts the stand-in over `hub_root` (and `zoo_root`), with extra arguments (faults).
    pub fn start(hub_root: &Path, zoo_root: Option<&Path>, extra: &[&str]) -> StandIn {
        let log = hub_root.with_extension("log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/standins/hub.py"))
            .arg("--root")
            .arg(hub_root)
            .arg("--log")
            .arg(&log)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(z) = zoo_root {
            cmd.arg("--zoo-root").arg(z);
        }
        let mut child = cmd.spawn().expect("python3 runs the stand-in Hub");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("stand-in said {line:?}"))
            .parse()
            .unwrap();
        StandIn { child, port, log }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn zoo_url(&self) -> String {
        format!("http://127.0.0.1:{}/zoo", self.port)
    }

    /// Every request so far, as logged.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `root/ORG/NAME/` as a copy of the Immich-layout fixture, with what Immich's Hub repos also
/// hold and a pull must skip.
pub fn publish_fixture(root: &Path, repo_id: &str) -> PathBuf {
    publish_fixture_of(root, repo_id, "immich-tiny-random")
}

/// The Immich-layout fixture `name` published as `repo_id`, with the same extra files.
pub fn publish_fixture_of(root: &Path, repo_id: &str, name: &str) -> PathBuf {
    let dir = root.join(repo_id);
    copy_dir(&fixture(name), &dir);
    for (junk, size) in [
        ("visual/armnn/model.armnn", 200_000),
        ("textual/rknpu/rk3566/model.rknn", 200_000),
        (".gitattributes", 100),
    ] {
        let path = dir.join(junk);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![7u8; size]).unwrap();
    }
    dir
}

pub fn copy_dir(src: &Path, dst: &Path) {
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

/// A fake HEF of `size` bytes at `zoo/VERSION/ARCH/NAME.hef` (a pull checks size and ETag,
/// not what is inside).
pub fn publish_hef(zoo: &Path, version: &str, arch: &str, name: &str, size: usize) {
    let path = zoo.join(version).join(arch).join(format!("{name}.hef"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(path, bytes).unwrap();
}
