//! Receiving request bodies, before any handler runs, so that slow uploads cannot hold what
//! the work needs.
//!
//! A body is read whole here, under two limits of its own: it must arrive within
//! `server.body_timeout_ms` of the request's headers (a deadline, not an idle timer: a
//! client sending a byte every second never gets past it), and the bytes of bodies being
//! received at once are bounded by `limits.receiving_mb` (each body reserves its declared
//! Content-Length, or `limits.max_body_bytes` when it declares none, before a byte is read;
//! a full budget answers 503 `receiving_busy` with Retry-After). No queue permit is held
//! meanwhile: the handler takes its admission after the body is in memory. A request
//! that cannot be admitted anyway (the queue is full, the device is being recovered) is
//! refused before its body is read; a small one (up to [`DRAIN_LIMIT`]) is read and
//! discarded first, so that the connection stays usable and the client reads the answer
//! rather than a reset (a socket closed with unread bytes in it sends RST).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::AppState;

/// Budget unit: a reservation is rounded up to whole KiB.
const UNIT: usize = 1024;

/// Largest declared body read (and discarded) before an admission refusal.
pub const DRAIN_LIMIT: u64 = 64 * 1024;

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

fn has_no_body(request: &Request) -> bool {
    let method = request.method();
    (declared_length(request) == Some(0) || method == Method::GET || method == Method::HEAD)
        && request.headers().get(header::TRANSFER_ENCODING).is_none()
}

/// The middleware: receives the body whole (see the module documentation), then runs the
/// handler with it.
pub async fn receive_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if has_no_body(&request) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let receiving = state.receiving.clone();
    let refuse = |e: ApiError| super::shaped_error(&path, e);
    if let Some(ready) = state.ready.get() {
        if let Err(e) = ready.service.admission_available() {
            let declared = declared_length(&request);
            if declared.is_some_and(|n| n <= DRAIN_LIMIT) {
                let body = Limited::new(request.into_body(), DRAIN_LIMIT as usize);
                let drained = tokio::time::timeout(receiving.deadline, body.collect()).await;
                if matches!(drained, Ok(Ok(_))) {
                    return refuse(ApiError::from(e));
                }
            }
            let mut response = refuse(ApiError::from(e));
            // The body is left unread: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    }
    let declared = declared_length(&request);
    if declared.is_some_and(|n| n > receiving.max_body_bytes as u64) {
        return refuse(ApiError::too_large(
            "request body is over limits.max_body_bytes",
        ));
    }
    let reserve = declared
        .map_or(receiving.max_body_bytes, |n| n as usize)
        .div_ceil(UNIT)
        .max(1);
    let Ok(permit) = receiving
        .budget
        .clone()
        .try_acquire_many_owned(u32::try_from(reserve).unwrap_or(u32::MAX))
    else {
        return refuse(ApiError::unavailable(
            "receiving_busy",
            format!(
                "{} MiB of request bodies are being received (limits.receiving_mb); retry shortly",
                receiving.budget_mb
            ),
            1,
        ));
    };
    let (parts, body) = request.into_parts();
    let limited = Limited::new(body, receiving.max_body_bytes);
    let received = tokio::time::timeout(receiving.deadline, limited.collect()).await;
    drop(permit);
    let bytes = match received {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(ApiError::too_large(
                "request body is over limits.max_body_bytes",
            ));
        }
        Ok(Err(e)) => {
            return refuse(ApiError::bad_request(
                "invalid_body",
                format!("the request body could not be read: {e}"),
            ));
        }
        Err(_) => {
            let mut response = refuse(ApiError::body_timeout());
            // The rest of the body may still come: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
