//! Daemon configuration: the YAML file, its defaults, and validation.
//!
//! Every key has a default so an empty file is valid. Unknown keys and bad
//! values are start-up errors that name the full key path (`performance.max_batch_size`),
//! because a typo silently ignored is how a service ends up running with settings
//! nobody chose.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::preprocess::ResizeMode;
use crate::template::Template;

/// Where the daemon looks for its configuration when neither `--config` nor
/// `HAILO_CLIP_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hailo/hailo-clip.yaml";

/// The default model directory: where `hailo-clip pull ViT-B-32__openai` (Immich's default
/// CLIP model) installs it.
pub const DEFAULT_MODEL_DIR: &str = "/usr/local/share/hailo-clip/models/ViT-B-32__openai";

/// The flat export's directory (scripts/export_onnx.py, install.sh's CPU model), the
/// default before `pull` existed: taken when model.dir is the default and that is absent.
pub const FLAT_DEFAULT_MODEL_DIR: &str = "/usr/local/share/hailo-clip/models/clip-vit-base-patch32";

/// Where hailo-apps installs its models and files; the Hailo backend looks there by default.
pub const DEFAULT_HAILO_RESOURCES_DIR: &str = "/usr/local/hailo/resources";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: key `{key}`: {source}")]
    Parse {
        path: PathBuf,
        key: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub model: ModelConfig,
    pub backend: BackendChoice,
    pub performance: PerformanceConfig,
    pub text_cache: TextCacheConfig,
    pub limits: LimitsConfig,
    pub classify: ClassifyConfig,
    pub logging: LoggingConfig,
    pub hailo: HailoConfig,
    pub selftest: SelfTestConfig,
    pub immich: ImmichConfig,
    pub cpu: CpuConfig,
    pub llamacpp: LlamaCppConfig,
    /// The `hailo.*` keys the YAML sets: they win over files a pull put in `model.dir`.
    #[serde(skip)]
    pub hailo_keys_set: Vec<String>,
}

/// Which engine runs the CPU backend's ONNX models.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CpuEngineChoice {
    /// ONNX Runtime when its library loads, else tract (the log and /health say which).
    #[default]
    Auto,
    /// ONNX Runtime; a start-up error when its library does not load.
    Onnxruntime,
    /// tract (pure Rust).
    Tract,
}

/// The CPU backend's engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    pub engine: CpuEngineChoice,
    /// libonnxruntime.so to load; unset: ORT_DYLIB_PATH, then the usual places.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnxruntime_library: Option<PathBuf>,
}

/// llama.cpp server's embeddings API (`GET /props`, `POST /embeddings`: Frigate).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlamaCppConfig {
    /// What marks an image in `/embeddings` content, as llama.cpp's `LLAMA_MEDIA_MARKER`;
    /// unset, one is drawn at every start (clients read it from `/props`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_marker: Option<String>,
}

/// Immich's remote machine-learning API (`GET /ping`, `POST /predict`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImmichConfig {
    /// A stock immich-machine-learning (e.g. `http://127.0.0.1:3003`) that gets every
    /// /predict request that is not CLIP (faces, OCR) unchanged; unset answers those 501.
    pub upstream_url: Option<String>,
    /// Time limit for the upstream's answer.
    pub upstream_timeout_ms: u64,
}

