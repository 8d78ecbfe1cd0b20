//! Convolution and transposed convolution as phase-wise im2col GEMMs (2 channels × 2 pixels).

use super::super::{
    scalar, Checked, Conv, ConvCall, ConvGeom, ConvParams, ConvTCall, KernelError, OutputStage,
    Scratch, Shape,
};
use super::{asm, put_row, put_zeros, scratch_words, Rq};
use crate::kernels::dsp_scratch::padded_k;
pub use crate::kernels::dsp_scratch::{
    conv2d_scratch_for, conv2d_scratch_size, conv_transpose2d_scratch_for,
    conv_transpose2d_scratch_size,
};
use crate::kernels::dsp_scratch::{
    gemm_chunk, ic1_channels, narrow_t_bytes, CHUNK, MIN_GEMM_CHANNELS,
};
use edgevae_shared::layout::GemmGeom;

/// One phase of a (transposed) convolution: the taps `ky0, ky0 + kstep, … < kh` (same for x) and
/// how an output coordinate and a tap map to an input coordinate.
#[derive(Clone, Copy)]
struct Phase {
    transpose: bool,
    stride: usize,
    pad: usize,
    ky0: usize,
    kx0: usize,
    kstep: usize,
    kh: usize,
    kw: usize,
}

impl Phase {
    fn taps(&self, k0: usize, k: usize) -> impl Iterator<Item = usize> + Clone {
        (k0..k).step_by(self.kstep)
    }

    /// Input coordinate feeding output `o` through tap `k`, if inside the input.
    #[inline(always)]
    fn input(&self, o: usize, k: usize, n: usize) -> Option<usize> {
        let i = if self.transpose {
            // o = i·s - pad + k, and the phase guarantees s divides o + pad - k.
            (o + self.pad).checked_sub(k)? / self.stride
        } else {
            (o * self.stride + k).checked_sub(self.pad)?
        };
        (i < n).then_some(i)
    }

    fn k_len(&self, ic: usize) -> usize {
        self.taps(self.ky0, self.kh).count() * self.taps(self.kx0, self.kw).count() * ic
    }
}

/// See [`crate::kernels::conv2d`].
pub fn conv2d(call: ConvCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    conv2d_prelaid(call, &[], scratch)
}

/// The words of a pre-laid GEMM block (`edgevae_shared::layout::gemm_words`) when `prelaid` is
/// one for this geometry and word-aligned; empty otherwise (the GEMM widens the weights).
fn gemm_block(
    prelaid: &[u8],
    in_shape: Shape,
    out_shape: Shape,
    geom: ConvGeom,
    transpose: bool,
) -> &[u32] {
    let g = GemmGeom {
        kh: geom.kh,
        kw: geom.kw,
        stride: geom.stride,
        ic: in_shape.c,
        oc: out_shape.c,
        transpose,
    };
    if prelaid.is_empty() || prelaid.len() != g.block_len() {
        return &[];
    }
    // SAFETY: every bit pattern is a valid u32; `align_to` returns an aligned, in-bounds middle.
    match unsafe { prelaid.align_to::<u32>() } {
        (&[], words, &[]) => words,
        _ => &[],
    }
}

