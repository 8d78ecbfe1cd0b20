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

/// Length of the block the exporter writes for `layer` (0: the layer has none).
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
        _ => 0,
    }
}

/// True when `block` is exactly the block derived from `layer` (the parser's check).
pub fn block_matches(layer: &Layer<'_>, block: &[u8]) -> bool {
    if block.len() != block_len(layer) {
        return false;
    }
    block.chunks_exact(4).enumerate().all(|(j, w)| match *w {
        [a, b, c, d] => {
            u32::from_le_bytes([a, b, c, d])
                == dense16_word(layer.weights, layer.bias, layer.multiplier, layer.shift, j)
        }
        _ => false,
    })
}
