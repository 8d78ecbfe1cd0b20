//! The command line, one file per subcommand; this file holds what several of them share.

pub mod bench;
pub mod codec;
pub mod cut;
pub mod defmt_print;
pub mod eval;
pub mod export;
pub mod hil;
pub mod inspect;
pub mod photos;
pub mod quantize;
pub mod recover;
pub mod sample;
pub mod train;

use std::path::{Path, PathBuf};

use clap::Args;
use edgevae::Error;

#[derive(Args)]
pub struct PriorArgs {
    /// Starts per image for the VAE prior (the first from the encoder, the rest from N(0, I)).
    #[arg(long, default_value_t = 4)]
    restarts: usize,
    /// Adam steps per start.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Adam's learning rate on z.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Weight of ||z||^2.
    #[arg(long, default_value_t = 0.01)]
    lambda: f64,
    /// Seed of the measurements, masks, noise and random starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl PriorArgs {
    fn options(&self) -> Result<edgevae::eval::recover::PriorOptions, Error> {
        if self.restarts == 0
            || self.steps == 0
            || self.lr.is_nan()
            || self.lr <= 0.0
            || self.lambda.is_nan()
            || self.lambda < 0.0
        {
            return Err(Error::Invalid(
                "--restarts and --steps must be positive, --lr > 0 and --lambda >= 0".into(),
            ));
        }
        Ok(edgevae::eval::recover::PriorOptions {
            restarts: self.restarts,
            steps: self.steps,
            lr: self.lr,
            lambda: self.lambda,
            seed: self.seed,
            ..Default::default()
        })
    }
}

#[derive(Args)]
pub struct DataArg {
    /// Data: a folder of MNIST-layout idx files (.gz or raw), one idx3 file, or a folder of
    /// PNG/JPEG images [default: /usr/share/datasets/fashion-mnist]
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::data(path, e))?;
    edgevae::files::write_atomic(path, &json)
}

pub fn print_eval(m: &edgevae::eval::EvalMetrics) {
    println!(
        "test ({} images): -ELBO {:.2} nats (BCE {:.2}, KL {:.2}), PSNR {:.2} dB, SSIM {:.4}, \
         active units {}/{}",
        m.images, m.elbo.neg_elbo, m.elbo.bce, m.elbo.kl, m.psnr, m.ssim, m.active_units, m.latent
    );
}

/// `n` training images spread over the set, pixels in [0, 1].
pub fn spread_images(train_set: &edgevae::data::Dataset, n: usize) -> Vec<f32> {
    train_set
        .spread(n)
        .into_iter()
        .flat_map(edgevae::metrics::to_f32)
        .collect()
}

/// 16 training images spread over the set: what the Lasso weights are tuned on.
pub fn tune_images(train_set: &edgevae::data::Dataset) -> Vec<f32> {
    spread_images(train_set, 16)
}

pub fn run_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
