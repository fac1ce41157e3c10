//! Immich's remote machine-learning API, translated onto the service: `GET /ping` and
//! `POST /predict` for CLIP (smart search). Everything else Immich asks (faces, OCR) goes
//! unchanged to a stock immich-machine-learning at `immich.upstream_url`, or gets 501.
//!
//! The contract, from immich-app/immich `machine-learning/immich_ml/main.py`:
//! * `/predict` takes multipart fields `entries` (JSON `{task: {type: {"modelName", "options"?}}}`),
//!   `image` (a file part; Immich sends a Blob: filename "blob", application/octet-stream)
//!   or `text` (a form field); an image wins when both come;
//! * errors are FastAPI's `{"detail": "..."}`: 400 "Either image or text must be provided",
//!   422 "Invalid request format." for entries that do not parse;
//! * the answer is `{task: output}`, plus `imageHeight`/`imageWidth` of the decoded image;
//!   a CLIP output is the embedding serialized as a JSON array inside a *string*
//!   (`immich_ml/models/transforms.py`, `serialize_np_array`: Immich hands it to pgvector as
//!   it is);
//! * text is whitespace-collapsed before tokenizing (`clean_text` there), with no template;
//! * model names are cleaned of an `org/` prefix and `:` (`immich_ml/models/base.py`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::Admitted;
use super::AppState;
use crate::preprocess::image_dimensions;

/// FastAPI's error shape, which Immich reads.
fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": message.into() }))).into_response()
}

impl ApiError {
    /// This error in Immich's shape, keeping the status and Retry-After.
    pub(crate) fn into_immich(self) -> Response {
        self.respond(json!({ "detail": self.message }))
    }
}

/// The multipart form of `POST /predict`, as Immich sends it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PredictForm {
    /// JSON text `{task: {type: {"modelName": str, "options"?: {}}}}`, e.g.
    /// `{"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}`.
    entries: String,
    /// The image file (Immich's preview JPEG or WebP).
    #[schema(value_type = Option<String>, format = Binary)]
    image: Option<Vec<u8>>,
    /// A search text (used when no image comes).
    text: Option<String>,
}

/// Immich's answer: the task's output, and the image's size when an image came.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PredictResponse {
    /// The unit embedding as JSON array text, e.g. `"[0.0131,-0.0229,...]"`.
    clip: Option<String>,
    #[serde(rename = "imageHeight")]
    image_height: Option<u32>,
    #[serde(rename = "imageWidth")]
    image_width: Option<u32>,
}

/// FastAPI's error body.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Detail {
    detail: String,
}

/// `GET /ping`: Immich's liveness probe (every 30 s, 2 s timeout).
#[utoipa::path(get, path = "/ping", responses((status = 200, description = "always `pong`", body = String, content_type = "text/plain")))]
pub async fn ping() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "pong",
    )
        .into_response()
}

/// A model name as Immich's ML server cleans it: no `org/` prefix, `:` as `_`.
pub fn clean_model_name(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).replace(':', "_")
}

/// One `entries` item: task ("clip"), type ("visual", "textual") and model name.
struct Entry {
    task: String,
    kind: String,
    model: String,
}

/// Parses `entries`; `None` is Immich's 422 "Invalid request format.".
fn parse_entries(text: &str) -> Option<Vec<Entry>> {
    let value: Value = serde_json::from_str(text).ok()?;
    let mut entries = Vec::new();
    for (task, types) in value.as_object()? {
        for (kind, entry) in types.as_object()? {
            let model = entry.get("modelName")?.as_str()?;
            if let Some(options) = entry.get("options") {
                options.as_object()?;
            }
            entries.push(Entry {
                task: task.clone(),
                kind: kind.clone(),
                model: model.to_string(),
            });
        }
    }
    Some(entries)
}

/// What a /predict request carried.
struct Form {
    entries: Option<String>,
    image: Option<Bytes>,
    text: Option<String>,
}

async fn read_form(request: Request) -> Result<Form, Response> {
    let invalid = || detail(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request format.");
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| invalid())?;
    let mut form = Form {
        entries: None,
        image: None,
        text: None,
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(ApiError::from(e).into_immich()),
        };
        let name = field.name().unwrap_or("").to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::from(e).into_immich())?;
        match name.as_str() {
            "entries" => form.entries = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "image" => form.image = Some(bytes),
            "text" => form.text = Some(String::from_utf8_lossy(&bytes).into_owned()),
            // FastAPI ignores form fields it was not asked for.
            _ => {}
        }
    }
    Ok(form)
}

/// `POST /predict`.
#[utoipa::path(post, path = "/predict",
    request_body(content = PredictForm, content_type = "multipart/form-data"),
    responses((status = 200, body = PredictResponse)))]
