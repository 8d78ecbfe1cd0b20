//! The photo codec: a fully convolutional analysis transform (image → latent map at 1/16
//! resolution), a synthesis transform of transposed convolutions (latent map → image), and a
//! per-channel factorized entropy model (Ballé et al. 2018's non-parametric density), trained
//! jointly on `λ·255²·MSE + bits per pixel` with additive uniform noise (CompressAI's
//! convention).
//!
//! One model serves every quality level: level `l` quantizes latent channel `c` with its own step
//! `Δ[l][c] = exp(log_steps[l][c])` (learned, a gain vector per level as in Cui et al. 2021) and
//! trains with its own `λ[l]`. The device sends the integer symbols `round(y / Δ)`; the density is
//! one continuous distribution per channel, integrated over each level's bins.
//!
//! Every layer is one the firmware kernels implement (convolution, transposed convolution, ReLU):
//! the analysis transform is what a microcontroller runs over whole frames.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, softplus};
use serde::{Deserialize, Serialize};

use crate::backend::conv::{conv2d_module, conv_transpose2d_module};

/// Total stride of the analysis transform: the latent map is 1/16 of the frame in each axis.
pub const TOTAL_STRIDE: usize = 16;

/// Settings the rate knob ([`PhotoCodec::knob`]) adds below the coarsest trained level.
pub const KNOB_COARSER: usize = 2;

/// Settings the rate knob adds above the finest trained level.
pub const KNOB_FINER: usize = 2;

/// Hidden widths of the factorized density's per-channel network (1 → 3 → 3 → 3 → 1).
const DENSITY_FILTERS: [usize; 5] = [1, 3, 3, 3, 1];

/// Shape and rate ladder of a photo codec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoConfig {
    /// Image channels: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Output channels of the analysis convolutions before the latent one (three layers:
    /// 5×5/2, 3×3/2, 3×3/2, each followed by ReLU).
    pub enc: [usize; 3],
    /// Latent channels (the last analysis convolution, 3×3/2, no activation).
    pub latent: usize,
    /// Output channels of the synthesis transposed convolutions before the image one (three
    /// layers, 4×4/2, each followed by ReLU; the fourth maps to the image's channels).
    pub dec: [usize; 3],
    /// The rate–distortion weight of each quality level, coarsest first (loss
    /// `λ·255²·MSE + bpp`, pixels in [0, 1]).
    pub lambdas: Vec<f64>,
}

impl PhotoConfig {
    /// CompressAI's λ ladder for MSE (bmshj2018 q1–q7): 0.1–1 bpp on photographs.
    pub fn default_lambdas() -> Vec<f64> {
        vec![0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932]
    }

    /// The grey photo model: analysis 1 → 24 → 32 → 48 → 64 (≈ 906 MACs per pixel), synthesis
    /// 64 → 64 → 48 → 32 → 1.
    pub fn gray() -> Self {
        PhotoConfig {
            channels: 1,
            enc: [24, 32, 48],
            latent: 64,
            dec: [64, 48, 32],
            lambdas: Self::default_lambdas(),
        }
    }

    /// The colour photo model (RGB in and out): analysis 3 → 16 → 32 → 48 → 64 (≈ 912 MACs
    /// per pixel), synthesis 64 → 64 → 48 → 32 → 3.
    pub fn rgb() -> Self {
        PhotoConfig {
            channels: 3,
            enc: [16, 32, 48],
            latent: 64,
            dec: [64, 48, 32],
            lambdas: Self::default_lambdas(),
        }
    }

    /// Quality levels.
    pub fn levels(&self) -> usize {
        self.lambdas.len()
    }

