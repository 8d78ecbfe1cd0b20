//! The convolutional VAE. Every layer is one the firmware kernels implement: convolution,
//! transposed convolution, dense, ReLU and sigmoid.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, relu, sigmoid};

use crate::backend::conv::{conv2d_module, conv_transpose2d_module};

use serde::{Deserialize, Serialize};

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};

pub mod layers;
pub mod photo;

/// Side of the feature maps between the encoder convolutions and the dense layers (28 / 2 / 2).
pub const FEATURE_SIDE: usize = IMAGE_SIDE / 4;

/// Shape of the VAE. [`VaeConfig::seed`] is the reference architecture.
#[derive(Config, Debug, PartialEq)]
pub struct VaeConfig {
    /// Latent dimensions (size of `mu` and `logvar`).
    #[config(default = 16)]
    pub latent: usize,
    /// Output channels of the first convolution (and input channels of the last transposed one).
    #[config(default = 32)]
    pub channels1: usize,
    /// Output channels of the second convolution (and of the decoder's dense layer, per pixel).
    #[config(default = 64)]
    pub channels2: usize,
    /// Pixel likelihood: `None` is Bernoulli (binary cross-entropy, the `seed` recipe); `Some(σ)`
    /// is Gaussian with fixed standard deviation σ (pixels in [0, 1]) around the sigmoid output.
    /// Only the training loss changes: the layers are the same.
    pub gaussian_sigma: Option<f64>,
}

/// The decoder's pixel likelihood `p(x|z)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Likelihood {
    /// Bernoulli with mean `sigmoid(logits)`: the negative log-likelihood is the binary
    /// cross-entropy.
    Bernoulli,
    /// Gaussian with mean `sigmoid(logits)` and fixed standard deviation `sigma`.
    Gaussian {
        /// Standard deviation (pixels in [0, 1]).
        sigma: f64,
    },
}

impl Likelihood {
    /// `−log p(x|z)` summed over all elements of the batch (nats).
    pub fn nll_sum(&self, logits: Tensor<4>, x: Tensor<4>) -> Tensor<1> {
        match *self {
            Likelihood::Bernoulli => bce_with_logits_sum(logits, x),
            Likelihood::Gaussian { sigma } => {
                let count = x.dims().iter().product::<usize>() as f64;
                let sq = (sigmoid(logits) - x).powi_scalar(2).sum();
                let norm = (sigma * (2.0 * std::f64::consts::PI).sqrt()).ln();
                sq.div_scalar(2.0 * sigma * sigma) + count * norm
            }
        }
    }
}

impl VaeConfig {
    /// The `seed` architecture: z = 16, widths 32 and 64.
    ///
    /// Encoder: Conv2d(1→32, k3, s2, p1) + ReLU, Conv2d(32→64, k3, s2, p1) + ReLU, flatten,
    /// Dense(64·7·7 → z) for `mu` and another for `logvar`.
    /// Decoder: Dense(z → 64·7·7) + ReLU, ConvTranspose2d(64→32, k4, s2, p1) + ReLU,
    /// ConvTranspose2d(32→1, k4, s2, p1), sigmoid.
    pub fn seed() -> Self {
        Self::new()
    }

    /// Checks that every size is usable.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if let Some(s) = self.gaussian_sigma {
            if !(s > 1e-4 && s < 10.0) {
                return Err(crate::Error::Invalid(format!(
                    "gaussian sigma {s} must be in (1e-4, 10)"
                )));
            }
        }
        if self.latent == 0 || self.channels1 == 0 || self.channels2 == 0 {
            return Err(crate::Error::Invalid(format!(
                "latent size and channel widths must be positive, got latent {}, channels {} and {}",
                self.latent, self.channels1, self.channels2
            )));
        }
        Ok(())
    }

    /// The pixel likelihood this configuration trains with.
    pub fn likelihood(&self) -> Likelihood {
        match self.gaussian_sigma {
            Some(sigma) => Likelihood::Gaussian { sigma },
            None => Likelihood::Bernoulli,
        }
    }

    /// Number of features after flattening the encoder's last feature map.
    pub fn flat(&self) -> usize {
        self.channels2 * FEATURE_SIDE * FEATURE_SIDE
    }

    /// Builds a freshly initialised model (Burn's default, PyTorch-like initialisers).
    pub fn init(&self, device: &Device) -> Vae {
        let (c1, c2, z) = (self.channels1, self.channels2, self.latent);
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let deconv = |i, o| {
            ConvTranspose2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .init(device)
        };
        Vae {
            enc1: conv(1, c1),
            enc2: conv(c1, c2),
            fc_mu: LinearConfig::new(self.flat(), z).init(device),
            fc_logvar: LinearConfig::new(self.flat(), z).init(device),
            dec_fc: LinearConfig::new(z, self.flat()).init(device),
            dec1: deconv(c2, c1),
            dec2: deconv(c1, 1),
        }
    }
}

