//! hailo-clip: CLIP zero-shot image classification served over HTTP.
//!
//! The flow runs one way: [`http`] (routes, extractors, errors) → [`service`] (validation,
//! templates, text cache, bounded queue, batching) → the [`encoder`] traits → [`backends`]
//! (CPU ONNX engine; Hailo). Shared pieces: [`preprocess`], [`tokenize`], [`similarity`],
//! [`config`], [`model`]. Beside them, for the command line only: [`fetch`] (`pull`).

pub mod backends;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod encoder;
pub mod fetch;
pub mod http;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod service;
pub mod similarity;
pub mod template;
pub mod tokenize;
