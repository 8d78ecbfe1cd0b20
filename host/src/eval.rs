//! Evaluation: negative ELBO, PSNR and SSIM of the reconstruction from `mu`, active latent
//! units, and PNG figures (reconstructions, prior samples, loss curves).

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::Error;
use crate::model::{kl_sum, Likelihood, Vae};
use crate::train::{batch_tensor, EpochMetrics, SplitMix64};
use crate::weights::to_vec;

/// Variance of a latent's `mu` over the data above which the unit counts as active.
pub const ACTIVE_UNIT_THRESHOLD: f64 = 0.01;

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
    let mut rng = SplitMix64(seed);
    let idx: Vec<usize> = (0..n).collect();
    let (mut bce, mut kl) = (0.0f64, 0.0f64);
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(pixels, chunk, &device);
        let eps = rng.noise(chunk.len(), latent, &device);
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
            psnr += 10.0 * (1.0 / mse_i.max(1e-10)).log10();
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

/// SSIM of two `rows × cols` images with pixels in [0, 1]: Gaussian window of 11 taps, σ 1.5,
/// over the valid region (no padding), C1 = 0.01², C2 = 0.03² (Wang et al. 2004).
pub fn ssim(a: &[f32], b: &[f32], rows: usize, cols: usize) -> f64 {
    const K: usize = 11;
    if rows < K || cols < K {
        return f64::NAN;
    }
    let g: Vec<f64> = {
        let w: Vec<f64> = (0..K)
            .map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
            .collect();
        let s: f64 = w.iter().sum();
        w.into_iter().map(|v| v / s).collect()
    };
    // Separable filter of the five maps a, b, a², b², ab over the valid region.
    let (or, oc) = (rows - K + 1, cols - K + 1);
    let maps: [Box<dyn Fn(usize) -> f64>; 5] = [
        Box::new(|i| f64::from(a[i])),
        Box::new(|i| f64::from(b[i])),
        Box::new(|i| f64::from(a[i]).powi(2)),
        Box::new(|i| f64::from(b[i]).powi(2)),
        Box::new(|i| f64::from(a[i]) * f64::from(b[i])),
    ];
    let mut filtered = vec![vec![0.0f64; or * oc]; 5];
    let mut tmp = vec![0.0f64; rows * oc];
    for (m, f) in maps.iter().enumerate() {
        for r in 0..rows {
            for c in 0..oc {
                tmp[r * oc + c] = (0..K).map(|k| g[k] * f(r * cols + c + k)).sum();
            }
        }
        for r in 0..or {
            for c in 0..oc {
                filtered[m][r * oc + c] = (0..K).map(|k| g[k] * tmp[(r + k) * oc + c]).sum();
            }
        }
    }
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    let [fa, fb, faa, fbb, fab] = &filtered[..] else {
        unreachable!("five maps")
    };
    for i in 0..or * oc {
        let (ma, mb) = (fa[i], fb[i]);
        let va = faa[i] - ma * ma;
        let vb = fbb[i] - mb * mb;
        let cov = fab[i] - ma * mb;
        total +=
            ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
    }
    total / (or * oc) as f64
}

/// `<path>.tmp.png`: where a figure is drawn before it is renamed into place.
pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp.png");
    std::path::PathBuf::from(tmp)
}

