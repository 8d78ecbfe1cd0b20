//! The engine: runs a validated model's encoder (image → int8 latent) and decoder (latent →
//! uint8 image) in one caller-provided arena.
//!
//! Arena layout, fixed by the model alone:
//!
//! ```text
//! [0, P)        ping-pong activations, P = Model::activation_bytes()
//!               layer k reads from one end and writes to the other:
//!               input at the front [0, in) → output at the back [P-out, P) → next output at the front …
//! [P, A)        kernel scratch, A = the declared arena: every layer gets all of it
//! ```
//!
//! The exporter declares `A = required_arena_all_paths(model)`: on the Cortex-M DSP path each layer
//! plans its scratch from what `dsp_scratch::ARENA_BUDGET` leaves beside the activations (smaller
//! im2col chunks or channel blocks, or the zero-scratch reference loop), so activations plus
//! scratch stay within 16 KiB wherever the activations alone leave room.
//!
//! `P` is the largest (input + output) of any layer, so the two never overlap. `Reshape` layers
//! move nothing. A lookup-table activation is applied in place on the layer's output.
//!
//! **Invariant:** the engine never allocates and never panics; a too-small arena, a model whose
//! declared arena is smaller than this build needs, or wrong buffer lengths are errors.

use edgevae_shared::entropy::CodingError;
use edgevae_shared::format::{Activation, Layer, Model, Op, Section};

use crate::kernels::{
    self, ConvCall, ConvGeom, ConvParams, ConvTCall, DenseCall, DenseParams, KernelError, LeI32,
    OutputStage, Scratch, Shape,
};

/// Why the engine refused to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EngineError {
    /// The arena passed in is smaller than the model declares.
    ArenaTooSmall {
        /// Bytes the model declares (`arena_bytes` in its header).
        needed: usize,
        /// Length of the arena passed in, in bytes.
        provided: usize,
    },
    /// The model declares less arena than this build's kernels need (exported for other kernels).
    DeclaredArenaTooSmall {
        /// Bytes the model declares (`arena_bytes` in its header).
        declared: usize,
        /// Bytes this build's kernel set needs ([`required_arena`]).
        needed: usize,
    },
    /// The model's input is not uint8 pixels fed as `p - 128` (zero point -128).
    UnsupportedInput,
    /// An image or latent buffer of the wrong length.
    WrongLength {
        /// Length the model requires: image bytes or latent values.
        expected: usize,
        /// Length of the buffer passed in.
        found: usize,
    },
    /// A kernel refused its arguments (cannot happen for a validated model; reported, not panicked).
    Kernel {
        /// The section (encoder or decoder) holding the layer.
        section: Section,
        /// Index of the layer within its section.
        index: u8,
        /// What the kernel refused.
        error: KernelErrorCode,
    },
    /// The model has no entropy section, or not this quality level.
    NoSuchLevel {
        /// The quality level requested.
        level: u8,
    },
    /// The entropy coder failed (the output buffer is too small for the bitstream).
    Coding(CodingError),
    /// Not a fully convolutional model, or a frame it cannot take (a side that is zero, not a
    /// multiple of the total stride, or past 65,535).
    FrameSize {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
    /// The model is encoder-only (a device's file, [`edgevae_shared::format::FLAG_ENCODER_ONLY`]):
    /// it has no decoder to decode with.
    NoDecoder,
}

/// [`KernelError`] in a form defmt can print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KernelErrorCode {
    /// [`KernelError::ShapeMismatch`]: the output shape does not follow from the input and geometry.
    ShapeMismatch,
    /// [`KernelError::BufferTooSmall`]: input, output or weights shorter than the shapes require.
    BufferTooSmall,
    /// [`KernelError::ScratchTooSmall`]: scratch shorter than the kernel's scratch size.
    ScratchTooSmall,
    /// [`KernelError::BadParams`]: bad geometry, zero point, clamp range, shift or per-channel data.
    BadParams,
}

