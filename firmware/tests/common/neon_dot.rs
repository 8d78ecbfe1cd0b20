//! The aarch64 SDOT kernels behind safe signatures for the tests: each call first asserts that
//! the CPU has FEAT_DotProd (qemu-aarch64 `-cpu max` does), so a run without it fails instead of
//! silently testing nothing.
#![allow(dead_code)]

use edgevae_firmware::kernels::neon::dot;
pub use edgevae_firmware::kernels::neon::dot::{
    conv2d_scratch_size, conv_transpose2d_scratch_size, dense_scratch_size,
};
use edgevae_firmware::kernels::{ConvCall, ConvTCall, DenseCall, KernelError, Scratch};

fn check() {
    assert!(
        std::arch::is_aarch64_feature_detected!("dotprod"),
        "this CPU has no FEAT_DotProd: run under qemu-aarch64 -cpu max"
    );
}

pub fn conv2d(call: ConvCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    check();
    // SAFETY: FEAT_DotProd detected just above.
    unsafe { dot::conv2d(call, scratch) }
}

pub fn conv_transpose2d(call: ConvTCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    check();
    // SAFETY: FEAT_DotProd detected just above.
    unsafe { dot::conv_transpose2d(call, scratch) }
}

pub fn dense(call: DenseCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    check();
    // SAFETY: FEAT_DotProd detected just above.
    unsafe { dot::dense(call, scratch) }
}