pub fn save_gray(path: &Path, width: u32, height: u32, pixels: Vec<u8>) -> Result<(), Error> {
    let img = image::GrayImage::from_raw(width, height, pixels)
        .ok_or_else(|| Error::Invalid("figure buffer has the wrong size".into()))?;
    let tmp = tmp_path(path);
    img.save(&tmp)
        .map_err(|e| Error::data(&tmp, format!("cannot write PNG ({e})")))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

/// Tiles 28×28 float images (row-major, [0, 1]) into a grid of `cols` columns, each pixel
/// scaled up `scale` times, with a 2-pixel gap.
pub fn tile(images: &[Vec<f32>], cols: usize, scale: usize) -> (u32, u32, Vec<u8>) {
    let rows = images.len().div_ceil(cols);
    let cell = IMAGE_SIDE * scale + 2;
    let (w, h) = (cols * cell + 2, rows * cell + 2);
    let mut out = vec![64u8; w * h];
    for (k, img) in images.iter().enumerate() {
        let (gy, gx) = (k / cols, k % cols);
        for y in 0..IMAGE_SIDE * scale {
            for x in 0..IMAGE_SIDE * scale {
                let v = img[(y / scale) * IMAGE_SIDE + x / scale];
                out[(2 + gy * cell + y) * w + 2 + gx * cell + x] =
                    (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    (w as u32, h as u32, out)
}

/// Writes `path`: rows of 8 test images, each row followed by their reconstructions from `mu`.
pub fn reconstruction_figure(model: &Vae, data: &Dataset, path: &Path) -> Result<(), Error> {
    let n = data.len().min(32);
    let pixels = data.to_f32();
    let originals = &pixels[..n * IMAGE_PIXELS];
    let mu = crate::weights::encode_mu_batch(model, originals);
    let recon = crate::weights::decode_batch(model, &mu);
    let mut cells = Vec::new();
    for row in 0..n.div_ceil(8) {
        for src in [originals, &recon[..]] {
            for k in row * 8..((row + 1) * 8).min(n) {
                cells.push(src[k * IMAGE_PIXELS..(k + 1) * IMAGE_PIXELS].to_vec());
            }
            while cells.len() % 8 != 0 {
                cells.push(vec![0.25; IMAGE_PIXELS]);
            }
        }
    }
    let (w, h, px) = tile(&cells, 8, 3);
    save_gray(path, w, h, px)
}

/// Writes `path`: an 8×8 grid of images decoded from `z ~ N(0, I)`.
pub fn samples_figure(model: &Vae, seed: u64, path: &Path) -> Result<(), Error> {
    let images = sample_images(model, 64, seed);
    let cells: Vec<Vec<f32>> = images.chunks(IMAGE_PIXELS).map(<[f32]>::to_vec).collect();
    let (w, h, px) = tile(&cells, 8, 3);
    save_gray(path, w, h, px)
}

/// `n` images decoded from latent codes drawn from the prior N(0, I) with `seed`.
pub fn sample_images(model: &Vae, n: usize, seed: u64) -> Vec<f32> {
    let device = model.enc1.weight.val().device();
    let latent = model.fc_mu.weight.val().dims()[1];
    let z = SplitMix64(seed).noise(n, latent, &device);
    to_vec(model.decode_image(z).into_data())
}

/// Writes `path`: train (and test) negative ELBO per epoch.
pub fn loss_figure(epochs: &[EpochMetrics], path: &Path) -> Result<(), Error> {
    if epochs.is_empty() {
        return Ok(());
    }
    let fail = |e: &dyn std::fmt::Display| Error::data(path, format!("cannot draw figure ({e})"));
    let train: Vec<(f64, f64)> = epochs
        .iter()
        .map(|m| (m.epoch as f64, m.train_neg_elbo))
        .collect();
    let test: Vec<(f64, f64)> = epochs
        .iter()
        .filter_map(|m| m.test_neg_elbo.map(|t| (m.epoch as f64, t)))
        .collect();
    let all = train.iter().chain(&test).map(|p| p.1);
    let lo = all.clone().fold(f64::INFINITY, f64::min);
    let hi = all.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.1).max(1.0);
    let x_max = (epochs.len() as f64).max(2.0);
    let font = register_font();
    let tmp = tmp_path(path);
    {
        let root = BitMapBackend::new(&tmp, (640, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15);
        if font {
            builder
                .caption("negative ELBO (nats per image)", ("sans-serif", 20))
                .x_label_area_size(35)
                .y_label_area_size(55);
        }
        let mut chart = builder
            .build_cartesian_2d(1.0..x_max, (lo - pad)..(hi + pad))
            .map_err(|e| fail(&e))?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("epoch");
        if !font {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(|e| fail(&e))?;
        let train_series = chart
            .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))
            .map_err(|e| fail(&e))?;
        if font {
            train_series
                .label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        }
        if !test.is_empty() {
            let test_series = chart
                .draw_series(LineSeries::new(test, RED.stroke_width(2)))
                .map_err(|e| fail(&e))?;
            if font {
                test_series
                    .label("test")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
            }
        }
        if font {
            chart
                .configure_series_labels()
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

/// Registers DejaVu Sans for plot text; false when no font file is installed (plots are then
/// drawn without text).
pub(crate) fn register_font() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
        ];
        for c in candidates {
            if let Ok(bytes) = std::fs::read(c) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Writes `reconstructions.png`, `samples.png` and `loss.png` into `dir`.
pub fn write_figures(
    model: &Vae,
    test: &Dataset,
    epochs: &[EpochMetrics],
    seed: u64,
    dir: &Path,
) -> Result<(), Error> {
    reconstruction_figure(model, test, &dir.join("reconstructions.png"))?;
    samples_figure(model, seed, &dir.join("samples.png"))?;
    loss_figure(epochs, &dir.join("loss.png"))
}

/// `metrics.json` of a run: per-epoch training metrics and the final test metrics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Every epoch's training metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Test-set metrics of the final model.
    pub test: EvalMetrics,
}
