//! Weights pre-laid for the Cortex-M DSP kernels (the model file's [`FLAG_DSP_LAYOUT`] section).
//!
//! The canonical layer arrays (int8 weights `[out][in]`, int32 bias, Q31 multiplier, shift) stay in
//! the payload for every other path; this module defines the extra *blocks* the exporter derives
//! from them, word by word, and that the parser recomputes to check a file's blocks
//! ([`crate::format::Model::from_bytes`] accepts a block only if every word equals the one
//! derived here, so a block can never disagree with the canonical layer).
//!
//! One layout exists today, [`dense16_word`]: a dense layer with 16 inputs (the decoder's first
//! layer), per pair of output channels `a = 2p`, `b = 2p + 1` one run of [`DENSE16_PAIR_WORDS`]
//! little-endian `u32` words, word-aligned in the file:
//!
//! ```text
//! word  0, 1        bias[a], bias[b]
//! words 2 + 4g ..   for each group g of 4 inputs (g = 0..4):
//!                   (w[a][4g], w[a][4g+2]), (w[a][4g+1], w[a][4g+3]),
//!                   (w[b][4g], w[b][4g+2]), (w[b][4g+1], w[b][4g+3])   int16 pairs, low half first
//! words 18..22      2·m[a] (wrapping), −shift[a], 2·m[b] (wrapping), −shift[b]
//! ```
//!
//! The input pairs match what SXTB16 makes of a word of four int8 inputs (`(x0, x2)`, `(x1, x3)`),
//! so the kernel's loop is one LDM of the two biases, four × (LDRD of two input words, LDM of four
//! weight words, four SMLAD), one LDM of the requantisation words, and per channel the five
//! instruction requantisation of `DESIGN.md` (`SMMLAR` by `2m`, whose sign bit is the `m ≥ 2^30`
//! correction mask; `ASRS` by `e = −shift`; `ADC`), clamp and store. An odd last channel is not in
//! a block (the kernel runs it from the canonical arrays). A layer is eligible only if every
//! channel's shift is in `−31..=−1` (the fast requantisation's domain; multipliers are `≥ 0` in
//! every valid file); otherwise it has no block and runs on the kernels that read the canonical
//! layout.
//!
//! Flash cost: 88 bytes per pair of channels on top of the canonical 50 (16 weights × 2, bias,
//! multiplier and shift × 2).

use crate::format::{Layer, Op};

/// Preamble flag: a section of pre-laid weights follows the payload (see [`crate::format`]).
pub const FLAG_DSP_LAYOUT: u16 = 1;
/// Alignment of the section, its length table and every block, from the file's first byte.
pub const ALIGN: usize = 8;
/// Words of one pair of output channels in a [`dense16_word`] block.
pub const DENSE16_PAIR_WORDS: usize = 22;
/// Inputs of the dense layers that have a pre-laid block.
pub const DENSE16_INPUTS: usize = 16;

fn le_i32(bytes: &[u8], i: usize) -> i32 {
    Layer::le_i32(bytes, i)
}

fn byte_i8(bytes: &[u8], i: usize) -> i32 {
    bytes.get(i).map_or(0, |&b| b as i8 as i32)
}

/// Whether the dense 16-input layout applies to a layer with these arrays: 16 inputs, at least
/// two outputs, every shift in `−31..=−1` (one per output).
pub fn dense16_eligible(n_in: usize, n_out: usize, shift: &[u8]) -> bool {
    n_in == DENSE16_INPUTS
        && n_out >= 2
        && shift.len() >= n_out
        && shift
            .iter()
            .take(n_out)
            .all(|&s| (-31..=-1).contains(&(s as i8)))
}

/// Bytes of the dense 16-input block of a layer with `n_out` outputs.
pub const fn dense16_block_len(n_out: usize) -> usize {
    (n_out / 2) * DENSE16_PAIR_WORDS * 4
}

