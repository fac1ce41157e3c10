//! Receiving request bodies, before any handler runs, so that slow uploads cannot hold what
//! the work needs.
//!
//! First of all ([`refuse_unexpected_body`], before access is checked), a body where the
//! route takes none is refused without reading it.
//!
//! A body is read whole here, under two limits of its own: it must arrive within
//! `server.body_timeout_ms` of the request's headers (a deadline, not an idle timer: a
//! client sending a byte every second never gets past it), and the bytes of bodies being
//! received at once are bounded by `limits.receiving_mb`. A body reserves that budget as
//! its bytes arrive, in KiB, not at its declared length (which is only checked against
//! `limits.max_body_bytes`): the buffer it is read into grows with what arrived (doubling,
//! up to the declared length), and what the buffer holds is what is reserved, so a client
//! that declares 16 MiB and sends one byte holds 1 KiB. A body that cannot reserve what
//! its next bytes need is answered 503 `receiving_busy` with
//! Retry-After, and its connection closed. Nothing is shared out per client address, which
//! a proxy in front (every client one address) would exhaust. No queue permit is held
//! meanwhile: the handler takes its admission after the body is in memory. A request
//! that cannot be admitted anyway (the queue is full, the device is being recovered) is
//! refused before its body is read; a small one (up to [`DRAIN_LIMIT`]) is read, under the
//! same budget and deadline, and discarded first, so that the connection stays usable and
//! the client reads the answer rather than a reset (a socket closed with unread bytes in
//! it sends RST).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::AppState;

/// The budget's unit: the semaphore counts KiB, and a body's buffer grows in whole KiB.
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
                // Read under the budget like any body, then dropped.
                if receive(&receiving, request.into_body(), declared)
                    .await
                    .is_ok()
                {
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

/// Reads a body whole within `server.body_timeout_ms` into a buffer that grows with what
/// arrives, reserving the receiving budget for the buffer's capacity before it grows: a
/// client holds what it sent (at most twice, and 1 KiB at the least), never what it only
/// declared. The reservation ends when the body is in memory.
async fn receive(
    receiving: &Receiving,
    mut body: Body,
    declared: Option<u64>,
) -> Result<axum::body::Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + receiving.deadline;
    // The declared length is a ceiling, not a promise: the buffer grows as bytes come,
    // doubling (so a large body is copied a few times, not once a frame) but never past it.
    let ceiling = declared.map_or(receiving.max_body_bytes, |n| {
        (n as usize).min(receiving.max_body_bytes)
    });
    let mut received: Vec<u8> = Vec::new();
    let mut reserved: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut reserved_units = 0usize;
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
        if total > received.capacity() {
            let capacity = total.max((received.capacity() * 2).min(ceiling));
            let units = capacity.div_ceil(UNIT);
            let more = receiving
                .budget
                .clone()
                .try_acquire_many_owned(u32::try_from(units - reserved_units).unwrap_or(u32::MAX))
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
                Some(permit) => permit.merge(more),
                None => reserved = Some(more),
            }
            reserved_units = units;
            received.reserve_exact(units * UNIT - received.len());
        }
        received.extend_from_slice(&data);
    }
    drop(reserved);
    Ok(received.into())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::body::{Bytes, HttpBody};

    use super::*;

    /// A body that sends `chunks`, each its own frame, and then nothing more (pending), or
    /// ends when `ends`.
    struct Trickle {
        chunks: std::collections::VecDeque<Bytes>,
        ends: bool,
    }

    impl HttpBody for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            match self.chunks.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk)))),
                None if self.ends => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    fn body(chunks: &[&[u8]], ends: bool) -> Body {
        Body::new(Trickle {
            chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            ends,
        })
    }

    #[tokio::test]
    async fn a_body_holds_what_arrived_in_kib_not_what_it_declared() {
        let receiving = Arc::new(Receiving::new(1, 16 << 20, Duration::from_secs(60)));
        assert_eq!(receiving.budget.available_permits(), 1024);
        // 1000 bodies declaring 16 MiB, one byte each so far: 1000 KiB of 1024 held.
        let mut waiting = Vec::new();
        for _ in 0..1000 {
            let receiving = receiving.clone();
            waiting.push(tokio::spawn(async move {
                receive(&receiving, body(&[b"x"], false), Some(16 << 20)).await
            }));
        }
        while receiving.budget.available_permits() > 24 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(receiving.budget.available_permits(), 24);
        // A body that needs more than is left is refused; one that fits is read whole.
        let refused = receive(&receiving, body(&[&[0; 30 * 1024]], true), None).await;
        assert_eq!(refused.unwrap_err().code, "receiving_busy");
        let read = receive(
            &receiving,
            body(&[&[1; 10_000], &[2; 10_000]], true),
            Some(20_000),
        )
        .await
        .unwrap();
        assert_eq!(read.len(), 20_000);
        assert_eq!(
            receiving.budget.available_permits(),
            24,
            "released when read"
        );
        for task in waiting {
            task.abort();
        }
        for _ in 0..100 {
            if receiving.budget.available_permits() == 1024 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(receiving.budget.available_permits(), 1024);
    }

    #[tokio::test]
    async fn a_large_body_in_small_frames_grows_its_buffer_by_doubling() {
        let receiving = Receiving::new(64, 16 << 20, Duration::from_secs(60));
        let chunk = [7u8; 1000];
        let chunks: Vec<&[u8]> = (0..5000).map(|_| &chunk[..]).collect();
        let read = receive(&receiving, body(&chunks, true), None)
            .await
            .unwrap();
        assert_eq!(read.len(), 5_000_000);
        assert!(read.iter().all(|&b| b == 7));
        assert_eq!(receiving.budget.available_permits(), 64 * 1024);
    }
}
