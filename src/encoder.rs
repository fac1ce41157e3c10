//! The encoder interface every backend implements: a batch of preprocessed images in,
//! a batch of token-id sequences in, raw (unnormalized) embeddings out.
//!
//! Images arrive as square uint8 RGB crops, the form a Hailo HEF takes as it is; a CPU
//! backend normalizes them to float itself. Texts arrive as unpadded CLIP token ids, so a
//! backend that feeds token embeddings (Hailo) or padded ids (ONNX) does its own last step.
//! Image and text encoders are separate objects so each can run on a different backend.

use image::RgbImage;
use ndarray::Array2;

use crate::preprocess::{Interpolation, ResizeMode};

/// Said in /health and at start-up when the model is a generated test model.
pub const RANDOM_WEIGHTS_WARNING: &str =
    "this model has RANDOM weights (a generated test model): its scores are meaningless; install a real model";

/// Said wherever an encoder runs on the HailoRT test double (a build with the `hailo-fake`
/// feature) instead of a Hailo device.
pub const TEST_DOUBLE_WARNING: &str =
    "the Hailo encoders run on the HailoRT TEST DOUBLE (a build with the hailo-fake feature), not on a Hailo device: its answers are not CLIP's";

/// What kind of failure an encoder reports; the service maps each to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderErrorKind {
    /// The accelerator is held by someone else; retrying later can succeed.
    Busy,
    /// The inference did not finish within its time limit.
    Timeout,
    /// The device failed as a whole (its link closed, it was lost) and is being recovered;
    /// retrying after the recovery can succeed.
    Recovering,
    /// Anything else: the engine failed.
    Failed,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EncoderError {
    pub kind: EncoderErrorKind,
    pub message: String,
}

impl EncoderError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: EncoderErrorKind::Failed,
            message: message.into(),
        }
    }
}

/// A device an encoder runs on that recovers from its own faults (the Hailo backend): what
/// the service reads for admission and /health, and how it hands back a device that was
/// re-created once the warm-up and the self-test have passed on it again.
pub trait DeviceRecovery: Send + Sync {
    fn status(&self) -> DeviceStatus;
    /// The re-created device answered the warm-up and the self-test: serve again.
    fn verified(&self);
    /// The re-created device failed the check for a reason other than a device fault (say,
    /// a wrong answer): recover again.
    fn check_failed(&self, why: &str);
}

/// HailoRT's statuses a device fault is reported with (`DeviceStatus::last_fault_status`).
pub const DEVICE_FAULT_STATUSES: &[&str] = &[
    "HAILO_COMMUNICATION_CLOSED",
    "HAILO_DEVICE_NOT_CONNECTED",
    "HAILO_DRIVER_OPERATION_FAILED",
    "HAILO_DRIVER_INVALID_RESPONSE",
    "HAILO_DRIVER_INVALID_IOCTL",
    "HAILO_DRIVER_TIMEOUT",
    "HAILO_DRIVER_INTERRUPTED",
    "HAILO_DRIVER_WAIT_CANCELED",
    "HAILO_TIMEOUT",
    "HAILO_STREAM_ABORT",
    "other",
];

/// Where a device is in its recovery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceStatus {
    /// From a fault until the re-created device passed its check: no request is admitted.
    pub recovering: bool,
    /// The device was re-created and waits for the service's warm-up and self-test.
    pub needs_check: bool,
    /// How long the current recovery has taken so far.
    pub recovering_for: Option<std::time::Duration>,
    /// Past `hailo.recovery_max_seconds`: the daemon must exit for systemd to restart it.
    pub gave_up: bool,
    /// Recoveries completed since start.
    pub recoveries: u64,
    /// The last device-level fault, in words, with HailoRT's status.
    pub last_fault: Option<String>,
    /// HailoRT's name of the last fault's status (e.g. `HAILO_COMMUNICATION_CLOSED`).
    pub last_fault_status: Option<&'static str>,
    /// The device's health, where it can be read.
    pub health: DeviceHealth,
}

/// What the device says of itself: its identity (read at start and after each recovery),
/// its temperature and utilization (polled), and its notifications (alarms, throttling).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceHealth {
    pub firmware_version: Option<String>,
    pub architecture: Option<String>,
    pub serial_number: Option<String>,
    pub product_name: Option<String>,
    pub board_name: Option<String>,
    /// From sysfs (the driver's `board_location` or `device_id`).
    pub pci_address: Option<String>,
    /// The chip's two sensors (ts0, ts1), in °C, from the last poll.
    pub temperature_c: Option<[f32; 2]>,
    /// NN-core utilization in percent (Hailo-10H only), from the last poll.
    pub nnc_utilization: Option<f32>,
    /// hailo_hw_throttling_state_t from the last throttling notification; None until one
    /// came (Hailo-10H: `get_throttling_state` is not implemented there).
    pub throttling_state: Option<u16>,
    pub temperature_alarms: u64,
    pub overcurrent_alarms: u64,
    /// How long ago the last alarm (temperature or overcurrent) came.
    pub last_alarm_ago: Option<std::time::Duration>,
}

