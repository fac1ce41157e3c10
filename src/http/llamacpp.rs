//! The part of llama.cpp server's API that Frigate's `llamacpp` GenAI provider uses for its
//! semantic search embeddings, translated onto the service: `GET /props` and
//! `POST /embeddings` here, and `architecture.input_modalities` in `GET /v1/models`
//! (openai.rs). What the client sends and reads is from blakeblackshear/frigate
//! `frigate/genai/plugins/llama_cpp.py` (commit 06ce190d94488b2cfe0714372b4f71e011884bd8:
//! `_get_model_info`, `_fetch_llama_props`, `embed`); the answers' shapes from
//! ggml-org/llama.cpp `tools/server` (`/props` in server-context.cpp; an embeddings result
//! `{"index", "embedding"}`, the embedding a list of rows, one row when pooled, in
//! server-task.cpp; errors `{"error": {"code", "message", "type"}}`).
//!
//! Surprising details, from those files: the client strips every `/v1` from its
//! `base_url`, so `/props` and `/embeddings` are asked at the root; it puts each image
//! in an item of its own, `{"prompt_string": "<marker>\n", "multimodal_data": [BASE64]}`,
//! where the marker is `/props`' `media_marker` (llama.cpp draws a new one at every start
//! unless `LLAMA_MEDIA_MARKER` is set: here `llamacpp.media_marker`); it converts every
//! image to JPEG first (PIL, quality 85); it averages an embedding with more than one row
//! and pads or cuts it to 768 values.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Admitted;
use super::AppState;

/// An error as llama.cpp's server words it: `{"error": {"code", "message", "type"}}`, with
/// the HTTP status as `code`.
pub(crate) fn llamacpp_error(e: ApiError) -> Response {
    let kind = match e.status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request_error",
    };
    e.respond(json!({"error": {"code": e.status.as_u16(), "message": e.message, "type": kind}}))
}

#[derive(Serialize, ToSchema)]
pub struct LlamaCppErrorDetail {
    /// The HTTP status.
    pub code: u16,
    pub message: String,
    /// invalid_request_error | authentication_error | permission_error | not_found_error |
    /// unavailable_error | server_error
    #[schema(value_type = String)]
    pub r#type: String,
}

#[derive(Serialize, ToSchema)]
pub struct LlamaCppError {
    pub error: LlamaCppErrorDetail,
}

/// A media marker drawn at start, as llama.cpp's server does: `<__media_` sixteen hex
/// digits `__>`. Not a secret (every client reads it from `/props`), only unlikely in text.
pub fn random_media_marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    // The standard library seeds each RandomState from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("<__media_{:016x}__>", hasher.finish())
}

/// What `/props` says the model takes.
#[derive(Serialize, ToSchema)]
pub struct Modalities {
    pub vision: bool,
    pub audio: bool,
    pub video: bool,
}

#[derive(Serialize, ToSchema)]
pub struct GenerationSettings {
    /// The text encoder's context, in tokens.
    pub n_ctx: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Props {
    pub default_generation_settings: GenerationSettings,
    /// The service's workers.
    pub total_slots: usize,
    /// The served model's name.
    pub model_alias: String,
    pub modalities: Modalities,
    /// What an image item's `prompt_string` holds (`llamacpp.media_marker`, or drawn at start).
    pub media_marker: String,
    /// Empty: no chat is served.
    pub chat_template: String,
    /// Empty: no chat is served.
    #[schema(value_type = Object)]
    pub chat_template_caps: serde_json::Value,
    pub build_info: String,
    pub is_sleeping: bool,
}

#[utoipa::path(get, path = "/props", params(("model" = Option<String>, Query, description = "ignored: one model is served")),
    responses((status = 200, body = Props), (status = 503, body = LlamaCppError)))]
