//! The stripe engine: a whole frame through a fully convolutional model (format version 3)
//! holding only a few rows per layer, each latent row entropy-coded the moment it exists.
//!
//! [`crate::frame::encode_frame`] is the definition: the host pads a frame to a multiple of the
//! total stride S by replicating its last row and column, encodes the whole padded frame, and
//! codes the latent map with one [`Encoder`], positions in raster order, channels innermost.
//! [`compress`] produces the same latent bytes and the same bitstream, byte for byte, for every
//! frame size, reading the frame one row at a time from a [`RowSource`] (each row once, in
//! order) and working in one caller-provided arena of [`required_arena`] bytes, a function of
//! the model and the frame width only (no heap, no panics, no floating point).
//!
//! # How the windows work
//!
//! Encoder layer `i` (a `kh × kw` convolution, stride `s`, padding `p`, input `W × C`) keeps a
//! window of `kh` input rows. Window row `j` holds input row `oy·s − p + j` for the next output
//! row `oy`, stored as `W + 2p` columns: `p` columns of the layer's input zero point on either
//! side around the `W × C` data, and rows above the top or below the bottom of the feature map
//! are zero-point rows. The window is then exactly the input of one ordinary convolution with
//! no padding (`kh` rows × `W + 2p` columns → 1 row × `W/s` columns), which the engine runs with
//! the unchanged kernels (`K::conv2d` through [`ConvParams::check`], or the pre-laid DSP variant
//! for [`Fast`](crate::engine::Fast), as the engine does), requantised by the layer's
//! [`output_stage`] and followed by its lookup table if it has one. The output row is written
//! straight into the next layer's window (into the latent row after the last layer), and the
//! window moves on by `s` rows with one `copy_within`, which keeps the `kh − s` rows the next
//! output row shares with this one (none when `kh ≤ s`; input rows no output reads are then
//! not computed at all, which changes no byte of the result).
//!
//! Rows flow depth first: a source row enters layer 0; whenever a window is full its output
//! row is computed and handed to the next layer, which is run in turn as soon as its own window
//! is full. Each window therefore never holds more than `kh` rows. After the last source row,
//! each layer in order is fed zero-point rows until it has produced all its output rows (the
//! bottom padding).
//!
//! The frame: `rows × cols` uint8 pixels, HWC, `1 ≤ cols ≤ max_width` (the model's
//! [`Frame::max_width`](edgevae_shared::format::Frame)) and any `rows ≥ 1`. The engine pads it
//! as the host does: each row's last pixel repeated up to the padded width `ceil(cols/S)·S`
//! (which is at most `max_width`, a multiple of S, so the true width is the one checked), and
//! the last row repeated up to `ceil(rows/S)·S` rows from a row buffer, so the source never
//! delivers a row twice. Pixels become int8 `p − 128` with [`kernels::quantize_pixels`].
//!
//! # Why it is bit-exact
//!
//! Every output value is the same sum as in the whole-frame run: the same weights, bias and
//! taps, each tap reading the same input value, and a tap outside the feature map reading the
//! layer's input zero point, whose product with any weight is `w · (zp − zp) = 0`, exactly what
//! the whole-frame kernel's skipped padding tap adds. Accumulation wraps modulo 2³² on every
//! path, so the order of the terms cannot matter, and the requantisation ([`output_stage`]) and
//! lookup table are the same per-value functions. The latent rows arrive in raster order, and
//! are coded position by position with [`EntropyLevel::encode_into`] (through its
//! [`LatentCoder`](edgevae_shared::entropy::LatentCoder), the per-channel constants computed
//! once a frame) into one stream, as the host codes its latent map: the same symbols in the
//! same order give the same bytes.
//!
//! # Memory
//!
//! One arena of bytes, split by the engine (all its parts are bytes, so any alignment does;
//! the kernels align their own scratch inside what they get), with `Wp = ceil(width/S)·S`,
//! `C` the frame's channels, and per encoder layer `i` its input width `Wᵢ` (`W₀ = Wp`), input
//! channels `Cᵢ`, kernel `khᵢ × kwᵢ`, padding `pᵢ`, and the latent `W/S × M`:
//!
//! ```text
//! [pixel row  Wp·C]  the source row, its last pixel replicated (kept for the replicated rows)
//! [window 0   kh₀·(W₀ + 2p₀)·C₀]
//! …
//! [window n−1]
//! [latent row (Wp/S)·M]
//! [scratch    max over layers of K::conv2d_scratch_size(kh × (Wᵢ+2pᵢ) × Cᵢ → 1 × Wᵢ₊₁ × Cᵢ₊₁)]
//! ```
//!
//! [`required_arena`] is that sum; a larger arena is accepted and the extra bytes go to the
//! kernels' scratch (the Cortex-M DSP kernels take scratch of any length and run faster with
//! more, up to [`kernels::dsp_scratch::conv2d_scratch_size`]; [`required_arena_with`] sizes the
//! arena for such a scratch function). The sizes grow with the width, so an arena of
//! `required_arena(model, max_width)` serves every frame the model takes; a board can size a
//! static from it in its build script, as it does for the engine's arena.
//!
//! For the photo structure (`FrameSpec::photo(c, _)`: 5×5/2 to 24 channels (16 for RGB), then
//! 3×3/2 to 32, 48 and the 64-channel latent; S = 16), grey at 320 pixels wide: windows of
//! 1,620 + 11,664 + 7,872 + 6,048 bytes, 320 for the pixel row, 1,280 for the latent row. In
//! bytes (`required_arena` with each set's scratch function):
//!
//! | frame        | scalar (the minimum of every set) | DSP, fastest scratch | NEON scratch |
//! |--------------|----------------------------------:|---------------------:|-------------:|
//! | grey, 320    |                 28,804 (28.1 KiB) |               44,360 |       40,148 |
//! | grey, 640    |                 56,964 (55.6 KiB) |               72,520 |       68,308 |
//! | RGB, 320     |                 28,796 (28.1 KiB) |               44,352 |       33,980 |
//! | RGB, 640     |                 56,956 (55.6 KiB) |               72,512 |       62,140 |
//!
//! `Fast` needs the scalar minimum on every build (the DSP and NEON kernels take scratch of any
//! length: with none, the DSP path runs its zero-scratch kernels and NEON the reference loop),
//! so a 32 KiB arena at 320 pixels (64 KiB at 640) leaves the DSP kernels about 4 KiB (8 KiB)
//! of scratch to plan from. `firmware/tests/stripe.rs` prints the table (`--nocapture`) and
//! checks the scalar column against the formula.
//!
//! **Invariant:** nothing here allocates or panics: every index is checked, a frame or arena
//! the model cannot take, a failing row source and a full output are [`StripeError`]s.

