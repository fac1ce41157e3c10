//! What a model directory is: the files of a CLIP model and the facts about it, read into one
//! description ([`ModelDir`]) that the backends, `check-model` and `doctor` take.
//!
//! Two layouts are read:
//! * flat, as `scripts/export_onnx.py` writes it: `manifest.json`, `visual.onnx`,
//!   `textual.onnx`, `tokenizer.json` ([`manifest`]);
//! * Immich's, as its exporter writes it and its machine-learning cache holds it
//!   (`<cache>/clip/<name>/`): `config.json`, `visual/{model.onnx,preprocess_cfg.json}`,
//!   `textual/{model.onnx,tokenizer.json,tokenizer_config.json}` ([`immich`]). Everything
//!   else in such a directory (`rknpu/`, `armnn/`, `README.md`, caches) is ignored.
//!
//! A directory that is neither, or half of one, is an error naming the file and what is
//! wrong: never a model run with guessed values.

pub mod immich;
pub mod manifest;
pub mod onnx;
pub mod record;

use std::path::{Path, PathBuf};

pub use manifest::Manifest;

use crate::preprocess::Interpolation;
use crate::tokenize::{TextCleaning, TextTokenizer, TokenizerError};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const VISUAL_FILE: &str = "visual.onnx";
pub const TEXTUAL_FILE: &str = "textual.onnx";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("model directory {0} does not exist (set model.dir in the config, or get a model with `hailo-clip pull NAME`)")]
    MissingDir(PathBuf),
    #[error("{0} is not a model directory: it has neither manifest.json (the flat layout of scripts/export_onnx.py) nor config.json with visual/ and textual/ (Immich's layout, as `hailo-clip pull` writes it)")]
    NotAModel(PathBuf),
    #[error("model file {path} is missing: {hint}")]
    MissingFile { path: PathBuf, hint: &'static str },
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A model of a family this build cannot serve exactly as its origin does.
    #[error("{path}: model {name} cannot be served: {why}")]
    Unsupported {
        path: PathBuf,
        name: String,
        why: String,
    },
}

/// Which layout a directory has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Flat,
    Immich,
}

/// The element type of the image graph's input, and with it what the pixels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelInput {
    /// f32 NCHW, `(x/255 - mean) / std`.
    NormalizedF32,
    /// u8 NHWC RGB as it is: the graph normalizes (Immich's `normalizes_input`).
    RawU8,
}

/// The image encoder's graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGraph {
    pub path: PathBuf,
    pub input: String,
    pub output: String,
    pub pixels: PixelInput,
    /// The graph's batch dimension is fixed at 1 (Immich's exports): images run one by one.
    pub batch_of_one: bool,
    pub interpolation: Interpolation,
}

/// The element type of token ids (and of the attention mask, where there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdType {
    I32,
    I64,
}

/// What the text encoder's graph takes.
#[derive(Debug, Clone, PartialEq)]
pub enum TextInputs {
    /// One tensor of padded token ids `[N, context]`.
    Ids { name: String, ids: IdType },
    /// Token ids and their attention mask (1 for a token, 0 for padding), M-CLIP's exports.
    IdsAndMask {
        ids_name: String,
        mask_name: String,
        ids: IdType,
    },
}

/// Which position of the text transformer's last hidden states the text embedding is read
/// from (open_clip's `text_cfg.pool_type`). The graph does it on the CPU; the Hailo text path
/// does it on the host, after the HEF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextPooling {
    /// The first end-of-text token, the highest id (`argmax`, CLIP's).
    Argmax,
    /// The last position of the padded context (`last`, SigLIP's: no causal mask, so
    /// every pad token is read).
    Last,
    /// Another `pool_type` (`first`, `eos`, `none`...): served by the graph, not by the Hailo
    /// text path.
    Other(String),
}

/// The text encoder's graph.
#[derive(Debug, Clone, PartialEq)]
pub struct TextGraph {
    pub path: PathBuf,
    pub inputs: TextInputs,
    pub output: String,
    pub batch_of_one: bool,
    pub pooling: TextPooling,
}

/// How the tokenizer is set up.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerSetup {
    /// OpenAI's CLIP BPE, checked to be it, padded with EOT.
    Clip,
    /// As Immich sets its tokenizer up.
    Immich {
        pad_token: String,
        cleaning: TextCleaning,
    },
}