    /// Checks every size and weight.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if self.channels != 1 && self.channels != 3 {
            return Err(crate::Error::Invalid(format!(
                "photo models take 1 or 3 image channels, got {}",
                self.channels
            )));
        }
        if self.enc.contains(&0) || self.dec.contains(&0) || self.latent == 0 {
            return Err(crate::Error::Invalid(
                "photo model widths must be positive".into(),
            ));
        }
        if self.enc.iter().chain(&self.dec).any(|&c| c > 256) || self.latent > 256 {
            return Err(crate::Error::Invalid(
                "photo model widths must be at most 256".into(),
            ));
        }
        if self.lambdas.is_empty() || self.lambdas.len() > edgevae_shared::format::MAX_LEVELS {
            return Err(crate::Error::Invalid(format!(
                "a photo model needs 1 to {} quality levels, got {}",
                edgevae_shared::format::MAX_LEVELS,
                self.lambdas.len()
            )));
        }
        if self.lambdas.iter().any(|l| !(*l > 0.0 && l.is_finite())) {
            return Err(crate::Error::Invalid("λ must be positive".into()));
        }
        Ok(())
    }

    /// Multiply–accumulates per input pixel of the analysis transform.
    pub fn encoder_macs_per_pixel(&self) -> f64 {
        let [a, b, c] = self.enc;
        let ch = self.channels as f64;
        let (a, b, c, m) = (a as f64, b as f64, c as f64, self.latent as f64);
        25.0 * ch * a / 4.0 + 9.0 * a * b / 16.0 + 9.0 * b * c / 64.0 + 9.0 * c * m / 256.0
    }

    /// Multiply–accumulates per output pixel of the synthesis transform (each input pixel of a
    /// 4×4/2 transposed convolution meets 16 taps).
    pub fn decoder_macs_per_pixel(&self) -> f64 {
        let [a, b, c] = self.dec;
        let (a, b, c, m) = (a as f64, b as f64, c as f64, self.latent as f64);
        let ch = self.channels as f64;
        16.0 * (m * a / 256.0 + a * b / 64.0 + b * c / 16.0 + c * ch / 4.0)
    }

    /// A freshly initialised model (Burn's PyTorch-like initialisers for the transforms,
    /// CompressAI's for the density; level steps from 1 at the coarsest level down by √2 a
    /// level, as `λ` doubles).
    pub fn init(&self, device: &Device) -> PhotoCodec {
        let conv = |i, o, k: usize| {
            let p = k / 2;
            Conv2dConfig::new([i, o], [k, k])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device)
        };
        let deconv = |i, o| {
            ConvTranspose2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .init(device)
        };
        let [e1, e2, e3] = self.enc;
        let [d1, d2, d3] = self.dec;
        let m = self.latent;
        let levels = self.levels();
        let steps: Vec<f32> = (0..levels)
            .flat_map(|l| {
                let s = -(l as f32) * 0.5 * std::f32::consts::LN_2;
                std::iter::repeat_n(s, m)
            })
            .collect();
        PhotoCodec {
            enc: vec![
                conv(self.channels, e1, 5),
                conv(e1, e2, 3),
                conv(e2, e3, 3),
                conv(e3, m, 3),
            ],
            dec: vec![
                deconv(m, d1),
                deconv(d1, d2),
                deconv(d2, d3),
                deconv(d3, self.channels),
            ],
            prior: FactorizedPrior::init(m, device),
            log_steps: Param::from_tensor(Tensor::from_data(
                TensorData::new(steps, [levels, m]),
                device,
            )),
        }
    }
}

/// Ballé et al. 2018's non-parametric density, one per latent channel: a monotone network
/// `1 → 3 → 3 → 3 → 1` (softplus-positive matrices, `tanh` gates) whose output is the logit of
/// the cumulative distribution.
#[derive(Module, Debug)]
pub struct FactorizedPrior {
    /// Per layer `[C, out, in]`, made positive with softplus.
    pub matrices: Vec<Param<Tensor<3>>>,
    /// Per layer `[C, out, 1]`.
    pub biases: Vec<Param<Tensor<3>>>,
    /// Per hidden layer `[C, out, 1]`, squashed with tanh.
    pub factors: Vec<Param<Tensor<3>>>,
}

