//! The stripe decoder: a latent map back to a frame through a fully convolutional model's
//! transposed convolutions, holding only a few rows per layer and handing each pixel row to a
//! [`RowSink`] the moment it exists (a device's local preview of what it sent, issue 20).
//!
//! [`crate::frame::decode_frame`] is the definition: the whole latent map of `ceil(rows/S) ×
//! ceil(cols/S)` positions through every decoder layer, the frame cropped to `rows × cols`.
//! [`decode`] and [`decompress`] produce the same pixels, byte for byte, for every frame size,
//! reading the latent one row at a time (from a slice, or from the entropy-coded stream) and
//! working in one caller-provided arena of [`required_arena`] bytes, a function of the model
//! and the frame width only (no heap, no panics, no floating point).
//!
//! # How the windows work
//!
//! A transposed convolution (kernel `k`, stride `s`, padding `p`) writes output row
//! `oy = iy·s − p + ky`, so each output row depends on a few consecutive input rows. Decoder
//! layer `i` keeps a window of `R` input rows and runs the unchanged transposed-convolution
//! kernel on it with padding `p' = ((R − 2)·s + k) / 2` instead of `p`: the kernel's output is
//! then exactly `s` rows (one per phase), the global rows `s·t + (p' − p) + j` (`j < s`) for a
//! window starting at input row `t`, and every one of them is complete (each input row it reads
//! is in the window). `R` is the smallest window with that property (`p' ≥ k − s`,
//! `p' + s ≤ R·s`, `p' ≥ p`; `R = 2`, `p' = 2` for the photo decoder's 4×4/2, padding 1).
//! The larger padding also crops `p' − p` more columns on each side, so each window row carries
//! `e = p' − p` columns of the layer's input zero point on either side (the kernel's output
//! then has `(s − 1)·e` extra columns on each side, overwritten with the next layer's zero point
//! and serving as its border: the two must agree, which [`required_arena`] checks). Rows above
//! the top and below the bottom of a feature map are zero-point rows.
//!
//! Layer `i`'s window buffer holds `R − 1 + b` rows, `b` the rows its input arrives in at once
//! (1 for the latent, the previous layer's stride otherwise): the previous layer writes its `s`
//! rows straight below the `R − 1` kept rows, layer `i` runs its `b` windows (each handing its
//! `s` rows to the next layer, depth first), then keeps the last `R − 1` rows.
//!
//! # Why it is bit-exact
//!
//! Every output value is the same sum as in the whole-frame run: the same weights, bias and
//! taps, each tap reading the same input value, and a tap that falls outside the feature map
//! reading the layer's input zero point, whose product with any weight is `w · (zp − zp) = 0`,
//! exactly what the whole-frame kernel's skipped tap adds; taps that would fall outside the
//! window are taps outside the feature map. Accumulation wraps modulo 2³² on every path, the
//! requantisation and lookup table are per-value functions, and the output phase of a window's
//! row (`(j + p') mod s`) is its global row's (`(oy + p) mod s`), so each kernel path picks the
//! same sub-kernel as on the whole frame.
//!
//! # Memory
//!
//! With `Wᵢ` decoder layer `i`'s input width (`W₀ = ceil(cols/S)`, the latent's), `Cᵢ` its
//! input channels, `eᵢ` its border and `bᵢ` its input batch:
//!
//! ```text
//! [window 0   (R₀ − 1 + 1)·(W₀ + 2e₀)·C₀]
//! …
//! [window n−1]
//! [pixel rows s·(W_out + 2e_out)·C]        the last layer's s output rows
//! [scratch    max over layers of K::conv_transpose2d_scratch_size(window → s rows)]
//! ```
//!
//! For the shipped grey photo model (latent 96, decoder 96 → 64 → 48 → 1, all 4×4/2) at 320
//! pixels wide that is 2·22·96 + 3·42·96 + 3·82·64 + 3·162·48 + 2·322 bytes plus scratch:
//! the sizes grow with the width, not the frame's area (`firmware/tests/stripe_decode.rs`
//! prints them).
//!
//! **Invariant:** nothing here allocates or panics: every index is checked, a frame or arena
//! the model cannot take, a failing sink and a bad latent are [`DecodeError`]s.

