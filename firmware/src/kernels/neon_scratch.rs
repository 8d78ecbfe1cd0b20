//! Scratch layout of the aarch64 NEON kernels, compiled on every target so that the host's
//! exporter can declare an arena that fits the NEON build too (see
//! `engine::required_arena_all_paths`).
//!
//! A convolution-like call (`neon::conv`) uses, from an 8-byte-aligned start (up to 7 bytes
//! skipped, so 8 are reserved):
//!
//! ```text
//! ptrs   taps × nb pointers   per pixel of a block and tap: where its `len` input bytes are
//! woff   taps usizes           per tap: byte offset of its weights in a weight row
//! corr   oc4 i32s              bias − input_zp · Σ weights of the (phase's) taps, per channel
//!                              (oc4: oc rounded up to 4; the tail repeats the last channel)
//! chan   3 × oc4 i32s          the output stage per channel: Q31 multiplier, left shift
//!                              max(shift, 0), right shift min(shift, 0)
//! buf    direct: ic bytes      the input zero point, read for taps in the padding
//!        im2col: nb × k16      the block's gathered columns (zero point for padding taps)
//! packed im2col: oc × k16      the (phase's) weights gathered per channel, zero tail
//! xt     8 × taps × len        SDOT path, ≥ 4 channels: the block's pixels interleaved by
//!                              4-byte groups, 4 pixels at a time (per 16 bytes of a pixel
//!                              row, word g of 4 pixels side by side), for SDOT by element
//! ```
//!
//! `direct` (ic a multiple of 16): taps read the input and the weight rows in place, 16 bytes at
//! a time. Otherwise (`im2col`) a pixel's taps are gathered into one column of `k16` bytes
//! (`taps · ic` rounded up to 16, zero tail) and the weights packed the same way.

use super::{ConvGeom, Shape};

/// Output pixels per block (the SDOT path: 8 channels × 8 pixels a micro-kernel; plain NEON:
/// 4 × 4 twice; fewer than 4 channels: 1 × 8).
pub(crate) const NB: usize = 8;

/// Byte offsets (from the aligned start) and sizes of one call's scratch.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub(crate) struct Layout {
    /// Input channels are a multiple of 16: no gathering.
    pub direct: bool,
    pub k16: usize,
    pub ptrs: usize,
    pub woff: usize,
    pub corr: usize,
    pub chan: usize,
    /// Output channels rounded up to 4.
    pub oc4: usize,
    pub buf: usize,
    pub packed: usize,
    pub xt: usize,
    /// Bytes the caller must provide (alignment reserve included).
    pub total: usize,
}

/// The layout for `ic` input channels, `oc` output channels and at most `taps` taps per output
/// pixel, or `None` when a size overflows.
pub(crate) fn layout(ic: usize, oc: usize, taps: usize) -> Option<Layout> {
    let direct = ic > 0 && ic.is_multiple_of(16);
    let nb = NB;
    let k16 = taps.checked_mul(ic)?.checked_next_multiple_of(16)?;
    let t = if direct { taps } else { 1 };
    let word = core::mem::size_of::<usize>();
    let ptrs = 0;
    let woff = t.checked_mul(nb)?.checked_mul(word)?;
    let corr = woff.checked_add(t.checked_mul(word)?)?;
    let oc4 = oc.checked_next_multiple_of(4)?;
    let chan = corr.checked_add(oc4.checked_mul(4)?)?;
    let buf = chan.checked_add(oc4.checked_mul(12)?)?;
    let (buf_len, packed_len) = if direct {
        (ic, 0)
    } else {
        (nb.checked_mul(k16)?, oc.checked_mul(k16)?)
    };
    let packed = buf.checked_add(buf_len)?;
    let xt = packed.checked_add(packed_len)?;
    let xt_len = if oc >= 4 {
        let row = if direct { taps.checked_mul(ic)? } else { k16 };
        row.checked_mul(NB)?
    } else {
        0
    };
    let total = xt.checked_add(xt_len)?.checked_add(8)?;
    Some(Layout {
        direct,
        k16,
        ptrs,
        woff,
        corr,
        chan,
        oc4,
        buf,
        packed,
        xt,
        total,
    })
}

/// Taps of the largest phase of a transposed convolution: `ceil(kh/s) · ceil(kw/s)`.
pub(crate) fn transpose_taps(geom: ConvGeom) -> usize {
    let s = geom.stride.max(1);
    geom.kh.div_ceil(s).saturating_mul(geom.kw.div_ceil(s))
}

/// Scratch bytes the NEON `conv2d` needs.
pub fn conv2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if out_shape.c == 0 {
        return 0;
    }
    layout(in_shape.c, out_shape.c, geom.kh.saturating_mul(geom.kw)).map_or(usize::MAX, |l| l.total)
}

/// Scratch bytes the NEON `conv_transpose2d` needs.
pub fn conv_transpose2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if out_shape.c == 0 {
        return 0;
    }
    layout(in_shape.c, out_shape.c, transpose_taps(geom)).map_or(usize::MAX, |l| l.total)
}

/// The NEON `dense` needs no scratch (its tails live on the stack, 16 bytes each).
pub fn dense_scratch_size(_n_in: usize, _n_out: usize) -> usize {
    0
}
