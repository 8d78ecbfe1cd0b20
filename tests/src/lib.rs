//! Helpers shared by the integration tests: building the Cortex-M firmware and finding the
//! shipped model.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shipped default model file.
pub fn default_model() -> PathBuf {
    root().join("models/default/model.evae")
}

/// Builds a board binary (release) and returns its ELF path. The board crate embeds
/// `EDGEVAE_MODEL` (default: the shipped model).
pub fn build_firmware(bin: &str) -> PathBuf {
    let boards = root().join("firmware/boards");
    let status = Command::new("cargo")
        .args(["build", "--release", "--bin", bin])
        .current_dir(&boards)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building firmware/boards bin {bin} failed"
    );
    boards
        .join("target/thumbv7em-none-eabihf/release")
        .join(bin)
}

/// Builds the Linux/aarch64 app (NEON kernels, run under qemu-aarch64) and returns its path.
pub fn build_stdio_app() -> PathBuf {
    // A target folder of its own: the outer `cargo test` holds the lock on the workspace's.
    let target_dir = root().join("target/nested");
    let status = Command::new("cargo")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--release",
            "-p",
            "edgevae-firmware",
            "--example",
            "stdio_app",
            "--target",
            "aarch64-unknown-linux-gnu",
        ])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the aarch64 stdio_app failed");
    target_dir.join("aarch64-unknown-linux-gnu/release/examples/stdio_app")
}
