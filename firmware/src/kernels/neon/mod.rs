//! aarch64 NEON fast path: convolution, transposed convolution and dense layers as
//! register-blocked int8 GEMMs over 16 input bytes a step, in two instruction sets sharing the
//! tap tables, scratch layout and output stage:
//! - [`dot`]: SDOT (FEAT_DotProd, Armv8.2+ optional, Armv8.4+ mandatory), 16 MACs an
//!   instruction; by element, 8 channels × 8 pixels a block (`conv.rs`, `gemm::micro_lanes`);
//! - [`plain`]: baseline NEON (`SMULL`/`SMULL2` + `SADALP`), 4 instructions per 16 MACs, 4 × 4.
//!
//! The zero point is folded out of the inner loop: `Σ w·(x − zp) = Σ w·x − zp·Σ w` modulo 2^32,
//! with padding taps reading zero-point bytes (see `conv.rs`), so both paths multiply the int8
//! data as stored, and both are bit-exact with `scalar` (requantisation in `gemm::Chan::apply`).
//!
//! **Choosing SDOT.** This crate is no_std, so it cannot probe the CPU itself (std's
//! `is_aarch64_feature_detected!` reads the OS's hardware capabilities). The choice is:
//! - compile time: a build with `target_feature = "dotprod"` (`-C target-cpu=cortex-a55`,
//!   `-C target-feature=+dotprod`) always takes SDOT, with no check;
//! - run time: otherwise the dispatching functions read one flag, off by default, that the
//!   program turns on with the `unsafe` [`enable_dotprod`] after its own probe (a std program:
//!   `if is_aarch64_feature_detected!("dotprod") { unsafe { enable_dotprod() } }`, as
//!   `examples/stdio_app.rs` does; a bare-metal one: after reading `ID_AA64ISAR0_EL1`).
//!
//! The flag keeps OS knowledge out of the kernels, costs one load per layer, and makes the
//! unchecked promise explicit at the one place that can check it; [`plain`] and [`dot`] stay
//! callable directly (the tests run both on every shape). Scratch is the same for both paths
//! (`neon_scratch`).

mod conv;
mod dense;
mod gemm;

use core::sync::atomic::{AtomicBool, Ordering};

use super::{Conv, ConvCall, ConvTCall, DenseCall, KernelError, Scratch};

pub use super::neon_scratch::{
    conv2d_scratch_size, conv_transpose2d_scratch_size, dense_scratch_size,
};

static DOTPROD: AtomicBool = AtomicBool::new(false);

/// Lets the dispatching kernels use SDOT from now on.
///
/// # Safety
/// Every CPU this process runs on implements FEAT_DotProd (for example
/// `std::arch::is_aarch64_feature_detected!("dotprod")` returned true).
pub unsafe fn enable_dotprod() {
    DOTPROD.store(true, Ordering::Relaxed);
}

/// Back to the plain-NEON kernels (no effect in a `dotprod` build, where SDOT is always used).
pub fn disable_dotprod() {
    DOTPROD.store(false, Ordering::Relaxed);
}

/// Whether the dispatching kernels use SDOT.
#[inline(always)]
pub fn dotprod_enabled() -> bool {
    cfg!(target_feature = "dotprod") || DOTPROD.load(Ordering::Relaxed)
}

macro_rules! dispatch {
    ($f:ident($($a:ident),*)) => {
        if dotprod_enabled() {
            // SAFETY: FEAT_DotProd is compiled in or was promised by `enable_dotprod`.
            unsafe { dot::$f($($a),*) }
        } else {
            plain::$f($($a),*)
        }
    };
}

/// See [`crate::kernels::conv2d`].
pub fn conv2d(call: ConvCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    let Conv(p) = call.p;
    // Short scratch (a model whose declared arena keeps the Cortex-M budget): the reference loop.
    if !scratch.fits(conv2d_scratch_size(p.in_shape, p.out_shape, p.geom)) {
        return super::scalar::conv2d(call, scratch);
    }
    dispatch!(conv2d(call, scratch))
}

/// See [`crate::kernels::conv_transpose2d`].
pub fn conv_transpose2d(call: ConvTCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    let Conv(p) = call.p;
    if !scratch.fits(conv_transpose2d_scratch_size(
        p.in_shape,
        p.out_shape,
        p.geom,
    )) {
        return super::scalar::conv_transpose2d(call, scratch);
    }
    dispatch!(conv_transpose2d(call, scratch))
}

/// See [`crate::kernels::dense`].
pub fn dense(call: DenseCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    dispatch!(dense(call, scratch))
}

/// Generates one path's entry points (`$unsafety`: `unsafe` for SDOT).
macro_rules! path {
    ($(#[$attr:meta])* $dot:literal, $($unsafety:ident)?) => {
        pub use super::{conv2d_scratch_size, conv_transpose2d_scratch_size, dense_scratch_size};
        use super::{ConvCall, ConvTCall, DenseCall, KernelError, Scratch};

        /// See [`crate::kernels::conv2d`].
        ///
        /// # Safety
        /// In `dot`, the CPU implements FEAT_DotProd (`plain`: no requirement).
        $(#[$attr])*
        pub $($unsafety)? fn conv2d(
            call: ConvCall<'_>,
            scratch: Scratch<'_>,
        ) -> Result<(), KernelError> {
            // SAFETY: FEAT_DotProd, when `$dot`, is this function's contract.
            unsafe { super::conv::conv::<$dot, false>(call, scratch) }
        }

        /// See [`crate::kernels::conv_transpose2d`].
        ///
        /// # Safety
        /// In `dot`, the CPU implements FEAT_DotProd (`plain`: no requirement).
        $(#[$attr])*
        pub $($unsafety)? fn conv_transpose2d(
            call: ConvTCall<'_>,
            scratch: Scratch<'_>,
        ) -> Result<(), KernelError> {
            // SAFETY: as in `conv2d`.
            unsafe { super::conv::conv::<$dot, true>(call, scratch) }
        }

        /// See [`crate::kernels::dense`].
        ///
        /// # Safety
        /// In `dot`, the CPU implements FEAT_DotProd (`plain`: no requirement).
        $(#[$attr])*
        pub $($unsafety)? fn dense(
            call: DenseCall<'_>,
            _scratch: Scratch<'_>,
        ) -> Result<(), KernelError> {
            // SAFETY: as in `conv2d`.
            unsafe { super::dense::dense::<$dot>(call) }
        }
    };
}

/// The baseline-NEON kernels (every aarch64 CPU).
pub mod plain {
    path!(false,);
}

/// The SDOT kernels.
///
/// # Safety
/// Every function here requires a CPU with FEAT_DotProd.
pub mod dot {
    path!(
        #[target_feature(enable = "dotprod")]
        true,
        unsafe
    );
}