use core::fmt;

use edgevae_shared::entropy::{CodingError, Encoder};
use edgevae_shared::format::{Activation, EntropyLevel, Model, Op, Section, MAX_LAYERS};

use crate::engine::{output_stage, KernelErrorCode, KernelSet};
use crate::kernels::{self, ConvGeom, ConvParams, KernelError, Scratch, Shape};

/// Delivers a frame one row at a time: uint8 pixels, HWC, `cols × C` bytes a row.
///
/// The stripe engine asks for rows `0, 1, …, rows − 1` in order, each exactly once.
pub trait RowSource {
    /// Why a row could not be read (a sensor or bus error, a short buffer).
    type Error;
    /// Writes row `row` (`out.len() == cols × C` bytes) into `out`.
    fn read_row(&mut self, row: usize, out: &mut [u8]) -> Result<(), Self::Error>;
}

/// A [`RowSource`] over a whole frame in memory (`rows × cols × C` bytes, HWC).
#[derive(Clone, Copy, Debug)]
pub struct SliceRows<'a> {
    pixels: &'a [u8],
    row_len: usize,
}

impl<'a> SliceRows<'a> {
    /// The rows of `pixels`, `cols × channels` bytes each.
    pub fn new(pixels: &'a [u8], cols: usize, channels: usize) -> Self {
        SliceRows {
            pixels,
            row_len: cols.saturating_mul(channels),
        }
    }
}

/// [`SliceRows`] was asked for a row its slice does not hold (or into a buffer of another
/// length than a row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RowOutOfRange {
    /// The row asked for.
    pub row: usize,
}

impl fmt::Display for RowOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} is not in the frame", self.row)
    }
}

impl core::error::Error for RowOutOfRange {}

