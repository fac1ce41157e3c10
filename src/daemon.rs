//! The daemon's life cycle: bind, load the encoders in the background (with /health
//! answering "starting"), warm up with a real inference, serve, and on SIGTERM or SIGINT
//! stop accepting, finish in-flight requests and release the encoders.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::backends;
use crate::config::Config;
use crate::http::{self, routes::RANDOM_WEIGHTS_WARNING, AppState, Ready};
use crate::service::Service;

/// Loads the encoders and starts the service (workers running, not yet warmed up).
pub async fn load_service(config: &Config) -> anyhow::Result<(Service, &'static str, String)> {
    let cfg = config.clone();
    let encoders = tokio::task::spawn_blocking(move || backends::load(&cfg))
        .await
        .map_err(|e| anyhow::anyhow!("model loading crashed: {e}"))??;
    if encoders.model.random_weights {
        tracing::warn!("model {}: {RANDOM_WEIGHTS_WARNING}", encoders.model.name);
    }
    let (backend, reason) = (encoders.backend, encoders.reason.clone());
    let service = Service::start(encoders.image, encoders.text, encoders.tokenizer, encoders.model, config)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok((service, backend, reason))
}

async fn load_and_warm_up(config: &Config, state: &AppState) -> anyhow::Result<()> {
    state.set_phase(format!("loading encoders ({} backend requested)", config.backend.as_str()));
    tracing::info!(model_dir = %config.model.dir.display(), backend = config.backend.as_str(), "loading encoders");
    let (service, backend, reason) = load_service(config).await?;
    tracing::info!(
        backend,
        reason = %reason,
        image_encoder = %service.image_encoder().source,
        text_encoder = %service.text_encoder().source,
        "encoders loaded"
    );
    state.set_phase("warming up");
    let started = std::time::Instant::now();
    service
        .warm_up()
        .await
        .map_err(|e| anyhow::anyhow!("warm-up inference failed: {e}"))?;
    tracing::info!(warm_up_ms = started.elapsed().as_millis() as u64, "warm-up inference succeeded");
    let _ = state.ready.set(Ready {
        service: Arc::new(service),
        backend,
        reason,
    });
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the daemon until a termination signal; an error means a non-zero exit.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = http::bind(addr).await?;
    tracing::info!("listening on http://{addr}");
    let state = AppState::new();
    let app = http::router(state.clone(), config.limits.max_body_bytes);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve(listener, app, async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    let signal = termination_signal();
    tokio::pin!(signal);
    let mut load_error = None;
    tokio::select! {
        result = load_and_warm_up(&config, &state) => match result {
            Ok(()) => {
                tracing::info!("ready: serving on http://{addr}");
                (&mut signal).await;
            }
            Err(e) => load_error = Some(e),
        },
        _ = &mut signal => {},
    }

    if load_error.is_none() {
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
    }
    let _ = stop_tx.send(true);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("server error: {e}"),
        Err(e) => tracing::error!("server task failed: {e}"),
    }
    if let Some(ready) = state.ready.get() {
        ready.service.shutdown();
        tracing::info!("encoders released");
    }
    match load_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
