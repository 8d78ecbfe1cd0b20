//! Post-training quantization: a trained VAE's float layers → an int8 model file.
//!
//! The arithmetic is the TFLite/gemmlowp scheme of `../shared/DESIGN.md`: symmetric per-output-
//! channel int8 weights, asymmetric int8 activations calibrated on training images (min/max or a
//! percentile), int32 biases at scale `s_in·s_w[c]`, and a Q31 multiplier + shift per channel.
//! ReLU becomes the output clamp `[zp, 127]`, the final sigmoid a 256-entry table to uint8 pixels.
//!
//! Everything here works in the device's layouts (HWC activations, `[oc][ky][kx][ic]` weights),
//! so [`FloatModel`] is also a plain-Rust float reference of exactly what the device approximates.

use edgevae_shared::build::{OwnedActivation, OwnedLayer, OwnedModel};
use edgevae_shared::format::{Header, Op, QParams, Shape};
use rayon::prelude::*;

use crate::model::layers::{Activation as Act, LayerKind, LayerWeights};

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("layer {0}: unsupported layer layout for the device ({1})")]
    Unsupported(String, String),
    #[error("no calibration images")]
    NoCalibration,
    #[error("model name longer than 32 bytes")]
    Name,
}

/// A layer in device layout with float parameters.
#[derive(Clone, Debug)]
pub struct FloatLayer {
    pub name: String,
    pub op: Op,
    pub input: Shape,
    pub output: Shape,
    /// `[oc][ky][kx][ic]` for convolutions, `[out][in]` for dense (HWC-flattened input).
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Act,
}

/// The float network the device approximates: encoder (image → mu), decoder (z → image).
#[derive(Clone, Debug)]
pub struct FloatModel {
    pub input: Shape,
    pub latent: u16,
    pub encoder: Vec<FloatLayer>,
    pub decoder: Vec<FloatLayer>,
}

fn u16_of(n: usize, name: &str) -> Result<u16, QuantError> {
    u16::try_from(n)
        .map_err(|_| QuantError::Unsupported(name.into(), format!("dimension {n} > 65535")))
}

fn u8_of(n: usize, name: &str, what: &str) -> Result<u8, QuantError> {
    u8::try_from(n).map_err(|_| QuantError::Unsupported(name.into(), format!("{what} {n} > 255")))
}

fn conv_out(n: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    (n + 2 * p).checked_sub(k).map(|d| d / s + 1)
}

