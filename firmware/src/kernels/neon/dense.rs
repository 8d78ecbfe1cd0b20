//! Fully connected layer: 4 output rows at a time, 16 inputs a step, with `Σ w` accumulated
//! beside `Σ w·x` (the same weight registers against a vector of ones), so that
//! `bias + Σ w·x − zp·Σ w` (modulo 2^32, the reference's `Σ w·(x − zp)`) needs no scratch.
//! Tails (`n_in` not a multiple of 16) go through 16-byte stack copies with a zero tail.

use core::arch::aarch64::*;

use super::super::{DenseCall, KernelError, OutputStage};
use super::gemm::{bytes4, le_i32x4, mac, reduce4, sdot_lane, transpose4, Chan, Common};

/// Longest input for which [`short_rows`] is used: there the lane reduction of the general
/// loop costs more than interleaving the rows (the decoder's 16 → 3136).
const SHORT: usize = 32;

/// SDOT by element with the outputs in the lanes, for short rows (`n_in` a multiple of 16,
/// at most [`SHORT`]): 4 rows interleaved by a word transpose in registers, `x` broadcast by
/// element, `Σ w` by SDOT against ones. Returns the first output not computed (`n_out` rounded
/// down to 4).
///
/// # Safety
/// FEAT_DotProd; the arguments passed `validate_dense`; `n_in % 16 == 0`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn short_rows(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
    common: &Common,
) -> usize {
    let full = n_out - n_out % 4;
    // SAFETY (whole body): rows `oc0 .. oc0 + 4 ≤ n_out` of `n_in` bytes lie in `weights`,
    // `n_in` bytes in `input`, 4 outputs, biases, multipliers and shifts from `oc0` in their
    // validated slices (each at least `n_out` long).
    unsafe {
        let ones = vdupq_n_s8(1);
        let zp = vdupq_n_s32(input_zp);
        let w = weights.as_ptr();
        let x = input.as_ptr();
        let out = output.as_mut_ptr();
        let mut oc0 = 0;
        while oc0 < full {
            let mut acc = vdupq_n_s32(0);
            let mut sw = vdupq_n_s32(0);
            let mut j = 0;
            while j < n_in {
                let v: [int32x4_t; 4] = core::array::from_fn(|i| {
                    vreinterpretq_s32_s8(vld1q_s8(w.add((oc0 + i) * n_in + j)))
                });
                let t = transpose4(v).map(|q| vreinterpretq_s8_s32(q));
                let xv = vld1q_s8(x.add(j));
                acc = sdot_lane::<0>(acc, t[0], xv);
                acc = sdot_lane::<1>(acc, t[1], xv);
                acc = sdot_lane::<2>(acc, t[2], xv);
                acc = sdot_lane::<3>(acc, t[3], xv);
                sw = mac::<true>(mac::<true>(sw, t[0], ones), t[1], ones);
                sw = mac::<true>(mac::<true>(sw, t[2], ones), t[3], ones);
                j += 16;
            }
            let bias = vreinterpretq_s32_u8(vld1q_u8(stage.bias.0.as_ptr().add(oc0 * 4)));
            let acc = vmlsq_s32(vaddq_s32(bias, acc), sw, zp);
            let b = bytes4(Chan::load4(stage, oc0).apply(common, acc));
            core::ptr::write_unaligned(out.add(oc0).cast::<[u8; 4]>(), b);
            oc0 += 4;
        }
        full
    }
}

/// 16 bytes from `src` (fewer than 16: zero tail).
#[inline(always)]
fn tail16(src: &[i8]) -> int8x16_t {
    let mut t = [0i8; 16];
    for (d, &s) in t.iter_mut().zip(src) {
        *d = s;
    }
    // SAFETY: reads a local array of 16 bytes.
    unsafe { vld1q_s8(t.as_ptr()) }
}

/// # Safety
/// With `DOT`, the CPU implements FEAT_DotProd.
#[inline(always)]
pub(crate) unsafe fn dense<const DOT: bool>(call: DenseCall<'_>) -> Result<(), KernelError> {
    let (p, input, weights, stage, output) = call.into_parts();
    let (n_in, n_out, input_zp) = p.parts();
    let (body, rest) = (n_in - n_in % 16, n_in % 16);
    let x = input.as_ptr();
    let xt = tail16(input.get(body..n_in).unwrap_or(&[]));
    // SAFETY: NEON is part of the aarch64 baseline.
    let (ones, zp, zero) = unsafe { (vdupq_n_s8(1), vdupq_n_s32(input_zp), vdupq_n_s32(0)) };
    let common = Common::new(stage);
    let mut oc0 = 0;
    if DOT && rest == 0 && n_in <= SHORT {
        // SAFETY: FEAT_DotProd (`DOT`); validated lengths.
        oc0 = unsafe {
            short_rows(
                input, input_zp, weights, n_in, n_out, stage, output, &common,
            )
        };
    }
    while oc0 < n_out {
        let nc = (n_out - oc0).min(4);
        // Rows past the last repeat it (their results are not stored).
        let row = |i: usize| (oc0 + i.min(nc - 1)) * n_in;
        let mut ax = [zero; 4];
        let mut aw = [zero; 4];
        let mut j = 0;
        while j < body {
            // SAFETY: j + 16 ≤ body ≤ n_in ≤ input.len(), and row(i) + n_in ≤ n_out · n_in ≤
            // weights.len() (validated).
            unsafe {
                let xv = vld1q_s8(x.add(j));
                for i in 0..4 {
                    let wv = vld1q_s8(weights.as_ptr().add(row(i) + j));
                    ax[i] = mac::<DOT>(ax[i], wv, xv);
                    aw[i] = mac::<DOT>(aw[i], wv, ones);
                }
            }
            j += 16;
        }
        if rest > 0 {
            for i in 0..4 {
                let r = row(i);
                let wv = tail16(weights.get(r + body..r + n_in).unwrap_or(&[]));
                // SAFETY: forwarded contract.
                unsafe {
                    ax[i] = mac::<DOT>(ax[i], wv, xt);
                    aw[i] = mac::<DOT>(aw[i], wv, ones);
                }
            }
        }
        let sx = reduce4(ax[0], ax[1], ax[2], ax[3]);
        let sw = reduce4(aw[0], aw[1], aw[2], aw[3]);
        let bias = le_i32x4(stage.bias, oc0);
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        let acc = unsafe { vmlsq_s32(vaddq_s32(bias, sx), sw, zp) };
        let b = bytes4(Chan::load4(stage, oc0).apply(&common, acc));
        if nc == 4 {
            if let Some(dst) = output.get_mut(oc0..oc0 + 4) {
                // SAFETY: 4 writable bytes (just checked), written unaligned.
                unsafe { core::ptr::write_unaligned(dst.as_mut_ptr().cast::<[u8; 4]>(), b) };
            }
        } else if let Some(dst) = output.get_mut(oc0..oc0 + nc) {
            for (d, &v) in dst.iter_mut().zip(&b) {
                *d = v as i8;
            }
        }
        oc0 += 4;
    }
    Ok(())
}
