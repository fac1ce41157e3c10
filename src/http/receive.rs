//! Receiving request bodies, before any handler runs, so that slow uploads cannot hold what
//! the work needs.
//!
//! First of all ([`refuse_unexpected_body`], before access is checked), a body where the
//! route takes none is refused without reading it.
//!
//! A body is read whole here, under two limits of its own: it must arrive within
//! `server.body_timeout_ms` of the request's headers (a deadline, not an idle timer: a
//! client sending a byte every second never gets past it), and the bytes of bodies being
//! received at once are bounded by `limits.receiving_mb`. A body reserves that budget in
//! steps of [`STEP`] as its bytes arrive, not at its declared length (which is only checked
//! against `limits.max_body_bytes`): a client that declares 16 MiB and trickles holds what
//! it sent. A body that cannot get its next step is answered 503 `receiving_busy` with
//! Retry-After, and its connection closed. Nothing is shared out per client address, which
//! a proxy in front (every client one address) would exhaust. No queue permit is held
//! meanwhile: the handler takes its admission after the body is in memory. A request
//! that cannot be admitted anyway (the queue is full, the device is being recovered) is
//! refused before its body is read; a small one (up to [`DRAIN_LIMIT`]) is read and
//! discarded first, so that the connection stays usable and the client reads the answer
//! rather than a reset (a socket closed with unread bytes in it sends RST).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, Limited};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::AppState;

/// The budget's unit: the semaphore counts KiB.
const UNIT: usize = 1024;

/// Largest declared body read (and discarded) before an admission refusal.
pub const DRAIN_LIMIT: u64 = 64 * 1024;

/// How much of the receiving budget a body takes at a time, as its bytes arrive.
pub const STEP: usize = 64 * 1024;

/// How bodies are received (see the module documentation).
#[derive(Debug)]
pub struct Receiving {
    /// `limits.receiving_mb`, in KiB permits.
    budget: Arc<Semaphore>,
    budget_mb: u64,
    max_body_bytes: usize,
    /// `server.body_timeout_ms`.
    deadline: Duration,
}

impl Receiving {
    pub fn new(receiving_mb: u64, max_body_bytes: usize, body_timeout: Duration) -> Receiving {
        let permits = usize::try_from(receiving_mb)
            .unwrap_or(usize::MAX)
            .saturating_mul(1024 * 1024 / UNIT)
            .min(Semaphore::MAX_PERMITS);
        Receiving {
            budget: Arc::new(Semaphore::new(permits)),
            budget_mb: receiving_mb,
            max_body_bytes,
            deadline: body_timeout,
        }
    }
}

impl Default for Receiving {
    fn default() -> Self {
        let config = crate::config::Config::default();
        Receiving::new(
            config.limits.receiving_mb,
            config.limits.max_body_bytes,
            Duration::from_millis(config.server.body_timeout_ms),
        )
    }
}

/// The body's declared length, when it declares one.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a request carries a body: a declared length over 0, or any Transfer-Encoding.
fn carries_body(request: &Request) -> bool {
    declared_length(request).is_some_and(|n| n > 0)
        || request.headers().contains_key(header::TRANSFER_ENCODING)
}

/// The response to a request refused before its body was read: the unread body cannot be
/// told from the next request, so the connection closes after it.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The outermost check, before access and before a byte of the body is read or any budget
/// reserved: a body where the route takes none is refused at once (404 for an unknown path,
/// 405 for a method the route does not allow, 400 `unexpected_body` for a GET or HEAD on
/// the routes that answer them: /health, /ping, /, /metrics, /v1/models, /openapi.json).
/// No key is needed to be refused, so nothing keyless can hold the receiving budget.
pub async fn refuse_unexpected_body(request: Request, next: Next) -> Response {
    if !carries_body(&request) {
        return next.run(request).await;
    }
    let path = request.uri().path();
    let method = request.method();
    let refusal = match super::route_rule(path) {
        None => Some(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        )),
        // GET routes answer HEAD too; a method the route does not take is 405 whatever it
        // carries (a GET with a body on a POST route included).
        Some(rule)
            if rule.method != method && !(rule.method == Method::GET && method == Method::HEAD) =>
        {
            Some(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            ))
        }
        Some(rule) if !rule.takes_body => Some(ApiError::bad_request(
            "unexpected_body",
            format!("{method} {path} takes no request body"),
        )),
        Some(_) => None,
    };
    match refusal {
        Some(error) => closing(super::shaped_error(path, error)),
        None => next.run(request).await,
    }
}

/// The middleware: receives the body whole (see the module documentation), then runs the
/// handler with it.
pub async fn receive_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !carries_body(&request) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let receiving = state.receiving.clone();
    let refuse = |e: ApiError| super::shaped_error(&path, e);
    let declared = declared_length(&request);
    if declared.is_some_and(|n| n > receiving.max_body_bytes as u64) {
        return closing(refuse(ApiError::too_large(
            "request body is over limits.max_body_bytes",
        )));
    }
    if let Some(ready) = state.ready.get() {
        if let Err(e) = ready.service.admission_available() {
            if declared.is_some_and(|n| n <= DRAIN_LIMIT) {
                let body = Limited::new(request.into_body(), DRAIN_LIMIT as usize);
                let drained = tokio::time::timeout(receiving.deadline, body.collect()).await;
                if matches!(drained, Ok(Ok(_))) {
                    return refuse(ApiError::from(e));
                }
            }
            return closing(refuse(ApiError::from(e)));
        }
    }
    let (parts, body) = request.into_parts();
    let bytes = match receive(&receiving, body, declared).await {
        Ok(bytes) => bytes,
        // Whatever was not read may still come: the connection cannot carry another request.
        Err(error) => return closing(refuse(error)),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Reads a body whole within `server.body_timeout_ms`, reserving the receiving budget
/// [`STEP`] by step as its bytes arrive: a client holds what it sent, never what it only
/// declared. The reservation ends when the body is in memory.
async fn receive(
    receiving: &Receiving,
    mut body: Body,
    declared: Option<u64>,
) -> Result<axum::body::Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + receiving.deadline;
    // The declared length is a ceiling, not a promise: start no bigger than one step.
    let first = declared.map_or(STEP, |n| (n as usize).min(STEP));
    let mut received: Vec<u8> = Vec::with_capacity(first);
    let mut reserved: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut reserved_bytes = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::body_timeout()),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("the request body could not be read: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = received.len() + data.len();
        if total > receiving.max_body_bytes {
            return Err(ApiError::too_large(
                "request body is over limits.max_body_bytes",
            ));
        }
        while reserved_bytes < total {
            let step = receiving
                .budget
                .clone()
                .try_acquire_many_owned((STEP / UNIT) as u32)
                .map_err(|_| {
                    ApiError::unavailable(
                        "receiving_busy",
                        format!(
                            "{} MiB of request bodies are being received (limits.receiving_mb); retry shortly",
                            receiving.budget_mb
                        ),
                        1,
                    )
                })?;
            match reserved.as_mut() {
                Some(permit) => permit.merge(step),
                None => reserved = Some(step),
            }
            reserved_bytes += STEP;
        }
        received.extend_from_slice(&data);
    }
    drop(reserved);
    Ok(received.into())
}