impl RowSource for SliceRows<'_> {
    type Error = RowOutOfRange;

    fn read_row(&mut self, row: usize, out: &mut [u8]) -> Result<(), RowOutOfRange> {
        let err = RowOutOfRange { row };
        if out.len() != self.row_len {
            return Err(err);
        }
        let start = row.checked_mul(self.row_len).ok_or(err)?;
        let end = start.checked_add(self.row_len).ok_or(err)?;
        out.copy_from_slice(self.pixels.get(start..end).ok_or(err)?);
        Ok(())
    }
}

/// Why the stripe engine refused or stopped. `E` is the row source's error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StripeError<E> {
    /// The model is not fully convolutional (no frame section, or an encoder layer the stripe
    /// engine cannot run: anything but a convolution whose rows and columns map exactly).
    NotFullyConvolutional,
    /// The model's input is not uint8 pixels fed as `p − 128` (zero point −128).
    UnsupportedInput,
    /// A frame with no rows or no columns (or sizes past the address space).
    FrameSize {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
    /// A frame wider than the model's row buffers are declared for.
    TooWide {
        /// Columns asked for.
        cols: usize,
        /// The model's [`Frame::max_width`](edgevae_shared::format::Frame).
        max_width: u16,
    },
    /// The arena passed in is smaller than [`required_arena`] for this width.
    ArenaTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes passed in.
        provided: usize,
    },
    /// The row source failed.
    Source {
        /// The row it was asked for.
        row: usize,
        /// Its error.
        error: E,
    },
    /// The model has no entropy section, or not this quality level.
    NoSuchLevel {
        /// The quality level asked for.
        level: u8,
    },
    /// The entropy coder failed ([`CodingError::OutputFull`]: the output slice is too small).
    Coding(CodingError),
    /// A kernel refused its arguments (cannot happen for a validated model; reported, not
    /// panicked), or the engine's own bookkeeping disagreed with the model.
    Kernel {
        /// Index of the encoder layer.
        index: u8,
        /// What went wrong.
        error: KernelErrorCode,
    },
}

