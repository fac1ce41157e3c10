//! The accept loop and HTTP/1.1 connections, with the limits that keep one client from
//! taking the daemon down: hyper's header-read timer (which also closes idle keep-alive
//! connections, since it runs from the moment a connection waits for its next request),
//! a cap on open connections, and a deadline on the graceful drain.
//!
//! At the cap, a new connection takes the slot of the oldest connection that has no
//! request in progress (a half-open or idle one); only when every slot is serving a request
//! is the new connection refused. So a flood of idle or half-sent connections cannot keep a
//! real client (or the watchdog's /health probe) out, and the process never runs out of
//! file descriptors (the cap is kept below `RLIMIT_NOFILE`, raised to its hard limit).
//! Request bodies are received under their own deadline and budget (`receive.rs`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// File descriptors kept free of connections for the process itself (model files, the
/// journal, the systemd socket, the watchdog probe).
const RESERVED_FDS: u64 = 64;

/// How connections are limited.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// From a connection's start, or the end of its previous response, to the end of the
    /// next request's headers.
    pub header_timeout: Duration,
    /// How long the graceful drain may take before the remaining connections are closed.
    pub shutdown_timeout: Duration,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in
/// force, so the connection cap can stay below it.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    Ok(rlimit::Resource::NOFILE.get()?.0)
}

/// The connection cap that fits under `fd_limit`.
pub fn effective_max_connections(configured: usize, fd_limit: u64) -> usize {
    let room = fd_limit.saturating_sub(RESERVED_FDS).max(1);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// One open connection, as the accept loop sees it.
struct Slot {
    /// A request is being served (headers read, response not yet handed back).
    busy: Arc<AtomicBool>,
    /// Fired to close the connection at once (it lost its slot).
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    /// By age: the first idle entry is the oldest idle connection.
    open: BTreeMap<u64, Slot>,
}

/// What the accept loop did, for tests and logs.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicUsize,
    pub evicted: AtomicUsize,
    pub refused: AtomicUsize,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish for up to `limits.shutdown_timeout`, and closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Mutex::new(Slots::default()));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connection tasks as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a moment rather than spin; the cap below
                    // the fd limit makes this rare.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((id, busy, evict)) = take_slot(&slots, limits.max_connections, &stats) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let busy_flag = busy.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let app = app.clone();
            let busy = busy_flag.clone();
            busy.store(true, Ordering::SeqCst);
            // The peer's address, for server.allow_from.
            request.extensions_mut().insert(ConnectInfo(peer));
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await;
                busy.store(false, Ordering::SeqCst);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut drain = drain_rx.clone();
        let slots = slots.clone();
        let stats = stats.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = evict.notified() => {}
                _ = async { drain.wait_for(|d| *d).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
            let mut s = slots.lock().unwrap_or_else(|p| p.into_inner());
            if s.open.remove(&id).is_some() {
                stats.open.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connections still open after server.shutdown_timeout_ms ({} ms): closing them",
            connections.len(),
            limits.shutdown_timeout.as_millis()
        );
        connections.abort_all();
    }
}

/// A slot for a new connection: a free one, or the oldest idle connection's (which is
/// closed); `None` when every connection is serving a request.
fn take_slot(
    slots: &Mutex<Slots>,
    max: usize,
    stats: &ConnectionStats,
) -> Option<(u64, Arc<AtomicBool>, Arc<Notify>)> {
    let mut s = slots.lock().unwrap_or_else(|p| p.into_inner());
    if s.open.len() >= max {
        let idle = s
            .open
            .iter()
            .find(|(_, slot)| !slot.busy.load(Ordering::SeqCst))
            .map(|(id, _)| *id);
        match idle {
            Some(id) => {
                let slot = s.open.remove(&id).expect("found above");
                slot.evict.notify_one();
                stats.open.fetch_sub(1, Ordering::SeqCst);
                stats.evicted.fetch_add(1, Ordering::SeqCst);
            }
            None => {
                stats.refused.fetch_add(1, Ordering::SeqCst);
                return None;
            }
        }
    }
    let id = s.next_id;
    s.next_id += 1;
    let busy = Arc::new(AtomicBool::new(false));
    let evict = Arc::new(Notify::new());
    s.open.insert(
        id,
        Slot {
            busy: busy.clone(),
            evict: evict.clone(),
        },
    );
    stats.open.fetch_add(1, Ordering::SeqCst);
    Some((id, busy, evict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_fd_limit() {
        assert_eq!(effective_max_connections(512, 1024), 512);
        assert_eq!(effective_max_connections(2048, 1024), 960);
        assert_eq!(effective_max_connections(512, 10), 1);
    }

    #[test]
    fn a_full_table_evicts_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let slots = Mutex::new(Slots::default());
        let stats = ConnectionStats::default();
        let (a, a_busy, _) = take_slot(&slots, 2, &stats).unwrap();
        let (b, _, b_evict) = take_slot(&slots, 2, &stats).unwrap();
        a_busy.store(true, Ordering::SeqCst);
        // b is idle: it makes room, and is told to close.
        let (c, c_busy, _) = take_slot(&slots, 2, &stats).unwrap();
        assert_eq!(stats.evicted.load(Ordering::SeqCst), 1);
        let open: Vec<u64> = slots.lock().unwrap().open.keys().copied().collect();
        assert_eq!(open, [a, c]);
        assert_ne!(b, c);
        let told = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(1), b_evict.notified()).await
            });
        assert!(told.is_ok(), "the evicted connection was not told");
        // Everything busy: refused, and the busy ones keep their slots.
        c_busy.store(true, Ordering::SeqCst);
        assert!(take_slot(&slots, 2, &stats).is_none());
        assert_eq!(stats.refused.load(Ordering::SeqCst), 1);
        assert_eq!(stats.open.load(Ordering::SeqCst), 2);
    }
}
