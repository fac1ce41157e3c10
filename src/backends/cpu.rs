//! The CPU backend: the model directory's ONNX encoders run by tract (pure Rust).
//!
//! Each encoder is optimized once at load with a symbolic batch dimension, so one plan
//! serves every batch size. Matrix multiplication runs on a small thread pool owned by the
//! backend (`performance.inference_threads`), shared by the image and text encoders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use ndarray::{Array2, Ix2};
use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

use crate::encoder::{EncoderError, EncoderInfo, ImageEncoder, TextEncoder};
use crate::manifest::{Manifest, ModelDir};
use crate::preprocess::{normalize_nchw, ResizeMode};
use crate::tokenize::{pad, EOT_ID};

/// Largest batch the CPU engine runs at once; bigger requests are split by the service.
const CPU_MAX_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("cannot load ONNX model {path}: {message}")]
pub struct CpuLoadError {
    pub path: PathBuf,
    pub message: String,
}

type Plan = Arc<TypedSimplePlan>;

/// One ONNX encoder with a single input and a single output, batch dimension symbolic.
struct OnnxEncoder {
    plan: Plan,
    path: PathBuf,
    executor: Executor,
}

impl OnnxEncoder {
    fn load(
        path: &Path,
        input_name: &str,
        output_name: &str,
        input_fact: impl Fn(&SymbolScope) -> InferenceFact,
        executor: Executor,
    ) -> Result<OnnxEncoder, CpuLoadError> {
        let err = |message: String| CpuLoadError {
            path: path.to_path_buf(),
            message,
        };
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| err(format!("not a readable ONNX model: {e:#}")))?;
        let inputs = model
            .input_outlets()
            .map_err(|e| err(e.to_string()))?
            .to_vec();
        let outputs = model
            .output_outlets()
            .map_err(|e| err(e.to_string()))?
            .to_vec();
        if inputs.len() != 1 || model.node(inputs[0].node).name != input_name {
            let names: Vec<_> = inputs
                .iter()
                .map(|o| model.node(o.node).name.clone())
                .collect();
            return Err(err(format!(
                "expected one input named {input_name:?}, found {names:?}"
            )));
        }
        let output_names: Vec<String> = outputs
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let Some(index) = output_names.iter().position(|n| n == output_name) else {
            return Err(err(format!(
                "expected an output named {output_name:?}, found {output_names:?}"
            )));
        };
        model
            .select_output_outlets(&[outputs[index]])
            .map_err(|e| err(e.to_string()))?;
        let fact = input_fact(&model.symbols);
        model
            .set_input_fact(0, fact)
            .map_err(|e| err(e.to_string()))?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| err(format!("cannot build an inference plan: {e:#}")))?;
        Ok(OnnxEncoder {
            plan,
            path: path.to_path_buf(),
            executor,
        })
    }

    fn info(&self) -> EncoderInfo {
        EncoderInfo {
            backend: "cpu",
            reason: String::new(),
            source: self.path.display().to_string(),
            hailo: None,
        }
    }

    fn run(&self, input: Tensor, expected_dim: usize) -> Result<Array2<f32>, EncoderError> {
        let batch = input.shape()[0];
        let outputs = multithread_tract_scope(self.executor.clone(), || {
            self.plan.run(tvec!(input.into_tvalue()))
        })
        .map_err(|e| {
            EncoderError::failed(format!("{}: inference failed: {e:#}", self.path.display()))
        })?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(|e| {
            EncoderError::failed(format!("{}: output is not f32: {e}", self.path.display()))
        })?;
        let array = view
            .into_dimensionality::<Ix2>()
            .map_err(|_| {
                EncoderError::failed(format!(
                    "{}: output shape {:?} is not [N, D]",
                    self.path.display(),
                    outputs[0].shape()
                ))
            })?
            .to_owned();
        if array.dim() != (batch, expected_dim) {
            return Err(EncoderError::failed(format!(
                "{}: output shape {:?}, expected [{batch}, {expected_dim}]",
                self.path.display(),
                array.dim()
            )));
        }
        Ok(array)
    }
}

pub struct CpuImageEncoder {
    onnx: OnnxEncoder,
    manifest: Manifest,
}

pub struct CpuTextEncoder {
    onnx: OnnxEncoder,
    manifest: Manifest,
}

/// A thread pool for the CPU engine's matrix multiplications.
pub fn executor(threads: usize) -> Executor {
    if threads <= 1 {
        Executor::SingleThread
    } else {
        Executor::multithread_with_name(threads, "hailo-clip-cpu")
    }
}

impl CpuImageEncoder {
    pub fn load(dir: &ModelDir, executor: Executor) -> Result<Self, CpuLoadError> {
        let size = dir.manifest.image_size as usize;
        let onnx = OnnxEncoder::load(
            &dir.visual(),
            "pixel_values",
            "image_embeds",
            |symbols| {
                let n = symbols.sym("N");
                f32::fact(&[n.to_dim(), 3.to_dim(), size.to_dim(), size.to_dim()]).into()
            },
            executor,
        )?;
        Ok(Self {
            onnx,
            manifest: dir.manifest.clone(),
        })
    }
}

impl CpuTextEncoder {
    pub fn load(dir: &ModelDir, executor: Executor) -> Result<Self, CpuLoadError> {
        let context = dir.manifest.context_length;
        let onnx = OnnxEncoder::load(
            &dir.textual(),
            "input_ids",
            "text_embeds",
            |symbols| {
                let n = symbols.sym("N");
                i64::fact(&[n.to_dim(), context.to_dim()]).into()
            },
            executor,
        )?;
        Ok(Self {
            onnx,
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
        self.onnx.info()
    }
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        let pixels = normalize_nchw(images, self.manifest.image_mean, self.manifest.image_std);
        self.onnx.run(pixels.into(), self.manifest.embedding_dim)
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
        self.onnx.info()
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
        self.onnx.run(ids.into(), self.manifest.embedding_dim)
    }
}