impl Default for ImmichConfig {
    fn default() -> Self {
        Self {
            upstream_url: None,
            upstream_timeout_ms: 120_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind. Loopback by default: exposing the API to the network is a choice.
    pub host: IpAddr,
    pub port: u16,
    /// Open connections at most (kept below the process's file-descriptor limit). Past it,
    /// a new connection takes the slot of the oldest one with no request in progress, or is
    /// refused when every connection is serving a request.
    pub max_connections: usize,
    /// A request's headers must arrive within this, counted from the connection's start or
    /// the end of its previous response; so it is also the idle keep-alive timeout.
    pub header_timeout_ms: u64,
    /// A request's body must arrive whole within this of its headers (a deadline, not an
    /// idle timer); past it, 408 and the connection is closed.
    pub body_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests may take before the rest are cut off (keep it
    /// below the unit's TimeoutStopSec, 30 s).
    pub shutdown_timeout_ms: u64,
    /// A file of API keys, one a line (`#` comments). Set, every route but /health, /ping and
    /// the page needs `Authorization: Bearer KEY` or `X-API-Key: KEY`. Reloaded on SIGHUP.
    pub api_keys_file: Option<PathBuf>,
    /// With keys, /metrics answers without one too.
    pub metrics_open: bool,
    /// Addresses and CIDR blocks (IPv4, IPv6) that may use the daemon; empty: anyone who
    /// reaches the port. Requests from elsewhere get 403 on every route.
    pub allow_from: Vec<AllowedNet>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 5000,
            max_connections: 512,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            shutdown_timeout_ms: 20_000,
            api_keys_file: None,
            metrics_open: false,
            allow_from: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// A model directory: the flat layout (`manifest.json`, `visual.onnx`, `textual.onnx`,
    /// `tokenizer.json`) or Immich's (`config.json`, `visual/`, `textual/`), as
    /// `hailo-clip pull` writes it or Immich's cache holds it.
    pub dir: PathBuf,
    /// The multiplier of cosine similarities before the softmax, over the model's own
    /// (`manifest.json`'s `logit_scale`; 100 for Immich's layout, which does not record it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_scale: Option<f32>,
    /// SigLIP's trained bias: with `logit_scale` (the model's trained scale), each prompt is
    /// scored on its own, sigmoid(scale x similarity + bias), instead of the softmax over
    /// the prompts. Neither is in Immich's files; set them from the model's checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<f32>,
}

impl ModelConfig {
    /// When `dir` is the default and absent while the flat export's earlier default exists,
    /// takes that one; true when it did. The daemon's log names the directory it loads.
    pub fn find_default(&mut self) -> bool {
        self.find_default_among(
            Path::new(DEFAULT_MODEL_DIR),
            Path::new(FLAT_DEFAULT_MODEL_DIR),
        )
    }

    fn find_default_among(&mut self, default: &Path, flat: &Path) -> bool {
        if self.dir == default && !default.exists() && flat.exists() {
            self.dir = flat.to_path_buf();
            return true;
        }
        false
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_MODEL_DIR),
            logit_scale: None,
            logit_bias: None,
        }
    }
}

/// Which inference engine serves the encoders.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// ONNX models on the CPU (tract).
    Cpu,
    /// HEF models on a Hailo accelerator; a start-up error when none is usable.
    Hailo,
    /// Hailo when the device and library are present, else CPU (the reason is logged).
    #[default]
    Auto,
}

