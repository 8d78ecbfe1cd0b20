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
use crate::kernels::dsp_scratch::{ic1_words, narrow_t};

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
    let n = narrow_t(in_shape, out_shape, geom);
    let (pw, tx) = (n.pw, n.taps_x);
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
        let ry = ty % s;
        // Widen the input rows this output row reads (at most `slots`, consecutive).
        for ky in (ry..kh.min(ty + 1)).step_by(s) {
            let iy = (ty - ky) / s;
            if iy >= h {
                continue;
            }
            let slot = iy % n.slots;
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
                for (d, px) in dst.chunks_exact_mut(pw).zip(src.chunks_exact(ic)) {
                    put_row::<1>(d, 0, 0, px, input_zp);
                    put_zeros::<1>(d, 0, ic, 2 * pw - ic);
                }
            }
        }
        let rows = &*rows;
        for ox in 0..out_shape.w {
            let t = ox + pad;
            let rx = t % s;
            let ix0 = t / s; // input pixel of tap j = 0 (kx = rx), as (t - rx) / s
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
                    let iy = (ty - ky) / s;
                    if iy >= h {
                        continue;
                    }
                    let r = (iy % n.slots) * n.row + x_at;
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
/// caller has validated the call and the scratch length against `conv2d_scratch_size`.
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
    if oc_n == 0 {
        return Ok(());
    }
    let ConvGeom {
        kh,
        kw,
        stride,
        pad,
    } = geom;
    let taps = kh * kw;
    let p = ic1_words(geom);
    let words = scratch_words(scratch);
    let (xw, wts) = words
        .split_at_mut_checked(p)
        .ok_or(KernelError::ScratchTooSmall)?;
    let wts = wts
        .get_mut(..oc_n * p)
        .ok_or(KernelError::ScratchTooSmall)?;
    let pair = |lo: i32, hi: i32| (lo as u16 as u32) | ((hi as u16 as u32) << 16);
    for (oc, dst) in wts.chunks_exact_mut(p).enumerate() {
        let row = weights.get(oc * taps..(oc + 1) * taps).unwrap_or(&[]);
        for (i, d) in dst.iter_mut().enumerate() {
            let at = |t: usize| row.get(t).map_or(0, |&v| v as i32);
            *d = pair(at(2 * i), at(2 * i + 1));
        }
    }
    let wts = &*wts;
    if oc_n > BLK * PREP {
        // More channels than the prepared blocks: run the blocks one output-channel range at a
        // time would need a strided output; the reference handles this rare shape.
        return crate::kernels::scalar::conv2d(
            input,
            in_shape,
            input_zp,
            weights,
            geom,
            stage,
            output,
            out_shape,
            &mut [],
        );
    }
    let mut prep = [([0i32; BLK], [Rq::new(stage, 0); BLK]); PREP];
    for (b, (bias, rq)) in prep.iter_mut().enumerate() {
        for (i, (bi, q)) in bias.iter_mut().zip(rq.iter_mut()).enumerate() {
            let oc = b * BLK + i;
            if oc < oc_n {
                *bi = stage.bias.get(oc);
                *q = Rq::new(stage, oc);
            }
        }
    }
    let (h, w) = (in_shape.h, in_shape.w);
    let mut out = output.chunks_exact_mut(oc_n);
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
            let xw = &*xw;
            // Output channels in blocks of BLK with their bias and requantisation prepared.
            for (b, (pxb, wb)) in px.chunks_mut(BLK).zip(wts.chunks(BLK * p)).enumerate() {
                let (bias, rq) = &prep[b % PREP];
                if let (6, Some(x6)) = (p, xw.first_chunk::<6>()) {
                    for (((o, wv), q), &bi) in
                        pxb.iter_mut().zip(wb.chunks_exact(6)).zip(rq).zip(bias)
                    {
                        *o = q.apply(asm::dot6(wv, x6, bi), stage);
                    }
                } else {
                    for (((o, wv), q), &bi) in
                        pxb.iter_mut().zip(wb.chunks_exact(p)).zip(rq).zip(bias)
                    {
                        *o = q.apply(asm::dot(wv, xw, p, bi), stage);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Output channels prepared at a time by [`conv2d_ic1`], and how many blocks fit on the stack.
const BLK: usize = 32;
const PREP: usize = 2;
