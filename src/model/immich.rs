//! Immich's model layout, as its exporter writes it (immich `machine-learning/export/
//! immich_model_exporter/exporters/onnx/models/openclip.py`) and its machine-learning service
//! reads it (`immich_ml/models/clip/{visual,textual}.py`):
//!
//! ```text
//! config.json                    open_clip's model config: embed_dim, text_cfg
//! visual/model.onnx              image [1,3,S,S] f32 normalized (or u8 [1,S,S,3] raw) -> embedding
//! visual/preprocess_cfg.json     size, mean, std, interpolation, resize_mode
//! textual/model.onnx             text [1,L] int32 (M-CLIP: input_ids + attention_mask) -> embedding
//! textual/tokenizer.json         a Hugging Face tokenizer
//! textual/tokenizer_config.json  pad_token
//! ```
//!
//! Read into the same [`Manifest`] as the flat layout, with what differs (input names and
//! types, the batch fixed at 1, the tokenizer's set-up) in [`ImageGraph`] and [`TextGraph`].
//! The logit scale is not in these files: 100 (CLIP's trained value, clamped), unless
//! `model.logit_scale` says otherwise.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::onnx::{signature, Elem, GraphSig, TensorSig};
use super::record::PullRecord;
use super::{
    require, IdType, ImageGraph, Layout, Manifest, ModelDir, ModelDirError, PixelInput, TextGraph,
    TextInputs, TextPooling, TokenizerSetup,
};
use crate::preprocess::{Interpolation, ResizeMode};
use crate::tokenize::TextCleaning;

pub const CONFIG_FILE: &str = "config.json";
pub const VISUAL_MODEL: &str = "visual/model.onnx";
pub const PREPROCESS_CFG: &str = "visual/preprocess_cfg.json";
pub const TEXTUAL_MODEL: &str = "textual/model.onnx";
pub const TOKENIZER: &str = "textual/tokenizer.json";
pub const TOKENIZER_CFG: &str = "textual/tokenizer_config.json";

/// Every file the layout needs, in the order they are checked (and pulled).
pub const FILES: [&str; 6] = [
    CONFIG_FILE,
    PREPROCESS_CFG,
    TOKENIZER_CFG,
    TOKENIZER,
    VISUAL_MODEL,
    TEXTUAL_MODEL,
];

/// CLIP's learned logit scale is clamped at 100 in training, and every released CLIP model
/// sits at that clamp.
pub const DEFAULT_LOGIT_SCALE: f32 = 100.0;

/// Whether `root` is laid out as Immich's models are (config.json beside visual/ and textual/).
pub fn looks_like(root: &Path) -> bool {
    root.join(CONFIG_FILE).is_file()
        && root.join("visual").is_dir()
        && root.join("textual").is_dir()
}

#[derive(Deserialize)]
struct OpenClipConfig {
    embed_dim: usize,
    #[serde(default)]
    text_cfg: TextCfg,
}

#[derive(Deserialize, Default)]
struct TextCfg {
    context_length: Option<usize>,
    /// open_clip's text pooling; `argmax` when absent (its default).
    pool_type: Option<String>,
    #[serde(default)]
    tokenizer_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct PreprocessCfg {
    size: Size,
    mean: Triple,
    std: Triple,
    interpolation: String,
    /// open_clip's default for configs older than the key.
    #[serde(default = "shortest")]
    resize_mode: String,
}

fn shortest() -> String {
    "shortest".into()
}

/// `size`: an int, or `[h, w]` (Immich takes the first).
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    One(u32),
    Pair(Vec<u32>),
}

/// `mean`/`std`: three numbers, or one for all channels.
#[derive(Deserialize)]
#[serde(untagged)]
enum Triple {
    One(f32),
    Three([f32; 3]),
}

impl Triple {
    fn values(&self) -> [f32; 3] {
        match self {
            Triple::One(v) => [*v; 3],
            Triple::Three(v) => *v,
        }
    }
}

/// `pad_token`: a string, or an added token's object with `content`.
#[derive(Deserialize)]
#[serde(untagged)]
enum PadToken {
    Plain(String),
    Added { content: String },
}

