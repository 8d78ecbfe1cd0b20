//! Transposed convolution with few output channels (the decoder's last layer: one channel), as
//! direct dot products over widened input rows.
//!
//! An output pixel of phase (ry, rx) takes, per kernel row `ky ≡ ry`, the taps `kx = rx, rx + s, …`
//! from input pixels `ix0, ix0 - 1, …`: a run of consecutive input pixels. The weights of each
//! (channel, kernel row, x phase) are widened once with their taps in reverse order, so each kernel
//! row is one contiguous SMLAD dot product of `taps · icp` elements against a widened input row.
//! Input rows are widened (`x - zp`, channels padded to a multiple of 4) once each into a ring of
//! `ceil(kh / s)` slots, which holds every row one output row needs.

use super::super::{ConvGeom, KernelError, OutputStage, Shape};
use super::{asm, put_row, put_zeros, scratch_words, Rq};
use crate::kernels::dsp_scratch::{ic1_channels, ic1_words, narrow_t, IC1_BLOCK};

/// See [`crate::kernels::conv_transpose2d`]; the caller has validated the call and the scratch
/// length against `conv_transpose2d_scratch_size`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_transpose2d_narrow(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    let Shape { h, w, c: ic } = in_shape;
    let oc_n = out_shape.c;
    let ConvGeom {
        kh,
        kw,
        stride: s,
        pad,
    } = geom;
    if oc_n == 0 {
        return Ok(());
    }
    // Validated ≥ 1; dividing by a `NonZeroUsize` has no panic path.
    let Some(sn) = core::num::NonZeroUsize::new(s) else {
        return Err(KernelError::BadParams);
    };
    let n = narrow_t(in_shape, out_shape, geom);
    let (pw, tx) = (n.pw.max(1), n.taps_x);
    let slots = n.slots.max(1);
    let words = scratch_words(scratch);
    let (tags, rest) = words
        .split_at_mut_checked(n.slots)
        .ok_or(KernelError::ScratchTooSmall)?;
    let (rows, wts) = rest
        .split_at_mut_checked(n.slots * n.row)
        .ok_or(KernelError::ScratchTooSmall)?;
    let wts = wts.get_mut(..n.wts).ok_or(KernelError::ScratchTooSmall)?;
    tags.fill(0);

    // Weights: block (oc, ky, rx) holds taps kx = rx + j·s at position tx - 1 - j.
    let block = tx * pw;
    for oc in 0..oc_n {
        for ky in 0..kh {
            for rx in 0..s {
                let b = ((oc * kh + ky) * s + rx) * block;
                let Some(dst) = wts.get_mut(b..b + block) else {
                    continue;
                };
                dst.fill(0);
                for (j, kx) in (rx..kw).step_by(s).enumerate() {
                    let o = ((oc * kh + ky) * kw + kx) * ic;
                    let at = (tx - 1 - j) * pw;
                    if let (Some(src), Some(d)) = (weights.get(o..o + ic), dst.get_mut(at..at + pw))
                    {
                        put_row::<1>(d, 0, 0, src, 0);
                    }
                }
            }
        }
    }
    let wts = &*wts;
    let rq_n = oc_n.min(3);
    let mut rq = [Rq::new(stage, 0); 3];
    for (oc, q) in rq.iter_mut().enumerate().take(rq_n) {
        *q = Rq::new(stage, oc);
    }

    for oy in 0..out_shape.h {
        let ty = oy + pad;
        let ry = ty % sn;
        // Widen the input rows this output row reads (at most `slots`, consecutive).
        for ky in (ry..kh.min(ty + 1)).step_by(s) {
            let iy = (ty - ky) / sn;
            if iy >= h {
                continue;
            }
            let slot = iy % slots;
            if tags.get(slot) == Some(&(iy as u32 + 1)) {
                continue;
            }
            if let Some(t) = tags.get_mut(slot) {
                *t = iy as u32 + 1;
            }
            let Some(dst) = rows.get_mut(slot * n.row..(slot + 1) * n.row) else {
                continue;
            };
            let src = input.get(iy * w * ic..(iy + 1) * w * ic).unwrap_or(&[]);
            if pw * 2 == ic {
                put_row::<1>(dst, 0, 0, src, input_zp);
            } else {
                for (d, px) in dst.chunks_exact_mut(pw).zip(src.chunks_exact(ic.max(1))) {
                    put_row::<1>(d, 0, 0, px, input_zp);
                    put_zeros::<1>(d, 0, ic, 2 * pw - ic);
                }
            }
        }
        let rows = &*rows;
        for ox in 0..out_shape.w {
            let t = ox + pad;
            let rx = t % sn;
            let ix0 = t / sn; // input pixel of tap j = 0 (kx = rx), as (t - rx) / s
            let ntx = (rx..kw).step_by(s).len();
            // Valid taps j: ix0 - j in [0, w).
            let j_lo = (ix0 + 1).saturating_sub(w);
            let j_hi = ntx.min(ix0 + 1);
            let mut acc = [0i32; 3];
            for (oc, a) in acc.iter_mut().enumerate().take(rq_n) {
                *a = stage.bias.get(oc);
            }
            if j_lo < j_hi {
                let len = (j_hi - j_lo) * pw;
                let x_at = (ix0 + 1 - j_hi) * pw;
                let w_at = (tx - j_hi) * pw;
                for ky in (ry..kh.min(ty + 1)).step_by(s) {
                    let iy = (ty - ky) / sn;
                    if iy >= h {
                        continue;
                    }
                    let r = (iy % slots) * n.row + x_at;
                    let x = rows.get(r..r + len).unwrap_or(&[]);
                    for (oc, a) in acc.iter_mut().enumerate().take(rq_n) {
                        let b = ((oc * kh + ky) * s + rx) * block + w_at;
                        let wv = wts.get(b..b + len).unwrap_or(&[]);
                        *a = asm::dot(wv, x, len, *a);
                    }
                }
            }
            let base = (oy * out_shape.w + ox) * oc_n;
            for (oc, (a, q)) in acc.iter().zip(&rq).enumerate().take(rq_n) {
                if let Some(o) = output.get_mut(base + oc) {
                    *o = q.apply(*a, stage);
                }
            }
        }
    }
    Ok(())
}