impl FactorizedPrior {
    /// CompressAI's initialisation (init scale 10: the density first spreads over ±10).
    pub fn init(channels: usize, device: &Device) -> Self {
        let layers = DENSITY_FILTERS.len() - 1;
        let scale = 10f64.powf(1.0 / layers as f64);
        let mut rng = crate::rng::seeded(0x5eed_de75);
        let mut matrices = Vec::new();
        let mut biases = Vec::new();
        let mut factors = Vec::new();
        for i in 0..layers {
            let (fi, fo) = (DENSITY_FILTERS[i], DENSITY_FILTERS[i + 1]);
            let init = (1.0 / scale / fo as f64).exp_m1().ln() as f32;
            matrices.push(Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![init; channels * fo * fi], [channels, fo, fi]),
                device,
            )));
            let b: Vec<f32> = (0..channels * fo)
                .map(|_| rand::Rng::random::<f32>(&mut rng) - 0.5)
                .collect();
            biases.push(Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [channels, fo, 1]),
                device,
            )));
            if i + 1 < layers {
                factors.push(Param::from_tensor(Tensor::zeros([channels, fo, 1], device)));
            }
        }
        FactorizedPrior {
            matrices,
            biases,
            factors,
        }
    }

    /// The logit of each channel's cumulative distribution at `v` (`[C, 1, N]` → `[C, 1, N]`).
    pub fn logits_cdf(&self, v: Tensor<3>) -> Tensor<3> {
        let mut h = v;
        for (i, m) in self.matrices.iter().enumerate() {
            h = softplus(m.val(), 1.0).matmul(h) + self.biases[i].val();
            if let Some(f) = self.factors.get(i) {
                h = h.clone() + f.val().tanh() * crate::backend::tanh::tanh(h);
            }
        }
        h
    }

    /// Probability mass of the bins `[v − Δ/2, v + Δ/2)` per element, `v`: `[C, 1, N]`, `delta`:
    /// `[C, 1, 1]`; evaluated on the side of the median where the sigmoids keep their precision,
    /// and bounded below by 1e-9.
    pub fn likelihood(&self, v: Tensor<3>, delta: Tensor<3>) -> Tensor<3> {
        let half = delta / 2.0;
        let lower = self.logits_cdf(v.clone() - half.clone());
        let upper = self.logits_cdf(v + half);
        let sign = (lower.clone() + upper.clone()).sign().neg().detach();
        (sigmoid(sign.clone() * upper) - sigmoid(sign * lower))
            .abs()
            .clamp_min(1e-9)
    }
}

/// The photo codec: analysis transform, synthesis transform, entropy model and level steps.
#[derive(Module, Debug)]
pub struct PhotoCodec {
    /// Analysis convolutions: 5×5/2, 3×3/2, 3×3/2 with ReLU, then 3×3/2 to the latent.
    pub enc: Vec<Conv2d>,
    /// Synthesis transposed convolutions 4×4/2, ReLU between them; the last gives the image.
    pub dec: Vec<ConvTranspose2d>,
    /// Per-channel factorized density of the latent.
    pub prior: FactorizedPrior,
    /// `ln Δ` per level and latent channel, `[levels, latent]`.
    pub log_steps: Param<Tensor<2>>,
}

/// Loss terms of one batch.
#[derive(Clone, Debug)]
pub struct PhotoLoss {
    /// What the optimiser minimises: `λ·255²·mse + bpp`.
    pub loss: Tensor<1>,
    /// Mean squared error of pixels in [0, 1].
    pub mse: Tensor<1>,
    /// Bits per pixel of the latent under the entropy model.
    pub bpp: Tensor<1>,
}

/// One hidden activation's int8 grid in the float model's units: channel `c` takes the values
/// `k·step[c]` for `k` in `0..=255` (a ReLU output on the model file's per-tensor scale, divided
/// by the channel's equalisation gain), so it clamps at `top[c] = 255·step[c]`.
#[derive(Clone, Debug)]
pub struct ActGrid {
    /// `[1, C, 1, 1]`.
    pub step: Tensor<4>,
    /// `[1, C, 1, 1]`.
    pub top: Tensor<4>,
}

impl ActGrid {
    /// The grid of per-channel `steps` on `device`.
    pub fn new(steps: &[f32], device: &Device) -> Self {
        let c = steps.len();
        let step = Tensor::from_data(TensorData::new(steps.to_vec(), [1, c, 1, 1]), device);
        let top = step.clone().mul_scalar(255.0);
        ActGrid { step, top }
    }

    /// Fake quantization of a non-negative activation: clamped at the top (no gradient past
    /// it, as in int8) and rounded to the grid with the gradient passed straight through.
    pub fn apply(&self, h: Tensor<4>) -> Tensor<4> {
        let clamped = h.clone() - relu(h - self.top.clone());
        let q = (clamped.clone() / self.step.clone()).round() * self.step.clone();
        clamped.clone() + (q - clamped).detach()
    }
}

/// What quantization-aware training rounds to: the int8 grid of every hidden activation of
/// both transforms, and every layer's weight rescaling (the quantizer rounds `w·g` per output
/// channel to `max|w·g| / 127` steps). [`crate::quantize::photo::qat_targets`] measures them
/// from the model file the quantizer would write.
#[derive(Clone, Debug)]
pub struct ActGrids {
    /// After each hidden analysis layer.
    pub enc: Vec<ActGrid>,
    /// After each hidden synthesis layer.
    pub dec: Vec<ActGrid>,
    /// Per analysis layer, `g` in the weight's layout (empty: float weights).
    pub enc_weights: Vec<Tensor<4>>,
    /// Per synthesis layer, likewise.
    pub dec_weights: Vec<Tensor<4>>,
}

