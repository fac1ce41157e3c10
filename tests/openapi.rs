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
    assert_eq!(from_code.len(), 13);
}

#[tokio::test]
async fn every_schema_field_is_documented_in_api_spec() {
    let doc = openapi().await;
    let spec = spec();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut checked = 0;
    for name in [
        "Health",
        "EncoderBody",
        "ClassifyJson",
        "ClassifyForm",
        "ClassifyResponse",
        "ClassificationBody",
        "ImageEmbedding",
        "EmbedImageJson",
        "EmbedTextJson",
        "ErrorDetail",
        "EmbeddingsRequest",
        "EmbeddingsResponse",
        "EmbeddingData",
        "ModelCard",
        "Architecture",
        "PredictForm",
        "Props",
        "LlamaEmbeddingsRequest",
        "ContentItem",
        "LlamaEmbedding",
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

/// The schema states the rules the server enforces, with the configured limits.
#[tokio::test]
async fn schema_states_the_rules_the_server_enforces() {
    let doc = openapi().await;
    let s = |p: &str| {
        doc.pointer(&format!("/components/schemas/{p}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(s("ClassifyJson/additionalProperties"), Value::Bool(false));
    assert_eq!(s("ClassifyForm/additionalProperties"), Value::Bool(false));
    assert_eq!(s("EmbedTextJson/additionalProperties"), Value::Bool(false));
    assert_eq!(
        s("ClassifyJson/properties/prompts/minItems"),
        serde_json::json!(1)
    );
    assert_eq!(
        s("ClassifyJson/properties/prompts/maxItems"),
        serde_json::json!(100)
    );
    assert_eq!(s("Prompt/minLength"), serde_json::json!(1));
    assert_eq!(s("Prompt/maxLength"), serde_json::json!(1000));
    assert_eq!(s("Prompt/pattern"), serde_json::json!("\\S"));
    assert_eq!(s("ImageField/minLength"), serde_json::json!(1));
    assert_eq!(s("Texts/oneOf/1/minItems"), serde_json::json!(1));
    assert_eq!(
        s("ClassifyJson/properties/threshold/maximum").as_f64(),
        Some(1.0)
    );
    assert_eq!(
        s("ClassifyJson/properties/top_k/minimum"),
        serde_json::json!(1)
    );
    // The template pattern says "exactly one {}" the way the server counts.
    let pattern = regex_lite_match(s("Template/pattern").as_str().unwrap());
    for (template, ok) in [
        ("{}", true),
        ("a photo of a {}", true),
        ("{{}", true),
        ("{}}", true),
        ("a photo", false),
        ("{} and {}", false),
        ("{}{}", false),
        ("{\n}", false),
    ] {
        assert_eq!(pattern(template), ok, "{template:?}");
        let server = hailo_clip::service::templates::check_template(template).is_ok();
        assert_eq!(server, ok, "server on {template:?}");
    }
}

/// The template pattern as a matcher (it uses only classes, groups, `*`, `+` and anchors,
/// which the `regex` crate reads the same way as ECMA-262).
fn regex_lite_match(pattern: &str) -> impl Fn(&str) -> bool {
    let re = regex::Regex::new(pattern).unwrap();
    move |text| re.is_match(text)
}