pub async fn props(State(state): State<AppState>) -> Response {
    let service = match super::extract::ready_service(&state) {
        Ok(s) => s,
        Err(e) => return llamacpp_error(e),
    };
    Json(Props {
        default_generation_settings: GenerationSettings {
            n_ctx: service.context_length(),
        },
        total_slots: service.queue().worker_count(),
        model_alias: service.model().name.clone(),
        modalities: Modalities {
            vision: true,
            audio: false,
            video: false,
        },
        media_marker: state.media_marker.to_string(),
        chat_template: String::new(),
        chat_template_caps: json!({}),
        build_info: format!("hailo-clip {}", env!("CARGO_PKG_VERSION")),
        is_sleeping: false,
    })
    .into_response()
}

/// One item of `content`: a text, or an image with the media marker in `prompt_string`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentItem {
    /// The text; for an image, the media marker (and whitespace) only.
    pub prompt_string: String,
    /// One base64 image (JPEG, PNG or WebP) when `prompt_string` is the marker.
    #[serde(default)]
    pub multimodal_data: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlamaEmbeddingsRequest {
    /// The served model's name (`GET /v1/models`); may be left out.
    #[serde(default)]
    pub model: Option<String>,
    /// 1 to `limits.max_embed_texts` items, answered in order.
    #[schema(min_items = 1, max_items = 100)]
    pub content: Vec<ContentItem>,
}

#[derive(Serialize, ToSchema)]
pub struct LlamaEmbedding {
    pub index: usize,
    /// One row: the unit embedding (llama.cpp's pooled shape).
    pub embedding: Vec<Vec<f32>>,
}

/// What an item asks for, checked.
enum Wanted {
    Text(String),
    Image(Vec<u8>),
}

fn item_error(i: usize, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_content", format!("content[{i}]: {message}"))
}

/// Checks item `i` against the marker and the limits: a text, or exactly one image whose
/// `prompt_string` is the marker and nothing else but whitespace.
fn check_item(
    i: usize,
    item: ContentItem,
    marker: &str,
    max_chars: usize,
) -> Result<Wanted, ApiError> {
    let markers = item.prompt_string.matches(marker).count();
    let data = item.multimodal_data.unwrap_or_default();
    if data.is_empty() {
        if markers > 0 {
            return Err(item_error(
                i,
                format!("prompt_string holds the media marker {marker} but multimodal_data has no image"),
            ));
        }
        let chars = item.prompt_string.chars().count();
        if chars > max_chars {
            return Err(item_error(
                i,
                format!("prompt_string is {chars} characters; at most {max_chars} are allowed (limits.max_prompt_chars)"),
            ));
        }
        return Ok(Wanted::Text(item.prompt_string));
    }
    if markers != data.len() {
        return Err(item_error(
            i,
            format!(
                "prompt_string holds the media marker {marker} {markers} times for {} multimodal_data entries (GET /props gives the marker)",
                data.len()
            ),
        ));
    }
    if data.len() > 1 {
        return Err(item_error(
            i,
            format!(
                "{} images in one item: each image is embedded on its own, one item each",
                data.len()
            ),
        ));
    }
    if !item.prompt_string.replace(marker, "").trim().is_empty() {
        return Err(item_error(
            i,
            "an image item's prompt_string holds the media marker only: text beside an image is not embedded (send it as an item of its own)",
        ));
    }
    let compact: String = data[0]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| item_error(i, format!("multimodal_data[0] is not base64: {e}")))?;
    if bytes.is_empty() {
        return Err(item_error(i, "multimodal_data[0] is empty"));
    }
    Ok(Wanted::Image(bytes))
}

#[utoipa::path(post, path = "/embeddings",
    request_body(content = LlamaEmbeddingsRequest, content_type = "application/json"),
    responses((status = 200, body = [LlamaEmbedding])))]