use core::fmt;

use edgevae_shared::entropy::{CodingError, Decoder};
use edgevae_shared::format::{Activation, EntropyLevel, Model, Op, MAX_LAYERS};

use crate::engine::{output_stage, KernelErrorCode, KernelSet};
use crate::kernels::{self, ConvGeom, ConvParams, KernelError, Scratch, Shape};

/// Receives a decoded frame one row at a time: uint8 pixels, HWC, `cols × C` bytes a row.
///
/// The stripe decoder hands over rows `0, 1, …, rows − 1` in order, each exactly once.
pub trait RowSink {
    /// Why a row could not be taken (a display or bus error, a short buffer).
    type Error;
    /// Takes row `row` (`pixels.len() == cols × C`).
    fn write_row(&mut self, row: usize, pixels: &[u8]) -> Result<(), Self::Error>;
}

/// A [`RowSink`] into a whole frame in memory (`rows × cols × C` bytes, HWC).
#[derive(Debug)]
pub struct SliceSink<'a> {
    pixels: &'a mut [u8],
}

impl<'a> SliceSink<'a> {
    /// Rows go to `pixels`, one after the other (each row's length is the frame's).
    pub fn new(pixels: &'a mut [u8]) -> Self {
        SliceSink { pixels }
    }
}

/// [`SliceSink`] was handed a row its slice has no room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoRoom {
    /// The row handed over.
    pub row: usize,
}

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no room for row {}", self.row)
    }
}

impl core::error::Error for NoRoom {}

impl RowSink for SliceSink<'_> {
    type Error = NoRoom;

    fn write_row(&mut self, row: usize, pixels: &[u8]) -> Result<(), NoRoom> {
        let err = NoRoom { row };
        let start = row.checked_mul(pixels.len()).ok_or(err)?;
        let end = start.checked_add(pixels.len()).ok_or(err)?;
        self.pixels
            .get_mut(start..end)
            .ok_or(err)?
            .copy_from_slice(pixels);
        Ok(())
    }
}

/// Why the stripe decoder refused or stopped. `E` is the row sink's error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError<E> {
    /// The model is not fully convolutional, or a decoder layer is not a transposed
    /// convolution whose rows a window maps exactly (see the module docs).
    NotStripeDecodable,
    /// The model is encoder-only (a device file): it has no decoder.
    NoDecoder,
    /// A frame with no rows or no columns (or sizes past the address space).
    FrameSize {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
    /// A frame wider than the model declares.
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
    /// The latent map is not `ceil(rows/S) × ceil(cols/S) × M` values.
    LatentLength {
        /// Values expected.
        expected: usize,
        /// Values passed in.
        found: usize,
    },
    /// The model has no entropy section, or not this quality level.
    NoSuchLevel {
        /// The quality level asked for.
        level: u8,
    },
    /// The entropy decoder refused (a latent row of the wrong length).
    Coding(CodingError),
    /// The row sink failed.
    Sink {
        /// The row it was handed.
        row: usize,
        /// Its error.
        error: E,
    },
    /// A kernel refused its arguments (cannot happen for a validated model; reported, not
    /// panicked), or the decoder's own bookkeeping disagreed with the model.
    Kernel {
        /// Index of the decoder layer.
        index: u8,
        /// What went wrong.
        error: KernelErrorCode,
    },
}

