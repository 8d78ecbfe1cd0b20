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
use crate::kernels::dsp_scratch::{
    ic1_asm_channels, ic1_channels, ic1_pair_block_words, ic1_pair_triples, ic1_pair_words,
    ic1_words, narrow_t, IC1_BLOCK, IC1_PAIR_MAX_WORDS,
};

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

/// The one-input-channel convolution with more than ten taps (the photo encoder's 5×5 first
/// layer) as two pixels × three channels SMLAD blocks ([`asm::ic1_pair`]). The input zero point
/// is folded into the bias (`Σ w·(x − zp) = Σ w·x − zp·Σ w` modulo 2³², padding taps reading
/// `zp`), so each pair of output pixels' taps is gathered once as raw int16 pairs, interleaved,
/// in the order of [`pair_taps`]; each channel triple's weights, corrected biases and
/// requantisation are laid out once per call (per block of triples the scratch holds) as one
/// block the assembly reads with LDM. Runs where every channel has the fast requantisation of
/// [`Rq`], the clamp is plain int8 or a fused ReLU, and one triple fits the scratch; false
/// (nothing written) otherwise. The caller has validated the call.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_ic1_pair(
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
    let per_block = ic1_pair_triples(geom, oc_n, scratch.len());
    let relu = stage.act_min == stage.output_zp && stage.act_min != -128;
    let clamp_ok = stage.act_max == 127 && (relu || stage.act_min == -128);
    let (oh, ow) = (out_shape.h, out_shape.w);
    if per_block == 0 || !clamp_ok || oh * ow == 0 || output.len() < oh * ow * oc_n {
        return false;
    }
    if (0..oc_n).any(|oc| Rq::new(stage, oc).e == 0) {
        return false;
    }
    let (kh, kw) = (geom.kh, geom.kw);
    let taps = kh * kw;
    let nw = ic1_pair_words(geom);
    let bw = ic1_pair_block_words(nw);
    if nw == 0 || nw > IC1_PAIR_MAX_WORDS {
        return false;
    }
    let words = scratch_words(scratch);
    let Some((col, rest)) = words.split_at_mut_checked(2 * nw) else {
        return false;
    };
    let Some(blocks) = rest.get_mut(..per_block * bw) else {
        return false;
    };
    // The canonical tap of each half of each word (`taps`: none).
    let mut order = [[taps; 2]; IC1_PAIR_MAX_WORDS];
    for (m, o) in order.iter_mut().enumerate().take(nw) {
        *o = pair_taps(kh, kw, m).map(|t| t.unwrap_or(taps));
    }
    let out_base = output.as_mut_ptr();
    let step = 3 * per_block.max(1);
    for c0 in (0..oc_n).step_by(step) {
        let c_end = (c0 + step).min(oc_n);
        let nt = (c_end - c0).div_ceil(3);
        for (k, blk) in blocks.chunks_exact_mut(bw).take(nt).enumerate() {
            // A short last triple repeats its last channel (the same bytes stored twice).
            let ch: [usize; 3] = core::array::from_fn(|j| (c0 + 3 * k + j).min(c_end - 1));
            lay_triple(blk, weights, ch, (kh, kw), nw, stage, input_zp);
        }
        let mut job = asm::Ic1Pair {
            x: col.as_ptr(),
            words: nw as u32,
            blocks: blocks.as_ptr(),
            end: blocks.as_ptr().wrapping_add(nt * bw),
            out: [out_base; 2],
        };
        // SAFETY: `col` (2 · nw words) and `blocks` (nt ≥ 1 laid triples, channels below
        // `oc_n`) are word-aligned (`scratch_words`); 1 ≤ nw ≤ IC1_PAIR_MAX_WORDS; every
        // channel's `e` is in 1..=31 (checked above); `out_base` is the output, of at least
        // `oh · ow · oc_n` bytes (checked above).
        unsafe {
            pair_rows(
                col, &mut job, input, in_shape, input_zp, geom, out_shape, &order, relu,
            )
        };
    }
    true
}

