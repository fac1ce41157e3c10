//! The HTTP API's wire types: every request and response body, with the OpenAPI schema
//! derived from them (utoipa), and the conversions from the service's own types. The
//! schema states every rule the server enforces (required fields, lengths, counts, ranges,
//! no unknown fields), so a request that fits the schema is accepted unless its image
//! itself is unreadable; the limits taken from the config are filled in by
//! [`super::openapi::document`].

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::encoder::{Backend, EncoderInfo, Scoring};
use crate::service::{Classification, ClassifyResult};

/// A string schema with the given rules (utoipa's derive takes no lengths on newtypes).
fn string_schema(
    description: &str,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<&str>,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(min_length)
        .max_length(max_length)
        .pattern(pattern)
        .into()
}

/// One `T`, or an array of `min` to `max` of them.
fn one_or_many(one: &str, description: &str, min: usize, max: usize) -> RefOr<Schema> {
    let item = || Ref::from_schema_name(one);
    OneOfBuilder::new()
        .description(Some(description))
        .item(item())
        .item(
            ArrayBuilder::new()
                .items(item())
                .min_items(Some(min))
                .max_items(Some(max)),
        )
        .into()
}

/// A text sent to be scored: at least one non-blank character, at most
/// `limits.max_prompt_chars` characters.
#[derive(Debug, Deserialize)]
pub struct Prompt(pub String);

impl PartialSchema for Prompt {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "a prompt: at least one non-blank character, at most limits.max_prompt_chars",
            Some(1),
            Some(1000),
            Some(r"\S"),
        )
    }
}
impl ToSchema for Prompt {}

/// A prompt template: text with exactly one `{}`, where the prompt goes.
#[derive(Debug, Deserialize)]
pub struct Template(pub String);

/// Strings with exactly one `{}`: no `{}` before it, none after (a run of `{` is fine as
/// long as no `}` follows it).
const TEMPLATE_PATTERN: &str = r"^(?:[^{]|\{+[^{}])*\{*\{\}(?:[^{]|\{+[^{}])*\{*$";

impl PartialSchema for Template {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "a template with exactly one {} where the prompt goes",
            None,
            None,
            Some(TEMPLATE_PATTERN),
        )
    }
}
impl ToSchema for Template {}

/// One template, or 1 to `limits.max_templates` of them (their embeddings are averaged).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Templates {
    One(Template),
    Many(Vec<Template>),
}

impl PartialSchema for Templates {
    fn schema() -> RefOr<Schema> {
        one_or_many(
            "Template",
            "one template, or 1 to limits.max_templates of them",
            1,
            16,
        )
    }
}
impl ToSchema for Templates {}

impl Templates {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Templates::One(t) => vec![t.0],
            Templates::Many(v) => v.into_iter().map(|t| t.0).collect(),
        }
    }
}

/// The image (JPEG, PNG, WebP) as base64 or a `data:image/...;base64,` URI.
#[derive(Debug, Deserialize)]
pub struct ImageField(pub String);

impl PartialSchema for ImageField {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut object)) = string_schema(
            "the image (JPEG, PNG, WebP) as base64 or a data:image/...;base64, URI",
            Some(1),
            None,
            None,
        ) else {
            unreachable!("string_schema builds an object schema")
        };
        object.content_encoding = "base64".into();
        object.content_media_type = "image/png".into();
        object.into()
    }
}
impl ToSchema for ImageField {}

/// An integer field that also takes a number with no fraction (`3.0`), as JSON Schema's
/// `integer` does.
pub(crate) fn integral_u32<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) => {
            Ok(Some(v as u32))
        }
        Some(v) => Err(D::Error::custom(format!(
            "expected a whole number from 0 to {}, got {v}",
            u32::MAX
        ))),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyJson {
    pub image: ImageField,
    /// 1 to `limits.max_prompts` prompts.
    #[schema(min_items = 1, max_items = 100)]
    pub prompts: Vec<Prompt>,
    /// Keep only the best K prompts.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 4294967295_u64)]
    #[serde(default, deserialize_with = "integral_u32")]
    pub top_k: Option<u32>,
    /// Drop prompts scoring below this.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f32>,
    /// Default: `classify.default_template`.
    pub template: Option<Templates>,
}

