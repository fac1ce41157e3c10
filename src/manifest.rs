//! The model directory's `manifest.json`: what a CLIP export needs besides its weights
//! (embedding size, image size and normalization, resize mode, context length, logit scale).
//!
//! Loading validates every field and names the file in each error: a model directory that
//! is half right must stop the daemon, never run with guessed values.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::preprocess::ResizeMode;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const VISUAL_FILE: &str = "visual.onnx";
pub const TEXTUAL_FILE: &str = "textual.onnx";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("model directory {0} does not exist (set model.dir in the config, or export a model with scripts/export_onnx.py)")]
    MissingDir(PathBuf),
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub embedding_dim: usize,
    pub image_size: u32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub resize: ResizeMode,
    pub context_length: usize,
    /// The multiplier applied to cosine similarities before softmax (exp of CLIP's parameter).
    pub logit_scale: f32,
    /// True for generated test models: their scores mean nothing, and the daemon says so.
    #[serde(default)]
    pub random_weights: bool,
    #[serde(default)]
    pub source: String,
    /// The Immich CLIP model whose embeddings these equal (e.g. `ViT-B-32__openai` for
    /// OpenAI's ViT-B/32), so Immich can use this server without re-indexing; absent when
    /// none (Immich's /predict then refuses CLIP requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immich_model: Option<String>,
}

/// A model directory whose files all exist and whose manifest is valid.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
    pub manifest: Manifest,
}

impl ModelDir {
    pub fn open(root: &Path) -> Result<ModelDir, ModelDirError> {
        if !root.is_dir() {
            return Err(ModelDirError::MissingDir(root.to_path_buf()));
        }
        for (file, hint) in [
            (
                MANIFEST_FILE,
                "a model directory needs manifest.json (written by scripts/export_onnx.py)",
            ),
            (
                VISUAL_FILE,
                "the image encoder ONNX is absent (written by scripts/export_onnx.py)",
            ),
            (
                TEXTUAL_FILE,
                "the text encoder ONNX is absent (written by scripts/export_onnx.py)",
            ),
            (
                TOKENIZER_FILE,
                "the CLIP tokenizer is absent (written by scripts/export_onnx.py)",
            ),
        ] {
            let path = root.join(file);
            if !path.is_file() {
                return Err(ModelDirError::MissingFile { path, hint });
            }
        }
        let manifest = Manifest::load(&root.join(MANIFEST_FILE))?;
        Ok(ModelDir {
            root: root.to_path_buf(),
            manifest,
        })
    }

    pub fn visual(&self) -> PathBuf {
        self.root.join(VISUAL_FILE)
    }
    pub fn textual(&self) -> PathBuf {
        self.root.join(TEXTUAL_FILE)
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join(TOKENIZER_FILE)
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ModelDirError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelDirError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| ModelDirError::Invalid {
                path: path.to_path_buf(),
                message: format!("not a valid manifest: {e}"),
            })?;
        manifest
            .validate()
            .map_err(|message| ModelDirError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        if self.format_version != 1 {
            return Err(format!(
                "format_version {} is not supported (this build reads version 1)",
                self.format_version
            ));
        }
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        if !(1..=16384).contains(&self.embedding_dim) {
            return Err(format!(
                "embedding_dim {} is out of range",
                self.embedding_dim
            ));
        }
        if !(16..=4096).contains(&self.image_size) {
            return Err(format!(
                "image_size {} is out of range 16..=4096",
                self.image_size
            ));
        }
        if self.image_std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || self.image_mean.iter().any(|m| !m.is_finite())
        {
            return Err("image_mean must be finite and image_std positive".into());
        }
        if !(3..=1024).contains(&self.context_length) {
            return Err(format!(
                "context_length {} is out of range",
                self.context_length
            ));
        }
        if !self.logit_scale.is_finite() || self.logit_scale <= 0.0 {
            return Err(format!(
                "logit_scale {} must be a positive number",
                self.logit_scale
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_and_file_are_named() {
        let err = ModelDir::open(Path::new("/nonexistent/model")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/model"));
        let dir = std::env::temp_dir().join(format!("hc-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = ModelDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("manifest.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_manifest_names_the_problem() {
        let dir = std::env::temp_dir().join(format!("hc-manifest-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("manifest.json");
        std::fs::write(
            &path,
            r#"{"format_version":1,"name":"x","embedding_dim":0,"image_size":224,
            "image_mean":[0.5,0.5,0.5],"image_std":[0.5,0.5,0.5],"resize":"stretch",
            "context_length":77,"logit_scale":100.0}"#,
        )
        .unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("embedding_dim 0"), "{err}");
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