/// The pixel pairs of [`conv2d_ic1_pair`] for one block of channel triples (`job.blocks ..
/// job.end`): per pair of output pixels of a row, the taps gathered into `col` (both pixels
/// inside the input: [`gather2`]; else tap by tap), then the assembly.
///
/// # Safety
/// `col` is word-aligned; `job.words` is `ceil(kh·kw / 2)`, in 1..=IC1_PAIR_MAX_WORDS;
/// `job.blocks .. job.end` are `ic1_pair_block_words` word-aligned, readable words per triple
/// (at least one) whose `e` are in 1..=31 and whose offsets are below `out_shape.c`; `job.out[0]`
/// is the output, writable for `out_shape.len()` bytes.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn pair_rows(
    col: &mut [u32],
    job: &mut asm::Ic1Pair,
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    geom: ConvGeom,
    out_shape: Shape,
    order: &[[usize; 2]; IC1_PAIR_MAX_WORDS],
    relu: bool,
) {
    let (oh, ow, oc_n) = (out_shape.h, out_shape.w, out_shape.c);
    let (kh, kw) = (geom.kh, geom.kw);
    let out_base = job.out[0];
    if 2 * (kh * kw).div_ceil(2) > col.len() {
        return;
    }
    let (h, w, stride, pad) = (in_shape.h, in_shape.w, geom.stride, geom.pad);
    for oy in 0..oh {
        // The input rows of this output row, when all inside the input.
        let rows = (oy * stride)
            .checked_sub(pad)
            .filter(|&iy| iy + kh <= h)
            .map(|iy| iy * w);
        let mut ox = 0;
        while ox < ow {
            // Pixels ox and ox + 1 (an odd last pixel runs as a pair with itself).
            let px = [ox, (ox + 1).min(ow - 1)];
            let ix = px.map(|x| (x * stride).checked_sub(pad).filter(|&i| i + kw <= w));
            let fast = match (rows, ix) {
                (Some(at), [Some(i0), Some(i1)]) => match (kh, kw) {
                    (5, 5) => gather2::<5, 5>(col, input, at + i0, at + i1, w, kh, kw),
                    _ => gather2::<0, 0>(col, input, at + i0, at + i1, w, kh, kw),
                },
                _ => false,
            };
            if !fast {
                for (lane, &x) in px.iter().enumerate() {
                    gather_pair(col, lane, input, oy, x, geom, in_shape, input_zp, order);
                }
            }
            job.out = px.map(|x| out_base.wrapping_add((oy * ow + x) * oc_n));
            job.x = col.as_ptr();
            // SAFETY: `col` holds the two pixels' `2 · words` words (checked above), the blocks
            // and the output are the contract's; both pixels are inside the output.
            unsafe { asm::ic1_pair(job, relu) };
            ox += 2;
        }
    }
}

