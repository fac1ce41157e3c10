//! The HTTP layer (axum): shared state, the router, request logging, and the server's
//! life cycle (bind, load in the background while /health says "starting", serve, drain).

pub mod access;
pub mod error;
pub mod extract;
pub mod immich;
pub mod llamacpp;
pub mod openai;
pub mod openapi;
pub mod page;
pub mod receive;
pub mod routes;
pub mod server;
pub mod types;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::metrics::Metrics;
use crate::service::Service;
use error::ApiError;

/// Methods counted under their own name in metrics; any other is "other", so a client
/// cannot create a new time series with `curl -X WHATEVER`.
const METHOD_LABELS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// A loaded, warmed-up service and how its backend was chosen.
pub struct Ready {
    pub service: Arc<Service>,
    pub backend: crate::encoder::Backend,
    pub reason: String,
}

/// State shared by the handlers: empty until the model has loaded and warmed up.
#[derive(Clone)]
pub struct AppState {
    pub ready: Arc<OnceLock<Ready>>,
    pub started: Instant,
    phase: Arc<Mutex<String>>,
    /// Request counts and latencies (the engine's own metrics live in the service).
    pub metrics: Arc<Metrics>,
    /// Open, evicted and refused connections (the accept loop's counts).
    pub connections: Arc<server::ConnectionStats>,
    /// Where Immich's non-CLIP /predict requests go (`immich.upstream_url`).
    pub immich_upstream: Option<Arc<immich::Upstream>>,
    /// Who may use the daemon (`server.allow_from`, `server.api_keys_file`).
    pub access: Arc<access::Access>,
    /// How request bodies are received (`server.body_timeout_ms`, `limits.receiving_mb`).
    pub receiving: Arc<receive::Receiving>,
    /// What marks an image in llama.cpp's `/embeddings` content (`llamacpp.media_marker`,
    /// or drawn at start as llama.cpp's server does).
    pub media_marker: Arc<str>,
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

impl AppState {
    pub fn new() -> AppState {
        AppState {
            ready: Arc::new(OnceLock::new()),
            started: Instant::now(),
            phase: Arc::new(Mutex::new("starting".into())),
            metrics: Arc::new(Metrics::new()),
            connections: Arc::new(server::ConnectionStats::default()),
            immich_upstream: None,
            access: Arc::new(access::Access::default()),
            receiving: Arc::new(receive::Receiving::default()),
            media_marker: llamacpp::random_media_marker().into(),
        }
    }

    /// Marks images in llama.cpp's `/embeddings` content with `marker`.
    pub fn with_media_marker(mut self, marker: &str) -> AppState {
        self.media_marker = marker.into();
        self
    }

    /// Restricts who may use the daemon.
    pub fn with_access(mut self, access: access::Access) -> AppState {
        self.access = Arc::new(access);
        self
    }

    /// Receives bodies within these limits.
    pub fn with_receiving(mut self, receiving: receive::Receiving) -> AppState {
        self.receiving = Arc::new(receiving);
        self
    }

    /// Sends Immich's non-CLIP requests to `upstream`.
    pub fn with_immich_upstream(mut self, upstream: immich::Upstream) -> AppState {
        self.immich_upstream = Some(Arc::new(upstream));
        self
    }

    /// What start-up is doing now, for /health while not ready.
    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase.into();
    }

    pub fn phase(&self) -> String {
        self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a route takes, known before a request's body is read.
#[derive(Debug, Clone)]
pub(crate) struct RouteRule {
    /// The method it answers (GET routes also answer HEAD).
    pub method: Method,
    pub takes_body: bool,
}

/// The routes of [`router`], for the checks made before a body is read (receive.rs).
pub(crate) fn route_rule(path: &str) -> Option<RouteRule> {
    let (method, takes_body) = match path {
        p if GET_ROUTES.contains(&p) => (Method::GET, false),
        p if POST_ROUTES.contains(&p) => (Method::POST, true),
        _ => return None,
    };
    Some(RouteRule { method, takes_body })
}

/// The routes answering GET (and HEAD), with no body, and those answering POST with one.
const GET_ROUTES: &[&str] = &[
    "/",
    "/health",
    "/ping",
    "/v1/models",
    "/props",
    "/metrics",
    "/openapi.json",
];
const POST_ROUTES: &[&str] = &[
    "/predict",
    "/v1/embeddings",
    "/embeddings",
    "/v1/classify",
    "/v1/embed/image",
    "/v1/embed/text",
];

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/health", get(routes::health))
        .route("/ping", get(immich::ping))
        .route("/predict", post(immich::predict))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/props", get(llamacpp::props))
        .route("/embeddings", post(llamacpp::embeddings))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/classify", post(routes::classify))
        .route("/v1/embed/image", post(routes::embed_image))
        .route("/v1/embed/text", post(routes::embed_text))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            receive::receive_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::check_access,
        ))
        .layer(middleware::from_fn(receive::refuse_unexpected_body))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the service log)",
                )
                .into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// `error` as the route at `path` words its errors: Immich's shape on /predict, OpenAI's on