/// `w` rounded as the quantizer rounds it: `w·g` on a grid of `max|w·g| / 127` per output
/// channel (dimension `out` of the layout), divided by `g` again; the gradient passes straight
/// through.
pub fn fake_quant_weight(w: Tensor<4>, g: &Tensor<4>, out: usize) -> Tensor<4> {
    let scaled = w.clone() * g.clone();
    let mut top = scaled.clone().abs();
    for d in (0..4).filter(|&d| d != out) {
        top = top.max_dim(d);
    }
    let step = top.div_scalar(127.0).clamp_min(1e-12).detach();
    let q = (scaled / step.clone()).round() * step / g.clone();
    w.clone() + (q - w).detach()
}

fn conv_on(conv: &Conv2d, x: Tensor<4>, g: Option<&Tensor<4>>) -> Tensor<4> {
    let w = g.map(|g| fake_quant_weight(conv.weight.val(), g, 0));
    conv2d_module(conv, x, w)
}

fn deconv_on(deconv: &ConvTranspose2d, x: Tensor<4>, g: Option<&Tensor<4>>) -> Tensor<4> {
    let w = g.map(|g| fake_quant_weight(deconv.weight.val(), g, 1));
    conv_transpose2d_module(deconv, x, w)
}

impl PhotoCodec {
    /// The analysis transform: `[n, C, H, W]` (pixels in [0, 1], H and W multiples of 16) →
    /// `[n, M, H/16, W/16]`.
    pub fn analysis(&self, x: Tensor<4>) -> Tensor<4> {
        self.analysis_on(x, None)
    }

    /// [`Self::analysis`] with every hidden activation moved onto its int8 grid when `grids`
    /// is given (quantization-aware training: int8 weights too).
    pub fn analysis_on(&self, x: Tensor<4>, grids: Option<&ActGrids>) -> Tensor<4> {
        let last = self.enc.len() - 1;
        let mut h = x;
        for (i, conv) in self.enc.iter().enumerate() {
            h = conv_on(conv, h, grids.and_then(|g| g.enc_weights.get(i)));
            if i < last {
                h = relu(h);
                if let Some(g) = grids.and_then(|g| g.enc.get(i)) {
                    h = g.apply(h);
                }
            }
        }
        h
    }

    /// The synthesis transform: `[n, M, h, w]` → `[n, C, 16h, 16w]` (unclamped pixels).
    pub fn synthesis(&self, y: Tensor<4>) -> Tensor<4> {
        self.synthesis_on(y, None)
    }

    /// [`Self::synthesis`] with every hidden activation moved onto its int8 grid when `grids`
    /// is given.
    pub fn synthesis_on(&self, y: Tensor<4>, grids: Option<&ActGrids>) -> Tensor<4> {
        let last = self.dec.len() - 1;
        let mut h = y;
        for (i, deconv) in self.dec.iter().enumerate() {
            h = deconv_on(deconv, h, grids.and_then(|g| g.dec_weights.get(i)));
            if i < last {
                h = relu(h);
                if let Some(g) = grids.and_then(|g| g.dec.get(i)) {
                    h = g.apply(h);
                }
            }
        }
        h
    }

    /// Steps of quality level `level`, `[1, M, 1, 1]`.
    pub fn steps(&self, level: usize) -> Tensor<4> {
        let [levels, m] = self.log_steps.val().dims();
        let l = level.min(levels - 1);
        self.log_steps
            .val()
            .slice([l..l + 1, 0..m])
            .exp()
            .reshape([1, m, 1, 1])
    }

    /// Level `level`'s steps as plain numbers (one per latent channel).
    pub fn steps_vec(&self, level: usize) -> Vec<f32> {
        plain(self.steps(level).into_data())
    }