impl BackendChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Cpu => "cpu",
            BackendChoice::Hailo => "hailo",
            BackendChoice::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceConfig {
    /// Worker threads that take jobs from the queue and run the encoders.
    pub worker_threads: usize,
    /// Threads the CPU engine uses inside one inference (matrix multiplication).
    pub inference_threads: usize,
    /// Most images a worker puts into one inference.
    pub max_batch_size: usize,
    /// How long a worker holding a part batch of images waits for the images other admitted
    /// requests are still decoding. Never spent when no other image is on its way.
    pub batch_wait_ms: u64,
    /// Jobs that may wait in the queue; past that, requests get 503 + Retry-After.
    pub max_queue_size: usize,
    /// Deadline for one request, from arrival to answer; past it, 504.
    pub request_timeout_ms: u64,
    /// Decode a JPEG larger than the encoder needs at a DCT scale (1/2, 1/4, 1/8) that keeps
    /// its shorter side at or above the encoder's input, then resize it as any other image.
    pub jpeg_scaled_decode: bool,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            worker_threads: 1,
            inference_threads: 2,
            max_batch_size: 8,
            batch_wait_ms: 20,
            max_queue_size: 32,
            request_timeout_ms: 30_000,
            jpeg_scaled_decode: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TextCacheConfig {
    /// Prompt embeddings kept (LRU). 0 disables the cache.
    pub capacity: usize,
}

impl Default for TextCacheConfig {
    fn default() -> Self {
        Self { capacity: 4096 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted (base64 inflates an image by 4/3).
    pub max_body_bytes: usize,
    /// Largest image, in pixels (width × height), read from the header before decoding.
    pub max_image_pixels: u64,
    /// Most prompts in one classify request.
    pub max_prompts: usize,
    /// Longest prompt, in characters.
    pub max_prompt_chars: usize,
    /// Most templates in one classify request.
    pub max_templates: usize,
    /// Most texts in one embed/text request.
    pub max_embed_texts: usize,
    /// Memory that images being decoded may take together, in MiB, estimated from each
    /// image's header (decoded pixels and the RGB copy). A request waits for its share;
    /// one that cannot get it before its deadline gets 503.
    pub decode_memory_mb: u64,
    /// Bytes (MiB) of request bodies being received at once: each takes it in KiB as its
    /// bytes arrive (its buffer, doubling up to its declared length); a body whose next
    /// bytes do not fit gets 503 with Retry-After.
    pub receiving_mb: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_image_pixels: 40_000_000,
            max_prompts: 100,
            max_prompt_chars: 1000,
            max_templates: 16,
            max_embed_texts: 100,
            decode_memory_mb: 1024,
            receiving_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// Template applied to each prompt when a request names none; `{}` is the prompt.
    pub default_template: Template,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            default_template: Template::try_from("a photo of a {}".to_string())
                .expect("the default template has one {}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// trace | debug | info | warn | error (RUST_LOG, when set, wins).
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
        }
    }
}

/// The known-answer self-test run after the warm-up (assets/selftest/).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SelfTestConfig {
    /// false: the self-test is not run, and /health says "skipped (selftest.enabled is
    /// false)". For encoders with no right answers to give, such as the HailoRT test double
    /// behind scripts/serve-hailo-double.sh.
    pub enabled: bool,
    /// true: a failed self-test keeps the daemon unhealthy (no READY=1, /health 503).
    /// false: it serves anyway, with a warning in the log and /health.
    pub enforce: bool,
    /// Least lead, in softmax score, of each photo's expected label over the runner-up.
    pub min_margin: f32,
}

impl Default for SelfTestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            enforce: true,
            min_margin: 0.2,
        }
    }
}

/// Which engine runs the text encoder when images run on Hailo.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TextEncoderChoice {
    /// The text HEF when it is present and loads, else the CPU engine (the log and
    /// /health say which and why). The model zoo has a hailo10h text HEF only from 5.2.
    #[default]
    Auto,
    /// The text-encoder HEF, fed token embeddings from the LUT; a start-up error without it.
    Hailo,
    /// The CPU engine's `textual.onnx` and tokenizer from `model.dir` (what public
    /// hailo-apps does); it must come from the same CLIP checkpoint as the image HEF.
    Cpu,
}

/// An entry of `server.allow_from`: an address (`192.168.1.20`, `::1`) or a CIDR block
/// (`192.168.1.0/24`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AllowedNet(pub ipnet::IpNet);

impl AllowedNet {
    /// Whether `peer` is in the block; an IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`, what a
    /// dual-stack socket reports) counts as its IPv4 address.
    pub fn contains(&self, peer: std::net::IpAddr) -> bool {
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&peer)
    }
}

impl TryFrom<String> for AllowedNet {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let text = text.trim();
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map(AllowedNet)
            .map_err(|_| {
                format!(
                    "{text:?} is neither an address nor a CIDR block (192.168.1.0/24, fd00::/8)"
                )
            })
    }
}

impl From<AllowedNet> for String {
    fn from(net: AllowedNet) -> Self {
        net.0.to_string()
    }
}

/// The Hailo device node: `auto` takes the first of `/dev/hailoN` (driver 5.2 and older)
/// and `/dev/h1x-N` (driver 5.3) that exists; a path is used exactly as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PathBuf", into = "PathBuf")]
pub enum DevicePath {
    #[default]
    Auto,
    Exact(PathBuf),
}

