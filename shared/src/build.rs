//! Building model files on the host (feature `std`): owned layers with typed arrays, serialised
//! through the borrowed [`Layer`] view. The quantizer produces these; tests and benchmarks use
//! [`synthetic`] for valid models with pseudo-random parameters.

use alloc::vec::Vec;

use crate::format::{
    validate, Activation, Entropy, EntropyLevel, FormatError, Header, Layer, ModelBody, Op,
    QParams, Shape, MAX_LAYERS,
};

/// A layer with owned, typed parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedLayer {
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
    /// int8 weights in the operator's layout (see [`Op`]).
    pub weights: Vec<i8>,
    /// int32 bias per output channel (scale `s_in * s_w[c]`).
    pub bias: Vec<i32>,
    /// Q31 requantization multiplier per output channel, in `[0, 2^31)`.
    pub multiplier: Vec<i32>,
    /// Requantization shift per output channel (> 0 left, < 0 right), in `-31..=30`.
    pub shift: Vec<i8>,
    /// What is applied to the requantized output.
    pub activation: OwnedActivation,
}

/// Owned counterpart of [`Activation`].
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedActivation {
    /// No activation: the output is clamped to `[-128, 127]` only.
    None,
    /// Fused into the output clamp: `[output zero point, 127]`.
    Relu,
    /// 256-entry table indexed by `q + 128`.
    Lut {
        /// The 256 output values.
        table: Vec<u8>,
        /// Quantization of the table's output values.
        out: QParams,
    },
}

/// A whole model with owned layers.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedModel {
    /// Model-wide facts.
    pub header: Header,
    /// Encoder layers, image to latent, in execution order.
    pub encoder: Vec<OwnedLayer>,
    /// Decoder layers, latent to image, in execution order.
    pub decoder: Vec<OwnedLayer>,
    /// The codec's entropy model (written as format version 2).
    pub entropy: Option<OwnedEntropy>,
    /// Fully convolutional geometry (written as format version 3).
    pub frame: Option<crate::format::Frame>,
}

/// Owned counterpart of [`Entropy`]: quality levels, coarsest first.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OwnedEntropy {
    /// The quality levels, coarsest first.
    pub levels: Vec<OwnedLevel>,
}

/// Owned counterpart of [`EntropyLevel`]: a step and a CDF table per latent dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedLevel {
    /// Quantization step per latent dimension, in int8 latent units, `>= 1`.
    pub steps: Vec<u8>,
    /// `cdfs[d]`: one entry per symbol of dimension `d`, from 0, strictly increasing.
    pub cdfs: Vec<Vec<u16>>,
    /// `values[d]`: the latent value each symbol of dimension `d` decodes to.
    pub values: Vec<Vec<i8>>,
}

impl OwnedLevel {
    fn table_bytes(&self) -> Vec<u8> {
        self.cdfs
            .iter()
            .flat_map(|t| t.iter().flat_map(|c| c.to_le_bytes()))
            .collect()
    }

    fn value_bytes(&self) -> Vec<u8> {
        self.values.iter().flatten().map(|&v| v as u8).collect()
    }

    /// Owned copy of a borrowed level.
    pub fn from_level(level: &EntropyLevel<'_>, zero_point: i8) -> Self {
        let dims: Vec<_> = level.tables(zero_point).collect();
        OwnedLevel {
            steps: level.steps.to_vec(),
            cdfs: dims
                .iter()
                .map(|d| (0..d.cdf.len()).map(|i| d.cdf.at(i) as u16).collect())
                .collect(),
            values: dims
                .iter()
                .map(|d| d.values.iter().map(|&v| v as i8).collect())
                .collect(),
        }
    }

    /// The values at the bin centres: `clamp(zp + symbol · step, −128, 127)` per symbol.
    pub fn centre_values(steps: &[u8], zero_point: i8) -> Vec<Vec<i8>> {
        steps
            .iter()
            .map(|&step| {
                let (lo, hi) = crate::entropy::symbol_range(zero_point, step);
                (lo..=hi)
                    .map(|s| crate::entropy::dequantize_latent(s, zero_point, step))
                    .collect()
            })
            .collect()
    }
}

