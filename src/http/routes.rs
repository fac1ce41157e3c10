//! Route handlers: /health, /v1/classify, /v1/embed/image, /v1/embed/text.

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::extract::{Admitted, ClassifyBody, ImageBody, TextBody};
use super::types::{
    ClassifyForm, ClassifyJson, ClassifyResponse, DeviceBody, EmbedImageForm, EmbedImageJson,
    EmbedTextJson, EncoderBody, Health, ImageEmbedding, TextEmbedding, Texts,
};
use super::AppState;
use crate::encoder::{EncoderInfo, RANDOM_WEIGHTS_WARNING, TEST_DOUBLE_WARNING};
use crate::service::selftest::SelfTestOutcome;

#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "ready", body = Health),
    (status = 503, description = "starting or unhealthy", body = Health),
))]
pub async fn health(State(state): State<AppState>) -> Response {
    let uptime_seconds = state.started.elapsed().as_secs_f64();
    let Some(ready) = state.ready.get() else {
        let body = Health {
            status: "starting",
            service: "hailo-clip",
            model_loaded: false,
            model: None,
            scoring: None,
            backend: None,
            backend_reason: None,
            image_encoder: None,
            text_encoder: None,
            queue_depth: 0,
            queue_capacity: 0,
            workers: 0,
            workers_alive: 0,
            uptime_seconds,
            selftest: None,
            selftest_photos: None,
            selftest_smallest_margin: None,
            warning: None,
            detail: Some(state.phase()),
            device: None,
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    let service = &ready.service;
    let h = service.health();
    let ok = h.ready();
    let selftest = service.selftest();
    let enforced = service.selftest_enforced();
    let report = match &selftest {
        SelfTestOutcome::Ran(report) => Some(report),
        _ => None,
    };
    let selftest_failure = report.filter(|r| !r.passed()).map(|r| r.failure_detail());
    let mut warnings: Vec<String> = Vec::new();
    if service.model().random_weights {
        warnings.push(RANDOM_WEIGHTS_WARNING.to_string());
    }
    let on_double = |info: &EncoderInfo| info.hailo.as_ref().is_some_and(|h| h.test_double);
    if on_double(service.image_encoder()) || on_double(service.text_encoder()) {
        warnings.push(TEST_DOUBLE_WARNING.to_string());
    }
    if let (Some(failure), false) = (&selftest_failure, enforced) {
        warnings.push(format!(
            "{failure}; serving anyway because selftest.enforce is false"
        ));
    }
    let recovering = h.device.as_ref().filter(|d| d.recovering);
    // Still serving, but slower or at risk: 200 with a detail.
    let degraded = h.device.as_ref().and_then(|d| d.health.degraded());
    let detail = (!ok).then(|| {
        if let Some(device) = recovering {
            format!(
                "the Hailo device is being recovered after a fault ({}){}",
                device.last_fault.as_deref().unwrap_or("unknown"),
                device
                    .recovering_for
                    .map(|d| format!(", for {:.1} s so far", d.as_secs_f64()))
                    .unwrap_or_default()
            )
        } else if let (Some(failure), true) = (&selftest_failure, enforced) {
            failure.clone()
        } else if h.workers_alive < h.workers {
            format!("{} of {} workers are running", h.workers_alive, h.workers)
        } else if !h.last_inference_ok {
            "the most recent inference failed".to_string()
        } else {
            "warm-up has not completed".to_string()
        }
    });
    let body = Health {
        status: match (ok, recovering.is_some(), &degraded) {
            (true, _, None) => "ok",
            (true, _, Some(_)) => "degraded",
            (false, true, _) => "recovering",
            (false, false, _) => "unhealthy",
        },
        service: "hailo-clip",
        model_loaded: h.warmed_up,
        model: Some(service.model().name.clone()),
        scoring: Some(service.model().scoring()),
        backend: Some(ready.backend.into()),
        backend_reason: Some(ready.reason.clone()),
        image_encoder: Some(EncoderBody::from(service.image_encoder())),
        text_encoder: Some(EncoderBody::from(service.text_encoder())),
        queue_depth: h.queue_depth,
        queue_capacity: h.queue_capacity,
        workers: h.workers,
        workers_alive: h.workers_alive,
        uptime_seconds,
        selftest: Some(selftest.summary(enforced)),
        selftest_photos: report.map(|r| r.results.len()),
        selftest_smallest_margin: report.map(|r| r.smallest_margin()),
        warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        detail: detail.or(degraded),
        device: h.device.as_ref().map(DeviceBody::from),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text format: request metrics, and once ready the engine's.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    if let Some(ready) = state.ready.get() {
        text.push_str(&ready.service.render_metrics(ready.backend));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

#[utoipa::path(post, path = "/v1/classify",
    request_body(content((ClassifyJson = "application/json"), (ClassifyForm = "multipart/form-data")),
        description = "JSON, or multipart with fields image (file), prompts (repeated), top_k, threshold, template (repeated)"),
    responses((status = 200, body = ClassifyResponse)))]
pub async fn classify(
    Admitted { service, .. }: Admitted,
    ClassifyBody(request): ClassifyBody,
) -> Result<Json<ClassifyResponse>, ApiError> {
    Ok(Json(service.classify(request).await?.into()))
}

#[utoipa::path(post, path = "/v1/embed/image",
    request_body(content((EmbedImageJson = "application/json"), (EmbedImageForm = "multipart/form-data"))),
    responses((status = 200, body = ImageEmbedding)))]
pub async fn embed_image(
    Admitted { service, .. }: Admitted,
    ImageBody(bytes): ImageBody,
) -> Result<Json<ImageEmbedding>, ApiError> {
    let embedding = service.embed_image(bytes).await?;
    Ok(Json(ImageEmbedding {
        dimension: embedding.len(),
        embedding,
        model: service.model().name.clone(),
    }))
}

#[utoipa::path(post, path = "/v1/embed/text",
    request_body(content = EmbedTextJson, content_type = "application/json"),
    responses((status = 200, body = TextEmbedding)))]
pub async fn embed_text(
    Admitted { service, .. }: Admitted,
    TextBody(text): TextBody,
) -> Result<Json<TextEmbedding>, ApiError> {
    let model = service.model().name.clone();
    let dimension = service.model().embedding_dim;
    Ok(Json(match text {
        Texts::One(t) => {
            let mut v = service.embed_texts(&[t.0]).await?;
            TextEmbedding::One {
                embedding: v.remove(0),
                dimension,
                model,
            }
        }
        Texts::Many(list) => TextEmbedding::Many {
            embeddings: service
                .embed_texts(&list.into_iter().map(|t| t.0).collect::<Vec<_>>())
                .await?,
            dimension,
            model,
        },
    }))
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
