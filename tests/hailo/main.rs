//! The Hailo backend against the HailoRT test double (tests/hailo_fake/): one test binary,
//! built only with `--features hailo-fake` (Cargo.toml `required-features`), so
//! `cargo test --features hailo-fake --test hailo` runs the whole suite whatever the tests
//! are called.

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod batching;
mod device_health;
mod ffi;
mod http;
mod parity;
mod pipeline;
mod recovery;
mod selftest;
mod soak;
