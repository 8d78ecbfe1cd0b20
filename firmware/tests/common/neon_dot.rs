//! The aarch64 SDOT kernels behind safe signatures for the tests: each call first asserts that
//! the CPU has FEAT_DotProd (qemu-aarch64 `-cpu max` does), so a run without it fails instead of
//! silently testing nothing.
#![allow(dead_code)]

use edgevae_firmware::kernels::neon::dot;
pub use edgevae_firmware::kernels::neon::dot::{
    conv2d_scratch_size, conv_transpose2d_scratch_size, dense_scratch_size,
};
use edgevae_firmware::kernels::{ConvGeom, KernelError, OutputStage, Shape};

fn check() {
    assert!(
        std::arch::is_aarch64_feature_detected!("dotprod"),
        "this CPU has no FEAT_DotProd: run under qemu-aarch64 -cpu max"
    );
}

#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[i8],
    is: Shape,
    zp: i32,
    w: &[i8],
    g: ConvGeom,
    st: &OutputStage,
    out: &mut [i8],
    os: Shape,
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    check();
    // SAFETY: FEAT_DotProd detected just above.
    unsafe { dot::conv2d(x, is, zp, w, g, st, out, os, scratch) }
}

#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
    x: &[i8],
    is: Shape,
    zp: i32,
    w: &[i8],
    g: ConvGeom,
    st: &OutputStage,
    out: &mut [i8],
    os: Shape,
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    check();
    // SAFETY: FEAT_DotProd detected just above.
    unsafe { dot::conv_transpose2d(x, is, zp, w, g, st, out, os, scratch) }
}

#[allow(clippy::too_many_arguments)]
pub fn dense(
    x: &[i8],
    zp: i32,
    w: &[i8],
    n_in: usize,
    n_out: usize,
    st: &OutputStage,
    out: &mut [i8],
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    check();
    // SAFETY: FEAT_DotProd detected just above.
    unsafe { dot::dense(x, zp, w, n_in, n_out, st, out, scratch) }
}
