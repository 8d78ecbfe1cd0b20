//! The photo codec ([`crate::model::photo`]) as an int8 model file (format version 3): the
//! same integer scheme as the VAE (per-channel int8 weights, per-tensor activations calibrated
//! on training crops, Q31 requantisation), the layers stored at the nominal 16×16 frame, and
//! the entropy section per quality level and latent channel.
//!
//! - Latent: the last analysis layer's int8 output `q` (scale `s`, zero point 0). Level `l`
//!   sends channel `c` as `round(q / step)` with `step = round(Δ[l][c] / u[c])` (at least 1),
//!   `Δ` the model's learned step; its table counts those symbols over the int8 latents of
//!   training crops, and each symbol decodes to the mean latent of its bin.
//! - Latent grid ([`latent_units`]): one per-tensor scale cannot serve 64 channels whose ranges
//!   and finest steps differ (with the range of the widest channel, the finest steps were 1.5–4
//!   int8 units: each latent rounded twice and steps off by up to 30 %). Each channel gets its
//!   own unit `u[c] = Δ_finest[c] / n[c]`, `n[c]` the largest integer that still spans the
//!   channel's range in int8: the finest level's step is exactly `n[c]` units, coarser ones are
//!   off by at most `u/2`. The units are folded into the network, which is exact in float: the
//!   last analysis layer's output channel `c` is scaled by `g[c] = s / u[c]` (its per-channel
//!   weight scale absorbs it) and the first synthesis layer's input channel `c` by `1 / g[c]`
//!   (cross-layer equalisation; Nagel et al. 2019).
//! - Hidden activations ([`equalise`]): per-tensor int8 ranges are set by the widest channel,
//!   so every ReLU activation's channels are scaled to the same range first (output channel of
//!   one layer up, input channel of the next down: exact in float), and the ranges are the
//!   least-squares ones over all calibration crops (`Calibration::Mse`; they were the minimum
//!   and maximum when, on the first grey model, the two moved
//!   the int8 codec from 2.4–3.5 dB below the float one at the finer levels to 0.2–0.9 dB).
//! - Output: the last synthesis layer is requantised to scale 1/255, zero point −128, and a
//!   table maps `q` to the pixel `q + 128`: the clamp to [0, 255] the float model applies.
//! - Quantization-aware training ([`QuantPlan`], [`qat_targets`]): the int8 file's loss is
//!   mostly its weights (on the widened grey model at setting 9, int8 weights alone cost 0.31
//!   dB, rounded activations 0.08, the latent grid 0.09; `host/examples/int8_gap.rs`).
//!   `train --qat` fine-tunes with both rounded; the gains and units are frozen in a plan so
//!   that the file rounds every weight to the grid training used.
//! - [`FrameRef`]: the model file run on whole frames by the firmware's scalar kernels
//!   ([`edgevae_firmware::frame`]), the definition every int8 figure and bitstream uses.

use burn::prelude::*;
use edgevae_firmware::engine::{EngineError, Scalar};
use edgevae_firmware::frame::{decode_frame, encode_frame, frame_buffer_len, frame_scratch_len};
use edgevae_shared::build::{identity_pixel_table, OwnedActivation, OwnedModel};
use edgevae_shared::format::{Frame, Header, Model, Op, QParams, Section, Shape};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

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
    /// Per level, the largest relative error of an integer step against `Δ / u`.
    pub step_errors: Vec<f32>,
    /// The int8 latent's quantisation.
    pub latent_q: QParams,
    /// Per latent channel, the float latent value of one int8 unit ([`latent_units`]).
    pub units: Vec<f32>,
}