impl DeviceHealth {
    /// The throttling state in words (hailo_hw_throttling_state_t).
    pub fn throttling(&self) -> &'static str {
        match self.throttling_state {
            None => "unknown",
            Some(0) => "none",
            Some(1) => "light",
            Some(2) => "medium",
            Some(3) => "heavy",
            Some(4) => "severe",
            Some(5) => "streams_off",
            Some(6) => "overheat",
            Some(_) => "other",
        }
    }

    /// Why the device is degraded, if it is: throttled heavily (state heavy or worse), or an
    /// alarm in the last 10 minutes.
    pub fn degraded(&self) -> Option<String> {
        if self.throttling_state.is_some_and(|s| s >= 3) {
            return Some(format!(
                "the Hailo device is throttled ({}): inference runs slower",
                self.throttling()
            ));
        }
        match self.last_alarm_ago {
            Some(ago) if ago < std::time::Duration::from_secs(600) => Some(format!(
                "the Hailo device raised an alarm {} s ago ({} temperature, {} overcurrent alarms since start)",
                ago.as_secs(),
                self.temperature_alarms,
                self.overcurrent_alarms
            )),
            _ => None,
        }
    }
}

/// What the model is: the facts a backend's loader reads from the model files (manifest,
/// or the Hailo config), which the service reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub embedding_dim: usize,
    pub logit_scale: f32,
    /// `model.logit_bias`: set, prompts are scored with the sigmoid (see [`Scoring`]).
    pub logit_bias: Option<f32>,
    /// A generated test model: scores are meaningless and every response says so.
    pub random_weights: bool,
    /// The Immich CLIP model these embeddings are interchangeable with, if any.
    pub immich_model: Option<String>,
}

impl ModelInfo {
    /// How `/v1/classify` turns similarities into scores.
    pub fn scoring(&self) -> Scoring {
        match self.logit_bias {
            Some(_) => Scoring::Sigmoid,
            None => Scoring::Softmax,
        }
    }
}

/// How similarities become scores: CLIP's softmax over the prompts of scale x similarity
/// (scores sum to 1: a share among the prompts), or SigLIP's sigmoid of
/// scale x similarity + bias, each prompt on its own (a probability that it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    Softmax,
    Sigmoid,
}

/// Where an encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Cpu,
    Hailo,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Hailo => "hailo",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A description of a loaded encoder, for /health and logs.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct EncoderInfo {
    pub backend: Backend,
    /// The file the encoder was loaded from.
    pub source: String,
    /// Why the encoder runs on this backend (set by the loader; empty when nobody chose).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// On the CPU: the engine, `onnxruntime` or `tract`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<&'static str>,
    /// On ONNX Runtime: the library file and its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_library: Option<String>,
    /// For an encoder on a Hailo device: which device, HailoRT and HEF (flattened into
    /// the encoder's JSON object; absent for the CPU).
    #[serde(flatten)]
    pub hailo: Option<HailoInfo>,
}

/// Where a Hailo encoder runs, for /health.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct HailoInfo {
    /// HailoRT's id of the physical device (its PCIe address on a Pi).
    pub device_id: String,
    /// Version of the libhailort the daemon runs with.
    pub hailort_version: String,
    /// File name of the HEF.
    pub hef: String,
    /// Built against the HailoRT test double: no device answers (see [`TEST_DOUBLE_WARNING`]).
    pub test_double: bool,
}

/// What every encoder says of itself and of the device it runs on.
pub trait Encoder: Send + Sync {
    fn embedding_dim(&self) -> usize;
    /// Largest batch the engine takes in one call (the service splits larger ones).
    fn max_batch(&self) -> usize;
    fn info(&self) -> EncoderInfo;
    /// Calls that may usefully run at once: an engine that keeps several jobs on a device
    /// says how many, and the service runs at least that many workers.
    fn jobs_in_flight(&self) -> usize {
        1
    }
    /// Runs on a device that does one job at a time for every encoder on it (a Hailo, where
    /// HailoRT's scheduler runs one batch at a time across the configured networks): a job
    /// formed while the device is busy only waits behind the running one, so the service
    /// keeps adding frames to it until the device is free (see service::queue).
    fn serial_device(&self) -> bool {
        false
    }
    /// The device's recovery, for an encoder on a device that recovers from faults.
    fn device(&self) -> Option<std::sync::Arc<dyn DeviceRecovery>> {
        None
    }
}

pub trait ImageEncoder: Encoder {
    /// Side of the square input and how images are brought to it.
    fn input_size(&self) -> u32;
    fn resize_mode(&self) -> ResizeMode;
    /// The resampling filter of the resize (bicubic unless the model says otherwise).
    fn interpolation(&self) -> Interpolation {
        Interpolation::Bicubic
    }
    /// One embedding row per image, in order. Images are `input_size` squares.
    fn encode_images(&self, images: &[RgbImage]) -> Result<Array2<f32>, EncoderError>;
}

pub trait TextEncoder: Encoder {
    /// One embedding row per text. Ids are unpadded, BOS…EOT, at most the context length.
    fn encode_texts(&self, token_ids: &[Vec<u32>]) -> Result<Array2<f32>, EncoderError>;
}