/// One channel triple's block of [`asm::ic1_pair`] (`ic1_pair_block_words` words): channel
/// `ch[j]`'s bias less `zp · Σ w` twice, the weights in the order of [`pair_taps`] (word `m` of
/// channel `j` at `6 + 3m + j`), then `[2m, c, e | output zp << 8, ch[j]]`.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn lay_triple(
    blk: &mut [u32],
    weights: &[i8],
    ch: [usize; 3],
    (kh, kw): (usize, usize),
    words: usize,
    stage: &OutputStage,
    input_zp: i32,
) {
    let taps = kh * kw;
    let zp_bits = (stage.output_zp as u32) << 8;
    let Some((head, tail)) = blk.split_at_mut_checked(6) else {
        return;
    };
    let Some((wts, params)) = tail.split_at_mut_checked(3 * words) else {
        return;
    };
    for (j, &oc) in ch.iter().enumerate() {
        let Some(row) = weights.get(oc * taps..(oc + 1) * taps) else {
            continue;
        };
        if words != taps.div_ceil(2) || wts.len() < 3 * words || row.len() < taps || j >= 3 {
            continue;
        }
        // SAFETY: the weight row holds kh·kw values (rows kw apart), and `wts` the 3·words
        // words of which this writes `j + 3m`, m < words = ceil(kh·kw / 2) (checked above).
        unsafe {
            let dst = wts.as_mut_ptr().add(j);
            match (kh, kw) {
                (5, 5) => pack_taps::<5, 5, 3>(dst, row.as_ptr(), kw, kh, kw, 0xFFFF),
                _ => pack_taps::<0, 0, 3>(dst, row.as_ptr(), kw, kh, kw, 0xFFFF),
            }
        }
        // Σ w over the packed pairs, two a SMLAD.
        let mut sum = 0i32;
        for d in wts.iter().skip(j).step_by(3) {
            sum = asm::smlad(*d, 0x0001_0001, sum);
        }
        let corr = stage.bias.get(oc).wrapping_sub(input_zp.wrapping_mul(sum)) as u32;
        if let Some(b) = head.get_mut(2 * j..2 * j + 2) {
            b.fill(corr);
        }
        let q = Rq::new(stage, oc);
        if let Some(p) = params.get_mut(4 * j..4 * j + 4) {
            for (d, v) in p
                .iter_mut()
                .zip([q.m2 as u32, q.c as u32, q.e | zp_bits, oc as u32])
            {
                *d = v;
            }
        }
    }
}

/// The canonical taps (`ky·kw + kx`) in word `m` of the paired kernel's order: each kernel
/// row's taps in pairs `(kx, kx + 1)` for even `kx < kw - 1`, row by row, then (odd `kw`) the
/// last column two rows at a time, `(ky, kw - 1), (ky + 1, kw - 1)` for even `ky` (`None` past
/// the last row). No pair but the last column's spans two rows, so an inner pixel's rows are
/// gathered four taps a word load; `ceil(kh·kw / 2)` words in all.
fn pair_taps(kh: usize, kw: usize, m: usize) -> [Option<usize>; 2] {
    let hp = kw / 2;
    let hw = kh * hp;
    if m < hw {
        let (ky, j) = match m.checked_div(hp) {
            Some(ky) => (ky, m - ky * hp),
            None => (0, 0),
        };
        let t = ky * kw + 2 * j;
        [Some(t), Some(t + 1)]
    } else {
        let ky = 2 * (m - hw);
        let last = |ky: usize| (ky < kh && kw % 2 == 1).then(|| ky * kw + kw - 1);
        [last(ky), last(ky + 1)]
    }
}

/// The raw taps of output pixel (oy, ox) in the paired kernel's order into lane `lane` of the
/// interleaved `col`: padding taps read the zero point `zp`, empty halves 0 (their weights are
/// 0). `order` is [`pair_taps`] per word.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn gather_pair(
    col: &mut [u32],
    lane: usize,
    input: &[i8],
    oy: usize,
    ox: usize,
    geom: ConvGeom,
    in_shape: Shape,
    zp: i32,
    order: &[[usize; 2]; IC1_PAIR_MAX_WORDS],
) {
    let ConvGeom {
        kh,
        kw,
        stride,
        pad,
    } = geom;
    let (h, w) = (in_shape.h, in_shape.w);
    let tap = |t: usize| {
        let Some(ky) = t.checked_div(kw).filter(|_| t < kh * kw) else {
            return 0;
        };
        let kx = t - ky * kw;
        let iy = (oy * stride + ky).checked_sub(pad).filter(|&y| y < h);
        let ix = (ox * stride + kx).checked_sub(pad).filter(|&x| x < w);
        match (iy, ix) {
            (Some(iy), Some(ix)) => input.get(iy * w + ix).map_or(zp, |&v| v as i32),
            _ => zp,
        }
    };
    for (d, o) in col.iter_mut().skip(lane).step_by(2).zip(order) {
        *d = pair(tap(o[0]), tap(o[1]));
    }
}

