//! The Hailo text path's files besides the HEF, in the hailo-apps layout: the CLIP
//! tokenizer (`clip_tokenizer.json`), the token-embedding lookup table
//! (`token_embedding_lut.npy`, vocabulary × hidden f32) and the text projection
//! (`text_projection.npy`, hidden × embedding f32, applied as `hidden @ projection`).
//!
//! Loading checks every shape and dtype and names the file in each error. `export` writes
//! the three files from a Hugging Face CLIP checkpoint (`hailo-clip export-text-assets`);
//! it needs no Hailo library, so every build has it.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use safetensors::{Dtype, SafeTensors};

use crate::tokenize::{TextTokenizer, TokenizerError, EOT_ID};

pub const TOKENIZER_FILE: &str = "clip_tokenizer.json";
pub const LUT_FILE: &str = "token_embedding_lut.npy";
pub const PROJECTION_FILE: &str = "text_projection.npy";

/// CLIP's context length: the text HEF takes this many token embeddings.
pub const CONTEXT_LENGTH: usize = 77;

/// Where the token embeddings and the text projection live in a Hugging Face CLIPModel
/// (or CLIPTextModelWithProjection) checkpoint.
const HF_TOKEN_EMBEDDING: &str = "text_model.embeddings.token_embedding.weight";
const HF_TEXT_PROJECTION: &str = "text_projection.weight";
const HF_LOGIT_SCALE: &str = "logit_scale";

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{path} is missing: {hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

fn invalid(path: &Path, message: impl Into<String>) -> AssetError {
    AssetError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The text path's files, loaded and checked against each other.
pub struct TextAssets {
    pub tokenizer: TextTokenizer,
    /// vocabulary × hidden
    pub lut: Array2<f32>,
    /// hidden × embedding
    pub projection: Array2<f32>,
}

impl TextAssets {
    /// Loads the three files from `dir`, flat or in hailo-apps' `json/` and `npy/`
    /// sub-folders (see [`super::layout`]); the log says which file was used.
    pub fn load(dir: &Path) -> Result<TextAssets, AssetError> {
        let find = |file: &str, what: &str| {
            super::layout::text_asset(dir, file)
                .map(|found| {
                    tracing::info!(
                        "{what}: {} ({})",
                        found.path.display(),
                        found.layout.describe()
                    );
                    found.path
                })
                .map_err(|missing| AssetError::Missing {
                    path: dir.join(file),
                    hint: format!(
                        "{what}: {missing} (write it with `hailo-clip export-text-assets --hf-dir HF_CLIP_DIR --out {}`)",
                        dir.display()
                    ),
                })
        };
        let tokenizer_path = find(TOKENIZER_FILE, "the CLIP tokenizer")?;
        let lut_path = find(LUT_FILE, "the token-embedding lookup table")?;
        let projection_path = find(PROJECTION_FILE, "the text projection")?;
        let tokenizer = TextTokenizer::from_file(&tokenizer_path, CONTEXT_LENGTH)?;
        let lut = read_matrix(&lut_path)?;
        if lut.nrows() <= EOT_ID as usize || lut.ncols() == 0 {
            return Err(invalid(
                &lut_path,
                format!(
                    "shape {:?}: expected one row per CLIP token id ({} rows) of the text hidden size",
                    lut.shape(),
                    EOT_ID + 1
                ),
            ));
        }
        let projection = read_matrix(&projection_path)?;
        if projection.nrows() != lut.ncols() || projection.ncols() == 0 {
            return Err(invalid(
                &projection_path,
                format!(
                    "shape {:?}: expected [{}, embedding size], its rows matching the columns of {}",
                    projection.shape(),
                    lut.ncols(),
                    lut_path.display()
                ),
            ));
        }
        Ok(TextAssets {
            tokenizer,
            lut,
            projection,
        })
    }
}

/// Reads a 2-D float32 `.npy`, with errors that name the file and say what was expected.
pub fn read_matrix(path: &Path) -> Result<Array2<f32>, AssetError> {
    let open = || std::fs::File::open(path).map_err(|e| invalid(path, format!("cannot open: {e}")));
    let header = Header::from_reader(&mut BufReader::new(open()?))
        .map_err(|e| invalid(path, format!("not a .npy file: {e}")))?;
    let dtype = header.type_descriptor.to_string();
    if !matches!(dtype.trim_matches('\''), "<f4" | ">f4" | "=f4") {
        return Err(invalid(
            path,
            format!("dtype {dtype}, expected float32 ('<f4')"),
        ));
    }
    if header.shape.len() != 2 {
        return Err(invalid(
            path,
            format!("shape {:?}, expected a 2-D array", header.shape),
        ));
    }
    Array2::<f32>::read_npy(BufReader::new(open()?))
        .map_err(|e| invalid(path, format!("unreadable: {e}")))
}

/// What `export` wrote.
#[derive(Debug)]
pub struct ExportSummary {
    pub files: Vec<PathBuf>,
    pub vocabulary: usize,
    pub hidden: usize,
    pub embedding: usize,
    /// exp(logit_scale) from the checkpoint, when it has one: the value for `hailo.logit_scale`.
    pub logit_scale: Option<f32>,
}

/// Writes `clip_tokenizer.json`, `token_embedding_lut.npy` and `text_projection.npy` into
/// `out` from a Hugging Face CLIP checkpoint directory (`model.safetensors` + `tokenizer.json`).
pub fn export(hf_dir: &Path, out: &Path) -> Result<ExportSummary, AssetError> {
    let weights_path = hf_dir.join("model.safetensors");
    let tokenizer_path = hf_dir.join("tokenizer.json");
    if !weights_path.is_file() {
        return Err(AssetError::Missing {
            path: weights_path,
            hint: "a Hugging Face CLIP checkpoint saved as safetensors is needed \
                   (save_pretrained writes model.safetensors; sharded checkpoints are not read)"
                .into(),
        });
    }
    if !tokenizer_path.is_file() {
        return Err(AssetError::Missing {
            path: tokenizer_path,
            hint: "the checkpoint's fast tokenizer (tokenizer.json) is needed".into(),
        });
    }
    TextTokenizer::from_file(&tokenizer_path, CONTEXT_LENGTH)?;
    let bytes = std::fs::read(&weights_path)
        .map_err(|e| invalid(&weights_path, format!("cannot read: {e}")))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| invalid(&weights_path, format!("not a safetensors file: {e}")))?;
    let lut = tensor_matrix(&tensors, HF_TOKEN_EMBEDDING, &weights_path)?;
    // A Linear layer stores its weight as [out, in]; the daemon applies `hidden @ P`.
    let projection_weight = tensor_matrix(&tensors, HF_TEXT_PROJECTION, &weights_path)?;
    if lut.nrows() <= EOT_ID as usize || projection_weight.ncols() != lut.ncols() {
        return Err(invalid(
            &weights_path,
            format!(
                "{HF_TOKEN_EMBEDDING} {:?} and {HF_TEXT_PROJECTION} {:?} are not a CLIP text tower's",
                lut.shape(),
                projection_weight.shape()
            ),
        ));
    }
    let projection = projection_weight.t().as_standard_layout().into_owned();
    let logit_scale = match tensors.tensor(HF_LOGIT_SCALE) {
        Ok(view) => tensor_values(&view, HF_LOGIT_SCALE, &weights_path)?
            .first()
            .map(|v| v.exp()),
        Err(_) => None,
    };

    write_assets(out, &tokenizer_path, &lut, &projection, logit_scale)
}

/// Writes the three files into `out`, each through a temporary name.
fn write_assets(
    out: &Path,
    tokenizer_path: &Path,
    lut: &Array2<f32>,
    projection: &Array2<f32>,
    logit_scale: Option<f32>,
) -> Result<ExportSummary, AssetError> {
    std::fs::create_dir_all(out).map_err(|e| AssetError::Write {
        path: out.to_path_buf(),
        message: e.to_string(),
    })?;
    let files = vec![
        out.join(TOKENIZER_FILE),
        out.join(LUT_FILE),
        out.join(PROJECTION_FILE),
    ];
    write_atomically(&files[0], |file| {
        std::io::copy(&mut std::fs::File::open(tokenizer_path)?, file).map(|_| ())
    })?;
    write_atomically(&files[1], |file| {
        lut.write_npy(file).map_err(std::io::Error::other)
    })?;
    write_atomically(&files[2], |file| {
        projection.write_npy(file).map_err(std::io::Error::other)
    })?;
    Ok(ExportSummary {
        files,
        vocabulary: lut.nrows(),
        hidden: lut.ncols(),
        embedding: projection.ncols(),
        logit_scale,
    })
}

/// Writes through a temporary file renamed into place, so a failed export never leaves a
/// half-written asset under the real name.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), AssetError> {
    let err = |e: std::io::Error| AssetError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".partial");
    let tmp = PathBuf::from(tmp_name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(err)?);
    write(&mut file).map_err(err)?;
    file.into_inner()
        .map_err(|e| err(e.into_error()))?
        .sync_all()
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn tensor_matrix(
    tensors: &SafeTensors,
    name: &str,
    path: &Path,
) -> Result<Array2<f32>, AssetError> {
    let view = tensors.tensor(name).map_err(|_| {
        invalid(
            path,
            format!("has no tensor {name}: is this a Hugging Face CLIP checkpoint?"),
        )
    })?;
    let &[rows, cols] = view.shape() else {
        return Err(invalid(
            path,
            format!("{name} has shape {:?}, expected 2-D", view.shape()),
        ));
    };
    let values = tensor_values(&view, name, path)?;
    Array2::from_shape_vec((rows, cols), values).map_err(|e| invalid(path, format!("{name}: {e}")))
}