pub async fn embeddings(
    State(state): State<AppState>,
    admitted: Result<Admitted, ApiError>,
    request: Request,
) -> Response {
    let service = match admitted {
        Ok(Admitted { service, .. }) => service,
        Err(e) => return llamacpp_error(e),
    };
    let body: LlamaEmbeddingsRequest = match super::extract::json(request).await {
        Ok(b) => b,
        Err(e) => return llamacpp_error(e),
    };
    let model = service.model();
    if let Some(asked) = body.model.as_deref().filter(|m| *m != model.name) {
        return llamacpp_error(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "model {asked:?} is not served: this server serves {:?}",
                model.name
            ),
        ));
    }
    let limit = service.limits().max_embed_texts;
    if body.content.is_empty() || body.content.len() > limit {
        return llamacpp_error(ApiError::bad_request(
            "invalid_content",
            format!(
                "content must hold 1 to {limit} items (limits.max_embed_texts), got {}",
                body.content.len()
            ),
        ));
    }
    let max_chars = service.limits().max_prompt_chars;
    let mut wanted = Vec::with_capacity(body.content.len());
    for (i, item) in body.content.into_iter().enumerate() {
        match check_item(i, item, &state.media_marker, max_chars) {
            Ok(w) => wanted.push(w),
            Err(e) => return llamacpp_error(e),
        }
    }
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; wanted.len()];
    // Every image at once, so that they share the device's jobs as concurrent requests'
    // images do; the texts in one call, through the text cache.
    let mut images = tokio::task::JoinSet::new();
    let mut texts = Vec::new();
    let mut text_index = Vec::new();
    for (i, w) in wanted.into_iter().enumerate() {
        match w {
            Wanted::Text(t) => {
                texts.push(t);
                text_index.push(i);
            }
            Wanted::Image(bytes) => {
                let service = service.clone();
                images.spawn(async move { (i, service.embed_image(bytes).await) });
            }
        }
    }
    if !texts.is_empty() {
        match service.embed_texts(&texts).await {
            Ok(vectors) => {
                for (i, v) in text_index.into_iter().zip(vectors) {
                    rows[i] = Some(v);
                }
            }
            Err(e) => return llamacpp_error(e.into()),
        }
    }
    while let Some(done) = images.join_next().await {
        match done {
            Ok((i, Ok(v))) => rows[i] = Some(v),
            Ok((i, Err(e))) => {
                let mut e = ApiError::from(e);
                e.message = format!("content[{i}]: {}", e.message);
                return llamacpp_error(e);
            }
            Err(join) => {
                return llamacpp_error(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("an image's embedding failed: {join}"),
                ))
            }
        }
    }
    // Every item was answered above or the request ended with its error.
    let Some(rows): Option<Vec<Vec<f32>>> = rows.into_iter().collect() else {
        return llamacpp_error(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an item was left without its embedding",
        ));
    };
    let answer: Vec<LlamaEmbedding> = rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| LlamaEmbedding {
            index,
            embedding: vec![row],
        })
        .collect();
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(prompt: &str, data: Option<Vec<&str>>) -> ContentItem {
        ContentItem {
            prompt_string: prompt.into(),
            multimodal_data: data.map(|d| d.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn items_are_checked_against_the_marker() {
        let m = "<__media_1__>";
        assert!(
            matches!(check_item(0, item("a cat", None), m, 100), Ok(Wanted::Text(t)) if t == "a cat")
        );
        assert!(matches!(
            check_item(0, item("<__media_1__>\n", Some(vec!["AAEC"])), m, 100),
            Ok(Wanted::Image(b)) if b == [0, 1, 2]
        ));
        let err = |it, i| check_item(i, it, m, 100).err().unwrap().message;
        assert!(err(item("a cat\n", Some(vec!["AAEC"])), 3)
            .starts_with("content[3]: prompt_string holds the media marker <__media_1__> 0 times"));
        assert!(err(item("<__media_1__>", None), 1).contains("multimodal_data has no image"));
        assert!(err(item("<__media_1__>", Some(vec!["@@@"])), 2)
            .contains("content[2]: multimodal_data[0] is not base64"));
        assert!(err(
            item("<__media_1__><__media_1__>", Some(vec!["AAEC", "AAEC"])),
            0
        )
        .contains("2 images in one item"));
        assert!(err(item("a dog <__media_1__>", Some(vec!["AAEC"])), 0)
            .contains("text beside an image"));
        assert!(err(item(&"x".repeat(101), None), 4)
            .contains("content[4]: prompt_string is 101 characters"));
        assert!(random_media_marker().starts_with("<__media_"));
        assert_ne!(random_media_marker(), random_media_marker());
    }
}