impl From<PathBuf> for DevicePath {
    fn from(path: PathBuf) -> Self {
        if path.as_os_str() == "auto" {
            DevicePath::Auto
        } else {
            DevicePath::Exact(path)
        }
    }
}

impl From<DevicePath> for PathBuf {
    fn from(device: DevicePath) -> Self {
        match device {
            DevicePath::Auto => PathBuf::from("auto"),
            DevicePath::Exact(path) => path,
        }
    }
}

impl std::fmt::Display for DevicePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DevicePath::Auto => f.write_str("auto"),
            DevicePath::Exact(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Jobs each Hailo encoder keeps submitted at once: `auto` is [`AUTO_JOBS_IN_FLIGHT`], a
/// number is used as given; both at most [`MAX_JOBS_IN_FLIGHT`] and HailoRT's async queue
/// size for the model (`ConfiguredInferModel::get_async_queue_size`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JobsInFlightValue", into = "JobsInFlightValue")]
pub enum JobsInFlight {
    #[default]
    Auto,
    Count(usize),
}

/// Most jobs a Hailo encoder keeps in flight (each holds a batch of page buffers).
pub const MAX_JOBS_IN_FLIGHT: usize = 16;

/// `auto`: one job running on the device and one queued behind it, so the device turns to
/// the next job as soon as one ends, and every other frame waits in the service's queue,
/// where the next job is formed from all of them (up to the batch size) when a job
/// completes. More jobs in flight only split the waiting frames into smaller jobs. Two are
/// enough while handing a job over costs the device nothing, as on the test double; on a
/// Pi the PCIe transfer (10H: and the hrpc round trip) of the next job overlaps the running
/// one only if it is already submitted, which two still allow; measured on hardware only.
pub const AUTO_JOBS_IN_FLIGHT: usize = 2;

impl JobsInFlight {
    /// What the shim takes.
    pub fn requested(self) -> usize {
        match self {
            JobsInFlight::Auto => AUTO_JOBS_IN_FLIGHT,
            JobsInFlight::Count(n) => n,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JobsInFlightValue {
    Count(usize),
    Word(String),
}

impl TryFrom<JobsInFlightValue> for JobsInFlight {
    type Error = String;
    fn try_from(value: JobsInFlightValue) -> Result<Self, String> {
        match value {
            JobsInFlightValue::Count(n) => Ok(JobsInFlight::Count(n)),
            JobsInFlightValue::Word(w) if w == "auto" => Ok(JobsInFlight::Auto),
            JobsInFlightValue::Word(w) => Err(format!("expected auto or a number, got {w:?}")),
        }
    }
}

impl From<JobsInFlight> for JobsInFlightValue {
    fn from(jobs: JobsInFlight) -> Self {
        match jobs {
            JobsInFlight::Auto => JobsInFlightValue::Word("auto".into()),
            JobsInFlight::Count(n) => JobsInFlightValue::Count(n),
        }
    }
}

/// The Hailo backend: where its files are and how the device is used. Read when `backend`
/// is `hailo`, or `auto` with a usable device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HailoConfig {
    /// Directory of the HEFs and text assets (the hailo-apps resources layout).
    pub resources_dir: PathBuf,
    /// Image-encoder HEF, relative to `resources_dir` unless absolute.
    pub image_hef: PathBuf,
    /// Text-encoder HEF, relative to `resources_dir` unless absolute.
    pub text_hef: PathBuf,
    /// auto | hailo | cpu: where the text encoder runs.
    pub text_encoder: TextEncoderChoice,
    /// How images become the HEF's square input.
    pub resize: ResizeMode,
    /// The resize's filter: the pulled model directory's (its preprocessing), else bicubic.
    /// Not a config key: it follows `model.dir`, as the CPU engine's does.
    #[serde(skip)]
    pub interpolation: crate::preprocess::Interpolation,
    /// Most frames per inference (HailoRT's batch size for both HEFs).
    pub batch_size: u16,
    /// Jobs each encoder keeps submitted to the device at once, so that the device works
    /// on one while the host prepares the next.
    pub jobs_in_flight: JobsInFlight,
    /// Time limit for one inference on the device.
    pub timeout_ms: u64,
    /// How long the daemon may take to recover the device after a fault (re-create it,
    /// configure the models, pass the warm-up and self-test) before it exits non-zero for
    /// systemd to restart it.
    pub recovery_max_seconds: u64,
    /// Device node whose presence is checked before HailoRT is asked (`auto`: see [`DevicePath`]).
    pub device_path: DevicePath,
    /// A specific device (HailoRT device id, e.g. its PCIe address); unset takes the first free one.
    pub device_id: Option<String>,
    /// HailoRT scheduler group; processes using the same group id share the device.
    pub group_id: String,
    /// Model name reported by the API for the Hailo backend.
    pub model_name: String,
    /// The Immich CLIP model the HEFs' embeddings equal (the Model Zoo's clip_vit_b_32 is
    /// OpenAI's ViT-B/32, Immich's default `ViT-B-32__openai`).
    pub immich_model: String,
    /// Multiplier on cosine similarities before softmax (100 for OpenAI CLIP).
    pub logit_scale: f32,
}

impl Default for HailoConfig {
    fn default() -> Self {
        Self {
            resources_dir: PathBuf::from(DEFAULT_HAILO_RESOURCES_DIR),
            image_hef: PathBuf::from("clip_vit_b_32_image_encoder.hef"),
            text_hef: PathBuf::from("clip_vit_b_32_text_encoder.hef"),
            text_encoder: TextEncoderChoice::Auto,
            resize: ResizeMode::ShortestEdgeCenterCrop,
            interpolation: crate::preprocess::Interpolation::default(),
            batch_size: 8,
            jobs_in_flight: JobsInFlight::Auto,
            timeout_ms: 10_000,
            recovery_max_seconds: 300,
            device_path: DevicePath::Auto,
            device_id: None,
            group_id: "SHARED".to_string(),
            model_name: "clip-vit-base-patch32".to_string(),
            immich_model: "ViT-B-32__openai".to_string(),
            logit_scale: 100.0,
        }
    }
}

impl HailoConfig {
    /// A resource file's path: `name` under `resources_dir`, or `name` itself if absolute.
    pub fn resource(&self, name: &Path) -> PathBuf {
        self.resources_dir.join(name)
    }
}

impl Config {
    /// Parses YAML text; `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        // An empty file (or one with only comments) is a valid, all-defaults config.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Config::default());
        }
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            ConfigError::Parse {
                path: origin.to_path_buf(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                source: err.into_inner(),
            }
        })?;
        let mut config = config;
        if let Ok(serde_yaml_ng::Value::Mapping(top)) = serde_yaml_ng::from_str(text) {
            if let Some(serde_yaml_ng::Value::Mapping(hailo)) = top.get("hailo") {
                config.hailo_keys_set = hailo
                    .keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect();
            }
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Checks values that parse but make no sense; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn at_least(key: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
            if value < min {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("must be at least {min}, got {value}"),
                });
            }
            Ok(())
        }
        fn at_most(key: &'static str, value: u64, max: u64, note: &str) -> Result<(), ConfigError> {
            if value > max {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("must be at most {max}{note}, got {value}"),
                });
            }
            Ok(())
        }
        if let Some(scale) = self.model.logit_scale {
            if !scale.is_finite() || scale <= 0.0 {
                return Err(ConfigError::Invalid {
                    key: "model.logit_scale",
                    message: format!("must be a positive number, got {scale}"),
                });
            }
        }
        if let Some(bias) = self.model.logit_bias {
            if !bias.is_finite() {
                return Err(ConfigError::Invalid {
                    key: "model.logit_bias",
                    message: format!("must be a finite number, got {bias}"),
                });
            }
            // The sigmoid needs the model's trained scale too; the softmax's default (the
            // manifest's, or 100) is not SigLIP's, and a guessed one gives wrong scores.
            if self.model.logit_scale.is_none() {
                return Err(ConfigError::Invalid {
                    key: "model.logit_bias",
                    message: "needs model.logit_scale too: the sigmoid scores take the model's trained scale and bias together".into(),
                });
            }
        }
        let p = &self.performance;
        at_least("performance.worker_threads", p.worker_threads as u64, 1)?;
        at_least(
            "performance.inference_threads",
            p.inference_threads as u64,
            1,
        )?;
        at_least("performance.max_batch_size", p.max_batch_size as u64, 1)?;
        at_least("performance.max_queue_size", p.max_queue_size as u64, 1)?;
        at_most("performance.batch_wait_ms", p.batch_wait_ms, 1_000, "")?;
        at_least("performance.request_timeout_ms", p.request_timeout_ms, 1)?;
        let l = &self.limits;
        at_least("limits.max_body_bytes", l.max_body_bytes as u64, 1024)?;
        at_least("limits.max_image_pixels", l.max_image_pixels, 1)?;
        at_least("limits.max_prompts", l.max_prompts as u64, 1)?;
        at_least("limits.max_prompt_chars", l.max_prompt_chars as u64, 1)?;
        at_least("limits.max_templates", l.max_templates as u64, 1)?;
        at_least("limits.max_embed_texts", l.max_embed_texts as u64, 1)?;
        at_least("limits.decode_memory_mb", l.decode_memory_mb, 64)?;
        at_most(
            "limits.decode_memory_mb",
            l.decode_memory_mb,
            1 << 20,
            " (1 TiB)",
        )?;
        at_least("limits.receiving_mb", l.receiving_mb, 1)?;
        at_most("limits.receiving_mb", l.receiving_mb, 1 << 20, " (1 TiB)")?;
        if l.receiving_mb.saturating_mul(1 << 20) < l.max_body_bytes as u64 {
            return Err(ConfigError::Invalid {
                key: "limits.receiving_mb",
                message: format!(
                    "must hold at least one body of limits.max_body_bytes ({} bytes), got {} MiB",
                    l.max_body_bytes, l.receiving_mb
                ),
            });
        }
        let s = &self.server;
        at_least("server.max_connections", s.max_connections as u64, 2)?;
        at_least("server.header_timeout_ms", s.header_timeout_ms, 100)?;
        at_least("server.body_timeout_ms", s.body_timeout_ms, 100)?;
        if s.api_keys_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err(ConfigError::Invalid {
                key: "server.api_keys_file",
                message: "must not be empty (leave it out for no keys)".into(),
            });
        }
        at_least("server.shutdown_timeout_ms", s.shutdown_timeout_ms, 1)?;
        if self.server.port == 0 {
            return Err(ConfigError::Invalid {
                key: "server.port",
                message: "must be between 1 and 65535".into(),
            });
        }
        if self.model.dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "model.dir",
                message: "must not be empty".into(),
            });
        }
        self.hailo.validate()?;
        if let Some(url) = &self.immich.upstream_url {
            if !(url.starts_with("http://") && url.len() > "http://".len()) {
                return Err(ConfigError::Invalid {
                    key: "immich.upstream_url",
                    message: format!(
                        "must be an http:// URL (e.g. http://127.0.0.1:3003), got {url:?}"
                    ),
                });
            }
        }
        if let Some(marker) = &self.llamacpp.media_marker {
            if marker.trim().is_empty()
                || marker.chars().count() > 64
                || marker.chars().any(char::is_whitespace)
            {
                return Err(ConfigError::Invalid {
                    key: "llamacpp.media_marker",
                    message: format!(
                        "{marker:?}: 1 to 64 characters with no whitespace (clients put it, then a newline, where an image goes)"
                    ),
                });
            }
        }
        if self.immich.upstream_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "immich.upstream_timeout_ms",
                message: "must be at least 1, got 0".into(),
            });
        }
        let margin = self.selftest.min_margin;
        if !(0.0..1.0).contains(&margin) {
            return Err(ConfigError::Invalid {
                key: "selftest.min_margin",
                message: format!("must be at least 0 and below 1, got {margin}"),
            });
        }
        if !matches!(
            self.logging.level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            return Err(ConfigError::Invalid {
                key: "logging.level",
                message: format!(
                    "must be one of trace, debug, info, warn, error; got {:?}",
                    self.logging.level
                ),
            });
        }
        Ok(())
    }
}