/// A model directory whose files exist and whose description is valid.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
    pub layout: Layout,
    /// The model's facts, from `manifest.json` or Immich's config files.
    pub manifest: Manifest,
    pub image: ImageGraph,
    pub text: TextGraph,
    pub tokenizer_path: PathBuf,
    pub tokenizer_setup: TokenizerSetup,
}

impl ModelDir {
    /// Reads the directory at `root` in whichever layout it has.
    pub fn open(root: &Path) -> Result<ModelDir, ModelDirError> {
        if !root.is_dir() {
            return Err(ModelDirError::MissingDir(root.to_path_buf()));
        }
        let dir = if root.join(MANIFEST_FILE).is_file() {
            open_flat(root)
        } else if immich::looks_like(root) {
            immich::open(root)
        } else {
            Err(ModelDirError::NotAModel(root.to_path_buf()))
        }?;
        // Every reader of the graphs (tract, ONNX Runtime, the Hailo export) opens the files
        // their external data names: a location outside the graph's directory is refused
        // here, before any of them runs.
        for graph in [&dir.image.path, &dir.text.path] {
            onnx::external_data(graph).map_err(|message| ModelDirError::Invalid {
                path: graph.clone(),
                message,
            })?;
        }
        Ok(dir)
    }

    pub fn visual(&self) -> PathBuf {
        self.image.path.clone()
    }
    pub fn textual(&self) -> PathBuf {
        self.text.path.clone()
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.tokenizer_path.clone()
    }

    /// The tokenizer, set up as this model's origin sets it up.
    pub fn load_tokenizer(&self) -> Result<TextTokenizer, TokenizerError> {
        let context = self.manifest.context_length;
        match &self.tokenizer_setup {
            TokenizerSetup::Clip => TextTokenizer::from_file(&self.tokenizer_path, context),
            TokenizerSetup::Immich {
                pad_token,
                cleaning,
            } => TextTokenizer::immich(&self.tokenizer_path, context, pad_token, *cleaning),
        }
    }
}

fn require(path: PathBuf, hint: &'static str) -> Result<PathBuf, ModelDirError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelDirError::MissingFile { path, hint })
    }
}

fn open_flat(root: &Path) -> Result<ModelDir, ModelDirError> {
    let visual = require(
        root.join(VISUAL_FILE),
        "the image encoder ONNX is absent (written by scripts/export_onnx.py)",
    )?;
    let textual = require(
        root.join(TEXTUAL_FILE),
        "the text encoder ONNX is absent (written by scripts/export_onnx.py)",
    )?;
    let tokenizer_path = require(
        root.join(TOKENIZER_FILE),
        "the CLIP tokenizer is absent (written by scripts/export_onnx.py)",
    )?;
    let manifest = Manifest::load(&root.join(MANIFEST_FILE))?;
    Ok(ModelDir {
        root: root.to_path_buf(),
        layout: Layout::Flat,
        manifest,
        image: ImageGraph {
            path: visual,
            input: "pixel_values".into(),
            output: "image_embeds".into(),
            pixels: PixelInput::NormalizedF32,
            batch_of_one: false,
            interpolation: Interpolation::Bicubic,
        },
        text: TextGraph {
            path: textual,
            inputs: TextInputs::Ids {
                name: "input_ids".into(),
                ids: IdType::I64,
            },
            output: "text_embeds".into(),
            batch_of_one: false,
            pooling: TextPooling::Argmax,
        },
        tokenizer_path,
        tokenizer_setup: TokenizerSetup::Clip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_and_file_are_named() {
        let err = ModelDir::open(Path::new("/nonexistent/model")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/model"));
        let dir = tempfile::tempdir().unwrap();
        let err = ModelDir::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.json") && err.contains("config.json"),
            "{err}"
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), "{}").unwrap();
        let err = ModelDir::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("visual.onnx"), "{err}");
    }

    #[test]
    fn the_bundled_model_is_flat() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/clip-tiny-random");
        let dir = ModelDir::open(&root).unwrap();
        assert_eq!(dir.layout, Layout::Flat);
        assert_eq!(dir.manifest.name, "clip-tiny-random");
        assert_eq!(dir.load_tokenizer().unwrap().pad_id(), 49407);
    }
}
