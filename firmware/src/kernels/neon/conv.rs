//! Convolution and transposed convolution as register-blocked GEMMs over tap lists.
//!
//! A transposed convolution is s² phase convolutions (`../../../../shared/DESIGN.md`): the
//! output pixels `(oy, ox)` with `(oy + pad) mod s = (ry, rx)` take exactly the taps
//! `ky ≡ ry, kx ≡ rx (mod s)`, input `((oy + pad − ky)/s, (ox + pad − kx)/s)`. A plain convolution
//! is the one phase with every tap, input `(oy·s − pad + ky, ox·s − pad + kx)`.
//!
//! Per phase: the per-channel correction `bias − input_zp · Σ w` over the phase's taps, then
//! blocks of 8 output pixels, each with a table of where every tap of every pixel reads (the
//! input, or a run of zero-point bytes for a tap in the padding, whose `w · zp` the correction
//! cancels, so padding contributes nothing, as in the reference). With ic a multiple of 16 the
//! taps are read in place; otherwise a pixel's taps are gathered into one zero-padded column and
//! the phase's weights packed likewise (`neon_scratch`; with one input channel and kernel rows of
//! at most 8 taps, an interior pixel's row is one unaligned 8-byte copy). Then, with ≥ 4 output
//! channels:
//! - SDOT: the 8 pixels word-interleaved once (`gemm::interleave4`), 8 channels × 8 pixels by
//!   SDOT by element (`gemm::micro_lanes`, pixels in the lanes), a word transpose back to
//!   channels in the lanes for the output stage;
//! - plain NEON: 4 channels × 4 pixels twice (`gemm::micro`, lane reduction).
//!
//! Fewer than 4 channels: 1 channel × 8 pixels (`gemm::micro`) on both paths. The arithmetic is
//! the reference's modulo 2^32: `Σ w·(x − zp) = Σ w·x − zp·Σ w`.

use core::arch::aarch64::*;
use core::num::NonZeroUsize;

use super::super::neon_scratch::{layout, transpose_taps, Layout, NB};
use super::super::{Checked, Conv, ConvGeom, KernelError, OutputStage, Scratch, Shape};
use super::gemm::{
    bytes4, interleave4, mac, micro, micro_lanes, reduce4, transpose4, Chan, Common,
};

/// One phase: the taps `(ky, kx)` with `ky ∈ ky0, ky0+step, … < kh` (same for x), the output
/// pixels `(oy0 + j·step, ox0 + i·step)` (`ny × nx` of them).
struct Phase {
    ky0: usize,
    kx0: usize,
    step: usize,
    oy0: usize,
    ox0: usize,
    ny: usize,
    nx: usize,
}

impl Phase {
    fn taps(&self, g: ConvGeom) -> (usize, usize) {
        let n = |k: usize, k0: usize| k.saturating_sub(k0).div_ceil(self.step);
        (n(g.kh, self.ky0), n(g.kw, self.kx0))
    }
}