/// A tensor's elements as f32, from f32, f16 or bf16 storage (little-endian, as safetensors is).
fn tensor_values(
    view: &safetensors::tensor::TensorView,
    name: &str,
    path: &Path,
) -> Result<Vec<f32>, AssetError> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(invalid(
                path,
                format!("{name} has dtype {other:?}; F32, F16 and BF16 are read"),
            ))
        }
    })
}

/// Writes `clip_tokenizer.json`, `token_embedding_lut.npy` and `text_projection.npy` into
/// `out` from a model directory's text encoder graph (Immich's `textual/model.onnx`, or the
/// flat layout's `textual.onnx`), with no checkpoint: the token embedding is the initializer
/// `[vocab, width]` that a Gather on the token input reads, and the projection the
/// initializer `[width, embed]` of the MatMul nearest the graph's output. Found by their
/// role in the graph, since exporters rename them; written as exact copies.
pub fn export_from_onnx(
    model: &crate::model::ModelDir,
    out: &Path,
) -> Result<ExportSummary, AssetError> {
    let graph_path = model.textual();
    let tokenizer_path = model.tokenizer();
    TextTokenizer::from_file(&tokenizer_path, CONTEXT_LENGTH)?;
    let weights = onnx_weights::find(&graph_path)?;
    let (lut, projection) = (weights.token_embedding, weights.projection);
    if lut.nrows() <= EOT_ID as usize || projection.nrows() != lut.ncols() {
        return Err(invalid(
            &graph_path,
            format!(
                "token embedding {:?} and projection {:?} are not a CLIP text tower's",
                lut.shape(),
                projection.shape()
            ),
        ));
    }
    // The logit scale is not in a text graph.
    write_assets(out, &tokenizer_path, &lut, &projection, None)
}

