//! `/openapi.json` is generated from the code; this checks it against API_SPEC.md, the prose
//! reference, so the two cannot drift apart: the same routes, and every field the schema
//! names is documented.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use common::repo;
use hailo_clip::http::{router, AppState};

async fn openapi() -> Value {
    let app = router(AppState::new(), 1 << 20);
    let response = app
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn spec() -> String {
    std::fs::read_to_string(repo().join("API_SPEC.md")).unwrap()
}

#[tokio::test]
async fn openapi_routes_equal_api_spec_routes() {
    let doc = openapi().await;
    let mut from_code = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            from_code.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let from_spec: BTreeSet<String> = spec()
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|h| h.starts_with("GET ") || h.starts_with("POST "))
        .map(String::from)
        .collect();
    assert_eq!(from_code, from_spec);
    assert_eq!(from_code.len(), 6);
}

#[tokio::test]
async fn every_schema_field_is_documented_in_api_spec() {
    let doc = openapi().await;
    let spec = spec();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut checked = 0;
    for name in [
        "Health",
        "EncoderInfo",
        "HailoInfo",
        "ClassifyJson",
        "ClassifyResult",
        "Classification",
        "ImageEmbedding",
        "EmbedImageJson",
        "EmbedTextJson",
        "ErrorDetail",
    ] {
        let schema = &schemas[name];
        let mut properties: Vec<&String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        // allOf/oneOf compositions (flattened or untagged types) carry properties inside.
        for part in schema["allOf"]
            .as_array()
            .into_iter()
            .chain(schema["oneOf"].as_array())
            .flatten()
        {
            properties.extend(
                part["properties"]
                    .as_object()
                    .into_iter()
                    .flat_map(|p| p.keys()),
            );
        }
        assert!(!properties.is_empty(), "{name} has no properties: {schema}");
        for p in properties {
            assert!(
                spec.contains(&format!("`{p}`")),
                "field {p} of {name} is not documented in API_SPEC.md"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} fields checked");
    let required: BTreeSet<&str> = schemas["ClassifyJson"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, BTreeSet::from(["image", "prompts"]));
}
