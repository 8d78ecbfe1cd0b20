//! Cortex-M4/M7 (Armv7E-M DSP extension) fast path: SMLAD on int16 pairs, SXTB16 widening, through
//! inline `asm!` on stable Rust.
//!
//! The convolutions are im2col GEMMs in the CMSIS-NN manner: a chunk of output pixels is gathered
//! into the scratch as int16 `x - zp` (padding as 0), the weights of two output channels are
//! widened beside it, and a 2 channel × 2 pixel register-blocked SMLAD loop computes four sums at
//! once. A transposed convolution is the same GEMM run once per output phase with its sub-kernel.
//! Two shapes have their own kernels (`narrow`): a one-input-channel convolution (taps of a pixel in
//! registers, one short dot per output channel) and a transposed convolution with fewer than four
//! output channels (direct dot products over widened input rows). Requantisation is prepared per
//! channel ([`Rq`]).
//! The dense layer widens the input once and widens the int8 weights in the loop (each weight is
//! used once, so widening them ahead would only add stores).
//!
//! Compiled for `target_arch = "arm"`, little-endian, with `target_feature = "dsp"` or a hard-float
//! bare-metal ABI (stable Rust exposes no Arm target features to `cfg`; every hard-float
//! `thumbv7em`/`thumbv8m.main`/`thumbv8.1m` target has the DSP extension in practice).

mod asm;
mod conv;
mod dense;
mod narrow;

use super::OutputStage;

pub use crate::kernels::dsp_scratch::{dense_scratch_for, dense_scratch_size};
pub use conv::{
    conv2d, conv2d_scratch_for, conv2d_scratch_size, conv_transpose2d,
    conv_transpose2d_scratch_for, conv_transpose2d_scratch_size,
};
pub use dense::dense;

/// Words of int16 pairs from the scratch bytes: the aligned middle of `scratch`.
fn scratch_words(scratch: &mut [u8]) -> &mut [u32] {
    // SAFETY: every bit pattern is a valid u32; `align_to_mut` only returns aligned, in-bounds
    // middles.
    unsafe { scratch.align_to_mut::<u32>().1 }
}

/// Writes `vals - zp` as int16 into a widened row, starting at element `k`.
///
/// Widened rows group elements by four: `(v0, v2)` and `(v1, v3)` in consecutive words, the
/// order SXTB16 produces, so SMLAD of two rows in this layout is a plain dot product. `LANES` rows
/// are interleaved word by word (row `lane` of `LANES`), so a 2×2 block loads both rows' words with
/// one LDRD. Writes outside `dst` are dropped (callers size `dst` for the whole row).
#[inline(always)]
fn put_row<const LANES: usize>(dst: &mut [u32], lane: usize, mut k: usize, vals: &[i8], zp: i32) {
    let lane = lane % LANES;
    let mut vals = vals;
    while !k.is_multiple_of(4) {
        let Some((&v, rest)) = vals.split_first() else {
            return;
        };
        put_one::<LANES>(dst, lane, k, v as i32 - zp);
        vals = rest;
        k += 1;
    }
    let zz = (zp as u16 as u32).wrapping_mul(0x0001_0001);
    let groups = vals.chunks_exact(4);
    let tail = groups.remainder();
    let n = groups.len();
    for (g, d) in groups.zip(
        dst.get_mut(k / 2 * LANES..)
            .unwrap_or(&mut [])
            .chunks_exact_mut(2 * LANES),
    ) {
        let word = u32::from_le_bytes([g[0] as u8, g[1] as u8, g[2] as u8, g[3] as u8]);
        let (mut a, mut b) = (asm::sxtb16(word), asm::sxtb16_ror8(word));
        if zp != 0 {
            a = asm::ssub16(a, zz);
            b = asm::ssub16(b, zz);
        }
        d[lane] = a;
        d[LANES + lane] = b;
    }
    k += 4 * n;
    for &v in tail {
        put_one::<LANES>(dst, lane, k, v as i32 - zp);
        k += 1;
    }
}