/// Word `j` of the dense 16-input block, from the canonical arrays (int8 weights `[out][16]`,
/// int32 LE bias and multiplier, i8 shift). Out-of-range indices read as 0.
pub fn dense16_word(weights: &[u8], bias: &[u8], multiplier: &[u8], shift: &[u8], j: usize) -> u32 {
    let (p, k) = (j / DENSE16_PAIR_WORDS, j % DENSE16_PAIR_WORDS);
    let (a, b) = (2 * p, 2 * p + 1);
    let w = |ch: usize, i: usize| byte_i8(weights, ch * DENSE16_INPUTS + i);
    let pair = |lo: i32, hi: i32| (lo as u16 as u32) | ((hi as u16 as u32) << 16);
    match k {
        0 => le_i32(bias, a) as u32,
        1 => le_i32(bias, b) as u32,
        2..=17 => {
            let (g, r) = ((k - 2) / 4, (k - 2) % 4);
            let ch = if r < 2 { a } else { b };
            let i = 4 * g + r % 2;
            pair(w(ch, i), w(ch, i + 2))
        }
        18 => le_i32(multiplier, a).wrapping_shl(1) as u32,
        19 => byte_i8(shift, a).wrapping_neg() as u32,
        20 => le_i32(multiplier, b).wrapping_shl(1) as u32,
        _ => byte_i8(shift, b).wrapping_neg() as u32,
    }
}

/// Writes the dense 16-input block of these canonical arrays into `out` (which must be
/// [`dense16_block_len`]`(n_out)` bytes); false (nothing written) when the length is wrong.
pub fn write_dense16_block(
    weights: &[u8],
    bias: &[u8],
    multiplier: &[u8],
    shift: &[u8],
    n_out: usize,
    out: &mut [u8],
) -> bool {
    if out.len() != dense16_block_len(n_out) {
        return false;
    }
    for (j, word) in out.chunks_exact_mut(4).enumerate() {
        word.copy_from_slice(&dense16_word(weights, bias, multiplier, shift, j).to_le_bytes());
    }
    true
}

/// Geometry of a (transposed) convolution for [`gemm_words`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmGeom {
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (≥ 1).
    pub stride: usize,
    /// Input channels.
    pub ic: usize,
    /// Output channels.
    pub oc: usize,
    /// Transposed convolution (one phase per `(ry, rx)` in `0..stride`²), else one phase.
    pub transpose: bool,
}

/// Fewest output channels (and, for a plain convolution, more than one input channel) for which
/// the DSP kernels run a (transposed) convolution as the GEMM that reads a [`gemm_words`] block.
pub const GEMM_MIN_CHANNELS: usize = 4;

impl GemmGeom {
    /// The phases `(ky0, kx0, kstep)` in the kernel's order.
    fn phases(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let s = if self.transpose {
            self.stride.max(1)
        } else {
            1
        };
        (0..s).flat_map(move |ry| (0..s).map(move |rx| (ry, rx, s)))
    }

    fn taps(k0: usize, k: usize, step: usize) -> usize {
        if k0 < k {
            (k - k0).div_ceil(step)
        } else {
            0
        }
    }

    /// Bytes of the block: per phase and pair of channels, the phase's `k` rounded up to 8 words.
    pub fn block_len(&self) -> usize {
        let pairs = self.oc.div_ceil(2);
        self.phases()
            .map(|(ky0, kx0, st)| {
                let k = Self::taps(ky0, self.kh, st) * Self::taps(kx0, self.kw, st) * self.ic;
                k.div_ceil(8) * 8 * pairs * 4
            })
            .sum()
    }
}

