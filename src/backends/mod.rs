//! Backend selection: builds the image and text encoders the config asks for.
//!
//! `backend: cpu` runs the ONNX model directory; `backend: hailo` needs a usable Hailo
//! device and is a start-up error without one; `backend: auto` takes Hailo when it is
//! usable and otherwise the CPU, and says which and why. Nothing here ever substitutes a
//! stand-in for a model that failed to load.

pub mod cpu;

use std::sync::Arc;

use crate::config::{BackendChoice, Config};
use crate::encoder::{ImageEncoder, TextEncoder};
use crate::manifest::ModelDir;
use crate::service::ModelInfo;
use crate::tokenize::ClipTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    ModelDir(#[from] crate::manifest::ModelDirError),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuLoadError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenize::TokenizerError),
    #[error("backend: hailo was requested, but {0}")]
    HailoUnavailable(String),
}

/// Loaded encoders, ready to hand to the service.
pub struct Encoders {
    pub image: Arc<dyn ImageEncoder>,
    pub text: Arc<dyn TextEncoder>,
    pub tokenizer: ClipTokenizer,
    pub model: ModelInfo,
    /// The backend serving images ("cpu" or "hailo"), for /health.
    pub backend: &'static str,
    /// Why that backend was chosen, for the log and /health.
    pub reason: String,
}

/// Whether this build can drive a Hailo device, and if not, why.
fn hailo_unavailable_reason() -> String {
    "this binary was built without the `hailo` cargo feature".to_string()
}

pub fn load(config: &Config) -> Result<Encoders, LoadError> {
    let reason = match config.backend {
        BackendChoice::Hailo => return Err(LoadError::HailoUnavailable(hailo_unavailable_reason())),
        BackendChoice::Cpu => "backend: cpu in the config".to_string(),
        BackendChoice::Auto => format!("backend: auto and Hailo is not usable: {}", hailo_unavailable_reason()),
    };
    load_cpu(config, reason)
}

fn load_cpu(config: &Config, reason: String) -> Result<Encoders, LoadError> {
    let dir = ModelDir::open(&config.model.dir)?;
    let manifest = &dir.manifest;
    let tokenizer = ClipTokenizer::from_file(&dir.tokenizer(), manifest.context_length)?;
    let executor = cpu::executor(config.performance.inference_threads);
    let image = cpu::CpuImageEncoder::load(&dir, executor.clone())?;
    let text = cpu::CpuTextEncoder::load(&dir, executor)?;
    Ok(Encoders {
        image: Arc::new(image),
        text: Arc::new(text),
        tokenizer,
        model: ModelInfo {
            name: manifest.name.clone(),
            embedding_dim: manifest.embedding_dim,
            logit_scale: manifest.logit_scale,
            random_weights: manifest.random_weights,
        },
        backend: "cpu",
        reason,
    })
}
