//! Fixed-point int8 kernels: a portable reference (`scalar`) and fast paths behind one interface.
//!
//! The top-level functions dispatch at compile time (the cfgs `edgevae_dsp` and `edgevae_neon`,
//! decided once in the crate's `build.rs`):
//! - `dsp` (SMLAD/SXTB16 through inline `asm!`) on little-endian 32-bit Arm with the DSP extension
//!   and a hard-float ABI (thumbv7em-none-eabihf and friends; see `kernels::dsp`, compiled on those targets only);
//! - `neon` on little-endian aarch64 (SDOT where enabled, see `neon`);
//! - `scalar` elsewhere, and everywhere with the cargo feature `force-scalar`.
//!
//! The front door: every entry point takes the call's shapes, geometry and zero point as one
//! [`ConvParams`] or [`DenseParams`], its data as slices beside the [`OutputStage`], and scratch as
//! one [`Scratch`] handle. It validates the call once ([`ConvParams::check`] and friends) and
//! hands the path compiled in a [`Checked`] call, which only validation constructs: the scalar,
//! DSP and NEON paths all take that one type and check nothing again. Nothing panics afterwards. All paths are
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

/// Shapes, geometry and input zero point of a convolution or transposed convolution: everything
/// about the call but its data.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConvParams {
    /// Input activation shape (HWC).
    pub in_shape: Shape,
    /// Output activation shape (HWC); must be the one `geom` produces from `in_shape`.
    pub out_shape: Shape,
    /// Kernel size, stride and padding.
    pub geom: ConvGeom,
    /// Input zero point, within [-128, 127].
    pub input_zp: i32,
}

/// Sizes and input zero point of a fully connected layer.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DenseParams {
    /// Inputs.
    pub n_in: usize,
    /// Outputs.
    pub n_out: usize,
    /// Input zero point, within [-128, 127].
    pub input_zp: i32,
}

/// Plain (`false`) or transposed (`true`) convolution, as the type of a [`Checked`] call.
#[derive(Clone, Copy, Debug)]
pub struct Conv<const TRANSPOSED: bool>(pub ConvParams);

/// A kernel call whose parameters and slices passed the front door's validation: every index
/// the paths compute from it stays inside `input`, `weights` and `output`. Only the
/// constructors ([`ConvParams::check`], [`ConvParams::check_transposed`], [`DenseParams::check`])
/// make one, so a path that receives it need not check again.
pub struct Checked<'a, P> {
    pub(crate) p: P,
    pub(crate) input: &'a [i8],
    pub(crate) weights: &'a [i8],
    pub(crate) stage: &'a OutputStage<'a>,
    pub(crate) output: &'a mut [i8],
}

/// A validated 2-D convolution call.
pub type ConvCall<'a> = Checked<'a, Conv<false>>;
/// A validated transposed 2-D convolution call.
pub type ConvTCall<'a> = Checked<'a, Conv<true>>;
/// A validated fully connected call.
pub type DenseCall<'a> = Checked<'a, DenseParams>;

/// A checked call taken apart: parameters, input, weights, output stage, output.
pub(crate) type Parts<'a, P> = (P, &'a [i8], &'a [i8], &'a OutputStage<'a>, &'a mut [i8]);

impl<'a, P: Copy> Checked<'a, P> {
    /// The validated parameters.
    pub fn params(&self) -> P {
        self.p
    }

    /// The call taken apart, to run it.
    #[inline(always)]
    pub(crate) fn into_parts(self) -> Parts<'a, P> {
        (self.p, self.input, self.weights, self.stage, self.output)
    }

    /// Puts a checked call back together from the parts a path took out of one (for a path that
    /// hands the call on to another after all). Only for the very parts of a [`Checked`] call.
    #[allow(dead_code)]
    #[inline(always)]
    pub(crate) fn reassemble(
        p: P,
        input: &'a [i8],
        weights: &'a [i8],
        stage: &'a OutputStage<'a>,
        output: &'a mut [i8],
    ) -> Self {
        Checked {
            p,
            input,
            weights,
            stage,
            output,
        }
    }
}