impl FloatModel {
    /// Converts Burn-layout layers (see [`crate::model::layers::layers`]) to device layout. The encoder is
    /// every layer up to `fc_mu`; `fc_logvar` is dropped (training only); the rest is the decoder.
    /// A dense layer next to a convolution is permuted between Burn's (C, H, W) flattening and
    /// the device's (H, W, C).
    pub fn from_layers(layers: &[LayerWeights], input: Shape) -> Result<Self, QuantError> {
        let mut encoder = Vec::new();
        let mut decoder = Vec::new();
        let mut in_decoder = false;
        let mut shape = input;
        let mut latent = 0u16;
        for (k, l) in layers.iter().enumerate() {
            if l.name == "fc_logvar" {
                continue;
            }
            let unsupported =
                |why: &str| QuantError::Unsupported(l.name.to_string(), why.to_string());
            let ws = &l.weight_shape;
            let layer = match l.kind {
                LayerKind::Conv2d { stride, padding }
                | LayerKind::ConvTranspose2d { stride, padding } => {
                    let transposed = matches!(l.kind, LayerKind::ConvTranspose2d { .. });
                    if ws.len() != 4
                        || ws[2] != ws[3]
                        || stride[0] != stride[1]
                        || padding[0] != padding[1]
                    {
                        return Err(unsupported("only square kernels, strides and paddings"));
                    }
                    let (ic, oc) = if transposed {
                        (ws[0], ws[1])
                    } else {
                        (ws[1], ws[0])
                    };
                    let (k_, s, p) = (ws[2], stride[0], padding[0]);
                    if ic != shape.c as usize {
                        return Err(unsupported(
                            "input channels do not match the previous layer",
                        ));
                    }
                    let (oh, ow) = if transposed {
                        let f = |n: usize| ((n - 1) * s + k_).checked_sub(2 * p);
                        (f(shape.h as usize), f(shape.w as usize))
                    } else {
                        (
                            conv_out(shape.h as usize, k_, s, p),
                            conv_out(shape.w as usize, k_, s, p),
                        )
                    };
                    let (Some(oh), Some(ow)) = (oh, ow) else {
                        return Err(unsupported("kernel larger than the padded input"));
                    };
                    let mut w = vec![0f32; oc * k_ * k_ * ic];
                    for o in 0..oc {
                        for i in 0..ic {
                            for ky in 0..k_ {
                                for kx in 0..k_ {
                                    let src = if transposed {
                                        ((i * oc + o) * k_ + ky) * k_ + kx
                                    } else {
                                        ((o * ic + i) * k_ + ky) * k_ + kx
                                    };
                                    w[((o * k_ + ky) * k_ + kx) * ic + i] = l.weight[src];
                                }
                            }
                        }
                    }
                    let k8 = u8_of(k_, l.name, "kernel size")?;
                    let s8 = u8_of(s, l.name, "stride")?;
                    let p8 = u8_of(p, l.name, "padding")?;
                    let op = if transposed {
                        Op::ConvTranspose2d {
                            kh: k8,
                            kw: k8,
                            stride: s8,
                            pad: p8,
                        }
                    } else {
                        Op::Conv2d {
                            kh: k8,
                            kw: k8,
                            stride: s8,
                            pad: p8,
                        }
                    };
                    let output = Shape::new(
                        u16_of(oh, l.name)?,
                        u16_of(ow, l.name)?,
                        u16_of(oc, l.name)?,
                    );
                    FloatLayer {
                        name: l.name.into(),
                        op,
                        input: shape,
                        output,
                        weights: w,
                        bias: l.bias.clone(),
                        act: l.activation,
                    }
                }
                LayerKind::Linear => {
                    if ws.len() != 2 || ws[0] as u64 != shape.len() {
                        return Err(unsupported(
                            "dense input size does not match the previous layer",
                        ));
                    }
                    let (n_in, n_out) = (ws[0], ws[1]);
                    // Device input index for Burn input index: (c, y, x) → (y, x, c).
                    let (h, w_, c) = (shape.h as usize, shape.w as usize, shape.c as usize);
                    let in_perm = |i: usize| {
                        let (ch, rest) = (i / (h * w_), i % (h * w_));
                        rest * c + ch
                    };
                    // A following convolution fixes the (C, H, W) the output is reshaped to.
                    let next = layers[k + 1..].iter().find(|n| n.name != "fc_logvar");
                    let out_chw = match next.map(|n| (n.kind, &n.weight_shape)) {
                        Some((LayerKind::Conv2d { .. }, s)) if s.len() == 4 => Some(s[1]),
                        Some((LayerKind::ConvTranspose2d { .. }, s)) if s.len() == 4 => Some(s[0]),
                        _ => None,
                    };
                    let reshape = match out_chw {
                        Some(ch) if ch > 0 && n_out % ch == 0 => {
                            let side = ((n_out / ch) as f64).sqrt().round() as usize;
                            if side * side * ch != n_out {
                                return Err(unsupported(
                                    "dense output is not a square feature map",
                                ));
                            }
                            Some(Shape::new(
                                u16_of(side, l.name)?,
                                u16_of(side, l.name)?,
                                u16_of(ch, l.name)?,
                            ))
                        }
                        _ => None,
                    };
                    let out_perm = |o: usize| match reshape {
                        Some(r) => {
                            let hw = r.h as usize * r.w as usize;
                            (o % hw) * r.c as usize + o / hw
                        }
                        None => o,
                    };
                    let mut wd = vec![0f32; n_in * n_out];
                    let mut bd = vec![0f32; n_out];
                    for o in 0..n_out {
                        bd[out_perm(o)] = l.bias[o];
                        for i in 0..n_in {
                            wd[out_perm(o) * n_in + in_perm(i)] = l.weight[i * n_out + o];
                        }
                    }
                    let output = Shape::flat(u16_of(n_out, l.name)?);
                    let dense = FloatLayer {
                        name: l.name.into(),
                        op: Op::Dense,
                        input: shape,
                        output,
                        weights: wd,
                        bias: bd,
                        act: l.activation,
                    };
                    if let Some(r) = reshape {
                        let target = if in_decoder {
                            &mut decoder
                        } else {
                            &mut encoder
                        };
                        target.push(dense);
                        FloatLayer {
                            name: format!("{}_reshape", l.name),
                            op: Op::Reshape,
                            input: output,
                            output: r,
                            weights: vec![],
                            bias: vec![],
                            act: Act::Identity,
                        }
                    } else {
                        dense
                    }
                }
            };
            shape = layer.output;
            let is_mu = layer.name == "fc_mu";
            if in_decoder {
                decoder.push(layer);
            } else {
                encoder.push(layer);
            }
            if is_mu {
                latent = u16_of(shape.len() as usize, "fc_mu")?;
                in_decoder = true;
                shape = Shape::flat(latent);
            }
        }
        if encoder.is_empty() || decoder.is_empty() || latent == 0 {
            return Err(QuantError::Unsupported(
                "model".into(),
                "needs fc_mu and a decoder".into(),
            ));
        }
        Ok(FloatModel {
            input,
            latent,
            encoder,
            decoder,
        })
    }