#[derive(Deserialize)]
struct TokenizerCfg {
    pad_token: Option<PadToken>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelDirError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelDirError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelDirError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> ModelDirError {
    ModelDirError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The model's name: the pulled NAME where `pull` left its record, else the directory's
/// name (an Immich cache keeps each model in `clip/<name>/`).
pub fn model_name(root: &Path) -> Result<String, ModelDirError> {
    if let Some(record) = PullRecord::read(root)? {
        return Ok(record.name);
    }
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    canonical
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| invalid(root, "the directory has no name to call the model by"))
}

pub fn open(root: &Path) -> Result<ModelDir, ModelDirError> {
    const EXPORT: &str =
        "part of Immich's model layout (get the model with `hailo-clip pull NAME`)";
    let mut paths: Vec<PathBuf> = Vec::new();
    for file in FILES {
        paths.push(require(root.join(file), EXPORT)?);
    }
    let name = model_name(root)?;
    let unsupported = |path: &Path, why: String| ModelDirError::Unsupported {
        path: path.to_path_buf(),
        name: name.clone(),
        why,
    };
    // NLLB's prompts carry a FLORES-200 language prefix that Immich picks from the client's
    // locale (textual.py, WEBLATE_TO_FLORES200); without that table the embeddings would
    // differ from Immich's.
    if name.to_ascii_lowercase().starts_with("nllb") {
        return Err(unsupported(
            root,
            "NLLB models prefix each prompt with a FLORES-200 language code chosen from Immich's `language` option, \
             which hailo-clip does not implement; its embeddings would not equal Immich's"
                .into(),
        ));
    }

    let config_path = root.join(CONFIG_FILE);
    let config: OpenClipConfig = read_json(&config_path)?;
    let context_length = config.text_cfg.context_length.unwrap_or(77);
    let cleaning = match config
        .text_cfg
        .tokenizer_kwargs
        .as_ref()
        .and_then(|k| k.get("clean"))
        .and_then(|c| c.as_str())
    {
        Some("canonicalize") => TextCleaning::Canonicalize,
        _ => TextCleaning::Whitespace,
    };

    let pre_path = root.join(PREPROCESS_CFG);
    let pre: PreprocessCfg = read_json(&pre_path)?;
    let size = match &pre.size {
        Size::One(s) => *s,
        Size::Pair(v) if !v.is_empty() => v[0],
        Size::Pair(_) => return Err(invalid(&pre_path, "size is an empty list")),
    };
    let interpolation = Interpolation::from_pil_name(&pre.interpolation).ok_or_else(|| {
        unsupported(
            &pre_path,
            format!(
                "interpolation {:?} is not one hailo-clip resamples as PIL does (bicubic, bilinear, lanczos, box, hamming)",
                pre.interpolation
            ),
        )
    })?;
    let resize = match pre.resize_mode.as_str() {
        "shortest" => ResizeMode::Immich,
        "squash" => ResizeMode::Stretch,
        other => {
            return Err(unsupported(
                &pre_path,
                format!("resize_mode {other:?} is not one Immich supports (shortest, squash)"),
            ))
        }
    };

    let tok_cfg_path = root.join(TOKENIZER_CFG);
    let tok_cfg: TokenizerCfg = read_json(&tok_cfg_path)?;
    let pad_token = match tok_cfg.pad_token {
        Some(PadToken::Plain(s)) | Some(PadToken::Added { content: s }) => s,
        None => return Err(invalid(&tok_cfg_path, "it has no pad_token")),
    };

    let visual_path = root.join(VISUAL_MODEL);
    let image = image_graph(&visual_path, size, interpolation, &unsupported)?;
    let textual_path = root.join(TEXTUAL_MODEL);
    let pooling = match config.text_cfg.pool_type.as_deref() {
        None | Some("argmax") => TextPooling::Argmax,
        Some("last") => TextPooling::Last,
        Some(other) => TextPooling::Other(other.to_string()),
    };
    let text = text_graph(&textual_path, context_length, pooling, &unsupported)?;

    let manifest = Manifest {
        format_version: 1,
        name: name.clone(),
        embedding_dim: config.embed_dim,
        image_size: size,
        image_mean: pre.mean.values(),
        image_std: pre.std.values(),
        resize,
        context_length,
        logit_scale: DEFAULT_LOGIT_SCALE,
        random_weights: false,
        source: format!("Immich's model layout in {}", root.display()),
        immich_model: Some(name),
    };
    manifest
        .validate()
        .map_err(|message| invalid(&config_path, message))?;
    Ok(ModelDir {
        root: root.to_path_buf(),
        layout: Layout::Immich,
        manifest,
        image,
        text,
        tokenizer_path: root.join(TOKENIZER),
        tokenizer_setup: TokenizerSetup::Immich {
            pad_token,
            cleaning,
        },
    })
}

fn read_signature(path: &Path) -> Result<GraphSig, ModelDirError> {
    signature(path).map_err(|message| invalid(path, message))
}

/// Whether the batch dimension is 1 (fixed) or free; any other fixed size is refused.
fn batch_of_one(
    input: &TensorSig,
    path: &Path,
    unsupported: &dyn Fn(&Path, String) -> ModelDirError,
) -> Result<bool, ModelDirError> {
    match input.dims.first() {
        Some(Some(1)) => Ok(true),
        Some(None) => Ok(false),
        other => Err(unsupported(
            path,
            format!(
                "input {} has batch dimension {other:?}, neither 1 nor free",
                input.name
            ),
        )),
    }
}

/// Immich's graphs answer one output, `embedding`.
fn has_embedding_output(
    sig: &GraphSig,
    path: &Path,
    unsupported: &dyn Fn(&Path, String) -> ModelDirError,
) -> Result<(), ModelDirError> {
    if sig.output("embedding").is_some() {
        return Ok(());
    }
    Err(unsupported(
        path,
        format!(
            "it has no output named embedding (outputs {:?})",
            sig.outputs.iter().map(|o| &o.name).collect::<Vec<_>>()
        ),
    ))
}

fn image_graph(
    path: &Path,
    size: u32,
    interpolation: Interpolation,
    unsupported: &dyn Fn(&Path, String) -> ModelDirError,
) -> Result<ImageGraph, ModelDirError> {
    let sig = read_signature(path)?;
    let names = sig.input_names();
    let Some(input) = sig.input("image").filter(|_| names.len() == 1) else {
        return Err(unsupported(
            path,
            format!("its inputs are {names:?}; an Immich image encoder takes one input, image"),
        ));
    };
    let s = Some(i64::from(size));
    let pixels = match (input.elem, input.dims.as_slice()) {
        (Elem::F32, [_, Some(3), h, w]) if (h.is_none() || *h == s) && (w.is_none() || *w == s) => {
            PixelInput::NormalizedF32
        }
        (Elem::U8, [_, h, w, Some(3)]) if (h.is_none() || *h == s) && (w.is_none() || *w == s) => {
            PixelInput::RawU8
        }
        (elem, dims) => {
            return Err(unsupported(
                path,
                format!(
                    "input image is {elem:?} {dims:?}; expected f32 [1,3,{size},{size}] or u8 [1,{size},{size},3] (preprocess_cfg.json size {size})"
                ),
            ))
        }
    };
    let batch_of_one = batch_of_one(input, path, unsupported)?;
    has_embedding_output(&sig, path, unsupported)?;
    Ok(ImageGraph {
        path: path.to_path_buf(),
        input: "image".into(),
        output: "embedding".into(),
        pixels,
        batch_of_one,
        interpolation,
    })
}

fn text_graph(
    path: &Path,
    context_length: usize,
    pooling: TextPooling,
    unsupported: &dyn Fn(&Path, String) -> ModelDirError,
) -> Result<TextGraph, ModelDirError> {
    let sig = read_signature(path)?;
    let mut names = sig.input_names();
    names.sort();
    let id_type = |t: &TensorSig| -> Result<IdType, ModelDirError> {
        let elem = match t.elem {
            Elem::I32 => IdType::I32,
            Elem::I64 => IdType::I64,
            other => {
                return Err(unsupported(
                    path,
                    format!(
                        "input {} is {other:?}, not int32 or int64 token ids",
                        t.name
                    ),
                ))
            }
        };
        match t.dims.as_slice() {
            [_, None] => Ok(elem),
            [_, Some(l)] if *l as usize == context_length => Ok(elem),
            dims => Err(unsupported(
                path,
                format!(
                    "input {} has shape {dims:?}; expected [1, {context_length}] (config.json context_length)",
                    t.name
                ),
            )),
        }
    };
    let (inputs, first) = if names == ["text"] {
        let t = sig.input("text").expect("listed");
        (
            TextInputs::Ids {
                name: "text".into(),
                ids: id_type(t)?,
            },
            t,
        )
    } else if names == ["attention_mask", "input_ids"] {
        let ids = sig.input("input_ids").expect("listed");
        let mask = sig.input("attention_mask").expect("listed");
        let ids_type = id_type(ids)?;
        if id_type(mask)? != ids_type {
            return Err(unsupported(
                path,
                "input_ids and attention_mask have different element types".into(),
            ));
        }
        (
            TextInputs::IdsAndMask {
                ids_name: "input_ids".into(),
                mask_name: "attention_mask".into(),
                ids: ids_type,
            },
            ids,
        )
    } else {
        return Err(unsupported(
            path,
            format!(
                "its inputs are {:?}; an Immich text encoder takes text, or input_ids and attention_mask",
                sig.input_names()
            ),
        ));
    };
    let batch_of_one = batch_of_one(first, path, unsupported)?;
    has_embedding_output(&sig, path, unsupported)?;
    Ok(TextGraph {
        path: path.to_path_buf(),
        inputs,
        output: "embedding".into(),
        batch_of_one,
        pooling,
    })
}
