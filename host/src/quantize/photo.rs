//! The photo codec ([`crate::model::photo`]) as an int8 model file (format version 3): the
//! same integer scheme as the VAE (per-channel int8 weights, per-tensor activations calibrated
//! on training crops, Q31 requantisation), the layers stored at the nominal 16×16 frame, and
//! the entropy section per quality level and latent channel.
//!
//! - Latent: the last analysis layer's int8 output `q` (scale `s`, zero point `zp`). Level `l`
//!   sends channel `c` as `round((q − zp) / step)` with `step = round(Δ[l][c] / s)` (at least
//!   1), `Δ` the model's learned step; its table counts those symbols over the int8 latents of
//!   training crops, and each symbol decodes to the mean latent of its bin.
//! - Output: the last synthesis layer is requantised to scale 1/255, zero point −128, and a
//!   table maps `q` to the pixel `q + 128`: the clamp to [0, 255] the float model applies.
//! - [`FrameRef`]: the model file run on whole frames by the firmware's scalar kernels
//!   ([`edgevae_firmware::frame`]), the definition every int8 figure and bitstream uses.

use burn::prelude::*;
use edgevae_firmware::engine::{EngineError, Scalar};
use edgevae_firmware::frame::{decode_frame, encode_frame, frame_buffer_len, frame_scratch_len};
use edgevae_shared::build::{identity_pixel_table, OwnedActivation, OwnedModel};
use edgevae_shared::format::{Frame, Header, Model, Op, QParams, Section, Shape};
use rayon::prelude::*;

use super::entropy::build_entropy;
use super::int8::{choose_qparams, forward, quantize_layer, ranges, Calibration, FloatLayer};
use crate::error::Error;
use crate::model::layers::Activation as Act;
use crate::model::photo::{plain, PhotoCodec, TOTAL_STRIDE};

/// The photo codec's float layers in device layout (HWC, weights `[oc][ky][kx][ic]`) at the
/// nominal frame (16×16 pixels, one latent position): (analysis, synthesis).
pub fn float_layers(codec: &PhotoCodec) -> (Vec<FloatLayer>, Vec<FloatLayer>) {
    let s = TOTAL_STRIDE as u16;
    let mut shape = Shape::new(s, s, codec.enc[0].weight.val().dims()[1] as u16);
    let mut enc = Vec::new();
    let last = codec.enc.len() - 1;
    for (i, c) in codec.enc.iter().enumerate() {
        let [oc, ic, k, _] = c.weight.val().dims();
        let pad = match c.padding {
            burn::nn::PaddingConfig2d::Explicit(t, ..) => t,
            _ => 0,
        };
        let wt = plain(c.weight.val().into_data());
        let mut w = vec![0f32; oc * k * k * ic];
        for o in 0..oc {
            for j in 0..ic {
                for ky in 0..k {
                    for kx in 0..k {
                        w[((o * k + ky) * k + kx) * ic + j] = wt[((o * ic + j) * k + ky) * k + kx];
                    }
                }
            }
        }
        let st = c.stride[0];
        let out = Shape::new(shape.h / st as u16, shape.w / st as u16, oc as u16);
        enc.push(FloatLayer {
            name: format!("analysis{}", i + 1),
            op: Op::Conv2d {
                kh: k as u8,
                kw: k as u8,
                stride: st as u8,
                pad: pad as u8,
            },
            input: shape,
            output: out,
            weights: w,
            bias: c
                .bias
                .as_ref()
                .map(|b| plain(b.val().into_data()))
                .unwrap_or_else(|| vec![0.0; oc]),
            act: if i < last { Act::Relu } else { Act::Identity },
        });
        shape = out;
    }
    let mut dec = Vec::new();
    let last = codec.dec.len() - 1;
    for (i, c) in codec.dec.iter().enumerate() {
        let [ic, oc, k, _] = c.weight.val().dims();
        let wt = plain(c.weight.val().into_data());
        let mut w = vec![0f32; oc * k * k * ic];
        for o in 0..oc {
            for j in 0..ic {
                for ky in 0..k {
                    for kx in 0..k {
                        w[((o * k + ky) * k + kx) * ic + j] = wt[((j * oc + o) * k + ky) * k + kx];
                    }
                }
            }
        }
        let st = c.stride[0];
        let out = Shape::new(shape.h * st as u16, shape.w * st as u16, oc as u16);
        dec.push(FloatLayer {
            name: format!("synthesis{}", i + 1),
            op: Op::ConvTranspose2d {
                kh: k as u8,
                kw: k as u8,
                stride: st as u8,
                pad: c.padding[0] as u8,
            },
            input: shape,
            output: out,
            weights: w,
            bias: c
                .bias
                .as_ref()
                .map(|b| plain(b.val().into_data()))
                .unwrap_or_else(|| vec![0.0; oc]),
            act: if i < last { Act::Relu } else { Act::Identity },
        });
        shape = out;
    }
    (enc, dec)
}

