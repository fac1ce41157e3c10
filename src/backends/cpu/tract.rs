//! The tract engine for the CPU backend (pure Rust; builds from crates alone).
//!
//! Each encoder is optimized once at load with a symbolic batch dimension, so one plan
//! serves every batch size. Matrix multiplication runs on a small thread pool owned by the
//! backend (`performance.inference_threads`), shared by the image and text encoders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array2, Ix2};
use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

use super::{CpuLoadError, CpuLoadProblem, Feed};
use crate::encoder::EncoderError;

type Plan = Arc<TypedSimplePlan>;

/// One ONNX encoder with named inputs and one output, batch dimension symbolic (or 1 where
/// the graph fixes it).
pub struct TractRunner {
    plan: Plan,
    /// The graph's input names, in its order.
    inputs: Vec<String>,
    path: PathBuf,
    executor: Executor,
}

impl TractRunner {
    /// Loads the graph at `path`, whose inputs must be exactly those named in `input_facts`
    /// (in any order), each given the fact there.
    pub fn load(
        path: &Path,
        output_name: &str,
        input_facts: impl Fn(&SymbolScope) -> Vec<(String, InferenceFact)>,
        executor: Executor,
    ) -> Result<TractRunner, CpuLoadError> {
        let err = |problem: CpuLoadProblem| CpuLoadError {
            path: path.to_path_buf(),
            problem,
        };
        let tract = |e: tract_onnx::prelude::TractError| err(CpuLoadProblem::Tract(e.into()));
        let mut model = tract_onnx::onnx().model_for_path(path).map_err(tract)?;
        let inputs = model.input_outlets().map_err(tract)?.to_vec();
        let outputs = model.output_outlets().map_err(tract)?.to_vec();
        let facts = input_facts(&model.symbols);
        let names: Vec<String> = inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let (mut found, mut expected) = (
            names.clone(),
            facts.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        );
        found.sort();
        expected.sort();
        if found != expected {
            return Err(err(CpuLoadProblem::Inputs {
                expected: expected.join(", "),
                found: names,
            }));
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
            return Err(err(CpuLoadProblem::Outputs {
                expected: output_name.into(),
                found: output_names,
            }));
        };
        model
            .select_output_outlets(&[outputs[index]])
            .map_err(tract)?;
        for (index, name) in names.iter().enumerate() {
            let fact = facts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, f)| f.clone())
                .expect("checked above");
            model.set_input_fact(index, fact).map_err(tract)?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| err(CpuLoadProblem::TractPlan(e.into())))?;
        Ok(TractRunner {
            plan,
            inputs: names,
            path: path.to_path_buf(),
            executor,
        })
    }

    /// Runs one batch of `batch` rows; each feed is one named input.
    pub fn run(
        &self,
        mut feeds: Vec<(String, Feed)>,
        batch: usize,
        expected_dim: usize,
    ) -> Result<Array2<f32>, EncoderError> {
        let mut values: TVec<TValue> = tvec!();
        for name in &self.inputs {
            let Some(at) = feeds.iter().position(|(n, _)| n == name) else {
                return Err(EncoderError::failed(format!(
                    "{}: no value for input {name}",
                    self.path.display()
                )));
            };
            let tensor: Tensor = match feeds.swap_remove(at).1 {
                Feed::F32(a) => a.into(),
                Feed::U8(a) => a.into(),
                Feed::I32(a) => a.into(),
                Feed::I64(a) => a.into(),
            };
            values.push(tensor.into_tvalue());
        }
        let outputs = multithread_tract_scope(self.executor.clone(), || self.plan.run(values))
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

/// A thread pool for the CPU engine's matrix multiplications.
pub fn executor(threads: usize) -> Executor {
    if threads <= 1 {
        Executor::SingleThread
    } else {
        Executor::multithread_with_name(threads, "hailo-clip-cpu")
    }
}
