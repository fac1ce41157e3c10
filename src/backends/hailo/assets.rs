//! The Hailo text path's files besides the HEF, in the hailo-apps layout: the CLIP
//! tokenizer (`clip_tokenizer.json`), the token-embedding lookup table
//! (`token_embedding_lut.npy`, vocabulary × hidden f32, read row by row as prompts need
//! them, never held), the text projection (`text_projection.npy`, hidden × embedding f32,
//! applied as `hidden @ projection`) and, for a head with a bias (SigLIP's),
//! `text_projection_bias.npy`.
//!
//! How the host builds the HEF's input ([`TextSetup`]): CLIP's as hailo-apps does it
//! (context 77, padded with 0, pooled at the end-of-text token), or, for a model directory's
//! own files, as that model does it (its tokenizer, context length, pad token and pooling:
//! SigLIP's 64 tokens padded with `<pad>` and pooled at the last position).
//!
//! Loading checks every shape and dtype and names the file in each error. `export` writes
//! the files from a Hugging Face CLIP checkpoint (`hailo-clip export-text-assets`);
//! it needs no Hailo library, so every build has it.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use safetensors::{Dtype, SafeTensors};

use crate::tokenize::{TextTokenizer, TokenizerError, EOT_ID};

pub const TOKENIZER_FILE: &str = "clip_tokenizer.json";
pub const LUT_FILE: &str = "token_embedding_lut.npy";
pub const PROJECTION_FILE: &str = "text_projection.npy";
pub const PROJECTION_BIAS_FILE: &str = "text_projection_bias.npy";

/// CLIP's context length: the text HEF takes this many token embeddings.
pub const CONTEXT_LENGTH: usize = 77;

/// Token id CLIP's text path pads with, as hailo-apps does (CLIP's causal mask keeps padding
/// from reaching the pooled row).
const CLIP_PAD_ID: u32 = 0;

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

/// Which row of the text HEF's per-position output the embedding is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first highest id: CLIP's end-of-text token.
    Argmax,
    /// The last position of the padded context (SigLIP).
    Last,
}

/// How the host turns a prompt's ids into the text HEF's input, and reads its output.
pub struct TextSetup {
    pub tokenizer: TextTokenizer,
    pub frame: TextFrame,
}

/// The text HEF's frame: how many ids, padded with what, pooled where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextFrame {
    /// Token embeddings the HEF takes: ids are padded (or were truncated) to this many.
    pub context: usize,
    pub pad_id: u32,
    pub pooling: Pooling,
}

impl TextFrame {
    /// The row the embedding is read from in `padded` (`context` ids).
    pub fn pooled_row(&self, padded: &[u32]) -> usize {
        match self.pooling {
            // The first of the highest ids, as ONNX ArgMax and torch's argmax pick it.
            Pooling::Argmax => {
                padded
                    .iter()
                    .enumerate()
                    .fold(0, |best, (i, &id)| if id > padded[best] { i } else { best })
            }
            Pooling::Last => padded.len() - 1,
        }
    }
}

impl TextSetup {
    /// A model directory's own set-up: its tokenizer, context length, pad token and pooling.
    /// CLIP's (argmax) pads with 0 as hailo-apps does; the causal mask keeps padding from the
    /// pooled row, so the pad id changes nothing there.
    pub fn of_model(model: &crate::model::ModelDir) -> Result<TextSetup, AssetError> {
        use crate::model::TextPooling;
        let tokenizer = model.load_tokenizer()?;
        let (pooling, pad_id) = match &model.text.pooling {
            TextPooling::Argmax => (Pooling::Argmax, CLIP_PAD_ID),
            TextPooling::Last => (Pooling::Last, tokenizer.pad_id()),
            TextPooling::Other(kind) => {
                return Err(invalid(
                    &model.root.join("config.json"),
                    format!(
                        "text_cfg.pool_type {kind:?}: the Hailo text path pools as CLIP (argmax) or SigLIP (last) do; set hailo.text_encoder: cpu"
                    ),
                ))
            }
        };
        Ok(TextSetup {
            frame: TextFrame {
                context: model.manifest.context_length,
                pad_id,
                pooling,
            },
            tokenizer,
        })
    }
}