impl ConvParams {
    /// `(in_shape, out_shape, geom, input_zp)`.
    #[inline(always)]
    pub fn parts(&self) -> (Shape, Shape, ConvGeom, i32) {
        (self.in_shape, self.out_shape, self.geom, self.input_zp)
    }

    /// Validates a [`conv2d`] call: stride and kernel ≥ 1, int8 zero points and clamps, shifts in
    /// [-31, 30], `out_shape` the one the geometry gives, and slices long enough.
    #[inline]
    pub fn check<'a>(
        &self,
        input: &'a [i8],
        weights: &'a [i8],
        stage: &'a OutputStage<'a>,
        output: &'a mut [i8],
    ) -> Result<ConvCall<'a>, KernelError> {
        self.checked(input, weights, stage, output)
    }

    /// Validates a [`conv_transpose2d`] call (as [`check`](Self::check), with the transposed
    /// output size).
    #[inline]
    pub fn check_transposed<'a>(
        &self,
        input: &'a [i8],
        weights: &'a [i8],
        stage: &'a OutputStage<'a>,
        output: &'a mut [i8],
    ) -> Result<ConvTCall<'a>, KernelError> {
        self.checked(input, weights, stage, output)
    }

    #[inline(always)]
    fn checked<'a, const TRANSPOSED: bool>(
        &self,
        input: &'a [i8],
        weights: &'a [i8],
        stage: &'a OutputStage<'a>,
        output: &'a mut [i8],
    ) -> Result<Checked<'a, Conv<TRANSPOSED>>, KernelError> {
        validate_conv(self, input, weights, stage, output, TRANSPOSED)?;
        Ok(Checked {
            p: Conv(*self),
            input,
            weights,
            stage,
            output,
        })
    }
}

impl DenseParams {
    /// `(n_in, n_out, input_zp)`.
    #[inline(always)]
    pub fn parts(&self) -> (usize, usize, i32) {
        (self.n_in, self.n_out, self.input_zp)
    }

    /// Validates a [`dense`] call: int8 zero points and clamps, shifts in [-31, 30], slices long
    /// enough.
    #[inline]
    pub fn check<'a>(
        &self,
        input: &'a [i8],
        weights: &'a [i8],
        stage: &'a OutputStage<'a>,
        output: &'a mut [i8],
    ) -> Result<DenseCall<'a>, KernelError> {
        validate_dense(self, input, weights, stage, output)?;
        Ok(Checked {
            p: *self,
            input,
            weights,
            stage,
            output,
        })
    }
}

/// Scratch memory lent to a kernel: bytes of any alignment, of which the paths that want words
/// use the aligned middle.
pub struct Scratch<'a>(&'a mut [u8]);

impl<'a> Scratch<'a> {
    /// Lends `bytes` as scratch.
    #[inline(always)]
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Scratch(bytes)
    }

    /// No scratch (the reference kernels, or a fast path's no-scratch kernels).
    #[inline(always)]
    pub fn none() -> Scratch<'static> {
        Scratch(&mut [])
    }

    /// Bytes lent.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no byte is lent.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when at least `need` bytes are lent (a fast path's "enough for this plan").
    #[inline(always)]
    pub fn fits(&self, need: usize) -> bool {
        self.0.len() >= need
    }

    /// The bytes, for the rest of the call.
    #[inline(always)]
    pub fn into_bytes(self) -> &'a mut [u8] {
        self.0
    }

    /// Words from the aligned middle of the bytes (what the DSP kernels lay int16 pairs in).
    #[inline(always)]
    pub fn into_words(self) -> &'a mut [u32] {
        // SAFETY: every bit pattern is a valid u32; `align_to_mut` only returns an aligned,
        // in-bounds middle.
        unsafe { self.0.align_to_mut::<u32>().1 }
    }
}