/// Quantizes `codec`, calibrating on `crops` (HWC, values in [0, 1], `side × side` pixels,
/// `side` a multiple of 16; their uint8 pixels are `round(255·v)`), and fits the entropy tables
/// to the int8 latents of the same crops. `max_width` is the widest frame the file declares;
/// `plan` fixes the gains and units (a quantization-aware run's), else they are measured.
pub fn quantize_photo(
    codec: &PhotoCodec,
    crops: &[Vec<f32>],
    side: usize,
    name: &str,
    max_width: u16,
    plan: Option<&QuantPlan>,
) -> Result<PhotoQuant, Error> {
    check_crops(crops, side)?;
    let Calibrated {
        enc,
        dec,
        enc_ranges,
        dec_ranges,
        steps,
        units,
        latent_scale,
        ..
    } = calibrate(codec, crops, side, plan)?;
    let channels = enc[0].input.c as usize;
    let m = codec.latent();
    let input_q = QParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };
    let pixel_q = QParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };
    let latent_q = QParams {
        scale: latent_scale,
        zero_point: 0,
    };
    let mut q = input_q;
    let mut encoder = Vec::new();
    let last = enc.len() - 1;
    for (i, (l, &r)) in enc.iter().zip(&enc_ranges).enumerate() {
        let out_q = if i == last {
            latent_q
        } else {
            choose_qparams(r.0, r.1)
        };
        encoder.push(quantize_layer(l, q, out_q));
        q = out_q;
    }
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
    let mut step_errors = Vec::new();
    let levels: Vec<Vec<u8>> = steps
        .iter()
        .map(|d| {
            let ratios: Vec<f32> = d.iter().map(|&v| v / sc).collect();
            let lo = ratios.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = ratios.iter().copied().fold(0.0, f32::max);
            step_ratios.push((lo, hi));
            step_errors.push(
                ratios
                    .iter()
                    .map(|&r| (r.round().clamp(1.0, 255.0) - r).abs() / r)
                    .fold(0.0, f32::max),
            );
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
        step_errors,
        latent_q,
        units,
    })
}

/// The float layers the quantizer turns into int8 ones, and what it measured on the
/// calibration crops.
struct Calibrated {
    /// Analysis layers, equalised, the latent gains folded in (nominal shapes).
    enc: Vec<FloatLayer>,
    /// Synthesis layers, likewise.
    dec: Vec<FloatLayer>,
    /// Each analysis layer's output range (equalised units).
    enc_ranges: Vec<(f32, f32)>,
    /// Each synthesis layer's output range.
    dec_ranges: Vec<(f32, f32)>,
    /// Each hidden analysis boundary's equalisation gains.
    enc_gains: Vec<Vec<f32>>,
    /// Each hidden synthesis boundary's equalisation gains.
    dec_gains: Vec<Vec<f32>>,
    /// The rate knob's steps in the folded latent.
    steps: Vec<Vec<f32>>,
    /// Per latent channel, the float value of one int8 unit.
    units: Vec<f32>,
    /// The int8 latent's scale.
    latent_scale: f32,
}

fn calibrate(
    codec: &PhotoCodec,
    crops: &[Vec<f32>],
    side: usize,
    plan: Option<&QuantPlan>,
) -> Result<Calibrated, Error> {
    let (mut enc, mut dec) = float_layers(codec);
    let m = codec.latent();
    let side16 = side as u16;
    // Each hidden activation's range is the one whose int8 grid has the least squared error
    // over values sampled evenly from every calibration crop (`Calibration::Mse`). A fixed
    // percentile of the first crops' values clipped the edges photos are made of (1.1 dB at
    // the finest level); min/max over every crop let a few extreme values set the step of all
    // the others: the widened grey model's int8 file went from +8.0 % to +6.6 % BD-rate
    // against JPEG with the least-squares range (0.12 dB at 0.5 bpp, all in the synthesis).
    let cal = Calibration::Mse;
    if let Some(p) = plan {
        p.check(codec)?;
    }
    let enc_gains = match plan {
        Some(p) => apply_gains(&mut enc, &p.enc_gains),
        None => equalise(&mut enc, side16, side16, crops),
    };
    let enc_at = layers_at(&enc, side16, side16);
    let enc_ranges = ranges(&enc_at, crops, cal);
    let mut steps: Vec<Vec<f32>> = codec.knob();
    let mut ys: Vec<Vec<f32>> = crops.par_iter().map(|x| run_float(&enc_at, x)).collect();
    // Per-channel latent units folded into the network (module docs): from here on `ys`,
    // `steps` and the layers are in the folded latent, whose int8 scale is `latent_scale`.
    let units = match plan {
        Some(p) => p.units.clone(),
        None => latent_units(&ys, &steps, m),
    };
    let latent_scale = geometric_mean(&units);
    let gains: Vec<f32> = units.iter().map(|&u| latent_scale / u).collect();
    fold_latent_gains(&mut enc, &mut dec, &gains);
    for y in &mut ys {
        y.iter_mut()
            .enumerate()
            .for_each(|(k, v)| *v *= gains[k % m]);
    }
    for d in &mut steps {
        d.iter_mut().zip(&gains).for_each(|(v, &g)| *v *= g);
    }
    // The decoder sees dequantized latents: calibrate it on every level in turn.
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
    let dec_gains = match plan {
        Some(p) => apply_gains(&mut dec, &p.dec_gains),
        None => equalise(&mut dec, ls, ls, &y_hats),
    };
    let dec_at = layers_at(&dec, ls, ls);
    let dec_ranges = ranges(&dec_at, &y_hats, cal);

    Ok(Calibrated {
        enc,
        dec,
        enc_ranges,
        dec_ranges,
        enc_gains,
        dec_gains,
        steps,
        units,
        latent_scale,
    })
}