/// `layers` with their shapes for an input of `rows × cols` (strides scale the rest).
pub fn layers_at(layers: &[FloatLayer], rows: u16, cols: u16) -> Vec<FloatLayer> {
    let (mut r, mut c) = (rows, cols);
    layers
        .iter()
        .map(|l| {
            let (oh, ow) = match l.op {
                Op::Conv2d { stride, .. } => (r / stride as u16, c / stride as u16),
                Op::ConvTranspose2d { stride, .. } => (r * stride as u16, c * stride as u16),
                _ => (r, c),
            };
            let out = FloatLayer {
                input: Shape::new(r, c, l.input.c),
                output: Shape::new(oh, ow, l.output.c),
                ..l.clone()
            };
            (r, c) = (oh, ow);
            out
        })
        .collect()
}

/// Runs float layers (already at the input's shape) on `x` (HWC).
pub fn run_float(layers: &[FloatLayer], x: &[f32]) -> Vec<f32> {
    let mut cur = x.to_vec();
    for l in layers {
        cur = forward(l, &cur);
        if l.act == Act::Relu {
            cur.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
    cur
}

/// NCHW crops (what [`crate::data::photos::PhotoSet::crops`] draws) → one HWC buffer each.
pub fn nchw_to_hwc(crops: &[f32], n: usize, c: usize, side: usize) -> Vec<Vec<f32>> {
    let px = side * side;
    (0..n)
        .map(|i| {
            let img = &crops[i * c * px..(i + 1) * c * px];
            let mut out = vec![0f32; c * px];
            for ch in 0..c {
                for p in 0..px {
                    out[p * c + ch] = img[ch * px + p];
                }
            }
            out
        })
        .collect()
}

/// What [`quantize_photo`] produced.
#[derive(Clone, Debug)]
pub struct PhotoQuant {
    /// The model file (format version 3).
    pub bytes: Vec<u8>,
    /// Per level, the smallest and largest `Δ / s` before rounding to an integer step.
    pub step_ratios: Vec<(f32, f32)>,
    /// The int8 latent's quantisation.
    pub latent_q: QParams,
}

/// Quantizes `codec`, calibrating on `crops` (HWC, values in [0, 1], `side × side` pixels,
/// `side` a multiple of 16; their uint8 pixels are `round(255·v)`), and fits the entropy tables
/// to the int8 latents of the same crops. `max_width` is the widest frame the file declares.
pub fn quantize_photo(
    codec: &PhotoCodec,
    crops: &[Vec<f32>],
    side: usize,
    name: &str,
    max_width: u16,
) -> Result<PhotoQuant, Error> {
    if crops.is_empty() || side == 0 || !side.is_multiple_of(TOTAL_STRIDE) {
        return Err(Error::Invalid(
            "photo quantization needs calibration crops with sides a multiple of 16".into(),
        ));
    }
    let (enc, dec) = float_layers(codec);
    let channels = enc[0].input.c as usize;
    let m = codec.latent();
    let side16 = side as u16;
    let enc_at = layers_at(&enc, side16, side16);
    let cal = Calibration::Percentile(99.99);
    let enc_ranges = ranges(&enc_at, crops, cal);
    // The decoder sees dequantized latents: calibrate it on every level in turn.
    let steps: Vec<Vec<f32>> = (0..codec.levels()).map(|l| codec.steps_vec(l)).collect();
    let ys: Vec<Vec<f32>> = crops.par_iter().map(|x| run_float(&enc_at, x)).collect();
    let y_hats: Vec<Vec<f32>> = ys
        .iter()
        .enumerate()
        .map(|(i, y)| {
            let d = &steps[i % steps.len()];
            y.iter()
                .enumerate()
                .map(|(k, &v)| {
                    let s = d[k % m];
                    (v / s).round() * s
                })
                .collect()
        })
        .collect();
    let ls = side16 / TOTAL_STRIDE as u16;
    let dec_at = layers_at(&dec, ls, ls);
    let dec_ranges = ranges(&dec_at, &y_hats, cal);

    let input_q = QParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };
    let pixel_q = QParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };
    let mut q = input_q;
    let mut encoder = Vec::new();
    for (l, &r) in enc.iter().zip(&enc_ranges) {
        let out_q = choose_qparams(r.0, r.1);
        encoder.push(quantize_layer(l, q, out_q));
        q = out_q;
    }
    let latent_q = q;
    let mut decoder = Vec::new();
    let last = dec.len() - 1;
    for (i, (l, &r)) in dec.iter().zip(&dec_ranges).enumerate() {
        let out_q = if i == last {
            pixel_q
        } else {
            choose_qparams(r.0, r.1)
        };
        let mut ql = quantize_layer(l, q, out_q);
        if i == last {
            ql.activation = OwnedActivation::Lut {
                table: identity_pixel_table(),
                out: QParams {
                    scale: 1.0 / 255.0,
                    zero_point: 0,
                },
            };
        }
        decoder.push(ql);
        q = out_q;
    }
    let s = TOTAL_STRIDE as u16;
    let mut owned = OwnedModel {
        header: Header {
            name: heapless::String::try_from(name)
                .map_err(|_| Error::Invalid(format!("model name {name:?} is over 32 bytes")))?,
            input: Shape::new(s, s, channels as u16),
            input_q,
            latent: m as u16,
            latent_q,
            arena_bytes: 0,
        },
        encoder,
        decoder,
        entropy: None,
        frame: Some(Frame {
            total_stride: s,
            max_width,
        }),
    };
    super::declare_arena(&mut owned)?;
    let bytes = owned.to_bytes_canonical()?;

    // Integer steps per level and channel, and the tables from the int8 latents of the crops.
    let model = Model::from_bytes(&bytes)?;
    let pixels: Vec<Vec<u8>> = crops
        .iter()
        .map(|x| {
            x.iter()
                .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect()
        })
        .collect();
    let latents: Vec<Vec<i8>> = pixels
        .par_iter()
        .map(|px| FrameRef::new(&model).encode(px, side, side))
        .collect::<Result<Vec<_>, _>>()?;
    let positions: Vec<Vec<i8>> = latents
        .iter()
        .flat_map(|z| z.chunks(m).map(<[i8]>::to_vec).collect::<Vec<_>>())
        .collect();
    let sc = latent_q.scale;
    let mut step_ratios = Vec::new();
    let levels: Vec<Vec<u8>> = steps
        .iter()
        .map(|d| {
            let ratios: Vec<f32> = d.iter().map(|&v| v / sc).collect();
            let lo = ratios.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = ratios.iter().copied().fold(0.0, f32::max);
            step_ratios.push((lo, hi));
            ratios
                .iter()
                .map(|&r| r.round().clamp(1.0, 255.0) as u8)
                .collect()
        })
        .collect();
    owned.entropy = Some(build_entropy(&model, &positions, &levels));
    let bytes = owned.to_bytes_canonical()?;
    Ok(PhotoQuant {
        bytes,
        step_ratios,
        latent_q,
    })
}