/// The multipart form of a classify request (documentation of the form's fields; the
/// server reads them one by one).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ClassifyForm {
    /// The image file (JPEG, PNG, WebP).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    image: Vec<u8>,
    /// One field per prompt.
    #[schema(schema_with = prompts_form)]
    prompts: Vec<Prompt>,
    #[schema(value_type = u64, minimum = 1, maximum = 4294967295_u64)]
    #[serde(default)]
    top_k: u32,
    #[schema(minimum = 0.0, maximum = 1.0)]
    #[serde(default)]
    threshold: f32,
    /// One field per template.
    #[schema(schema_with = templates_form)]
    #[serde(default)]
    template: Vec<Template>,
}

/// Form fields repeat: one `prompts` field per prompt.
fn prompts_form() -> RefOr<Schema> {
    ArrayBuilder::new()
        .description(Some("one field per prompt: 1 to limits.max_prompts"))
        .items(Ref::from_schema_name("Prompt"))
        .min_items(Some(1))
        .max_items(Some(100))
        .into()
}

/// One `template` field per template; none is the default template.
fn templates_form() -> RefOr<Schema> {
    ArrayBuilder::new()
        .description(Some("one field per template: up to limits.max_templates"))
        .items(Ref::from_schema_name("Template"))
        .max_items(Some(16))
        .into()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedImageJson {
    pub image: ImageField,
}

/// The multipart form of an embed/image request.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EmbedImageForm {
    #[schema(value_type = String, format = Binary, min_length = 1)]
    image: Vec<u8>,
}

/// A text to embed, as it is (no template): at most `limits.max_prompt_chars` characters.
#[derive(Debug, Deserialize)]
pub struct Text(pub String);

impl PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "a text, embedded as it is: at most limits.max_prompt_chars characters",
            None,
            Some(1000),
            None,
        )
    }
}
impl ToSchema for Text {}

/// One text, or 1 to `limits.max_embed_texts` of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Texts {
    One(Text),
    Many(Vec<Text>),
}

