//! The edgevae model file.
//!
//! ```text
//! offset size  field
//!      0    4  magic  b"EVAE"
//!      4    2  format version (u16 LE): 2 (3 with a frame) is written, 1 to 3 are read
//!      6    2  flags (u16 LE): any of FLAG_DSP_LAYOUT (1), FLAG_ENCODER_ONLY (2)
//!      8    4  payload length in bytes (u32 LE)
//!     12    4  CRC-32 (ISO-HDLC) of the payload (u32 LE)
//!     16    n  payload: postcard-encoded [`ModelBody`]
//! with FLAG_ENCODER_ONLY, then:
//!   16+n    4  CRC-32 of the payload of the full model the file was cut from (u32 LE)
//! with FLAG_DSP_LAYOUT, then (e: the end of the above):
//!      e    p  zero bytes up to a multiple of 8 (from the file's first byte)
//!      a    4  section length L in bytes (u32 LE)
//!    a+4    4  CRC-32 of the L section bytes (u32 LE)
//!    a+8    L  one u32 LE block length per layer (encoder, then decoder; 0 = no block), zero
//!              bytes up to a multiple of 8, then the blocks in layer order, each followed by
//!              zero bytes up to a multiple of 8
//! ```
//!
//! The section ([`FLAG_DSP_LAYOUT`], see [`crate::layout`]) holds weights and requantisation
//! parameters pre-laid for the Cortex-M DSP kernels (pre-widened to int16, in the order the
//! kernel's loop reads them, word-aligned when the file is), derived from the canonical arrays of
//! the payload, which every other path reads. The parser recomputes every block word from the
//! canonical layer and rejects a file whose block differs ([`FormatError::DspLayoutMismatch`]),
//! so both layouts always describe the same arithmetic. Files without the flag (all files before
//! it existed) load as before; their layers run on the kernels that read the canonical layout.
//!
//! The payload borrows every weight, bias and requantization array straight from the input bytes
//! (zero-copy), so on the device the weights stay in flash. [`Model::from_bytes`] checks everything
//! the engine relies on: shapes chain from layer to layer and match each operator's geometry,
//! array lengths match the shapes, requantization parameters are in range, no int32 accumulator can
//! overflow, and the activations fit the declared arena.
//!
//! Version 2 appends the entropy section of the learned codec to the body ([`Entropy`]: per
//! quality level, an integer quantization step and a 16-bit CDF table per latent dimension);
//! version 1 files have none and still load (`entropy` is `None`).
//!
//! Version 3 appends a postcard [`Frame`] after the version 2 body: the model is fully
//! convolutional. Its layers are stored with the shapes of a nominal frame of one latent
//! position (S×S pixels for the total stride S, a 1×1×M latent), so every check above applies
//! unchanged and the engine can run that nominal frame; a frame of H×W pixels (multiples of S)
//! scales every layer's rows and columns ([`Layer::at_frame`]), which [`Frame`]'s checks
//! guarantee is exact for every layer. Latent "dimensions" are then the M channels: the
//! entropy section holds one step and table per channel, shared by every latent position.
//!
//! An encoder-only file ([`FLAG_ENCODER_ONLY`], what a device embeds: its app never decodes a
//! frame, and a photo model's synthesis is most of the file) has no decoder layers, no
//! decoder blocks and no decoded values in its entropy levels (each level's `values` is empty:
//! only a decoder reads them, and they are a third of the tables' bytes); everything else is
//! the full model's. It carries the full model's payload CRC,
//! which [`Model::crc`] returns: a bitstream the device writes names the model that decodes it.
//!
//! Multi-byte arrays inside layers (bias, multiplier) are little-endian `i32`s stored as bytes, read
//! with `from_le_bytes`: the payload has no alignment.

use core::fmt;

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::entropy::{self, Cdf, CodingError, Decoder, DimIter, Encoder, LatentCoder};
use crate::layout::ALIGN;
pub use crate::layout::FLAG_DSP_LAYOUT;

/// Preamble flag: the file holds no decoder layers (a device's file, cut from a full model by
/// [`ModelBody::to_encoder_only_bytes`]) and, after the payload, the CRC-32 of the full model's
/// payload.
pub const FLAG_ENCODER_ONLY: u16 = 2;

/// File magic.
pub const MAGIC: [u8; 4] = *b"EVAE";
/// The newest format version this crate writes and reads: 3 adds [`Frame`] (fully
/// convolutional models that run on frames of any size). A model without a frame is written as
/// version 2, byte for byte what earlier builds wrote.
pub const FORMAT_VERSION: u16 = 3;
/// The format version of models without a [`Frame`] (entropy section, no frame).
pub const FORMAT_VERSION_V2: u16 = 2;
/// The oldest format version this crate reads (no entropy section).
pub const FORMAT_VERSION_V1: u16 = 1;
/// Most quality levels in an entropy section.
pub const MAX_LEVELS: usize = 16;
/// Size of the fixed preamble before the payload.
pub const PREAMBLE_LEN: usize = 16;
/// Most layers in one section (encoder or decoder).
pub const MAX_LAYERS: usize = 16;
/// Longest model name in bytes.
pub const MAX_NAME: usize = 32;
/// Largest |x - zero_point| of an int8 activation.
const MAX_ABS_INPUT: i64 = 255;

/// Activation tensor shape, channels-last (H, W, C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Height in pixels (rows); 1 for a flat vector.
    pub h: u16,
    /// Width in pixels (columns); 1 for a flat vector.
    pub w: u16,
    /// Channels, innermost in memory.
    pub c: u16,
}

impl Shape {
    /// `h` rows by `w` columns by `c` channels.
    pub const fn new(h: u16, w: u16, c: u16) -> Self {
        Shape { h, w, c }
    }
    /// A flat vector of `n` values.
    pub const fn flat(n: u16) -> Self {
        Shape { h: 1, w: 1, c: n }
    }
    /// Number of elements (no overflow: at most 2^48).
    pub const fn len(&self) -> u64 {
        self.h as u64 * self.w as u64 * self.c as u64
    }
    /// True when any dimension is zero.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Affine quantization: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    /// Real value of one quantization step; must be positive and finite.
    pub scale: f32,
    /// The int8 value that represents real 0.
    pub zero_point: i8,
}

impl QParams {
    /// Compared bit for bit (no floating-point arithmetic on the device).
    fn same(&self, other: &QParams) -> bool {
        self.scale.to_bits() == other.scale.to_bits() && self.zero_point == other.zero_point
    }
    /// Positive, finite, non-zero scale, checked on the bits.
    fn valid(&self) -> bool {
        let bits = self.scale.to_bits();
        bits >> 31 == 0 && (bits >> 23) & 0xFF != 0xFF && bits != 0
    }
}