/// A fully convolutional model file run on whole frames with the firmware's scalar kernels.
pub struct FrameRef<'m> {
    model: &'m Model<'m>,
}

impl<'m> FrameRef<'m> {
    /// The reference for `model` (any model; frames are checked per call).
    pub fn new(model: &'m Model<'m>) -> Self {
        FrameRef { model }
    }

    /// The model's total stride, or an error for a model that is not fully convolutional.
    pub fn stride(&self) -> Result<usize, EngineError> {
        edgevae_firmware::frame::frame_of(self.model).map(|f| f.total_stride as usize)
    }

    /// A frame (`rows × cols × C` uint8, sides multiples of the stride) → its int8 latent map.
    pub fn encode(&self, pixels: &[u8], rows: usize, cols: usize) -> Result<Vec<i8>, EngineError> {
        let s = self.stride()?;
        let size = EngineError::FrameSize { rows, cols };
        let n = frame_buffer_len(self.model, Section::Encoder, rows, cols).ok_or(size)?;
        let sc =
            frame_scratch_len::<Scalar>(self.model, Section::Encoder, rows, cols).ok_or(size)?;
        let (mut a, mut b, mut scratch) = (vec![0i8; n], vec![0i8; n], vec![0u8; sc]);
        let mut z = vec![0i8; (rows / s) * (cols / s) * self.model.header().latent as usize];
        encode_frame::<Scalar>(
            self.model,
            pixels,
            rows,
            cols,
            &mut z,
            &mut a,
            &mut b,
            &mut scratch,
        )?;
        Ok(z)
    }

