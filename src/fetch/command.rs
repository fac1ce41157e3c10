//! The `pull` command's edge: its arguments turned into a [`PullRequest`] (with the chip and
//! Model Zoo version detected where the build can), the progress shown as a bar on a
//! terminal or a line per file otherwise, and the outcome said in one line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::hub::HubSettings;
use super::pull::{pull, HefRequest, Outcome, PullRequest};
use super::transfer::{Bar, Check, Expect, Http, Lines, Progress};
use super::zoo::{self, Arch, DEFAULT_ZOO_URL};
use super::FetchError;

/// Where `pull NAME` installs by default.
pub const DEFAULT_MODELS_DIR: &str = "/usr/local/share/hailo-clip/models";

/// The installed HailoRT's version, when this build links it.
fn installed_hailort() -> Result<String, String> {
    #[cfg(any(feature = "hailo", feature = "hailo-fake"))]
    {
        crate::backends::hailo::ffi::library_version().map_err(|e| e.to_string())
    }
    #[cfg(not(any(feature = "hailo", feature = "hailo-fake")))]
    {
        Err("this binary was built without the `hailo` cargo feature, so it cannot ask HailoRT: give both --arch and --zoo-version (or --hailort-version)".into())
    }
}

pub fn pull_request(
    model: &str,
    revision: &str,
    to: Option<&Path>,
    hef: bool,
    arch: Option<&str>,
    zoo_version: Option<&str>,
    hailort_version: Option<&str>,
) -> Result<PullRequest, FetchError> {
    let (repo, name) = PullRequest::parse_repo(model)?;
    let to = to
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODELS_DIR).join(&name));
    let hef = if hef {
        let arch = match arch {
            Some(a) => Some(Arch::parse(a).ok_or_else(|| {
                FetchError::Refused(format!("--arch {a}: expected hailo10h, hailo8 or hailo8l"))
            })?),
            None => None,
        };
        let (arch, version) = match (arch, zoo_version) {
            (Some(a), Some(v)) => (a, v.to_string()),
            (arch, given) => {
                let hailort = match hailort_version {
                    // `v5.2.0` as the tags are written, or `5.2.0` as HailoRT says it.
                    Some(v) => v.trim().trim_start_matches('v').to_string(),
                    None => installed_hailort().map_err(FetchError::Refused)?,
                };
                // HailoRT 5.x drives the Hailo-10H (and -15); Hailo-8 and -8L stay on 4.x
                // (the Model Zoo README's compatibility notice). 4.x cannot tell 8 from 8L.
                let arch = match arch {
                    Some(a) => a,
                    None if hailort.starts_with("5.") => Arch::Hailo10h,
                    None => {
                        return Err(FetchError::Refused(format!(
                            "HailoRT {hailort} drives a Hailo-8 or Hailo-8L: give --arch hailo8 or --arch hailo8l"
                        )))
                    }
                };
                let version = match given {
                    Some(v) => v.to_string(),
                    None => zoo::zoo_version_for_hailort(&hailort)
                        .ok_or_else(|| {
                            FetchError::Refused(format!(
                                "no Model Zoo version is known for HailoRT {hailort}: give --zoo-version (known for {}: {})",
                                arch.as_str(),
                                zoo::known_versions(arch).join(", ")
                            ))
                        })?
                        .to_string(),
                };
                (arch, version)
            }
        };
        let version = if version.starts_with('v') {
            version
        } else {
            format!("v{version}")
        };
        let zoo_url = std::env::var("HAILO_CLIP_ZOO_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ZOO_URL.to_string());
        Some(HefRequest {
            arch,
            zoo_version: version,
            zoo_url: zoo_url.trim_end_matches('/').to_string(),
        })
    } else {
        None
    };
    Ok(PullRequest {
        repo,
        name,
        revision: revision.to_string(),
        to,
        hef,
    })
}

/// Downloads `url` into `to` (see `hailo-clip download`) and says what it got.
pub fn run_download(url: &str, to: &Path, sha256: Option<&str>) -> anyhow::Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(FetchError::Refused(format!("{url}: not an http:// or https:// URL")).into());
    }
    let check = match sha256 {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Check::Sha256(hex.to_ascii_lowercase())
        }
        Some(other) => {
            return Err(
                FetchError::Refused(format!("--sha256 {other}: expected 64 hex digits")).into(),
            )
        }
        None => Check::SizeOnly,
    };
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or(url)
        .to_string();
    let expect = Expect {
        name,
        size: None,
        check,
    };
    let bar = Bar::new();
    let progress: &dyn Progress = if std::io::stderr().is_terminal() {
        &bar
    } else {
        &Lines
    };
    let unreachable = |message: String| FetchError::Unreachable {
        what: "the server",
        url: url.to_string(),
        message,
        hint: String::new(),
    };
    let got =
        Http::new(None, None).download(url, to, &expect, progress, &|_| Ok(()), &unreachable)?;
    println!(
        "downloaded {url} to {} ({} bytes, sha256 {})",
        got.path.display(),
        got.size,
        got.sha256
    );
    Ok(())
}

/// Runs the pull and says what happened.
pub fn run_pull(request: &PullRequest) -> anyhow::Result<()> {
    let settings = HubSettings::from_env();
    let bar = Bar::new();
    let progress: &dyn Progress = if std::io::stderr().is_terminal() {
        &bar
    } else {
        &Lines
    };
    let to = request.to.display();
    match pull(request, settings, progress)? {
        Outcome::Installed {
            commit,
            fetched_bytes,
        } => println!(
            "installed {} at {commit} in {to} ({:.1} MB fetched); serve it with model.dir: {to}",
            request.repo,
            fetched_bytes as f64 / 1e6
        ),
        Outcome::AlreadyInstalled { commit } => println!(
            "{} at {commit} is already installed in {to}: nothing to do",
            request.repo
        ),
        Outcome::VerifiedOffline { commit, why } => println!(
            "offline: {why}; the installed {} at {commit} in {to} was verified (every file's size and sha256)",
            request.repo
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hailort_version_with_a_v_is_read_as_without() {
        for given in ["v5.2.0", "5.2.0"] {
            let request = pull_request(
                "ViT-B-32__openai",
                "main",
                None,
                true,
                None,
                None,
                Some(given),
            )
            .unwrap();
            let hef = request.hef.unwrap();
            assert_eq!(hef.arch, Arch::Hailo10h, "{given}");
            assert_eq!(hef.zoo_version, "v5.2.0", "{given}");
        }
        let err = pull_request("m", "main", None, true, None, None, Some("v4.23.0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HailoRT 4.23.0 drives a Hailo-8 or Hailo-8L"),
            "{err}"
        );
    }
}
