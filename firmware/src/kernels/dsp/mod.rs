//! Cortex-M4/M7 (Armv7E-M DSP extension) fast path: SMLAD on int16 pairs, SXTB16 widening, through
//! inline `asm!` on stable Rust.
//!
//! The convolutions are im2col GEMMs in the CMSIS-NN manner: a chunk of output pixels is gathered
//! into the scratch as int16 `x - zp` (padding as 0), the weights of two output channels are
//! widened beside it, and a 2 channel × 2 pixel register-blocked SMLAD loop computes four sums at
//! once. A transposed convolution is the same GEMM run once per output phase with its sub-kernel.
//! Two shapes have their own kernels (`narrow`): a one-input-channel convolution (up to ten taps
//! an assembly loop over a pixel's channels with its taps in registers; more taps, such as the
//! photo encoder's 5×5, two pixels × three channels SMLAD blocks over the pixels' gathered taps)
//! and a transposed convolution with fewer than four output channels (direct dot products over
//! widened input rows). Requantisation is
//! prepared per channel ([`Rq`]: SMMLAR, ASRS, ADC).
//! The dense layer widens the input once and widens the int8 weights in the loop (each weight is
//! used once, so widening them ahead would only add stores); 16 inputs run one assembly loop.
//!
//! Every kernel takes scratch of any length and plans from it (`dsp_scratch`): smaller im2col
//! chunks or channel blocks, and below that the direct kernels (`direct`), which read int8
//! pixels and weights and widen them in registers, so a model's activations plus scratch fit the
//! 16 KiB budget the exporter plans for.
//!
//! Compiled for `target_arch = "arm"`, little-endian, with `target_feature = "dsp"` or a hard-float
//! bare-metal ABI (stable Rust exposes no Arm target features to `cfg`; every hard-float
//! `thumbv7em`/`thumbv8m.main`/`thumbv8.1m` target has the DSP extension in practice).

mod asm;
mod conv;
mod dense;
mod direct;
mod narrow;

use super::OutputStage;

pub use crate::kernels::dsp_scratch::{dense_scratch_for, dense_scratch_size};
pub use conv::{
    conv2d, conv2d_prelaid, conv2d_scratch_for, conv2d_scratch_size, conv_transpose2d,
    conv_transpose2d_prelaid, conv_transpose2d_scratch_for, conv_transpose2d_scratch_size,
};
pub use dense::{dense, dense_prelaid};

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

/// `acc` plus the two-channel dot of the elements from `from` on (the tail that
/// [`asm::dot2_i8`] leaves), `x - zp` against both weight rows.
#[inline(always)]
fn dot2_tail(x: &[i8], w0: &[i8], w1: &[i8], from: usize, zp: i32, acc: [i32; 2]) -> [i32; 2] {
    let [mut a0, mut a1] = acc;
    for ((&x, &w0), &w1) in x.iter().zip(w0).zip(w1).skip(from) {
        let v = x as i32 - zp;
        a0 = a0.wrapping_add(w0 as i32 * v);
        a1 = a1.wrapping_add(w1 as i32 * v);
    }
    [a0, a1]
}

/// Requantises and stores the sums of channels `oc0` and `oc1` at `output[base + oc]` (`oc1` only
/// when it differs: an odd last channel runs as a pair with itself).
#[inline(always)]
fn store_pair(output: &mut [i8], base: usize, oc: [usize; 2], acc: [i32; 2], stage: &OutputStage) {
    if let Some(o) = output.get_mut(base + oc[0]) {
        *o = Rq::new(stage, oc[0]).apply(acc[0], stage);
    }
    if oc[1] != oc[0] {
        if let Some(o) = output.get_mut(base + oc[1]) {
            *o = Rq::new(stage, oc[1]).apply(acc[1], stage);
        }
    }
}

/// One output channel's requantisation, prepared once per channel: bit-exact with
/// [`OutputStage::apply`] (`scalar::requantize`, then `+ zp` and the clamp) for every input.
///
/// The common case (multiplier ≥ 0 and shift in −31…−1, all a model file holds in practice) is
/// five instructions ([`asm::requant`]): with `e = -shift`,
/// `t = SMMLAR(a, 2m, (a & c) - [a < 0])` where `c` is all ones when `m ≥ 2^30` (then `2m`
/// wraps to `2m - 2^32` and adding `a` to the high word restores it), so
/// `t = ((a·m + 2^30) >> 31) - [a < 0]` exactly (SMMLAR rounds with `+2^31` into the high word of a
/// 64-bit sum); then `q = (t >> e) + bit (e-1) of t` (ASRS leaves that bit in the carry, ADC adds
/// it): TFLite's round-half-away-from-zero right shift. (`[a < 0]` may stand for TFLite's
/// `[y < 0]`: they differ only where `y = 0`, and both give `q = 0` there.) Other channels take
/// the reference path. `kernel_check` compares every path with the reference over random
/// multipliers and shifts −31…30.
#[derive(Clone, Copy)]
pub(crate) struct Rq {
    /// `2m` (wrapping) on the fast path, else the multiplier.
    m2: i32,
    /// All ones when `m ≥ 2^30` (fast path).
    c: i32,
    /// Right shift `e` in 1..=31 (fast path), or 0 with the raw shift in `shift` (slow path).
    e: u32,
    shift: i32,
}

impl Rq {
    #[inline(always)]
    pub(crate) fn new(stage: &OutputStage, oc: usize) -> Rq {
        let m = stage.multiplier.get(oc);
        let shift = stage.shift.get(oc).copied().unwrap_or(0) as i32;
        if m >= 0 && (-31..=-1).contains(&shift) {
            Rq {
                m2: m.wrapping_shl(1),
                c: if m >= 1 << 30 { -1 } else { 0 },
                e: (-shift) as u32,
                shift,
            }
        } else {
            Rq {
                m2: m,
                c: 0,
                e: 0,
                shift,
            }
        }
    }

    /// `stage.apply(acc, oc)` for the channel this was made for.
    #[inline(always)]
    pub(crate) fn apply(&self, acc: i32, stage: &OutputStage) -> i8 {
        let q = if self.e != 0 {
            asm::requant(acc, self.m2, self.c, self.e)
        } else {
            crate::kernels::requantize(acc, self.m2, self.shift)
        };
        // |q| ≥ 256 clamps to the same int8 as its 9-bit saturation, since |zp| ≤ 128; max/min,
        // not clamp: the same for the validated act_min ≤ act_max, and no panic path.
        (q.clamp(-256, 255) + stage.output_zp)
            .max(stage.act_min)
            .min(stage.act_max) as i8
    }
}