/// The operator of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Convolution, weights `[oc][ky][kx][ic]`.
    Conv2d {
        /// Kernel height in pixels, `>= 1`.
        kh: u8,
        /// Kernel width in pixels, `>= 1`.
        kw: u8,
        /// Stride in pixels along both axes, `>= 1`.
        stride: u8,
        /// Zero padding in pixels on every side of the input, smaller than the kernel.
        pad: u8,
    },
    /// Transposed convolution (PyTorch semantics, no kernel flip), weights `[oc][ky][kx][ic]`.
    ConvTranspose2d {
        /// Kernel height in pixels, `>= 1`.
        kh: u8,
        /// Kernel width in pixels, `>= 1`.
        kw: u8,
        /// Upsampling stride in pixels along both axes, `>= 1`.
        stride: u8,
        /// Pixels cropped from every side of the output (PyTorch `padding`), smaller than the
        /// kernel.
        pad: u8,
    },
    /// Fully connected on the flattened HWC input, weights `[out][in]`.
    Dense,
    /// Reinterpret the shape (flatten / unflatten); no data moves.
    Reshape,
}

/// What happens to a layer's requantized int8 output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation<'a> {
    /// No activation: the output is clamped to `[-128, 127]` only.
    None,
    /// Fused into the output clamp: `[output zero point, 127]`.
    Relu,
    /// 256-entry table indexed by `q + 128`; `out` is the quantization of the table's values.
    /// The decoder's last table yields uint8 pixels.
    Lut {
        /// The 256 output values.
        #[serde(borrow)]
        table: &'a [u8],
        /// Quantization of the table's output values.
        out: QParams,
    },
}

/// One layer, its parameters borrowed from the model bytes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer<'a> {
    /// The operator and its geometry.
    pub op: Op,
    /// Shape of the input activation.
    pub input: Shape,
    /// Shape of the output activation.
    pub output: Shape,
    /// Quantization of the int8 input activation (the previous layer's effective output).
    pub input_q: QParams,
    /// Quantization of the requantized output (before any lookup table).
    pub output_q: QParams,
    /// int8 weights in the operator's layout.
    #[serde(borrow)]
    pub weights: &'a [u8],
    /// int32 LE bias per output channel (scale `s_in * s_w[c]`).
    #[serde(borrow)]
    pub bias: &'a [u8],
    /// int32 LE Q31 multiplier per output channel, in `[0, 2^31)`.
    #[serde(borrow)]
    pub multiplier: &'a [u8],
    /// i8 shift per output channel (TFLite convention: > 0 left, < 0 right), in `-31..=30`.
    #[serde(borrow)]
    pub shift: &'a [u8],
    /// What is applied to the requantized output.
    #[serde(borrow)]
    pub activation: Activation<'a>,
}

impl<'a> Layer<'a> {
    /// Weights as int8.
    pub fn weights_i8(&self) -> &'a [i8] {
        bytemuck::cast_slice(self.weights)
    }
    /// Shifts as int8.
    pub fn shift_i8(&self) -> &'a [i8] {
        bytemuck::cast_slice(self.shift)
    }
    /// The `i`-th little-endian i32 of `bytes` (0 when out of range).
    pub fn le_i32(bytes: &[u8], i: usize) -> i32 {
        match bytes.get(i * 4..i * 4 + 4) {
            Some(&[a, b, c, d]) => i32::from_le_bytes([a, b, c, d]),
            _ => 0,
        }
    }
    /// Quantization of what the next layer reads (after the lookup table, if any).
    pub fn effective_output_q(&self) -> QParams {
        match self.activation {
            Activation::Lut { out, .. } => out,
            _ => self.output_q,
        }
    }
    /// This layer of a fully convolutional model ([`Frame`]) on an input of `rows × cols`: the
    /// same parameters, the input and output shapes scaled by the stride (a convolution's
    /// output is `rows / stride`, a transposed one's `rows · stride`). `None` for other
    /// operators, an input that is not a multiple of a convolution's stride, or sizes past u16.
    pub fn at_frame(&self, rows: u16, cols: u16) -> Option<Layer<'a>> {
        let (oh, ow) = match self.op {
            Op::Conv2d { stride, .. } if stride > 0 => {
                let s = stride as u16;
                if !rows.is_multiple_of(s) || !cols.is_multiple_of(s) {
                    return None;
                }
                (rows / s, cols / s)
            }
            Op::ConvTranspose2d { stride, .. } => (
                rows.checked_mul(stride as u16)?,
                cols.checked_mul(stride as u16)?,
            ),
            _ => return None,
        };
        Some(Layer {
            input: Shape::new(rows, cols, self.input.c),
            output: Shape::new(oh, ow, self.output.c),
            ..*self
        })
    }
    /// True for layers that compute (everything but `Reshape`).
    pub fn computes(&self) -> bool {
        !matches!(self.op, Op::Reshape)
    }
    /// Multiply-accumulates for one inference of this layer.
    pub fn macs(&self) -> u64 {
        match self.op {
            Op::Conv2d { kh, kw, .. } => {
                self.output.len() * kh as u64 * kw as u64 * self.input.c as u64
            }
            // Each input pixel meets every kernel tap once, minus taps cropped by padding.
            Op::ConvTranspose2d { kh, kw, .. } => {
                self.input.len() * kh as u64 * kw as u64 * self.output.c as u64
            }
            Op::Dense => self.input.len() * self.output.len(),
            Op::Reshape => 0,
        }
    }
}

/// Model-wide facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Model name, UTF-8, at most [`MAX_NAME`] bytes.
    pub name: String<MAX_NAME>,
    /// Image shape; pixels are uint8, fed as int8 `p - 128`.
    pub input: Shape,
    /// Quantization of the int8 image the encoder reads (scale 1/255, zero point −128 for
    /// pixels fed as `p − 128`).
    pub input_q: QParams,
    /// Latent code length (int8 quantized `mu`).
    pub latent: u16,
    /// Quantization of the int8 latent code (encoder output and decoder input).
    pub latent_q: QParams,
    /// Bytes of arena the engine needs: ping-pong activations plus the largest kernel scratch.
    pub arena_bytes: u32,
}

/// The payload of a model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelBody<'a> {
    /// Model-wide facts.
    pub header: Header,
    /// Encoder layers, image to latent, in execution order.
    #[serde(borrow)]
    pub encoder: Vec<Layer<'a>, MAX_LAYERS>,
    /// Decoder layers, latent to image, in execution order.
    #[serde(borrow)]
    pub decoder: Vec<Layer<'a>, MAX_LAYERS>,
    /// The codec's entropy model (format version 2; `None` in version 1 files).
    #[serde(borrow)]
    pub entropy: Option<Entropy<'a>>,
    /// Fully convolutional geometry (format version 3); serialised after the body, so the
    /// body's own encoding is version 2's.
    #[serde(skip)]
    pub frame: Option<Frame>,
}

/// What makes a model fully convolutional (format version 3): it runs on frames of any size
/// whose sides are multiples of `total_stride` (the host pads a frame to that by replicating
/// its last row and column), up to `max_width` pixels wide on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Frame {
    /// Product of the encoder's strides S: the latent map is (H/S, W/S, M) for an H×W frame.
    pub total_stride: u16,
    /// Widest frame (pixels) the device's row buffers are sized for.
    pub max_width: u16,
}