impl From<KernelError> for KernelErrorCode {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::ShapeMismatch => KernelErrorCode::ShapeMismatch,
            KernelError::BufferTooSmall => KernelErrorCode::BufferTooSmall,
            KernelError::ScratchTooSmall => KernelErrorCode::ScratchTooSmall,
            KernelError::BadParams => KernelErrorCode::BadParams,
        }
    }
}

impl core::fmt::Display for EngineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            EngineError::ArenaTooSmall { needed, provided } => {
                write!(f, "arena of {provided} bytes, the model needs {needed}")
            }
            EngineError::DeclaredArenaTooSmall { declared, needed } => write!(
                f,
                "model declares a {declared}-byte arena, these kernels need {needed}"
            ),
            EngineError::UnsupportedInput => write!(f, "model input is not uint8 pixels (zp -128)"),
            EngineError::WrongLength { expected, found } => {
                write!(f, "buffer of {found} bytes, expected {expected}")
            }
            EngineError::Kernel {
                section,
                index,
                error,
            } => {
                write!(
                    f,
                    "{section} layer {index}: kernel refused its arguments ({error:?})"
                )
            }
            EngineError::NoSuchLevel { level } => {
                write!(f, "the model has no entropy-coding quality level {level}")
            }
            EngineError::Coding(e) => write!(f, "entropy coding: {e}"),
            EngineError::FrameSize { rows, cols } => write!(
                f,
                "a {cols}x{rows} frame does not fit the model (not fully convolutional, or a side not a positive multiple of its total stride)"
            ),
            EngineError::NoDecoder => write!(
                f,
                "the model is encoder-only (a device file): decoding needs the full model"
            ),
        }
    }
}

impl core::error::Error for EngineError {}