impl HailoConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.batch_size == 0 {
            return invalid("hailo.batch_size", "must be at least 1, got 0");
        }
        if self.timeout_ms == 0 {
            return invalid("hailo.timeout_ms", "must be at least 1, got 0");
        }
        if self.recovery_max_seconds == 0 {
            return invalid("hailo.recovery_max_seconds", "must be at least 1, got 0");
        }
        if let JobsInFlight::Count(n) = self.jobs_in_flight {
            if n == 0 || n > MAX_JOBS_IN_FLIGHT {
                return Err(ConfigError::Invalid {
                    key: "hailo.jobs_in_flight",
                    message: format!("must be auto or 1 to {MAX_JOBS_IN_FLIGHT}, got {n}"),
                });
            }
        }
        for (key, path) in [
            ("hailo.resources_dir", &self.resources_dir),
            ("hailo.image_hef", &self.image_hef),
            ("hailo.text_hef", &self.text_hef),
        ] {
            if path.as_os_str().is_empty() {
                return invalid(key, "must not be empty");
            }
        }
        if self.device_path == DevicePath::Exact(PathBuf::new()) {
            return invalid(
                "hailo.device_path",
                "must not be empty (auto finds the node)",
            );
        }
        if self.group_id.is_empty() {
            return invalid(
                "hailo.group_id",
                "must not be empty (SHARED shares the device)",
            );
        }
        // HailoRT's hailo_device_id_t holds 31 characters and a NUL.
        if self
            .device_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 31)
        {
            return invalid("hailo.device_id", "must be 1 to 31 characters, or unset");
        }
        if self.model_name.trim().is_empty() {
            return invalid("hailo.model_name", "must not be empty");
        }
        if !self.logit_scale.is_finite() || self.logit_scale <= 0.0 {
            return invalid("hailo.logit_scale", "must be a positive number");
        }
        Ok(())
    }
}

