//! Evaluation: negative ELBO, PSNR and SSIM of the reconstruction from `mu`, active latent
//! units, and PNG figures (reconstructions, prior samples, loss curves).

pub mod classical;
pub mod figures;
pub mod photo_rd;
pub mod rd;
pub mod recover;
pub mod refcodec;

pub use figures::{reconstruction_figure, samples_figure, write_figures};

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, IMAGE_PIXELS, IMAGE_SIDE};
use crate::inference::{batch_tensor, to_vec};
use crate::metrics::ssim;
use crate::model::{neg_elbo, Likelihood, NegElbo, Vae};
use crate::train::EpochMetrics;

/// Variance of a latent's `mu` over the data above which the unit counts as active.
pub const ACTIVE_UNIT_THRESHOLD: f64 = 0.01;

/// Test-set metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Images evaluated.
    pub images: usize,
    /// Negative ELBO terms.
    #[serde(flatten)]
    pub elbo: NegElbo,
    /// Mean over images of the PSNR (dB, peak 1) of `sigmoid(decode(mu))` against the image.
    pub psnr: f64,
    /// Mean over images of the SSIM (Gaussian window 11, σ 1.5, valid region, peak 1) of the
    /// same reconstruction.
    pub ssim: f64,
    /// Mean squared error of the same reconstruction (pixels in [0, 1]).
    pub mse: f64,
    /// Latent units whose `mu` varies over the data by more than [`ACTIVE_UNIT_THRESHOLD`].
    pub active_units: usize,
    /// Latent size.
    pub latent: usize,
    /// Variance of each latent's `mu` over the data.
    pub mu_variance: Vec<f64>,
}

/// All test metrics of `model` on `data`.
pub fn evaluate(
    model: &Vae,
    likelihood: Likelihood,
    data: &Dataset,
    batch: usize,
    seed: u64,
) -> EvalMetrics {
    let pixels = data.to_f32();
    let n = data.len();
    let elbo = neg_elbo(model, likelihood, &pixels, n, batch, seed);
    let device = model.enc1.weight.val().device();
    let latent = model.fc_mu.weight.val().dims()[1];
    let idx: Vec<usize> = (0..n).collect();
    let (mut psnr, mut ssim_sum, mut se) = (0.0f64, 0.0f64, 0.0f64);
    let mut mu_sum = vec![0.0f64; latent];
    let mut mu_sq = vec![0.0f64; latent];
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(&pixels, chunk, &device);
        let mu = model.encode_mu(x);
        let recon = to_vec(model.decode_image(mu.clone()).into_data());
        let mu = to_vec(mu.into_data());
        for (k, &i) in chunk.iter().enumerate() {
            let orig = &pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS];
            let rec = &recon[k * IMAGE_PIXELS..(k + 1) * IMAGE_PIXELS];
            let mse_i = orig
                .iter()
                .zip(rec)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                / IMAGE_PIXELS as f64;
            se += mse_i;
            psnr += crate::metrics::psnr(orig, rec);
            ssim_sum += ssim(orig, rec, IMAGE_SIDE, IMAGE_SIDE);
            for (j, &m) in mu[k * latent..(k + 1) * latent].iter().enumerate() {
                mu_sum[j] += f64::from(m);
                mu_sq[j] += f64::from(m) * f64::from(m);
            }
        }
    }
    let nf = n.max(1) as f64;
    let mu_variance: Vec<f64> = mu_sum
        .iter()
        .zip(&mu_sq)
        .map(|(s, q)| (q / nf - (s / nf).powi(2)).max(0.0))
        .collect();
    EvalMetrics {
        images: n,
        elbo,
        psnr: psnr / nf,
        ssim: ssim_sum / nf,
        mse: se / nf,
        active_units: mu_variance
            .iter()
            .filter(|&&v| v > ACTIVE_UNIT_THRESHOLD)
            .count(),
        latent,
        mu_variance,
    }
}

/// `metrics.json` of a run: per-epoch training metrics and the final test metrics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Every epoch's training metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Test-set metrics of the final model.
    pub test: EvalMetrics,
}
