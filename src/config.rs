//! Daemon configuration: the YAML file, its defaults, and validation.
//!
//! Every key has a default so an empty file is valid. Unknown keys and bad
//! values are start-up errors that name the full key path (`performance.max_batch_size`),
//! because a typo silently ignored is how a service ends up running with settings
//! nobody chose.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the daemon looks for its configuration when neither `--config` nor
/// `HAILO_CLIP_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hailo/hailo-clip.yaml";

/// Default model directory for the CPU engine (an exported ONNX model directory).
pub const DEFAULT_MODEL_DIR: &str = "/usr/local/share/hailo-clip/models/clip-vit-base-patch32";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind. Loopback by default: exposing the API to the network is a choice.
    pub host: IpAddr,
    pub port: u16,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Directory holding `visual.onnx`, `textual.onnx`, `tokenizer.json`, `manifest.json`.
    pub dir: PathBuf,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_MODEL_DIR),
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
    /// Jobs that may wait in the queue; past that, requests get 503 + Retry-After.
    pub max_queue_size: usize,
    /// Deadline for one request, from arrival to answer; past it, 504.
    pub request_timeout_ms: u64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            worker_threads: 1,
            inference_threads: 2,
            max_batch_size: 8,
            max_queue_size: 32,
            request_timeout_ms: 30_000,
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
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// Template applied to each prompt when a request names none; `{}` is the prompt.
    pub default_template: String,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            default_template: "a photo of a {}".to_string(),
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
                key: if key == "." { "(top level)".into() } else { key },
                message: err.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
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
        let p = &self.performance;
        at_least("performance.worker_threads", p.worker_threads as u64, 1)?;
        at_least("performance.inference_threads", p.inference_threads as u64, 1)?;
        at_least("performance.max_batch_size", p.max_batch_size as u64, 1)?;
        at_least("performance.max_queue_size", p.max_queue_size as u64, 1)?;
        at_least("performance.request_timeout_ms", p.request_timeout_ms, 1)?;
        let l = &self.limits;
        at_least("limits.max_body_bytes", l.max_body_bytes as u64, 1024)?;
        at_least("limits.max_image_pixels", l.max_image_pixels, 1)?;
        at_least("limits.max_prompts", l.max_prompts as u64, 1)?;
        at_least("limits.max_prompt_chars", l.max_prompt_chars as u64, 1)?;
        at_least("limits.max_templates", l.max_templates as u64, 1)?;
        at_least("limits.max_embed_texts", l.max_embed_texts as u64, 1)?;
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
        if let Err(message) = crate::service::templates::check_template(&self.classify.default_template)
        {
            return Err(ConfigError::Invalid {
                key: "classify.default_template",
                message,
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err()
            || !matches!(
                self.logging.level.as_str(),
                "trace" | "debug" | "info" | "warn" | "error"
            )
        {
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
        Some(path) => Ok((Config::from_file(path)?, ConfigSource::File(path.to_path_buf()))),
        None => {
            let path = Path::new(DEFAULT_CONFIG_PATH);
            if path.exists() {
                Ok((Config::from_file(path)?, ConfigSource::File(path.to_path_buf())))
            } else {
                Ok((Config::default(), ConfigSource::Defaults))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = parse("performance:\n  max_batch_size: 0\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "config key `performance.max_batch_size`: must be at least 1, got 0"
        );
        let err = parse("logging:\n  level: loud\n").unwrap_err().to_string();
        assert!(err.contains("logging.level"), "{err}");
        let err = parse("classify:\n  default_template: a photo\n").unwrap_err().to_string();
        assert!(err.contains("classify.default_template"), "{err}");
    }

    #[test]
    fn shipped_config_parses_to_defaults_with_its_values() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hailo-clip.yaml");
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.server.port, 5000);
        assert_eq!(c.server.host.to_string(), "127.0.0.1");
        assert_eq!(c.backend, BackendChoice::Auto);
    }
}
