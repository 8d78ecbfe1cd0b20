//! Scratch sizes of the Cortex-M DSP kernels, compiled on every target so that the host's
//! exporter can declare an arena that fits the device (see `engine::required_arena_all_paths`).

use super::{ConvGeom, Shape};

/// Output pixels gathered per im2col chunk: weights are widened once per chunk and channel pair,
/// so a larger chunk amortises that better and costs `4 · CHUNK` scratch bytes per kernel element.
pub(crate) const CHUNK: usize = 16;

/// Kernel elements rounded up to the 8 the unrolled SMLAD loop consumes per iteration.
pub(crate) fn padded_k(k: usize) -> usize {
    k.div_ceil(8).saturating_mul(8)
}

/// Scratch for a GEMM over rows of `k` elements: widened weights of two channels plus a chunk of
/// widened pixels, `4 + 2·k8·2 + CHUNK·k8·2` bytes (4 for alignment), for up to `pixels` pixels.
fn gemm_scratch(k: usize, pixels: usize) -> usize {
    if k == 0 || pixels == 0 {
        return 0;
    }
    let chunk = pixels.min(CHUNK).next_multiple_of(2);
    padded_k(k)
        .saturating_mul(2)
        .saturating_mul(2 + chunk)
        .saturating_add(4)
}

/// Below this many output channels the im2col gather is not amortised: transposed convolutions
/// run the narrow direct kernel (`dsp/narrow.rs`), plain convolutions with more than one input
/// channel the reference loop (a 1-channel transposed convolution ran 10% slower through the GEMM).
pub(crate) const MIN_GEMM_CHANNELS: usize = 4;

/// Words of one pixel's taps in the one-input-channel convolution: `kh·kw` int16 taps in pairs,
/// rounded up to an even number of words (the SMLAD dot consumes two words at a time).
pub(crate) fn ic1_words(geom: ConvGeom) -> usize {
    geom.kh
        .saturating_mul(geom.kw)
        .div_ceil(2)
        .next_multiple_of(2)
}

/// Scratch bytes [`conv2d`] needs.
pub fn conv2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if in_shape.c == 1 {
        // One pixel's taps, then every output channel's weights, all as int16 pairs.
        if out_shape.c == 0 {
            return 0;
        }
        return ic1_words(geom)
            .saturating_mul(out_shape.c.saturating_add(1))
            .saturating_mul(4)
            .saturating_add(4);
    }
    if out_shape.c < MIN_GEMM_CHANNELS {
        return 0;
    }
    let k = geom.kh.saturating_mul(geom.kw).saturating_mul(in_shape.c);
    gemm_scratch(k, out_shape.h.saturating_mul(out_shape.w))
}

/// Layout of the narrow transposed-convolution scratch (fewer than [`MIN_GEMM_CHANNELS`] output
/// channels), in words: `slots` row tags, then `slots` widened input rows of `row` words, then the
/// widened weights (`wts` words). Pixels are widened to `icp = ic` rounded up to 4 elements.
#[cfg_attr(not(target_arch = "arm"), allow(dead_code))]
pub(crate) struct NarrowT {
    pub slots: usize,
    pub pw: usize,
    pub taps_x: usize,
    pub row: usize,
    pub wts: usize,
}

pub(crate) fn narrow_t(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> NarrowT {
    let s = geom.stride.max(1);
    let pw = in_shape.c.div_ceil(4).saturating_mul(2);
    let slots = geom.kh.div_ceil(s);
    let taps_x = geom.kw.div_ceil(s);
    NarrowT {
        slots,
        pw,
        taps_x,
        row: in_shape.w.saturating_mul(pw),
        // Per output channel, kernel row and x phase: `taps_x` pixels of `pw` words.
        wts: out_shape
            .c
            .saturating_mul(geom.kh)
            .saturating_mul(s)
            .saturating_mul(taps_x)
            .saturating_mul(pw),
    }
}

/// Scratch bytes [`conv_transpose2d`] needs (the largest phase).
pub fn conv_transpose2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if out_shape.c < MIN_GEMM_CHANNELS {
        if out_shape.c == 0 {
            return 0;
        }
        let n = narrow_t(in_shape, out_shape, geom);
        return n
            .slots
            .saturating_mul(n.row.saturating_add(1))
            .saturating_add(n.wts)
            .saturating_mul(4)
            .saturating_add(4);
    }
    let s = geom.stride.max(1);
    // The largest sub-kernel has ceil(k / s) taps per axis; a phase has at most ceil(out / s)
    // pixels per axis.
    let k = geom
        .kh
        .div_ceil(s)
        .saturating_mul(geom.kw.div_ceil(s))
        .saturating_mul(in_shape.c);
    gemm_scratch(
        k,
        out_shape
            .h
            .div_ceil(s)
            .saturating_mul(out_shape.w.div_ceil(s)),
    )
}

/// Scratch bytes [`dense`] needs: the input widened to int16 (groups of four), plus alignment;
/// none for 16 inputs (widened on the stack).
pub fn dense_scratch_size(n_in: usize, _n_out: usize) -> usize {
    if n_in == 16 {
        return 0;
    }
    match n_in / 4 {
        0 => 0,
        groups => groups.saturating_mul(8).saturating_add(4),
    }
}