/// /v1/embeddings and /v1/models, llama.cpp's on /embeddings and /props,
/// `{"error": {"code", "message"}}` elsewhere. For what answers before a handler runs
/// (access, receiving).
pub(crate) fn shaped_error(path: &str, error: ApiError) -> Response {
    match path {
        "/predict" => error.into_immich(),
        "/v1/embeddings" | "/v1/models" => openai::openai_error(error, None),
        "/embeddings" | "/props" => llamacpp::llamacpp_error(error),
        _ => error.into_response(),
    }
}

/// One log line per request (method, path, status, latency), and the request metrics.
async fn log_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // The route template that matched (never the raw path), or "other" for the fallback.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let response = next.run(request).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    let method_label = METHOD_LABELS
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other");
    state.metrics.record(|| {
        metrics::counter!("hailo_clip_http_requests_total", "route" => route.clone(), "method" => method_label, "status" => status.to_string())
            .increment(1);
        metrics::histogram!("hailo_clip_http_request_duration_seconds", "route" => route).record(latency_ms / 1000.0);
    });
    if status >= 500 {
        tracing::warn!("{method} {path} -> {status} in {latency_ms:.1} ms");
    } else {
        tracing::info!("{method} {path} -> {status} in {latency_ms:.1} ms");
    }
    response
}

/// The listening socket systemd hands over (socket activation: `LISTEN_FDS`, with
/// `LISTEN_PID` this process, as sd_listen_fds(3) checks), or None when there is none.
/// The variables stay in the environment: sd_notify 0.5's `listen_fds` reads them and
/// leaves them (its `listen_fds_with_unset` may only run before any thread starts, and
/// this runs inside the runtime). Nothing here starts a child process that could inherit
/// them, and a child would ignore them anyway (`LISTEN_PID` is ours). More than one socket,
/// or one that is not a listening TCP socket, is an error naming the unit to fix.
pub fn inherited_listener() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    let fds: Vec<_> = sd_notify::listen_fds()
        .map_err(|e| anyhow::anyhow!("socket activation: LISTEN_FDS is unusable: {e}"))?
        .collect();
    let fd = match fds.as_slice() {
        [] => return Ok(None),
        [fd] => *fd,
        more => anyhow::bail!(
            "socket activation: systemd passed {} sockets; hailo-clip.socket must have one ListenStream=",
            more.len()
        ),
    };
    // SAFETY: sd_listen_fds' contract: the fd is open and ours from here on, and nothing
    // else in this process owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener
        .set_nonblocking(true)
        .and_then(|()| listener.local_addr().map(drop))
        .map_err(|e| {
            anyhow::anyhow!(
                "socket activation: the socket systemd passed (fd {fd}) is not a listening TCP socket ({e}); hailo-clip.socket needs ListenStream=ADDRESS:PORT"
            )
        })?;
    Ok(Some(tokio::net::TcpListener::from_std(listener)?))
}

/// Binds the address, with an error that says what to do when the port is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another process holds the port: stop it, or set server.port in the config)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// The table the body checks use says what the router does: each route answers its
    /// method (no 404 or 405), and refuses the other with 405.
    #[tokio::test]
    async fn route_rules_match_the_router() {
        let app = router(AppState::new(), 1 << 20);
        let call = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(request)
        };
        for (routes, method, other) in [
            (GET_ROUTES, Method::GET, Method::POST),
            (POST_ROUTES, Method::POST, Method::GET),
        ] {
            for path in routes {
                let rule = route_rule(path).unwrap();
                assert_eq!(rule.method, method);
                let status = call(method.clone(), path).await.unwrap().status();
                assert!(status != 404 && status != 405, "{method} {path}: {status}");
                let status = call(other.clone(), path).await.unwrap().status();
                assert_eq!(status, 405, "{other} {path}");
            }
        }
        assert!(route_rule("/nowhere").is_none());
        let status = call(Method::GET, "/nowhere").await.unwrap().status();
        assert_eq!(status, 404);
    }
}
