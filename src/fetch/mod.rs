//! Fetching models, for the command line only (`hailo-clip pull`): Immich's ONNX exports from
//! the Hugging Face Hub ([`hub`]) and the Model Zoo's HEFs ([`zoo`]), each file streamed to
//! disk, hashed as it arrives, resumed where a transfer was cut ([`transfer`]), and the whole
//! model moved into place only when every file is verified ([`pull`]).
//!
//! `serve` never downloads: nothing below `main` but this module reaches the network, and
//! scripts/check-layers.sh keeps the daemon's modules from using it.

pub mod command;
pub mod hub;
pub mod pull;
pub mod transfer;
pub mod zoo;

use std::path::{Path, PathBuf};

/// Why a fetch failed, in words a person can act on. Every variant names what it was about.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {what} at {url}: {message}{hint}")]
    Unreachable {
        what: &'static str,
        url: String,
        message: String,
        /// Which setting names the address (HF_ENDPOINT, HAILO_CLIP_ZOO_URL).
        hint: String,
    },
    #[error("repository {repo} was not found on {endpoint} (HTTP {status}): check the name (Immich's models are immich-app/NAME, e.g. immich-app/ViT-B-32__openai); a private or gated repository also needs HF_TOKEN")]
    RepoNotFound {
        repo: String,
        endpoint: String,
        status: u16,
    },
    #[error("repository {repo} has no revision {revision:?} on {endpoint}")]
    RevisionNotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },
    #[error("{url}: HTTP {status}{detail}")]
    Http {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    #[error("{file}: {what} mismatch: expected {expected}, got {actual}")]
    Mismatch {
        file: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{op} {path}: {problem}")]
    Disk {
        op: &'static str,
        path: PathBuf,
        problem: DiskProblem,
    },
}

/// A disk error, with the two a person fixes differently named as such.
#[derive(Debug, thiserror::Error)]
pub enum DiskProblem {
    #[error("the disk is full")]
    Full,
    #[error("permission denied (run as root, e.g. with sudo, or choose a directory you can write with --to)")]
    Permission,
    #[error("the file system is read-only (choose a directory on a writable one with --to)")]
    ReadOnly,
    #[error("{0}")]
    Other(std::io::Error),
}

impl FetchError {
    /// An I/O error while doing `op` on `path`.
    pub fn disk(op: &'static str, path: &Path, e: std::io::Error) -> FetchError {
        let problem = match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => DiskProblem::Full,
            Some(libc::EACCES) | Some(libc::EPERM) => DiskProblem::Permission,
            Some(libc::EROFS) => DiskProblem::ReadOnly,
            _ => DiskProblem::Other(e),
        };
        FetchError::Disk {
            op,
            path: path.to_path_buf(),
            problem,
        }
    }

    /// Whether trying again later could succeed (the network, a server error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, FetchError::Unreachable { .. })
    }
}

/// Hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_errors_say_full_permission_and_read_only_in_words() {
        let path = Path::new("/srv/models/m");
        let full = FetchError::disk(
            "writing",
            path,
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(full.to_string(), "writing /srv/models/m: the disk is full");
        let denied = FetchError::disk(
            "creating",
            path,
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(denied
            .to_string()
            .starts_with("creating /srv/models/m: permission denied (run as root"));
        let readonly = FetchError::disk(
            "creating",
            path,
            std::io::Error::from_raw_os_error(libc::EROFS),
        );
        assert_eq!(
            readonly.to_string(),
            "creating /srv/models/m: the file system is read-only (choose a directory on a writable one with --to)"
        );
    }
}
