//! Scratch sizes of the Cortex-M DSP kernels, compiled on every target so that the host's
//! exporter can declare an arena that fits the device (see `engine::required_arena_all_paths`).

use super::{ConvGeom, Shape};

/// RAM the exporter aims at for activations plus DSP scratch: when a model's ping-pong
/// activations leave room under it, each layer's scratch is planned to fit the rest (smaller
/// im2col chunks, fewer channels at a time, or the zero-scratch reference loop); when they do
/// not, every layer gets the scratch it runs fastest with.
pub const ARENA_BUDGET: usize = 16 * 1024;

/// Output pixels gathered per im2col chunk at most: weights are widened once per chunk and
/// channel pair, so a larger chunk amortises that better and costs `4 · chunk` scratch bytes per
/// kernel element. The kernels take the largest even chunk the scratch they get allows.
pub(crate) const CHUNK: usize = 16;

/// Kernel elements rounded up to the 8 the unrolled SMLAD loop consumes per iteration.
pub(crate) fn padded_k(k: usize) -> usize {
    k.div_ceil(8).saturating_mul(8)
}

/// Scratch for a GEMM over rows of `k` elements with `chunk` pixels a chunk (even): widened
/// weights of two channels plus the widened pixels, `4 + 2·k8·2 + chunk·k8·2` bytes (4 for
/// alignment).
fn gemm_bytes(k: usize, chunk: usize) -> usize {
    padded_k(k)
        .saturating_mul(2)
        .saturating_mul(2usize.saturating_add(chunk))
        .saturating_add(4)
}

/// The im2col chunk a GEMM over `pixels` output pixels with rows of `k` elements uses in `avail`
/// scratch bytes: the largest even chunk up to `min(pixels, CHUNK)` (rounded up to even) that
/// fits, or 0 when not even two pixels fit (the caller then runs the reference loop).
pub(crate) fn gemm_chunk(k: usize, pixels: usize, avail: usize) -> usize {
    if k == 0 || pixels == 0 {
        return 0;
    }
    let mut chunk = pixels.min(CHUNK).next_multiple_of(2);
    while chunk >= 2 && gemm_bytes(k, chunk) > avail {
        chunk -= 2;
    }
    chunk
}

