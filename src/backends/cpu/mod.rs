//! The CPU backend: the model directory's ONNX encoders (`visual.onnx`, `textual.onnx`) on
//! one of two engines behind the same encoder traits:
//!
//! * [`onnxruntime`]: ONNX Runtime (crate `ort`), loaded at run time from a
//!   `libonnxruntime.so` the machine has; about twice as fast as tract on these graphs;
//! * [`tract`]: pure Rust, always available.
//!
//! `cpu.engine: auto` takes ONNX Runtime when its library loads and tract otherwise, and
//! says which, with the library's file and version, in the log and /health; `onnxruntime`
//! and `tract` are strict. Both engines get the same inputs, in the form the model
//! directory's graphs take ([`crate::model::ImageGraph`], [`crate::model::TextGraph`]):
//! normalized NCHW float pixels (or raw NHWC bytes), and token ids padded with the
//! tokenizer's pad id (and their attention mask). A graph whose batch is fixed at 1
//! (Immich's exports) runs once per image or text.

pub mod onnxruntime;
pub mod tract;

use std::path::PathBuf;

use image::RgbImage;
use ndarray::{Array2, ArrayD, Axis};

use crate::config::{Config, CpuEngineChoice};
use crate::encoder::{Backend, Encoder, EncoderError, EncoderInfo, ImageEncoder, TextEncoder};
use crate::model::{IdType, ImageGraph, Manifest, ModelDir, PixelInput, TextGraph, TextInputs};
use crate::preprocess::{normalize_nchw, Interpolation, ResizeMode};
use crate::tokenize::pad;

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
    #[error("expected inputs {expected:?}, found {found:?}")]
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

/// One named input's values, in the element type the graph takes.
pub enum Feed {
    F32(ArrayD<f32>),
    U8(ArrayD<u8>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
}

impl Loaded {
    fn run(
        &self,
        feeds: Vec<(String, Feed)>,
        batch: usize,
        dim: usize,
    ) -> Result<Array2<f32>, EncoderError> {
        match &self.runner {
            Runner::Tract(r) => r.run(feeds, batch, dim),
            Runner::OnnxRuntime(r) => r.run(feeds, batch, dim),
        }
    }