/// The token-embedding table (vocabulary × hidden, little-endian f32 `.npy`), read row by
/// row from the file as prompts need them (positioned reads): none of it is held, so a
/// 256k-row vocabulary costs no memory, and the rows a prompt reads come from the page
/// cache. (A memory map was measured first: the kernel maps the pages around each one
/// touched, and after 500 prompts the whole 786 MB table counted in the daemon's RSS.)
pub struct TokenTable {
    file: std::fs::File,
    path: PathBuf,
    /// Where the rows start, after the `.npy` header.
    offset: u64,
    rows: usize,
    cols: usize,
}

impl TokenTable {
    pub fn open(path: &Path) -> Result<TokenTable, AssetError> {
        let file =
            std::fs::File::open(path).map_err(|e| invalid(path, format!("cannot open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| invalid(path, format!("cannot read its size: {e}")))?
            .len();
        let mut reader = BufReader::new(&file);
        let header = Header::from_reader(&mut reader)
            .map_err(|e| invalid(path, format!("not a .npy file: {e}")))?;
        let offset = {
            use std::io::Seek;
            reader
                .stream_position()
                .map_err(|e| invalid(path, format!("cannot read: {e}")))?
        };
        let dtype = header.type_descriptor.to_string();
        let dtype = dtype.trim_matches('\'');
        if !(dtype == "<f4" || (cfg!(target_endian = "little") && dtype == "=f4")) {
            return Err(invalid(
                path,
                format!("dtype '{dtype}', expected little-endian float32 ('<f4')"),
            ));
        }
        let &[rows, cols] = header.shape.as_slice() else {
            return Err(invalid(
                path,
                format!("shape {:?}, expected a 2-D array", header.shape),
            ));
        };
        if header.layout.is_fortran() {
            return Err(invalid(
                path,
                "stored in Fortran order; rows must be contiguous",
            ));
        }
        let need = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(offset));
        if need.is_none_or(|n| n > len) {
            return Err(invalid(
                path,
                format!("holds {len} bytes, fewer than its header's [{rows}, {cols}] float32 need"),
            ));
        }
        Ok(TokenTable {
            file,
            path: path.to_path_buf(),
            offset,
            rows,
            cols,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends row `id`'s little-endian f32 bytes (what the HEF's f32 input takes as they are)
    /// to `out`.
    pub fn append_row(&self, id: u32, out: &mut Vec<u8>) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        if id as usize >= self.rows {
            return Err(format!(
                "token id {id} is outside the token-embedding table ({} rows)",
                self.rows
            ));
        }
        let width = self.cols * 4;
        let start = out.len();
        out.resize(start + width, 0);
        self.file
            .read_exact_at(&mut out[start..], self.offset + id as u64 * width as u64)
            .map_err(|e| format!("{}: cannot read row {id}: {e}", self.path.display()))
    }

    /// Row `id` as f32s.
    pub fn row(&self, id: u32) -> Result<Vec<f32>, String> {
        let mut bytes = Vec::new();
        self.append_row(id, &mut bytes)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
            .collect())
    }
}

/// The text path's files, loaded and checked against each other.
pub struct TextAssets {
    pub setup: TextSetup,
    /// vocabulary × hidden, read by row
    pub lut: TokenTable,
    /// hidden × embedding
    pub projection: Array2<f32>,
    /// The head's bias (embedding), where the model's head has one (SigLIP's).
    pub bias: Option<Array1<f32>>,
}

impl TextAssets {
    /// Loads the files from `dir`, flat or in hailo-apps' `json/` and `npy/` sub-folders
    /// (see [`super::layout`]); the log says which file was used. With `model` (the files
    /// are that model directory's own), the tokenizer and its set-up are the model's, and
    /// `clip_tokenizer.json` is not read; without, CLIP's as hailo-apps has them.
    pub fn load(
        dir: &Path,
        model: Option<&crate::model::ModelDir>,
    ) -> Result<TextAssets, AssetError> {
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
        let setup = match model {
            Some(model) => TextSetup::of_model(model)?,
            None => TextSetup {
                tokenizer: TextTokenizer::from_file(
                    &find(TOKENIZER_FILE, "the CLIP tokenizer")?,
                    CONTEXT_LENGTH,
                )?,
                frame: TextFrame {
                    context: CONTEXT_LENGTH,
                    pad_id: CLIP_PAD_ID,
                    pooling: Pooling::Argmax,
                },
            },
        };
        let lut_path = find(LUT_FILE, "the token-embedding lookup table")?;
        let projection_path = find(PROJECTION_FILE, "the text projection")?;
        let lut = TokenTable::open(&lut_path)?;
        let least_rows = match model {
            None => EOT_ID as usize + 1,
            Some(_) => setup.frame.pad_id as usize + 1,
        };
        if lut.rows() < least_rows || lut.cols() == 0 {
            return Err(invalid(
                &lut_path,
                format!(
                    "shape [{}, {}]: expected one row per token id (at least {least_rows} rows) of the text hidden size",
                    lut.rows(),
                    lut.cols()
                ),
            ));
        }
        let projection = read_matrix(&projection_path)?;
        if projection.nrows() != lut.cols() || projection.ncols() == 0 {
            return Err(invalid(
                &projection_path,
                format!(
                    "shape {:?}: expected [{}, embedding size], its rows matching the columns of {}",
                    projection.shape(),
                    lut.cols(),
                    lut_path.display()
                ),
            ));
        }
        let bias = match super::layout::text_asset(dir, PROJECTION_BIAS_FILE) {
            Ok(found) => {
                let bias = read_vector(&found.path)?;
                if bias.len() != projection.ncols() {
                    return Err(invalid(
                        &found.path,
                        format!(
                            "{} values: expected {} (the columns of {})",
                            bias.len(),
                            projection.ncols(),
                            projection_path.display()
                        ),
                    ));
                }
                Some(bias)
            }
            Err(_) => None,
        };
        Ok(TextAssets {
            setup,
            lut,
            projection,
            bias,
        })
    }
}

/// Reads a 1-D float32 `.npy`.
fn read_vector(path: &Path) -> Result<Array1<f32>, AssetError> {
    let file = std::fs::File::open(path).map_err(|e| invalid(path, format!("cannot open: {e}")))?;
    Array1::<f32>::read_npy(BufReader::new(file))
        .map_err(|e| invalid(path, format!("not a 1-D float32 .npy: {e}")))
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

    write_assets(out, &tokenizer_path, &lut, &projection, None, logit_scale)
}

/// Writes the files into `out`, each through a temporary name; the head's bias only where
/// there is one (an earlier export's is removed, so the files always match).
fn write_assets(
    out: &Path,
    tokenizer_path: &Path,
    lut: &Array2<f32>,
    projection: &Array2<f32>,
    bias: Option<&Array1<f32>>,
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
    let bias_path = out.join(PROJECTION_BIAS_FILE);
    let mut files = files;
    match bias {
        Some(bias) => {
            write_atomically(&bias_path, |file| {
                bias.write_npy(file).map_err(std::io::Error::other)
            })?;
            files.push(bias_path);
        }
        None => match std::fs::remove_file(&bias_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(AssetError::Write {
                    path: bias_path,
                    message: format!("an earlier export's bias cannot be removed: {e}"),
                })
            }
            _ => {}
        },
    }
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

/// Writes `clip_tokenizer.json`, `token_embedding_lut.npy`, `text_projection.npy` (and
/// `text_projection_bias.npy` for a head with a bias) into `out` from a model directory's
/// text encoder graph (Immich's `textual/model.onnx`, or the flat layout's `textual.onnx`),
/// with no checkpoint: the token embedding is the initializer `[vocab, width]` that a Gather
/// on the token input reads, the projection the initializer `[width, embed]` of the MatMul
/// nearest the graph's output, and its bias the `[embed]` initializer added to its result.
/// Found by their role in the graph, since exporters rename them; written as exact copies.
/// `clip_tokenizer.json` is the model's `tokenizer.json` (SigLIP's too: the daemon reads
/// the model directory's own with its set-up, see [`TextSetup::of_model`]).
pub fn export_from_onnx(
    model: &crate::model::ModelDir,
    out: &Path,
) -> Result<ExportSummary, AssetError> {
    let graph_path = model.textual();
    let tokenizer_path = model.tokenizer();
    let setup = TextSetup::of_model(model)?;
    let weights = onnx_weights::find(&graph_path)?;
    let (lut, projection) = (weights.token_embedding, weights.projection);
    let least_rows = match setup.frame.pooling {
        Pooling::Argmax => EOT_ID as usize + 1,
        Pooling::Last => setup.frame.pad_id as usize + 1,
    };
    let bias_fits = weights
        .bias
        .as_ref()
        .is_none_or(|b| b.len() == projection.ncols());
    if lut.nrows() < least_rows || projection.nrows() != lut.ncols() || !bias_fits {
        return Err(invalid(
            &graph_path,
            format!(
                "token embedding {:?}, projection {:?} and bias {:?} are not a text tower's",
                lut.shape(),
                projection.shape(),
                weights.bias.as_ref().map(|b| b.len())
            ),
        ));
    }
    // The logit scale is not in a text graph.
    write_assets(
        out,
        &tokenizer_path,
        &lut,
        &projection,
        weights.bias.as_ref(),
        None,
    )
}

/// The two weights of a text encoder graph the Hailo text path needs.
mod onnx_weights {
    use std::collections::HashMap;
    use std::path::Path;

    use ndarray::{Array1, Array2};
    use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

    use super::{invalid, AssetError};

    pub struct Found {
        pub token_embedding: Array2<f32>,
        /// `[width, embed]`, applied as `hidden @ projection`.
        pub projection: Array2<f32>,
        /// `[embed]`, added after the projection (a Linear with a bias: SigLIP's head).
        pub bias: Option<Array1<f32>>,
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
        let mut bias_name: Option<String> = None;
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
                        // A Linear with a bias exports as MatMul then Add of an [embed]
                        // constant.
                        let out = &node.output[0];
                        bias_name = graph
                            .node
                            .iter()
                            .filter(|n| n.op_type == "Add" && n.input.iter().any(|i| i == out))
                            .flat_map(|n| n.input.iter())
                            .find(|i| {
                                tensors
                                    .get(i.as_str())
                                    .is_some_and(|t| t.dims.len() == 1 && t.dims[0] == w.dims[1])
                            })
                            .cloned();
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
                            bias_name = node
                                .input
                                .get(2)
                                .filter(|c| {
                                    tensors.get(c.as_str()).is_some_and(|t| {
                                        t.dims.len() == 1 && t.dims[0] as usize == m.ncols()
                                    })
                                })
                                .cloned();
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
        let bias = match bias_name {
            Some(name) => {
                let t = tensors[name.as_str()];
                let n = t.dims[0] as usize;
                let mut row = t.clone();
                row.dims = vec![1, n as i64];
                Some(Array1::from_iter(matrix(&row, &dir, path)?.into_iter()))
            }
            None => None,
        };
        Ok(Found {
            token_embedding: matrix(embedding, &dir, path)?,
            projection,
            bias,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pooled_row_is_the_first_highest_id_or_the_last() {
        let clip = TextFrame {
            context: 6,
            pad_id: 0,
            pooling: Pooling::Argmax,
        };
        // CLIP's end-of-text is its highest id; padding with it keeps the first.
        assert_eq!(clip.pooled_row(&[49406, 320, 49407, 0, 0, 0]), 2);
        assert_eq!(
            clip.pooled_row(&[49406, 320, 49407, 49407, 49407, 49407]),
            2
        );
        let siglip = TextFrame {
            context: 6,
            pad_id: 1,
            pooling: Pooling::Last,
        };
        assert_eq!(siglip.pooled_row(&[17, 16, 2, 1, 1, 1]), 5);
    }
}