/// Convolutional VAE for 28×28 grayscale images.
#[derive(Module, Debug)]
pub struct Vae {
    /// Conv2d(1 → c1, k3, s2, p1), then ReLU.
    pub enc1: Conv2d,
    /// Conv2d(c1 → c2, k3, s2, p1), then ReLU.
    pub enc2: Conv2d,
    /// Dense(c2·7·7 → z): the posterior mean.
    pub fc_mu: Linear,
    /// Dense(c2·7·7 → z): the posterior log-variance (training only; the device never runs it).
    pub fc_logvar: Linear,
    /// Dense(z → c2·7·7), then ReLU.
    pub dec_fc: Linear,
    /// ConvTranspose2d(c2 → c1, k4, s2, p1), then ReLU.
    pub dec1: ConvTranspose2d,
    /// ConvTranspose2d(c1 → 1, k4, s2, p1): logits; sigmoid gives the image.
    pub dec2: ConvTranspose2d,
}

/// Loss terms of one batch, each a mean over its images.
#[derive(Clone, Debug)]
pub struct VaeLoss {
    /// What the optimiser minimises: `bce + beta·kl`.
    pub loss: Tensor<1>,
    /// Reconstruction term `−log p(x|z)` of an image (nats): the binary cross-entropy summed over
    /// the pixels for the Bernoulli likelihood.
    pub bce: Tensor<1>,
    /// KL(q(z|x) ‖ N(0, I)) of an image (nats).
    pub kl: Tensor<1>,
}

impl Vae {
    /// Encodes images to the posterior's mean and log-variance.
    ///
    /// - `x`: `[n, 1, 28, 28]`, pixels in [0, 1]
    /// - after `enc1`: `[n, c1, 14, 14]`; after `enc2`: `[n, c2, 7, 7]`
    /// - flattened in (channel, row, column) order: `[n, c2·49]`
    /// - returns `mu`, `logvar`: `[n, z]` each
    pub fn encode(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let h = self.features(x);
        (self.fc_mu.forward(h.clone()), self.fc_logvar.forward(h))
    }

    /// Encodes images to the posterior mean only (what the device computes).
    pub fn encode_mu(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc_mu.forward(self.features(x))
    }

    fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = relu(conv2d_module(&self.enc1, x, None));
        let h = relu(conv2d_module(&self.enc2, h, None));
        let [n, c, hh, ww] = h.dims();
        h.reshape([n, c * hh * ww])
    }

    /// Decodes latent codes to pixel logits.
    ///
    /// - `z`: `[n, z]`
    /// - after `dec_fc`: `[n, c2·49]`, reshaped (channel, row, column) to `[n, c2, 7, 7]`
    /// - after `dec1`: `[n, c1, 14, 14]`; after `dec2`: `[n, 1, 28, 28]` logits
    pub fn decode(&self, z: Tensor<2>) -> Tensor<4> {
        let [n, _] = z.dims();
        let h = relu(self.dec_fc.forward(z));
        let [_, flat] = h.dims();
        let c2 = flat / (FEATURE_SIDE * FEATURE_SIDE);
        let h = h.reshape([n, c2, FEATURE_SIDE, FEATURE_SIDE]);
        let h = relu(conv_transpose2d_module(&self.dec1, h, None));
        conv_transpose2d_module(&self.dec2, h, None)
    }

    /// Decodes latent codes to images in [0, 1]: `sigmoid(decode(z))`, `[n, 1, 28, 28]`.
    pub fn decode_image(&self, z: Tensor<2>) -> Tensor<4> {
        sigmoid(self.decode(z))
    }

    /// One stochastic pass with the standard normal noise `eps` (`[n, z]`) given by the caller
    /// (what reproducible training needs): encode, `z = mu + exp(logvar/2)·eps` (the
    /// reparameterisation trick), decode. Returns `(logits, mu, logvar)`.
    pub fn forward_with_noise(
        &self,
        x: Tensor<4>,
        eps: Tensor<2>,
    ) -> (Tensor<4>, Tensor<2>, Tensor<2>) {
        let (mu, logvar) = self.encode(x);
        let z = mu.clone() + (logvar.clone() * 0.5).exp() * eps;
        (self.decode(z), mu, logvar)
    }

    /// The negative ELBO of a batch with KL weight `beta` and reparameterisation noise `eps`
    /// (`[n, z]`, standard normal): `−log p(x|z)` (for the Bernoulli likelihood
    /// `BCE(x, sigmoid(logits))`) summed per image plus `beta·KL(N(mu, exp(logvar)) ‖ N(0, I))`,
    /// both averaged over the batch.
    pub fn loss(&self, x: Tensor<4>, eps: Tensor<2>, beta: f64, likelihood: Likelihood) -> VaeLoss {
        let [n, _, _, _] = x.dims();
        let (logits, mu, logvar) = self.forward_with_noise(x.clone(), eps);
        let bce = likelihood.nll_sum(logits, x).div_scalar(n as f64);
        let kl = kl_sum(mu, logvar).div_scalar(n as f64);
        VaeLoss {
            loss: bce.clone() + kl.clone() * beta,
            bce,
            kl,
        }
    }

    /// The codec's training loss (rate–distortion): `z = mu + width·u` with `u` uniform in
    /// [−½, ½) (`[n, z]`), `−log p(x|z)` plus `beta` times the rate of `z` in nats
    /// ([`logistic_rate_sum`]), both averaged over the batch. The rate is reported in `kl`.
    pub fn rate_loss(
        &self,
        x: Tensor<4>,
        u: Tensor<2>,
        width: f64,
        beta: f64,
        likelihood: Likelihood,
    ) -> VaeLoss {
        let [n, _, _, _] = x.dims();
        let z = self.encode_mu(x.clone()) + u * width;
        let nll = likelihood
            .nll_sum(self.decode(z.clone()), x)
            .div_scalar(n as f64);
        let rate = logistic_rate_sum(z, width).div_scalar(n as f64);
        VaeLoss {
            loss: nll.clone() + rate.clone() * beta,
            bce: nll,
            kl: rate,
        }
    }
}