fn gemm_scratch(k: usize, pixels: usize, avail: usize) -> usize {
    match gemm_chunk(k, pixels, avail) {
        0 => 0,
        chunk => gemm_bytes(k, chunk),
    }
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

/// Output channels the one-input-channel convolution widens at a time (the block its bias and
/// requantisation are prepared for).
pub(crate) const IC1_BLOCK: usize = 64;

/// Taps up to which the one-input-channel convolution runs its assembly loop (taps in five
/// registers), and the words of one channel there: five weight pairs, bias, `2m`, `c`, `e`, zero
/// point.
pub(crate) const IC1_ASM_TAPS: usize = 10;
pub(crate) const IC1_ASM_WORDS: usize = 10;

/// Output channels the assembly loop of the one-input-channel convolution handles at a time in
/// `avail` bytes (0: none fit, or more than [`IC1_ASM_TAPS`] taps).
pub(crate) fn ic1_asm_channels(geom: ConvGeom, oc: usize, avail: usize) -> usize {
    if geom.kh.saturating_mul(geom.kw) > IC1_ASM_TAPS {
        return 0;
    }
    let fit = avail.saturating_sub(4) / 4 / IC1_ASM_WORDS;
    if fit == 0 {
        return 0;
    }
    oc.div_ceil(oc.div_ceil(fit).max(1))
}

/// Most tap words (`ceil(kh·kw / 2)`) the paired one-input-channel kernel takes: its unrolled
/// SMLAD sequence has this many steps (64 taps, up to 8×8).
pub(crate) const IC1_PAIR_MAX_WORDS: usize = 32;

/// Tap words of one pixel in the paired one-input-channel kernel: `kh·kw` int16 taps in pairs
/// (see `dsp::narrow::pair_taps` for their order), the last one half empty when `kh·kw` is odd.
pub(crate) fn ic1_pair_words(geom: ConvGeom) -> usize {
    geom.kh.saturating_mul(geom.kw).div_ceil(2)
}

/// Words of one channel triple's block in the paired kernel: the three biases, each twice (the
/// six accumulators' start), the weights (`3 · words`, the three channels' word `t` side by
/// side), then per channel `2m`, `c`, `e | zp << 8` and its output offset.
pub(crate) fn ic1_pair_block_words(words: usize) -> usize {
    words.saturating_mul(3).saturating_add(18)
}

/// Channel triples the paired one-input-channel kernel (two pixels × three channels an SMLAD
/// block, for more than [`IC1_ASM_TAPS`] taps) prepares at a time in `avail` bytes (0: the
/// geometry is not its, or not one triple fits). Scratch: 4 bytes of alignment, the two pixels'
/// interleaved taps (`2 · words` words), then the triples' blocks.
pub(crate) fn ic1_pair_triples(geom: ConvGeom, oc: usize, avail: usize) -> usize {
    let words = ic1_pair_words(geom);
    if geom.kh.saturating_mul(geom.kw) <= IC1_ASM_TAPS || words > IC1_PAIR_MAX_WORDS || oc == 0 {
        return 0;
    }
    let triples = oc.div_ceil(3);
    let fit = avail.saturating_sub(4 + 8 * words) / 4 / ic1_pair_block_words(words);
    if fit == 0 {
        return 0;
    }
    triples.div_ceil(triples.div_ceil(fit).max(1))
}

fn ic1_pair_bytes(geom: ConvGeom, triples: usize) -> usize {
    let words = ic1_pair_words(geom);
    ic1_pair_block_words(words)
        .saturating_mul(triples)
        .saturating_add(2 * words)
        .saturating_mul(4)
        .saturating_add(4)
}

/// Scratch of the one-input-channel convolution for `n` channels at a time: one pixel's taps,
/// then the channels' weights, as int16 pairs.
fn ic1_bytes(geom: ConvGeom, n: usize) -> usize {
    ic1_words(geom)
        .saturating_mul(n.saturating_add(1))
        .saturating_mul(4)
        .saturating_add(4)
}

/// Output channels the one-input-channel convolution handles at a time in `avail` bytes (0: the
/// reference loop).
pub(crate) fn ic1_channels(geom: ConvGeom, oc: usize, avail: usize) -> usize {
    let mut n = oc.min(IC1_BLOCK);
    if n == 0 {
        return 0;
    }
    // Equal blocks: as few as the space allows, then as small as that count permits.
    let words = ic1_words(geom).max(1);
    let fit = (avail.saturating_sub(4) / 4 / words).saturating_sub(1);
    if fit < n {
        if fit == 0 {
            return 0;
        }
        n = oc.div_ceil(oc.div_ceil(fit).max(1));
    }
    n
}

/// Runs (contiguous input/weight stretches) one output pixel of the direct kernels may have
/// (`dsp/direct.rs`); shapes with more take the reference loop.
pub(crate) const DIRECT_MAX_RUNS: usize = 32;

/// Whether the direct kernels handle this geometry (at most [`DIRECT_MAX_RUNS`] runs a pixel).
pub(crate) fn direct_supported(geom: ConvGeom, transpose: bool) -> bool {
    let runs = if transpose {
        let s = geom.stride.max(1);
        geom.kh.div_ceil(s).saturating_mul(geom.kw.div_ceil(s))
    } else {
        geom.kh
    };
    runs <= DIRECT_MAX_RUNS
}

/// The longest run of the direct kernels: a kernel row (`kw · ic`), or one tap (`ic`) of a
/// transposed convolution.
pub(crate) fn direct_run_max(in_shape: Shape, geom: ConvGeom, transpose: bool) -> usize {
    if transpose {
        in_shape.c
    } else {
        geom.kw.saturating_mul(in_shape.c)
    }
}

/// Words of one widened run of the direct kernels.
fn direct_run_words(run_max: usize) -> usize {
    run_max.div_ceil(4).saturating_mul(2)
}

/// Channels whose sums the direct kernels keep at a time beside one widened run in `avail`
/// bytes (a multiple of four below `oc`), or 0: no room or fewer than eight channels, and they
/// widen in registers instead.
pub(crate) fn direct_channels(run_max: usize, oc: usize, avail: usize) -> usize {
    let words = avail.saturating_sub(4) / 4;
    let fit = words.saturating_sub(direct_run_words(run_max));
    // Widening a run once pays off from two channel quads on (measured: one-channel convT2 ran
    // 7.0 → 12.9 instructions/MAC with it).
    if oc < 8 || run_max < 4 {
        return 0;
    }
    if fit >= oc {
        return oc;
    }
    let fit4 = fit - fit % 4;
    if fit4 == 0 {
        return 0;
    }
    oc.div_ceil(oc.div_ceil(fit4).max(1))
        .next_multiple_of(4)
        .min(fit4)
}

/// Scratch bytes the direct kernels use in `avail` bytes (0: none).
fn direct_bytes(
    in_shape: Shape,
    out_shape: Shape,
    geom: ConvGeom,
    transpose: bool,
    avail: usize,
) -> usize {
    if !direct_supported(geom, transpose) {
        return 0;
    }
    let run_max = direct_run_max(in_shape, geom, transpose);
    match direct_channels(run_max, out_shape.c, avail) {
        0 => 0,
        n => n
            .saturating_add(direct_run_words(run_max))
            .saturating_mul(4)
            .saturating_add(4),
    }
}

/// Scratch bytes [`conv2d`](super::conv2d) runs fastest with. Any shorter scratch works: see
/// [`conv2d_scratch_for`].
pub fn conv2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    conv2d_scratch_for(in_shape, out_shape, geom, usize::MAX)
}