/// A set of kernels with the `kernels` module's signatures: [`Fast`] (the compiled fast path) or
/// [`Scalar`] (the reference, which the host uses as its fixed-point model).
pub trait KernelSet {
    /// True when dense layers take the model's pre-laid blocks ([`kernels::dense_prelaid`]).
    const PRELAID: bool;
    /// Scratch bytes [`conv2d`](Self::conv2d) needs at least for input `i`, output `o`, geometry `g`.
    fn conv2d_scratch_size(i: Shape, o: Shape, g: ConvGeom) -> usize;
    /// Scratch bytes [`conv_transpose2d`](Self::conv_transpose2d) needs at least for these shapes.
    fn conv_transpose2d_scratch_size(i: Shape, o: Shape, g: ConvGeom) -> usize;
    /// Scratch bytes [`dense`](Self::dense) needs at least for `n_in` inputs and `n_out` outputs.
    fn dense_scratch_size(n_in: usize, n_out: usize) -> usize;
    /// int8 2-D convolution (a call the front door checked, [`ConvParams::check`]); see
    /// [`kernels::conv2d`].
    fn conv2d(call: ConvCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError>;
    /// int8 transposed 2-D convolution (PyTorch semantics, [`ConvParams::check_transposed`]);
    /// see [`kernels::conv_transpose2d`].
    fn conv_transpose2d(call: ConvTCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError>;
    /// int8 fully connected layer ([`DenseParams::check`]); see [`kernels::dense`].
    fn dense(call: DenseCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError>;
}

macro_rules! kernel_set {
    ($name:ident, $sizes:path, $path:path, $prelaid:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;
        impl KernelSet for $name {
            const PRELAID: bool = $prelaid;
            fn conv2d_scratch_size(i: Shape, o: Shape, g: ConvGeom) -> usize {
                use $sizes as k;
                k::conv2d_scratch_size(i, o, g)
            }
            fn conv_transpose2d_scratch_size(i: Shape, o: Shape, g: ConvGeom) -> usize {
                use $sizes as k;
                k::conv_transpose2d_scratch_size(i, o, g)
            }
            fn dense_scratch_size(n_in: usize, n_out: usize) -> usize {
                use $sizes as k;
                k::dense_scratch_size(n_in, n_out)
            }
            fn conv2d(call: ConvCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
                use $path as k;
                k::conv2d(call, scratch)
            }
            fn conv_transpose2d(
                call: ConvTCall<'_>,
                scratch: Scratch<'_>,
            ) -> Result<(), KernelError> {
                use $path as k;
                k::conv_transpose2d(call, scratch)
            }
            fn dense(call: DenseCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
                use $path as k;
                k::dense(call, scratch)
            }
        }
    };
}

kernel_set!(
    Fast,
    crate::kernels,
    crate::kernels::fast,
    true,
    "The fast path compiled for this target (DSP, NEON or scalar)."
);
kernel_set!(
    Scalar,
    crate::kernels::scalar,
    crate::kernels::scalar,
    false,
    "The portable scalar reference kernels."
);

/// A layer shape from the model file as the kernels take it.
pub fn kernel_shape(s: edgevae_shared::Shape) -> Shape {
    Shape {
        h: s.h as usize,
        w: s.w as usize,
        c: s.c as usize,
    }
}

/// A layer's requantisation and clamp (a fused ReLU clamps at the output zero point).
pub fn output_stage<'a>(l: &Layer<'a>) -> OutputStage<'a> {
    OutputStage {
        bias: LeI32(l.bias),
        multiplier: LeI32(l.multiplier),
        shift: l.shift_i8(),
        output_zp: l.output_q.zero_point as i32,
        act_min: match l.activation {
            Activation::Relu => l.output_q.zero_point as i32,
            _ => -128,
        },
        act_max: 127,
    }
}

/// The kernel geometry of a (transposed) convolution; `None` for any other operator.
pub fn conv_geom(op: Op) -> Option<ConvGeom> {
    match op {
        Op::Conv2d {
            kh,
            kw,
            stride,
            pad,
        }
        | Op::ConvTranspose2d {
            kh,
            kw,
            stride,
            pad,
        } => Some(ConvGeom {
            kh: kh as usize,
            kw: kw as usize,
            stride: stride as usize,
            pad: pad as usize,
        }),
        _ => None,
    }
}

/// Whether the Cortex-M DSP kernels read `layer`'s pre-laid block (`edgevae_shared::layout`)
/// when the engine hands it `scratch` bytes (the declared arena less the activations): always
/// for a dense layer with 16 inputs, for a (transposed) convolution only where the scratch is
/// enough for its GEMM (with less, it runs the direct kernels on the canonical weights and the
/// block would cost flash for nothing). The exporter writes the blocks this selects.
pub fn prelaid_pays(layer: &Layer<'_>, scratch: usize) -> bool {
    let (i, o) = (kernel_shape(layer.input), kernel_shape(layer.output));
    match (layer.op, conv_geom(layer.op)) {
        (Op::Dense, _) => true,
        (Op::Conv2d { .. }, Some(g)) => kernels::dsp_scratch::gemm_runs(i, o, g, false, scratch),
        (Op::ConvTranspose2d { .. }, Some(g)) => {
            kernels::dsp_scratch::gemm_runs(i, o, g, true, scratch)
        }
        _ => false,
    }
}

/// Scratch bytes one layer needs with kernel set `K`.
pub fn layer_scratch<K: KernelSet>(l: &Layer<'_>) -> usize {
    let (i, o) = (kernel_shape(l.input), kernel_shape(l.output));
    match (l.op, conv_geom(l.op)) {
        (Op::Conv2d { .. }, Some(g)) => K::conv2d_scratch_size(i, o, g),
        (Op::ConvTranspose2d { .. }, Some(g)) => K::conv_transpose2d_scratch_size(i, o, g),
        (Op::Dense, _) => K::dense_scratch_size(i.len(), o.len()),
        _ => 0,
    }
}

/// Largest scratch of any layer with kernel set `K`.
pub fn scratch_bytes<K: KernelSet>(model: &Model<'_>) -> usize {
    model
        .encoder()
        .iter()
        .chain(model.decoder())
        .map(layer_scratch::<K>)
        .max()
        .unwrap_or(0)
}

/// Arena bytes the model needs with kernel set `K`: ping-pong activations plus scratch.
/// The exporter writes the largest of this over every kernel set into the header.
pub fn required_arena<K: KernelSet>(model: &Model<'_>) -> usize {
    (model.activation_bytes() as usize).saturating_add(scratch_bytes::<K>(model))
}

/// Scratch bytes one layer uses on the Cortex-M DSP path when `avail` bytes are free for it
/// (computable on any target; `usize::MAX`: what it runs fastest with).
pub fn layer_scratch_dsp(l: &Layer<'_>, avail: usize) -> usize {
    use crate::kernels::dsp_scratch as d;
    let (i, o) = (kernel_shape(l.input), kernel_shape(l.output));
    match (l.op, conv_geom(l.op)) {
        (Op::Conv2d { .. }, Some(g)) => d::conv2d_scratch_for(i, o, g, avail),
        (Op::ConvTranspose2d { .. }, Some(g)) => d::conv_transpose2d_scratch_for(i, o, g, avail),
        (Op::Dense, _) => d::dense_scratch_for(i.len(), o.len(), avail),
        _ => 0,
    }
}

/// Scratch bytes one layer needs on the aarch64 NEON path (computable on any target).
pub fn layer_scratch_neon(l: &Layer<'_>) -> usize {
    use crate::kernels::neon_scratch as n;
    let (i, o) = (kernel_shape(l.input), kernel_shape(l.output));
    match (l.op, conv_geom(l.op)) {
        (Op::Conv2d { .. }, Some(g)) => n::conv2d_scratch_size(i, o, g),
        (Op::ConvTranspose2d { .. }, Some(g)) => n::conv_transpose2d_scratch_size(i, o, g),
        (Op::Dense, _) => n::dense_scratch_size(i.len(), o.len()),
        _ => 0,
    }
}

/// Scratch of the Cortex-M DSP path: the largest any layer uses in what
/// [`ARENA_BUDGET`](crate::kernels::dsp_scratch::ARENA_BUDGET) leaves beside the activations, or,
/// where the activations alone exceed it, the largest any layer runs fastest with.
pub fn scratch_bytes_dsp(model: &Model<'_>) -> usize {
    let p = model.activation_bytes() as usize;
    let avail = crate::kernels::dsp_scratch::ARENA_BUDGET
        .checked_sub(p)
        .unwrap_or(usize::MAX);
    model
        .encoder()
        .iter()
        .chain(model.decoder())
        .map(|l| layer_scratch_dsp(l, avail))
        .max()
        .unwrap_or(0)
}

/// Arena bytes that fit every kernel set (scalar, this target's fast path, Cortex-M DSP): what the
/// exporter declares, so one model file runs on every build. The DSP part is
/// [`scratch_bytes_dsp`]: within 16 KiB with the activations wherever they leave room. The NEON
/// kernels need no declared scratch: a layer whose scratch is short (see [`layer_scratch_neon`])
/// runs the reference loop.
pub fn required_arena_all_paths(model: &Model<'_>) -> usize {
    let dsp = (model.activation_bytes() as usize).saturating_add(scratch_bytes_dsp(model));
    dsp.max(required_arena::<Scalar>(model))
        .max(required_arena::<Fast>(model))
}

/// Runs one model in one arena.
pub struct Engine<'m, 'a, K: KernelSet = Fast> {
    model: &'m Model<'m>,
    arena: &'a mut [u8],
    activations: usize,
    _kernels: core::marker::PhantomData<K>,
}

impl<'m, 'a, K: KernelSet> Engine<'m, 'a, K> {
    /// Checks the arena: at least what the model declares, and the declaration at least what
    /// these kernels need.
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, EngineError> {
        let needed = required_arena::<K>(model);
        let declared = model.header().arena_bytes as usize;
        if declared < needed {
            return Err(EngineError::DeclaredArenaTooSmall { declared, needed });
        }
        if arena.len() < declared {
            return Err(EngineError::ArenaTooSmall {
                needed: declared,
                provided: arena.len(),
            });
        }
        if model.header().input_q.zero_point != -128 {
            return Err(EngineError::UnsupportedInput);
        }
        let activations = model.activation_bytes() as usize;
        Ok(Engine {
            model,
            arena,
            activations,
            _kernels: core::marker::PhantomData,
        })
    }