/// Why a model could not be written.
#[derive(Debug)]
pub enum BuildError {
    /// A section has more than [`MAX_LAYERS`] layers.
    TooManyLayers,
    /// The entropy section has more than [`crate::format::MAX_LEVELS`] quality levels.
    TooManyLevels,
    /// The model fails validation.
    Invalid(FormatError),
    /// postcard could not serialise the body.
    Serialize(postcard::Error),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::TooManyLayers => write!(f, "more than {MAX_LAYERS} layers in a section"),
            BuildError::TooManyLevels => {
                write!(f, "more than {} quality levels", crate::format::MAX_LEVELS)
            }
            BuildError::Invalid(e) => write!(f, "model is invalid: {e}"),
            BuildError::Serialize(e) => write!(f, "serialisation failed: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BuildError {}

struct Bytes {
    weights: Vec<u8>,
    bias: Vec<u8>,
    multiplier: Vec<u8>,
    shift: Vec<u8>,
}

impl OwnedLayer {
    /// Quantization of what the next layer reads (after the lookup table, if any).
    pub fn effective_output_q(&self) -> QParams {
        match &self.activation {
            OwnedActivation::Lut { out, .. } => *out,
            _ => self.output_q,
        }
    }

    fn bytes(&self) -> Bytes {
        Bytes {
            weights: self.weights.iter().map(|&w| w as u8).collect(),
            bias: self.bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
            multiplier: self
                .multiplier
                .iter()
                .flat_map(|m| m.to_le_bytes())
                .collect(),
            shift: self.shift.iter().map(|&s| s as u8).collect(),
        }
    }

    fn view<'a>(&'a self, b: &'a Bytes) -> Layer<'a> {
        Layer {
            op: self.op,
            input: self.input,
            output: self.output,
            input_q: self.input_q,
            output_q: self.output_q,
            weights: &b.weights,
            bias: &b.bias,
            multiplier: &b.multiplier,
            shift: &b.shift,
            activation: match &self.activation {
                OwnedActivation::None => Activation::None,
                OwnedActivation::Relu => Activation::Relu,
                OwnedActivation::Lut { table, out } => Activation::Lut { table, out: *out },
            },
        }
    }

    /// Owned copy of a borrowed layer.
    pub fn from_layer(l: &Layer<'_>) -> Self {
        let n = l.shift.len();
        OwnedLayer {
            op: l.op,
            input: l.input,
            output: l.output,
            input_q: l.input_q,
            output_q: l.output_q,
            weights: l.weights_i8().to_vec(),
            bias: (0..n).map(|c| Layer::le_i32(l.bias, c)).collect(),
            multiplier: (0..n).map(|c| Layer::le_i32(l.multiplier, c)).collect(),
            shift: l.shift_i8().to_vec(),
            activation: match l.activation {
                Activation::None => OwnedActivation::None,
                Activation::Relu => OwnedActivation::Relu,
                Activation::Lut { table, out } => OwnedActivation::Lut {
                    table: table.to_vec(),
                    out,
                },
            },
        }
    }
}

impl OwnedModel {
    /// Runs `f` on the borrowed body view of this model with `header`.
    fn with_body<R>(
        &self,
        header: Header,
        f: impl FnOnce(&ModelBody<'_>) -> R,
    ) -> Result<R, BuildError> {
        let enc: Vec<Bytes> = self.encoder.iter().map(OwnedLayer::bytes).collect();
        let dec: Vec<Bytes> = self.decoder.iter().map(OwnedLayer::bytes).collect();
        let tables: Vec<Vec<u8>> = self
            .entropy
            .iter()
            .flat_map(|e| e.levels.iter().map(OwnedLevel::table_bytes))
            .collect();
        let values: Vec<Vec<u8>> = self
            .entropy
            .iter()
            .flat_map(|e| e.levels.iter().map(OwnedLevel::value_bytes))
            .collect();
        let entropy = match &self.entropy {
            None => None,
            Some(e) => {
                let mut levels = heapless::Vec::new();
                for ((l, cdfs), values) in e.levels.iter().zip(&tables).zip(&values) {
                    levels
                        .push(EntropyLevel {
                            steps: &l.steps,
                            cdfs,
                            values,
                        })
                        .map_err(|_| BuildError::TooManyLevels)?;
                }
                Some(Entropy { levels })
            }
        };
        let mut body = ModelBody {
            header,
            encoder: heapless::Vec::new(),
            decoder: heapless::Vec::new(),
            entropy,
            frame: self.frame,
        };
        for (l, b) in self.encoder.iter().zip(&enc) {
            body.encoder
                .push(l.view(b))
                .map_err(|_| BuildError::TooManyLayers)?;
        }
        for (l, b) in self.decoder.iter().zip(&dec) {
            body.decoder
                .push(l.view(b))
                .map_err(|_| BuildError::TooManyLayers)?;
        }
        Ok(f(&body))
    }

    /// Serialise with the header as it is, without validating (for tests of the parser).
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>, BuildError> {
        self.with_body(self.header.clone(), |body| body.to_bytes())?
            .map_err(BuildError::Serialize)
    }

    /// Validate, then serialise, with the pre-laid DSP section where a layer has a pre-laid
    /// layout (see [`crate::layout`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, BuildError> {
        let bytes = self.to_bytes_unchecked()?;
        crate::format::Model::from_bytes(&bytes).map_err(BuildError::Invalid)?;
        Ok(bytes)
    }

    /// Validate, then serialise with the pre-laid blocks of the layers `keep` selects (see
    /// [`ModelBody::to_bytes_with`]).
    pub fn to_bytes_with(
        &self,
        keep: impl Fn(crate::format::Section, usize, &Layer<'_>) -> bool,
    ) -> Result<Vec<u8>, BuildError> {
        let bytes = self
            .with_body(self.header.clone(), |body| body.to_bytes_with(keep))?
            .map_err(BuildError::Serialize)?;
        crate::format::Model::from_bytes(&bytes).map_err(BuildError::Invalid)?;
        Ok(bytes)
    }

    /// Validate, then serialise without the pre-laid section (flags 0, the file every reader
    /// before [`crate::layout::FLAG_DSP_LAYOUT`] wrote).
    pub fn to_bytes_canonical(&self) -> Result<Vec<u8>, BuildError> {
        let bytes = self
            .with_body(self.header.clone(), |body| body.to_bytes_canonical())?
            .map_err(BuildError::Serialize)?;
        crate::format::Model::from_bytes(&bytes).map_err(BuildError::Invalid)?;
        Ok(bytes)
    }

    /// Ping-pong activation bytes (the arena without kernel scratch).
    pub fn activation_bytes(&self) -> Result<u64, BuildError> {
        let header = Header {
            arena_bytes: u32::MAX,
            ..self.header.clone()
        };
        self.with_body(header, validate)?
            .map_err(BuildError::Invalid)
    }

    /// Owned copy of a parsed model.
    pub fn from_model(m: &crate::format::Model<'_>) -> Self {
        OwnedModel {
            header: m.header().clone(),
            encoder: m.encoder().iter().map(OwnedLayer::from_layer).collect(),
            decoder: m.decoder().iter().map(OwnedLayer::from_layer).collect(),
            entropy: m.entropy().map(|e| OwnedEntropy {
                levels: e
                    .levels
                    .iter()
                    .map(|l| OwnedLevel::from_level(l, m.header().latent_q.zero_point))
                    .collect(),
            }),
            frame: m.frame().copied(),
        }
    }
}

/// A valid entropy section with pseudo-random steps (1..=16, coarser for lower levels) and
/// tables (every frequency at least 1, peaked at symbol 0 like a real latent prior).
pub fn synthetic_entropy(
    rng: &mut XorShift,
    latent: usize,
    zero_point: i8,
    levels: usize,
) -> OwnedEntropy {
    let mut out = OwnedEntropy::default();
    for l in 0..levels {
        let mut level = OwnedLevel {
            steps: Vec::new(),
            cdfs: Vec::new(),
            values: Vec::new(),
        };
        for _ in 0..latent {
            let step = 1 + (rng.next_u32() % 16) as u8 + 8 * (levels - 1 - l) as u8;
            let (lo, hi) = crate::entropy::symbol_range(zero_point, step);
            let weights: Vec<u64> = (lo..=hi)
                .map(|s| 1 + (rng.next_u32() as u64 % 64) * 4096 / (1 + (s * s) as u64))
                .collect();
            level.steps.push(step);
            level.cdfs.push(cdf_from_weights(&weights));
        }
        level.values = OwnedLevel::centre_values(&level.steps, zero_point);
        out.levels.push(level);
    }
    out
}

/// A 16-bit CDF table (from 0, strictly increasing, implicit total 2^16) whose frequencies are
/// proportional to `weights`, every symbol at least 1. At most 2^16 symbols; an empty input
/// gives an empty table.
pub fn cdf_from_weights(weights: &[u64]) -> Vec<u16> {
    let n = weights.len() as u64;
    if n == 0 || n > crate::entropy::TOTAL {
        return Vec::new();
    }
    let total: u64 = weights.iter().sum::<u64>().max(1);
    let spare = crate::entropy::TOTAL - n;
    let mut freqs: Vec<u64> = weights
        .iter()
        .map(|&w| 1 + (w as u128 * spare as u128 / total as u128) as u64)
        .collect();
    // Rounding leaves a remainder: give it to the most probable symbol.
    let short = crate::entropy::TOTAL - freqs.iter().sum::<u64>();
    if let Some(i) = (0..freqs.len()).max_by_key(|&i| freqs[i]) {
        freqs[i] += short;
    }
    let mut c = 0u64;
    freqs
        .iter()
        .map(|f| {
            let v = c as u16;
            c += f;
            v
        })
        .collect()
}

/// A small deterministic PRNG (xorshift64*) for synthetic parameters.
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next pseudo-random 32 bits.
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (hi as i64 - lo as i64 + 1) as u64;
        (lo as i64 + (self.next_u32() as u64 % span) as i64) as i32
    }
}

/// Layer sizes of a synthetic conv VAE: `input` image, encoder convs (k3, s2, p1) with the given
/// channel widths, dense to `latent`; decoder dense + reshape, transposed convs (k4, s2, p1) back.
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    /// Image shape (uint8 pixels).
    pub input: Shape,
    /// Output channels of each encoder convolution, in order; the decoder mirrors them.
    pub widths: Vec<u16>,
    /// Latent code length.
    pub latent: u16,
    /// Seed of the parameter PRNG (same seed, same model).
    pub seed: u64,
}

