//! Tokenization on a `tokenizer.json` (the `tokenizers` crate, the same engine as Hugging
//! Face's fast tokenizers). A CLIP tokenizer ([`TextTokenizer::from_file`]) gives BOS 49406,
//! text, EOT 49407, truncated to the context length with EOT kept last. An Immich-layout
//! model's tokenizer ([`TextTokenizer::immich`]) may be another (SigLIP's, XLM-R's) and is
//! used as Immich uses it: text cleaned first ([`TextCleaning`]), truncated to the context
//! length, padded with its `pad_token`.
//!
//! Ids come out unpadded; each backend pads them its own way (the ONNX text encoder with
//! [`TextTokenizer::pad_id`], the Hailo text path with 0 as hailo-apps does).

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

/// What is done to a prompt before it is tokenized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextCleaning {
    /// Nothing (the flat layout: the tokenizer's own normalizer is all).
    #[default]
    None,
    /// Runs of whitespace collapsed to one space and the ends trimmed: Python's
    /// `" ".join(text.split())` (immich `models/transforms.py`, `clean_text`).
    Whitespace,
    /// As `Whitespace`, then ASCII punctuation (Python's `string.punctuation`) removed and the
    /// text lowercased: Immich's `clean_text(canonicalize=True)`, for models whose config has
    /// `text_cfg.tokenizer_kwargs.clean: canonicalize`.
    Canonicalize,
}

impl TextCleaning {
    pub fn apply(self, text: &str) -> String {
        if self == TextCleaning::None {
            return text.to_string();
        }
        // str.split() with no argument splits on Unicode whitespace (char::is_whitespace) and
        // on the separators U+001C..U+001F, which Python also counts as space.
        let collapsed = text
            .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if self == TextCleaning::Whitespace {
            return collapsed;
        }
        // str.lower() lowercases every cased character, not only ASCII.
        collapsed
            .chars()
            .filter(|c| !c.is_ascii_punctuation())
            .collect::<String>()
            .to_lowercase()
    }
}

pub struct TextTokenizer {
    inner: Tokenizer,
    context_length: usize,
    cleaning: TextCleaning,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads and checks a CLIP `tokenizer.json`: the special tokens must have CLIP's ids
    /// and the post-processor must wrap text in BOS…EOT.
    pub fn from_file(path: &Path, context_length: usize) -> Result<TextTokenizer, TokenizerError> {
        let mut inner = load_file(path)?;
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
        truncate_only(&mut inner, context_length).map_err(not_clip)?;
        let tokenizer = TextTokenizer {
            inner,
            context_length,
            cleaning: TextCleaning::None,
            // Hugging Face's CLIP tokenizer pads with <|endoftext|>.
            pad_id: EOT_ID,
        };
        let probe = tokenizer.encode("a").map_err(|e| not_clip(e.to_string()))?;
        if probe.len() != 3 || probe[0] != BOS_ID || probe[2] != EOT_ID {
            return Err(not_clip(format!(
                "\"a\" encodes to {probe:?}; a CLIP tokenizer gives [{BOS_ID}, <id>, {EOT_ID}]"
            )));
        }
        Ok(tokenizer)
    }

    /// An Immich-layout model's tokenizer, set up as Immich's `OpenClipTextualEncoder` sets
    /// up its own (immich `models/clip/textual.py`, `_load_tokenizer`): truncation to the
    /// context length, padding by the id of `pad_token` (from `tokenizer_config.json`). Any
    /// tokenizer the `tokenizers` crate loads is accepted: SigLIP's and XLM-R's are not
    /// CLIP's BPE.
    pub fn immich(
        path: &Path,
        context_length: usize,
        pad_token: &str,
        cleaning: TextCleaning,
    ) -> Result<TextTokenizer, TokenizerError> {
        let mut inner = load_file(path)?;
        let load = |message: String| TokenizerError::Load {
            path: path.to_path_buf(),
            message,
        };
        let pad_id = inner.token_to_id(pad_token).ok_or_else(|| {
            load(format!(
                "its pad_token {pad_token:?} (tokenizer_config.json) is not in its vocabulary"
            ))
        })?;
        truncate_only(&mut inner, context_length).map_err(load)?;
        let tokenizer = TextTokenizer {
            inner,
            context_length,
            cleaning,
            pad_id,
        };
        let probe = tokenizer
            .encode("a photo")
            .map_err(|e| load(e.to_string()))?;
        if probe.is_empty() {
            return Err(load("\"a photo\" encodes to no tokens".into()));
        }
        Ok(tokenizer)
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The id a model's text encoder pads ids with.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids with the tokenizer's special tokens (BOS and EOT for CLIP), at most
    /// `context_length` long, unpadded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let text = self.cleaning.apply(text);
        let encoding = self
            .inner
            .encode(text.as_str(), true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }
}

fn load_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Truncation to `context_length` with the special tokens kept (the tokenizer accounts for
/// them), and no padding: the backends pad.
fn truncate_only(inner: &mut Tokenizer, context_length: usize) -> Result<(), String> {
    inner.with_padding(None);
    inner
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: context_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Pads ids to `length` with `pad_id` (ids are already truncated to fit).
pub fn pad(ids: &[u32], length: usize, pad_id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&ids[..ids.len().min(length)]);
    out.resize(length, pad_id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_fills_and_cuts_to_the_length() {
        assert_eq!(
            pad(&[BOS_ID, 320, EOT_ID], 5, 0),
            vec![BOS_ID, 320, EOT_ID, 0, 0]
        );
        assert_eq!(pad(&[BOS_ID, 320, EOT_ID], 2, 0), vec![BOS_ID, 320]);
    }

    #[test]
    fn cleaning_as_immich_does() {
        let text = "  A Photo\tof   a CAT, on a mat!  Éte ";
        assert_eq!(TextCleaning::None.apply(text), text);
        assert_eq!(
            TextCleaning::Whitespace.apply(text),
            "A Photo of a CAT, on a mat! Éte"
        );
        assert_eq!(
            TextCleaning::Canonicalize.apply(text),
            "a photo of a cat on a mat éte"
        );
    }

    #[test]
    fn missing_tokenizer_file_is_named() {
        let err = TextTokenizer::from_file(Path::new("/nope/tokenizer.json"), 77)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nope/tokenizer.json"), "{err}");
    }
}