impl Frame {
    /// Input rows a layer reads above and below the rows that line up with one output row
    /// (its halo): for a convolution `pad` above and `k − 1 − pad` below; for a transposed
    /// convolution of stride `s`, the `ceil(k / s)` input rows that reach an output row, split
    /// around it.
    pub fn halo(op: Op) -> (u8, u8) {
        match op {
            Op::Conv2d { kh, pad, .. } => (pad, kh.saturating_sub(1).saturating_sub(pad)),
            Op::ConvTranspose2d { kh, stride, .. } => {
                let span = kh.div_ceil(stride.max(1));
                (span / 2, span.saturating_sub(1).saturating_sub(span / 2))
            }
            _ => (0, 0),
        }
    }
}

/// The body of a version 1 file.
#[derive(Deserialize)]
struct ModelBodyV1<'a> {
    header: Header,
    #[serde(borrow)]
    encoder: Vec<Layer<'a>, MAX_LAYERS>,
    #[serde(borrow)]
    decoder: Vec<Layer<'a>, MAX_LAYERS>,
}

/// The entropy model of the learned codec: one [`EntropyLevel`] per quality level, coarsest
/// (fewest bits) first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entropy<'a> {
    /// The quality levels, coarsest first.
    #[serde(borrow)]
    pub levels: Vec<EntropyLevel<'a>, MAX_LEVELS>,
}

/// One quality level: the int8 latent `q` of dimension `d` is sent as the symbol
/// `round((q − zp) / steps[d])` (half away from zero), coded with dimension `d`'s table; the
/// decoder puts back the symbol's value from `values` (the exporter writes the mean of the
/// training latents in the symbol's bin, so coarse steps lose less than at the bin centre).
/// Every int8 value maps into the table, so nothing is clamped on the way in and no escape code
/// is needed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntropyLevel<'a> {
    /// Quantization step per latent dimension, in int8 latent units, `>= 1`.
    #[serde(borrow)]
    pub steps: &'a [u8],
    /// The CDF tables of the dimensions in order, concatenated: dimension `d` has one u16 LE
    /// entry per symbol of [`crate::entropy::symbol_range`]`(zp, steps[d])`, starting at 0 and
    /// strictly increasing (implicit total 2^16, so every symbol has a non-zero frequency).
    #[serde(borrow)]
    pub cdfs: &'a [u8],
    /// The int8 latent value each symbol decodes to, one byte per symbol, laid out like `cdfs`.
    #[serde(borrow)]
    pub values: &'a [u8],
}

/// One dimension of an [`EntropyLevel`].
#[derive(Clone, Copy, Debug)]
pub struct DimCoder<'a> {
    /// Quantization step of this dimension, in int8 latent units, `>= 1`.
    pub step: u8,
    /// This dimension's CDF table, one entry per symbol from `lo`.
    pub cdf: Cdf<'a>,
    /// The smallest symbol (table index 0).
    pub lo: i32,
    /// The latent value of each table index.
    pub values: &'a [u8],
}

impl<'a> EntropyLevel<'a> {
    /// Each dimension's coder, in order. Tables that do not parse end the iteration early
    /// (cannot happen after validation).
    pub fn tables(&self, zero_point: i8) -> impl Iterator<Item = DimCoder<'a>> + 'a {
        let (cdfs, values) = (self.cdfs, self.values);
        let mut at = 0usize;
        self.steps.iter().map_while(move |&step| {
            let (lo, hi) = entropy::symbol_range(zero_point, step);
            let n = (hi - lo + 1) as usize;
            let table = cdfs.get(2 * at..2 * (at + n))?;
            // an encoder-only file's levels have none
            let vals = match values.is_empty() {
                true => &[][..],
                false => values.get(at..at + n)?,
            };
            at += n;
            // Validated when the model was parsed; re-scanning every table per image would cost
            // more than the coding itself.
            Cdf::from_validated(table).ok().map(|cdf| DimCoder {
                step,
                cdf,
                lo,
                values: vals,
            })
        })
    }

    /// Codes an int8 latent into `out` as one stream; returns its length in bits (bytes used:
    /// `ceil(bits / 8)`).
    pub fn encode(
        &self,
        zero_point: i8,
        latent: &[i8],
        out: &mut [u8],
    ) -> Result<usize, CodingError> {
        let mut enc = Encoder::new(out);
        self.encode_into(&mut enc, zero_point, latent)?;
        enc.finish()
    }

    /// Appends one latent's symbols to a running stream (several latents share one termination).
    /// A [`LatentCoder`] ([`EntropyLevel::coder`]) codes the same, faster for many latents.
    /// The tables must be strictly increasing from 0, as [`Model::from_bytes`] checks; a level
    /// that was never validated codes some bits or gives an error, never a panic.
    pub fn encode_into(
        &self,
        enc: &mut Encoder<'_>,
        zero_point: i8,
        latent: &[i8],
    ) -> Result<(), CodingError> {
        if latent.len() != self.steps.len() {
            return Err(CodingError::SymbolOutOfRange);
        }
        entropy::encode_latent(
            enc,
            self.cdfs,
            zero_point,
            &[],
            self.dims(zero_point, 0, 0),
            latent,
        )
    }

    /// Decodes a bitstream (any bytes) into the dequantized int8 latent.
    pub fn decode(
        &self,
        zero_point: i8,
        bits: &[u8],
        latent: &mut [i8],
    ) -> Result<(), CodingError> {
        self.decode_from(&mut Decoder::new(bits), zero_point, latent)
    }

    /// Reads one latent from a running stream.
    pub fn decode_from(
        &self,
        dec: &mut Decoder<'_>,
        zero_point: i8,
        latent: &mut [i8],
    ) -> Result<(), CodingError> {
        if latent.len() != self.steps.len() {
            return Err(CodingError::SymbolOutOfRange);
        }
        entropy::decode_latent(
            dec,
            self.cdfs,
            self.values,
            &[],
            self.dims(zero_point, 0, 0),
            latent,
        )
    }

    /// This level prepared for coding many latents (a latent map's positions).
    pub fn coder(&self, zero_point: i8) -> LatentCoder<'a> {
        LatentCoder::new(self, zero_point)
    }

    /// The coding constants of dimensions `skip..`, whose first table starts at entry `at`
    /// (what [`EntropyLevel::tables`] walks, without the slices).
    pub(crate) fn dims(&self, zero_point: i8, skip: usize, at: usize) -> DimIter<'a> {
        // An encoder-only file's level has no values (decoding it fails on that).
        let limit = match self.values.is_empty() {
            true => self.cdfs.len() / 2,
            false => (self.cdfs.len() / 2).min(self.values.len()),
        };
        DimIter::new(zero_point, self.steps.get(skip..).unwrap_or(&[]), at, limit)
    }
}

/// Where in the model a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Section {
    /// The model header.
    Header,
    /// The encoder layers.
    Encoder,
    /// The decoder layers.
    Decoder,
    /// The entropy section of the codec.
    Entropy,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::Encoder => "encoder",
            Section::Decoder => "decoder",
            Section::Entropy => "entropy section",
        })
    }
}

