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

/// Below this many output channels the im2col gather is not amortised and the reference loop is
/// faster (measured: a 1-channel transposed convolution ran 10% slower through the GEMM).
pub(crate) const MIN_GEMM_CHANNELS: usize = 4;

/// Scratch bytes [`conv2d`] needs.
pub fn conv2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if out_shape.c < MIN_GEMM_CHANNELS {
        return 0;
    }
    let k = geom.kh.saturating_mul(geom.kw).saturating_mul(in_shape.c);
    gemm_scratch(k, out_shape.h.saturating_mul(out_shape.w))
}

/// Scratch bytes [`conv_transpose2d`] needs (the largest phase).
pub fn conv_transpose2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if out_shape.c < MIN_GEMM_CHANNELS {
        return 0;
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

/// Scratch bytes [`dense`] needs: the input widened to int16 (groups of four), plus alignment.
pub fn dense_scratch_size(n_in: usize, _n_out: usize) -> usize {
    match n_in / 4 {
        0 => 0,
        groups => groups.saturating_mul(8).saturating_add(4),
    }
}
