//! The OpenAPI document, generated from the handlers' and types' annotations (utoipa) and
//! served at `GET /openapi.json`, so the schema cannot drift from the code.

use axum::extract::State;
use axum::Json;

use super::AppState;
use crate::config::LimitsConfig;
use utoipa::OpenApi;

use super::types::{
    ClassificationBody, ClassifyForm, ClassifyJson, ClassifyResponse, EmbedImageForm,
    EmbedImageJson, EmbedTextJson, EncoderBody, ErrorBody, ErrorDetail, Health, ImageEmbedding,
    ImageField, Prompt, Template, Templates, Text, TextEmbedding, Texts,
};
use super::{immich, openai, page, routes};

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
        openai::models
    ),
    components(schemas(
        Health,
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
        openai::OpenAiErrorDetail
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
        &[400, 413, 415, 422, 500, 503, 504],
    ),
    (
        "/v1/embed/image",
        "ErrorBody",
        &[400, 413, 415, 422, 500, 503, 504],
    ),
    (
        "/v1/embed/text",
        "ErrorBody",
        &[400, 413, 415, 422, 500, 503, 504],
    ),
    (
        "/predict",
        "Detail",
        &[400, 413, 415, 422, 500, 501, 502, 503, 504],
    ),
    (
        "/v1/embeddings",
        "OpenAiError",
        &[400, 404, 413, 415, 422, 500, 503, 504],
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

/// The document with the limits in force (`limits.*` in the config) in place of the
/// defaults the types were written with.
/// `served` is the model's name and dimension once loaded: the only values of `model` and
/// `dimensions` that /v1/embeddings takes.
pub fn document(limits: &LimitsConfig, served: Option<(&str, usize)>) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    add_error_responses(&mut doc);
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
    ] {
        let slot = doc
            .pointer_mut(&format!("{schemas}/{pointer}"))
            .unwrap_or_else(|| panic!("the document has no {schemas}/{pointer}"));
        *slot = serde_json::Value::from(value);
    }
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
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    match state.ready.get() {
        Some(ready) => {
            let model = ready.service.model();
            Json(document(
                ready.service.limits(),
                Some((&model.name, model.embedding_dim)),
            ))
        }
        None => Json(document(&LimitsConfig::default(), None)),
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
        let doc = document(&limits, Some(("m", 512)));
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
    }
}
