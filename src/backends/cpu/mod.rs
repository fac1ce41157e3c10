//! The CPU backend: the model directory's ONNX encoders (`visual.onnx`, `textual.onnx`) on
//! one of two engines behind the same encoder traits:
//!
//! * [`onnxruntime`]: ONNX Runtime (crate `ort`), loaded at run time from a
//!   `libonnxruntime.so` the machine has; about twice as fast as tract on these graphs;
//! * [`tract`]: pure Rust, always available.
//!
//! `cpu.engine: auto` takes ONNX Runtime when its library loads and tract otherwise, and
//! says which, with the library's file and version, in the log and /health; `onnxruntime`
//! and `tract` are strict. Both engines get the same inputs: normalized NCHW float pixels,
//! and token ids padded with EOT.

pub mod onnxruntime;
pub mod tract;

use std::path::PathBuf;

use image::RgbImage;
use ndarray::Array2;

use crate::config::{Config, CpuEngineChoice};
use crate::encoder::{Backend, EncoderError, EncoderInfo, ImageEncoder, TextEncoder};
use crate::manifest::{Manifest, ModelDir};
use crate::preprocess::{normalize_nchw, ResizeMode};
use crate::tokenize::{pad, EOT_ID};

/// Largest batch the CPU engine runs at once; bigger requests are split by the service.
const CPU_MAX_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("cannot load ONNX model {path}: {problem}")]
pub struct CpuLoadError {
    pub path: PathBuf,
    #[source]
    pub problem: CpuLoadProblem,
}