impl SyntheticSpec {
    /// The default edgevae architecture: 28×28×1, widths 32, 64, latent 16.
    pub fn seed_architecture(seed: u64) -> Self {
        SyntheticSpec {
            input: Shape::new(28, 28, 1),
            widths: alloc::vec![32, 64],
            latent: 16,
            seed,
        }
    }
}

fn q(scale: f32, zero_point: i8) -> QParams {
    QParams { scale, zero_point }
}

fn random_layer(
    rng: &mut XorShift,
    op: Op,
    input: Shape,
    output: Shape,
    input_q: QParams,
    act: OwnedActivation,
) -> OwnedLayer {
    let fan_in = match op {
        Op::Conv2d { kh, kw, .. } | Op::ConvTranspose2d { kh, kw, .. } => {
            kh as usize * kw as usize * input.c as usize
        }
        _ => input.len() as usize,
    };
    let n_w = fan_in * output.c as usize;
    let out_zp = match act {
        OwnedActivation::Relu => -128,
        _ => rng.range(-20, 20) as i8,
    };
    OwnedLayer {
        op,
        input,
        output,
        input_q,
        output_q: q(0.05, out_zp),
        weights: (0..n_w).map(|_| rng.range(-127, 127) as i8).collect(),
        bias: (0..output.c).map(|_| rng.range(-20_000, 20_000)).collect(),
        // Scale the accumulator (≈ sqrt(fan_in)·2^12 in size) down to about ±50.
        multiplier: (0..output.c)
            .map(|_| rng.range(1 << 30, i32::MAX))
            .collect(),
        shift: (0..output.c)
            .map(|_| -((fan_in as f32).sqrt().log2() as i8 + 6 + rng.range(0, 1) as i8))
            .collect(),
        activation: act,
    }
}