impl PartialSchema for Texts {
    fn schema() -> RefOr<Schema> {
        one_or_many(
            "Text",
            "one text, or 1 to limits.max_embed_texts of them",
            1,
            100,
        )
    }
}
impl ToSchema for Texts {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedTextJson {
    pub text: Texts,
}

#[derive(Serialize, ToSchema)]
pub struct ClassificationBody {
    pub text: String,
    /// With `scoring` softmax: the softmax over the prompts of logit_scale × similarity
    /// (the scores sum to 1). With sigmoid: sigmoid(logit_scale × similarity + logit_bias),
    /// this prompt on its own.
    pub score: f32,
    /// Cosine similarity of image and prompt.
    pub similarity: f32,
    /// 1 for the best prompt.
    #[schema(minimum = 1)]
    pub rank: u32,
}

#[derive(Serialize, ToSchema)]
pub struct ClassifyResponse {
    pub classifications: Vec<ClassificationBody>,
    /// softmax | sigmoid: how the scores were computed (see `score`).
    pub scoring: Scoring,
    pub model: String,
    pub inference_time_ms: f64,
}

impl From<ClassifyResult> for ClassifyResponse {
    fn from(r: ClassifyResult) -> Self {
        ClassifyResponse {
            scoring: r.scoring,
            classifications: r
                .classifications
                .into_iter()
                .map(|c: Classification| ClassificationBody {
                    text: c.text,
                    score: c.score,
                    similarity: c.similarity,
                    rank: u32::try_from(c.rank).unwrap_or(u32::MAX),
                })
                .collect(),
            model: r.model,
            inference_time_ms: r.inference_time_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ImageEmbedding {
    pub embedding: Vec<f32>,
    pub dimension: usize,
    pub model: String,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TextEmbedding {
    One {
        embedding: Vec<f32>,
        dimension: usize,
        model: String,
    },
    Many {
        embeddings: Vec<Vec<f32>>,
        dimension: usize,
        model: String,
    },
}

/// Where an encoder (or the service's images) runs.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    Cpu,
    Hailo,
}

impl From<Backend> for BackendName {
    fn from(backend: Backend) -> Self {
        match backend {
            Backend::Cpu => BackendName::Cpu,
            Backend::Hailo => BackendName::Hailo,
        }
    }
}

/// Where an encoder runs, for /health.
#[derive(Serialize, ToSchema)]
pub struct EncoderBody {
    pub backend: BackendName,
    /// The file the encoder was loaded from.
    pub source: String,
    /// Why it runs there.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// On the CPU: `onnxruntime` or `tract`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<String>)]
    pub engine: Option<&'static str>,
    /// On ONNX Runtime: the library file and its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub engine_library: Option<String>,
    /// On a Hailo device: HailoRT's id of the device (its PCIe address on a Pi).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub device_id: Option<String>,
    /// On a Hailo device: the version of libhailort.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub hailort_version: Option<String>,
    /// On a Hailo device: the HEF's file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub hef: Option<String>,
}

impl From<&EncoderInfo> for EncoderBody {
    fn from(info: &EncoderInfo) -> Self {
        let hailo = info.hailo.as_ref();
        EncoderBody {
            backend: info.backend.into(),
            source: info.source.clone(),
            reason: (!info.reason.is_empty()).then(|| info.reason.clone()),
            engine: info.engine,
            engine_library: info.engine_library.clone(),
            device_id: hailo.map(|h| h.device_id.clone()),
            hailort_version: hailo.map(|h| h.hailort_version.clone()),
            hef: hailo.map(|h| h.hef.clone()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// ok | degraded (200: a throttled or alarmed device) | starting | recovering | unhealthy
    #[schema(value_type = String)]
    pub status: &'static str,
    #[schema(value_type = String)]
    pub service: &'static str,
    pub model_loaded: bool,
    pub model: Option<String>,
    /// How /v1/classify scores prompts: softmax (scores share 1 among the prompts) or
    /// sigmoid (each prompt on its own: model.logit_scale and model.logit_bias set).
    pub scoring: Option<Scoring>,
    pub backend: Option<BackendName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub backend_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub image_encoder: Option<EncoderBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub text_encoder: Option<EncoderBody>,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub workers: usize,
    pub workers_alive: usize,
    pub uptime_seconds: f64,
    /// passed | skipped (random weights) | failed | failed (not enforced) | not run
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub selftest: Option<String>,
    /// Photos the self-test classified (when it ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub selftest_photos: Option<usize>,
    /// The smallest lead of an expected label over its runner-up (when it ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub selftest_smallest_margin: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
    /// The Hailo device (absent on the CPU backend and while starting).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub device: Option<DeviceBody>,
}

/// The Hailo device's state in /health.
#[derive(Serialize, ToSchema)]
pub struct DeviceBody {
    /// From a device fault until the re-created device passed its warm-up and self-test.
    pub recovering: bool,
    /// Recoveries completed since start.
    pub recoveries: u64,
    /// The last device fault, in words, with HailoRT's status (null before any).
    pub last_fault: Option<String>,
    /// Seconds the current recovery has taken (while recovering).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub recovering_seconds: Option<f64>,
    /// The hotter of the chip's two sensors, in °C (null when it cannot be read).
    pub temperature_c: Option<f32>,
    /// none | light | medium | heavy | severe | streams_off | overheat, from the device's
    /// throttling notifications; unknown until one came.
    pub throttling: &'static str,
    /// Alarms the device raised since start.
    pub temperature_alarms: u64,
    pub overcurrent_alarms: u64,
    /// NN-core utilization in percent (Hailo-10H), read every 30 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub nnc_utilization: Option<f32>,
    /// Device::identify: e.g. "5.2.0".
    pub firmware_version: Option<String>,
    pub serial_number: Option<String>,
    pub product_name: Option<String>,
    /// e.g. "HAILO10H".
    pub architecture: Option<String>,
    /// From sysfs (the driver's board_location or device_id), e.g. "0001:01:00.0".
    pub pci_address: Option<String>,
}

impl From<&crate::encoder::DeviceStatus> for DeviceBody {
    fn from(s: &crate::encoder::DeviceStatus) -> Self {
        let h = &s.health;
        DeviceBody {
            recovering: s.recovering,
            recoveries: s.recoveries,
            last_fault: s.last_fault.clone(),
            recovering_seconds: s.recovering_for.map(|d| d.as_secs_f64()),
            temperature_c: h.temperature_c.map(|[a, b]| a.max(b)),
            throttling: h.throttling(),
            temperature_alarms: h.temperature_alarms,
            overcurrent_alarms: h.overcurrent_alarms,
            nnc_utilization: h.nnc_utilization,
            firmware_version: h.firmware_version.clone(),
            serial_number: h.serial_number.clone(),
            product_name: h.product_name.clone(),
            architecture: h.architecture.clone(),
            pci_address: h.pci_address.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable, machine-readable code (API_SPEC.md lists them).
    pub code: &'a str,
    pub message: &'a str,
}