    /// The rate knob: every latent channel's step at each setting, coarsest first. The trained
    /// levels, with up to [`KNOB_COARSER`] settings below and [`KNOB_FINER`] above them (at
    /// most [`MAX_LEVELS`](edgevae_shared::format::MAX_LEVELS) in all), extrapolated per channel
    /// at the ladder's mean ratio between neighbouring levels (√2 where the ladder has one
    /// level or does not get finer): the gain vectors of Cui et al. 2021 continue
    /// geometrically, the transforms and the density stay as trained.
    pub fn knob(&self) -> Vec<Vec<f32>> {
        let levels = self.levels();
        let m = self.latent();
        let logs: Vec<Vec<f32>> = (0..levels)
            .map(|l| self.steps_vec(l).iter().map(|v| v.ln()).collect())
            .collect();
        let (coarser, finer) = self.knob_extra();
        let default = -0.5 * std::f32::consts::LN_2;
        let slope: Vec<f32> = (0..m)
            .map(|c| {
                let s = if levels > 1 {
                    (logs[levels - 1][c] - logs[0][c]) / (levels - 1) as f32
                } else {
                    default
                };
                if s.is_finite() && s < 0.0 {
                    s
                } else {
                    default
                }
            })
            .collect();
        let at = |k: isize| -> Vec<f32> {
            (0..m)
                .map(|c| {
                    let (base, off) = if k < 0 {
                        (logs[0][c], k as f32)
                    } else if k as usize >= levels {
                        (logs[levels - 1][c], (k - levels as isize + 1) as f32)
                    } else {
                        (logs[k as usize][c], 0.0)
                    };
                    (base + off * slope[c]).exp()
                })
                .collect()
        };
        (-(coarser as isize)..(levels + finer) as isize)
            .map(at)
            .collect()
    }

    /// Settings the rate knob adds (below, above) the trained levels.
    fn knob_extra(&self) -> (usize, usize) {
        let room = edgevae_shared::format::MAX_LEVELS.saturating_sub(self.levels());
        let finer = KNOB_FINER.min(room);
        (KNOB_COARSER.min(room - finer), finer)
    }

    /// The rate knob's settings (0-based) that are trained levels rather than extrapolated.
    pub fn knob_trained(&self) -> std::ops::Range<usize> {
        let coarser = self.knob_extra().0;
        coarser..coarser + self.levels()
    }

    /// `steps` (one per latent channel) as a `[1, M, 1, 1]` tensor on the model's device.
    pub fn steps_tensor(&self, steps: &[f32]) -> Tensor<4> {
        let m = steps.len();
        Tensor::from_data(
            TensorData::new(steps.to_vec(), [1, m, 1, 1]),
            &self.device(),
        )
    }

    /// Bits of `v` (`[n, M, h, w]`, in latent units) in the bins of width `delta`
    /// (`[1, M, 1, 1]`) around each value, summed.
    pub fn bits(&self, v: Tensor<4>, delta: Tensor<4>) -> Tensor<1> {
        let [n, m, h, w] = v.dims();
        let flat = v.swap_dims(0, 1).reshape([m, 1, n * h * w]);
        let lik = self.prior.likelihood(flat, delta.reshape([m, 1, 1]));
        lik.log().sum().div_scalar(-std::f64::consts::LN_2)
    }

    /// The training loss of a batch at quality level `level`, `λ·255²·MSE + bits/pixel`: the
    /// rate of `y + Δ·u` with `u` uniform in [−½, ½) (`[n, M, H/16, W/16]`, given by the caller
    /// for reproducibility). The synthesis sees the same noisy latent, or with `rounded` the
    /// latent the decoder will get, `round(y/Δ)·Δ`, its gradient passed straight through
    /// (Minnen & Singh 2020's mixed quantisation: no train/test mismatch in the synthesis).
    /// With `grids` both transforms see their hidden activations on the int8 model file's grids
    /// ([`ActGrids`]).
    pub fn loss(
        &self,
        x: Tensor<4>,
        u: Tensor<4>,
        level: usize,
        lambda: f64,
        rounded: bool,
        grids: Option<&ActGrids>,
    ) -> PhotoLoss {
        let [n, _, hh, ww] = x.dims();
        let y = self.analysis_on(x.clone(), grids);
        let delta = self.steps(level);
        let noisy = y.clone() + u * delta.clone();
        let bits = self.bits(noisy.clone(), delta);
        let y_dec = if rounded {
            let r = self.dequantize(self.quantize(y.clone(), level), level);
            y.clone() + (r - y).detach()
        } else {
            noisy
        };
        let x_hat = self.synthesis_on(y_dec, grids);
        let mse = (x_hat - x).powi_scalar(2).mean();
        let bpp = bits.div_scalar((n * hh * ww) as f64);
        PhotoLoss {
            loss: mse.clone() * (lambda * 255.0 * 255.0) + bpp.clone(),
            mse,
            bpp,
        }
    }

