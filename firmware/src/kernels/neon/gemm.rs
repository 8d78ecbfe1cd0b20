//! The pieces every NEON kernel shares: the 16-byte multiply-accumulate (SDOT or its plain-NEON
//! equivalent), the register-blocked micro-kernel, and the vectorised output stage.
//!
//! `DOT = true` instantiations execute SDOT: they may only run where the CPU implements
//! FEAT_DotProd (the callers are `unsafe` with that contract, and are compiled inside
//! `#[target_feature(enable = "dotprod")]` functions so that `sdot` inlines).

use core::arch::aarch64::*;

use super::super::{LeI32, OutputStage};

/// `acc[l] += Σ_{j<4} a[4l+j]·b[4l+j]` (SDOT, FEAT_DotProd).
///
/// # Safety
/// The CPU implements FEAT_DotProd.
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: the caller guarantees FEAT_DotProd; the instruction only reads and writes the
    // three vector registers. (`vdotq_s32` is not stable in Rust 1.95.)
    unsafe {
        core::arch::asm!(
            "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
            inout(vreg) acc,
            in(vreg) a,
            in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Adds the 16 products `a[k]·b[k]` to the four i32 lanes of `acc` (which lane gets which
/// product differs between the paths; only the lanes' total is ever used). Exact: each product
/// fits i16 ((-128)² = 2^14), a pair of them is widened before it is added.
///
/// # Safety
/// With `DOT`, the CPU implements FEAT_DotProd.
#[inline(always)]
pub(crate) unsafe fn mac<const DOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if DOT {
        // SAFETY: forwarded contract.
        unsafe { sdot(acc, a, b) }
    } else {
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        unsafe {
            let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let hi = vmull_high_s8(a, b);
            vpadalq_s16(vpadalq_s16(acc, lo), hi)
        }
    }
}

/// The register block: `acc[i][p] = Σ_t Σ_{j<len, step 16} mac(w_i[woff[t] + j..], x_{t,p}[j..])`
/// for `MR` weight rows and `NR` pixels (4×4: 16 accumulators, 8 loads for 16 MACs-of-16).
///
/// # Safety
/// With `DOT`, the CPU implements FEAT_DotProd. `woff` holds `taps` offsets and `ptrs`
/// pointers `ptrs[t·stride + p]` (`p < NR`); for every tap `t`, row `i` and pixel `p`,
/// `rows[i] + woff[t] .. + len` and `ptrs[t·stride + p] .. + len` are readable; `len` is a multiple
/// of 16.
#[inline(always)]
pub(crate) unsafe fn micro<const DOT: bool, const MR: usize, const NR: usize>(
    rows: &[*const i8; MR],
    woff: *const usize,
    ptrs: *const *const i8,
    stride: usize,
    taps: usize,
    len: usize,
) -> [[int32x4_t; NR]; MR] {
    // SAFETY: NEON is part of the aarch64 baseline.
    let mut acc = [[unsafe { vdupq_n_s32(0) }; NR]; MR];
    for t in 0..taps {
        // SAFETY (this block): indices within the tables and byte ranges the caller vouches for.
        unsafe {
            let o = *woff.add(t);
            let xs: [*const i8; NR] = core::array::from_fn(|p| *ptrs.add(t * stride + p));
            let ws: [*const i8; MR] = core::array::from_fn(|i| rows[i].add(o));
            let mut j = 0;
            while j < len {
                let x: [int8x16_t; NR] = core::array::from_fn(|p| vld1q_s8(xs[p].add(j)));
                let w: [int8x16_t; MR] = core::array::from_fn(|i| vld1q_s8(ws[i].add(j)));
                for (a, wv) in acc.iter_mut().zip(w) {
                    for (a, xv) in a.iter_mut().zip(x) {
                        *a = mac::<DOT>(*a, wv, xv);
                    }
                }
                j += 16;
            }
        }
    }
    acc
}

/// `acc[l] += Σ_{j<4} a[4l+j]·b[4G+j]` (SDOT by element, FEAT_DotProd).
///
/// # Safety
/// The CPU implements FEAT_DotProd.
#[target_feature(enable = "dotprod")]
#[inline]
pub(crate) unsafe fn sdot_lane<const G: i32>(
    mut acc: int32x4_t,
    a: int8x16_t,
    b: int8x16_t,
) -> int32x4_t {
    // SAFETY: as in `sdot`.
    unsafe {
        core::arch::asm!(
            "sdot {0:v}.4s, {1:v}.16b, {2:v}.4b[{g}]",
            inout(vreg) acc,
            in(vreg) a,
            in(vreg) b,
            g = const G,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The 4×4 transpose of 32-bit words: `out[g].word[p] = in[p].word[g]`.
#[inline(always)]
pub(crate) fn transpose4(v: [int32x4_t; 4]) -> [int32x4_t; 4] {
    // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
    unsafe {
        let t0 = vtrn1q_s32(v[0], v[1]);
        let t1 = vtrn2q_s32(v[0], v[1]);
        let t2 = vtrn1q_s32(v[2], v[3]);
        let t3 = vtrn2q_s32(v[2], v[3]);
        let (t0, t1, t2, t3) = (
            vreinterpretq_s64_s32(t0),
            vreinterpretq_s64_s32(t1),
            vreinterpretq_s64_s32(t2),
            vreinterpretq_s64_s32(t3),
        );
        [
            vreinterpretq_s32_s64(vtrn1q_s64(t0, t2)),
            vreinterpretq_s32_s64(vtrn1q_s64(t1, t3)),
            vreinterpretq_s32_s64(vtrn2q_s64(t0, t2)),
            vreinterpretq_s32_s64(vtrn2q_s64(t1, t3)),
        ]
    }
}

/// Interleaves four pixels' rows of `len` bytes (a multiple of 16) for [`micro_lanes`]: for
/// the 16-byte step `s`, `xt[s·step + 16·g + 4·p + b] = x_p[16·s + 4·g + b]` (the word
/// transpose of the four 16-byte chunks).
///
/// # Safety
/// `x[p] .. + len` readable, `xt + s·step .. + 64` writable for every step `s`.
#[inline(always)]
pub(crate) unsafe fn interleave4(x: [*const i8; 4], len: usize, xt: *mut i8, step: usize) {
    let mut j = 0;
    let mut d = xt;
    while j < len {
        // SAFETY: within the caller's ranges.
        unsafe {
            let v: [int32x4_t; 4] =
                core::array::from_fn(|p| vreinterpretq_s32_s8(vld1q_s8(x[p].add(j))));
            let t = transpose4(v);
            for (g, tv) in t.iter().enumerate() {
                vst1q_s8(d.add(16 * g), vreinterpretq_s8_s32(*tv));
            }
            d = d.add(step);
        }
        j += 16;
    }
}

/// The SDOT-by-element block: `MR` weight rows × `4·H` pixels interleaved by [`interleave4`]
/// (step `64·H`, quad `h` at `+ 64·h`), with the pixels in the lanes: `acc[i][h].lane[p] =
/// Σ_t Σ_j w_i[woff[t] + j] · x_{4h+p}[t·len + j]`. Per 16 bytes: `4·H + MR` loads, `4·H·MR`
/// SDOTs, no reduction afterwards. `MR` ≤ 8.
///
/// # Safety
/// FEAT_DotProd. `woff` holds `taps` offsets; `rows[i] + woff[t] .. + len` readable; `xt ..
/// + 4·H·taps·len` readable; `len` a multiple of 16.
#[inline(always)]
pub(crate) unsafe fn micro_lanes<const MR: usize, const H: usize>(
    rows: &[*const i8; MR],
    woff: *const usize,
    xt: *const i8,
    taps: usize,
    len: usize,
) -> [[int32x4_t; H]; MR] {
    // SAFETY: NEON is part of the aarch64 baseline.
    let mut acc = [[unsafe { vdupq_n_s32(0) }; H]; MR];
    let mut xp = xt;
    for t in 0..taps {
        // SAFETY (this block): ranges the caller vouches for; FEAT_DotProd.
        unsafe {
            let o = *woff.add(t);
            let ws: [*const i8; MR] = core::array::from_fn(|i| rows[i].add(o));
            let mut j = 0;
            while j < len {
                let x: [[int8x16_t; 4]; H] = core::array::from_fn(|h| {
                    core::array::from_fn(|g| vld1q_s8(xp.add(64 * h + 16 * g)))
                });
                // Written out row by row: LLVM does not fully unroll 64 SDOTs (asm) by itself,
                // and a rolled loop keeps the accumulators in memory.
                macro_rules! row {
                    ($i:expr) => {
                        if $i < MR {
                            let w = vld1q_s8(ws[$i].add(j));
                            for (a, x) in acc[$i].iter_mut().zip(&x) {
                                *a = sdot_lane::<0>(*a, x[0], w);
                                *a = sdot_lane::<1>(*a, x[1], w);
                                *a = sdot_lane::<2>(*a, x[2], w);
                                *a = sdot_lane::<3>(*a, x[3], w);
                            }
                        }
                    };
                }
                row!(0);
                row!(1);
                row!(2);
                row!(3);
                row!(4);
                row!(5);
                row!(6);
                row!(7);
                xp = xp.add(64 * H);
                j += 16;
            }
        }
    }
    acc
}

/// Sums of the lanes of four accumulators, as the four lanes of one vector.
#[inline(always)]
pub(crate) fn reduce4(a: int32x4_t, b: int32x4_t, c: int32x4_t, d: int32x4_t) -> int32x4_t {
    // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
    unsafe { vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d)) }
}

/// Values `i0 .. i0 + 4` of little-endian i32 bytes; lanes past the end read 0.
#[inline(always)]
pub(crate) fn le_i32x4(v: LeI32, i0: usize) -> int32x4_t {
    match i0
        .checked_mul(4)
        .and_then(|o| v.0.get(o..o.checked_add(16)?))
    {
        // SAFETY: 16 readable bytes (just checked); unaligned loads are allowed, and on this
        // little-endian target they are the four i32 in lane order.
        Some(b) => unsafe { vreinterpretq_s32_u8(vld1q_u8(b.as_ptr())) },
        None => {
            let a: [i32; 4] = core::array::from_fn(|l| v.get(i0 + l));
            // SAFETY: reads a local array of four i32.
            unsafe { vld1q_s32(a.as_ptr()) }
        }
    }
}

/// The per-tensor part of the output stage, broadcast.
#[derive(Clone, Copy)]
pub(crate) struct Common {
    zp: int32x4_t,
    min: int32x4_t,
    max: int32x4_t,
    zp16: int16x8_t,
    min8: int8x16_t,
    max8: int8x16_t,
}

impl Common {
    /// Sixteen requantised values (four vectors from [`Chan::requant`]) plus the zero point,
    /// clamped, as bytes in order. Equal to `OutputStage::apply`'s `clamp(q +sat zp, min, max)`:
    /// the saturating narrowings to i16 and then i8 only move values that lie beyond
    /// `[min, max] ⊆ [-128, 127]` anyway (|zp| ≤ 128 cannot bring a saturated i16 back).
    #[inline(always)]
    pub(crate) fn pack16(&self, q: [int32x4_t; 4]) -> int8x16_t {
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        unsafe {
            let a = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q[0]), q[1]), self.zp16);
            let b = vqaddq_s16(vqmovn_high_s32(vqmovn_s32(q[2]), q[3]), self.zp16);
            let v = vqmovn_high_s16(vqmovn_s16(a), b);
            vminq_s8(vmaxq_s8(v, self.min8), self.max8)
        }
    }

    pub(crate) fn new(stage: &OutputStage) -> Self {
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        unsafe {
            // Validated: all three within int8.
            Common {
                zp: vdupq_n_s32(stage.output_zp),
                min: vdupq_n_s32(stage.act_min),
                max: vdupq_n_s32(stage.act_max),
                zp16: vdupq_n_s16(stage.output_zp as i16),
                min8: vdupq_n_s8(stage.act_min as i8),
                max8: vdupq_n_s8(stage.act_max as i8),
            }
        }
    }
}

