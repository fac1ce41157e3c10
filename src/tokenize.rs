//! CLIP tokenization on a `tokenizer.json` (the `tokenizers` crate, the same engine as
//! Hugging Face's `CLIPTokenizerFast`): BOS 49406, text, EOT 49407, truncated to the
//! context length with EOT kept last.
//!
//! Ids come out unpadded; each backend pads them its own way (the ONNX text encoder with
//! EOT as Hugging Face does, the Hailo text path with 0 as hailo-apps does).

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

pub const BOS_ID: u32 = 49406;
pub const EOT_ID: u32 = 49407;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load tokenizer {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("tokenizer {path} is not a CLIP tokenizer: {message}")]
    NotClip { path: PathBuf, message: String },
    #[error("tokenization failed: {0}")]
    Encode(String),
}

pub struct ClipTokenizer {
    inner: Tokenizer,
    context_length: usize,
}

impl ClipTokenizer {
    /// Loads and checks a CLIP `tokenizer.json`: the special tokens must have CLIP's ids
    /// and the post-processor must wrap text in BOS…EOT.
    pub fn from_file(path: &Path, context_length: usize) -> Result<ClipTokenizer, TokenizerError> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let not_clip = |message: String| TokenizerError::NotClip {
            path: path.to_path_buf(),
            message,
        };
        for (token, id) in [("<|startoftext|>", BOS_ID), ("<|endoftext|>", EOT_ID)] {
            if inner.token_to_id(token) != Some(id) {
                return Err(not_clip(format!(
                    "{token} has id {:?}, expected {id}",
                    inner.token_to_id(token)
                )));
            }
        }
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: context_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| not_clip(e.to_string()))?;
        let tokenizer = ClipTokenizer {
            inner,
            context_length,
        };
        let probe = tokenizer.encode("a").map_err(|e| not_clip(e.to_string()))?;
        if probe.len() != 3 || probe[0] != BOS_ID || probe[2] != EOT_ID {
            return Err(not_clip(format!(
                "\"a\" encodes to {probe:?}; a CLIP tokenizer gives [{BOS_ID}, <id>, {EOT_ID}]"
            )));
        }
        Ok(tokenizer)
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Token ids with BOS and EOT, at most `context_length` long, unpadded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// Pads ids to `length` with `pad_id` (ids are already truncated to fit).
pub fn pad(ids: &[u32], length: usize, pad_id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&ids[..ids.len().min(length)]);
    out.resize(length, pad_id);
    out
}

/// Index of the first EOT token: the row CLIP's text pooler takes.
pub fn eot_position(ids: &[u32]) -> Option<usize> {
    ids.iter().position(|&id| id == EOT_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_and_eot_position() {
        assert_eq!(
            pad(&[BOS_ID, 320, EOT_ID], 5, 0),
            vec![BOS_ID, 320, EOT_ID, 0, 0]
        );
        assert_eq!(eot_position(&[BOS_ID, 320, EOT_ID, EOT_ID]), Some(2));
        assert_eq!(eot_position(&[BOS_ID, 320]), None);
    }

    #[test]
    fn missing_tokenizer_file_is_named() {
        let err = ClipTokenizer::from_file(Path::new("/nope/tokenizer.json"), 77)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nope/tokenizer.json"), "{err}");
    }
}