/// [`conv2d`] with the layer's pre-laid block (see [`crate::kernels::conv2d_prelaid`]).
pub fn conv2d_prelaid(
    call: ConvCall<'_>,
    prelaid: &[u8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    let Conv(p) = call.p;
    if p.in_shape.c != 1 && p.out_shape.c < MIN_GEMM_CHANNELS {
        return scalar::conv2d(call, scratch);
    }
    let (Conv(p), input, weights, stage, output) = call.into_parts();
    let (in_shape, out_shape, geom, input_zp) = p.parts();
    let scratch = scratch.into_bytes();
    let k = geom.kh * geom.kw * in_shape.c;
    let chunk = gemm_chunk(k, out_shape.h * out_shape.w, scratch.len());
    if in_shape.c == 1
        && super::narrow::conv2d_ic1_asm(
            input, in_shape, input_zp, weights, geom, stage, output, out_shape, scratch,
        )
    {
        return Ok(());
    }
    if in_shape.c == 1
        && super::narrow::conv2d_ic1_pair(
            input, in_shape, input_zp, weights, geom, stage, output, out_shape, scratch,
        )
    {
        return Ok(());
    }
    if in_shape.c == 1 && ic1_channels(geom, out_shape.c, scratch.len()) > 0 {
        return super::narrow::conv2d_ic1(
            input, in_shape, input_zp, weights, geom, stage, output, out_shape, scratch,
        );
    }
    if in_shape.c == 1 || chunk == 0 {
        // Too little scratch for the kernels above: the zero-scratch kernels.
        return no_scratch(
            input, in_shape, input_zp, weights, geom, stage, output, out_shape, false, scratch,
        );
    }
    let phase = Phase {
        transpose: false,
        stride: geom.stride,
        pad: geom.pad,
        ky0: 0,
        kx0: 0,
        kstep: 1,
        kh: geom.kh,
        kw: geom.kw,
    };
    let ctx = Ctx {
        input,
        in_shape,
        input_zp,
        weights,
        stage,
        out_shape,
        chunk,
    };
    let pre = gemm_block(prelaid, in_shape, out_shape, geom, false);
    let pixels = (0..out_shape.h).flat_map(|oy| (0..out_shape.w).map(move |ox| (oy, ox)));
    gemm(&ctx, phase, pixels, output, scratch_words(scratch), pre)
}

/// See [`crate::kernels::conv_transpose2d`].
pub fn conv_transpose2d(call: ConvTCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    conv_transpose2d_prelaid(call, &[], scratch)
}

/// [`conv_transpose2d`] with the layer's pre-laid block (see
/// [`crate::kernels::conv2d_prelaid`]).
pub fn conv_transpose2d_prelaid(
    call: ConvTCall<'_>,
    prelaid: &[u8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    let (Conv(p), input, weights, stage, output) = call.into_parts();
    let (in_shape, out_shape, geom, input_zp) = p.parts();
    let scratch = scratch.into_bytes();
    let s = geom.stride.max(1);
    // The chunk that fits for the largest sub-kernel fits every phase.
    let k = geom.kh.div_ceil(s) * geom.kw.div_ceil(s) * in_shape.c;
    let chunk = gemm_chunk(
        k,
        out_shape.h.div_ceil(s) * out_shape.w.div_ceil(s),
        scratch.len(),
    );
    let narrow = out_shape.c < MIN_GEMM_CHANNELS;
    if narrow && narrow_t_bytes(in_shape, out_shape, geom) <= scratch.len() {
        return super::narrow::conv_transpose2d_narrow(
            input, in_shape, input_zp, weights, geom, stage, output, out_shape, scratch,
        );
    }
    if narrow || chunk == 0 {
        // Too little scratch for the kernels above.
        return no_scratch(
            input, in_shape, input_zp, weights, geom, stage, output, out_shape, true, scratch,
        );
    }
    let ctx = Ctx {
        input,
        in_shape,
        input_zp,
        weights,
        stage,
        out_shape,
        chunk,
    };
    let words = scratch_words(scratch);
    let mut pre = gemm_block(prelaid, in_shape, out_shape, geom, true);
    for ry in 0..s {
        for rx in 0..s {
            // Outputs with (o + pad) % s == r take the taps r, r + s, ….
            let phase = Phase {
                transpose: true,
                stride: s,
                pad: geom.pad,
                ky0: ry,
                kx0: rx,
                kstep: s,
                kh: geom.kh,
                kw: geom.kw,
            };
            let oy0 = (ry + s - geom.pad % s) % s;
            let ox0 = (rx + s - geom.pad % s) % s;
            let ow = out_shape.w;
            let pixels = (oy0..out_shape.h)
                .step_by(s)
                .flat_map(move |oy| (ox0..ow).step_by(s).map(move |ox| (oy, ox)));
            // This phase's part of the block: k8 words a pair of channels.
            let len = padded_k(phase.k_len(in_shape.c)) * out_shape.c.div_ceil(2);
            let (here, rest) = pre.split_at_checked(len).unwrap_or((&[], &[]));
            pre = rest;
            gemm(&ctx, phase, pixels, output, words, here)?;
        }
    }
    Ok(())
}

/// With too little scratch for the kernels above: the direct DSP kernel (which uses what scratch
/// there is) where it handles the geometry, else the reference.
#[allow(clippy::too_many_arguments)]
fn no_scratch(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    transpose: bool,
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    if super::direct::supported(geom, transpose) {
        super::direct::conv_direct(
            input, in_shape, input_zp, weights, geom, stage, output, out_shape, transpose, scratch,
        );
        return Ok(());
    }
    let p = ConvParams {
        in_shape,
        out_shape,
        geom,
        input_zp,
    };
    // The parts of the checked call this path was given.
    if transpose {
        scalar::conv_transpose2d(
            Checked::reassemble(Conv(p), input, weights, stage, output),
            Scratch::none(),
        )
    } else {
        scalar::conv2d(
            Checked::reassemble(Conv(p), input, weights, stage, output),
            Scratch::none(),
        )
    }
}

struct Ctx<'a, 'b> {
    input: &'a [i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &'a [i8],
    stage: &'a OutputStage<'b>,
    out_shape: Shape,
    /// Pixels a chunk (even, 2..=CHUNK), chosen from the scratch given.
    chunk: usize,
}

/// im2col GEMM of one phase over the given output pixels. `pre` is the phase's pre-laid weights
/// (`k8` words a pair of channels, the layout `widen_weights` makes), or empty: then each chunk
/// widens the weights of each pair into the scratch.
fn gemm(
    ctx: &Ctx,
    phase: Phase,
    pixels: impl Iterator<Item = (usize, usize)>,
    output: &mut [i8],
    words: &mut [u32],
    pre: &[u32],
) -> Result<(), KernelError> {
    let (ic, oc_n) = (ctx.in_shape.c, ctx.out_shape.c);
    let k = phase.k_len(ic);
    let k8 = padded_k(k);
    let w_words = k8 / 2;
    let mut chunk = [(0usize, 0usize); CHUNK];
    let mut pixels = pixels.peekable();
    if k == 0 {
        // A phase without taps (stride > kernel): the bias alone.
        for (oy, ox) in pixels {
            let base = (oy * ctx.out_shape.w + ox) * oc_n;
            for oc in 0..oc_n {
                if let Some(o) = output.get_mut(base + oc) {
                    *o = ctx.stage.apply(ctx.stage.bias.get(oc), oc);
                }
            }
        }
        return Ok(());
    }
    // Two widened weight rows, then CHUNK widened pixel rows, all interleaved in pairs.
    let (wbuf, cols) = words
        .split_at_mut_checked(2 * w_words)
        .ok_or(KernelError::ScratchTooSmall)?;
    while pixels.peek().is_some() {
        let mut n = 0;
        for p in pixels.by_ref().take(ctx.chunk.clamp(2, CHUNK)) {
            if let Some(slot) = chunk.get_mut(n) {
                *slot = p;
            }
            n += 1;
        }
        let blocks = n.div_ceil(2);
        let cols = cols
            .get_mut(..blocks * 2 * w_words)
            .ok_or(KernelError::ScratchTooSmall)?;
        for (i, &(oy, ox)) in chunk.iter().take(n).enumerate() {
            let at = (i / 2) * 2 * w_words;
            if let Some(block) = cols.get_mut(at..at + 2 * w_words) {
                im2col(ctx, phase, oy, ox, block, i % 2, k, k8);
            }
        }
        for oc0 in (0..oc_n).step_by(2) {
            // An odd last channel runs as a pair with itself; the duplicate is discarded.
            let oc1 = (oc0 + 1).min(oc_n - 1);
            let w: &[u32] = match pre.get(oc0 / 2 * k8..(oc0 / 2 + 1) * k8) {
                Some(w) => w,
                None => {
                    widen_weights(ctx, phase, oc0, wbuf, 0, k, k8);
                    widen_weights(ctx, phase, oc1, wbuf, 1, k, k8);
                    wbuf
                }
            };
            let (b0, b1) = (ctx.stage.bias.get(oc0), ctx.stage.bias.get(oc1));
            let (q0, q1) = (Rq::new(ctx.stage, oc0), Rq::new(ctx.stage, oc1));
            for b in 0..blocks {
                let at = b * 2 * w_words;
                let Some(block) = cols.get(at..at + 2 * w_words) else {
                    break;
                };
                let acc = asm::block_2x2(w, block, w_words, [b0, b0, b1, b1]);
                // acc = [oc0·px0, oc0·px1, oc1·px0, oc1·px1]; an odd last pixel's twin is garbage.
                let pixels = chunk.get(2 * b..n.min(2 * b + 2)).unwrap_or(&[]);
                for ((&(oy, ox), &a0), &a1) in pixels.iter().zip(&acc[..2]).zip(&acc[2..]) {
                    let base = (oy * ctx.out_shape.w + ox) * oc_n;
                    if let Some(o) = output.get_mut(base + oc0) {
                        *o = q0.apply(a0, ctx.stage);
                    }
                    if oc1 != oc0 {
                        if let Some(o) = output.get_mut(base + oc1) {
                            *o = q1.apply(a1, ctx.stage);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Gathers the taps of output pixel (oy, ox) as widened `x - zp` into lane `lane` of `block`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn im2col(
    ctx: &Ctx,
    phase: Phase,
    oy: usize,
    ox: usize,
    block: &mut [u32],
    lane: usize,
    k: usize,
    k8: usize,
) {
    let Shape { h, w, c: ic } = ctx.in_shape;
    let mut at = 0;
    let nkx = phase.taps(phase.kx0, phase.kw).count();
    // With unit tap step (every plain convolution) the taps of one kernel row whose inputs are
    // all inside are one contiguous run of the HWC input: copy it in one go.
    let x_first = phase.input(ox, phase.kx0, w);
    let x_last = phase.input(ox, phase.kx0 + (nkx.max(1) - 1) * phase.kstep, w);
    let run = !phase.transpose && phase.kstep == 1 && x_first.is_some() && x_last.is_some();
    for ky in phase.taps(phase.ky0, phase.kh) {
        let iy = phase.input(oy, ky, h);
        if run {
            if let (Some(iy), Some(ix)) = (iy, x_first) {
                let o = (iy * w + ix) * ic;
                if let Some(row) = ctx.input.get(o..o + nkx * ic) {
                    put_row::<2>(block, lane, at, row, ctx.input_zp);
                    at += nkx * ic;
                    continue;
                }
            }
        }
        for kx in phase.taps(phase.kx0, phase.kw) {
            let ix = phase.input(ox, kx, w);
            let row = match (iy, ix) {
                (Some(iy), Some(ix)) => ctx.input.get((iy * w + ix) * ic..(iy * w + ix + 1) * ic),
                _ => None,
            };
            match row {
                Some(row) => put_row::<2>(block, lane, at, row, ctx.input_zp),
                None => put_zeros::<2>(block, lane, at, ic),
            }
            at += ic;
        }
    }
    put_zeros::<2>(block, lane, k, k8 - k);
}

/// Widens the phase's sub-kernel of output channel `oc` into lane `lane` of `wbuf`, in the tap
/// order `im2col` uses.
#[inline(always)]
fn widen_weights(
    ctx: &Ctx,
    phase: Phase,
    oc: usize,
    wbuf: &mut [u32],
    lane: usize,
    k: usize,
    k8: usize,
) {
    let ic = ctx.in_shape.c;
    if phase.kstep == 1 {
        // The whole kernel of `oc` is one contiguous run.
        let o = oc * k;
        if let Some(row) = ctx.weights.get(o..o + k) {
            put_row::<2>(wbuf, lane, 0, row, 0);
        }
    } else {
        let mut at = 0;
        for ky in phase.taps(phase.ky0, phase.kh) {
            for kx in phase.taps(phase.kx0, phase.kw) {
                let o = ((oc * phase.kh + ky) * phase.kw + kx) * ic;
                if let Some(row) = ctx.weights.get(o..o + ic) {
                    put_row::<2>(wbuf, lane, at, row, 0);
                }
                at += ic;
            }
        }
    }
    put_zeros::<2>(wbuf, lane, k, k8 - k);
}