/// Why a model file was rejected. One variant per check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than the 16-byte preamble.
    TooShort {
        /// File length in bytes.
        len: usize,
    },
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// A format version this crate does not read.
    UnsupportedVersion {
        /// Version in the preamble.
        found: u16,
    },
    /// Flags in the preamble other than [`FLAG_DSP_LAYOUT`] and [`FLAG_ENCODER_ONLY`].
    UnsupportedFlags {
        /// Flags in the preamble.
        found: u16,
    },
    /// The preamble declares more payload than the file holds.
    Truncated {
        /// Payload length in the preamble, in bytes.
        declared: u32,
        /// Bytes present after the preamble.
        available: usize,
    },
    /// The pre-laid section ([`FLAG_DSP_LAYOUT`]) is missing, its padding is not zero, or its
    /// length table does not add up to its length and the file's end.
    DspLayoutFraming,
    /// The pre-laid section's CRC-32 is not the one in its header.
    DspLayoutChecksum {
        /// CRC-32 in the section header.
        stored: u32,
        /// CRC-32 of the section as read.
        computed: u32,
    },
    /// A layer's pre-laid block is neither absent nor the length its geometry calls for (a
    /// layer without a pre-laid layout must have none).
    DspLayoutLength {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
        /// Block bytes the layer calls for (0 when it has no pre-laid layout).
        expected: u32,
        /// Block bytes in the file.
        found: u32,
    },
    /// A layer's pre-laid block differs from the one derived from its canonical arrays.
    DspLayoutMismatch {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// Bytes after the declared payload, or inside it after the model.
    TrailingBytes {
        /// Number of unexpected bytes.
        extra: usize,
    },
    /// The payload's CRC-32 is not the one in the preamble.
    ChecksumMismatch {
        /// CRC-32 in the preamble.
        stored: u32,
        /// CRC-32 of the payload as read.
        computed: u32,
    },
    /// The payload is not a valid postcard `ModelBody` (includes too many layers, too long a name).
    Decode,
    /// An encoder-only file ([`FLAG_ENCODER_ONLY`]) ends before the full model's CRC-32.
    MissingCodecCrc,
    /// An encoder-only file ([`FLAG_ENCODER_ONLY`]) has decoder layers.
    EncoderOnlyWithDecoder,
    /// Header: zero-sized image or latent.
    BadHeader,
    /// Version 3 frame: zero total stride, a nominal frame that is not `total_stride` square,
    /// a maximum width that is not a positive multiple of it, or a section whose strides do
    /// not multiply to it.
    FrameHeader,
    /// Version 3: a layer that does not scale exactly with the frame (a dense or reshape layer,
    /// a transposed convolution in the encoder or a strided convolution in the decoder, a
    /// non-square kernel, or padding that does not map `n·stride` rows to `n`).
    FrameLayer {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// A section has no computing layer.
    EmptySection {
        /// The section without a computing layer.
        section: Section,
    },
    /// A layer's input or output shape has a zero dimension.
    ZeroDimension {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// Kernel or stride of zero, or padding not smaller than the kernel.
    BadGeometry {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// A layer's input is not the previous layer's output (shape or quantization).
    ShapeChain {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// A layer's output shape does not follow from its input and geometry.
    OutputShape {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// The weight array length does not follow from the operator and shapes.
    WeightsLength {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
        /// Weight bytes the operator and shapes call for.
        expected: u64,
        /// Weight bytes in the file.
        found: usize,
    },
    /// Bias, multiplier or shift array length is not one per output channel.
    ChannelParamsLength {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// Scale not positive and finite.
    BadQuantParams {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// Negative multiplier or shift outside `-31..=30`.
    BadRequant {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
        /// Output channel, from 0.
        channel: u16,
    },
    /// A lookup table is not 256 entries, or a layer that cannot carry an activation has one.
    BadActivation {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
    },
    /// Some int32 accumulator could overflow.
    AccumulatorOverflow {
        /// Section of the layer.
        section: Section,
        /// Layer index within its section, from 0.
        index: u8,
        /// Output channel, from 0.
        channel: u16,
    },
    /// Encoder output or decoder input is not the declared latent (shape or quantization).
    LatentMismatch,
    /// Decoder output is not the image shape or does not end in a pixel lookup table.
    OutputMismatch,
    /// The declared arena cannot hold the activations.
    ArenaTooSmall {
        /// Arena bytes in the header.
        declared: u32,
        /// Bytes the ping-pong activations need.
        needed: u64,
    },
    /// The entropy section has no quality level.
    NoEntropyLevels,
    /// A level's step array is not one step per latent dimension.
    EntropyStepsLength {
        /// Quality level, from 0.
        level: u8,
    },
    /// A quantization step of zero.
    EntropyStep {
        /// Quality level, from 0.
        level: u8,
        /// Latent dimension, from 0.
        dim: u16,
    },
    /// A level's tables do not add up to one entry per symbol of every dimension.
    EntropyTablesLength {
        /// Quality level, from 0.
        level: u8,
        /// Table bytes the steps call for (2 per symbol).
        expected: usize,
        /// Table bytes in the file.
        found: usize,
    },
    /// A table does not start at 0 or is not strictly increasing (a symbol of zero frequency).
    EntropyTable {
        /// Quality level, from 0.
        level: u8,
        /// Latent dimension, from 0.
        dim: u16,
    },
    /// A level's decoded values are not one byte per symbol of every dimension.
    EntropyValuesLength {
        /// Quality level, from 0.
        level: u8,
        /// Value bytes the steps call for (1 per symbol).
        expected: usize,
        /// Value bytes in the file.
        found: usize,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FormatError::*;
        match *self {
            TooShort { len } => write!(f, "file is {len} bytes, shorter than the {PREAMBLE_LEN}-byte preamble"),
            BadMagic => write!(f, "not an edgevae model (bad magic)"),
            UnsupportedVersion { found } => {
                write!(f, "format version {found} is not supported (this build reads {FORMAT_VERSION_V1} to {FORMAT_VERSION})")
            }
            UnsupportedFlags { found } => write!(f, "unknown flags {found:#06x}"),
            Truncated { declared, available } => {
                write!(f, "truncated: payload declares {declared} bytes, {available} present")
            }
            DspLayoutFraming => write!(f, "pre-laid DSP section missing or malformed"),
            DspLayoutChecksum { stored, computed } => write!(
                f,
                "pre-laid DSP section checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            DspLayoutLength { section, index, expected, found } => write!(
                f,
                "{section} layer {index}: pre-laid block of {found} bytes, expected 0 or {expected}"
            ),
            DspLayoutMismatch { section, index } => write!(
                f,
                "{section} layer {index}: pre-laid block differs from the layer's weights"
            ),
            TrailingBytes { extra } => write!(f, "{extra} unexpected bytes after the model"),
            ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            Decode => write!(f, "payload does not decode as a model (corrupt, or too many layers)"),
            MissingCodecCrc => write!(f, "encoder-only file ends before the full model's CRC-32"),
            EncoderOnlyWithDecoder => write!(f, "encoder-only file has decoder layers"),
            BadHeader => write!(f, "header has a zero-sized image or latent"),
            FrameHeader => write!(f, "frame: total stride, nominal frame, maximum width or strides do not agree"),
            FrameLayer { section, index } => write!(f, "{section} layer {index}: does not scale with the frame (fully convolutional models take only exact-stride convolutions)"),
            EmptySection { section } => write!(f, "{section} has no computing layer"),
            ZeroDimension { section, index } => write!(f, "{section} layer {index}: zero-sized shape"),
            BadGeometry { section, index } => {
                write!(f, "{section} layer {index}: zero kernel/stride or padding >= kernel")
            }
            ShapeChain { section, index } => {
                write!(f, "{section} layer {index}: input does not match the previous output")
            }
            OutputShape { section, index } => {
                write!(f, "{section} layer {index}: output shape inconsistent with the operator")
            }
            WeightsLength { section, index, expected, found } => write!(
                f,
                "{section} layer {index}: {found} weight bytes, expected {expected}"
            ),
            ChannelParamsLength { section, index } => write!(
                f,
                "{section} layer {index}: bias/multiplier/shift not one per output channel"
            ),
            BadQuantParams { section, index } => {
                write!(f, "{section} layer {index}: scale not positive and finite")
            }
            BadRequant { section, index, channel } => write!(
                f,
                "{section} layer {index} channel {channel}: multiplier < 0 or shift outside -31..=30"
            ),
            BadActivation { section, index } => write!(f, "{section} layer {index}: invalid activation"),
            AccumulatorOverflow { section, index, channel } => write!(
                f,
                "{section} layer {index} channel {channel}: int32 accumulator could overflow"
            ),
            LatentMismatch => write!(f, "encoder output / decoder input do not match the latent"),
            OutputMismatch => {
                write!(f, "decoder output is not the image shape ending in a pixel lookup table")
            }
            ArenaTooSmall { declared, needed } => {
                write!(f, "declared arena {declared} bytes, activations need {needed}")
            }
            NoEntropyLevels => write!(f, "entropy section has no quality level"),
            EntropyStepsLength { level } => {
                write!(f, "entropy level {level}: not one quantization step per latent dimension")
            }
            EntropyStep { level, dim } => {
                write!(f, "entropy level {level} dimension {dim}: quantization step is 0")
            }
            EntropyTablesLength { level, expected, found } => write!(
                f,
                "entropy level {level}: {found} bytes of CDF tables, expected {expected}"
            ),
            EntropyValuesLength { level, expected, found } => write!(
                f,
                "entropy level {level}: {found} decoded values, expected {expected}"
            ),
            EntropyTable { level, dim } => write!(
                f,
                "entropy level {level} dimension {dim}: CDF does not start at 0 or is not strictly increasing"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FormatError {}

/// A validated model. Everything [`Model::from_bytes`] checked holds for its lifetime.
#[derive(Clone, Debug, PartialEq)]
pub struct Model<'a> {
    body: ModelBody<'a>,
    /// The codec's identity: the payload CRC, or the full model's for an encoder-only file.
    crc: u32,
    /// The CRC-32 of this file's payload (the preamble's, checked).
    payload_crc: u32,
    encoder_only: bool,
    activation_bytes: u64,
    /// Pre-laid block per layer (encoder, then decoder); empty without [`FLAG_DSP_LAYOUT`].
    blocks: Vec<&'a [u8], { 2 * MAX_LAYERS }>,
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[x, y, z, w]) => u32::from_le_bytes([x, y, z, w]),
        _ => 0,
    }
}

impl<'a> Model<'a> {
    /// Parse and validate a model file. Never panics.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, FormatError> {
        if bytes.len() < PREAMBLE_LEN {
            return Err(FormatError::TooShort { len: bytes.len() });
        }
        if bytes[..4] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = read_u16(bytes, 4);
        if !(FORMAT_VERSION_V1..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let flags = read_u16(bytes, 6);
        if flags & !(FLAG_DSP_LAYOUT | FLAG_ENCODER_ONLY) != 0 {
            return Err(FormatError::UnsupportedFlags { found: flags });
        }
        let declared = read_u32(bytes, 8);
        let stored = read_u32(bytes, 12);
        let rest = &bytes[PREAMBLE_LEN..];
        let payload = match rest.get(..declared as usize) {
            Some(p) => p,
            None => {
                return Err(FormatError::Truncated {
                    declared,
                    available: rest.len(),
                })
            }
        };
        let encoder_only = flags & FLAG_ENCODER_ONLY != 0;
        let (codec_crc, after) = if encoder_only {
            match rest.get(payload.len()..payload.len() + 4) {
                Some(&[a, b, c, d]) => (Some(u32::from_le_bytes([a, b, c, d])), payload.len() + 4),
                _ => return Err(FormatError::MissingCodecCrc),
            }
        } else {
            (None, payload.len())
        };
        if flags & FLAG_DSP_LAYOUT == 0 && rest.len() > after {
            return Err(FormatError::TrailingBytes {
                extra: rest.len() - after,
            });
        }
        let computed = crate::crc::crc32(payload);
        if computed != stored {
            return Err(FormatError::ChecksumMismatch { stored, computed });
        }
        let (body, left) = if version == FORMAT_VERSION_V1 {
            let (v1, left) = postcard::take_from_bytes::<ModelBodyV1<'a>>(payload)
                .map_err(|_| FormatError::Decode)?;
            let body = ModelBody {
                header: v1.header,
                encoder: v1.encoder,
                decoder: v1.decoder,
                entropy: None,
                frame: None,
            };
            (body, left)
        } else {
            postcard::take_from_bytes::<ModelBody<'a>>(payload).map_err(|_| FormatError::Decode)?
        };
        let (body, left) = if version == FORMAT_VERSION {
            let (frame, left) =
                postcard::take_from_bytes::<Frame>(left).map_err(|_| FormatError::Decode)?;
            (
                ModelBody {
                    frame: Some(frame),
                    ..body
                },
                left,
            )
        } else {
            (body, left)
        };
        if !left.is_empty() {
            return Err(FormatError::TrailingBytes { extra: left.len() });
        }
        let activation_bytes = validate_cut(&body, encoder_only)?;
        let blocks = if flags & FLAG_DSP_LAYOUT != 0 {
            let end = PREAMBLE_LEN + after;
            dsp_section(bytes.get(end..).unwrap_or(&[]), end, &body)?
        } else {
            Vec::new()
        };
        Ok(Model {
            body,
            crc: codec_crc.unwrap_or(stored),
            payload_crc: stored,
            encoder_only,
            activation_bytes,
            blocks,
        })
    }

    /// The pre-laid block of layer `index` of `section` ([`crate::layout`]), if the file has one.
    /// Validated: it is exactly the block derived from the layer's canonical arrays. Aligned to
    /// 8 bytes when the file's bytes are.
    pub fn dsp_block(&self, section: Section, index: usize) -> Option<&'a [u8]> {
        let at = match section {
            Section::Encoder if index < self.body.encoder.len() => index,
            Section::Decoder if index < self.body.decoder.len() => {
                self.body.encoder.len().checked_add(index)?
            }
            _ => return None,
        };
        self.blocks.get(at).copied().filter(|b| !b.is_empty())
    }

    /// Model-wide facts.
    pub fn header(&self) -> &Header {
        &self.body.header
    }
    /// Encoder layers, image to latent, in execution order.
    pub fn encoder(&self) -> &[Layer<'a>] {
        &self.body.encoder
    }
    /// Decoder layers, latent to image, in execution order.
    pub fn decoder(&self) -> &[Layer<'a>] {
        &self.body.decoder
    }
    /// The whole parsed payload.
    pub fn body(&self) -> &ModelBody<'a> {
        &self.body
    }
    /// The codec's entropy model, if the file has one.
    pub fn entropy(&self) -> Option<&Entropy<'a>> {
        self.body.entropy.as_ref()
    }
    /// The fully convolutional geometry, for a version 3 model.
    pub fn frame(&self) -> Option<&Frame> {
        self.body.frame.as_ref()
    }
    /// Quality level `level` of the entropy model.
    pub fn level(&self, level: u8) -> Option<&EntropyLevel<'a>> {
        self.entropy()?.levels.get(level as usize)
    }
    /// The codec's identity, which bitstreams and the device name: the CRC-32 of the payload,
    /// or for an encoder-only file the CRC-32 of the full model's payload it was cut from.
    pub fn crc(&self) -> u32 {
        self.crc
    }
    /// The CRC-32 of this file's own payload (equal to [`Self::crc`] unless encoder-only).
    pub fn payload_crc(&self) -> u32 {
        self.payload_crc
    }
    /// True for a file without decoder layers ([`FLAG_ENCODER_ONLY`]): it encodes and codes
    /// exactly as the full model, and cannot decode.
    pub fn encoder_only(&self) -> bool {
        self.encoder_only
    }
    /// Bytes the ping-pong activations need: the largest (input + output) of any computing layer.
    pub fn activation_bytes(&self) -> u64 {
        self.activation_bytes
    }
}

fn pad_to_align(at: usize) -> usize {
    (ALIGN - at % ALIGN) % ALIGN
}

fn all_zero(b: Option<&[u8]>) -> bool {
    b.is_some_and(|b| b.iter().all(|&x| x == 0))
}

/// Parses and checks the pre-laid section: `rest` is the file after the payload, which ends at
/// file offset `end`. Returns one block per layer (empty where the layer has none).
fn dsp_section<'a>(
    rest: &'a [u8],
    end: usize,
    body: &ModelBody<'_>,
) -> Result<Vec<&'a [u8], { 2 * MAX_LAYERS }>, FormatError> {
    let framing = FormatError::DspLayoutFraming;
    let pad = pad_to_align(end);
    if !all_zero(rest.get(..pad)) || rest.len() < pad + 8 {
        return Err(framing);
    }
    let declared = read_u32(rest, pad) as usize;
    let stored = read_u32(rest, pad + 4);
    let data = rest.get(pad + 8..).unwrap_or(&[]);
    if data.len() < declared {
        return Err(framing);
    }
    if data.len() > declared {
        return Err(FormatError::TrailingBytes {
            extra: data.len() - declared,
        });
    }
    let computed = crate::crc::crc32(data);
    if computed != stored {
        return Err(FormatError::DspLayoutChecksum { stored, computed });
    }
    let layers = body
        .encoder
        .iter()
        .map(|l| (Section::Encoder, l))
        .chain(body.decoder.iter().map(|l| (Section::Decoder, l)));
    let n = body.encoder.len() + body.decoder.len();
    // The section starts at a multiple of ALIGN, so offsets in it align like file offsets.
    let table = 4 * n;
    let mut at = table + pad_to_align(table);
    if !all_zero(data.get(table..at)) {
        return Err(framing);
    }
    let mut blocks = Vec::new();
    for (k, (section, layer)) in layers.enumerate() {
        let index = (if section == Section::Decoder {
            k - body.encoder.len()
        } else {
            k
        }) as u8;
        let len = read_u32(data, 4 * k) as usize;
        let expected = crate::layout::block_len(layer);
        if len != 0 && len != expected {
            return Err(FormatError::DspLayoutLength {
                section,
                index,
                expected: expected as u32,
                found: len as u32,
            });
        }
        let block = at
            .checked_add(len)
            .and_then(|e| data.get(at..e))
            .ok_or(framing)?;
        if len != 0 && !crate::layout::block_matches(layer, block) {
            return Err(FormatError::DspLayoutMismatch { section, index });
        }
        at += len;
        let next = at + pad_to_align(at);
        if !all_zero(data.get(at..next)) {
            return Err(framing);
        }
        at = next;
        blocks.push(block).map_err(|_| framing)?;
    }
    if at != declared {
        return Err(framing);
    }
    Ok(blocks)
}

/// Every check the engine relies on. Returns the activation bytes (ping-pong) needed.
pub fn validate(body: &ModelBody<'_>) -> Result<u64, FormatError> {
    validate_cut(body, false)
}

/// [`validate`], for an encoder-only body ([`FLAG_ENCODER_ONLY`]) when `encoder_only`: it must
/// have no decoder layers, and its decoder is not checked.
pub fn validate_cut(body: &ModelBody<'_>, encoder_only: bool) -> Result<u64, FormatError> {
    let h = &body.header;
    if h.input.is_empty() || h.latent == 0 {
        return Err(FormatError::BadHeader);
    }
    if !h.input_q.valid() || !h.latent_q.valid() {
        return Err(FormatError::BadQuantParams {
            section: Section::Header,
            index: 0,
        });
    }
    let latent = Shape::flat(h.latent);
    let enc = check_section(Section::Encoder, &body.encoder, h.input, h.input_q)?;
    if enc.0 != latent || !enc.1.same(&h.latent_q) || enc.2 {
        return Err(FormatError::LatentMismatch);
    }
    let needed = if encoder_only {
        if !body.decoder.is_empty() {
            return Err(FormatError::EncoderOnlyWithDecoder);
        }
        enc.3
    } else {
        let dec = check_section(Section::Decoder, &body.decoder, latent, h.latent_q)?;
        if dec.0 != h.input || !dec.2 {
            return Err(FormatError::OutputMismatch);
        }
        enc.3.max(dec.3)
    };
    if (h.arena_bytes as u64) < needed {
        return Err(FormatError::ArenaTooSmall {
            declared: h.arena_bytes,
            needed,
        });
    }
    if let Some(e) = &body.entropy {
        check_entropy(e, h.latent, h.latent_q.zero_point, encoder_only)?;
    }
    if let Some(f) = &body.frame {
        check_frame(f, body)?;
    }
    Ok(needed)
}

/// A fully convolutional model: convolutions in the encoder, transposed convolutions (and
/// stride-1 convolutions) in the decoder, square kernels, each mapping a multiple of its stride
/// exactly (a convolution of `n·s` rows gives `n`, a transposed one of `n` gives `n·s`,
/// whatever `n`), each section's strides multiplying to `total_stride`, the nominal frame
/// `total_stride` square, and `max_width` a positive multiple of it.
fn check_frame(f: &Frame, body: &ModelBody<'_>) -> Result<(), FormatError> {
    let s = f.total_stride as u32;
    let h = &body.header;
    if s == 0
        || h.input.h as u32 != s
        || h.input.w as u32 != s
        || f.max_width == 0
        || !(f.max_width as u32).is_multiple_of(s)
    {
        return Err(FormatError::FrameHeader);
    }
    for (section, layers) in [
        (Section::Encoder, &body.encoder[..]),
        (Section::Decoder, &body.decoder[..]),
    ] {
        let mut product = 1u32;
        for (i, l) in layers.iter().enumerate() {
            let exact = match l.op {
                // n·s rows give n + floor((2p − k)/s) + 1: exactly n iff k − s ≤ 2p < k.
                Op::Conv2d {
                    kh,
                    kw,
                    stride,
                    pad,
                } => {
                    let (k, st, p) = (kh as u32, stride as u32, 2 * pad as u32);
                    // The decoder may refine at one resolution (stride 1), not downsample.
                    (section == Section::Encoder || stride == 1) && kh == kw && p < k && k <= p + st
                }
                // n rows give (n − 1)·s − 2p + k: exactly n·s iff k − 2p = s.
                Op::ConvTranspose2d {
                    kh,
                    kw,
                    stride,
                    pad,
                } => {
                    section == Section::Decoder
                        && kh == kw
                        && kh as u32 == 2 * pad as u32 + stride as u32
                }
                _ => false,
            };
            if !exact {
                return Err(FormatError::FrameLayer {
                    section,
                    index: i as u8,
                });
            }
            if let Op::Conv2d { stride, .. } | Op::ConvTranspose2d { stride, .. } = l.op {
                product = product.saturating_mul(stride as u32);
            }
        }
        // An encoder-only file has no decoder (validate_cut allows that only with its flag).
        if product != s && !(section == Section::Decoder && layers.is_empty()) {
            return Err(FormatError::FrameHeader);
        }
    }
    Ok(())
}

/// The entropy section's checks; an encoder-only file's levels may have no values.
fn check_entropy(
    e: &Entropy<'_>,
    latent: u16,
    zp: i8,
    encoder_only: bool,
) -> Result<(), FormatError> {
    if e.levels.is_empty() {
        return Err(FormatError::NoEntropyLevels);
    }
    for (l, level) in e.levels.iter().enumerate() {
        let li = l as u8;
        if level.steps.len() != latent as usize {
            return Err(FormatError::EntropyStepsLength { level: li });
        }
        let mut expected = 0usize;
        for (d, &step) in level.steps.iter().enumerate() {
            if step == 0 {
                return Err(FormatError::EntropyStep {
                    level: li,
                    dim: d as u16,
                });
            }
            let (lo, hi) = entropy::symbol_range(zp, step);
            expected += 2 * (hi - lo + 1) as usize;
        }
        if level.cdfs.len() != expected {
            return Err(FormatError::EntropyTablesLength {
                level: li,
                expected,
                found: level.cdfs.len(),
            });
        }
        let cut = encoder_only && level.values.is_empty();
        if level.values.len() != expected / 2 && !cut {
            return Err(FormatError::EntropyValuesLength {
                level: li,
                expected: expected / 2,
                found: level.values.len(),
            });
        }
        let mut at = 0usize;
        for (d, &step) in level.steps.iter().enumerate() {
            let (lo, hi) = entropy::symbol_range(zp, step);
            let n = 2 * (hi - lo + 1) as usize;
            let table = level.cdfs.get(at..at + n).unwrap_or(&[]);
            if Cdf::new(table).is_err() {
                return Err(FormatError::EntropyTable {
                    level: li,
                    dim: d as u16,
                });
            }
            at += n;
        }
    }
    Ok(())
}

/// Checks one section; returns (output shape, output quantization, ends in a LUT, ping-pong bytes).
fn check_section(
    section: Section,
    layers: &[Layer<'_>],
    mut shape: Shape,
    mut q: QParams,
) -> Result<(Shape, QParams, bool, u64), FormatError> {
    if !layers.iter().any(Layer::computes) {
        return Err(FormatError::EmptySection { section });
    }
    let mut pingpong = 0u64;
    let mut ends_in_lut = false;
    for (i, layer) in layers.iter().enumerate() {
        let index = i as u8;
        if layer.input.is_empty() || layer.output.is_empty() {
            return Err(FormatError::ZeroDimension { section, index });
        }
        if layer.input != shape || !layer.input_q.same(&q) {
            return Err(FormatError::ShapeChain { section, index });
        }
        if !layer.input_q.valid() || !layer.output_q.valid() {
            return Err(FormatError::BadQuantParams { section, index });
        }
        check_layer(section, index, layer)?;
        if layer.computes() {
            pingpong = pingpong.max(layer.input.len() + layer.output.len());
        } else if !layer.input_q.same(&layer.output_q) {
            return Err(FormatError::ShapeChain { section, index });
        }
        ends_in_lut = matches!(layer.activation, Activation::Lut { .. });
        shape = layer.output;
        q = layer.effective_output_q();
    }
    Ok((shape, q, ends_in_lut, pingpong))
}

fn check_layer(section: Section, index: u8, l: &Layer<'_>) -> Result<(), FormatError> {
    let (i, o) = (l.input, l.output);
    let geometry = FormatError::BadGeometry { section, index };
    let out_shape = FormatError::OutputShape { section, index };
    // Expected weight count, and the span (per output channel) each channel's weights cover.
    let expected_weights: u64 = match l.op {
        Op::Conv2d {
            kh,
            kw,
            stride,
            pad,
        } => {
            if kh == 0 || kw == 0 || stride == 0 || pad >= kh || pad >= kw {
                return Err(geometry);
            }
            let span = |n: u16, k: u8| -> Option<u64> {
                let padded = n as u64 + 2 * pad as u64;
                padded.checked_sub(k as u64).map(|d| d / stride as u64 + 1)
            };
            if span(i.h, kh) != Some(o.h as u64) || span(i.w, kw) != Some(o.w as u64) {
                return Err(out_shape);
            }
            o.c as u64 * kh as u64 * kw as u64 * i.c as u64
        }
        Op::ConvTranspose2d {
            kh,
            kw,
            stride,
            pad,
        } => {
            if kh == 0 || kw == 0 || stride == 0 || pad >= kh || pad >= kw {
                return Err(geometry);
            }
            let span = |n: u16, k: u8| -> i64 {
                (n as i64 - 1) * stride as i64 - 2 * pad as i64 + k as i64
            };
            if span(i.h, kh) != o.h as i64 || span(i.w, kw) != o.w as i64 {
                return Err(out_shape);
            }
            o.c as u64 * kh as u64 * kw as u64 * i.c as u64
        }
        Op::Dense => {
            if o.h != 1 || o.w != 1 {
                return Err(out_shape);
            }
            o.c as u64 * i.len()
        }
        Op::Reshape => {
            if o.len() != i.len() {
                return Err(out_shape);
            }
            0
        }
    };
    if l.weights.len() as u64 != expected_weights {
        return Err(FormatError::WeightsLength {
            section,
            index,
            expected: expected_weights,
            found: l.weights.len(),
        });
    }
    let channels = if l.computes() { o.c as usize } else { 0 };
    if l.bias.len() != 4 * channels
        || l.multiplier.len() != 4 * channels
        || l.shift.len() != channels
    {
        return Err(FormatError::ChannelParamsLength { section, index });
    }
    match l.activation {
        Activation::None => {}
        Activation::Relu if l.computes() => {}
        Activation::Lut { table, out } if l.computes() && table.len() == 256 => {
            if !out.valid() {
                return Err(FormatError::BadQuantParams { section, index });
            }
        }
        _ => return Err(FormatError::BadActivation { section, index }),
    }
    if channels == 0 {
        return Ok(());
    }
    let per_channel = (expected_weights / channels as u64) as usize;
    let weights = l.weights_i8();
    let shifts = l.shift_i8();
    for c in 0..channels {
        let channel = c as u16;
        let m = Layer::le_i32(l.multiplier, c);
        let s = shifts.get(c).copied().unwrap_or(0);
        if m < 0 || !(-31..=30).contains(&s) {
            return Err(FormatError::BadRequant {
                section,
                index,
                channel,
            });
        }
        let w = weights
            .get(c * per_channel..(c + 1) * per_channel)
            .unwrap_or(&[]);
        let abs_sum: i64 = w.iter().map(|&x| (x as i64).abs()).sum();
        let bound = abs_sum * MAX_ABS_INPUT + (Layer::le_i32(l.bias, c) as i64).abs();
        if bound > i32::MAX as i64 {
            return Err(FormatError::AccumulatorOverflow {
                section,
                index,
                channel,
            });
        }
    }
    Ok(())
}

#[cfg(feature = "alloc")]
impl Model<'_> {
    /// This model's encoder-only file ([`ModelBody::to_encoder_only_bytes`]), with the encoder
    /// blocks this file has; its [`Model::crc`] is this model's. An encoder-only model gives
    /// its own file back, byte for byte.
    pub fn to_encoder_only_bytes(&self) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        self.body
            .to_encoder_only_bytes(self.crc, |section, index, _| {
                self.dsp_block(section, index).is_some()
            })
    }
}

#[cfg(feature = "alloc")]
impl ModelBody<'_> {
    /// The complete file: preamble, the postcard payload, and the pre-laid section
    /// ([`FLAG_DSP_LAYOUT`]) when some layer has a pre-laid layout. The caller sets
    /// `header.arena_bytes`.
    pub fn to_bytes(&self) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        self.to_bytes_with(|_, _, _| true)
    }

    /// The complete file with the pre-laid blocks of the layers `keep(section, index, layer)`
    /// selects among those that have a pre-laid layout (a block costs flash; it pays only where
    /// the DSP kernels take the path that reads it, which can depend on the scratch the arena
    /// leaves). Without any block, the file is [`Self::to_bytes_canonical`]'s.
    pub fn to_bytes_with(
        &self,
        keep: impl Fn(Section, usize, &Layer<'_>) -> bool,
    ) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        self.to_bytes_cut(None, keep)
    }

    /// The encoder-only file a device embeds ([`FLAG_ENCODER_ONLY`]): this body without its
    /// decoder layers and its entropy levels' decoded values, the encoder's pre-laid blocks that `keep` selects, and `codec_crc`, the
    /// full model's payload CRC ([`Model::crc`] of the full file), which the cut file's
    /// [`Model::crc`] returns.
    pub fn to_encoder_only_bytes(
        &self,
        codec_crc: u32,
        keep: impl Fn(Section, usize, &Layer<'_>) -> bool,
    ) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        let mut cut = self.clone();
        cut.decoder.clear();
        if let Some(e) = cut.entropy.as_mut() {
            for level in e.levels.iter_mut() {
                level.values = &[];
            }
        }
        cut.to_bytes_cut(Some(codec_crc), keep)
    }

    fn to_bytes_cut(
        &self,
        codec_crc: Option<u32>,
        keep: impl Fn(Section, usize, &Layer<'_>) -> bool,
    ) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        let layers = || self.encoder.iter().chain(self.decoder.iter());
        let n_enc = self.encoder.len();
        let keep: alloc::vec::Vec<bool> = layers()
            .enumerate()
            .map(|(k, l)| {
                let (section, index) = if k < n_enc {
                    (Section::Encoder, k)
                } else {
                    (Section::Decoder, k - n_enc)
                };
                crate::layout::block_len(l) > 0 && keep(section, index, l)
            })
            .collect();
        if !keep.iter().any(|&k| k) {
            return self.file(0, codec_crc);
        }
        let mut out = self.file(FLAG_DSP_LAYOUT, codec_crc)?;
        out.resize(out.len() + pad_to_align(out.len()), 0);
        let mut section = alloc::vec::Vec::new();
        for (l, &keep) in layers().zip(&keep) {
            let len = if keep { crate::layout::block_len(l) } else { 0 };
            section.extend_from_slice(&(len as u32).to_le_bytes());
        }
        section.resize(section.len() + pad_to_align(section.len()), 0);
        for (l, &keep) in layers().zip(&keep) {
            if keep {
                crate::layout::block_words(l, |w| {
                    section.extend_from_slice(&w.to_le_bytes());
                    true
                });
            }
            section.resize(section.len() + pad_to_align(section.len()), 0);
        }
        out.extend_from_slice(&(section.len() as u32).to_le_bytes());
        out.extend_from_slice(&crate::crc::crc32(&section).to_le_bytes());
        out.extend_from_slice(&section);
        Ok(out)
    }

    /// The file without the pre-laid section (flags 0): every layer runs on the kernels that
    /// read the canonical layout.
    pub fn to_bytes_canonical(&self) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        self.file(0, None)
    }

    /// Preamble and payload, then `codec_crc` (with [`FLAG_ENCODER_ONLY`]) when given.
    fn file(
        &self,
        flags: u16,
        codec_crc: Option<u32>,
    ) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
        let flags = flags | codec_crc.map_or(0, |_| FLAG_ENCODER_ONLY);
        let mut payload = postcard::to_allocvec(self)?;
        let version = match &self.frame {
            Some(f) => {
                payload.extend_from_slice(&postcard::to_allocvec(f)?);
                FORMAT_VERSION
            }
            None => FORMAT_VERSION_V2,
        };
        let mut out = alloc::vec::Vec::with_capacity(PREAMBLE_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crate::crc::crc32(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        if let Some(crc) = codec_crc {
            out.extend_from_slice(&crc.to_le_bytes());
        }
        Ok(out)
    }
}