    /// A latent map of `rows × cols` positions → uint8 pixels (`rows·S × cols·S × C`).
    pub fn decode(&self, latent: &[i8], rows: usize, cols: usize) -> Result<Vec<u8>, EngineError> {
        let s = self.stride()?;
        let size = EngineError::FrameSize { rows, cols };
        let n = frame_buffer_len(self.model, Section::Decoder, rows, cols).ok_or(size)?;
        let sc =
            frame_scratch_len::<Scalar>(self.model, Section::Decoder, rows, cols).ok_or(size)?;
        let (mut a, mut b, mut scratch) = (vec![0i8; n], vec![0i8; n], vec![0u8; sc]);
        let c = self.model.header().input.c as usize;
        let mut px = vec![0u8; rows * s * cols * s * c];
        decode_frame::<Scalar>(
            self.model,
            latent,
            rows,
            cols,
            &mut px,
            &mut a,
            &mut b,
            &mut scratch,
        )?;
        Ok(px)
    }
}

/// The float codec on one frame (HWC uint8, sides multiples of 16) at `level`: the
/// reconstruction (uint8, clamped and rounded), the integer symbols (latent positions in raster
/// order, channels innermost) and their ideal code length in bits under the learned density,
/// on Burn's device.
pub fn float_round_trip(
    codec: &PhotoCodec,
    pixels: &[u8],
    rows: usize,
    cols: usize,
    channels: usize,
    level: usize,
) -> (Vec<u8>, Vec<i32>, f64) {
    let device = codec.device();
    let mut chw = vec![0f32; pixels.len()];
    for p in 0..rows * cols {
        for c in 0..channels {
            chw[c * rows * cols + p] = pixels[p * channels + c] as f32 / 255.0;
        }
    }
    let x = Tensor::<4>::from_data(TensorData::new(chw, [1, channels, rows, cols]), &device);
    let y = codec.analysis(x);
    let s = codec.quantize(y, level);
    let sym = plain(s.clone().swap_dims(1, 3).swap_dims(1, 2).into_data());
    let y_hat = codec.dequantize(s, level);
    let bits = plain(codec.bits(y_hat.clone(), codec.steps(level)).into_data())
        .first()
        .map_or(0.0, |&b| f64::from(b));
    let x_hat = codec.synthesis(y_hat).clamp(0.0, 1.0);
    let out = plain(x_hat.into_data());
    let mut hwc = vec![0u8; pixels.len()];
    for p in 0..rows * cols {
        for c in 0..channels {
            hwc[p * channels + c] = (out[c * rows * cols + p] * 255.0).round() as u8;
        }
    }
    (hwc, sym.iter().map(|&v| v as i32).collect(), bits)
}