/// Conv and transposed conv, both paths.
///
/// # Safety
/// With `DOT`, the CPU implements FEAT_DotProd.
#[inline(always)]
pub(crate) unsafe fn conv<const DOT: bool, const TRANSPOSE: bool>(
    call: Checked<'_, Conv<TRANSPOSE>>,
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    let (Conv(p), input, weights, stage, output) = call.into_parts();
    let (in_shape, out_shape, geom, input_zp) = p.parts();
    let scratch = scratch.into_bytes();
    let transpose = TRANSPOSE;
    let (ic, oc_n) = (in_shape.c, out_shape.c);
    if oc_n == 0 {
        return Ok(());
    }
    let max_taps = if transpose {
        transpose_taps(geom)
    } else {
        geom.kh * geom.kw
    };
    let lay = layout(ic, oc_n, max_taps).ok_or(KernelError::ScratchTooSmall)?;
    if scratch.len() < lay.total {
        return Err(KernelError::ScratchTooSmall);
    }
    let skip = scratch.as_ptr().align_offset(8).min(8);
    let base = scratch
        .get_mut(skip..)
        .ok_or(KernelError::ScratchTooSmall)?
        .as_mut_ptr();
    // The output stage per channel, once per call.
    // SAFETY: the `chan` table lies inside the checked scratch; `oc0 + 4 ≤ oc4`.
    unsafe {
        let chan = base.add(lay.chan).cast::<i32>();
        for oc0 in (0..lay.oc4).step_by(4) {
            Chan::load4(stage, oc0).store(chan, lay.oc4, oc0);
        }
    }
    // Validated ≥ 1; as `NonZero`, its divisions have no zero check (no panic path).
    let nz = NonZeroUsize::new(geom.stride).ok_or(KernelError::BadParams)?;
    let s = nz.get();
    let phases = if transpose { s * s } else { 1 };
    for ph in 0..phases {
        let phase = if transpose {
            let (ry, rx) = (ph / nz, ph % nz);
            // First oy with (oy + pad) ≡ ry (mod s).
            let first = |r: usize| (r + s - geom.pad % nz) % nz;
            let (oy0, ox0) = (first(ry), first(rx));
            let ceil = |n: usize| n.saturating_add(s - 1) / nz;
            Phase {
                ky0: ry,
                kx0: rx,
                step: s,
                oy0,
                ox0,
                ny: ceil(out_shape.h.saturating_sub(oy0)),
                nx: ceil(out_shape.w.saturating_sub(ox0)),
            }
        } else {
            Phase {
                ky0: 0,
                kx0: 0,
                step: 1,
                oy0: 0,
                ox0: 0,
                ny: out_shape.h,
                nx: out_shape.w,
            }
        };
        if phase.ny == 0 || phase.nx == 0 {
            continue;
        }
        // SAFETY: `base .. base + lay.total - 8` is inside `scratch` (length checked, `skip` ≤ 7
        // bytes reserved by `total`); validation bounds every input, weight and output index.
        unsafe {
            run_phase::<DOT>(
                input, in_shape, input_zp, weights, geom, stage, output, out_shape, &lay, base,
                &phase, transpose,
            );
        }
    }
    Ok(())
}

/// `n` bytes from `src` to `dst` (one byte without a call to `memcpy`).
///
/// # Safety
/// As `core::ptr::copy_nonoverlapping`.
#[inline(always)]
unsafe fn copy_small(src: *const i8, dst: *mut i8, n: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if n == 1 {
            *dst = *src;
        } else {
            core::ptr::copy_nonoverlapping(src, dst, n);
        }
    }
}

/// `n` bytes of `v` at `dst` (one byte without a call to `memset`).
///
/// # Safety
/// As `core::ptr::write_bytes`.
#[inline(always)]
unsafe fn fill_small(dst: *mut i8, v: i8, n: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if n == 1 {
            *dst = v;
        } else {
            core::ptr::write_bytes(dst, v as u8, n);
        }
    }
}

/// `k16` bytes at `dst`, zero from `used` on: the last 16 are zeroed with one store before the
/// first `used` bytes are written (`k16` is a multiple of 16, `used ≤ k16`).
///
/// # Safety
/// `dst .. + k16` writable.
#[inline(always)]
unsafe fn zero_tail(dst: *mut i8, k16: usize) {
    if k16 >= 16 {
        // SAFETY: inside the caller's `k16` bytes.
        unsafe { vst1q_s8(dst.add(k16 - 16), vdupq_n_s8(0)) };
    }
}

/// Channels of one block on the SDOT-by-element path (8: two groups of 4, 13 vector registers).
const MR_LANES: usize = 8;

/// Stores channels `c0 .. c0 + nc` (`res[p]`, lane order) of the first `nvalid` pixels.
///
/// # Safety
/// `out[pix[p] · oc_n + c0 .. + nc]` writable for `p < nvalid`.
#[inline(always)]
unsafe fn store4<const NB: usize>(
    out: *mut i8,
    res: &[[u8; 4]; NB],
    pix: &[usize; NB],
    nvalid: usize,
    oc_n: usize,
    c0: usize,
    nc: usize,
) {
    // SAFETY: within the caller's output.
    unsafe {
        if nc == 4 {
            for (b, &px) in res.iter().zip(pix).take(nvalid) {
                core::ptr::write_unaligned(out.add(px * oc_n + c0).cast::<[u8; 4]>(), *b);
            }
        } else {
            for (b, &px) in res.iter().zip(pix).take(nvalid) {
                for (l, &v) in b.iter().enumerate().take(nc) {
                    *out.add(px * oc_n + c0 + l) = v as i8;
                }
            }
        }
    }
}