/// [`gather_pair`] for two pixels whose taps are all inside the input, the first at input
/// offsets `o0` and `o1` (rows `w` apart): each kernel row four taps a word load (two SXTB16,
/// PKHBT and PKHTB), then the last column. `KH`, `KW`: the kernel when known at compile time
/// (0: `kh`, `kw`). False (nothing written) when a tap or word would lie outside `input`, `col`.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn gather2<const KH: usize, const KW: usize>(
    col: &mut [u32],
    input: &[i8],
    o0: usize,
    o1: usize,
    w: usize,
    kh: usize,
    kw: usize,
) -> bool {
    let kh = if KH == 0 { kh } else { KH };
    let kw = if KW == 0 { kw } else { KW };
    let words = (kh * kw).div_ceil(2);
    if kh == 0 || kw == 0 || o0.max(o1) + (kh - 1) * w + kw > input.len() || 2 * words > col.len() {
        return false;
    }
    // SAFETY: every tap read is `input[o + ky·w + kx]` with ky < kh, kx < kw, o ≤ max(o0, o1),
    // inside `input` by the check above; the words written are `col[2m + lane]` for m < words,
    // lane < 2, inside `col` by the same check.
    unsafe {
        let (src, dst) = (input.as_ptr(), col.as_mut_ptr());
        // The empty high half of an odd last word meets a zero weight: its sign extension is
        // harmless.
        pack_taps::<KH, KW, 2>(dst, src.add(o0), w, kh, kw, u32::MAX);
        pack_taps::<KH, KW, 2>(dst.add(1), src.add(o1), w, kh, kw, u32::MAX);
    }
    true
}

/// Writes the `kh·kw` int8 values `src[ky·w + kx]` as int16 pairs in the order of [`pair_taps`],
/// word `m` at `dst + STEP·m`: each row four values a word load (two SXTB16, PKHBT and PKHTB),
/// then the last column; an odd last word is masked with `last_mask` (`0xFFFF`: its empty half
/// 0). `KH`, `KW`: the sizes when known at compile time (0: `kh`, `kw`).
///
/// # Safety
/// `src + ky·w + kx` readable for ky < kh, kx < kw; `dst + STEP·m` writable for
/// m < ceil(kh·kw / 2).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pack_taps<const KH: usize, const KW: usize, const STEP: usize>(
    dst: *mut u32,
    src: *const i8,
    w: usize,
    kh: usize,
    kw: usize,
    last_mask: u32,
) {
    let kh = if KH == 0 { kh } else { KH };
    let kw = if KW == 0 { kw } else { KW };
    // SAFETY: the reads and writes the contract allows, in order.
    unsafe {
        let mut dst = dst;
        for ky in 0..kh {
            let row = src.add(ky * w);
            let mut kx = 0;
            while kx + 4 <= kw {
                let word = core::ptr::read_unaligned(row.add(kx).cast::<u32>());
                let a = asm::sxtb16(word); // (x0, x2)
                let b = asm::sxtb16_ror8(word); // (x1, x3)
                *dst = (a & 0xFFFF) | (b << 16);
                *dst.add(STEP) = (a >> 16) | (b & 0xFFFF_0000);
                dst = dst.add(2 * STEP);
                kx += 4;
            }
            if kx + 2 <= kw {
                *dst = pair(*row.add(kx) as i32, *row.add(kx + 1) as i32);
                dst = dst.add(STEP);
            }
        }
        if kw % 2 == 1 {
            let end = src.add(kw - 1);
            let mut ky = 0;
            while ky + 2 <= kh {
                *dst = pair(*end.add(ky * w) as i32, *end.add((ky + 1) * w) as i32);
                dst = dst.add(STEP);
                ky += 2;
            }
            if ky < kh {
                *dst = (*end.add(ky * w) as i32 as u32) & last_mask;
            }
        }
    }
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