/// The per-channel part of the output stage for four lanes: Q31 multiplier, left shift
/// `max(shift, 0)` and right shift `min(shift, 0)` (negative: NEON's shift-right convention).
#[derive(Clone, Copy)]
pub(crate) struct Chan {
    mult: int32x4_t,
    left: int32x4_t,
    right: int32x4_t,
}

impl Chan {
    /// Channels `oc0 .. oc0 + 4`; lanes past the stage's arrays read 0 (their results are never
    /// stored).
    #[inline(always)]
    pub(crate) fn load4(stage: &OutputStage, oc0: usize) -> Self {
        let mult = le_i32x4(stage.multiplier, oc0);
        let shift = match oc0.checked_add(4).and_then(|end| stage.shift.get(oc0..end)) {
            // SAFETY: 4 readable bytes (just checked), read unaligned.
            Some(sb) => unsafe {
                let s4 = core::ptr::read_unaligned(sb.as_ptr().cast::<u32>());
                vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u32(vdup_n_u32(s4)))))
            },
            None => {
                let shift: [i32; 4] =
                    core::array::from_fn(|l| stage.shift.get(oc0 + l).copied().unwrap_or(0) as i32);
                // SAFETY: reads a local array of four i32.
                unsafe { vld1q_s32(shift.as_ptr()) }
            }
        };
        Chan::new(mult, shift)
    }

    #[inline(always)]
    fn new(mult: int32x4_t, shift: int32x4_t) -> Self {
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        unsafe {
            Chan {
                mult,
                left: vmaxq_s32(shift, vdupq_n_s32(0)),
                right: vminq_s32(shift, vdupq_n_s32(0)),
            }
        }
    }

    /// Channels `oc0 .. oc0 + 4` from the three per-channel arrays `neon_scratch` lays out
    /// (`chan[0..oc4]` multipliers, then left shifts, then right shifts).
    ///
    /// # Safety
    /// `chan .. + 3·oc4` readable i32s, `oc0 + 4 ≤ oc4`.
    #[inline(always)]
    pub(crate) unsafe fn from_table(chan: *const i32, oc4: usize, oc0: usize) -> Self {
        // SAFETY: within the caller's table.
        unsafe {
            Chan {
                mult: vld1q_s32(chan.add(oc0)),
                left: vld1q_s32(chan.add(oc4 + oc0)),
                right: vld1q_s32(chan.add(2 * oc4 + oc0)),
            }
        }
    }

    /// Writes channels `oc0 .. oc0 + 4` into such a table.
    ///
    /// # Safety
    /// `chan .. + 3·oc4` writable i32s, `oc0 + 4 ≤ oc4`.
    #[inline(always)]
    pub(crate) unsafe fn store(&self, chan: *mut i32, oc4: usize, oc0: usize) {
        // SAFETY: within the caller's table.
        unsafe {
            vst1q_s32(chan.add(oc0), self.mult);
            vst1q_s32(chan.add(oc4 + oc0), self.left);
            vst1q_s32(chan.add(2 * oc4 + oc0), self.right);
        }
    }

    /// Channel `oc` in all four lanes.
    #[inline(always)]
    pub(crate) fn splat(stage: &OutputStage, oc: usize) -> Self {
        let shift = stage.shift.get(oc).copied().unwrap_or(0) as i32;
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        unsafe { Chan::new(vdupq_n_s32(stage.multiplier.get(oc)), vdupq_n_s32(shift)) }
    }

    /// `requantize(acc, m, shift)` per lane (see [`Chan::apply`]).
    #[inline(always)]
    pub(crate) fn requant(&self, acc: int32x4_t) -> int32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        unsafe {
            let x = vqrdmulhq_s32(vqshlq_s32(acc, self.left), self.mult);
            let fix = vshrq_n_s32::<31>(vandq_s32(x, self.right));
            vrshlq_s32(vqaddq_s32(x, fix), self.right)
        }
    }

    /// `clamp(requantize(acc, m, shift) + zp, min, max)` per lane, exactly as
    /// `scalar::requantize` and `OutputStage::apply`: saturating left shift (SQSHL), the
    /// saturating rounding doubling high multiply (SQRDMULH is gemmlowp's definition), then the
    /// right shift rounding half away from zero: subtract 1 from negative values (saturating),
    /// then SRSHL's round-half-up shift (TFLite's NEON fix-up), then saturating add and clamp.
    #[inline(always)]
    pub(crate) fn apply(&self, c: &Common, acc: int32x4_t) -> int32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
        unsafe {
            let x = vqrdmulhq_s32(vqshlq_s32(acc, self.left), self.mult);
            let fix = vshrq_n_s32::<31>(vandq_s32(x, self.right));
            let x = vrshlq_s32(vqaddq_s32(x, fix), self.right);
            vminq_s32(vmaxq_s32(vqaddq_s32(x, c.zp), c.min), c.max)
        }
    }
}

/// The four lanes (each within int8 after `Chan::apply`) as bytes, lane order.
#[inline(always)]
pub(crate) fn bytes4(v: int32x4_t) -> [u8; 4] {
    // SAFETY: NEON is part of the aarch64 baseline; register-only intrinsics.
    let word = unsafe {
        let n16 = vmovn_s32(v);
        let n8 = vmovn_s16(vcombine_s16(n16, n16));
        vget_lane_u32::<0>(vreinterpret_u32_s8(n8))
    };
    word.to_le_bytes()
}
