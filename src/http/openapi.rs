//! The OpenAPI document, generated from the handlers' and types' annotations (utoipa) and
//! served at `GET /openapi.json`, so the schema cannot drift from the code.

use axum::extract::State;
use axum::Json;

use super::AppState;
use crate::config::LimitsConfig;
use utoipa::OpenApi;

use super::types::{
    ClassificationBody, ClassifyForm, ClassifyJson, ClassifyResponse, DeviceBody, EmbedImageForm,
    EmbedImageJson, EmbedTextJson, EncoderBody, ErrorBody, ErrorDetail, Health, ImageEmbedding,
    ImageField, Prompt, Template, Templates, Text, TextEmbedding, Texts,
};
use super::{immich, llamacpp, openai, page, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hailo-clip",
        description = "CLIP zero-shot image classification (API_SPEC.md is the prose reference)"
    ),
    paths(
        routes::health,
        routes::metrics,
        routes::classify,
        routes::embed_image,
        routes::embed_text,
        openapi_json,
        page::page,
        immich::ping,
        immich::predict,
        openai::embeddings,
        openai::models,
        llamacpp::props,
        llamacpp::embeddings
    ),
    components(schemas(
        Health,
        DeviceBody,
        EncoderBody,
        ClassifyJson,
        ClassifyForm,
        ImageField,
        Prompt,
        Template,
        Templates,
        ClassifyResponse,
        ClassificationBody,
        EmbedImageJson,
        EmbedImageForm,
        ImageEmbedding,
        EmbedTextJson,
        Text,
        Texts,
        TextEmbedding,
        ErrorBody,
        ErrorDetail,
        immich::PredictForm,
        immich::PredictResponse,
        immich::Detail,
        openai::EmbeddingsRequest,
        openai::EmbeddingInput,
        openai::EncodingFormat,
        openai::Modality,
        openai::EmbeddingsResponse,
        openai::EmbeddingData,
        openai::EmbeddingVector,
        openai::Usage,
        openai::ModelList,
        openai::ModelCard,
        openai::OpenAiError,
        openai::OpenAiErrorDetail,
        openai::Architecture,
        llamacpp::Props,
        llamacpp::Modalities,
        llamacpp::GenerationSettings,
        llamacpp::ContentItem,
        llamacpp::LlamaEmbeddingsRequest,
        llamacpp::LlamaEmbedding,
        llamacpp::LlamaCppError,
        llamacpp::LlamaCppErrorDetail
    ))
)]
pub struct ApiDoc;

/// The error answers of the work routes, and the body each protocol sends them in: our
/// `ErrorBody`, Immich's `{"detail"}`, OpenAI's error object. Added to the document here,
/// once, rather than repeated in each handler's annotation.
const ERROR_RESPONSES: &[(&str, &str, &[u16])] = &[
    (
        "/v1/classify",
        "ErrorBody",
        &[400, 408, 413, 415, 422, 500, 503, 504],
    ),
    (
        "/v1/embed/image",
        "ErrorBody",
        &[400, 408, 413, 415, 422, 500, 503, 504],
    ),
    (
        "/v1/embed/text",
        "ErrorBody",
        &[400, 408, 413, 415, 422, 500, 503, 504],
    ),
    (
        "/predict",
        "Detail",
        &[400, 408, 413, 415, 422, 500, 501, 502, 503, 504],
    ),
    (
        "/v1/embeddings",
        "OpenAiError",
        &[400, 404, 408, 413, 415, 422, 500, 503, 504],
    ),
    (
        "/embeddings",
        "LlamaCppError",
        &[400, 404, 408, 413, 415, 422, 500, 503, 504],
    ),
];

fn add_error_responses(doc: &mut serde_json::Value) {
    for (path, schema, statuses) in ERROR_RESPONSES {
        let responses = doc["paths"][path]["post"]["responses"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("the document has no POST {path}"));
        for status in *statuses {
            let reason = axum::http::StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            responses.insert(
                status.to_string(),
                serde_json::json!({
                    "description": reason,
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
                }),
            );
        }
    }
}

/// With `server.api_keys_file`: the two ways to send a key as security schemes, required by
/// every operation but /health, /ping and / (and /metrics when `server.metrics_open`), each
/// of which may then answer 401 in its route's error shape.
fn add_api_keys(doc: &mut serde_json::Value, metrics_open: bool) {
    doc["components"]["securitySchemes"] = serde_json::json!({
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    });
    let shape = |path: &str| match path {
        "/predict" => "Detail",
        "/v1/embeddings" | "/v1/models" => "OpenAiError",
        "/embeddings" | "/props" => "LlamaCppError",
        _ => "ErrorBody",
    };
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for (path, item) in paths.iter_mut() {
        let open = matches!(path.as_str(), "/health" | "/ping" | "/")
            || (path == "/metrics" && metrics_open);
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            if open {
                continue;
            }
            operation["security"] = serde_json::json!([{"bearer": []}, {"apiKey": []}]);
            operation["responses"]["401"] = serde_json::json!({
                "description": "Unauthorized: no key, or not one of server.api_keys_file's",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", shape(path))}}}
            });
        }
    }
}