/// # Safety
/// With `DOT`, FEAT_DotProd; `base` is 8-aligned with `lay.total - 8` writable bytes; the
/// arguments passed `validate_conv`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn run_phase<const DOT: bool>(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    g: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    lay: &Layout,
    base: *mut u8,
    phase: &Phase,
    transpose: bool,
) {
    let (ic, oc_n) = (in_shape.c, out_shape.c);
    let (tny, tnx) = phase.taps(g);
    let taps = tny * tnx;
    let tap = |t: usize| {
        let (ty, tx) = match t.checked_div(tnx) {
            Some(ty) => (ty, t - ty * tnx),
            None => (0, 0),
        };
        (phase.ky0 + ty * phase.step, phase.kx0 + tx * phase.step)
    };
    // Taps are enumerated `ty`-major, `tx` inner, everywhere below (`tap(t)` is the same order).
    let row_len = g.kh * g.kw * ic;
    // Bytes a table entry reads: `ic` in place, or this phase's column (≤ `lay.k16`, since a
    // phase may have fewer taps than the largest).
    let kp = (taps * ic).next_multiple_of(16);
    let len = if lay.direct { ic } else { kp };
    let zp8 = input_zp as i8;
    // SAFETY (whole body): every pointer below stays in the regions `neon_scratch::layout`
    // sized for `taps ≤` the table's taps (direct) or `taps · ic ≤ lay.k16` (im2col), and in
    // the validated `input` / `weights` / `output`.
    unsafe {
        let ptrs = base.add(lay.ptrs).cast::<*const i8>();
        let woff = base.add(lay.woff).cast::<usize>();
        let corr = base.add(lay.corr).cast::<i32>();
        let buf = base.add(lay.buf).cast::<i8>();
        let packed = base.add(lay.packed).cast::<i8>();
        let w = weights.as_ptr();
        let x = input.as_ptr();

        // Weight rows as the micro-kernel reads them: in place (direct) or packed (im2col).
        let (wbase, wstride, ntab) = if lay.direct {
            for t in 0..taps {
                let (ky, kx) = tap(t);
                *woff.add(t) = (ky * g.kw + kx) * ic;
            }
            fill_small(buf, zp8, ic);
            (w, row_len, taps)
        } else {
            *woff = 0;
            for oc in 0..oc_n {
                let dst = packed.add(oc * lay.k16);
                zero_tail(dst, kp);
                for t in 0..taps {
                    let (ky, kx) = tap(t);
                    let src = w.add(oc * row_len + (ky * g.kw + kx) * ic);
                    copy_small(src, dst.add(t * ic), ic);
                }
            }
            (packed.cast_const(), lay.k16, 1)
        };

        // Per channel: bias − zp · Σ (this phase's weights).
        let ones = vdupq_n_s8(1);
        for oc in 0..oc_n {
            let row = wbase.add(oc * wstride);
            let mut s = vdupq_n_s32(0);
            for t in 0..ntab {
                let r = row.add(*woff.add(t));
                let mut j = 0;
                while j < len {
                    s = mac::<DOT>(s, vld1q_s8(r.add(j)), ones);
                    j += 16;
                }
            }
            let sum = vaddvq_s32(s);
            *corr.add(oc) = stage.bias.get(oc).wrapping_sub(input_zp.wrapping_mul(sum));
        }
        for oc in oc_n..lay.oc4 {
            *corr.add(oc) = *corr.add(oc_n - 1);
        }
        let chan = base.add(lay.chan).cast::<i32>().cast_const();

        let common = Common::new(stage);
        let npix = phase.ny * phase.nx;
        // One input channel, a plain convolution, kernel rows of at most 8 taps whose 8-byte
        // copies stay inside a pixel's column: interior pixels gather a row a copy.
        let rows8 = !transpose
            && !lay.direct
            && ic == 1
            && (1..=8).contains(&tnx)
            && tny > 0
            && (tny - 1) * tnx + 8 <= kp;
        let out = output.as_mut_ptr();
        let mut pix = [0usize; NB]; // output pixel index per block slot
        let mut q0 = 0;
        while q0 < npix {
            let nvalid = (npix - q0).min(NB);
            // The table: per tap and pixel, where `len` bytes are read.
            for (p, px) in pix.iter_mut().enumerate() {
                let q = q0 + p.min(nvalid - 1);
                let qy = q.checked_div(phase.nx).unwrap_or(0);
                let (oy, ox) = (
                    phase.oy0 + qy * phase.step,
                    phase.ox0 + (q - qy * phase.nx) * phase.step,
                );
                *px = oy * out_shape.w + ox;
                if !lay.direct {
                    let col = buf.add(p * lay.k16);
                    *ptrs.add(p) = if p < nvalid { col } else { buf }.cast_const();
                    if p >= nvalid {
                        continue;
                    }
                    zero_tail(col, kp);
                }
                // Tap (ty, tx) reads input (iy0 ∓ ty, ix0 ∓ tx): a larger ky reaches a smaller
                // input row when transposed. Wrapping arithmetic: a coordinate above or left of
                // the input becomes a huge usize and fails `< n`. Transposed, `o + pad ≥ k0` (the
                // phase's first tap) and the division is exact.
                let (iy0, ix0) = if transpose {
                    let d = |o: usize, k0: usize| {
                        (o + g.pad)
                            .wrapping_sub(k0)
                            .checked_div(g.stride)
                            .unwrap_or(0)
                    };
                    (d(oy, phase.ky0), d(ox, phase.kx0))
                } else {
                    (
                        (oy * g.stride).wrapping_sub(g.pad),
                        (ox * g.stride).wrapping_sub(g.pad),
                    )
                };
                let step = |i0: usize, t: usize| {
                    if transpose {
                        i0.wrapping_sub(t)
                    } else {
                        i0.wrapping_add(t)
                    }
                };
                // Interior pixels (every tap inside the input): pointers by strides alone.
                let interior = p < nvalid
                    && tny > 0
                    && tnx > 0
                    && iy0 < in_shape.h
                    && ix0 < in_shape.w
                    && step(iy0, tny - 1) < in_shape.h
                    && step(ix0, tnx - 1) < in_shape.w;
                if interior && rows8 {
                    // One input channel, kernel rows of at most 8 taps: each row one unaligned
                    // 8-byte copy into the column at `ty · tnx`, rows in order, so a row's
                    // bytes past its `tnx` taps are overwritten by the next row or meet the
                    // zero tail of the packed weights (the column's last write ends at
                    // `(tny − 1)·tnx + 8 ≤ kp`, the input read at `+ 8 ≤ input.len()`:
                    // `rows8`).
                    let last = (iy0 + tny - 1) * in_shape.w + ix0 + 8;
                    if last <= input.len() {
                        let p0 = x.add(iy0 * in_shape.w + ix0);
                        let col = buf.add(p * lay.k16);
                        for ty in 0..tny {
                            let v =
                                core::ptr::read_unaligned(p0.add(ty * in_shape.w).cast::<u64>());
                            core::ptr::write_unaligned(col.add(ty * tnx).cast::<u64>(), v);
                        }
                        continue;
                    }
                }
                if interior {
                    let (row, col) = (in_shape.w * ic, ic);
                    let p0 = x.add((iy0 * in_shape.w + ix0) * ic);
                    let mut t = 0;
                    for ty in 0..tny {
                        let rp = if transpose {
                            p0.sub(ty * row)
                        } else {
                            p0.add(ty * row)
                        };
                        for tx in 0..tnx {
                            let src = if transpose {
                                rp.sub(tx * col)
                            } else {
                                rp.add(tx * col)
                            };
                            if lay.direct {
                                *ptrs.add(t * NB + p) = src;
                            } else {
                                copy_small(src, buf.add(p * lay.k16 + t * ic), ic);
                            }
                            t += 1;
                        }
                    }
                    continue;
                }
                let mut t = 0;
                for ty in 0..tny {
                    let iy = step(iy0, ty);
                    for tx in 0..tnx {
                        let ix = step(ix0, tx);
                        let at = if iy < in_shape.h && ix < in_shape.w {
                            Some((iy * in_shape.w + ix) * ic)
                        } else {
                            None
                        };
                        if lay.direct {
                            *ptrs.add(t * NB + p) = match at {
                                Some(o) if p < nvalid => x.add(o),
                                _ => buf.cast_const(),
                            };
                        } else {
                            let dst = buf.add(p * lay.k16 + t * ic);
                            match at {
                                Some(o) => copy_small(x.add(o), dst, ic),
                                None => fill_small(dst, zp8, ic),
                            }
                        }
                        t += 1;
                    }
                }
            }
            if DOT && oc_n >= 4 {
                // SDOT by element: the 8 pixels interleaved once (4 at a time), then 8 channels
                // a block with the pixels in the lanes; a word transpose puts 4 channels back in
                // the lanes.
                let xt = base.add(lay.xt).cast::<i8>();
                for h in 0..2 {
                    let x4 = |t: usize| -> [*const i8; 4] {
                        core::array::from_fn(|p| *ptrs.add(t * NB + 4 * h + p))
                    };
                    if lay.direct {
                        for t in 0..taps {
                            interleave4(x4(t), ic, xt.add(8 * t * ic + 64 * h), 128);
                        }
                    } else {
                        interleave4(x4(0), kp, xt.add(64 * h), 128);
                    }
                }
                let mut oc0 = 0;
                while oc0 < oc_n {
                    let rows: [*const i8; MR_LANES] =
                        core::array::from_fn(|i| wbase.add((oc0 + i).min(oc_n - 1) * wstride));
                    let acc = micro_lanes::<MR_LANES, 2>(&rows, woff, xt, ntab, len);
                    for g in 0..MR_LANES / 4 {
                        let c0 = oc0 + 4 * g;
                        if c0 >= oc_n {
                            break;
                        }
                        let nc = (oc_n - c0).min(4);
                        let bias = vld1q_s32(corr.add(c0));
                        let chan = Chan::from_table(chan, lay.oc4, c0);
                        let words = |h: usize| {
                            let tr = transpose4(core::array::from_fn(|i| acc[4 * g + i][h]));
                            let q = tr.map(|v| chan.requant(vaddq_s32(v, bias)));
                            vreinterpretq_u32_s8(common.pack16(q))
                        };
                        let (lo, hi) = (words(0), words(1));
                        let res: [[u8; 4]; NB] = [
                            vgetq_lane_u32::<0>(lo).to_le_bytes(),
                            vgetq_lane_u32::<1>(lo).to_le_bytes(),
                            vgetq_lane_u32::<2>(lo).to_le_bytes(),
                            vgetq_lane_u32::<3>(lo).to_le_bytes(),
                            vgetq_lane_u32::<0>(hi).to_le_bytes(),
                            vgetq_lane_u32::<1>(hi).to_le_bytes(),
                            vgetq_lane_u32::<2>(hi).to_le_bytes(),
                            vgetq_lane_u32::<3>(hi).to_le_bytes(),
                        ];
                        store4(out, &res, &pix, nvalid, oc_n, c0, nc);
                    }
                    oc0 += MR_LANES;
                }
            } else if oc_n >= 4 {
                // 4 channels × 4 pixels, twice.
                for h in 0..2 {
                    if 4 * h >= nvalid {
                        break;
                    }
                    let pix4: [usize; 4] = core::array::from_fn(|p| pix[4 * h + p]);
                    let nv = (nvalid - 4 * h).min(4);
                    let mut oc0 = 0;
                    while oc0 < oc_n {
                        let nc = (oc_n - oc0).min(4);
                        let rows: [*const i8; 4] =
                            core::array::from_fn(|i| wbase.add((oc0 + i.min(nc - 1)) * wstride));
                        let acc = micro::<DOT, 4, 4>(&rows, woff, ptrs.add(4 * h), NB, ntab, len);
                        let bias = vld1q_s32(corr.add(oc0));
                        let chan = Chan::from_table(chan, lay.oc4, oc0);
                        let res: [[u8; 4]; 4] = core::array::from_fn(|p| {
                            let v = reduce4(acc[0][p], acc[1][p], acc[2][p], acc[3][p]);
                            bytes4(chan.apply(&common, vaddq_s32(v, bias)))
                        });
                        store4(out, &res, &pix4, nv, oc_n, oc0, nc);
                        oc0 += 4;
                    }
                }
            } else {
                // 1 channel × NB pixels, 4 pixels a vector.
                for oc in 0..oc_n {
                    let rows = [wbase.add(oc * wstride)];
                    let acc = micro::<DOT, 1, NB>(&rows, woff, ptrs, NB, ntab, len);
                    let bias = vdupq_n_s32(*corr.add(oc));
                    let chan = Chan::splat(stage, oc);
                    let res: [u8; NB] = core::array::from_fn(|p| {
                        let g4 = p / 4 * 4;
                        let v = reduce4(acc[0][g4], acc[0][g4 + 1], acc[0][g4 + 2], acc[0][g4 + 3]);
                        bytes4(chan.apply(&common, vaddq_s32(v, bias)))[p % 4]
                    });
                    for (&b, &px) in res.iter().zip(&pix).take(nvalid) {
                        *out.add(px * oc_n + oc) = b as i8;
                    }
                }
            }
            q0 += NB;
        }
    }
}