/// The rescalings the quantizer chooses from calibration data: the equalisation gains of every
/// hidden activation and the latent units. Quantization-aware training freezes them (a run's
/// `qat.json`) so that the weights it rounds are the ones the model file will hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantPlan {
    /// Per hidden analysis activation, each channel's gain.
    pub enc_gains: Vec<Vec<f32>>,
    /// Per hidden synthesis activation, each channel's gain.
    pub dec_gains: Vec<Vec<f32>>,
    /// Per latent channel, the float value of one int8 unit.
    pub units: Vec<f32>,
}

impl QuantPlan {
    /// The plan [`quantize_photo`] would make for `codec` from `crops`.
    pub fn measure(codec: &PhotoCodec, crops: &[Vec<f32>], side: usize) -> Result<Self, Error> {
        check_crops(crops, side)?;
        let c = calibrate(codec, crops, side, None)?;
        Ok(QuantPlan {
            enc_gains: c.enc_gains,
            dec_gains: c.dec_gains,
            units: c.units,
        })
    }

    /// Checks that the plan fits `codec`'s widths and holds positive, finite numbers.
    pub fn check(&self, codec: &PhotoCodec) -> Result<(), Error> {
        let widths = |v: &[Vec<f32>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        let enc: Vec<usize> = codec.enc[..codec.enc.len() - 1]
            .iter()
            .map(|c| c.weight.val().dims()[0])
            .collect();
        let dec: Vec<usize> = codec.dec[..codec.dec.len() - 1]
            .iter()
            .map(|c| c.weight.val().dims()[1])
            .collect();
        let fits = widths(&self.enc_gains) == enc
            && widths(&self.dec_gains) == dec
            && self.units.len() == codec.latent();
        let sane = self
            .enc_gains
            .iter()
            .chain(&self.dec_gains)
            .flatten()
            .chain(&self.units)
            .all(|&v| v > 0.0 && v.is_finite());
        if fits && sane {
            Ok(())
        } else {
            Err(Error::Invalid(
                "the quantization plan does not fit the model (widths or non-positive gains)"
                    .into(),
            ))
        }
    }
}

/// What quantization-aware training rounds to, in the float model's units and Burn's layouts.
#[derive(Clone, Debug)]
pub struct QatTargets {
    /// Per hidden analysis activation, each channel's int8 step (the per-tensor scale of its
    /// least-squares range over the channel's gain).
    pub enc_steps: Vec<Vec<f32>>,
    /// Per hidden synthesis activation, likewise.
    pub dec_steps: Vec<Vec<f32>>,
    /// Per analysis layer, the factor `g_out[o] / g_in[i]` the quantizer multiplies weight
    /// `[o][i][ky][kx]` by before rounding it per output channel (Burn's `[out, in, k, k]`).
    pub enc_weight_gains: Vec<Vec<f32>>,
    /// Per synthesis layer, likewise in Burn's transposed layout `[in, out, k, k]`.
    pub dec_weight_gains: Vec<Vec<f32>>,
}

/// The int8 grids of `codec` under `plan`: what [`quantize_photo`] with the same crops and plan
/// would round every hidden activation and every weight to.
pub fn qat_targets(
    codec: &PhotoCodec,
    crops: &[Vec<f32>],
    side: usize,
    plan: &QuantPlan,
) -> Result<QatTargets, Error> {
    check_crops(crops, side)?;
    let c = calibrate(codec, crops, side, Some(plan))?;
    let per = |ranges: &[(f32, f32)], gains: &[Vec<f32>]| -> Vec<Vec<f32>> {
        gains
            .iter()
            .zip(ranges)
            .map(|(g, &(lo, hi))| {
                let scale = choose_qparams(lo, hi).scale;
                g.iter().map(|&gc| scale / gc).collect()
            })
            .collect()
    };
    // Each layer's input and output gains: the image and the pixels are not rescaled, the
    // latent is by `latent_scale / units` (`fold_latent_gains`).
    let fold: Vec<f32> = c.units.iter().map(|&u| c.latent_scale / u).collect();
    let ones = |n: usize| vec![1.0f32; n];
    let mut enc_io: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    let enc_ch = codec.enc[0].weight.val().dims()[1];
    let mut g_in = ones(enc_ch);
    for g in plan.enc_gains.iter().chain([&fold]) {
        enc_io.push((g_in, g.clone()));
        g_in = g.clone();
    }
    let pixels = codec.dec[codec.dec.len() - 1].weight.val().dims()[1];
    let mut dec_io: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    let mut g_in = fold.clone();
    let last = ones(pixels);
    for g in plan.dec_gains.iter().chain([&last]) {
        dec_io.push((g_in, g.clone()));
        g_in = g.clone();
    }
    let expand = |io: &[(Vec<f32>, Vec<f32>)], kernels: Vec<usize>, transposed: bool| {
        io.iter()
            .zip(kernels)
            .map(|((gi, go), kk)| {
                let mut w = Vec::with_capacity(gi.len() * go.len() * kk);
                if transposed {
                    for a in gi {
                        for b in go {
                            w.extend(std::iter::repeat_n(b / a, kk));
                        }
                    }
                } else {
                    for b in go {
                        for a in gi {
                            w.extend(std::iter::repeat_n(b / a, kk));
                        }
                    }
                }
                w
            })
            .collect::<Vec<Vec<f32>>>()
    };
    let kk = |dims: [usize; 4]| dims[2] * dims[3];
    let enc_k = codec
        .enc
        .iter()
        .map(|l| kk(l.weight.val().dims()))
        .collect();
    let dec_k = codec
        .dec
        .iter()
        .map(|l| kk(l.weight.val().dims()))
        .collect();
    Ok(QatTargets {
        enc_steps: per(&c.enc_ranges, &c.enc_gains),
        dec_steps: per(&c.dec_ranges, &c.dec_gains),
        enc_weight_gains: expand(&enc_io, enc_k, false),
        dec_weight_gains: expand(&dec_io, dec_k, true),
    })
}

fn check_crops(crops: &[Vec<f32>], side: usize) -> Result<(), Error> {
    if crops.is_empty() || side == 0 || !side.is_multiple_of(TOTAL_STRIDE) {
        return Err(Error::Invalid(
            "photo quantization needs calibration crops with sides a multiple of 16".into(),
        ));
    }
    Ok(())
}

/// Part of the values of each hidden channel that [`equalise`] lets its range clip.
pub const LATENT_PERCENTILE: f64 = 99.99;

/// The latent unit of each channel (module docs): `u[c] = Δ_finest[c] / n[c]` with `n[c]` the
/// largest integer for which 127 units still span the channel's largest `|y|` over `ys` (HWC
/// latents, `m` channels) and its coarsest step is at most 255 units; where even `n[c] = 1`
/// cannot span that range, `u[c]` is the range over 127 (the finest level's step is then one
/// unit, coarser than the model's).
///
/// Why the largest value and the coarser finest step: with the range at the calibration
/// crops' 99.99th percentile and `n[c] ≥ 1`, the colour model's int8 latent clipped 0.7–1.6 %
/// of the values of the most colourful validation photographs (one channel reached 191 finest
/// steps, int8 stops at 127) and lost up to 14 dB on them, 2.5 dB BD-PSNR on the set. Twice
/// the largest value as the range measured 0.05 dB worse than the largest itself.
pub fn latent_units(ys: &[Vec<f32>], steps: &[Vec<f32>], m: usize) -> Vec<f32> {
    let mut most = vec![0f32; m];
    for y in ys {
        for (k, &v) in y.iter().enumerate() {
            most[k % m] = most[k % m].max(v.abs());
        }
    }
    (0..m)
        .map(|c| {
            let range = most[c];
            let (fine, coarse) = steps
                .iter()
                .filter_map(|d| d.get(c).copied())
                .fold((f32::INFINITY, 0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
            if !fine.is_finite() || fine <= 0.0 {
                return 1.0;
            }
            let by_range = if range > 0.0 {
                (127.0 * fine / range).floor()
            } else {
                127.0
            };
            if by_range < 1.0 {
                // 127 finest steps do not reach the range: the unit grows past the finest
                // step (that level's step becomes one unit) rather than clip the latent.
                return range / 127.0;
            }
            let by_steps = (255.0 * fine / coarse.max(fine)).floor();
            fine / by_range.min(by_steps).clamp(1.0, 127.0)
        })
        .collect()
}

fn geometric_mean(v: &[f32]) -> f32 {
    let n = v.len().max(1) as f64;
    (v.iter().map(|&x| f64::from(x).ln()).sum::<f64>() / n).exp() as f32
}

/// Scales output channel `c` of `l` (weights `[oc][ky][kx][ic]` and bias) by `gains[c]`.
fn scale_outputs(l: &mut FloatLayer, gains: &[f32]) {
    let per_oc = l.weights.len() / l.bias.len().max(1);
    for (o, g) in gains.iter().enumerate() {
        if let Some(w) = l.weights.get_mut(o * per_oc..(o + 1) * per_oc) {
            w.iter_mut().for_each(|w| *w *= g);
        }
        if let Some(b) = l.bias.get_mut(o) {
            *b *= g;
        }
    }
}

/// Divides the weights of input channel `c` of `l` by `gains[c]`.
fn unscale_inputs(l: &mut FloatLayer, gains: &[f32]) {
    let ic = l.input.c as usize;
    for (k, w) in l.weights.iter_mut().enumerate() {
        *w /= gains[k % ic];
    }
}

/// Scales the last analysis layer's output channel `c` by `gains[c]` and the first synthesis
/// layer's input channel `c` by `1 / gains[c]`: the same float codec, with its latent scaled.
pub fn fold_latent_gains(enc: &mut [FloatLayer], dec: &mut [FloatLayer], gains: &[f32]) {
    if let Some(l) = enc.last_mut() {
        scale_outputs(l, gains);
    }
    if let Some(l) = dec.first_mut() {
        unscale_inputs(l, gains);
    }
}

/// The largest gain [`equalise`] gives a channel.
pub const MAX_EQUALISE: f32 = 32.0;

/// Equalises the channels of every hidden activation of `layers` (nominal shapes; `inputs`
/// HWC at `rows × cols`, up to 48 of them used): output channel `c` of layer `i` is scaled by
/// `g[c] = R_max / R[c]` (at most [`MAX_EQUALISE`], at least 1), `R[c]` the channel's
/// [`LATENT_PERCENTILE`] of `|v|`, and input channel `c` of layer `i + 1` by `1 / g[c]`. Exact
/// in float (ReLU commutes with positive scales); in int8 every channel then spans the
/// per-tensor range instead of a few of its 256 steps. Returns each boundary's gains.
pub fn equalise(
    layers: &mut [FloatLayer],
    rows: u16,
    cols: u16,
    inputs: &[Vec<f32>],
) -> Vec<Vec<f32>> {
    let hidden = layers.len().saturating_sub(1);
    // Rescaling one boundary leaves every other activation unchanged (in float), so one pass
    // over the unscaled network gives every boundary's ranges.
    let at = layers_at(&layers[..hidden], rows, cols);
    let mut per: Vec<Vec<Vec<f32>>> = at
        .iter()
        .map(|l| vec![Vec::new(); l.output.c as usize])
        .collect();
    let acts: Vec<Vec<Vec<f32>>> = inputs[..inputs.len().min(48)]
        .par_iter()
        .map(|x| {
            let mut cur = x.clone();
            at.iter()
                .map(|l| {
                    cur = run_float(std::slice::from_ref(l), &cur);
                    cur.clone()
                })
                .collect()
        })
        .collect();
    for a in &acts {
        for (i, o) in a.iter().enumerate() {
            let c = per[i].len();
            for (k, &v) in o.iter().enumerate() {
                per[i][k % c].push(v.abs());
            }
        }
    }
    let mut all = Vec::new();
    for (i, ch) in per.iter_mut().enumerate() {
        let r: Vec<f32> = ch.iter_mut().map(|v| percentile_abs(v)).collect();
        let most = r.iter().copied().fold(0.0f32, f32::max);
        let gains: Vec<f32> = r
            .iter()
            .map(|&rc| {
                if rc > 0.0 {
                    (most / rc).clamp(1.0, MAX_EQUALISE)
                } else {
                    1.0
                }
            })
            .collect();
        scale_outputs(&mut layers[i], &gains);
        unscale_inputs(&mut layers[i + 1], &gains);
        all.push(gains);
    }
    all
}

/// Rescales every hidden activation of `layers` by given `gains` (as [`equalise`] does with
/// the ones it measures); returns them.
fn apply_gains(layers: &mut [FloatLayer], gains: &[Vec<f32>]) -> Vec<Vec<f32>> {
    for (i, g) in gains.iter().enumerate() {
        scale_outputs(&mut layers[i], g);
        unscale_inputs(&mut layers[i + 1], g);
    }
    gains.to_vec()
}

/// The [`LATENT_PERCENTILE`] of the values (sorted in place; 0 for none).
fn percentile_abs(vals: &mut [f32]) -> f32 {
    vals.sort_unstable_by(f32::total_cmp);
    let i = ((vals.len() as f64 * LATENT_PERCENTILE / 100.0) as usize)
        .min(vals.len().saturating_sub(1));
    vals.get(i).copied().unwrap_or(0.0)
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

/// The float codec on one frame (HWC uint8, sides multiples of 16) with latent steps `steps`
/// (one per channel, a row of [`PhotoCodec::knob`]): the
/// reconstruction (uint8, clamped and rounded), the integer symbols (latent positions in raster
/// order, channels innermost) and their ideal code length in bits under the learned density,
/// on Burn's device.
pub fn float_round_trip(
    codec: &PhotoCodec,
    pixels: &[u8],
    rows: usize,
    cols: usize,
    channels: usize,
    steps: &[f32],
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
    let delta = codec.steps_tensor(steps);
    let q = y / delta.clone();
    // round half away from zero, as `PhotoCodec::quantize`
    let s = q.clone().sign() * (q.abs() + 0.5).floor();
    let sym = plain(s.clone().swap_dims(1, 3).swap_dims(1, 2).into_data());
    let y_hat = s * delta.clone();
    let bits = plain(codec.bits(y_hat.clone(), delta).into_data())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::photo::PhotoConfig;

    #[test]
    fn latent_units_make_the_finest_step_whole_and_span_the_range() {
        // Channel 0 spans ±10 with steps 1.0 and 0.1; channel 1 spans ±0.5 with 0.4 and 0.05;
        // channel 2 spans ±50 with 1.0 and 0.1 (500 finest steps: more than int8 holds).
        let y: Vec<f32> = (0..2000)
            .flat_map(|i| {
                let t = i as f32 / 1999.0 * 2.0 - 1.0;
                [10.0 * t, 0.5 * t, 50.0 * t]
            })
            .collect();
        let steps = vec![vec![1.0, 0.4, 1.0], vec![0.1, 0.05, 0.1]];
        let u = latent_units(&[y], &steps, 3);
        // 127 · 0.1 / 10 = 1.27: one unit per finest step.
        assert!((u[0] - 0.1).abs() < 1e-6, "{u:?}");
        // 127 · 0.05 / 0.5 = 12.7 (the coarsest step allows 255 · 0.05 / 0.4 = 31.9): 12.
        assert!((u[1] - 0.05 / 12.0).abs() < 1e-7, "{u:?}");
        // The unit grows past the finest step rather than clip: 50 / 127.
        assert!((u[2] - 50.0 / 127.0).abs() < 1e-6, "{u:?}");
        for (c, range) in [10.0f32, 0.5, 50.0].into_iter().enumerate() {
            assert!(127.0 * u[c] >= range * 0.999, "channel {c} clipped");
            for d in &steps {
                assert!(d[c] / u[c] <= 255.0 + 1e-3);
            }
        }
    }

    #[test]
    fn folding_gains_keeps_the_float_codec() {
        let device = crate::compute_device();
        let cfg = PhotoConfig {
            channels: 1,
            enc: [4, 4, 4],
            latent: 8,
            dec: [4, 4, 4],
            lambdas: vec![0.01, 0.02],
        };
        let codec = cfg.init(&device);
        let (enc, dec) = float_layers(&codec);
        let (enc, dec) = (layers_at(&enc, 32, 32), layers_at(&dec, 2, 2));
        let x: Vec<f32> = (0..32 * 32)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        let y = run_float(&enc, &x);
        let out = run_float(&dec, &y);
        let gains: Vec<f32> = (0..8).map(|c| 0.25 + c as f32 * 0.7).collect();
        let (mut enc2, mut dec2) = (enc.clone(), dec.clone());
        fold_latent_gains(&mut enc2, &mut dec2, &gains);
        let y2 = run_float(&enc2, &x);
        for (k, (a, b)) in y.iter().zip(&y2).enumerate() {
            assert!(
                (a * gains[k % 8] - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "latent {k}"
            );
        }
        let out2 = run_float(&dec2, &y2);
        for (a, b) in out.iter().zip(&out2) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
        // Equalising the hidden activations changes no output either, and spreads the
        // channels' ranges.
        let (mut enc3, mut dec3) = (enc.clone(), dec.clone());
        let g = equalise(&mut enc3, 32, 32, std::slice::from_ref(&x));
        assert_eq!(g.len(), 3);
        assert!(g
            .iter()
            .flatten()
            .all(|&v| (1.0..=MAX_EQUALISE).contains(&v)));
        equalise(&mut dec3, 2, 2, std::slice::from_ref(&y));
        let y3 = run_float(&enc3, &x);
        for (a, b) in y.iter().zip(&y3) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "latent {a} vs {b}");
        }
        for (a, b) in out.iter().zip(&run_float(&dec3, &y3)) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn quantization_aware_training_rounds_the_weights_the_file_holds() {
        use crate::model::photo::fake_quant_weight;
        let device = crate::compute_device();
        let cfg = PhotoConfig {
            channels: 1,
            enc: [4, 6, 8],
            latent: 8,
            dec: [8, 6, 4],
            lambdas: vec![0.01, 0.02],
        };
        let codec = cfg.init(&device);
        let crops: Vec<Vec<f32>> = (0..4)
            .map(|n| {
                (0..32 * 32)
                    .map(|i| ((i * (37 + n) + n * 11) % 101) as f32 / 100.0)
                    .collect()
            })
            .collect();
        let plan = QuantPlan::measure(&codec, &crops, 32).unwrap();
        plan.check(&codec).unwrap();
        let t = qat_targets(&codec, &crops, 32, &plan).unwrap();
        let q = quantize_photo(&codec, &crops, 32, "qat", 64, Some(&plan)).unwrap();
        let model = Model::from_bytes(&q.bytes).unwrap();
        // Each layer: the file's int8 weight [o][ky][kx][i] is training's rounded weight times
        // its gain, in units of the row's step (the row maximum over 127).
        let check = |w: Tensor<4>, g: &[f32], out: usize, file: &[i8]| {
            let dims = w.dims();
            let g = Tensor::<4>::from_data(TensorData::new(g.to_vec(), dims), &device);
            let fq = plain((fake_quant_weight(w.clone(), &g, out) * g.clone()).into_data());
            let scaled = plain((w * g).into_data());
            let (a, b, k) = (dims[0], dims[1], dims[2]);
            let (oc, ic) = if out == 0 { (a, b) } else { (b, a) };
            for o in 0..oc {
                let at = |i: usize, ky: usize, kx: usize| {
                    let (x, y) = if out == 0 { (o, i) } else { (i, o) };
                    ((x * b + y) * k + ky) * k + kx
                };
                let mut top = 0f32;
                for i in 0..ic {
                    for ky in 0..k {
                        for kx in 0..k {
                            top = top.max(scaled[at(i, ky, kx)].abs());
                        }
                    }
                }
                let step = top / 127.0;
                for i in 0..ic {
                    for ky in 0..k {
                        for kx in 0..k {
                            let want = file[((o * k + ky) * k + kx) * ic + i];
                            let got = fq[at(i, ky, kx)] / step;
                            // A tie in f32 may round the other way in f64.
                            let raw = scaled[at(i, ky, kx)] / step;
                            if (raw.abs().fract() - 0.5).abs() < 1e-3 {
                                continue;
                            }
                            assert!(
                                (got - f32::from(want)).abs() < 1e-2,
                                "layer out {oc} in {ic}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        };
        for (l, (c, g)) in model
            .encoder()
            .iter()
            .zip(codec.enc.iter().zip(&t.enc_weight_gains))
        {
            check(c.weight.val(), g, 0, l.weights_i8());
        }
        for (l, (c, g)) in model
            .decoder()
            .iter()
            .zip(codec.dec.iter().zip(&t.dec_weight_gains))
        {
            check(c.weight.val(), g, 1, l.weights_i8());
        }
        // A plan for another shape is refused with a message, not a panic.
        let mut wrong = plan.clone();
        wrong.units.pop();
        assert!(quantize_photo(&codec, &crops, 32, "qat", 64, Some(&wrong)).is_err());
    }
}