    /// The model this engine runs.
    pub fn model(&self) -> &Model<'m> {
        self.model
    }

    /// Image → bitstream of quality `level` (the learned codec): encode, quantise each latent
    /// dimension with the level's step, entropy-code with its tables into `out`. `latent` is
    /// working space of the latent's length and holds the unquantised code afterwards. Returns
    /// the bitstream length in bits; the bytes written are `ceil(bits / 8)`.
    pub fn compress(
        &mut self,
        pixels: &[u8],
        level: u8,
        latent: &mut [i8],
        out: &mut [u8],
    ) -> Result<usize, EngineError> {
        let model = self.model;
        let coder = model
            .level(level)
            .ok_or(EngineError::NoSuchLevel { level })?;
        self.encode(pixels, latent)?;
        coder
            .encode(model.header().latent_q.zero_point, latent, out)
            .map_err(EngineError::Coding)
    }

    /// Bitstream of quality `level` (any bytes) → image. `latent` is working space of the
    /// latent's length and holds the dequantised code afterwards.
    pub fn decompress(
        &mut self,
        level: u8,
        bits: &[u8],
        latent: &mut [i8],
        pixels: &mut [u8],
    ) -> Result<(), EngineError> {
        let model = self.model;
        // (an encoder-only file's levels cannot decode either: they hold no values)
        if model.encoder_only() {
            return Err(EngineError::NoDecoder);
        }
        let coder = model
            .level(level)
            .ok_or(EngineError::NoSuchLevel { level })?;
        check_len(latent.len(), model.header().latent as usize)?;
        coder
            .decode(model.header().latent_q.zero_point, bits, latent)
            .map_err(EngineError::Coding)?;
        self.decode(latent, pixels)
    }