impl<E: fmt::Display> fmt::Display for DecodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotStripeDecodable => write!(
                f,
                "the model's decoder cannot run row by row (not fully convolutional)"
            ),
            DecodeError::NoDecoder => write!(
                f,
                "the model is encoder-only (a device file): decoding needs the full model"
            ),
            DecodeError::FrameSize { rows, cols } => {
                write!(f, "a {cols}x{rows} frame has no pixels")
            }
            DecodeError::TooWide { cols, max_width } => write!(
                f,
                "a frame {cols} pixels wide, the model takes at most {max_width}"
            ),
            DecodeError::ArenaTooSmall { needed, provided } => write!(
                f,
                "stripe decoder arena of {provided} bytes, this width needs {needed}"
            ),
            DecodeError::LatentLength { expected, found } => write!(
                f,
                "a latent map of {found} values, this frame has {expected}"
            ),
            DecodeError::NoSuchLevel { level } => {
                write!(f, "the model has no entropy-coding quality level {level}")
            }
            DecodeError::Coding(e) => write!(f, "entropy decoding: {e}"),
            DecodeError::Sink { row, error } => write!(f, "writing row {row}: {error}"),
            DecodeError::Kernel { index, error } => write!(
                f,
                "decoder layer {index}: kernel refused its arguments ({error:?})"
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for DecodeError<E> {}

fn kernel_err<E>(index: usize, error: KernelError) -> DecodeError<E> {
    DecodeError::Kernel {
        index: u8::try_from(index).unwrap_or(u8::MAX),
        error: error.into(),
    }
}

/// The decoder's bookkeeping disagreed with itself (never expected; reported, not panicked).
fn internal<E>(index: usize) -> DecodeError<E> {
    kernel_err(index, KernelError::BufferTooSmall)
}

/// One decoder layer at the frame's width.
#[derive(Clone, Copy, Debug, Default)]
struct LayerPlan {
    k: usize,
    stride: usize,
    /// The window's padding `p'`.
    pad: usize,
    /// `p' − p`: the rows the window's output is shifted by, and the zero-point border
    /// columns on either side of each input row.
    shift: usize,
    /// Window rows `R`.
    window: usize,
    /// Rows the input arrives in at once (the previous layer's stride; 1 for the latent).
    batch: usize,
    in_w: usize,
    in_c: usize,
    /// True output width (the whole-frame layer's).
    out_w: usize,
    out_c: usize,
    /// Output border columns `(s − 1)·e`.
    out_border: usize,
    /// The layer's input zero point: borders and rows outside the map.
    zp: i8,
    /// Bytes of one buffer row, `(in_w + 2e) · in_c`.
    row: usize,
    /// Offset of the buffer in the arena.
    at: usize,
    /// Bytes of the buffer, `(R − 1 + batch) · row`.
    len: usize,
}

impl LayerPlan {
    /// Bytes of one output row with its borders.
    fn out_row(&self) -> Option<usize> {
        self.out_w
            .checked_add(2 * self.out_border)?
            .checked_mul(self.out_c)
    }

    /// The `s`-row transposed convolution that runs on a window.
    fn params(&self) -> ConvParams {
        ConvParams {
            in_shape: Shape {
                h: self.window,
                w: self.in_w + 2 * self.shift, // within `row`, checked by `plan`
                c: self.in_c,
            },
            out_shape: Shape {
                h: self.stride,
                w: self.out_w + 2 * self.out_border,
                c: self.out_c,
            },
            geom: ConvGeom {
                kh: self.k,
                kw: self.k,
                stride: self.stride,
                pad: self.pad,
            },
            input_zp: self.zp as i32,
        }
    }
}

/// The window of a transposed convolution `k`, `s`, `p`: `(R, p')`, or `None` where no window
/// of up to `k + 1` rows maps rows exactly.
fn window_of(k: usize, s: usize, p: usize) -> Option<(usize, usize)> {
    let (k, s, p) = (k as isize, s as isize, p as isize);
    (1..=k + 1).find_map(|r| {
        let twice = (r - 2) * s + k;
        let pp = twice / 2;
        let ok = twice >= 0 && twice % 2 == 0 && pp >= p && pp + s <= r * s && pp + s >= k;
        ok.then_some((r as usize, pp as usize))
    })
}

/// The arena layout for one frame width.
#[derive(Clone, Copy, Debug)]
struct Plan {
    layers: [LayerPlan; MAX_LAYERS],
    n: usize,
    /// Frame channels.
    channels: usize,
    /// Latent width and channels.
    latent_w: usize,
    latent_c: usize,
    /// The last layer's output rows (s rows with borders).
    pixels_at: usize,
    scratch_at: usize,
    /// Bytes the arena needs.
    total: usize,
}

/// The layout for a frame `cols` wide (`rows` only names the frame in errors), with
/// `scratch_fn` the kernels' scratch size function.
fn plan<E>(
    model: &Model<'_>,
    rows: usize,
    cols: usize,
    scratch_fn: impl Fn(Shape, Shape, ConvGeom) -> usize,
) -> Result<Plan, DecodeError<E>> {
    let nsd = || DecodeError::NotStripeDecodable;
    let frame = model.frame().ok_or_else(nsd)?;
    if model.encoder_only() {
        return Err(DecodeError::NoDecoder);
    }
    if rows == 0 || cols == 0 {
        return Err(DecodeError::FrameSize { rows, cols });
    }
    if cols > frame.max_width as usize {
        return Err(DecodeError::TooWide {
            cols,
            max_width: frame.max_width,
        });
    }
    let h = model.header();
    let s = frame.total_stride as usize;
    let channels = h.input.c as usize;
    let decoder = model.decoder();
    if s == 0 || channels == 0 || decoder.is_empty() || decoder.len() > MAX_LAYERS {
        return Err(nsd());
    }
    let size = || DecodeError::FrameSize { rows, cols };
    let latent_w = cols.div_ceil(s);
    let latent_c = h.latent as usize;
    let mut layers = [LayerPlan::default(); MAX_LAYERS];
    let (mut w, mut c, mut batch, mut border) = (latent_w, latent_c, 1usize, None);
    let (mut at, mut scratch, mut strides) = (0usize, 0usize, 1usize);
    for (l, slot) in decoder.iter().zip(layers.iter_mut()) {
        let Op::ConvTranspose2d {
            kh,
            kw,
            stride,
            pad,
        } = l.op
        else {
            return Err(nsd());
        };
        let (k, st, p) = (kh as usize, stride as usize, pad as usize);
        if kh != kw || st == 0 || l.input.c as usize != c {
            return Err(nsd());
        }
        if let Activation::Lut { table, .. } = l.activation {
            if table.len() != 256 {
                return Err(nsd());
            }
        }
        let (window, pp) = window_of(k, st, p).ok_or_else(nsd)?;
        let e = pp - p;
        // The previous layer's extra output columns are this layer's border.
        if border.is_some_and(|b| b != e) {
            return Err(nsd());
        }
        // Every column an output reads is within the border: max(ix) − (W − 1) ≤ e, and the
        // first window's rows start at or above row 0: s·(R − 1) ≥ p' − p.
        if (k - 1).saturating_sub(p) / st > e || st * (window - 1) < e {
            return Err(nsd());
        }
        // True output width (w − 1)·s − 2p + k.
        let out_w = (w - 1)
            .checked_mul(st)
            .and_then(|v| v.checked_add(k))
            .and_then(|v| v.checked_sub(2 * p))
            .filter(|&v| v > 0)
            .ok_or_else(nsd)?;
        let out_border = (st - 1) * e;
        let row = w
            .checked_add(2 * e)
            .and_then(|v| v.checked_mul(c))
            .ok_or_else(size)?;
        let len = (window - 1 + batch).checked_mul(row).ok_or_else(size)?;
        let out_c = l.output.c as usize;
        *slot = LayerPlan {
            k,
            stride: st,
            pad: pp,
            shift: e,
            window,
            batch,
            in_w: w,
            in_c: c,
            out_w,
            out_c,
            out_border,
            zp: l.input_q.zero_point,
            row,
            at,
            len,
        };
        let pr = slot.params();
        scratch = scratch.max(scratch_fn(pr.in_shape, pr.out_shape, pr.geom));
        at = at.checked_add(len).ok_or_else(size)?;
        strides = strides.checked_mul(st).ok_or_else(nsd)?;
        (w, c, batch, border) = (out_w, out_c, st, Some(out_border));
    }
    // The decoder must give back the frame: S·W₀ columns of C channels.
    if c != channels || strides != s || Some(w) != latent_w.checked_mul(s) {
        return Err(nsd());
    }
    let n = decoder.len();
    let last = layers.get(n - 1).ok_or_else(nsd)?;
    let pixels_len = last
        .out_row()
        .and_then(|r| r.checked_mul(last.stride))
        .ok_or_else(size)?;
    let pixels_at = at;
    let scratch_at = at.checked_add(pixels_len).ok_or_else(size)?;
    let total = scratch_at.checked_add(scratch).ok_or_else(size)?;
    Ok(Plan {
        layers,
        n,
        channels,
        latent_w,
        latent_c,
        pixels_at,
        scratch_at,
        total,
    })
}

/// Arena bytes the stripe decoder needs with kernel set `K` for frames `width` pixels wide.
/// `None` for a model whose decoder cannot run row by row, an encoder-only model, or a width it
/// cannot take. A pure function of the model and the width.
pub fn required_arena<K: KernelSet>(model: &Model<'_>, width: usize) -> Option<usize> {
    required_arena_with(model, width, K::conv_transpose2d_scratch_size)
}

/// [`required_arena`] with the kernels' scratch given by `scratch_fn` (for example
/// [`kernels::dsp_scratch::conv_transpose2d_scratch_size`], what the Cortex-M DSP kernels run
/// fastest with).
pub fn required_arena_with(
    model: &Model<'_>,
    width: usize,
    scratch_fn: impl Fn(Shape, Shape, ConvGeom) -> usize,
) -> Option<usize> {
    plan::<core::convert::Infallible>(model, 1, width, scratch_fn)
        .ok()
        .map(|p| p.total)
}

/// Nominal multiply-accumulates of the decoder for a `rows × cols` frame (the whole-frame
/// layers on the latent map; transposed: input positions × k² × input × output channels).
pub fn decoder_macs(model: &Model<'_>, rows: usize, cols: usize) -> Option<u64> {
    let s = usize::from(model.frame()?.total_stride.max(1));
    let (mut r, mut c) = (
        u16::try_from(rows.div_ceil(s)).ok()?,
        u16::try_from(cols.div_ceil(s)).ok()?,
    );
    let mut macs = 0u64;
    for l in model.decoder() {
        let l = l.at_frame(r, c)?;
        macs = macs.checked_add(l.macs())?;
        (r, c) = (l.output.h, l.output.w);
    }
    Some(macs)
}

/// Where each layer stands.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    /// Global input row held by buffer row 0 (negative: above the map).
    base: isize,
    /// Windows of the current batch still to run.
    pending: usize,
    /// The layer's output rows in all.
    out_h: usize,
}

