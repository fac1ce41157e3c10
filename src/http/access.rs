//! Who may use the daemon, decided before anything else runs:
//! * `server.allow_from`: a request from an address outside the list gets 403 on every
//!   route (counted in `hailo_clip_http_forbidden_total`). The daemon's own watchdog probe,
//!   a loopback request for /health, passes whatever the list says.
//! * `server.api_keys_file`: every route but /health, /ping and the page (/) needs
//!   `Authorization: Bearer KEY` or `X-API-Key: KEY`, and /metrics too unless
//!   `server.metrics_open`; otherwise 401 with `WWW-Authenticate: Bearer`. Keys are kept
//!   and compared as SHA-256 digests, in constant time, so that neither a key's bytes nor
//!   its length shows in the answer's timing; they are never logged. The file is refused
//!   when others can read it, and read again on SIGHUP ([`Access::reload`]).
//!
//! Errors take the route's own shape (Immich's for /predict, OpenAI's for /v1/embeddings
//! and /v1/models).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::config::{AllowedNet, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("server.api_keys_file {}: cannot read it: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("server.api_keys_file {}: others can read it (mode {mode:04o}); make it readable by the service only: chmod 600 (or 640 with the service's group)", path.display())]
    WorldReadable { path: PathBuf, mode: u32 },
    #[error("server.api_keys_file {}: holds no key (one a line; # starts a comment)", path.display())]
    NoKeys { path: PathBuf },
}

/// A key as it is kept and compared: its SHA-256 digest, the same size whatever the key.
type KeyDigest = [u8; 32];

fn digest(key: &[u8]) -> KeyDigest {
    sha2::Sha256::digest(key).into()
}

/// The keys of a key file: one a line, blank lines and `#` comments skipped.
fn read_keys(path: &Path) -> Result<Vec<KeyDigest>, KeyFileError> {
    let unreadable = |source| KeyFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        return Err(KeyFileError::WorldReadable {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let keys: Vec<KeyDigest> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| digest(l.as_bytes()))
        .collect();
    if keys.is_empty() {
        return Err(KeyFileError::NoKeys {
            path: path.to_path_buf(),
        });
    }
    Ok(keys)
}

#[derive(Debug)]
struct KeyFile {
    path: PathBuf,
    keys: RwLock<Arc<Vec<KeyDigest>>>,
}

impl KeyFile {
    /// Whether `presented` is one of the keys. Its digest is compared with every key's, each
    /// in constant time over 32 bytes, so the answer's timing says nothing about which key
    /// came close, nor how long the keys are.
    fn accepts(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut found = subtle::Choice::from(0);
        for key in keys.iter() {
            found |= key.ct_eq(&presented);
        }
        bool::from(found)
    }
}

/// The access rules of a running daemon (see the module documentation).
#[derive(Debug, Default)]
pub struct Access {
    allow_from: Vec<AllowedNet>,
    keys: Option<KeyFile>,
    metrics_open: bool,
}

impl Access {
    /// The rules `server` sets; a key file that cannot be used is a start-up error.
    pub fn from_config(server: &ServerConfig) -> Result<Access, KeyFileError> {
        let keys = match &server.api_keys_file {
            Some(path) => Some(KeyFile {
                keys: RwLock::new(Arc::new(read_keys(path)?)),
                path: path.clone(),
            }),
            None => None,
        };
        Ok(Access {
            allow_from: server.allow_from.clone(),
            keys,
            metrics_open: server.metrics_open,
        })
    }

    /// How many keys are in force (0: none required).
    pub fn key_count(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| {
            k.keys.read().unwrap_or_else(|p| p.into_inner()).len()
        })
    }

    /// Reads the key file again (SIGHUP). On an error the keys in force stay. Returns how
    /// many keys are in force now; without a key file there is nothing to read.
    pub fn reload(&self) -> Result<usize, KeyFileError> {
        let Some(file) = &self.keys else {
            return Ok(0);
        };
        let keys = read_keys(&file.path)?;
        let count = keys.len();
        *file.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(count)
    }

    /// Whether keys are required, and then whether /metrics is open: for the OpenAPI
    /// document.
    pub fn keys_required(&self) -> Option<bool> {
        self.keys.as_ref().map(|_| self.metrics_open)
    }

    fn allows(&self, peer: Option<IpAddr>, path: &str) -> bool {
        if self.allow_from.is_empty() {
            return true;
        }
        // No peer: the router called in-process (tests, the CLI), not over a socket.
        let Some(peer) = peer else { return true };
        (path == "/health" && peer.is_loopback())
            || self.allow_from.iter().any(|n| n.contains(peer))
    }

    fn needs_key(&self, path: &str) -> bool {
        self.keys.is_some()
            && !matches!(path, "/health" | "/ping" | "/")
            && !(path == "/metrics" && self.metrics_open)
    }
}

/// The key a request presents: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
fn presented_key(request: &Request) -> Option<&[u8]> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.as_bytes();
        let (scheme, rest) = value.split_at(value.len().min(7));
        if scheme.eq_ignore_ascii_case(b"bearer ") {
            return Some(rest.trim_ascii());
        }
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

/// The middleware (see the module documentation).
pub async fn check_access(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let access = &state.access;
    if !access.allows(peer, &path) {
        state
            .metrics
            .record(|| metrics::counter!("hailo_clip_http_forbidden_total").increment(1));
        return super::shaped_error(
            &path,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this address may not use the service (server.allow_from)",
            ),
        );
    }
    if access.needs_key(&path) {
        let accepted = presented_key(&request)
            .is_some_and(|k| access.keys.as_ref().is_some_and(|file| file.accepts(k)));
        if !accepted {
            let mut response = super::shaped_error(
                &path,
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this route needs an API key: send Authorization: Bearer KEY or X-API-Key: KEY",
                ),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: u32, text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn keys_are_lines_without_comments_and_a_world_readable_file_is_refused() {
        let f = file(0o600, "# keys\n  alpha \n\nbeta\n#gamma\n");
        assert_eq!(
            read_keys(f.path()).unwrap(),
            vec![digest(b"alpha"), digest(b"beta")]
        );
        let open = file(0o644, "alpha\n");
        let err = read_keys(open.path()).unwrap_err().to_string();
        assert!(err.contains("others can read it (mode 0644)"), "{err}");
        let empty = file(0o640, "# nothing\n\n");
        assert!(matches!(
            read_keys(empty.path()),
            Err(KeyFileError::NoKeys { .. })
        ));
    }

    #[test]
    fn every_key_is_accepted_and_nothing_else() {
        let f = file(0o600, "alpha\nbeta\n");
        let keys = KeyFile {
            path: f.path().to_path_buf(),
            keys: RwLock::new(Arc::new(read_keys(f.path()).unwrap())),
        };
        assert!(keys.accepts(b"alpha") && keys.accepts(b"beta"));
        for wrong in [&b""[..], b"alph", b"alphaa", b"ALPHA", b"gamma"] {
            assert!(!keys.accepts(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn loopback_health_passes_any_allow_list() {
        let access = Access {
            allow_from: vec![AllowedNet::try_from("192.168.1.0/24".to_string()).unwrap()],
            ..Access::default()
        };
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(access.allows(Some(local), "/health"));
        assert!(!access.allows(Some(local), "/v1/classify"));
        assert!(access.allows(Some("192.168.1.7".parse().unwrap()), "/v1/classify"));
        assert!(access.allows(Some("::ffff:192.168.1.7".parse().unwrap()), "/v1/classify"));
        assert!(!access.allows(Some("192.168.2.7".parse().unwrap()), "/health"));
    }
}