/// The document with the limits in force (`limits.*` in the config) in place of the
/// defaults the types were written with.
/// `served` is the model's name and dimension once loaded: the only values of `model` and
/// `dimensions` that /v1/embeddings takes.
/// `keys` says whether API keys are required, and whether /metrics is open then.
/// `marker` is llama.cpp's media marker: what an image item of /embeddings holds.
pub fn document(
    limits: &LimitsConfig,
    served: Option<(&str, usize)>,
    keys: Option<bool>,
    marker: &str,
) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    add_error_responses(&mut doc);
    if let Some(metrics_open) = keys {
        add_api_keys(&mut doc, metrics_open);
    }
    let schemas = "/components/schemas";
    for (pointer, value) in [
        ("Prompt/maxLength", limits.max_prompt_chars),
        ("Text/maxLength", limits.max_prompt_chars),
        (
            "ClassifyJson/properties/prompts/maxItems",
            limits.max_prompts,
        ),
        (
            "ClassifyForm/properties/prompts/maxItems",
            limits.max_prompts,
        ),
        (
            "ClassifyForm/properties/template/maxItems",
            limits.max_templates,
        ),
        ("Templates/oneOf/1/maxItems", limits.max_templates),
        ("Texts/oneOf/1/maxItems", limits.max_embed_texts),
        (
            "LlamaEmbeddingsRequest/properties/content/maxItems",
            limits.max_embed_texts,
        ),
    ] {
        let slot = doc
            .pointer_mut(&format!("{schemas}/{pointer}"))
            .unwrap_or_else(|| panic!("the document has no {schemas}/{pointer}"));
        *slot = serde_json::Value::from(value);
    }
    // A content item of /embeddings: a text, or one image after the marker of this start.
    // (The struct behind it reads either; the rules that tell them apart are these.)
    doc["components"]["schemas"]["ContentItem"] = serde_json::json!({
        "oneOf": [
            {
                "title": "text",
                "type": "object",
                "properties": {"prompt_string": {"type": "string", "maxLength": limits.max_prompt_chars}},
                "required": ["prompt_string"],
                "additionalProperties": false
            },
            {
                "title": "image",
                "type": "object",
                "properties": {
                    "prompt_string": {"const": format!("{marker}\n"), "description": "the media marker (GET /props), then a newline"},
                    "multimodal_data": {"type": "array", "items": {"type": "string", "description": "base64 JPEG, PNG or WebP"}, "minItems": 1, "maxItems": 1}
                },
                "required": ["prompt_string", "multimodal_data"],
                "additionalProperties": false
            }
        ]
    });
    if let Some((name, dim)) = served {
        let request = format!("{schemas}/EmbeddingsRequest/properties");
        for (field, value) in [
            ("model", serde_json::json!(name)),
            ("dimensions", serde_json::json!(dim)),
        ] {
            let slot = doc
                .pointer_mut(&format!("{request}/{field}"))
                .and_then(|s| s.as_object_mut())
                .unwrap_or_else(|| panic!("the document has no {request}/{field}"));
            slot.insert("enum".into(), serde_json::json!([value]));
        }
        doc["components"]["schemas"]["LlamaEmbeddingsRequest"]["properties"]["model"] =
            serde_json::json!({"enum": [name, null]});
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    let keys = state.access.keys_required();
    match state.ready.get() {
        Some(ready) => {
            let model = ready.service.model();
            Json(document(
                ready.service.limits(),
                Some((&model.name, model.embedding_dim)),
                keys,
                &state.media_marker,
            ))
        }
        None => Json(document(
            &LimitsConfig::default(),
            None,
            keys,
            &state.media_marker,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_carries_the_configured_limits() {
        let limits = LimitsConfig {
            max_prompts: 7,
            max_prompt_chars: 33,
            max_templates: 3,
            max_embed_texts: 9,
            ..LimitsConfig::default()
        };
        let doc = document(&limits, Some(("m", 512)), None, "<m>");
        let at = |p: &str| doc.pointer(&format!("/components/schemas/{p}")).cloned();
        assert_eq!(
            at("ClassifyJson/properties/prompts/maxItems"),
            Some(7.into())
        );
        assert_eq!(at("Prompt/maxLength"), Some(33.into()));
        assert_eq!(at("Templates/oneOf/1/maxItems"), Some(3.into()));
        assert_eq!(at("Texts/oneOf/1/maxItems"), Some(9.into()));
        assert_eq!(at("ClassifyJson/additionalProperties"), Some(false.into()));
        assert_eq!(
            at("EmbeddingsRequest/properties/model/enum"),
            Some(serde_json::json!(["m"]))
        );
        assert!(doc.pointer("/components/securitySchemes").is_none());
    }

    #[test]
    fn with_keys_every_operation_but_the_open_ones_needs_one() {
        let doc = document(&LimitsConfig::default(), None, Some(false), "<m>");
        let security =
            |path: &str, method: &str| doc["paths"][path][method].get("security").cloned();
        assert!(security("/v1/classify", "post").is_some());
        assert!(security("/metrics", "get").is_some());
        assert_eq!(
            doc["paths"]["/predict"]["post"]["responses"]["401"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/Detail"
        );
        for open in ["/health", "/ping", "/"] {
            assert!(security(open, "get").is_none(), "{open}");
        }
        let open_metrics = document(&LimitsConfig::default(), None, Some(true), "<m>");
        assert!(open_metrics["paths"]["/metrics"]["get"]
            .get("security")
            .is_none());
    }
}
