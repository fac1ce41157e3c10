//! Extractors: [`Admitted`] (the ready service and this request's admission permit, from
//! the request head) and the bodies, JSON (image as base64 or a data URI) or
//! multipart/form-data (image as a file part), turned into the service's request types. The
//! body size limit is enforced by axum's `DefaultBodyLimit` underneath both.
//!
//! The body is already in memory when these run (http/receive.rs received it under its own
//! deadline and budget, and refused it unread when the queue was full); a handler takes
//! `Admitted`, its queue place, before its body extractor parses anything.

use std::sync::Arc;

use super::error::ApiError;
use super::types::{ClassifyJson, EmbedImageJson, EmbedTextJson, Texts};
use super::AppState;
use crate::service::selftest::SelfTestOutcome;
use crate::service::{Admission, ClassifyRequest, Service};
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::Json;

/// The service, once loaded and warmed up and unless its self-test says its answers are
/// wrong (with `selftest.enforce: true`), and a queue permit held from the end of the body
/// to the answer.
pub struct Admitted {
    pub service: Arc<Service>,
    _admission: Admission,
}

impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let service = ready_service(state)?;
        let admission = service.admit()?;
        Ok(Admitted {
            service,
            _admission: admission,
        })
    }
}

/// The service, once it may answer (see [`Admitted`]), without taking a permit.
pub(crate) fn ready_service(state: &AppState) -> Result<Arc<Service>, ApiError> {
    let service = state
        .ready
        .get()
        .map(|r| r.service.clone())
        .ok_or_else(|| {
            ApiError::unavailable(
                "not_ready",
                format!("the model is still loading ({})", state.phase()),
                5,
            )
        })?;
    if !service.health().answers_trusted {
        let detail = match service.selftest() {
            SelfTestOutcome::Ran(report) => report.failure_detail(),
            other => format!("self-test {}", other.summary(true)),
        };
        return Err(ApiError::unavailable("selftest_failed", detail, 60));
    }
    Ok(service)
}

/// A /v1/classify body, JSON or multipart.
pub struct ClassifyBody(pub ClassifyRequest);

impl<S: Send + Sync> FromRequest<S> for ClassifyBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        classify_request(request).await.map(ClassifyBody)
    }
}

/// The image of a /v1/embed/image body, JSON or multipart.
pub struct ImageBody(pub Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for ImageBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        embed_image_request(request).await.map(ImageBody)
    }
}

/// The texts of a /v1/embed/text body (JSON only).
pub struct TextBody(pub Texts);

impl<S: Send + Sync> FromRequest<S> for TextBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        embed_text_request(request).await.map(TextBody)
    }
}
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

enum BodyKind {
    Json,
    Multipart,
}

fn body_kind(request: &Request) -> Result<BodyKind, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "multipart/form-data" => Ok(BodyKind::Multipart),
        "" => Err(ApiError::unsupported_media(
            "missing Content-Type: send application/json or multipart/form-data",
        )),
        other => Err(ApiError::unsupported_media(format!(
            "Content-Type {other} is not accepted: send application/json or multipart/form-data"
        ))),
    }
}

/// Base64 of either alphabet, padded or not, whitespace ignored.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes the JSON `image` field: plain base64 or `data:image/...;base64,...`.
pub fn decode_image_field(value: &str) -> Result<Vec<u8>, ApiError> {
    let payload = match value.strip_prefix("data:") {
        Some(rest) => {
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                ApiError::bad_request("invalid_base64", "data URI has no ',' before its data")
            })?;
            let media = meta.strip_suffix(";base64").ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_base64",
                    "data URI must be base64-encoded (';base64,')",
                )
            })?;
            if !media.is_empty() && !media.to_ascii_lowercase().starts_with("image/") {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_image_format",
                    format!("data URI media type {media} is not an image"),
                ));
            }
            data
        }
        None => value,
    };
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD_LENIENT
        .decode(&compact)
        .or_else(|_| URL_SAFE_LENIENT.decode(&compact))
        .map_err(|e| {
            ApiError::bad_request("invalid_base64", format!("image is not valid base64: {e}"))
        })
}