    /// Quantizes `y` at `level`: integer symbols `round(y / Δ)` (half away from zero), same
    /// shape.
    pub fn quantize(&self, y: Tensor<4>, level: usize) -> Tensor<4> {
        let q = y / self.steps(level);
        // round half away from zero: sign(q)·floor(|q| + ½)
        q.clone().sign() * (q.abs() + 0.5).floor()
    }

    /// Symbols back to latent values: `s·Δ`.
    pub fn dequantize(&self, s: Tensor<4>, level: usize) -> Tensor<4> {
        s * self.steps(level)
    }

    /// Latent channels.
    pub fn latent(&self) -> usize {
        self.log_steps.val().dims()[1]
    }

    /// Quality levels.
    pub fn levels(&self) -> usize {
        self.log_steps.val().dims()[0]
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.log_steps.val().device()
    }
}

impl PhotoCodec {
    /// This trained codec widened to `cfg` (more latent channels, wider synthesis; the same
    /// image channels, analysis widths and levels) without changing what it computes (Chen et
    /// al. 2016's function-preserving growth): the old weights fill the leading corner of each
    /// tensor of `cfg.init`, every weight that reads a new latent or hidden channel in the
    /// synthesis is zero (so the output and the old channels' rates are unchanged), and new
    /// latent channel `c` starts as a copy of old channel `c mod M` (its analysis row, steps and
    /// density, the weights jittered by up to 0.5 %). The copies cost bits at first but carry
    /// values the synthesis can learn from: with zero-valued new channels and zero synthesis
    /// rows, neither would get a gradient through the rounded latent. Training then teaches the
    /// new channels what the old ones could not carry.
    pub fn widen(&self, cfg: &PhotoConfig) -> Result<PhotoCodec, crate::Error> {
        cfg.validate()?;
        let old_latent = self.latent();
        let [_, channels, _, _] = self.enc[0].weight.val().dims();
        let old_dec: Vec<usize> = self.dec.iter().map(|d| d.weight.val().dims()[1]).collect();
        let old_enc: Vec<usize> = self.enc.iter().map(|c| c.weight.val().dims()[0]).collect();
        let fits = channels == cfg.channels
            && old_enc[..3] == cfg.enc[..]
            && old_latent <= cfg.latent
            && old_dec[..3].iter().zip(&cfg.dec).all(|(a, b)| a <= b)
            && self.levels() == cfg.levels();
        if !fits {
            return Err(crate::Error::Invalid(format!(
                "cannot widen a photo codec of {channels} channels, analysis {:?}, latent {old_latent}, synthesis {:?}, {} levels to {:?}: the image channels, analysis widths and levels must stay, the latent and synthesis may only grow",
                &old_enc[..3],
                &old_dec[..3],
                self.levels(),
                cfg
            )));
        }
        let device = self.device();
        let mut new = cfg.init(&device);
        // The analysis layers keep their widths (only the latent layer grows: its new rows
        // copy old ones), the synthesis layers zero every row that reads a new channel.
        for (dst, src) in new.enc.iter_mut().zip(&self.enc) {
            dst.weight = grow_param(&dst.weight, &src.weight, NewRows::Copy);
            if let (Some(d), Some(s)) = (&dst.bias, &src.bias) {
                dst.bias = Some(grow_param(d, s, NewRows::Copy));
            }
        }
        for (dst, src) in new.dec.iter_mut().zip(&self.dec) {
            // ConvTranspose2d weights are `[in, out, k, k]`.
            dst.weight = grow_param(&dst.weight, &src.weight, NewRows::Zero);
            if let (Some(d), Some(s)) = (&dst.bias, &src.bias) {
                dst.bias = Some(grow_param(d, s, NewRows::Zero));
            }
        }
        let prior = |dst: &mut Vec<Param<Tensor<3>>>, src: &[Param<Tensor<3>>]| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = grow_param(d, s, NewRows::Copy);
            }
        };
        prior(&mut new.prior.matrices, &self.prior.matrices);
        prior(&mut new.prior.biases, &self.prior.biases);
        prior(&mut new.prior.factors, &self.prior.factors);
        let [levels, _] = self.log_steps.val().dims();
        let old = plain(self.log_steps.val().into_data());
        let m = cfg.latent;
        let steps: Vec<f32> = (0..levels)
            .flat_map(|l| {
                let row = &old[l * old_latent..(l + 1) * old_latent];
                (0..m).map(move |c| row[c % old_latent])
            })
            .collect();
        new.log_steps = Param::from_tensor(Tensor::from_data(
            TensorData::new(steps, [levels, m]),
            &device,
        ));
        Ok(new)
    }
}