/// What is wrong with an ONNX model file, or with the engine that was to run it.
#[derive(Debug, thiserror::Error)]
pub enum CpuLoadProblem {
    #[error("ONNX Runtime is not loaded: {0}")]
    RuntimeNotLoaded(String),
    #[error("ONNX Runtime cannot load it: {0}")]
    OnnxRuntime(#[source] ort::Error),
    /// tract's error (tract reports through `anyhow`; the message shows its causes too).
    #[error("not a readable ONNX model: {}", with_causes(.0.as_ref()))]
    Tract(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot build an inference plan: {}", with_causes(.0.as_ref()))]
    TractPlan(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("expected one input named {expected:?}, found {found:?}")]
    Inputs {
        expected: String,
        found: Vec<String>,
    },
    #[error("expected an output named {expected:?}, found {found:?}")]
    Outputs {
        expected: String,
        found: Vec<String>,
    },
}

/// `error: cause: cause…`, as `anyhow`'s `{:#}` shows it.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// `cpu.engine: onnxruntime` and its library did not load.
#[derive(Debug, thiserror::Error)]
#[error("cpu.engine: onnxruntime, but ONNX Runtime did not load: {0}")]
pub struct OnnxRuntimeUnavailable(pub String);

/// The engine chosen for this process.
#[derive(Clone)]
pub enum Engine {
    OnnxRuntime {
        library: onnxruntime::Library,
        threads: usize,
    },
    Tract(tract_linalg::multithread::Executor),
}

impl Engine {
    /// Chooses the engine `cpu.engine` asks for, and says why.
    pub fn choose(config: &Config) -> Result<(Engine, String), OnnxRuntimeUnavailable> {
        let threads = config.performance.inference_threads;
        let library = config.cpu.onnxruntime_library.as_deref();
        let ort = |reason: &str, library: onnxruntime::Library| {
            let why = format!(
                "{reason}: ONNX Runtime {} from {}",
                library.version,
                library.path.display()
            );
            (Engine::OnnxRuntime { library, threads }, why)
        };
        match config.cpu.engine {
            CpuEngineChoice::Tract => Ok((
                Engine::Tract(tract::executor(threads)),
                "cpu.engine: tract".into(),
            )),
            CpuEngineChoice::Onnxruntime => onnxruntime::load(library)
                .map(|l| ort("cpu.engine: onnxruntime", l))
                .map_err(OnnxRuntimeUnavailable),
            CpuEngineChoice::Auto => Ok(match onnxruntime::load(library) {
                Ok(l) => ort("cpu.engine: auto and the library loaded", l),
                Err(e) => (
                    Engine::Tract(tract::executor(threads)),
                    format!("cpu.engine: auto and ONNX Runtime did not load ({e}): tract"),
                ),
            }),
        }
    }

    /// Every engine this machine can run with `threads` threads, ONNX Runtime first when its
    /// library loads (found as with `cpu.engine: auto`); otherwise why it did not.
    pub fn available(threads: usize) -> (Vec<(&'static str, Engine)>, Option<String>) {
        let tract = ("tract", Engine::Tract(tract::executor(threads)));
        match onnxruntime::load(None) {
            Ok(library) => (
                vec![
                    ("onnxruntime", Engine::OnnxRuntime { library, threads }),
                    tract,
                ],
                None,
            ),
            Err(e) => (vec![tract], Some(e)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Engine::OnnxRuntime { .. } => "onnxruntime",
            Engine::Tract(_) => "tract",
        }
    }
}

/// One encoder file on the chosen engine.
enum Runner {
    OnnxRuntime(onnxruntime::OrtRunner),
    Tract(tract::TractRunner),
}

/// Common to both encoders: the runner, the file, and the engine's description.
/// `run` takes the encoder's input array in the engine's form.
struct Loaded {
    runner: Runner,
    path: PathBuf,
    engine: &'static str,
    library: Option<String>,
}

impl Loaded {
    fn run<T, D>(
        &self,
        input: ndarray::Array<T, D>,
        dim: usize,
    ) -> Result<Array2<f32>, EncoderError>
    where
        T: tract_onnx::prelude::Datum + ort::value::PrimitiveTensorElementType + std::fmt::Debug,
        D: ndarray::Dimension,
    {
        match &self.runner {
            Runner::Tract(r) => r.run(input.into(), dim),
            Runner::OnnxRuntime(r) => {
                let shape = input.shape().to_vec();
                let data = input
                    .as_standard_layout()
                    .into_owned()
                    .into_raw_vec_and_offset()
                    .0;
                r.run(shape, data, dim)
            }
        }
    }

    fn info(&self) -> EncoderInfo {
        EncoderInfo {
            backend: Backend::Cpu,
            source: self.path.display().to_string(),
            reason: String::new(),
            engine: Some(self.engine),
            engine_library: self.library.clone(),
            hailo: None,
        }
    }
}

fn load(
    engine: &Engine,
    path: PathBuf,
    input: &str,
    output: &str,
    tract_fact: impl Fn(&tract_onnx::prelude::SymbolScope) -> tract_onnx::prelude::InferenceFact,
) -> Result<Loaded, CpuLoadError> {
    let (runner, library) = match engine {
        Engine::OnnxRuntime { library, threads } => (
            Runner::OnnxRuntime(onnxruntime::OrtRunner::load(
                &path, input, output, *threads,
            )?),
            Some(format!("{} ({})", library.path.display(), library.version)),
        ),
        Engine::Tract(executor) => (
            Runner::Tract(tract::TractRunner::load(
                &path,
                input,
                output,
                tract_fact,
                executor.clone(),
            )?),
            None,
        ),
    };
    Ok(Loaded {
        runner,
        path,
        engine: engine.name(),
        library,
    })
}

pub struct CpuImageEncoder {
    loaded: Loaded,
    manifest: Manifest,
}

pub struct CpuTextEncoder {
    loaded: Loaded,
    manifest: Manifest,
}

impl CpuImageEncoder {
    pub fn load(dir: &ModelDir, engine: &Engine) -> Result<Self, CpuLoadError> {
        use tract_onnx::prelude::*;
        let size = dir.manifest.image_size as usize;
        let loaded = load(
            engine,
            dir.visual(),
            "pixel_values",
            "image_embeds",
            |symbols| {
                let n = symbols.sym("N");
                f32::fact(&[n.to_dim(), 3.to_dim(), size.to_dim(), size.to_dim()]).into()
            },
        )?;
        Ok(Self {
            loaded,
            manifest: dir.manifest.clone(),
        })
    }
}

impl CpuTextEncoder {
    pub fn load(dir: &ModelDir, engine: &Engine) -> Result<Self, CpuLoadError> {
        use tract_onnx::prelude::*;
        let context = dir.manifest.context_length;
        let loaded = load(
            engine,
            dir.textual(),
            "input_ids",
            "text_embeds",
            |symbols| {
                let n = symbols.sym("N");
                i64::fact(&[n.to_dim(), context.to_dim()]).into()
            },
        )?;
        Ok(Self {
            loaded,
            manifest: dir.manifest.clone(),
        })
    }
}

impl ImageEncoder for CpuImageEncoder {
    fn input_size(&self) -> u32 {
        self.manifest.image_size
    }
    fn resize_mode(&self) -> ResizeMode {
        self.manifest.resize
    }
    fn embedding_dim(&self) -> usize {
        self.manifest.embedding_dim
    }
    fn max_batch(&self) -> usize {
        CPU_MAX_BATCH
    }
    fn info(&self) -> EncoderInfo {
        self.loaded.info()
    }
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        let pixels = normalize_nchw(images, self.manifest.image_mean, self.manifest.image_std);
        self.loaded.run(pixels, self.manifest.embedding_dim)
    }
}

impl TextEncoder for CpuTextEncoder {
    fn embedding_dim(&self) -> usize {
        self.manifest.embedding_dim
    }
    fn max_batch(&self) -> usize {
        CPU_MAX_BATCH
    }
    fn info(&self) -> EncoderInfo {
        self.loaded.info()
    }
    fn encode_texts(&self, token_ids: &[Vec<u32>]) -> Result<Array2<f32>, EncoderError> {
        let context = self.manifest.context_length;
        // Padding with EOT as Hugging Face's CLIP tokenizer does; the causal mask keeps
        // padding from touching the EOT row the pooler reads.
        let mut ids = Array2::<i64>::zeros((token_ids.len(), context));
        for (row, seq) in token_ids.iter().enumerate() {
            for (col, id) in pad(seq, context, EOT_ID).into_iter().enumerate() {
                ids[[row, col]] = i64::from(id);
            }
        }
        self.loaded.run(ids, self.manifest.embedding_dim)
    }
}