    /// Image (uint8 pixels, H×W×C) → int8 latent code.
    pub fn encode(&mut self, pixels: &[u8], latent: &mut [i8]) -> Result<(), EngineError> {
        let h = self.model.header();
        check_len(pixels.len(), h.input.len() as usize)?;
        check_len(latent.len(), h.latent as usize)?;
        let (ping, _) = self.split();
        let first = ping
            .get_mut(..pixels.len())
            .ok_or(internal(Section::Encoder, 0))?;
        kernels::quantize_pixels(pixels, first).map_err(|e| kernel_err(Section::Encoder, 0, e))?;
        let out = self.run(Section::Encoder)?;
        latent.copy_from_slice(
            out.get(..latent.len())
                .ok_or(internal(Section::Encoder, 0))?,
        );
        Ok(())
    }

    /// Latent code → image (uint8 pixels).
    pub fn decode(&mut self, latent: &[i8], pixels: &mut [u8]) -> Result<(), EngineError> {
        if self.model.encoder_only() {
            return Err(EngineError::NoDecoder);
        }
        let h = self.model.header();
        check_len(latent.len(), h.latent as usize)?;
        check_len(pixels.len(), h.input.len() as usize)?;
        let (ping, _) = self.split();
        ping.get_mut(..latent.len())
            .ok_or(internal(Section::Decoder, 0))?
            .copy_from_slice(latent);
        let out = self.run(Section::Decoder)?;
        let out = out
            .get(..pixels.len())
            .ok_or(internal(Section::Decoder, 0))?;
        for (p, &q) in pixels.iter_mut().zip(out) {
            *p = q as u8; // the last lookup table yields uint8 pixels
        }
        Ok(())
    }

    /// (ping-pong region, scratch) as int8 / bytes; the scratch ends at the declared arena, so
    /// the kernels plan with the same bytes whatever arena the caller passed.
    fn split(&mut self) -> (&mut [i8], &mut [u8]) {
        let declared = (self.model.header().arena_bytes as usize).min(self.arena.len());
        let arena = self.arena.get_mut(..declared).unwrap_or(&mut []);
        let (act, scratch) = arena.split_at_mut(self.activations.min(declared));
        (bytemuck::cast_slice_mut(act), scratch)
    }