    /// Runs `layers` on `x`; `trace` receives each layer's output (after ReLU; before a sigmoid).
    pub fn run(layers: &[FloatLayer], x: &[f32], mut trace: impl FnMut(usize, &[f32])) -> Vec<f32> {
        let mut cur = x.to_vec();
        for (k, l) in layers.iter().enumerate() {
            let mut out = forward(l, &cur);
            if l.act == Act::Relu {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            trace(k, &out);
            if l.act == Act::Sigmoid {
                out.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
            }
            cur = out;
        }
        cur
    }

    /// Pixels in [0, 1] (HWC) → mu.
    pub fn encode(&self, x: &[f32]) -> Vec<f32> {
        Self::run(&self.encoder, x, |_, _| {})
    }

    /// z → image in [0, 1] (HWC).
    pub fn decode(&self, z: &[f32]) -> Vec<f32> {
        Self::run(&self.decoder, z, |_, _| {})
    }
}

/// One layer in float, HWC.
pub fn forward(l: &FloatLayer, x: &[f32]) -> Vec<f32> {
    let (i, o) = (l.input, l.output);
    let (ih, iw, ic) = (i.h as usize, i.w as usize, i.c as usize);
    let (oh, ow, oc) = (o.h as usize, o.w as usize, o.c as usize);
    match l.op {
        Op::Reshape => x.to_vec(),
        Op::Dense => {
            let n = x.len();
            (0..oc)
                .map(|k| {
                    l.bias[k]
                        + l.weights[k * n..(k + 1) * n]
                            .iter()
                            .zip(x)
                            .map(|(w, v)| w * v)
                            .sum::<f32>()
                })
                .collect()
        }
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
        } => {
            let transposed = matches!(l.op, Op::ConvTranspose2d { .. });
            let (kh, kw, s, p) = (kh as usize, kw as usize, stride as usize, pad as usize);
            // The weights `[oc, kh, kw, ic]` as `[kh, kw, ic, oc]`: the dot products of one
            // input pixel and tap with BLOCK output channels then run side by side, each
            // summed over `ic` in order from −0.0 as `Iterator::sum` does (the same values as
            // one dot at a time, vectorised across channels).
            let mut wt = vec![0.0f32; l.weights.len()];
            for c in 0..oc {
                for t in 0..kh * kw {
                    for i in 0..ic {
                        wt[(t * ic + i) * oc + c] = l.weights[(c * kh * kw + t) * ic + i];
                    }
                }
            }
            let mut out: Vec<f32> = (0..oh * ow * oc).map(|k| l.bias[k % oc]).collect();
            for iy in 0..ih {
                for ix in 0..iw {
                    let xin = &x[(iy * iw + ix) * ic..(iy * iw + ix + 1) * ic];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            // Output pixel that tap (ky, kx) of input (iy, ix) feeds, if any.
                            let (oy, ox) = if transposed {
                                (
                                    (iy * s + ky) as isize - p as isize,
                                    (ix * s + kx) as isize - p as isize,
                                )
                            } else {
                                let (ty, tx) = (
                                    iy as isize + p as isize - ky as isize,
                                    ix as isize + p as isize - kx as isize,
                                );
                                if ty < 0 || tx < 0 || ty % s as isize != 0 || tx % s as isize != 0
                                {
                                    continue;
                                }
                                (ty / s as isize, tx / s as isize)
                            };
                            if oy < 0 || ox < 0 || oy as usize >= oh || ox as usize >= ow {
                                continue;
                            }
                            let base = (oy as usize * ow + ox as usize) * oc;
                            let taps = &wt[(ky * kw + kx) * ic * oc..][..ic * oc];
                            add_dots(&mut out[base..base + oc], taps, xin);
                        }
                    }
                }
            }
            out
        }
    }
}

