//! The Hailo backend: CLIP's image and text encoders as HEFs on a Hailo device, behind the
//! same encoder traits as the CPU engine.
//!
//! * [`assets`]: the text path's tokenizer, token-embedding table and projection, and their
//!   export from a Hugging Face checkpoint. In every build.
//! * [`layout`]: where a Pi keeps the device node, the driver version and the resource
//!   files (flat, or hailo-apps' layout). In every build.
//! * [`pulled`]: the HEFs and text files `pull --hef` put in the model directory, over the
//!   `hailo.*` defaults. In every build.
//! * `ffi`: the HailoRT shim (shim.cpp) and safe owners of its handles. With feature
//!   `hailo` (the installed HailoRT) or `hailo-fake` (the test double in tests/hailo_fake/).
//! * `device`: opening the device, and the load error; with either feature.
//! * `engine`: HEF loading and validation, and the two encoders; with either feature.
//!   The layers point one way: engine → session → device → ffi.
//! * `session`: the device and its models kept across device faults (recovery); with
//!   either feature.

pub mod assets;
pub mod layout;
pub mod pulled;

#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
mod device;
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
mod engine;
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
pub mod ffi;
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
mod session;

#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
pub use device::{open_device, HailoDevice, HailoLoadError};
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
pub use engine::{HailoImageEncoder, HailoTextEncoder};
#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
pub use session::HailoSession;
