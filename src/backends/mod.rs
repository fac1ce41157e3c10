//! Backend selection: builds the image and text encoders the config asks for.
//!
//! `backend: cpu` runs the ONNX model directory; `backend: hailo` needs a usable Hailo
//! device and is a start-up error without one; `backend: auto` takes Hailo when it is
//! usable (the device node exists and HailoRT opens it) and otherwise the CPU, and says
//! which and why. With Hailo, images always run on the device and `hailo.text_encoder`
//! puts the text encoder on the device, on the CPU engine, or (`auto`, the default) on the
//! device when its HEF is there and loads and on the CPU otherwise: the Model Zoo has a
//! hailo10h text HEF only from 5.2, and Pi OS has shipped HailoRT 5.1. Nothing here ever substitutes
//! a stand-in for a model that failed to load.

pub mod cpu;
pub mod hailo;

use std::sync::Arc;

use crate::config::{BackendChoice, Config};
use crate::encoder::{Backend, ImageEncoder, ModelInfo, TextEncoder};
use crate::model::ModelDir;
use crate::tokenize::TextTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    ModelDir(#[from] crate::model::ModelDirError),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuLoadError),
    #[error(transparent)]
    OnnxRuntime(#[from] cpu::OnnxRuntimeUnavailable),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenize::TokenizerError),
    #[error("backend: hailo was requested, but {0}")]
    HailoUnavailable(String),
    #[error("no text encoder can run: on the Hailo device, {device}; on the CPU, {cpu}. Get the text HEF \
             (HailoRT 5.2 or later: sudo ./install.sh --models hailo10h --hf-dir HF_CLIP_DIR, which also \
             writes the text files), or a CPU text model for model.dir (sudo ./install.sh --models cpu \
             --hf-dir HF_CLIP_DIR)")]
    NoTextEncoder { device: String, cpu: String },
    #[cfg(any(feature = "hailo", feature = "hailo-fake"))]
    #[error(transparent)]
    Hailo(#[from] hailo::HailoLoadError),
}

/// Loaded encoders, ready to hand to the service.
pub struct Encoders {
    pub image: Arc<dyn ImageEncoder>,
    pub text: Arc<dyn TextEncoder>,
    pub tokenizer: TextTokenizer,
    pub model: ModelInfo,
    /// The backend serving images, for /health.
    pub backend: Backend,
    /// Why that backend was chosen, for the log and /health.
    pub reason: String,
    /// Why the text encoder runs where it runs.
    pub text_reason: String,
}

pub fn load(config: &Config) -> Result<Encoders, LoadError> {
    // Where Hailo may run, with the HEFs and text files a pull put in model.dir.
    let with_pulled;
    let config = if config.backend == BackendChoice::Cpu {
        config
    } else {
        let (hailo, said) = hailo::pulled::settings(config);
        if let Some(said) = said {
            tracing::info!("{said}");
        }
        with_pulled = Config {
            hailo,
            ..config.clone()
        };
        &with_pulled
    };
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

/// Images on the device. Text per `hailo.text_encoder`: `hailo` on the device (strict),
/// `cpu` on the CPU engine from `model.dir` (strict), `auto` on the device when its HEF and
/// text files load, else on the CPU engine, saying why.
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
fn load_hailo(
    config: &Config,
    device: hailo::HailoDevice,
    #[allow(unused_mut)] mut reason: String,
) -> Result<Encoders, LoadError> {
    use crate::config::TextEncoderChoice;

    #[cfg(feature = "hailo-fake")]
    {
        tracing::warn!(
            "this build runs the HailoRT test double (feature hailo-fake): no accelerator is used"
        );
        reason.push_str(" [HailoRT test double build: no accelerator is used]");
    }
    use crate::encoder::Encoder;
    let cfg = &config.hailo;
    let session = hailo::HailoSession::new(cfg, device);
    session.watch_health();
    let image = hailo::HailoImageEncoder::load(&session, cfg)?;
    let on_device = |image: &hailo::HailoImageEncoder| -> Result<TextParts, LoadError> {
        // Text files pulled into the model directory are its own: its tokenizer is set up
        // as the model's origin sets it up (Immich's pad token and cleaning), as on the CPU,
        // and the host pads and pools as the model does.
        let model = hailo::pulled::text_model(config, cfg)?;
        let (text, tokenizer) = hailo::HailoTextEncoder::load(&session, cfg, model.as_ref())?;
        let model = ModelInfo {
            name: cfg.model_name.clone(),
            embedding_dim: image.embedding_dim(),
            logit_scale: cfg.logit_scale,
            logit_bias: config.model.logit_bias,
            random_weights: false,
            immich_model: Some(cfg.immich_model.clone()),
        };
        Ok((Arc::new(text), tokenizer, model))
    };
    let (text, tokenizer, model, text_reason) = match cfg.text_encoder {
        TextEncoderChoice::Hailo => {
            let (t, k, m) = on_device(&image)?;
            (t, k, m, "hailo.text_encoder: hailo".to_string())
        }
        TextEncoderChoice::Cpu => {
            let (t, k, m) = cpu_text(config)?;
            (t, k, m, "hailo.text_encoder: cpu".to_string())
        }
        TextEncoderChoice::Auto => match on_device(&image) {
            Ok((t, k, m)) => (
                t,
                k,
                m,
                "hailo.text_encoder: auto and the text HEF and its files loaded".to_string(),
            ),
            Err(device_error) => {
                let (t, k, m) = cpu_text(config).map_err(|cpu_error| LoadError::NoTextEncoder {
                    device: device_error.to_string(),
                    cpu: cpu_error.to_string(),
                })?;
                let why = format!(
                    "hailo.text_encoder: auto and the text encoder cannot run on the device ({device_error}), so it runs on the CPU engine"
                );
                tracing::warn!("{why}");
                (t, k, m, why)
            }
        },
    };
    Ok(Encoders {
        image: Arc::new(image),
        text,
        tokenizer,
        model,
        backend: Backend::Hailo,
        reason,
        text_reason,
    })
}

#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
type TextParts = (Arc<dyn TextEncoder>, TextTokenizer, ModelInfo);

/// The CPU engine's text encoder and tokenizer from `model.dir`, beside images on Hailo.
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
fn cpu_text(config: &Config) -> Result<TextParts, LoadError> {
    let dir = ModelDir::open(&config.model.dir)?;
    let tokenizer = dir.load_tokenizer()?;
    let (engine, why) = cpu::Engine::choose(config)?;
    tracing::info!("CPU engine for the text encoder: {why}");
    let text = cpu::CpuTextEncoder::load(&dir, &engine, tokenizer.pad_id())?;
    Ok((Arc::new(text), tokenizer, model_info(&dir, config)))
}

/// The model's facts, with `model.logit_scale` from the config over the model's own.
pub fn model_info(dir: &ModelDir, config: &Config) -> ModelInfo {
    let manifest = &dir.manifest;
    ModelInfo {
        name: manifest.name.clone(),
        embedding_dim: manifest.embedding_dim,
        logit_scale: config.model.logit_scale.unwrap_or(manifest.logit_scale),
        logit_bias: config.model.logit_bias,
        random_weights: manifest.random_weights,
        immich_model: manifest.immich_model.clone(),
    }
}

fn load_cpu(config: &Config, reason: String) -> Result<Encoders, LoadError> {
    let dir = ModelDir::open(&config.model.dir)?;
    let tokenizer = dir.load_tokenizer()?;
    let (engine, why) = cpu::Engine::choose(config)?;
    let reason = format!("{reason}; {why}");
    let image = cpu::CpuImageEncoder::load(&dir, &engine)?;
    let text = cpu::CpuTextEncoder::load(&dir, &engine, tokenizer.pad_id())?;
    Ok(Encoders {
        image: Arc::new(image),
        text: Arc::new(text),
        tokenizer,
        model: model_info(&dir, config),
        backend: Backend::Cpu,
        text_reason: reason.clone(),
        reason,
    })
}