/// Output channels whose dot products [`add_dots`] runs side by side.
const BLOCK: usize = 16;

/// `out[c] += Σ_i w[i][c]·x[i]` for every channel `c` (`w` is `[x.len(), out.len()]`), each
/// sum taken over `i` in order from −0.0.
fn add_dots(out: &mut [f32], w: &[f32], x: &[f32]) {
    let oc = out.len();
    for (b, dst) in out.chunks_mut(BLOCK).enumerate() {
        let c0 = b * BLOCK;
        let mut acc = [-0.0f32; BLOCK];
        if dst.len() == BLOCK {
            for (i, &xv) in x.iter().enumerate() {
                let row: &[f32; BLOCK] = w[i * oc + c0..][..BLOCK].try_into().unwrap();
                for (a, &wv) in acc.iter_mut().zip(row) {
                    *a += wv * xv;
                }
            }
        } else {
            for (i, &xv) in x.iter().enumerate() {
                for (a, &wv) in acc.iter_mut().zip(&w[i * oc + c0..][..dst.len()]) {
                    *a += wv * xv;
                }
            }
        }
        for (d, a) in dst.iter_mut().zip(acc) {
            *d += a;
        }
    }
}

/// How activation ranges are calibrated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    MinMax,
    /// Clip the range to this percentile of |values| on each side (e.g. 99.99).
    Percentile(f64),
    /// The range (a fraction of min/max) whose int8 grid, clamping included, has the least
    /// squared error over values sampled evenly from every input ([`mse_range`]).
    Mse,
}