/// Scratch bytes [`conv2d`](super::conv2d) uses when it is given `avail` bytes (at most `avail`; 0 when it runs
/// the zero-scratch reference loop).
pub fn conv2d_scratch_for(
    in_shape: Shape,
    out_shape: Shape,
    geom: ConvGeom,
    avail: usize,
) -> usize {
    if in_shape.c == 1 {
        if let n @ 1.. = ic1_asm_channels(geom, out_shape.c, avail) {
            return n.saturating_mul(IC1_ASM_WORDS * 4).saturating_add(4);
        }
        if let n @ 1.. = ic1_pair_triples(geom, out_shape.c, avail) {
            return ic1_pair_bytes(geom, n);
        }
        return match ic1_channels(geom, out_shape.c, avail) {
            0 => direct_bytes(in_shape, out_shape, geom, false, avail),
            n => ic1_bytes(geom, n),
        };
    }
    if out_shape.c < MIN_GEMM_CHANNELS {
        return 0;
    }
    let k = geom.kh.saturating_mul(geom.kw).saturating_mul(in_shape.c);
    match gemm_scratch(k, out_shape.h.saturating_mul(out_shape.w), avail) {
        0 => direct_bytes(in_shape, out_shape, geom, false, avail),
        n => n,
    }
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

/// Scratch bytes [`conv_transpose2d`](super::conv_transpose2d) runs fastest with. Any shorter scratch works: see
/// [`conv_transpose2d_scratch_for`].
pub fn conv_transpose2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    conv_transpose2d_scratch_for(in_shape, out_shape, geom, usize::MAX)
}

/// Scratch bytes [`conv_transpose2d`](super::conv_transpose2d) uses when it is given `avail` bytes (at most `avail`; 0
/// when it runs the zero-scratch reference loop).
pub fn conv_transpose2d_scratch_for(
    in_shape: Shape,
    out_shape: Shape,
    geom: ConvGeom,
    avail: usize,
) -> usize {
    if out_shape.c < MIN_GEMM_CHANNELS {
        if out_shape.c == 0 {
            return 0;
        }
        let need = narrow_t_bytes(in_shape, out_shape, geom);
        return if need <= avail {
            need
        } else {
            direct_bytes(in_shape, out_shape, geom, true, avail)
        };
    }
    let s = geom.stride.max(1);
    // The largest sub-kernel has ceil(k / s) taps per axis; a phase has at most ceil(out / s)
    // pixels per axis.
    let k = geom
        .kh
        .div_ceil(s)
        .saturating_mul(geom.kw.div_ceil(s))
        .saturating_mul(in_shape.c);
    let pixels = out_shape
        .h
        .div_ceil(s)
        .saturating_mul(out_shape.w.div_ceil(s));
    match gemm_scratch(k, pixels, avail) {
        0 => direct_bytes(in_shape, out_shape, geom, true, avail),
        n => n,
    }
}

/// Scratch of the narrow transposed convolution (fewer than [`MIN_GEMM_CHANNELS`] outputs).
pub(crate) fn narrow_t_bytes(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    let n = narrow_t(in_shape, out_shape, geom);
    n.slots
        .saturating_mul(n.row.saturating_add(1))
        .saturating_add(n.wts)
        .saturating_mul(4)
        .saturating_add(4)
}

/// True when the DSP (transposed) convolution with `avail` bytes of scratch runs the im2col GEMM,
/// the path that reads a pre-laid block (`edgevae_shared::layout::gemm_words`) instead of
/// widening the weights per chunk; with less scratch it runs the direct kernels, which read the
/// canonical int8 weights.
pub fn gemm_runs(
    in_shape: Shape,
    out_shape: Shape,
    geom: ConvGeom,
    transpose: bool,
    avail: usize,
) -> bool {
    if out_shape.c < MIN_GEMM_CHANNELS {
        return false;
    }
    if transpose {
        let s = geom.stride.max(1);
        let k = geom.kh.div_ceil(s) * geom.kw.div_ceil(s) * in_shape.c;
        gemm_chunk(k, out_shape.h.div_ceil(s) * out_shape.w.div_ceil(s), avail) > 0
    } else {
        let k = geom.kh * geom.kw * in_shape.c;
        in_shape.c > 1 && gemm_chunk(k, out_shape.h * out_shape.w, avail) > 0
    }
}

/// Scratch bytes [`dense`](super::dense) runs fastest with: the input widened to int16 (groups of four), plus
/// alignment; none for 16 inputs (widened on the stack).
pub fn dense_scratch_size(n_in: usize, n_out: usize) -> usize {
    dense_scratch_for(n_in, n_out, usize::MAX)
}

/// Scratch bytes [`dense`](super::dense) uses when it is given `avail` bytes (0: the reference loop, or the
/// 16-input loop, which needs none).
pub fn dense_scratch_for(n_in: usize, _n_out: usize, avail: usize) -> usize {
    if n_in == 16 {
        return 0;
    }
    let need = match n_in / 4 {
        0 => 0,
        groups => groups.saturating_mul(8).saturating_add(4),
    };
    if need <= avail {
        need
    } else {
        0
    }
}