pub async fn predict(
    State(state): State<AppState>,
    admitted: Result<Admitted, ApiError>,
    request: Request,
) -> Response {
    let service = match admitted {
        Ok(Admitted { service, .. }) => service,
        Err(e) => return e.into_immich(),
    };
    // Kept whole, to forward unchanged when the request is not CLIP's. The body is already
    // in memory under limits.max_body_bytes (http/receive.rs): this only takes it.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, service.limits().max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is over limits.max_body_bytes",
            )
        }
    };
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    let form = match read_form(Request::from_parts(parts, Body::from(body.clone()))).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let Some(entries) = form.entries.as_deref().and_then(parse_entries) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request format.");
    };
    if form.image.is_none() && form.text.is_none() {
        return detail(
            StatusCode::BAD_REQUEST,
            "Either image or text must be provided",
        );
    }
    let others: Vec<&str> = entries
        .iter()
        .filter(|e| e.task != "clip")
        .map(|e| e.task.as_str())
        .collect();
    if !others.is_empty() {
        return match state.immich_upstream.as_ref() {
            Some(upstream) => upstream.forward(content_type, body).await,
            None => detail(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "hailo-clip runs only CLIP (smart search); {} needs a stock immich-machine-learning: set immich.upstream_url",
                    others.join(", ")
                ),
            ),
        };
    }
    let served = service.model();
    for entry in &entries {
        let asked = clean_model_name(&entry.model);
        match &served.immich_model {
            Some(ours) if *ours == asked => {}
            Some(ours) => {
                return detail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "model {asked} is not served here: hailo-clip serves {ours} (model {}); set Immich's CLIP model to {ours}, or point it at a server with {asked}",
                        served.name
                    ),
                )
            }
            None => {
                return detail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "model {asked} is not served here: hailo-clip's model {} equals no Immich model (its manifest has no immich_model)",
                        served.name
                    ),
                )
            }
        }
    }
    let mut answer = serde_json::Map::new();
    let wants = |kind: &str| entries.iter().any(|e| e.kind == kind);
    let embedding = if let Some(image) = form.image {
        if !wants("visual") {
            return detail(
                StatusCode::BAD_REQUEST,
                "an image was sent, but no clip visual entry asks for it",
            );
        }
        let (width, height) = match image_dimensions(&image) {
            Ok(d) => d,
            Err(e) => return ApiError::from(crate::service::ServiceError::from(e)).into_immich(),
        };
        answer.insert("imageHeight".into(), height.into());
        answer.insert("imageWidth".into(), width.into());
        service.embed_image(image.to_vec()).await
    } else {
        if !wants("textual") {
            return detail(
                StatusCode::BAD_REQUEST,
                "a text was sent, but no clip textual entry asks for it",
            );
        }
        let text = form.text.unwrap_or_default();
        let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
        service
            .embed_texts(&[collapsed])
            .await
            .map(|mut v| v.remove(0))
    };
    match embedding {
        Ok(vector) => {
            let literal = serde_json::to_string(&vector).expect("finite floats serialize");
            answer.insert("clip".into(), Value::String(literal));
            Json(Value::Object(answer)).into_response()
        }
        Err(e) => ApiError::from(e).into_immich(),
    }
}

/// A stock immich-machine-learning that answers what hailo-clip does not run.
pub struct Upstream {
    url: String,
    timeout: Duration,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Body,
    >,
}

impl Upstream {
    pub fn new(url: &str, timeout: Duration) -> Upstream {
        Upstream {
            url: format!("{}/predict", url.trim_end_matches('/')),
            timeout,
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }

    /// Sends the request body as it came and returns the upstream's answer as it is.
    async fn forward(&self, content_type: Option<HeaderValue>, body: Bytes) -> Response {
        let mut request = hyper::Request::post(&self.url);
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let request = match request.body(Body::from(body)) {
            Ok(r) => r,
            Err(e) => return detail(StatusCode::BAD_GATEWAY, format!("immich.upstream_url: {e}")),
        };
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(Body::new(body), usize::MAX)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((parts, bytes))
        };
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok((parts, bytes))) => {
                let mut response = Response::new(Body::from(bytes));
                *response.status_mut() = parts.status;
                if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                    response.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
                }
                response
            }
            Ok(Err(e)) => detail(
                StatusCode::BAD_GATEWAY,
                format!("the upstream immich-machine-learning at {} failed: {e}", self.url),
            ),
            Err(_) => detail(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the upstream immich-machine-learning at {} did not answer within immich.upstream_timeout_ms",
                    self.url
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_cleaned_as_immich_does() {
        assert_eq!(clean_model_name("ViT-B-32__openai"), "ViT-B-32__openai");
        assert_eq!(
            clean_model_name("immich-app/ViT-B-32__openai"),
            "ViT-B-32__openai"
        );
        assert_eq!(clean_model_name("ViT-B-32::openai"), "ViT-B-32__openai");
    }

    #[test]
    fn entries_parse_or_are_invalid() {
        let e = parse_entries(
            r#"{"clip": {"textual": {"modelName": "M", "options": {"language": "en"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            (e[0].task.as_str(), e[0].kind.as_str(), e[0].model.as_str()),
            ("clip", "textual", "M")
        );
        assert!(parse_entries("{").is_none());
        assert!(parse_entries(r#"{"clip": {"visual": {}}}"#).is_none());
        assert!(parse_entries(r#"{"clip": ["visual"]}"#).is_none());
        assert!(parse_entries(r#"[]"#).is_none());
    }
}
