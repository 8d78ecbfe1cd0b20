//! Fixed-point int8 kernels: a portable reference (`scalar`) and fast paths behind one interface.
//!
//! The top-level functions dispatch at compile time (the cfgs `edgevae_dsp` and `edgevae_neon`,
//! decided once in the crate's `build.rs`):
//! - `dsp` (SMLAD/SXTB16 through inline `asm!`) on little-endian 32-bit Arm with the DSP extension
//!   and a hard-float ABI (thumbv7em-none-eabihf and friends; see `kernels::dsp`, compiled on those targets only);
//! - `neon` on little-endian aarch64 (SDOT where enabled, see `neon`);
//! - `scalar` elsewhere, and everywhere with the cargo feature `force-scalar`.
//!
//! Every kernel validates its shapes, slice lengths and parameters up front (one shared validation,
//! so every path answers a bad call with the same error) and never panics afterwards. All paths are
//! bit-exact against `scalar`; accumulation wraps modulo 2^32 (the exporter proves no overflow, and
//! wrapping keeps the paths identical even where that proof would be wrong).
//!
//! Layouts: activations HWC int8; conv and transposed-conv weights `[oc][ky][kx][ic]` int8
//! (symmetric); dense weights `[out][in]`.

pub mod dsp_scratch;
pub mod neon_scratch;
pub mod scalar;

#[cfg(edgevae_dsp)]
pub mod dsp;

#[cfg(edgevae_neon)]
pub mod neon;

pub use scalar::requantize;

/// Why a kernel refused to run. Nothing is written to the output when a kernel returns `Err`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KernelError {
    /// `out_shape` is not the shape the geometry produces from `in_shape`, or a size overflows.
    ShapeMismatch,
    /// `input`, `output` or `weights` is shorter than the shapes require.
    BufferTooSmall,
    /// `scratch` is shorter than the matching `*_scratch_size` function returns (no path returns
    /// it today: the DSP kernels adapt to the scratch they get).
    ScratchTooSmall,
    /// Stride or kernel size 0, a zero point or clamp range outside int8, a shift outside
    /// [-31, 30], or per-channel parameters shorter than the number of output channels.
    BadParams,
}

impl core::fmt::Display for KernelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KernelError::ShapeMismatch => {
                "output shape does not follow from the input and geometry"
            }
            KernelError::BufferTooSmall => "input, output or weights shorter than the shapes need",
            KernelError::ScratchTooSmall => "scratch shorter than the kernel needs",
            KernelError::BadParams => {
                "stride, kernel size, zero point, clamp or shift out of range"
            }
        })
    }
}

impl core::error::Error for KernelError {}

/// Activation shape, channels-last (H, W, C) int8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
    /// Channels, innermost in memory.
    pub c: usize,
}

impl Shape {
    /// Number of elements, `h * w * c` (saturating; validation uses the checked form).
    pub const fn len(&self) -> usize {
        self.h.saturating_mul(self.w).saturating_mul(self.c)
    }

    /// True when the shape holds no element.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn checked_len(&self) -> Option<usize> {
        self.h.checked_mul(self.w)?.checked_mul(self.c)
    }
}

/// Convolution geometry: kernel height and width, stride (≥ 1) and symmetric zero padding.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConvGeom {
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride, the same along both axes (≥ 1).
    pub stride: usize,
    /// Zero padding on every side (transposed conv: rows and columns cropped from each output edge).
    pub pad: usize,
}

/// Little-endian i32 values borrowed from unaligned bytes (the model file in flash).
#[derive(Clone, Copy, Debug)]
pub struct LeI32<'a>(pub &'a [u8]);

impl<'a> LeI32<'a> {
    /// Number of whole i32 values (trailing bytes are ignored).
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    /// True when no whole value is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`, or 0 when `i` is out of range. Never panics.
    #[inline(always)]
    pub fn get(&self, i: usize) -> i32 {
        match i
            .checked_mul(4)
            .and_then(|o| self.0.get(o..o.checked_add(4)?))
        {
            Some(&[a, b, c, d]) => i32::from_le_bytes([a, b, c, d]),
            _ => 0,
        }
    }
}

/// Per-output-channel output stage: `clamp(requantize(acc, multiplier[c], shift[c]) + output_zp,
/// act_min, act_max)`.
pub struct OutputStage<'a> {
    /// int32 bias per output channel, scale `s_in * s_w[c]`, zero point 0.
    pub bias: LeI32<'a>,
    /// Q31 multiplier per output channel, in [2^30, 2^31) or 0.
    pub multiplier: LeI32<'a>,
    /// TFLite convention: > 0 shifts left before the multiply, < 0 is a rounding right shift
    /// after it. Valid range [-31, 30].
    pub shift: &'a [i8],
    /// Output zero point, within [-128, 127].
    pub output_zp: i32,
    /// Lower clamp bound, within [-128, 127] (ReLU fused: `act_min = output_zp`).
    pub act_min: i32,
    /// Upper clamp bound, within [-128, 127] and at least `act_min`.
    pub act_max: i32,
}