/// Observed ranges per layer of one section.
pub(crate) fn ranges(
    layers: &[FloatLayer],
    inputs: &[Vec<f32>],
    cal: Calibration,
) -> Vec<(f32, f32)> {
    const KEEP: usize = 400_000;
    let mut samples: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
    let mut minmax = vec![(0f32, 0f32); layers.len()];
    let widen = |minmax: &mut [(f32, f32)], k: usize, out: &[f32]| {
        let (lo, hi) = &mut minmax[k];
        for &v in out {
            *lo = lo.min(v);
            *hi = hi.max(v);
        }
    };
    if cal == Calibration::Mse {
        // Evenly from every input, so no crop's values dominate the range; the inputs run in
        // parallel and their samples are joined in input order (the same values as one by one).
        let every = |len: usize| (len * inputs.len()).div_ceil(KEEP).max(1);
        let parts: Vec<_> = inputs
            .par_iter()
            .map(|x| {
                let mut mm = vec![(0f32, 0f32); layers.len()];
                let mut sm: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
                FloatModel::run(layers, x, |k, out| {
                    widen(&mut mm, k, out);
                    sm[k].extend(out.iter().step_by(every(out.len())));
                });
                (mm, sm)
            })
            .collect();
        for (mm, sm) in parts {
            for (k, ((lo, hi), s)) in mm.into_iter().zip(sm).enumerate() {
                minmax[k] = (minmax[k].0.min(lo), minmax[k].1.max(hi));
                samples[k].extend(s);
            }
        }
    } else {
        for x in inputs {
            FloatModel::run(layers, x, |k, out| {
                widen(&mut minmax, k, out);
                if samples[k].len() < KEEP {
                    samples[k].extend_from_slice(out);
                }
            });
        }
    }
    match cal {
        Calibration::MinMax => minmax,
        Calibration::Mse => samples
            .par_iter()
            .zip(minmax)
            .map(|(v, r)| mse_range(v, r))
            .collect(),
        Calibration::Percentile(pct) => samples
            .into_iter()
            .map(|mut v| {
                v.sort_by(f32::total_cmp);
                let at = |q: f64| v[((q / 100.0) * (v.len() - 1) as f64).round() as usize];
                if v.is_empty() {
                    (0.0, 0.0)
                } else {
                    (at(100.0 - pct), at(pct))
                }
            })
            .collect(),
    }
}

/// Of the ranges `(f·lo, f·hi)` for `f` in (0, 1] (`(lo, hi)` the observed min/max), the one
/// whose [`choose_qparams`] grid represents `values` with the least squared error, clamping
/// included. The grid's rounding error grows with `f` and the clamping error with `1 − f`; a few
/// extreme values (edges in photographs) no longer set the step of every other value.
pub fn mse_range(values: &[f32], (lo, hi): (f32, f32)) -> (f32, f32) {
    let error = |f: f32| grid_error(values, (lo * f, hi * f));
    let mut best = (error(1.0), 1.0f32);
    for i in 1..100 {
        let f = 1.0 - i as f32 * 0.01;
        let e = error(f);
        if e < best.0 {
            best = (e, f);
        }
    }
    (lo * best.1, hi * best.1)
}

/// Squared error of `values` on the grid of [`choose_qparams`]`(lo, hi)`, clamping included.
pub fn grid_error(values: &[f32], (lo, hi): (f32, f32)) -> f64 {
    let q = choose_qparams(lo, hi);
    let (s, zp) = (f64::from(q.scale), f64::from(q.zero_point));
    values
        .iter()
        .map(|&v| {
            let k = (f64::from(v) / s + zp).round().clamp(-128.0, 127.0);
            ((k - zp) * s - f64::from(v)).powi(2)
        })
        .sum()
}

/// Logit beyond which the uint8 pixel no longer changes: `255·σ(x)` rounds to 255 for
/// `x ≥ ln(254.5 / 0.5) ≈ 6.2325` and to 0 for `x ≤ −6.2325`; a little margin is added.
pub const SIGMOID_SATURATION: f32 = 6.25;

/// Clips the calibrated range of every layer that feeds the sigmoid table to
/// `±SIGMOID_SATURATION`: logits outside give the same pixels, so the int8 steps are spent where
/// the pixel changes (on the shipped models the range was several times wider).
fn clip_sigmoid_inputs(layers: &[FloatLayer], ranges: &mut [(f32, f32)]) {
    for (l, r) in layers.iter().zip(ranges.iter_mut()) {
        if l.act == Act::Sigmoid {
            r.0 = r.0.max(-SIGMOID_SATURATION);
            r.1 = r.1.min(SIGMOID_SATURATION);
        }
    }
}