impl<E: fmt::Display> fmt::Display for StripeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StripeError::NotFullyConvolutional => {
                write!(f, "the model is not fully convolutional")
            }
            StripeError::UnsupportedInput => write!(f, "model input is not uint8 pixels (zp -128)"),
            StripeError::FrameSize { rows, cols } => {
                write!(f, "a {cols}x{rows} frame has no pixels")
            }
            StripeError::TooWide { cols, max_width } => write!(
                f,
                "a frame {cols} pixels wide, the model takes at most {max_width}"
            ),
            StripeError::ArenaTooSmall { needed, provided } => write!(
                f,
                "stripe arena of {provided} bytes, this width needs {needed}"
            ),
            StripeError::Source { row, error } => write!(f, "reading row {row}: {error}"),
            StripeError::NoSuchLevel { level } => {
                write!(f, "the model has no entropy-coding quality level {level}")
            }
            StripeError::Coding(e) => write!(f, "entropy coding: {e}"),
            StripeError::Kernel { index, error } => write!(
                f,
                "encoder layer {index}: kernel refused its arguments ({error:?})"
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for StripeError<E> {}

fn kernel_err<E>(index: usize, error: KernelError) -> StripeError<E> {
    StripeError::Kernel {
        index: u8::try_from(index).unwrap_or(u8::MAX),
        error: error.into(),
    }
}

/// The engine's bookkeeping disagreed with itself (never expected; reported, not panicked).
fn internal<E>(index: usize) -> StripeError<E> {
    kernel_err(index, KernelError::BufferTooSmall)
}

/// One encoder layer at the frame's width.
#[derive(Clone, Copy, Debug, Default)]
struct LayerPlan {
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    in_w: usize,
    in_c: usize,
    out_w: usize,
    out_c: usize,
    /// The layer's input zero point: borders and padding rows.
    zp: i8,
    /// Bytes of one window row, `(in_w + 2 pad) · in_c`.
    row: usize,
    /// Offset of the window in the arena.
    at: usize,
    /// Bytes of the window, `kh · row`.
    len: usize,
}

impl LayerPlan {
    /// The one-output-row convolution that runs on the window.
    fn params(&self) -> ConvParams {
        ConvParams {
            in_shape: Shape {
                h: self.kh,
                w: self.in_w + 2 * self.pad, // within `row`, checked by `plan`
                c: self.in_c,
            },
            out_shape: Shape {
                h: 1,
                w: self.out_w,
                c: self.out_c,
            },
            geom: ConvGeom {
                kh: self.kh,
                kw: self.kw,
                stride: self.stride,
                pad: 0,
            },
            input_zp: self.zp as i32,
        }
    }

    /// Offset of the data (past the left border) of window row `j`.
    fn data_at(&self, j: usize) -> Option<usize> {
        self.at
            .checked_add(j.checked_mul(self.row)?)?
            .checked_add(self.pad.checked_mul(self.in_c)?)
    }
}

/// The arena layout for one frame width.
#[derive(Clone, Copy, Debug)]
struct Plan {
    layers: [LayerPlan; MAX_LAYERS],
    n: usize,
    /// Frame channels.
    channels: usize,
    /// Padded width `ceil(cols / S) · S`.
    padded_cols: usize,
    /// Total stride S.
    stride: usize,
    latent_at: usize,
    latent_len: usize,
    scratch_at: usize,
    /// Bytes the arena needs.
    total: usize,
}

/// The layout for a frame `cols` wide (`rows` only names the frame in errors), with
/// `conv_scratch` the kernels' scratch size function.
fn plan<E>(
    model: &Model<'_>,
    rows: usize,
    cols: usize,
    conv_scratch: impl Fn(Shape, Shape, ConvGeom) -> usize,
) -> Result<Plan, StripeError<E>> {
    let nfc = || StripeError::NotFullyConvolutional;
    let frame = model.frame().ok_or_else(nfc)?;
    let h = model.header();
    if h.input_q.zero_point != -128 {
        return Err(StripeError::UnsupportedInput);
    }
    if rows == 0 || cols == 0 {
        return Err(StripeError::FrameSize { rows, cols });
    }
    if cols > frame.max_width as usize {
        return Err(StripeError::TooWide {
            cols,
            max_width: frame.max_width,
        });
    }
    let s = frame.total_stride as usize;
    if s == 0 {
        return Err(nfc());
    }
    let size = || StripeError::FrameSize { rows, cols };
    let padded_cols = cols.div_ceil(s).checked_mul(s).ok_or_else(size)?;
    let channels = h.input.c as usize;
    if channels == 0 {
        return Err(nfc());
    }
    let encoder = model.encoder();
    if encoder.is_empty() || encoder.len() > MAX_LAYERS {
        return Err(nfc());
    }
    let mut layers = [LayerPlan::default(); MAX_LAYERS];
    let mut at = padded_cols.checked_mul(channels).ok_or_else(size)?;
    let (mut w, mut c) = (padded_cols, channels);
    let mut scratch = 0usize;
    let mut strides = 1usize;
    for (l, slot) in encoder.iter().zip(layers.iter_mut()) {
        let Op::Conv2d {
            kh,
            kw,
            stride,
            pad,
        } = l.op
        else {
            return Err(nfc());
        };
        let (kh, kw, st, pad) = (kh as usize, kw as usize, stride as usize, pad as usize);
        // Rows map exactly (n·s input rows give n output rows, whatever n) iff
        // kh − s ≤ 2p < kh; the columns are checked on the row call below.
        let exact = st > 0 && kw > 0 && 2 * pad < kh && kh <= 2 * pad + st;
        if !exact || l.input.c as usize != c || !w.is_multiple_of(st) {
            return Err(nfc());
        }
        let table_ok = match l.activation {
            Activation::Lut { table, .. } => table.len() == 256,
            _ => true,
        };
        if !table_ok {
            return Err(nfc());
        }
        let out_w = w / st;
        let padded_w = w.checked_add(2 * pad).ok_or_else(size)?;
        if padded_w < kw || (padded_w - kw) / st + 1 != out_w {
            return Err(nfc());
        }
        let row = padded_w.checked_mul(c).ok_or_else(size)?;
        let len = row.checked_mul(kh).ok_or_else(size)?;
        let out_c = l.output.c as usize;
        *slot = LayerPlan {
            kh,
            kw,
            stride: st,
            pad,
            in_w: w,
            in_c: c,
            out_w,
            out_c,
            zp: l.input_q.zero_point,
            row,
            at,
            len,
        };
        let p = slot.params();
        scratch = scratch.max(conv_scratch(p.in_shape, p.out_shape, p.geom));
        at = at.checked_add(len).ok_or_else(size)?;
        strides = strides.checked_mul(st).ok_or_else(nfc)?;
        (w, c) = (out_w, out_c);
    }
    if c != h.latent as usize || strides != s {
        return Err(nfc());
    }
    let latent_len = w.checked_mul(c).ok_or_else(size)?;
    let latent_at = at;
    let scratch_at = at.checked_add(latent_len).ok_or_else(size)?;
    let total = scratch_at.checked_add(scratch).ok_or_else(size)?;
    Ok(Plan {
        layers,
        n: encoder.len(),
        channels,
        padded_cols,
        stride: s,
        latent_at,
        latent_len,
        scratch_at,
        total,
    })
}

/// Arena bytes the stripe engine needs with kernel set `K` for frames `width` pixels wide (the
/// true width; any width up to the model's `max_width` pads to a multiple of the total stride
/// within it). `None` for a model that is not fully convolutional or a width it cannot take.
/// A pure function of the model and the width; see the [module docs](self) for the formula.
pub fn required_arena<K: KernelSet>(model: &Model<'_>, width: usize) -> Option<usize> {
    required_arena_with(model, width, K::conv2d_scratch_size)
}

/// Nominal multiply-accumulates of the encoder on a `rows × cols` frame (padded to the total
/// stride as the engine pads it; full kernels, padding taps included): what instruction counts
/// per MAC divide by. `None` for a model that is not fully convolutional or a size it cannot
/// take.
pub fn encoder_macs(model: &Model<'_>, rows: usize, cols: usize) -> Option<u64> {
    let s = usize::from(model.frame()?.total_stride.max(1));
    let pad = |n: usize| u16::try_from(n.div_ceil(s).checked_mul(s)?).ok();
    let (mut r, mut c) = (pad(rows)?, pad(cols)?);
    let mut macs = 0u64;
    for l in model.encoder() {
        let l = l.at_frame(r, c)?;
        macs = macs.checked_add(l.macs())?;
        (r, c) = (l.output.h, l.output.w);
    }
    Some(macs)
}

/// [`required_arena`] with the kernels' scratch given by `conv_scratch` (for example
/// [`kernels::dsp_scratch::conv2d_scratch_size`], what the Cortex-M DSP kernels run fastest
/// with, or [`kernels::neon_scratch::conv2d_scratch_size`]; computable on every target).
pub fn required_arena_with(
    model: &Model<'_>,
    width: usize,
    conv_scratch: impl Fn(Shape, Shape, ConvGeom) -> usize,
) -> Option<usize> {
    plan::<core::convert::Infallible>(model, 1, width, conv_scratch)
        .ok()
        .map(|p| p.total)
}

/// Where each layer's window stands.
#[derive(Clone, Copy, Debug, Default)]
struct Rows {
    /// Next output row to compute.
    oy: usize,
    /// Output rows in all.
    out_h: usize,
    /// Index of the next input row to arrive.
    next: usize,
    /// Window rows holding their input row.
    filled: usize,
}

/// Accounts for the next input row of a layer: the window row to store it in, or `None` when
/// no output row still to come reads it (it need not be computed).
fn take_slot(lp: &LayerPlan, st: &mut Rows) -> Option<Option<usize>> {
    let r = st.next;
    st.next = r.checked_add(1)?;
    if st.oy >= st.out_h {
        return Some(None);
    }
    // Window row j holds input row oy·s − p + j.
    let first = st.oy.checked_mul(lp.stride)?;
    let Some(j) = r.checked_add(lp.pad)?.checked_sub(first) else {
        return Some(None);
    };
    if j != st.filled || j >= lp.kh {
        return None; // rows arrive in order: never happens
    }
    st.filled = j + 1;
    Some(Some(j))
}

/// One frame's run: the model, its layout, the arena and the windows' state.
struct Run<'r, 'm, K> {
    model: &'r Model<'m>,
    plan: Plan,
    arena: &'r mut [u8],
    rows: [Rows; MAX_LAYERS],
    _kernels: core::marker::PhantomData<K>,
}

impl<K: KernelSet> Run<'_, '_, K> {
    fn layer(&self, i: usize) -> Result<LayerPlan, ()> {
        self.plan.layers.get(i).copied().ok_or(())
    }

    fn ready(&self, i: usize) -> bool {
        match (self.plan.layers.get(i), self.rows.get(i)) {
            (Some(lp), Some(st)) => st.filled == lp.kh && st.oy < st.out_h,
            _ => false,
        }
    }

    /// Runs layer `i`'s convolution on its window into `len` bytes at `dest` (after the
    /// window, before the scratch), then its lookup table.
    fn compute<E>(&mut self, i: usize, dest: usize, len: usize) -> Result<(), StripeError<E>> {
        let bad = || internal(i);
        let lp = self.layer(i).map_err(|_| bad())?;
        let layer = self.model.encoder().get(i).ok_or_else(bad)?;
        let end = lp.at.checked_add(lp.len).ok_or_else(bad)?;
        let (head, tail) = self.arena.split_at_mut_checked(end).ok_or_else(bad)?;
        let input: &[i8] = bytemuck::cast_slice(head.get(lp.at..).ok_or_else(bad)?);
        let mid_len = self.plan.scratch_at.checked_sub(end).ok_or_else(bad)?;
        let (mid, scratch) = tail.split_at_mut_checked(mid_len).ok_or_else(bad)?;
        let rel = dest.checked_sub(end).ok_or_else(bad)?;
        let output = mid
            .get_mut(rel..rel.checked_add(len).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let output: &mut [i8] = bytemuck::cast_slice_mut(output);
        let stage = output_stage(layer);
        let w = layer.weights_i8();
        let p = lp.params();
        let scratch = Scratch::new(scratch);
        let block = self
            .model
            .dsp_block(Section::Encoder, i)
            .filter(|_| K::PRELAID);
        match block {
            Some(b) => kernels::conv2d_prelaid(&p, input, w, b, &stage, output, scratch),
            None => p
                .check(input, w, &stage, output)
                .and_then(|c| K::conv2d(c, scratch)),
        }
        .map_err(|e| kernel_err(i, e))?;
        if let Activation::Lut { table, .. } = layer.activation {
            let table: &[u8; 256] = table.try_into().map_err(|_| bad())?;
            kernels::apply_lut(output, table);
        }
        Ok(())
    }

    /// Layer `i`'s next output row (its window is full): into the next layer's window, or the
    /// latent row (handed to `emit`), then the window moves on by the stride.
    fn step<E, F>(&mut self, i: usize, emit: &mut F) -> Result<(), StripeError<E>>
    where
        F: FnMut(usize, &[i8]) -> Result<(), StripeError<E>>,
    {
        let bad = || internal(i);
        let lp = self.layer(i).map_err(|_| bad())?;
        let len = lp.out_w.checked_mul(lp.out_c).ok_or_else(bad)?;
        let oy = self.rows.get(i).ok_or_else(bad)?.oy;
        if i + 1 < self.plan.n {
            let next = self.layer(i + 1).map_err(|_| bad())?;
            let st = self.rows.get_mut(i + 1).ok_or_else(bad)?;
            if let Some(j) = take_slot(&next, st).ok_or_else(|| internal(i + 1))? {
                let dest = next.data_at(j).ok_or_else(bad)?;
                self.compute(i, dest, len)?;
            }
        } else {
            let at = self.plan.latent_at;
            if len != self.plan.latent_len {
                return Err(bad());
            }
            self.compute(i, at, len)?;
            let latent = self.arena.get(at..at.checked_add(len).ok_or_else(bad)?);
            let latent = latent.ok_or_else(bad)?;
            emit(oy, bytemuck::cast_slice(latent))?;
        }
        let st = self.rows.get_mut(i).ok_or_else(bad)?;
        st.oy = oy + 1;
        if lp.stride < lp.kh {
            let end = lp.at.checked_add(lp.len).ok_or_else(bad)?;
            let window = self.arena.get_mut(lp.at..end).ok_or_else(bad)?;
            let keep = lp
                .stride
                .checked_mul(lp.row)
                .filter(|&k| k <= window.len())
                .ok_or_else(bad)?;
            window.copy_within(keep.., 0);
            st.filled = lp.kh - lp.stride;
        } else {
            st.filled = 0;
        }
        Ok(())
    }

    /// Runs every layer from `start` on whose window is full, depth first.
    fn pump<E, F>(&mut self, start: usize, emit: &mut F) -> Result<(), StripeError<E>>
    where
        F: FnMut(usize, &[i8]) -> Result<(), StripeError<E>>,
    {
        let mut i = start;
        loop {
            if self.ready(i) {
                self.step(i, emit)?;
                if i + 1 < self.plan.n {
                    i += 1;
                }
            } else if i > start {
                i -= 1;
            } else {
                return Ok(());
            }
        }
    }

    /// The whole frame: `rows` source rows, padded, through every layer.
    fn frame<S: RowSource, F>(
        &mut self,
        rows: usize,
        cols: usize,
        source: &mut S,
        emit: &mut F,
    ) -> Result<(), StripeError<S::Error>>
    where
        F: FnMut(usize, &[i8]) -> Result<(), StripeError<S::Error>>,
    {
        let plan = self.plan;
        let size = || StripeError::FrameSize { rows, cols };
        if plan.stride == 0 {
            return Err(StripeError::NotFullyConvolutional);
        }
        let padded_rows = rows
            .div_ceil(plan.stride)
            .checked_mul(plan.stride)
            .ok_or_else(size)?;
        // Each window: zero point everywhere (borders, the top padding rows).
        let mut h = padded_rows;
        for (i, (lp, st)) in plan.layers.iter().zip(self.rows.iter_mut()).enumerate() {
            if i >= plan.n {
                break;
            }
            if lp.stride == 0 || !h.is_multiple_of(lp.stride) {
                return Err(StripeError::NotFullyConvolutional);
            }
            h = h.checked_div(lp.stride).ok_or_else(|| internal(i))?;
            *st = Rows {
                oy: 0,
                out_h: h,
                next: 0,
                filled: lp.pad,
            };
            let end = lp.at.checked_add(lp.len).ok_or_else(|| internal(i))?;
            self.arena
                .get_mut(lp.at..end)
                .ok_or_else(|| internal(i))?
                .fill(lp.zp as u8);
        }
        let first = self.layer(0).map_err(|_| internal(0))?;
        let c = plan.channels;
        let px_len = plan.padded_cols.checked_mul(c).ok_or_else(size)?;
        let row_len = cols.checked_mul(c).ok_or_else(size)?;
        for r in 0..padded_rows {
            let (px, rest) = self
                .arena
                .split_at_mut_checked(px_len)
                .ok_or_else(|| internal(0))?;
            if r < rows {
                let (real, pad) = px
                    .split_at_mut_checked(row_len)
                    .ok_or_else(|| internal(0))?;
                source
                    .read_row(r, real)
                    .map_err(|error| StripeError::Source { row: r, error })?;
                // The host's column replication: the last pixel up to the padded width.
                let last = real
                    .get(row_len.saturating_sub(c)..)
                    .ok_or_else(|| internal(0))?;
                for p in pad.chunks_exact_mut(c.max(1)) {
                    for (d, &v) in p.iter_mut().zip(last) {
                        *d = v;
                    }
                }
            } // else: the row replication, the buffer holds the last row
            let st = self.rows.get_mut(0).ok_or_else(|| internal(0))?;
            if let Some(j) = take_slot(&first, st).ok_or_else(|| internal(0))? {
                let at = first
                    .data_at(j)
                    .and_then(|a| a.checked_sub(px_len))
                    .ok_or_else(|| internal(0))?;
                let end = at.checked_add(px_len).ok_or_else(|| internal(0))?;
                let slot: &mut [i8] =
                    bytemuck::cast_slice_mut(rest.get_mut(at..end).ok_or_else(|| internal(0))?);
                kernels::quantize_pixels(px, slot).map_err(|e| kernel_err(0, e))?;
            }
            self.pump(0, emit)?;
        }
        // The bottom padding: zero-point rows into each layer in turn until it is done.
        for i in 0..plan.n {
            let lp = self.layer(i).map_err(|_| internal(i))?;
            while self.rows.get(i).is_some_and(|st| st.oy < st.out_h) {
                let st = self.rows.get_mut(i).ok_or_else(|| internal(i))?;
                if let Some(j) = take_slot(&lp, st).ok_or_else(|| internal(i))? {
                    let at = lp.data_at(j).and_then(|a| a.checked_sub(lp.pad * lp.in_c));
                    let end = at.and_then(|a| a.checked_add(lp.row));
                    let (at, end) = at.zip(end).ok_or_else(|| internal(i))?;
                    self.arena
                        .get_mut(at..end)
                        .ok_or_else(|| internal(i))?
                        .fill(lp.zp as u8);
                }
                self.pump(i, emit)?;
            }
        }
        Ok(())
    }
}

/// Checks the frame and the arena and runs the frame, each latent row to `emit`.
fn run<K: KernelSet, S: RowSource, F>(
    model: &Model<'_>,
    rows: usize,
    cols: usize,
    source: &mut S,
    arena: &mut [u8],
    emit: &mut F,
) -> Result<(), StripeError<S::Error>>
where
    F: FnMut(usize, &[i8]) -> Result<(), StripeError<S::Error>>,
{
    let plan = plan(model, rows, cols, K::conv2d_scratch_size)?;
    if arena.len() < plan.total {
        return Err(StripeError::ArenaTooSmall {
            needed: plan.total,
            provided: arena.len(),
        });
    }
    Run::<K> {
        model,
        plan,
        arena,
        rows: [Rows::default(); MAX_LAYERS],
        _kernels: core::marker::PhantomData,
    }
    .frame(rows, cols, source, emit)
}

/// Encodes a frame of `rows × cols` pixels from `source` in `arena` (at least
/// [`required_arena`] bytes for `cols`), handing each latent row to `on_row` as soon as it
/// exists: `(latent row index, ceil(cols/S) × M int8 values)`, rows `0 .. ceil(rows/S)` in
/// order. The rows are those of [`crate::frame::encode_frame`] on the replication-padded frame.
pub fn encode<K: KernelSet, S: RowSource, F: FnMut(usize, &[i8])>(
    model: &Model<'_>,
    rows: usize,
    cols: usize,
    source: &mut S,
    arena: &mut [u8],
    mut on_row: F,
) -> Result<(), StripeError<S::Error>> {
    run::<K, S, _>(model, rows, cols, source, arena, &mut |y, row| {
        on_row(y, row);
        Ok(())
    })
}

/// Compresses a frame of `rows × cols` pixels from `source` at quality `level` into `out`:
/// each latent row is entropy-coded the moment it exists, into one stream, the host's
/// whole-frame bitstream byte for byte. Returns its length in bits; the bytes are the first
/// `ceil(bits / 8)` of `out`. `arena`: at least [`required_arena`] bytes for `cols`.
pub fn compress<K: KernelSet, S: RowSource>(
    model: &Model<'_>,
    level: u8,
    rows: usize,
    cols: usize,
    source: &mut S,
    arena: &mut [u8],
    out: &mut [u8],
) -> Result<usize, StripeError<S::Error>> {
    compress_with::<K, S, _>(model, level, rows, cols, source, arena, out, |_, _| {})
}

/// [`compress`], handing each latent row to `on_row` as well (after it is coded), as
/// [`encode`] does.
#[allow(clippy::too_many_arguments)]
pub fn compress_with<K: KernelSet, S: RowSource, F: FnMut(usize, &[i8])>(
    model: &Model<'_>,
    level: u8,
    rows: usize,
    cols: usize,
    source: &mut S,
    arena: &mut [u8],
    out: &mut [u8],
    mut on_row: F,
) -> Result<usize, StripeError<S::Error>> {
    let coder: &EntropyLevel<'_> = model
        .level(level)
        .ok_or(StripeError::NoSuchLevel { level })?;
    let zp = model.header().latent_q.zero_point;
    let m = model.header().latent as usize;
    let coder = coder.coder(zp);
    let mut enc = Encoder::new(out);
    run::<K, S, _>(model, rows, cols, source, arena, &mut |y, row| {
        for pos in row.chunks_exact(m.max(1)) {
            coder
                .encode_into(&mut enc, pos)
                .map_err(StripeError::Coding)?;
        }
        on_row(y, row);
        Ok(())
    })?;
    enc.finish().map_err(StripeError::Coding)
}