    /// Runs `batch` rows at once, or one by one (`one_by_one`, a graph whose batch is fixed
    /// at 1), with `feeds(range)` making the inputs of the rows in `range`.
    fn run_rows(
        &self,
        batch: usize,
        one_by_one: bool,
        dim: usize,
        feeds: impl Fn(std::ops::Range<usize>) -> Vec<(String, Feed)>,
    ) -> Result<Array2<f32>, EncoderError> {
        if !one_by_one {
            return self.run(feeds(0..batch), batch, dim);
        }
        let mut out = Array2::<f32>::zeros((batch, dim));
        for row in 0..batch {
            let one = self.run(feeds(row..row + 1), 1, dim)?;
            out.index_axis_mut(Axis(0), row)
                .assign(&one.index_axis(Axis(0), 0));
        }
        Ok(out)
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
    output: &str,
    tract_facts: impl Fn(
        &tract_onnx::prelude::SymbolScope,
    ) -> Vec<(String, tract_onnx::prelude::InferenceFact)>,
) -> Result<Loaded, CpuLoadError> {
    let (runner, library) = match engine {
        Engine::OnnxRuntime { library, threads } => {
            // ONNX Runtime reads the shapes from the graph: it needs only the input names.
            let scope = tract_onnx::prelude::SymbolScope::default();
            let names: Vec<String> = tract_facts(&scope).into_iter().map(|(n, _)| n).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            (
                Runner::OnnxRuntime(onnxruntime::OrtRunner::load(
                    &path, &names, output, *threads,
                )?),
                Some(format!("{} ({})", library.path.display(), library.version)),
            )
        }
        Engine::Tract(executor) => (
            Runner::Tract(tract::TractRunner::load(
                &path,
                output,
                tract_facts,
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

/// The batch dimension of a graph's inputs: 1 where the graph fixes it, else symbolic.
fn batch_dim(symbols: &tract_onnx::prelude::SymbolScope, one: bool) -> tract_onnx::prelude::TDim {
    use tract_onnx::prelude::*;
    if one {
        1.to_dim()
    } else {
        symbols.sym("N").to_dim()
    }
}

pub struct CpuImageEncoder {
    loaded: Loaded,
    graph: ImageGraph,
    manifest: Manifest,
}

pub struct CpuTextEncoder {
    loaded: Loaded,
    graph: TextGraph,
    manifest: Manifest,
    pad_id: u32,
}

impl CpuImageEncoder {
    pub fn load(dir: &ModelDir, engine: &Engine) -> Result<Self, CpuLoadError> {
        use tract_onnx::prelude::*;
        let size = dir.manifest.image_size as usize;
        let graph = dir.image.clone();
        let loaded = load(engine, graph.path.clone(), &graph.output, |symbols| {
            let n = batch_dim(symbols, graph.batch_of_one);
            let fact: InferenceFact = match graph.pixels {
                PixelInput::NormalizedF32 => {
                    f32::fact(&[n, 3.to_dim(), size.to_dim(), size.to_dim()]).into()
                }
                PixelInput::RawU8 => {
                    u8::fact(&[n, size.to_dim(), size.to_dim(), 3.to_dim()]).into()
                }
            };
            vec![(graph.input.clone(), fact)]
        })?;
        Ok(Self {
            loaded,
            graph,
            manifest: dir.manifest.clone(),
        })
    }
}

impl CpuTextEncoder {
    /// `pad_id`: what the ids are padded with, the tokenizer's ([`crate::tokenize::TextTokenizer::pad_id`]).
    pub fn load(dir: &ModelDir, engine: &Engine, pad_id: u32) -> Result<Self, CpuLoadError> {
        use tract_onnx::prelude::*;
        let context = dir.manifest.context_length;
        let graph = dir.text.clone();
        let loaded = load(engine, graph.path.clone(), &graph.output, |symbols| {
            let shape = [batch_dim(symbols, graph.batch_of_one), context.to_dim()];
            let fact = |ids: IdType| -> InferenceFact {
                match ids {
                    IdType::I32 => i32::fact(&shape).into(),
                    IdType::I64 => i64::fact(&shape).into(),
                }
            };
            match &graph.inputs {
                TextInputs::Ids { name, ids } => vec![(name.clone(), fact(*ids))],
                TextInputs::IdsAndMask {
                    ids_name,
                    mask_name,
                    ids,
                } => vec![
                    (ids_name.clone(), fact(*ids)),
                    (mask_name.clone(), fact(*ids)),
                ],
            }
        })?;
        Ok(Self {
            loaded,
            graph,
            manifest: dir.manifest.clone(),
            pad_id,
        })
    }
}

/// Both CPU encoders say the same of themselves: the model's embedding width, the CPU's
/// batch, the loaded graph's engine.
macro_rules! cpu_encoder {
    ($encoder:ty) => {
        impl Encoder for $encoder {
            fn embedding_dim(&self) -> usize {
                self.manifest.embedding_dim
            }
            fn max_batch(&self) -> usize {
                CPU_MAX_BATCH
            }
            fn info(&self) -> EncoderInfo {
                self.loaded.info()
            }
        }
    };
}

cpu_encoder!(CpuImageEncoder);
cpu_encoder!(CpuTextEncoder);

impl ImageEncoder for CpuImageEncoder {
    fn input_size(&self) -> u32 {
        self.manifest.image_size
    }
    fn resize_mode(&self) -> ResizeMode {
        self.manifest.resize
    }
    fn interpolation(&self) -> Interpolation {
        self.graph.interpolation
    }
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        let m = &self.manifest;
        let feeds = |rows: std::ops::Range<usize>| {
            let images = &images[rows];
            let feed = match self.graph.pixels {
                PixelInput::NormalizedF32 => {
                    Feed::F32(normalize_nchw(images, m.image_mean, m.image_std).into_dyn())
                }
                PixelInput::RawU8 => Feed::U8(raw_nhwc(images)),
            };
            vec![(self.graph.input.clone(), feed)]
        };
        self.loaded.run_rows(
            images.len(),
            self.graph.batch_of_one,
            m.embedding_dim,
            feeds,
        )
    }
}

impl TextEncoder for CpuTextEncoder {
    fn encode_texts(&self, token_ids: &[Vec<u32>]) -> Result<Array2<f32>, EncoderError> {
        let context = self.manifest.context_length;
        // Padded with the tokenizer's pad id, as the model's origin pads (Hugging Face's CLIP
        // tokenizer and Immich's set-up both pad with <|endoftext|> for CLIP's BPE); the
        // causal mask keeps padding from touching the EOT row the pooler reads.
        let feeds = |rows: std::ops::Range<usize>| {
            let seqs = &token_ids[rows];
            let mut ids = Array2::<i64>::zeros((seqs.len(), context));
            let mut mask = Array2::<i64>::zeros((seqs.len(), context));
            for (row, seq) in seqs.iter().enumerate() {
                let used = seq.len().min(context);
                for (col, id) in pad(seq, context, self.pad_id).into_iter().enumerate() {
                    ids[[row, col]] = i64::from(id);
                    mask[[row, col]] = i64::from(col < used);
                }
            }
            let typed = |a: Array2<i64>, t: IdType| match t {
                IdType::I64 => Feed::I64(a.into_dyn()),
                // Token ids are below 2^31 (vocabularies are a few hundred thousand).
                IdType::I32 => Feed::I32(a.mapv(|v| v as i32).into_dyn()),
            };
            match &self.graph.inputs {
                TextInputs::Ids { name, ids: t } => vec![(name.clone(), typed(ids, *t))],
                TextInputs::IdsAndMask {
                    ids_name,
                    mask_name,
                    ids: t,
                } => vec![
                    (ids_name.clone(), typed(ids, *t)),
                    (mask_name.clone(), typed(mask, *t)),
                ],
            }
        };
        self.loaded.run_rows(
            token_ids.len(),
            self.graph.batch_of_one,
            self.manifest.embedding_dim,
            feeds,
        )
    }
}

/// Square RGB images as one u8 NHWC array, as they are.
fn raw_nhwc(images: &[RgbImage]) -> ArrayD<u8> {
    let size = images.first().map_or(0, |i| i.width() as usize);
    let mut data = Vec::with_capacity(images.len() * size * size * 3);
    for image in images {
        data.extend_from_slice(image.as_raw());
    }
    ArrayD::from_shape_vec(vec![images.len(), size, size, 3], data)
        .expect("square images of one size")
}