/// Everything a convolution-like kernel checks before it touches memory. After `Ok`, every index
/// the kernels compute stays inside `input`, `weights` and `output`.
fn validate_conv(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    stage: &OutputStage,
    output: &[i8],
    transpose: bool,
) -> Result<(), KernelError> {
    let ConvParams {
        in_shape,
        out_shape,
        geom,
        input_zp,
    } = *p;
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

fn validate_dense(
    p: &DenseParams,
    input: &[i8],
    weights: &[i8],
    stage: &OutputStage,
    output: &[i8],
) -> Result<(), KernelError> {
    let DenseParams {
        n_in,
        n_out,
        input_zp,
    } = *p;
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
// `fast`: the path compiled in, with the paths' signatures (checked calls).
#[cfg(all(not(feature = "force-scalar"), edgevae_dsp))]
pub(crate) use dsp as fast;
#[cfg(all(not(feature = "force-scalar"), edgevae_neon))]
pub(crate) use neon as fast;
#[cfg(any(feature = "force-scalar", not(any(edgevae_dsp, edgevae_neon))))]
pub(crate) use scalar as fast;

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
///
/// The one validation of the call ([`ConvParams::check`]) happens here; the path compiled in gets
/// the checked call.
#[inline]
pub fn conv2d(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    stage: &OutputStage,
    output: &mut [i8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    fast::conv2d(p.check(input, weights, stage, output)?, scratch)
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
#[inline]
pub fn conv_transpose2d(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    stage: &OutputStage,
    output: &mut [i8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    fast::conv_transpose2d(p.check_transposed(input, weights, stage, output)?, scratch)
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
#[inline]
pub fn dense(
    p: &DenseParams,
    input: &[i8],
    weights: &[i8],
    stage: &OutputStage,
    output: &mut [i8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    fast::dense(p.check(input, weights, stage, output)?, scratch)
}

/// The DSP path's pre-laid kernel `$dsp` (with the block) where it is compiled in; elsewhere the
/// fast path's `$fast` on the canonical weights, the block unused.
macro_rules! prelaid_call {
    ($dsp:ident, $fast:ident, $call:expr, $block:ident, $scratch:ident) => {{
        let call = $call;
        #[cfg(all(not(feature = "force-scalar"), edgevae_dsp))]
        return dsp::$dsp(call, $block, $scratch);
        #[allow(unreachable_code)]
        {
            let _ = $block;
            fast::$fast(call, $scratch)
        }
    }};
}

/// [`conv2d`] with the layer's pre-laid block from the model file (`Model::dsp_block`, see
/// `edgevae_shared::layout::gemm_words`; empty when it has none). The Cortex-M DSP path's GEMM
/// reads a word-aligned block's int16 weights as they are instead of widening them per chunk;
/// every other path, and any block that does not fit the call, reads the canonical `weights`.
/// The result is the same on every path.
#[inline]
pub fn conv2d_prelaid(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    prelaid: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    prelaid_call!(
        conv2d_prelaid,
        conv2d,
        p.check(input, weights, stage, output)?,
        prelaid,
        scratch
    )
}

/// [`conv_transpose2d`] with the layer's pre-laid block (one part per output phase), as
/// [`conv2d_prelaid`].
#[inline]
pub fn conv_transpose2d_prelaid(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    prelaid: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    prelaid_call!(
        conv_transpose2d_prelaid,
        conv_transpose2d,
        p.check_transposed(input, weights, stage, output)?,
        prelaid,
        scratch
    )
}

/// [`dense`] with the layer's pre-laid block from the model file (`Model::dsp_block`, see
/// `edgevae_shared::layout`; empty when it has none). The Cortex-M DSP path runs a dense layer
/// with 16 inputs from a word-aligned block (int16 weights in its loop's order, no widening);
/// every other path, and any block that does not fit the call, runs [`dense`] on the canonical
/// `weights`. The result is the same on every path: a block the parser accepted is derived from
/// those weights and parameters.
#[inline]
pub fn dense_prelaid(
    p: &DenseParams,
    input: &[i8],
    weights: &[i8],
    prelaid: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    // The DSP kernel checks a call with a block itself (a full check costs it ≈ 0.25
    // instructions/MAC); it sends any other call through `dense`'s full check.
    #[cfg(all(not(feature = "force-scalar"), edgevae_dsp))]
    return dsp::dense_prelaid(p, input, weights, prelaid, stage, output, scratch);
    #[allow(unreachable_code)]
    {
        let _ = prelaid;
        dense(p, input, weights, stage, output, scratch)
    }
}

pub use scalar::{apply_lut, quantize_pixels};