    /// Runs a section whose input is at the front of the ping-pong region; returns its output.
    fn run(&mut self, section: Section) -> Result<&[i8], EngineError> {
        let model = self.model;
        let layers = match section {
            Section::Decoder => model.decoder(),
            _ => model.encoder(),
        };
        let p = self.activations;
        let (ping, scratch) = self.split();
        // Where the current data lives: at the front, or ending at P.
        let mut at_front = true;
        let mut cur_len = layers.first().map_or(0, |l| l.input.len() as usize);
        for (index, l) in layers.iter().enumerate() {
            if !l.computes() {
                continue;
            }
            let err = |e| kernel_err(section, index, e);
            let bad = internal(section, index);
            let (in_len, out_len) = (l.input.len() as usize, l.output.len() as usize);
            if in_len != cur_len || in_len + out_len > p {
                return Err(bad);
            }
            let (input, output): (&[i8], &mut [i8]) = if at_front {
                let (a, b) = ping.split_at_mut_checked(p - out_len).ok_or(bad)?;
                (a.get(..in_len).ok_or(bad)?, b)
            } else {
                let (a, b) = ping.split_at_mut_checked(out_len).ok_or(bad)?;
                (b.get(p - out_len - in_len..).ok_or(bad)?, a)
            };
            let stage = output_stage(l);
            let zp = l.input_q.zero_point as i32;
            let (i, o) = (kernel_shape(l.input), kernel_shape(l.output));
            let w = l.weights_i8();
            let block = model.dsp_block(section, index).filter(|_| K::PRELAID);
            let scratch = Scratch::new(&mut *scratch);
            let conv = |geom| ConvParams {
                in_shape: i,
                out_shape: o,
                geom,
                input_zp: zp,
            };
            match (l.op, conv_geom(l.op)) {
                (Op::Conv2d { .. }, Some(g)) => {
                    let p = conv(g);
                    match block {
                        Some(b) => {
                            kernels::conv2d_prelaid(&p, input, w, b, &stage, output, scratch)
                        }
                        None => p
                            .check(input, w, &stage, output)
                            .and_then(|c| K::conv2d(c, scratch)),
                    }
                }
                (Op::ConvTranspose2d { .. }, Some(g)) => {
                    let p = conv(g);
                    match block {
                        Some(b) => kernels::conv_transpose2d_prelaid(
                            &p, input, w, b, &stage, output, scratch,
                        ),
                        None => p
                            .check_transposed(input, w, &stage, output)
                            .and_then(|c| K::conv_transpose2d(c, scratch)),
                    }
                }
                (Op::Dense, _) => {
                    let p = DenseParams {
                        n_in: in_len,
                        n_out: out_len,
                        input_zp: zp,
                    };
                    match block {
                        Some(b) => kernels::dense_prelaid(&p, input, w, b, &stage, output, scratch),
                        _ => p
                            .check(input, w, &stage, output)
                            .and_then(|c| K::dense(c, scratch)),
                    }
                }
                _ => Err(KernelError::BadParams),
            }
            .map_err(err)?;
            if let Activation::Lut { table, .. } = l.activation {
                let table: &[u8; 256] = table.try_into().map_err(|_| bad)?;
                kernels::apply_lut(output, table);
            }
            at_front = !at_front;
            cur_len = out_len;
        }
        let out = if at_front {
            ping.get(..cur_len)
        } else {
            ping.get(p - cur_len..p)
        };
        out.ok_or(internal(section, layers.len()))
    }
}

fn check_len(found: usize, expected: usize) -> Result<(), EngineError> {
    if found == expected {
        Ok(())
    } else {
        Err(EngineError::WrongLength { expected, found })
    }
}

fn kernel_err(section: Section, index: usize, e: KernelError) -> EngineError {
    EngineError::Kernel {
        section,
        index: index as u8,
        error: e.into(),
    }
}

fn internal(section: Section, index: usize) -> EngineError {
    kernel_err(section, index, KernelError::BufferTooSmall)
}