/// One frame's run: the model, its layout, the arena and the layers' state.
struct Run<'r, 'm, K> {
    model: &'r Model<'m>,
    plan: Plan,
    arena: &'r mut [u8],
    state: [State; MAX_LAYERS],
    /// Frame rows and columns the sink gets.
    rows: usize,
    cols: usize,
    /// Rows handed to the sink so far.
    emitted: usize,
    _kernels: core::marker::PhantomData<K>,
}

impl<K: KernelSet> Run<'_, '_, K> {
    fn layer(&self, i: usize) -> Option<LayerPlan> {
        self.plan.layers.get(i).copied().filter(|_| i < self.plan.n)
    }

    /// Runs window `q` of layer `i` into the next layer's buffer (or the pixel rows), and
    /// hands the rows on.
    fn window<S: RowSink>(
        &mut self,
        i: usize,
        q: usize,
        sink: &mut S,
    ) -> Result<(), DecodeError<S::Error>> {
        let bad = || internal(i);
        let lp = self.layer(i).ok_or_else(bad)?;
        let st = *self.state.get(i).ok_or_else(bad)?;
        let next = self.layer(i + 1);
        // Where the s output rows go, their row length, and the zero point of what reads them.
        let out_row = lp.out_row().ok_or_else(bad)?;
        let (dest, zp_next) = match next {
            Some(nx) => {
                let at = nx
                    .window
                    .checked_sub(1)
                    .and_then(|r| r.checked_mul(nx.row))
                    .and_then(|o| o.checked_add(nx.at))
                    .ok_or_else(bad)?;
                if nx.row != out_row {
                    return Err(bad());
                }
                (at, nx.zp)
            }
            None => (self.plan.pixels_at, 0),
        };
        let len = out_row.checked_mul(lp.stride).ok_or_else(bad)?;
        // The window's first input row t and its first output row s·t + (p' − p).
        let t = st.base.checked_add(q as isize).ok_or_else(bad)?;
        let first = t
            .checked_mul(lp.stride as isize)
            .and_then(|v| v.checked_add(lp.shift as isize))
            .ok_or_else(bad)?;
        let in_range = |j: usize| {
            let g = first + j as isize;
            g >= 0 && (g as usize) < st.out_h
        };
        let any = (0..lp.stride).any(in_range);
        if any {
            self.compute(i, q, dest, len)?;
        }
        // Borders and rows outside the map: the next layer's zero point.
        let out = self
            .arena
            .get_mut(dest..dest.checked_add(len).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let border = lp.out_border.checked_mul(lp.out_c).ok_or_else(bad)?;
        for (j, r) in out.chunks_exact_mut(out_row.max(1)).enumerate() {
            if !in_range(j) {
                r.fill(zp_next as u8);
            } else if border > 0 && next.is_some() {
                let tail = r.len().checked_sub(border).ok_or_else(bad)?;
                r.get_mut(..border).ok_or_else(bad)?.fill(zp_next as u8);
                r.get_mut(tail..).ok_or_else(bad)?.fill(zp_next as u8);
            }
        }
        match next {
            Some(nx) => {
                let ns = self.state.get_mut(i + 1).ok_or_else(bad)?;
                ns.base = first.checked_sub(nx.window as isize - 1).ok_or_else(bad)?;
                ns.pending = nx.batch;
            }
            None => {
                // The last layer: its rows inside the frame, cropped, to the sink.
                let c = self.plan.channels;
                let (from, n) = (border, self.cols.checked_mul(c).ok_or_else(bad)?);
                for j in 0..lp.stride {
                    let g = first + j as isize;
                    if g < 0 || g as usize >= self.rows.min(st.out_h) {
                        continue;
                    }
                    if g as usize != self.emitted {
                        return Err(bad());
                    }
                    let r = j
                        .checked_mul(out_row)
                        .and_then(|o| o.checked_add(dest))
                        .and_then(|o| o.checked_add(from))
                        .ok_or_else(bad)?;
                    let px = self
                        .arena
                        .get(r..r.checked_add(n).ok_or_else(bad)?)
                        .ok_or_else(bad)?;
                    // The last lookup table yields uint8 pixels (as `decode_frame` reads them).
                    sink.write_row(g as usize, px)
                        .map_err(|error| DecodeError::Sink {
                            row: g as usize,
                            error,
                        })?;
                    self.emitted += 1;
                }
            }
        }
        Ok(())
    }

    /// Layer `i`'s kernel on its window at buffer row `q` into `len` bytes at `dest` (after the
    /// buffer, before the scratch), then its lookup table.
    fn compute<E>(
        &mut self,
        i: usize,
        q: usize,
        dest: usize,
        len: usize,
    ) -> Result<(), DecodeError<E>> {
        let bad = || internal(i);
        let lp = self.layer(i).ok_or_else(bad)?;
        let layer = self.model.decoder().get(i).ok_or_else(bad)?;
        let end = lp.at.checked_add(lp.len).ok_or_else(bad)?;
        let (head, tail) = self.arena.split_at_mut_checked(end).ok_or_else(bad)?;
        let from = q
            .checked_mul(lp.row)
            .and_then(|o| o.checked_add(lp.at))
            .ok_or_else(bad)?;
        let to = lp
            .window
            .checked_mul(lp.row)
            .and_then(|o| o.checked_add(from))
            .ok_or_else(bad)?;
        let input: &[i8] = bytemuck::cast_slice(head.get(from..to).ok_or_else(bad)?);
        let mid_len = self.plan.scratch_at.checked_sub(end).ok_or_else(bad)?;
        let (mid, scratch) = tail.split_at_mut_checked(mid_len).ok_or_else(bad)?;
        let rel = dest.checked_sub(end).ok_or_else(bad)?;
        let output = mid
            .get_mut(rel..rel.checked_add(len).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let output: &mut [i8] = bytemuck::cast_slice_mut(output);
        let stage = output_stage(layer);
        let p = lp.params();
        p.check_transposed(input, layer.weights_i8(), &stage, output)
            .and_then(|c| K::conv_transpose2d(c, Scratch::new(scratch)))
            .map_err(|e| kernel_err(i, e))?;
        if let Activation::Lut { table, .. } = layer.activation {
            let table: &[u8; 256] = table.try_into().map_err(|_| bad())?;
            kernels::apply_lut(output, table);
        }
        Ok(())
    }

    /// Runs every pending window from layer 0 on, depth first; each layer keeps its last
    /// `R − 1` rows when its batch is done.
    fn pump<S: RowSink>(&mut self, sink: &mut S) -> Result<(), DecodeError<S::Error>> {
        let mut i = 0usize;
        loop {
            let lp = self.layer(i).ok_or_else(|| internal(i))?;
            let st = self.state.get_mut(i).ok_or_else(|| internal(i))?;
            if st.pending > 0 {
                let q = lp.batch - st.pending;
                st.pending -= 1;
                self.window(i, q, sink)?;
                if i + 1 < self.plan.n {
                    i += 1;
                }
            } else {
                let keep = (lp.window - 1)
                    .checked_mul(lp.row)
                    .ok_or_else(|| internal(i))?;
                let from = lp.batch.checked_mul(lp.row).ok_or_else(|| internal(i))?;
                let end = lp.at.checked_add(lp.len).ok_or_else(|| internal(i))?;
                let buf = self.arena.get_mut(lp.at..end).ok_or_else(|| internal(i))?;
                if from.checked_add(keep) != Some(buf.len()) {
                    return Err(internal(i));
                }
                buf.copy_within(from.., 0);
                if i == 0 {
                    return Ok(());
                }
                i -= 1;
            }
        }
    }

    /// The whole frame: latent rows from `latent` (each `W₀ × M` values), then zero-point rows
    /// until every frame row has gone to the sink.
    fn frame<S: RowSink, L>(
        &mut self,
        sink: &mut S,
        latent: &mut L,
    ) -> Result<(), DecodeError<S::Error>>
    where
        L: FnMut(usize, &mut [i8]) -> Result<(), DecodeError<S::Error>>,
    {
        let plan = self.plan;
        let s = self
            .model
            .frame()
            .map(|f| f.total_stride as usize)
            .ok_or(DecodeError::NotStripeDecodable)?;
        let latent_rows = self.rows.div_ceil(s.max(1));
        // Each buffer: zero point everywhere (borders, the rows above the map).
        let mut h = latent_rows;
        for i in 0..plan.n {
            let lp = self.layer(i).ok_or_else(|| internal(i))?;
            let out_h = h
                .checked_sub(1)
                .and_then(|v| v.checked_mul(lp.stride))
                .and_then(|v| v.checked_add(lp.k))
                .and_then(|v| v.checked_sub(2 * (lp.pad - lp.shift)))
                .ok_or_else(|| internal(i))?;
            *self.state.get_mut(i).ok_or_else(|| internal(i))? = State {
                base: 0,
                pending: 0,
                out_h,
            };
            let end = lp.at.checked_add(lp.len).ok_or_else(|| internal(i))?;
            self.arena
                .get_mut(lp.at..end)
                .ok_or_else(|| internal(i))?
                .fill(lp.zp as u8);
            h = out_h;
        }
        let first = self.layer(0).ok_or_else(|| internal(0))?;
        let row_len = plan
            .latent_w
            .checked_mul(plan.latent_c)
            .ok_or_else(|| internal(0))?;
        let data = first
            .window
            .checked_sub(1)
            .and_then(|r| r.checked_mul(first.row))
            .and_then(|o| o.checked_add(first.at))
            .ok_or_else(|| internal(0))?;
        // Each layer lags its input by at most a window: a few rows past the latent's end
        // flush them all (the bound only guards against a bookkeeping error).
        let limit = latent_rows + 4 * plan.n * (first.window + 2) + 8;
        let mut r = 0usize;
        while self.emitted < self.rows {
            if r > limit {
                return Err(internal(0));
            }
            let slot = self
                .arena
                .get_mut(data..data.checked_add(first.row).ok_or_else(|| internal(0))?)
                .ok_or_else(|| internal(0))?;
            if r < latent_rows {
                let b = first.shift * first.in_c;
                let dst: &mut [i8] = bytemuck::cast_slice_mut(
                    slot.get_mut(b..b + row_len).ok_or_else(|| internal(0))?,
                );
                latent(r, dst)?;
            } else {
                slot.fill(first.zp as u8);
            }
            let st = self.state.get_mut(0).ok_or_else(|| internal(0))?;
            st.base = r as isize - (first.window as isize - 1);
            st.pending = 1;
            self.pump(sink)?;
            r += 1;
        }
        Ok(())
    }
}

/// Checks the frame and the arena and decodes the frame, latent rows from `latent`.
fn run<K: KernelSet, S: RowSink, L>(
    model: &Model<'_>,
    rows: usize,
    cols: usize,
    arena: &mut [u8],
    sink: &mut S,
    latent: &mut L,
) -> Result<(), DecodeError<S::Error>>
where
    L: FnMut(usize, &mut [i8]) -> Result<(), DecodeError<S::Error>>,
{
    let plan = plan(model, rows, cols, K::conv_transpose2d_scratch_size)?;
    if arena.len() < plan.total {
        return Err(DecodeError::ArenaTooSmall {
            needed: plan.total,
            provided: arena.len(),
        });
    }
    Run::<K> {
        model,
        plan,
        arena,
        state: [State::default(); MAX_LAYERS],
        rows,
        cols,
        emitted: 0,
        _kernels: core::marker::PhantomData,
    }
    .frame(sink, latent)
}

/// Decodes the latent map of a `rows × cols` frame (`ceil(rows/S) × ceil(cols/S) × M` int8,
/// positions in raster order, channels innermost) in `arena` (at least [`required_arena`]
/// bytes for `cols`), handing the frame's rows `0 .. rows` to `sink` as they exist: the rows
/// of [`crate::frame::decode_frame`] cropped to `rows × cols`.
pub fn decode<K: KernelSet, S: RowSink>(
    model: &Model<'_>,
    rows: usize,
    cols: usize,
    latent: &[i8],
    arena: &mut [u8],
    sink: &mut S,
) -> Result<(), DecodeError<S::Error>> {
    let frame = model.frame().ok_or(DecodeError::NotStripeDecodable)?;
    let s = usize::from(frame.total_stride.max(1));
    let m = model.header().latent as usize;
    let row = cols.div_ceil(s).saturating_mul(m);
    let expected = rows.div_ceil(s).saturating_mul(row);
    if latent.len() != expected {
        return Err(DecodeError::LatentLength {
            expected,
            found: latent.len(),
        });
    }
    run::<K, S, _>(model, rows, cols, arena, sink, &mut |r, out| {
        let start = r.checked_mul(row).ok_or_else(|| internal(0))?;
        let src = latent
            .get(start..start.checked_add(row).ok_or_else(|| internal(0))?)
            .filter(|s| s.len() == out.len())
            .ok_or_else(|| internal(0))?;
        out.copy_from_slice(src);
        Ok(())
    })
}

/// Decompresses a frame of `rows × cols` pixels coded at quality `level` (the bitstream
/// [`crate::stripe::compress`] and the host write): each latent row is entropy-decoded as the
/// decoder reaches it, so neither the latent map nor the frame is ever held whole. A damaged
/// stream decodes to some frame (the coder reads past the end as zeros); it never fails or
/// panics for that.
#[allow(clippy::too_many_arguments)]
pub fn decompress<K: KernelSet, S: RowSink>(
    model: &Model<'_>,
    level: u8,
    rows: usize,
    cols: usize,
    bits: &[u8],
    arena: &mut [u8],
    sink: &mut S,
) -> Result<(), DecodeError<S::Error>> {
    let coder: &EntropyLevel<'_> = model
        .level(level)
        .ok_or(DecodeError::NoSuchLevel { level })?;
    let zp = model.header().latent_q.zero_point;
    let m = model.header().latent as usize;
    let coder = coder.coder(zp);
    let mut dec = Decoder::new(bits);
    run::<K, S, _>(model, rows, cols, arena, sink, &mut |_, out| {
        for pos in out.chunks_exact_mut(m.max(1)) {
            coder
                .decode_from(&mut dec, pos)
                .map_err(DecodeError::Coding)?;
        }
        Ok(())
    })
}
