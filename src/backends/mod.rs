//! Backend selection: builds the image and text encoders the config asks for.
//!
//! `backend: cpu` runs the ONNX model directory; `backend: hailo` needs a usable Hailo
//! device and is a start-up error without one; `backend: auto` takes Hailo when it is
//! usable (the device node exists and HailoRT opens it) and otherwise the CPU, and says
//! which and why. With Hailo, images always run on the device and `hailo.text_encoder`
//! puts the text encoder on the device or on the CPU engine. Nothing here ever substitutes
//! a stand-in for a model that failed to load.

pub mod cpu;
pub mod hailo;

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
    #[cfg(any(feature = "hailo", feature = "hailo-fake"))]
    #[error(transparent)]
    Hailo(#[from] hailo::HailoLoadError),
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

pub fn load(config: &Config) -> Result<Encoders, LoadError> {
    match config.backend {
        BackendChoice::Cpu => load_cpu(config, "backend: cpu in the config".to_string()),
        BackendChoice::Hailo => load_required_hailo(config),
        BackendChoice::Auto => load_auto(config),
    }
}

#[cfg(not(any(feature = "hailo", feature = "hailo-fake")))]
const NO_HAILO_FEATURE: &str = "this binary was built without the `hailo` cargo feature";

#[cfg(not(any(feature = "hailo", feature = "hailo-fake")))]
fn load_required_hailo(_config: &Config) -> Result<Encoders, LoadError> {
    Err(LoadError::HailoUnavailable(NO_HAILO_FEATURE.to_string()))
}

#[cfg(not(any(feature = "hailo", feature = "hailo-fake")))]
fn load_auto(config: &Config) -> Result<Encoders, LoadError> {
    load_cpu(
        config,
        format!("backend: auto and Hailo is not usable: {NO_HAILO_FEATURE}"),
    )
}

#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
fn load_required_hailo(config: &Config) -> Result<Encoders, LoadError> {
    let device = hailo::open_device(&config.hailo)
        .map_err(|e| LoadError::HailoUnavailable(e.to_string()))?;
    load_hailo(config, device, "backend: hailo in the config".to_string())
}

#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
fn load_auto(config: &Config) -> Result<Encoders, LoadError> {
    match hailo::open_device(&config.hailo) {
        Ok(device) => {
            let reason = format!(
                "backend: auto and Hailo device {} is usable (HailoRT {})",
                device.id(),
                device.hailort_version()
            );
            load_hailo(config, device, reason)
        }
        Err(e) => load_cpu(
            config,
            format!("backend: auto and Hailo is not usable: {e}"),
        ),
    }
}

/// Images on the device; text on the device or, with `hailo.text_encoder: cpu`, on the CPU
/// engine from `model.dir`.
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
fn load_hailo(
    config: &Config,
    device: hailo::HailoDevice,
    mut reason: String,
) -> Result<Encoders, LoadError> {
    use crate::config::TextEncoderChoice;

    #[cfg(feature = "hailo-fake")]
    {
        tracing::warn!(
            "this build runs the HailoRT test double (feature hailo-fake): no accelerator is used"
        );
        reason.push_str(" [HailoRT test double build: no accelerator is used]");
    }
    let cfg = &config.hailo;
    let image = hailo::HailoImageEncoder::load(&device, cfg)?;
    let (text, tokenizer, model): (Arc<dyn TextEncoder>, _, _) = match cfg.text_encoder {
        TextEncoderChoice::Hailo => {
            let (text, tokenizer) = hailo::HailoTextEncoder::load(&device, cfg)?;
            let model = ModelInfo {
                name: cfg.model_name.clone(),
                embedding_dim: image.embedding_dim(),
                logit_scale: cfg.logit_scale,
                random_weights: false,
            };
            (Arc::new(text), tokenizer, model)
        }
        TextEncoderChoice::Cpu => {
            reason.push_str("; text encoder on the CPU (hailo.text_encoder: cpu)");
            let dir = ModelDir::open(&config.model.dir)?;
            let tokenizer =
                ClipTokenizer::from_file(&dir.tokenizer(), dir.manifest.context_length)?;
            let text = cpu::CpuTextEncoder::load(
                &dir,
                cpu::executor(config.performance.inference_threads),
            )?;
            (Arc::new(text), tokenizer, model_info(&dir))
        }
    };
    Ok(Encoders {
        image: Arc::new(image),
        text,
        tokenizer,
        model,
        backend: "hailo",
        reason,
    })
}

fn model_info(dir: &ModelDir) -> ModelInfo {
    let manifest = &dir.manifest;
    ModelInfo {
        name: manifest.name.clone(),
        embedding_dim: manifest.embedding_dim,
        logit_scale: manifest.logit_scale,
        random_weights: manifest.random_weights,
    }
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
        model: model_info(&dir),
        backend: "cpu",
        reason,
    })
}
