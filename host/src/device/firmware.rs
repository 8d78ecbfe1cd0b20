//! Building the firmware (the board app for QEMU's Cortex-M machines, the aarch64 `stdio_app`)
//! and measuring its ELF. `edgevae hil` and the QEMU tests in `tests/` both build through here.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::HilError;

/// The repository root (the host crate's parent folder).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Builds `bin` of `firmware/boards` (release, `thumbv7em-none-eabihf`) and returns its ELF.
/// The board crate embeds `model_file` (`EDGEVAE_MODEL`), or the shipped default model.
pub fn build_board(bin: &str, model_file: Option<&Path>) -> Result<PathBuf, HilError> {
    let boards = root().join("firmware/boards");
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--quiet", "--release", "--bin", bin])
        .current_dir(&boards)
        .env_remove("CARGO_TARGET_DIR");
    if let Some(m) = model_file {
        cmd.env("EDGEVAE_MODEL", m.canonicalize().map_err(HilError::Io)?);
    }
    let elf = boards
        .join("target/thumbv7em-none-eabihf/release")
        .join(bin);
    let status = cmd
        .status()
        .map_err(|e| HilError::Launch("cargo".into(), e))?;
    if !status.success() {
        return Err(HilError::NoFirmware(elf));
    }
    Ok(elf)
}

/// Builds the Linux/aarch64 `stdio_app` example (NEON kernels, run under qemu-aarch64) and
/// returns its path. It has a target folder of its own (`target/nested`): a surrounding
/// `cargo test` holds the lock on the workspace's.
pub fn build_stdio_app() -> Result<PathBuf, HilError> {
    let target_dir = root().join("target/nested");
    let status = Command::new("cargo")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--quiet",
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
        .map_err(|e| HilError::Launch("cargo".into(), e))?;
    let app = target_dir.join("aarch64-unknown-linux-gnu/release/examples/stdio_app");
    if !status.success() {
        return Err(HilError::NoFirmware(app));
    }
    Ok(app)
}

/// Flash and static RAM of a Cortex-M ELF (sections below 0x2000_0000 are flash on the MPS2
/// boards; `.data` counts twice: its initial values in flash, the variables in RAM).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ElfSize {
    pub flash: u64,
    pub ram: u64,
}

/// Reads section sizes from an ELF file.
pub fn elf_size(path: &Path) -> Result<ElfSize, HilError> {
    use object::{Object, ObjectSection, SectionKind};
    let data = std::fs::read(path)?;
    let file = object::File::parse(&*data).map_err(|e| {
        HilError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    })?;
    let mut s = ElfSize::default();
    for sec in file.sections() {
        let name = sec.name().unwrap_or("");
        let (addr, size) = (sec.address(), sec.size());
        match sec.kind() {
            SectionKind::Text | SectionKind::ReadOnlyData | SectionKind::ReadOnlyString
                if addr < 0x2000_0000 =>
            {
                s.flash += size
            }
            SectionKind::Data if name.starts_with(".data") => {
                s.flash += size;
                s.ram += size;
            }
            SectionKind::UninitializedData if addr >= 0x2000_0000 => s.ram += size,
            _ if name == ".vector_table" => s.flash += size,
            _ => {}
        }
    }
    Ok(s)
}
