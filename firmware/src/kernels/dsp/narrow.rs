//! Transposed convolution with few output channels (the decoder's last layer: one channel), as
//! direct dot products over widened input rows; and the one-input-channel convolution (the
//! encoder's first layer).
//!
//! An output pixel of phase (ry, rx) takes, per kernel row `ky ≡ ry`, the taps `kx = rx, rx + s, …`
//! from input pixels `ix0, ix0 - 1, …`: a run of consecutive input pixels. The weights of each
//! (channel, kernel row, x phase) are widened once with their taps in reverse order, so each kernel
//! row is one contiguous SMLAD dot product of `taps · icp` elements against a widened input row.
//! Input rows are widened (`x - zp`, channels padded to a multiple of 4) once each into a ring of
//! `ceil(kh / s)` slots, which holds every row one output row needs.

use super::super::{ConvGeom, KernelError, OutputStage, Shape};
use super::{asm, put_row, put_zeros, scratch_words, Rq};
use crate::kernels::dsp_scratch::{ic1_asm_channels, ic1_channels, ic1_words, narrow_t, IC1_BLOCK};

/// See [`crate::kernels::conv_transpose2d`]; the caller has validated the call and checked the
/// scratch length against `dsp_scratch::narrow_t_bytes`.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
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
    let taps = geom.kh * geom.kw;
    let p = ic1_words(geom).max(1);
    let words = scratch_words(scratch);
    let (xw, wts) = words
        .split_at_mut_checked(p)
        .ok_or(KernelError::ScratchTooSmall)?;
    let wts = wts.get_mut(..nb * p).ok_or(KernelError::ScratchTooSmall)?;
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
                gather_taps(xw, input, oy, ox, geom, h, w, input_zp);
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

/// The one-input-channel convolution with at most ten taps as one assembly loop over the output
/// channels of a pixel ([`asm::ic1_pixel`]): each channel's weights, bias and requantisation are
/// laid out once per call as one block read with two LDMs. Runs where every channel has the fast
/// requantisation of [`Rq`], the clamp is plain int8 or a fused ReLU, and one channel's block fits
/// the scratch (channels in blocks of what fits); false (nothing written) otherwise. The caller
/// has validated the call.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_ic1_asm(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    scratch: &mut [u8],
) -> bool {
    let oc_n = out_shape.c;
    let nb = ic1_asm_channels(geom, oc_n, scratch.len());
    let relu = stage.act_min == stage.output_zp && stage.act_min != -128;
    let clamp_ok = stage.act_max == 127 && (relu || stage.act_min == -128);
    if nb == 0 || !clamp_ok || geom.kw == 0 {
        return false;
    }
    if (0..oc_n).any(|oc| Rq::new(stage, oc).e == 0) {
        return false;
    }
    let taps = geom.kh * geom.kw;
    let Some(blocks) = scratch_words(scratch).get_mut(..nb * asm::IC1_BLOCK_WORDS) else {
        return false;
    };
    let (h, w) = (in_shape.h, in_shape.w);
    let mut job = asm::Ic1Pixel {
        x: [0; 5],
        w: blocks.as_ptr(),
        out: output.as_mut_ptr(),
        n: 0,
    };
    for c0 in (0..oc_n).step_by(nb.max(1)) {
        let cn = nb.min(oc_n - c0);
        for (i, dst) in blocks
            .chunks_exact_mut(asm::IC1_BLOCK_WORDS)
            .take(cn)
            .enumerate()
        {
            let oc = c0 + i;
            let row = weights.get(oc * taps..(oc + 1) * taps).unwrap_or(&[]);
            let at = |t: usize| row.get(t).map_or(0, |&v| v as i32);
            let q = Rq::new(stage, oc);
            let params = [
                stage.bias.get(oc) as u32,
                q.m2 as u32,
                q.c as u32,
                q.e,
                stage.output_zp as u32,
            ];
            for (j, d) in dst.iter_mut().enumerate() {
                *d = match j {
                    0..5 => pair(at(2 * j), at(2 * j + 1)),
                    _ => params.get(j - 5).copied().unwrap_or(0),
                };
            }
        }
        job.w = blocks.as_ptr();
        job.n = cn as u32;
        for oy in 0..out_shape.h {
            for ox in 0..out_shape.w {
                if let Some([r0, r1, r2]) = rows3(input, oy, ox, geom, h, w) {
                    // An inner pixel of a 3×3 kernel: its three input rows, read directly.
                    let v = |x: i8| x as i32 - input_zp;
                    job.x = [
                        pair(v(r0[0]), v(r0[1])),
                        pair(v(r0[2]), v(r1[0])),
                        pair(v(r1[1]), v(r1[2])),
                        pair(v(r2[0]), v(r2[1])),
                        pair(v(r2[2]), 0),
                    ];
                } else {
                    gather_taps(&mut job.x, input, oy, ox, geom, h, w, input_zp);
                }
                let at = (oy * out_shape.w + ox) * oc_n + c0;
                let Some(out) = output.get_mut(at..at + cn) else {
                    return true;
                };
                job.out = out.as_mut_ptr();
                // SAFETY: `blocks` holds `cn` word-aligned blocks (`scratch_words`), `out` is `cn`
                // bytes, `cn ≥ 1`, and every channel's `e` is in 1..=31 (checked above).
                unsafe { asm::ic1_pixel(&job, relu) };
            }
        }
    }
    true
}

/// The three input rows (three taps each) of output pixel (oy, ox) of a 3×3 kernel, when all
/// nine taps are inside the input.
#[inline(always)]
fn rows3(
    input: &[i8],
    oy: usize,
    ox: usize,
    geom: ConvGeom,
    h: usize,
    w: usize,
) -> Option<[&[i8; 3]; 3]> {
    if geom.kh != 3 || geom.kw != 3 {
        return None;
    }
    let iy = (oy * geom.stride).checked_sub(geom.pad)?;
    let ix = (ox * geom.stride).checked_sub(geom.pad)?;
    if iy + 3 > h || ix + 3 > w {
        return None;
    }
    let row = |y: usize| input.get((iy + y) * w + ix..)?.first_chunk::<3>();
    Some([row(0)?, row(1)?, row(2)?])
}

/// Two int16 values as one word, `lo` in the low halfword.
#[inline(always)]
fn pair(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// The taps `x - zp` of output pixel (oy, ox) of a one-input-channel convolution, in pairs
/// (padding and taps past `kh·kw` as 0).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gather_taps(
    x: &mut [u32],
    input: &[i8],
    oy: usize,
    ox: usize,
    geom: ConvGeom,
    h: usize,
    w: usize,
    zp: i32,
) {
    let ConvGeom {
        kh,
        kw,
        stride,
        pad,
    } = geom;
    let tap = |t: usize| {
        let (ky, kx) = (t / kw.max(1), t % kw.max(1));
        let iy = (oy * stride + ky).checked_sub(pad).filter(|&y| y < h);
        let ix = (ox * stride + kx).checked_sub(pad).filter(|&x| x < w);
        match (iy, ix) {
            (Some(iy), Some(ix)) if t < kh * kw => {
                input.get(iy * w + ix).map_or(0, |&v| v as i32 - zp)
            }
            _ => 0,
        }
    };
    for (i, d) in x.iter_mut().enumerate() {
        *d = pair(tap(2 * i), tap(2 * i + 1));
    }
}