impl OutputStage<'_> {
    /// Requantise one accumulator of output channel `oc` to int8.
    #[inline(always)]
    pub(crate) fn apply(&self, acc: i32, oc: usize) -> i8 {
        let shift = self.shift.get(oc).copied().unwrap_or(0) as i32;
        let q = requantize(acc, self.multiplier.get(oc), shift);
        // max/min, not clamp: the same for the validated act_min ≤ act_max, and no panic path.
        q.saturating_add(self.output_zp)
            .max(self.act_min)
            .min(self.act_max) as i8
    }

    fn validate(&self, n_out: usize) -> Result<(), KernelError> {
        let int8 = -128..=127;
        let ok = self.bias.len() >= n_out
            && self.multiplier.len() >= n_out
            && self.shift.len() >= n_out
            && int8.contains(&self.output_zp)
            && int8.contains(&self.act_min)
            && int8.contains(&self.act_max)
            && self.act_min <= self.act_max
            // A fold without early exit, so that it vectorises (it runs on every call).
            && self.shift[..n_out]
                .iter()
                .fold(true, |ok, s| ok & (-31..=30).contains(s));
        if ok {
            Ok(())
        } else {
            Err(KernelError::BadParams)
        }
    }
}

/// Output size of a convolution, `(in + 2 pad - k) / stride + 1`, or `None` when the kernel does
/// not fit the padded input.
fn conv_out_dim(input: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = input.checked_add(pad.checked_mul(2)?)?;
    Some(padded.checked_sub(k)? / stride + 1)
}

/// Output size of a transposed convolution, `(in - 1) * stride - 2 pad + k`, or `None` when it is
/// not positive.
fn conv_transpose_out_dim(input: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let full = input.checked_sub(1)?.checked_mul(stride)?.checked_add(k)?;
    full.checked_sub(pad.checked_mul(2)?).filter(|&n| n > 0)
}

/// Everything a convolution-like kernel checks before it touches memory. After `Ok`, every index
/// the kernels compute stays inside `input`, `weights` and `output`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn validate_conv(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &[i8],
    out_shape: Shape,
    transpose: bool,
) -> Result<(), KernelError> {
    if geom.kh == 0 || geom.kw == 0 || geom.stride == 0 || !(-128..=127).contains(&input_zp) {
        return Err(KernelError::BadParams);
    }
    let dims = |i, k| {
        if transpose {
            conv_transpose_out_dim(i, k, geom.stride, geom.pad)
        } else {
            conv_out_dim(i, k, geom.stride, geom.pad)
        }
    };
    if dims(in_shape.h, geom.kh) != Some(out_shape.h)
        || dims(in_shape.w, geom.kw) != Some(out_shape.w)
    {
        return Err(KernelError::ShapeMismatch);
    }
    let in_len = in_shape.checked_len().ok_or(KernelError::ShapeMismatch)?;
    let out_len = out_shape.checked_len().ok_or(KernelError::ShapeMismatch)?;
    let w_len = out_shape
        .c
        .checked_mul(geom.kh)
        .and_then(|n| n.checked_mul(geom.kw))
        .and_then(|n| n.checked_mul(in_shape.c))
        .ok_or(KernelError::ShapeMismatch)?;
    // Padding larger than the kernel is legal but pointless; it also keeps index arithmetic
    // (`o * stride + k`) far from overflow, since every product below is bounded by a slice length.
    if geom
        .pad
        .checked_mul(2)
        .and_then(|p| p.checked_add(geom.kh.max(geom.kw)))
        .is_none()
    {
        return Err(KernelError::ShapeMismatch);
    }
    if input.len() < in_len || output.len() < out_len || weights.len() < w_len {
        return Err(KernelError::BufferTooSmall);
    }
    stage.validate(out_shape.c)
}

pub(crate) fn validate_dense(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &[i8],
) -> Result<(), KernelError> {
    if !(-128..=127).contains(&input_zp) {
        return Err(KernelError::BadParams);
    }
    let w_len = n_in.checked_mul(n_out).ok_or(KernelError::ShapeMismatch)?;
    if input.len() < n_in || output.len() < n_out || weights.len() < w_len {
        return Err(KernelError::BufferTooSmall);
    }
    stage.validate(n_out)
}

// `edgevae_dsp` / `edgevae_neon`: the predicates of `build.rs`.
#[cfg(all(not(feature = "force-scalar"), edgevae_dsp))]
use dsp as fast;
#[cfg(all(not(feature = "force-scalar"), edgevae_neon))]
use neon as fast;
#[cfg(any(feature = "force-scalar", not(any(edgevae_dsp, edgevae_neon))))]
use scalar as fast;

/// True where the compiled fast path takes scratch of any length: the Cortex-M DSP kernels (they
/// run faster with more, up to the `dsp_scratch::*_scratch_size` functions) and the NEON kernels
/// (which run the reference loop for a layer whose scratch is short).
const SCRATCH_OPTIONAL: bool = cfg!(all(
    not(feature = "force-scalar"),
    any(edgevae_dsp, edgevae_neon)
));

