//! The OpenAPI document, generated from the handlers' and types' annotations (utoipa) and
//! served at `GET /openapi.json`, so the schema cannot drift from the code.

use axum::Json;
use utoipa::OpenApi;

use super::error::{ErrorBody, ErrorDetail};
use super::extract::{ClassifyJson, EmbedImageJson, EmbedTextJson, OneOrMany};
use super::routes::{self, Health, ImageEmbedding, TextEmbedding};
use crate::encoder::{EncoderInfo, HailoInfo};
use crate::service::{Classification, ClassifyResult};

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
        openapi_json
    ),
    components(schemas(
        Health,
        EncoderInfo,
        HailoInfo,
        ClassifyJson,
        OneOrMany,
        ClassifyResult,
        Classification,
        EmbedImageJson,
        ImageEmbedding,
        EmbedTextJson,
        TextEmbedding,
        ErrorBody,
        ErrorDetail
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