/// `Σ −[x·log σ(l) + (1−x)·log(1−σ(l))]` over all elements, computed stably as
/// `Σ (1−x)·l − log σ(l)`.
pub fn bce_with_logits_sum(logits: Tensor<4>, x: Tensor<4>) -> Tensor<1> {
    let per = (x.neg() + 1.0) * logits.clone() - log_sigmoid(logits);
    per.sum()
}

/// `Σ −ln(σ(−|z| + w/2) − σ(−|z| − w/2))` over all elements: the nats of `z` under a logistic(0, 1)
/// density integrated over an interval of width `w` (the mass of a quantization bin), folded to
/// the left tail where the difference of sigmoids keeps its precision.
pub fn logistic_rate_sum(z: Tensor<2>, width: f64) -> Tensor<1> {
    let t = z.abs().neg();
    let mass = sigmoid(t.clone() + width / 2.0) - sigmoid(t - width / 2.0);
    mass.clamp_min(1e-9).log().neg().sum()
}

/// `Σ −½·(1 + logvar − mu² − exp(logvar))` over all elements.
pub fn kl_sum(mu: Tensor<2>, logvar: Tensor<2>) -> Tensor<1> {
    let per = logvar.clone().exp() + mu.powi_scalar(2) - logvar - 1.0;
    per.sum() * 0.5
}

/// Negative ELBO of a data set, per image, in nats (one posterior sample per image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NegElbo {
    /// Reconstruction term + KL.
    pub neg_elbo: f64,
    /// Reconstruction term `−log p(x|z)` (the binary cross-entropy for the Bernoulli likelihood).
    pub bce: f64,
    /// KL(q(z|x) ‖ N(0, I)).
    pub kl: f64,
}

/// The negative ELBO of `n` images given as scaled pixels, in batches of `batch`.
pub fn neg_elbo(
    model: &Vae,
    likelihood: Likelihood,
    pixels: &[f32],
    n: usize,
    batch: usize,
    seed: u64,
) -> NegElbo {
    let device = model.enc1.weight.val().device();
    let latent = model.fc_mu.weight.val().dims()[1];
    let mut rng = crate::rng::seeded(seed);
    let idx: Vec<usize> = (0..n).collect();
    let (mut bce, mut kl) = (0.0f64, 0.0f64);
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(pixels, chunk, &device);
        let eps = crate::rng::normal_tensor(&mut rng, chunk.len(), latent, &device);
        let (logits, mu, logvar) = model.forward_with_noise(x.clone(), eps);
        bce += likelihood.nll_sum(logits, x).into_scalar::<f32>() as f64;
        kl += kl_sum(mu, logvar).into_scalar::<f32>() as f64;
    }
    let n = n.max(1) as f64;
    NegElbo {
        neg_elbo: (bce + kl) / n,
        bce: bce / n,
        kl: kl / n,
    }
}

/// Copies the pixels of `idx` images from `all` (scaled floats) into one batch tensor.
pub fn batch_tensor(all: &[f32], idx: &[usize], device: &Device) -> Tensor<4> {
    let mut buf = Vec::with_capacity(idx.len() * IMAGE_PIXELS);
    for &i in idx {
        buf.extend_from_slice(&all[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]);
    }
    Tensor::from_data(
        TensorData::new(buf, [idx.len(), 1, IMAGE_SIDE, IMAGE_SIDE]),
        device,
    )
}