/// Asymmetric int8 quantization covering `[min, max]` (always including 0, so zero is exact).
pub fn choose_qparams(min: f32, max: f32) -> QParams {
    let (min, max) = (min.min(0.0) as f64, max.max(0.0) as f64);
    let scale = if max > min {
        (max - min) / 255.0
    } else {
        1.0 / 255.0
    };
    let zp = (-128.0 - min / scale).round().clamp(-128.0, 127.0);
    QParams {
        scale: scale as f32,
        zero_point: zp as i8,
    }
}

/// A real multiplier as a Q31 value in `[2^30, 2^31)` and a power-of-two shift (TFLite's
/// `QuantizeMultiplier`): `m ≈ q · 2^(shift − 31)`. Zero (or too small) gives `(0, 0)`.
pub fn quantize_multiplier(m: f64) -> (i32, i8) {
    if m <= 0.0 || !m.is_finite() {
        return (0, 0);
    }
    let mut e = m.log2().floor() as i32 + 1; // m = f · 2^e, f in [0.5, 1)
    let mut f = m / 2f64.powi(e);
    if f >= 1.0 {
        f /= 2.0;
        e += 1;
    } else if f < 0.5 {
        f *= 2.0;
        e -= 1;
    }
    let mut q = (f * (1u64 << 31) as f64).round() as i64;
    if q == 1 << 31 {
        q /= 2;
        e += 1;
    }
    if e < -31 {
        return (0, 0);
    }
    (q as i32, e.min(30) as i8)
}

/// The quantized model, before the arena is declared.
pub struct Quantized {
    pub model: OwnedModel,
    /// Float ranges seen per encoder/decoder layer, for reports.
    pub encoder_ranges: Vec<(f32, f32)>,
    pub decoder_ranges: Vec<(f32, f32)>,
}

pub(crate) fn quantize_layer(l: &FloatLayer, in_q: QParams, out_q: QParams) -> OwnedLayer {
    let oc = l.output.c as usize;
    let per = l.weights.len().checked_div(oc).unwrap_or(0);
    let mut weights = Vec::with_capacity(l.weights.len());
    let mut bias = Vec::with_capacity(oc);
    let mut multiplier = Vec::with_capacity(oc);
    let mut shift = Vec::with_capacity(oc);
    if l.op != Op::Reshape {
        for c in 0..oc {
            let w = &l.weights[c * per..(c + 1) * per];
            let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s_w = if max > 0.0 { max as f64 / 127.0 } else { 1.0 };
            weights.extend(
                w.iter()
                    .map(|&v| (v as f64 / s_w).round().clamp(-127.0, 127.0) as i8),
            );
            let s_acc = in_q.scale as f64 * s_w;
            bias.push(
                (l.bias[c] as f64 / s_acc)
                    .round()
                    .clamp(-((1u64 << 30) as f64), (1u64 << 30) as f64) as i32,
            );
            let (m, s) = quantize_multiplier(s_acc / out_q.scale as f64);
            multiplier.push(m);
            shift.push(s);
        }
    }
    let activation = match l.act {
        Act::Identity => OwnedActivation::None,
        Act::Relu => OwnedActivation::Relu,
        Act::Sigmoid => {
            let table = (-128i32..=127)
                .map(|q| {
                    let x = out_q.scale as f64 * (q - out_q.zero_point as i32) as f64;
                    (255.0 / (1.0 + (-x).exp())).round().clamp(0.0, 255.0) as u8
                })
                .collect();
            OwnedActivation::Lut {
                table,
                out: QParams {
                    scale: 1.0 / 255.0,
                    zero_point: 0,
                },
            }
        }
    };
    OwnedLayer {
        op: l.op,
        input: l.input,
        output: l.output,
        input_q: in_q,
        output_q: if l.op == Op::Reshape { in_q } else { out_q },
        weights,
        bias,
        multiplier,
        shift,
        activation,
    }
}