/// A valid model with pseudo-random parameters and the layer structure of `spec`. The arena is
/// set to the ping-pong activation size plus `scratch` bytes.
pub fn synthetic(spec: &SyntheticSpec, scratch: u32) -> Result<OwnedModel, BuildError> {
    let mut rng = XorShift(spec.seed ^ 0x9E37_79B9_7F4A_7C15);
    let input_q = q(1.0 / 255.0, -128);
    let mut encoder = Vec::new();
    let mut shape = spec.input;
    let mut cur_q = input_q;
    for &w in &spec.widths {
        let out = Shape::new(shape.h.div_ceil(2), shape.w.div_ceil(2), w);
        let op = Op::Conv2d {
            kh: 3,
            kw: 3,
            stride: 2,
            pad: 1,
        };
        let l = random_layer(&mut rng, op, shape, out, cur_q, OwnedActivation::Relu);
        cur_q = l.output_q;
        shape = out;
        encoder.push(l);
    }
    let latent = Shape::flat(spec.latent);
    let mu = random_layer(
        &mut rng,
        Op::Dense,
        shape,
        latent,
        cur_q,
        OwnedActivation::None,
    );
    let latent_q = mu.output_q;
    encoder.push(mu);

    let mut decoder = Vec::new();
    let hidden = shape;
    let flat = Shape::flat(hidden.len() as u16);
    let d = random_layer(
        &mut rng,
        Op::Dense,
        latent,
        flat,
        latent_q,
        OwnedActivation::Relu,
    );
    cur_q = d.output_q;
    decoder.push(d);
    decoder.push(OwnedLayer {
        op: Op::Reshape,
        input: flat,
        output: hidden,
        input_q: cur_q,
        output_q: cur_q,
        weights: Vec::new(),
        bias: Vec::new(),
        multiplier: Vec::new(),
        shift: Vec::new(),
        activation: OwnedActivation::None,
    });
    shape = hidden;
    let mut outs: Vec<u16> = spec.widths.iter().rev().skip(1).copied().collect();
    outs.push(spec.input.c);
    for (i, &c) in outs.iter().enumerate() {
        let last = i + 1 == outs.len();
        let out = Shape::new(shape.h * 2, shape.w * 2, c);
        let act = if last {
            // Sigmoid of the int8 pre-activation, straight to uint8 pixels.
            let table = (0..256)
                .map(|i| {
                    let x = 0.05 * (i as f32 - 128.0);
                    let s = 1.0 / (1.0 + (-x).exp());
                    (s * 255.0 + 0.5) as u8
                })
                .collect();
            OwnedActivation::Lut {
                table,
                out: q(1.0 / 255.0, -128),
            }
        } else {
            OwnedActivation::Relu
        };
        let op = Op::ConvTranspose2d {
            kh: 4,
            kw: 4,
            stride: 2,
            pad: 1,
        };
        let l = random_layer(&mut rng, op, shape, out, cur_q, act);
        cur_q = l.effective_output_q();
        shape = out;
        decoder.push(l);
    }
    let header = Header {
        name: heapless::String::try_from("synthetic").unwrap_or_default(),
        input: spec.input,
        input_q,
        latent: spec.latent,
        latent_q,
        arena_bytes: 0,
    };
    let entropy = Some(synthetic_entropy(
        &mut rng,
        spec.latent as usize,
        latent_q.zero_point,
        2,
    ));
    let mut m = OwnedModel {
        header,
        encoder,
        decoder,
        entropy,
        frame: None,
    };
    let need = m.activation_bytes()?;
    m.header.arena_bytes = (need as u32).saturating_add(scratch);
    Ok(m)
}