/// What [`grow_param`] puts in the rows (first index) a grown tensor adds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NewRows {
    /// Zero: nothing reads the new channels yet.
    Zero,
    /// Row `r` is a copy of old row `r mod old rows` (a ±0.5 % jitter breaks the symmetry).
    Copy,
}

/// `dst` with `src` written into its leading corner and its new rows filled as `rows` says;
/// the new columns of old rows keep `dst`'s initial values.
fn grow_param<const D: usize>(
    dst: &Param<Tensor<D>>,
    src: &Param<Tensor<D>>,
    rows: NewRows,
) -> Param<Tensor<D>> {
    let d = dst.val();
    let (dd, sd) = (d.dims(), src.val().dims());
    let device = d.device();
    let mut out = plain(d.into_data());
    let from = plain(src.val().into_data());
    let mut idx = [0usize; D];
    for (n, v) in out.iter_mut().enumerate() {
        let inside = idx.iter().zip(&sd).skip(1).all(|(i, s)| i < s);
        let flat = |first: usize| {
            idx.iter()
                .zip(&sd)
                .skip(1)
                .fold(first, |acc, (i, s)| acc * s + i)
        };
        if idx[0] < sd[0] {
            if inside {
                *v = from[flat(idx[0])];
            }
        } else {
            match rows {
                NewRows::Zero => *v = 0.0,
                NewRows::Copy if inside => {
                    let jitter = ((n as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 1e5;
                    *v = from[flat(idx[0] % sd[0])] * (0.995 + jitter);
                }
                NewRows::Copy => {}
            }
        }
        for k in (0..D).rev() {
            idx[k] += 1;
            if idx[k] < dd[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Param::from_tensor(Tensor::from_data(TensorData::new(out, dd), &device))
}

/// A tensor's values as `f32`s.
pub fn plain(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_frame() {
        let device = crate::compute_device();
        let cfg = PhotoConfig {
            channels: 3,
            enc: [4, 4, 4],
            latent: 8,
            dec: [4, 4, 4],
            lambdas: vec![0.01, 0.02],
        };
        cfg.validate().unwrap();
        let model = cfg.init(&device);
        let x = Tensor::<4>::zeros([2, 3, 32, 48], &device);
        let y = model.analysis(x.clone());
        assert_eq!(y.dims(), [2, 8, 2, 3]);
        assert_eq!(model.synthesis(y.clone()).dims(), [2, 3, 32, 48]);
        let u = Tensor::<4>::zeros([2, 8, 2, 3], &device);
        let l = model.loss(x.clone(), u.clone(), 1, 0.02, false, None);
        let bpp = l.bpp.into_scalar::<f32>();
        assert!(bpp.is_finite() && bpp > 0.0, "bpp {bpp}");
        // With u = 0 the noisy latent is y itself; the rounded one differs unless y is on the
        // grid, and the rate term does not depend on the switch.
        let r = model.loss(x, u, 1, 0.02, true, None);
        assert_eq!(r.bpp.into_scalar::<f32>(), bpp);
        assert!(r.mse.into_scalar::<f32>().is_finite());
    }

    #[test]
    fn activation_grids_round_clamp_and_pass_gradients_straight_through() {
        let device = crate::train_device();
        let grid = ActGrid::new(&[0.5, 0.1], &device);
        // Channel 0: step 0.5, top 127.5; channel 1: step 0.1, top 25.5.
        let v = [0.0f32, 0.26, 3.1, 200.0, 0.0, 0.26, 3.1, 200.0];
        let h = Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 2, 2, 2]), &device)
            .require_grad();
        let q = grid.apply(h.clone());
        let got = plain(q.clone().into_data());
        let want = [0.0f32, 0.5, 3.0, 127.5, 0.0, 0.3, 3.1, 25.5];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} != {want:?}");
        }
        let grads = q.sum().backward();
        let dh = plain(h.grad(&grads).unwrap().into_data());
        // Inside the range the rounding is transparent to the gradient; past the top, the
        // clamped value does not move.
        assert_eq!(dh, vec![1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn density_is_a_distribution() {
        let device = crate::compute_device();
        let prior = FactorizedPrior::init(2, &device);
        // Bins of width 1 covering [-200.5, 200.5) hold almost all of the mass (the initial
        // density spreads like a logistic of scale 10).
        let v: Vec<f32> = (-200..=200).flat_map(|k| [k as f32, k as f32]).collect();
        let n = v.len() / 2;
        let v = Tensor::<2>::from_data(TensorData::new(v, [n, 2]), &device)
            .swap_dims(0, 1)
            .reshape([2, 1, n]);
        let p = prior.likelihood(v, Tensor::ones([2, 1, 1], &device));
        let total: Vec<f32> = plain(p.sum_dim(2).into_data());
        for t in total {
            assert!((t - 1.0).abs() < 1e-3, "mass {t}");
        }
    }

    #[test]
    fn widening_keeps_what_the_codec_computes() {
        let device = crate::compute_device();
        let small = PhotoConfig {
            channels: 1,
            enc: [4, 4, 4],
            latent: 6,
            dec: [5, 4, 3],
            lambdas: vec![0.01, 0.02],
        };
        let codec = small.init(&device);
        let wide = PhotoConfig {
            latent: 9,
            dec: [8, 4, 6],
            ..small.clone()
        };
        let grown = codec.widen(&wide).unwrap();
        assert_eq!(grown.latent(), 9);
        let x: Vec<f32> = (0..2 * 32 * 48)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [2, 1, 32, 48]), &device);
        let (y, y2) = (codec.analysis(x.clone()), grown.analysis(x));
        let (a, b) = (
            plain(y.clone().into_data()),
            plain(y2.clone().slice([0..2, 0..6]).into_data()),
        );
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5));
        let (xa, xb) = (
            plain(codec.synthesis(y.clone()).into_data()),
            plain(grown.synthesis(y2.clone()).into_data()),
        );
        assert!(xa.iter().zip(&xb).all(|(p, q)| (p - q).abs() < 1e-5));
        // The new channels start near copies of the first old ones (the synthesis ignores
        // them for now), with their steps.
        let copy = plain(y2.slice([0..2, 6..9]).into_data());
        let orig = plain(y.slice([0..2, 0..3]).into_data());
        let scale = orig.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);
        assert!(copy
            .iter()
            .zip(&orig)
            .all(|(p, q)| (p - q).abs() <= 0.02 * scale + 1e-5));
        for l in 0..2 {
            let (s, g) = (codec.steps_vec(l), grown.steps_vec(l));
            assert!(s.iter().zip(&g).all(|(p, q)| (p - q).abs() < 1e-6));
            assert!((0..3).all(|c| (g[6 + c] - s[c]).abs() < 1e-6));
        }
        // Shrinking, or changing the analysis, is refused.
        assert!(grown.widen(&small).is_err());
        let other = PhotoConfig {
            enc: [4, 5, 4],
            ..wide
        };
        assert!(codec.widen(&other).is_err());
    }

    #[test]
    fn the_knob_extends_the_ladder_geometrically() {
        let device = crate::compute_device();
        let cfg = PhotoConfig {
            channels: 1,
            enc: [4, 4, 4],
            latent: 3,
            dec: [4, 4, 4],
            lambdas: vec![0.01, 0.02, 0.04],
        };
        let codec = cfg.init(&device);
        let knob = codec.knob();
        assert_eq!(knob.len(), 3 + KNOB_COARSER + KNOB_FINER);
        let trained = codec.knob_trained();
        assert_eq!(trained, KNOB_COARSER..KNOB_COARSER + 3);
        for (l, k) in trained.enumerate() {
            assert_eq!(knob[k], codec.steps_vec(l));
        }
        // The initial ladder falls by √2 a level: so does the knob past both ends.
        for w in knob.windows(2) {
            for (a, b) in w[0].iter().zip(&w[1]) {
                assert!((a / b - std::f32::consts::SQRT_2).abs() < 1e-4, "{a} {b}");
            }
        }
        // A ladder of the most levels a file holds gets no extra settings.
        let full = PhotoConfig {
            lambdas: vec![0.01; edgevae_shared::format::MAX_LEVELS],
            ..cfg
        };
        assert_eq!(
            full.init(&device).knob().len(),
            edgevae_shared::format::MAX_LEVELS
        );
    }

    #[test]
    fn macs_per_pixel_of_the_shipped_shapes() {
        assert!(PhotoConfig::gray().encoder_macs_per_pixel() <= 1000.0);
        assert!(PhotoConfig::rgb().encoder_macs_per_pixel() <= 1000.0);
        PhotoConfig::gray().validate().unwrap();
        PhotoConfig::rgb().validate().unwrap();
    }
}