/// Writes `n` zeros into a widened row from element `k` (padding taps, tails).
#[inline(always)]
fn put_zeros<const LANES: usize>(dst: &mut [u32], lane: usize, mut k: usize, n: usize) {
    let lane = lane % LANES;
    let end = k + n;
    while k < end && !k.is_multiple_of(4) {
        put_one::<LANES>(dst, lane, k, 0);
        k += 1;
    }
    let groups = (end - k) / 4;
    for d in dst
        .get_mut(k / 2 * LANES..)
        .unwrap_or(&mut [])
        .chunks_exact_mut(2 * LANES)
        .take(groups)
    {
        d[lane] = 0;
        d[LANES + lane] = 0;
    }
    k += 4 * groups;
    while k < end {
        put_one::<LANES>(dst, lane, k, 0);
        k += 1;
    }
}

#[inline(always)]
fn put_one<const LANES: usize>(dst: &mut [u32], lane: usize, k: usize, v: i32) {
    let r = k % 4;
    let t = 2 * (k / 4) + (r & 1);
    let shift = 16 * (r >> 1) as u32;
    if let Some(d) = dst.get_mut(t * LANES + lane) {
        *d = (*d & !(0xFFFF << shift)) | ((v as u16 as u32) << shift);
    }
}

/// One output channel's requantisation, prepared once per channel: bit-exact with
/// [`OutputStage::apply`] (`scalar::requantize`, then `+ zp` and the clamp) for every input.
///
/// The common case (shift ≤ 0 and multiplier ≠ i32::MIN) runs without the saturating left shift
/// and the `MIN · MIN` check: `y = (acc·m + 2^30) >> 31` (SMULL, exact in 64 bits), then the
/// rounding right shift by `e = -shift` as `t = y - [y < 0]`, `q = (t >> e) + bit (e-1) of t`
/// (equal to TFLite's remainder/threshold form; `kernel_check` compares every path with the
/// reference over random multipliers and shifts −31…30), then
/// a 9-bit saturation (which keeps every clamped result), `+ zp` and the clamp. Other channels
/// take the reference path.
#[derive(Clone, Copy)]
pub(crate) struct Rq {
    /// Q31 multiplier.
    m: i32,
    /// Right shift `e` (fast path), or the raw TFLite shift (slow path).
    e: i32,
    /// `e - 1` when `e ≥ 1`; -1 marks the slow path, -2 the fast path without right shift.
    em1: i32,
}

impl Rq {
    #[inline(always)]
    pub(crate) fn new(stage: &OutputStage, oc: usize) -> Rq {
        let m = stage.multiplier.get(oc);
        let shift = stage.shift.get(oc).copied().unwrap_or(0) as i32;
        if shift > 0 || m == i32::MIN {
            Rq {
                m,
                e: shift,
                em1: -1,
            }
        } else if shift == 0 {
            Rq { m, e: 0, em1: -2 }
        } else {
            Rq {
                m,
                e: -shift,
                em1: -shift - 1,
            }
        }
    }

    /// `stage.apply(acc, oc)` for the channel this was made for.
    #[inline(always)]
    pub(crate) fn apply(&self, acc: i32, stage: &OutputStage) -> i8 {
        let q = if self.em1 >= 0 {
            let y = ((acc as i64 * self.m as i64 + (1 << 30)) >> 31) as i32;
            // y > i32::MIN here (|m| < 2^31), so t cannot wrap.
            let t = y + (y >> 31);
            // e ≤ 31 and e - 1 ≤ 30: plain arithmetic shifts.
            (t >> (self.e & 31)) + ((t >> (self.em1 & 31)) & 1)
        } else if self.em1 == -2 {
            ((acc as i64 * self.m as i64 + (1 << 30)) >> 31) as i32
        } else {
            crate::kernels::requantize(acc, self.m, self.e)
        };
        // |q| ≥ 256 clamps to the same int8 as its 9-bit saturation, since |zp| ≤ 128.
        // max/min, not clamp: the same for the validated act_min ≤ act_max, and no panic path.
        (q.clamp(-256, 255) + stage.output_zp)
            .max(stage.act_min)
            .min(stage.act_max) as i8
    }
}