/// Structure of a synthetic fully convolutional model ([`synthetic_frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Image channels (1 grey, 3 RGB).
    pub channels: u16,
    /// Output channels of the encoder's convolutions, the latent last: the first is 5×5/2
    /// (pad 2), the others 3×3/2 (pad 1); ReLU on all but the latent.
    pub encoder: Vec<u16>,
    /// Output channels of the decoder's 4×4/2 transposed convolutions before the image one.
    pub decoder: Vec<u16>,
    /// Widest frame the model declares.
    pub max_width: u16,
    /// Seed of the parameters.
    pub seed: u64,
}

impl FrameSpec {
    /// The photo codec's structure (1 or 3 channels; 24/16 → 32 → 48 → 64, decoder 64/48/32)
    /// at 640 pixels wide.
    pub fn photo(channels: u16, seed: u64) -> Self {
        FrameSpec {
            channels,
            encoder: vec![if channels == 1 { 24 } else { 16 }, 32, 48, 64],
            decoder: vec![64, 48, 32],
            max_width: 640,
            seed,
        }
    }
}

/// The clamp table of a photo decoder's last layer: int8 `q` (scale 1/255, zero point −128)
/// to the uint8 pixel `q + 128`.
pub fn identity_pixel_table() -> Vec<u8> {
    (0..=255u8).collect()
}

