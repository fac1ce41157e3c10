//! A model's facts (embedding size, image size and normalization, resize mode, context
//! length, logit scale, name): the flat layout's `manifest.json` holds them as they are, and
//! the Immich layout's files are read into the same struct (see [`super::immich`]).
//!
//! Loading validates every field and names the file in each error: a model directory that
//! is half right must stop the daemon, never run with guessed values.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelDirError;
use crate::preprocess::ResizeMode;

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

    pub(super) fn validate(&self) -> Result<(), String> {
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
