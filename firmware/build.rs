//! The fast-path predicates, decided once here and used as cfgs everywhere in the crate:
//! - `edgevae_dsp`: the Cortex-M DSP kernels (`kernels::dsp`) are compiled: little-endian 32-bit
//!   Arm with `target_feature = "dsp"`, or a bare-metal hard-float target (stable Rust exposes no
//!   Arm target features to `cfg`; every hard-float `thumbv7em`/`thumbv8m.main`/`thumbv8.1m`
//!   target has the DSP extension in practice);
//! - `edgevae_neon`: the NEON kernels (`kernels::neon`): little-endian aarch64.
//!
//! The `force-scalar` feature still overrides both where the kernels are chosen.
use std::env;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(edgevae_dsp)");
    println!("cargo:rustc-check-cfg=cfg(edgevae_neon)");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let arch = var("CARGO_CFG_TARGET_ARCH");
    let little = var("CARGO_CFG_TARGET_ENDIAN") == "little";
    let dsp_feature = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "dsp");
    let bare_hard_float =
        var("CARGO_CFG_TARGET_OS") == "none" && var("CARGO_CFG_TARGET_ABI") == "eabihf";
    if arch == "arm" && little && (dsp_feature || bare_hard_float) {
        println!("cargo:rustc-cfg=edgevae_dsp");
    }
    if arch == "aarch64" && little {
        println!("cargo:rustc-cfg=edgevae_neon");
    }
}