/// The two weights of a text encoder graph the Hailo text path needs.
mod onnx_weights {
    use std::collections::HashMap;
    use std::path::Path;

    use ndarray::Array2;
    use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

    use super::{invalid, AssetError};

    pub struct Found {
        pub token_embedding: Array2<f32>,
        /// `[width, embed]`, applied as `hidden @ projection`.
        pub projection: Array2<f32>,
    }

    pub fn find(path: &Path) -> Result<Found, AssetError> {
        use tract_onnx::prelude::Framework;
        let proto = tract_onnx::onnx()
            .proto_model_for_path(path)
            .map_err(|e| invalid(path, format!("not a readable ONNX model: {e}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| invalid(path, "the model has no graph"))?;
        let external = crate::model::onnx::external_data(path).map_err(|e| invalid(path, e))?;
        let dir = External(&external);
        let tensors = constants(graph);
        let producers: HashMap<&str, &NodeProto> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        let tokens: Vec<&str> = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !tensors.contains_key(n))
            .collect();
        // Whether `name` is computed from a token input, a few ops back (Cast, Reshape...).
        let from_tokens = |name: &str| {
            let mut frontier = vec![name.to_string()];
            for _ in 0..6 {
                let mut next = Vec::new();
                for n in &frontier {
                    if tokens.contains(&n.as_str()) {
                        return true;
                    }
                    if let Some(node) = producers.get(n.as_str()) {
                        next.extend(
                            node.input
                                .iter()
                                .filter(|i| !tensors.contains_key(i.as_str()))
                                .cloned(),
                        );
                    }
                }
                frontier = next;
            }
            false
        };
        let two_d = |name: &str| tensors.get(name).filter(|t| t.dims.len() == 2);
        let embedding = graph
            .node
            .iter()
            .filter(|n| n.op_type == "Gather" && n.input.len() == 2)
            .find_map(|n| two_d(&n.input[0]).filter(|_| from_tokens(&n.input[1])))
            .ok_or_else(|| {
                invalid(path, "no Gather reads a [vocab, width] table with the token ids: not a CLIP text encoder")
            })?;
        let width = embedding.dims[1];
        // Breadth-first from the output back: the first MatMul (or Gemm) with a [width, E]
        // weight is the projection.
        let output = graph
            .output
            .first()
            .ok_or_else(|| invalid(path, "the graph has no output"))?;
        let mut frontier = vec![output.name.clone()];
        let mut seen = std::collections::HashSet::new();
        let mut projection = None;
        'search: for _ in 0..64 {
            let mut next = Vec::new();
            for name in &frontier {
                let Some(node) = producers.get(name.as_str()) else {
                    continue;
                };
                if !seen.insert(node.name.clone() + &node.output.join(",")) {
                    continue;
                }
                if node.op_type == "MatMul" && node.input.len() == 2 {
                    if let Some(w) = two_d(&node.input[1]).filter(|w| w.dims[0] == width) {
                        projection = Some(matrix(w, &dir, path)?);
                        break 'search;
                    }
                }
                if node.op_type == "Gemm" && node.input.len() >= 2 {
                    let trans_b = node
                        .attribute
                        .iter()
                        .any(|a| a.name == "transB" && a.i == 1);
                    if let Some(w) = two_d(&node.input[1]) {
                        let m = matrix(w, &dir, path)?;
                        let m = if trans_b {
                            m.t().as_standard_layout().into_owned()
                        } else {
                            m
                        };
                        if m.nrows() as i64 == width {
                            projection = Some(m);
                            break 'search;
                        }
                    }
                }
                next.extend(
                    node.input
                        .iter()
                        .filter(|i| !tensors.contains_key(i.as_str()))
                        .cloned(),
                );
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        let projection = projection.ok_or_else(|| {
            invalid(
                path,
                format!("no MatMul near the output applies a [{width}, embed] projection"),
            )
        })?;
        Ok(Found {
            token_embedding: matrix(embedding, &dir, path)?,
            projection,
        })
    }

    /// Initializers and Constant nodes' values, by name.
    fn constants(graph: &GraphProto) -> HashMap<&str, &TensorProto> {
        let mut out: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        for node in graph.node.iter().filter(|n| n.op_type == "Constant") {
            if let (Some(out_name), Some(t)) = (
                node.output.first(),
                node.attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref()),
            ) {
                out.insert(out_name.as_str(), t);
            }
        }
        out
    }

    /// The graph's external data, each tensor's range checked (see
    /// [`crate::model::onnx::external_data`]).
    struct External<'a>(&'a [crate::model::onnx::ExternalData]);

    /// A 2-D float tensor's values (f32 or f16; inline or in external data beside the graph).
    fn matrix(
        t: &TensorProto,
        external: &External,
        path: &Path,
    ) -> Result<Array2<f32>, AssetError> {
        let (rows, cols) = (t.dims[0] as usize, t.dims[1] as usize);
        let n = rows * cols;
        let bytes;
        let raw: &[u8] = if !t.external_data.is_empty() {
            let data = external
                .0
                .iter()
                .find(|e| e.tensor == t.name)
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!("{}: external data that was not checked", t.name),
                    )
                })?;
            bytes = data
                .read()
                .map_err(|e| invalid(&data.file, format!("cannot read {}: {e}", t.name)))?;
            &bytes
        } else {
            &t.raw_data
        };
        let values: Vec<f32> = if t.data_type == DataType::Float as i32 {
            if raw.is_empty() {
                t.float_data.clone()
            } else {
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
        } else if t.data_type == DataType::Float16 as i32 {
            raw.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        } else {
            return Err(invalid(
                path,
                format!(
                    "{} has ONNX data type {}; float and float16 are read",
                    t.name, t.data_type
                ),
            ));
        };
        if values.len() != n {
            return Err(invalid(
                path,
                format!(
                    "{} holds {} values for shape {:?}",
                    t.name,
                    values.len(),
                    t.dims
                ),
            ));
        }
        Array2::from_shape_vec((rows, cols), values)
            .map_err(|e| invalid(path, format!("{}: {e}", t.name)))
    }
}
