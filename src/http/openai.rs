//! OpenAI's embeddings API, translated onto the service: `POST /v1/embeddings` and
//! `GET /v1/models`, so the official `openai` clients work unchanged. Errors on these routes
//! take OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
//!
//! Two details from the `openai` Python client (`openai/resources/embeddings.py`): it asks
//! for `encoding_format: "base64"` unless told otherwise, and decodes the string as
//! little-endian float32; and it sends `model` and `input` always. Images come in as data
//! URIs with `"modality": "image"`, as infinity does; no URL is ever fetched.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{decode_image_field, Admitted};
use super::AppState;

/// An error in OpenAI's shape; `param` names the field at fault.
pub(crate) fn openai_error(e: ApiError, param: Option<&str>) -> Response {
    let kind = if e.status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    e.respond(
        json!({"error": {"message": e.message, "type": kind, "param": param, "code": e.code}}),
    )
}

/// One input string, or a list of 1 to `limits.max_embed_texts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    #[schema(title = "one")]
    One(String),
    #[schema(title = "many")]
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian float32, base64 (the `openai` Python client's default).
    Base64,
}

#[derive(Debug, Deserialize, ToSchema, Clone, Copy, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    #[default]
    Text,
    /// Each input is an image as a `data:image/...;base64,` URI.
    Image,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// The served model's name (`GET /v1/models`).
    pub model: String,
    /// Texts, or with `modality: image` data URIs of images.
    #[schema(value_type = super::types::Texts)]
    pub input: EmbeddingInput,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Only the model's own dimension is served.
    #[serde(default, deserialize_with = "super::types::integral_u32")]
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub dimensions: Option<u32>,
    /// Accepted and ignored, as OpenAI's end-user id.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub modality: Option<Modality>,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingData {
    /// Always "embedding".
    #[schema(value_type = String)]
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingVector,
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    /// Always "list".
    #[schema(value_type = String)]
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    /// invalid_request_error | server_error
    #[schema(value_type = String)]
    pub r#type: String,
    pub param: Option<String>,
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct OpenAiError {
    pub error: OpenAiErrorDetail,
}

/// Little-endian float32 bytes, base64: what the `openai` client decodes.
pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[utoipa::path(post, path = "/v1/embeddings",
    request_body(content = EmbeddingsRequest, content_type = "application/json"),
    responses((status = 200, body = EmbeddingsResponse)))]
pub async fn embeddings(admitted: Result<Admitted, ApiError>, request: Request) -> Response {
    let service = match admitted {
        Ok(Admitted { service, .. }) => service,
        Err(e) => return openai_error(e, None),
    };
    let body: EmbeddingsRequest = match super::extract::json(request).await {
        Ok(b) => b,
        Err(e) => return openai_error(e, None),
    };
    let model = service.model();
    if body.model != model.name {
        return openai_error(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!(
                    "The model `{}` does not exist: this server serves `{}`",
                    body.model, model.name
                ),
            ),
            Some("model"),
        );
    }
    if let Some(d) = body.dimensions {
        if d as usize != model.embedding_dim {
            return openai_error(
                ApiError::invalid(format!(
                    "dimensions {d} is not served: {} gives {}-dimensional embeddings only",
                    model.name, model.embedding_dim
                )),
                Some("dimensions"),
            );
        }
    }
    let inputs = match body.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    let limit = service.limits().max_embed_texts;
    if inputs.is_empty() || inputs.len() > limit {
        return openai_error(
            ApiError::invalid(format!(
                "input must hold 1 to {limit} items (limits.max_embed_texts), got {}",
                inputs.len()
            )),
            Some("input"),
        );
    }
    let (vectors, tokens) = match body.modality.unwrap_or_default() {
        Modality::Text => {
            let tokens = match inputs
                .iter()
                .map(|t| service.count_tokens(t))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(t) => t.into_iter().sum(),
                Err(e) => return openai_error(e.into(), Some("input")),
            };
            match service.embed_texts(&inputs).await {
                Ok(v) => (v, tokens),
                Err(e) => return openai_error(e.into(), Some("input")),
            }
        }
        Modality::Image => {
            let mut vectors = Vec::with_capacity(inputs.len());
            for (i, uri) in inputs.iter().enumerate() {
                if !uri.starts_with("data:") {
                    return openai_error(
                        ApiError::bad_request(
                            "invalid_image",
                            format!("input[{i}] must be a data:image/...;base64, URI (URLs are never fetched)"),
                        ),
                        Some("input"),
                    );
                }
                let bytes = match decode_image_field(uri) {
                    Ok(b) => b,
                    Err(e) => return openai_error(e, Some("input")),
                };
                match service.embed_image(bytes).await {
                    Ok(v) => vectors.push(v),
                    Err(e) => return openai_error(e.into(), Some("input")),
                }
            }
            (vectors, 0)
        }
    };
    let base64 = body.encoding_format == Some(EncodingFormat::Base64);
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: "embedding",
            index,
            embedding: if base64 {
                EmbeddingVector::Base64(base64_f32(&v))
            } else {
                EmbeddingVector::Float(v)
            },
        })
        .collect();
    Json(EmbeddingsResponse {
        object: "list",
        data,
        model: model.name.clone(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
    .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct ModelCard {
    pub id: String,
    /// Always "model".
    #[schema(value_type = String)]
    pub object: &'static str,
    /// Unix time the process started serving the model.
    pub created: u64,
    /// Always "hailo-clip".
    #[schema(value_type = String)]
    pub owned_by: &'static str,
    /// What the model takes, as llama.cpp's server lists it (Frigate reads it).
    pub architecture: Architecture,
}

#[derive(Serialize, ToSchema)]
pub struct Architecture {
    /// Always ["text", "image"].
    #[schema(value_type = Vec<String>)]
    pub input_modalities: [&'static str; 2],
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always "list".
    #[schema(value_type = String)]
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[utoipa::path(get, path = "/v1/models", responses(
    (status = 200, body = ModelList), (status = 503, body = OpenAiError)))]
pub async fn models(State(state): State<AppState>) -> Response {
    let service = match super::extract::ready_service(&state) {
        Ok(s) => s,
        Err(e) => return openai_error(e, None),
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(state.started.elapsed().as_secs());
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: service.model().name.clone(),
            object: "model",
            created,
            owned_by: "hailo-clip",
            architecture: Architecture {
                input_modalities: ["text", "image"],
            },
        }],
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
    }
}