pub(crate) async fn json<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let Json(body) = Json::<T>::from_request(request, &()).await?;
    Ok(body)
}

async fn field_text(
    field: axum::extract::multipart::Field<'_>,
    name: &str,
) -> Result<String, ApiError> {
    field
        .text()
        .await
        .map_err(|e| ApiError::from(e).with_context(&format!("form field {name}")))
}

impl ApiError {
    fn with_context(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::invalid(format!("form field {name} is not a valid number: {text:?}"))
    })
}

/// A classify request from a JSON or multipart body.
async fn classify_request(request: Request) -> Result<ClassifyRequest, ApiError> {
    match body_kind(&request)? {
        BodyKind::Json => {
            let body: ClassifyJson = json(request).await?;
            Ok(ClassifyRequest {
                image: decode_image_field(&body.image.0)?,
                prompts: body.prompts.into_iter().map(|p| p.0).collect(),
                top_k: body.top_k.map(|k| k as usize),
                threshold: body.threshold,
                templates: body.template.map(|t| t.into_vec()),
            })
        }
        BodyKind::Multipart => {
            let mut multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::bad_request("invalid_multipart", e.body_text()))?;
            let mut out = ClassifyRequest::default();
            let mut templates = Vec::new();
            let mut saw_image = false;
            while let Some(field) = multipart.next_field().await? {
                let name = field.name().unwrap_or("").to_string();
                match name.as_str() {
                    "image" => {
                        out.image = field.bytes().await?.to_vec();
                        saw_image = true;
                    }
                    "prompts" | "prompt" => out.prompts.push(field_text(field, &name).await?),
                    "template" => templates.push(field_text(field, &name).await?),
                    "top_k" => {
                        let k: u32 = parse_number(&name, &field_text(field, &name).await?)?;
                        out.top_k = Some(k as usize);
                    }
                    "threshold" => {
                        out.threshold = Some(parse_number(&name, &field_text(field, &name).await?)?)
                    }
                    other => {
                        return Err(ApiError::invalid(format!(
                            "unknown form field {other:?}; expected image, prompts, top_k, threshold, template"
                        )))
                    }
                }
            }
            if !saw_image {
                return Err(ApiError::invalid("form field image is missing"));
            }
            if !templates.is_empty() {
                out.templates = Some(templates);
            }
            Ok(out)
        }
    }
}

/// The image of an embed/image request from a JSON or multipart body.
async fn embed_image_request(request: Request) -> Result<Vec<u8>, ApiError> {
    match body_kind(&request)? {
        BodyKind::Json => {
            let body: EmbedImageJson = json(request).await?;
            decode_image_field(&body.image.0)
        }
        BodyKind::Multipart => {
            let mut multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::bad_request("invalid_multipart", e.body_text()))?;
            let mut image = None;
            while let Some(field) = multipart.next_field().await? {
                if field.name() == Some("image") {
                    image = Some(field.bytes().await?.to_vec());
                    continue;
                }
                let name = field.name().unwrap_or("").to_string();
                return Err(ApiError::invalid(format!(
                    "unknown form field {name:?}; expected image"
                )));
            }
            image.ok_or_else(|| ApiError::invalid("form field image is missing"))
        }
    }
}

/// The texts of an embed/text request, and whether a single string was sent.
async fn embed_text_request(request: Request) -> Result<Texts, ApiError> {
    match body_kind(&request)? {
        BodyKind::Json => Ok(json::<EmbedTextJson>(request).await?.text),
        BodyKind::Multipart => Err(ApiError::unsupported_media(
            "embed/text takes application/json: {\"text\": \"...\"}",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_field_forms() {
        assert_eq!(decode_image_field("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_image_field("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_image_field("aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(
            decode_image_field("data:image/png;base64,aGVsbG8=").unwrap(),
            b"hello"
        );
        assert_eq!(decode_image_field("_-8").unwrap(), vec![0xff, 0xef]);
        let e = decode_image_field("not base64!").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_base64"));
        let e = decode_image_field("data:text/plain;base64,aGVsbG8=").unwrap_err();
        assert_eq!(e.status.as_u16(), 415);
        let e = decode_image_field("data:image/png,rawdata").unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
    }
}