/// The words of the (transposed) convolution block: per phase (one, or `(ry, rx)` row-major for a
/// transposed convolution, whose phase takes the taps `ry, ry + s, …` and `rx, rx + s, …`), per
/// pair of output channels `(2p, min(2p + 1, oc − 1))`, the two channels' sub-kernels as int16
/// pairs interleaved word by word, taps row-major with input channels innermost, zero-padded to
/// a multiple of 8 elements: word `2t + lane` holds elements `(k, k + 2)` of channel `lane`, with
/// `k = 4⌊t/2⌋ + t mod 2` (the order SXTB16 gives a word of four int8, in which the kernel's
/// im2col columns are laid out), so its 2 × 2 SMLAD loop reads them with LDRD as they are.
/// `f` gets each word in order and may stop the walk by returning false; returns false then.
pub fn gemm_words(weights: &[u8], g: GemmGeom, mut f: impl FnMut(u32) -> bool) -> bool {
    let pairs = g.oc.div_ceil(2);
    for (ky0, kx0, st) in g.phases() {
        let nkx = GemmGeom::taps(kx0, g.kw, st);
        let k = GemmGeom::taps(ky0, g.kh, st) * nkx * g.ic;
        let k8 = k.div_ceil(8) * 8;
        for p in 0..pairs {
            let chan = [2 * p, (2 * p + 1).min(g.oc.saturating_sub(1))];
            let val = |oc: usize, e: usize| -> u32 {
                if e >= k || g.ic == 0 || nkx == 0 {
                    return 0;
                }
                let (tap, c) = (e / g.ic, e % g.ic);
                let (ky, kx) = (ky0 + (tap / nkx) * st, kx0 + (tap % nkx) * st);
                let at = ((oc * g.kh + ky) * g.kw + kx) * g.ic + c;
                byte_i8(weights, at) as u16 as u32
            };
            for word in 0..k8 {
                let (t, lane) = (word / 2, word % 2);
                let e = 4 * (t / 2) + t % 2;
                let oc = chan[lane];
                if !f(val(oc, e) | (val(oc, e + 2) << 16)) {
                    return false;
                }
            }
        }
    }
    true
}

/// The block geometry of a (transposed) convolution layer the DSP GEMM runs, if it is one.
pub fn gemm_geom(layer: &Layer<'_>) -> Option<GemmGeom> {
    let (ic, oc) = (layer.input.c as usize, layer.output.c as usize);
    let (kh, kw, stride, transpose) = match layer.op {
        Op::Conv2d { kh, kw, stride, .. } if ic > 1 => (kh, kw, stride, false),
        Op::ConvTranspose2d { kh, kw, stride, .. } => (kh, kw, stride, true),
        _ => return None,
    };
    (oc >= GEMM_MIN_CHANNELS).then_some(GemmGeom {
        kh: kh as usize,
        kw: kw as usize,
        stride: stride as usize,
        ic,
        oc,
        transpose,
    })
}

/// Length of the block the exporter may write for `layer` (0: the layer has none).
pub fn block_len(layer: &Layer<'_>) -> usize {
    match layer.op {
        Op::Dense
            if dense16_eligible(
                layer.input.len() as usize,
                layer.output.len() as usize,
                layer.shift,
            ) =>
        {
            dense16_block_len(layer.output.len() as usize)
        }
        _ => gemm_geom(layer).map_or(0, |g| g.block_len()),
    }
}

/// Calls `f` with each word of `layer`'s block in order (nothing for a layer without one);
/// stops early and returns false when `f` does.
pub fn block_words(layer: &Layer<'_>, mut f: impl FnMut(u32) -> bool) -> bool {
    if let Some(g) = gemm_geom(layer) {
        return gemm_words(layer.weights, g, f);
    }
    let words = block_len(layer) / 4;
    (0..words).all(|j| {
        f(dense16_word(
            layer.weights,
            layer.bias,
            layer.multiplier,
            layer.shift,
            j,
        ))
    })
}

/// True when `block` is exactly the block derived from `layer` (the parser's check).
pub fn block_matches(layer: &Layer<'_>, block: &[u8]) -> bool {
    if block.len() != block_len(layer) {
        return false;
    }
    let mut words = block.chunks_exact(4);
    block_words(layer, |w| match words.next() {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) == w,
        _ => false,
    })
}