/// Scratch bytes `conv2d` needs at least for these shapes, on the path compiled in (0 on every
/// path: the DSP kernels run with any scratch, faster with what `dsp_scratch` names).
pub fn conv2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if SCRATCH_OPTIONAL {
        return 0;
    }
    fast::conv2d_scratch_size(in_shape, out_shape, geom)
}

/// int8 2-D convolution, HWC activations, weights `[oc][ky][kx][ic]`:
/// `out[oy][ox][oc] = stage(bias[oc] + Σ w[oc][ky][kx][ic] · (in[oy*s-pad+ky][ox*s-pad+kx][ic] - input_zp))`,
/// padding taps contributing nothing. `input`/`output` may be longer than their shapes (the
/// prefix is used).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
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
    fast::conv2d(
        input, in_shape, input_zp, weights, geom, stage, output, out_shape, scratch,
    )
}

/// Scratch bytes `conv_transpose2d` needs at least for these shapes, on the path compiled in
/// (see [`conv2d_scratch_size`]).
pub fn conv_transpose2d_scratch_size(in_shape: Shape, out_shape: Shape, geom: ConvGeom) -> usize {
    if SCRATCH_OPTIONAL {
        return 0;
    }
    fast::conv_transpose2d_scratch_size(in_shape, out_shape, geom)
}

/// int8 transposed 2-D convolution with PyTorch semantics (no kernel flip), weights
/// `[oc][ky][kx][ic]`: `out[iy*s-pad+ky][ix*s-pad+kx][oc]` accumulates `w · (in[iy][ix] - input_zp)`.
/// Output size `(in-1)*s - 2 pad + k`. Computed as s² phase convolutions with sub-kernels.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
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
    fast::conv_transpose2d(
        input, in_shape, input_zp, weights, geom, stage, output, out_shape, scratch,
    )
}

/// Scratch bytes `dense` needs at least, on the path compiled in (see [`conv2d_scratch_size`]).
pub fn dense_scratch_size(n_in: usize, n_out: usize) -> usize {
    if SCRATCH_OPTIONAL {
        return 0;
    }
    fast::dense_scratch_size(n_in, n_out)
}

/// int8 fully connected layer, weights `[out][in]`:
/// `out[o] = stage(bias[o] + Σ w[o][i] · (in[i] - input_zp))`.
#[allow(clippy::too_many_arguments)]
pub fn dense(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    fast::dense(
        input, input_zp, weights, n_in, n_out, stage, output, scratch,
    )
}

/// The DSP path's pre-laid kernel `$dsp` (the block passed after `$before`) where it is compiled
/// in; elsewhere the fast path's `$fast` on the canonical weights, the block unused.
macro_rules! prelaid_call {
    ($dsp:ident, $fast:ident, $block:ident; $($before:expr),*; $($after:expr),*) => {{
        #[cfg(all(not(feature = "force-scalar"), edgevae_dsp))]
        return dsp::$dsp($($before,)* $block, $($after),*);
        #[allow(unreachable_code)]
        {
            let _ = $block;
            fast::$fast($($before,)* $($after),*)
        }
    }};
}

/// [`conv2d`] with the layer's pre-laid block from the model file (`Model::dsp_block`, see
/// `edgevae_shared::layout::gemm_words`; empty when it has none). The Cortex-M DSP path's GEMM
/// reads a word-aligned block's int16 weights as they are instead of widening them per chunk;
/// every other path, and any block that does not fit the call, reads the canonical `weights`.
/// The result is the same on every path.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_prelaid(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    prelaid: &[u8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    prelaid_call!(
        conv2d_prelaid, conv2d, prelaid;
        input, in_shape, input_zp, weights; geom, stage, output, out_shape, scratch
    )
}

/// [`conv_transpose2d`] with the layer's pre-laid block (one part per output phase), as
/// [`conv2d_prelaid`].
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_prelaid(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    prelaid: &[u8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    prelaid_call!(
        conv_transpose2d_prelaid, conv_transpose2d, prelaid;
        input, in_shape, input_zp, weights; geom, stage, output, out_shape, scratch
    )
}

/// [`dense`] with the layer's pre-laid block from the model file (`Model::dsp_block`, see
/// `edgevae_shared::layout`; empty when it has none). The Cortex-M DSP path runs a dense layer
/// with 16 inputs from a word-aligned block (int16 weights in its loop's order, no widening);
/// every other path, and any block that does not fit the call, runs [`dense`] on the canonical
/// `weights`. The result is the same on every path: a block the parser accepted is derived from
/// those weights and parameters.
#[allow(clippy::too_many_arguments)]
pub fn dense_prelaid(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    prelaid: &[u8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    prelaid_call!(
        dense_prelaid, dense, prelaid;
        input, input_zp, weights; n_in, n_out, stage, output, scratch
    )
}

pub use scalar::{apply_lut, quantize_pixels};