/// Where the configuration came from, for logs and `check-config`.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// The default path does not exist; built-in defaults are in force.
    Defaults,
}

/// Loads the config: an explicit path must exist; the default path may be absent.
pub fn load(explicit: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
    match explicit {
        Some(path) => Ok((
            Config::from_file(path)?,
            ConfigSource::File(path.to_path_buf()),
        )),
        None => {
            let path = Path::new(DEFAULT_CONFIG_PATH);
            if path.exists() {
                Ok((
                    Config::from_file(path)?,
                    ConfigSource::File(path.to_path_buf()),
                ))
            } else {
                Ok((Config::default(), ConfigSource::Defaults))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_model_dir_falls_back_to_the_flat_export_only_when_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let (default, flat) = (tmp.path().join("ViT-B-32__openai"), tmp.path().join("flat"));
        let mut model = ModelConfig {
            dir: default.clone(),
            logit_scale: None,
            logit_bias: None,
        };
        assert!(!model.find_default_among(&default, &flat), "neither exists");
        std::fs::create_dir(&flat).unwrap();
        assert!(model.find_default_among(&default, &flat));
        assert_eq!(model.dir, flat);
        model.dir = default.clone();
        std::fs::create_dir(&default).unwrap();
        assert!(
            !model.find_default_among(&default, &flat),
            "the default is there"
        );
        assert_eq!(model.dir, default);
        let mut other = ModelConfig {
            dir: tmp.path().join("mine"),
            logit_scale: None,
            logit_bias: None,
        };
        assert!(
            !other.find_default_among(&default, &flat),
            "a configured dir is kept"
        );
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new("test.yaml"))
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = parse("# nothing\n\n").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.host.to_string(), "127.0.0.1");
        assert_eq!(c.server.port, 5000);
        assert_eq!(c.backend, BackendChoice::Auto);
    }

    #[test]
    fn unknown_nested_key_is_named() {
        let err = parse("performance:\n  max_batch: 4\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("performance.max_batch"), "{text}");
        assert!(text.contains("unknown field"), "{text}");
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let err = parse("servr:\n  port: 1\n").unwrap_err().to_string();
        assert!(err.contains("servr"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = parse("server:\n  port: 70000\n").unwrap_err().to_string();
        assert!(err.contains("server.port"), "{err}");
        let err = parse("backend: gpu\n").unwrap_err().to_string();
        assert!(err.contains("backend"), "{err}");
        let err = parse("performance:\n  max_batch_size: 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config key `performance.max_batch_size`: must be at least 1, got 0"
        );
        let err = parse("performance:\n  batch_wait_ms: 1001\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config key `performance.batch_wait_ms`: must be at most 1000, got 1001"
        );
        let err = parse("logging:\n  level: loud\n").unwrap_err().to_string();
        assert!(err.contains("logging.level"), "{err}");
        // A bias alone would pair with a guessed scale: refused, naming both keys.
        let err = parse("model:\n  logit_bias: -16.5\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.logit_bias") && err.contains("needs model.logit_scale"),
            "{err}"
        );
        let both = parse("model:\n  logit_scale: 117.3\n  logit_bias: -12.9\n").unwrap();
        assert_eq!(
            (both.model.logit_scale, both.model.logit_bias),
            (Some(117.3), Some(-12.9))
        );
        let err = parse("classify:\n  default_template: a photo\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("classify.default_template"), "{err}");
    }

    #[test]
    fn hailo_section_parses_and_is_checked() {
        let c = parse(
            "backend: hailo\nhailo:\n  text_encoder: cpu\n  resize: stretch\n  batch_size: 4\n  device_id: 0001:01:00.0\n",
        )
        .unwrap();
        assert_eq!(c.hailo.text_encoder, TextEncoderChoice::Cpu);
        assert_eq!(c.hailo.resize, ResizeMode::Stretch);
        assert_eq!(c.hailo.batch_size, 4);
        assert_eq!(c.hailo.device_id.as_deref(), Some("0001:01:00.0"));
        assert_eq!(c.hailo.group_id, "SHARED");
        assert_eq!(c.hailo.device_path, DevicePath::Auto);
        let c = parse("hailo:\n  device_path: /dev/h1x-0\n  text_encoder: hailo\n").unwrap();
        assert_eq!(c.hailo.device_path, DevicePath::Exact("/dev/h1x-0".into()));
        assert_eq!(c.hailo.text_encoder, TextEncoderChoice::Hailo);
        assert_eq!(
            parse("").unwrap().hailo.text_encoder,
            TextEncoderChoice::Auto
        );
        let err = parse("selftest:\n  min_margin: 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("selftest.min_margin"), "{err}");
        assert_eq!(
            c.hailo.resource(&c.hailo.image_hef),
            Path::new("/usr/local/hailo/resources/clip_vit_b_32_image_encoder.hef")
        );
        let err = parse("hailo:\n  image: x.hef\n").unwrap_err().to_string();
        assert!(err.contains("hailo.image"), "{err}");
        let err = parse("hailo:\n  text_encoder: gpu\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hailo.text_encoder"), "{err}");
        let err = parse("hailo:\n  batch_size: 0\n").unwrap_err().to_string();
        assert!(err.contains("hailo.batch_size"), "{err}");
        let err = parse("hailo:\n  device_id: \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hailo.device_id"), "{err}");
    }

    #[test]
    fn shipped_config_parses_to_defaults_with_its_values() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hailo-clip.yaml");
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.server.port, 5000);
        assert_eq!(c.server.host.to_string(), "127.0.0.1");
        assert_eq!(c.backend, BackendChoice::Auto);
        assert_eq!(c.hailo, HailoConfig::default());
    }
}