/// Convolution of a one-channel input (the encoder's first layer): each output pixel's `kh·kw`
/// taps are gathered once as int16 pairs (`x - zp`, padding 0), then every output channel is one
/// short SMLAD dot product against its weights, widened into the same pairs once per call. The
/// channels run in blocks of as many as the scratch holds (at most [`IC1_BLOCK`]), the taps
/// gathered again per block. The caller has validated the call and checked that one channel
/// fits the scratch (`ic1_channels`).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_ic1(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    let oc_n = out_shape.c;
    let nb = ic1_channels(geom, oc_n, scratch.len());
    if nb == 0 {
        // No room for one channel's widened weights (the caller checks this first).
        return Err(KernelError::ScratchTooSmall);
    }
    let ConvGeom {
        kh,
        kw,
        stride,
        pad,
    } = geom;
    if kw == 0 {
        // Validated ≥ 1; the test keeps division by zero out of the code (no panic path).
        return Err(KernelError::BadParams);
    }
    let taps = kh * kw;
    let p = ic1_words(geom).max(1);
    let words = scratch_words(scratch);
    let (xw, wts) = words
        .split_at_mut_checked(p)
        .ok_or(KernelError::ScratchTooSmall)?;
    let wts = wts.get_mut(..nb * p).ok_or(KernelError::ScratchTooSmall)?;
    let pair = |lo: i32, hi: i32| (lo as u16 as u32) | ((hi as u16 as u32) << 16);
    let (h, w) = (in_shape.h, in_shape.w);
    let mut bias = [0i32; IC1_BLOCK];
    let mut rq = [Rq::new(stage, 0); IC1_BLOCK];
    for c0 in (0..oc_n).step_by(nb) {
        let cn = nb.min(oc_n - c0);
        for (i, dst) in wts.chunks_exact_mut(p).take(cn).enumerate() {
            let oc = c0 + i;
            let row = weights.get(oc * taps..(oc + 1) * taps).unwrap_or(&[]);
            for (j, d) in dst.iter_mut().enumerate() {
                let at = |t: usize| row.get(t).map_or(0, |&v| v as i32);
                *d = pair(at(2 * j), at(2 * j + 1));
            }
        }
        for (i, (bi, q)) in bias.iter_mut().zip(rq.iter_mut()).take(cn).enumerate() {
            *bi = stage.bias.get(c0 + i);
            *q = Rq::new(stage, c0 + i);
        }
        let wb = &*wts;
        let mut out = output.chunks_exact_mut(oc_n.max(1));
        for oy in 0..out_shape.h {
            for ox in 0..out_shape.w {
                let tap = |t: usize| {
                    let (ky, kx) = (t / kw, t % kw);
                    let iy = (oy * stride + ky).checked_sub(pad).filter(|&y| y < h);
                    let ix = (ox * stride + kx).checked_sub(pad).filter(|&x| x < w);
                    match (iy, ix) {
                        (Some(iy), Some(ix)) if t < taps => {
                            input.get(iy * w + ix).map_or(0, |&v| v as i32 - input_zp)
                        }
                        _ => 0,
                    }
                };
                for (i, d) in xw.iter_mut().enumerate() {
                    *d = pair(tap(2 * i), tap(2 * i + 1));
                }
                let Some(px) = out.next() else {
                    return Ok(());
                };
                let Some(pxb) = px.get_mut(c0..c0 + cn) else {
                    return Ok(());
                };
                let xw = &*xw;
                if let (6, Some(x6)) = (p, xw.first_chunk::<6>()) {
                    for (((o, wv), q), &bi) in
                        pxb.iter_mut().zip(wb.chunks_exact(6)).zip(&rq).zip(&bias)
                    {
                        *o = q.apply(asm::dot6(wv, x6, bi), stage);
                    }
                } else {
                    for (((o, wv), q), &bi) in
                        pxb.iter_mut().zip(wb.chunks_exact(p)).zip(&rq).zip(&bias)
                    {
                        *o = q.apply(asm::dot(wv, xw, p, bi), stage);
                    }
                }
            }
        }
    }
    Ok(())
}
