//! The `pull` command's edge: its arguments turned into a [`PullRequest`] (with the chip and
//! Model Zoo version detected where the build can), the progress shown as a bar on a
//! terminal or a line per file otherwise, and the outcome said in one line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::hub::HubSettings;
use super::pull::{pull, HefRequest, Outcome, PullRequest};
use super::transfer::{Bar, Lines, Progress};
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
                    Some(v) => v.to_string(),
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
