//! aarch64 NEON fast path: the reference loop nests with a NEON dot product over each tap's
//! input channels (`x - zp` widened by `vsubl_s8`, weights by `vmovl_s8`, `vmlal_s16` into i32
//! lanes). No scratch. SDOT is not used: choosing it needs a run-time probe (std) or a
//! `dotprod` build, and this crate is no_std.

use core::arch::aarch64::*;

use super::{scalar, ConvGeom, KernelError, OutputStage, Shape};

/// `acc + Σ w·(x - zp)` over `min(w.len(), x.len())` elements, wrapping like the reference.
#[inline(always)]
fn dot(acc: i32, w: &[i8], x: &[i8], zp: i32) -> i32 {
    let n = w.len().min(x.len());
    let (wv, wt) = w[..n].split_at(n - n % 8);
    let (xv, xt) = x[..n].split_at(n - n % 8);
    let mut sum = acc;
    if !wv.is_empty() {
        // SAFETY: NEON is part of the aarch64 baseline; every load reads 8 bytes of an 8-byte
        // chunk produced by `chunks_exact(8)`.
        unsafe {
            let zpv = vdup_n_s8(zp as i8);
            let (mut a0, mut a1) = (vdupq_n_s32(0), vdupq_n_s32(0));
            for (w8, x8) in wv.chunks_exact(8).zip(xv.chunks_exact(8)) {
                let d = vsubl_s8(vld1_s8(x8.as_ptr()), zpv);
                let wl = vmovl_s8(vld1_s8(w8.as_ptr()));
                a0 = vmlal_s16(a0, vget_low_s16(wl), vget_low_s16(d));
                a1 = vmlal_high_s16(a1, wl, d);
            }
            sum = sum.wrapping_add(vaddvq_s32(vaddq_s32(a0, a1)));
        }
    }
    wt.iter().zip(xt).fold(sum, |acc, (&w, &x)| {
        acc.wrapping_add((w as i32).wrapping_mul(x as i32 - zp))
    })
}

/// The NEON path needs no scratch.
pub fn conv2d_scratch_size(_in_shape: Shape, _out_shape: Shape, _geom: ConvGeom) -> usize {
    0
}

/// The NEON path needs no scratch.
pub fn conv_transpose2d_scratch_size(
    _in_shape: Shape,
    _out_shape: Shape,
    _geom: ConvGeom,
) -> usize {
    0
}

/// The NEON path needs no scratch.
pub fn dense_scratch_size(_n_in: usize, _n_out: usize) -> usize {
    0
}

/// See [`crate::kernels::conv2d`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    _scratch: &mut [u8],
) -> Result<(), KernelError> {
    scalar::conv2d_with(
        input, in_shape, input_zp, weights, geom, stage, output, out_shape, dot,
    )
}

/// See [`crate::kernels::conv_transpose2d`].
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    _scratch: &mut [u8],
) -> Result<(), KernelError> {
    scalar::conv_transpose2d_with(
        input, in_shape, input_zp, weights, geom, stage, output, out_shape, dot,
    )
}

/// See [`crate::kernels::dense`].
#[allow(clippy::too_many_arguments)]
pub fn dense(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
    _scratch: &mut [u8],
) -> Result<(), KernelError> {
    scalar::dense_with(input, input_zp, weights, n_in, n_out, stage, output, dot)
}