/// Quantizes `model`, calibrating on `images` (uint8 pixels, HWC).
pub fn quantize_model(
    model: &FloatModel,
    images: &[&[u8]],
    cal: Calibration,
    name: &str,
) -> Result<Quantized, QuantError> {
    if images.is_empty() {
        return Err(QuantError::NoCalibration);
    }
    let inputs: Vec<Vec<f32>> = images
        .iter()
        .map(|im| im.iter().map(|&p| p as f32 / 255.0).collect())
        .collect();
    let enc_ranges = ranges(&model.encoder, &inputs, cal);
    let mus: Vec<Vec<f32>> = inputs.iter().map(|x| model.encode(x)).collect();
    let mut dec_ranges = ranges(&model.decoder, &mus, cal);
    clip_sigmoid_inputs(&model.decoder, &mut dec_ranges);
    let input_q = QParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };

    let section = |layers: &[FloatLayer], rs: &[(f32, f32)], mut q: QParams| {
        let mut out = Vec::new();
        for (l, &r) in layers.iter().zip(rs) {
            let out_q = if l.op == Op::Reshape {
                q
            } else {
                choose_qparams(r.0, r.1)
            };
            let ql = quantize_layer(l, q, out_q);
            q = ql.effective_output_q();
            out.push(ql);
        }
        (out, q)
    };
    let (encoder, latent_q) = section(&model.encoder, &enc_ranges, input_q);
    let (decoder, _) = section(&model.decoder, &dec_ranges, latent_q);
    let header = Header {
        name: heapless::String::try_from(name).map_err(|_| QuantError::Name)?,
        input: model.input,
        input_q,
        latent: model.latent,
        latent_q,
        arena_bytes: 0,
    };
    Ok(Quantized {
        model: OwnedModel {
            header,
            encoder,
            decoder,
            entropy: None,
            frame: None,
        },
        encoder_ranges: enc_ranges,
        decoder_ranges: dec_ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mse_range_clips_rare_extremes_and_keeps_dense_ranges() {
        // A dense bulk in [0, 1) and one rare extreme at 10: spending the 256 steps on [0, 10]
        // costs every bulk value (step 10/255), clipping the one extreme costs only its own error.
        // The optimum r solves N·r/(12·255²) = R − r, about 8 here; min/max keeps 10.
        let mut rng = crate::rng::seeded(5);
        let mut v: Vec<f32> = (0..200_000)
            .map(|_| rand::Rng::random_range(&mut rng, 0.0f32..1.0))
            .collect();
        v.push(10.0);
        let full = (0.0, 10.0);
        let r = mse_range(&v, full);
        assert!((7.0..9.0).contains(&r.1), "{r:?}");
        assert!(grid_error(&v, r) < 0.9 * grid_error(&v, full));
        // Values spread evenly over the range: nothing to gain from clipping.
        let even: Vec<f32> = (0..5_000).map(|i| i as f32 / 100.0).collect();
        let r = mse_range(&even, (0.0, 49.99));
        assert!(r.1 > 0.95 * 49.99, "{r:?}");
    }

    #[test]
    fn multiplier_round_trips() {
        for &m in &[1.0, 0.5, 0.75, 1e-3, 3.7e-5, 0.999_999_9, 2.5, 1e-12] {
            let (q, s) = quantize_multiplier(m);
            if m < 1e-10 {
                assert_eq!((q, s), (0, 0));
                continue;
            }
            assert!((1 << 30..=i32::MAX).contains(&q), "{m}: q {q}");
            let back = q as f64 * 2f64.powi(s as i32 - 31);
            assert!((back - m).abs() / m < 1e-9, "{m} -> {back}");
        }
    }

    #[test]
    fn qparams_cover_the_range_and_zero() {
        let q = choose_qparams(0.0, 6.0);
        assert_eq!(q.zero_point, -128);
        let q = choose_qparams(-1.0, 1.0);
        assert!((q.scale - 2.0 / 255.0).abs() < 1e-7);
        let back = |v: i8| q.scale * (v as i32 - q.zero_point as i32) as f32;
        assert!(back(-128) <= -0.99 && back(127) >= 0.99);
    }
}
