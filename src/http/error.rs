//! The one error type of the HTTP layer, and how every failure becomes a JSON response
//! `{"error": {"code", "message"}}` with the right status. Bad input is a 4xx, never a 500.

use axum::extract::multipart::MultipartError;
use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::types::{ErrorBody, ErrorDetail};
use crate::service::ServiceError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 503s the client should retry.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive whole within server.body_timeout_ms",
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

impl ApiError {
    /// `body` (this error in some protocol's shape) with this error's status, and its
    /// Retry-After where it has one: how every error shape is sent.
    pub(crate) fn respond(&self, body: impl serde::Serialize) -> Response {
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        })
    }
}

/// Retry-After while the device is being recovered: a recovery takes seconds (the first
/// attempt comes 1 s after the fault, then the warm-up and the self-test).
pub const RECOVERING_RETRY_AFTER_S: u32 = 5;

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::Invalid(_) => ApiError::invalid(message),
            ServiceError::UnsupportedImage(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_image_format",
                message,
            ),
            ServiceError::ImageTooLarge(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "image_too_large", message)
            }
            ServiceError::UnreadableImage(_) => ApiError::bad_request("invalid_image", message),
            ServiceError::QueueFull(_) | ServiceError::Overloaded(_) => {
                ApiError::unavailable("queue_full", message, 1)
            }
            ServiceError::DecodeMemoryBusy(_) => {
                ApiError::unavailable("decode_memory_busy", message, 1)
            }
            ServiceError::Busy(_) => ApiError::unavailable("device_busy", message, 1),
            ServiceError::DeviceRecovering(_) => {
                ApiError::unavailable("device_recovering", message, RECOVERING_RETRY_AFTER_S)
            }
            ServiceError::ShuttingDown => ApiError::unavailable("shutting_down", message, 5),
            ServiceError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
            }
            ServiceError::DeviceTimeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "device_timeout", message)
            }
            ServiceError::Inference(_)
            | ServiceError::UnusableEmbedding { .. }
            | ServiceError::Task { .. }
            | ServiceError::WarmUpTokenizer(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_failed",
                message,
            ),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request("invalid_json", e.body_text())
            }
            JsonRejection::JsonDataError(e) => ApiError::invalid(e.body_text()),
            JsonRejection::MissingJsonContentType(e) => ApiError::unsupported_media(e.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large("request body is over limits.max_body_bytes")
            }
            other => ApiError::bad_request("invalid_body", other.body_text()),
        }
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("request body is over limits.max_body_bytes")
        } else {
            ApiError::bad_request("invalid_multipart", e.body_text())
        }
    }
}