/// A valid fully convolutional model (format version 3) with pseudo-random parameters: the
/// structure of `spec` at its nominal frame (total stride S = 2^encoder layers, S×S pixels),
/// an entropy section of 3 levels over the latent channels, and the arena of the nominal frame.
pub fn synthetic_frame(spec: &FrameSpec) -> Result<OwnedModel, BuildError> {
    let mut rng = XorShift(spec.seed ^ 0xF4A3_E0C1_D2B5_9687);
    let input_q = q(1.0 / 255.0, -128);
    let s = 1u16 << spec.encoder.len().min(15);
    let mut shape = Shape::new(s, s, spec.channels);
    let mut cur_q = input_q;
    let mut encoder = Vec::new();
    for (i, &w) in spec.encoder.iter().enumerate() {
        let last = i + 1 == spec.encoder.len();
        let (k, p) = if i == 0 { (5, 2) } else { (3, 1) };
        let op = Op::Conv2d {
            kh: k,
            kw: k,
            stride: 2,
            pad: p,
        };
        let out = Shape::new(shape.h / 2, shape.w / 2, w);
        let act = if last {
            OwnedActivation::None
        } else {
            OwnedActivation::Relu
        };
        let l = random_layer(&mut rng, op, shape, out, cur_q, act);
        cur_q = l.output_q;
        shape = out;
        encoder.push(l);
    }
    let latent = shape.c;
    let latent_q = cur_q;
    let mut decoder = Vec::new();
    let mut outs = spec.decoder.clone();
    outs.push(spec.channels);
    for (i, &c) in outs.iter().enumerate() {
        let last = i + 1 == outs.len();
        let out = Shape::new(shape.h * 2, shape.w * 2, c);
        let act = if last {
            OwnedActivation::Lut {
                table: identity_pixel_table(),
                out: q(1.0 / 255.0, -128),
            }
        } else {
            OwnedActivation::Relu
        };
        let op = Op::ConvTranspose2d {
            kh: 4,
            kw: 4,
            stride: 2,
            pad: 1,
        };
        let mut l = random_layer(&mut rng, op, shape, out, cur_q, act);
        if last {
            l.output_q = q(1.0 / 255.0, -128);
        }
        cur_q = l.effective_output_q();
        shape = out;
        decoder.push(l);
    }
    let header = Header {
        name: heapless::String::try_from("synthetic-frame").unwrap_or_default(),
        input: Shape::new(s, s, spec.channels),
        input_q,
        latent,
        latent_q,
        arena_bytes: 0,
    };
    let entropy = Some(synthetic_entropy(
        &mut rng,
        latent as usize,
        latent_q.zero_point,
        3,
    ));
    let mut m = OwnedModel {
        header,
        encoder,
        decoder,
        entropy,
        frame: Some(crate::format::Frame {
            total_stride: s,
            max_width: spec.max_width,
        }),
    };
    let need = m.activation_bytes()?;
    m.header.arena_bytes = need as u32;
    Ok(m)
}
