//! Helpers shared by the integration tests: the shipped model, and the firmware built through
//! the host's one build path (`edgevae::device::firmware`).

use std::path::PathBuf;

pub use edgevae::device::firmware::root;

/// The shipped default model file.
pub fn default_model() -> PathBuf {
    root().join("models/default/model.evae")
}

/// Builds a board binary (release) embedding the shipped default model; returns its ELF path.
pub fn build_firmware(bin: &str) -> PathBuf {
    edgevae::device::build_board(bin, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds the Linux/aarch64 app (NEON kernels, run under qemu-aarch64) and returns its path.
pub fn build_stdio_app() -> PathBuf {
    edgevae::device::build_stdio_app().unwrap_or_else(|e| panic!("{e}"))
}
