//! `edgevae train`: train a run directory, then evaluate it.

use std::path::PathBuf;

use clap::Args;
use edgevae::eval::RunMetrics;
use edgevae::train::TrainOptions;
use edgevae::Error;

use super::*;
use edgevae::data::Split;
use edgevae::{TrainConfig, VaeConfig};

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArg,
    /// Run directory (config.json, model.bpk, checkpoints, metrics, figures).
    #[arg(long, default_value = "runs/default")]
    out: PathBuf,
    /// Continue from the checkpoint in the run directory (only --epochs may change).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Latent size.
    #[arg(long, default_value_t = 16)]
    latent: usize,
    /// Channels of the first convolution.
    #[arg(long, default_value_t = 32)]
    channels1: usize,
    /// Channels of the second convolution.
    #[arg(long, default_value_t = 64)]
    channels2: usize,
    /// KL weight.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Train with a Gaussian pixel likelihood of this standard deviation (pixels in [0, 1])
    /// instead of the Bernoulli (binary cross-entropy) of the seed recipe.
    #[arg(long)]
    gaussian_sigma: Option<f64>,
    /// Epochs of linear KL warm-up from 0 to beta.
    #[arg(long, default_value_t = 0)]
    kl_warmup: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Anneal the learning rate along a cosine from --lr down to this value over the run.
    #[arg(long)]
    lr_min: Option<f64>,
    /// Train for the codec: uniform latent noise of this width and a rate term (weighted by
    /// --beta) instead of the ELBO's sampling and KL.
    #[arg(long)]
    rate_noise: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run_train(a: TrainArgs) -> Result<(), Error> {
    let model = VaeConfig::new()
        .with_latent(a.latent)
        .with_channels1(a.channels1)
        .with_channels2(a.channels2)
        .with_gaussian_sigma(a.gaussian_sigma);
    let cfg = TrainConfig::new(model, TrainConfig::adam())
        .with_epochs(a.epochs)
        .with_batch_size(a.batch)
        .with_beta(a.beta)
        .with_kl_warmup_epochs(a.kl_warmup)
        .with_learning_rate(a.lr)
        .with_lr_min(a.lr_min)
        .with_rate_noise(a.rate_noise)
        .with_seed(a.seed);
    cfg.validate()?;
    let mut train_set = edgevae::data::load(a.data.data.as_deref(), Split::Train)?;
    if let Some(n) = a.limit {
        train_set = train_set.truncate(n);
    }
    let test_set = edgevae::data::load(a.data.data.as_deref(), Split::Test)?;
    let opts = TrainOptions {
        run_dir: Some(a.out.clone()),
        resume: a.resume,
        progress: !a.quiet,
        max_steps: None,
    };
    let outcome = edgevae::train::train(&cfg, &train_set, Some(&test_set), &opts)?;
    let test = edgevae::eval::evaluate(
        &outcome.model,
        cfg.model.likelihood(),
        &test_set,
        256,
        cfg.seed,
    );
    edgevae::eval::write_figures(&outcome.model, &test_set, &outcome.epochs, cfg.seed, &a.out)?;
    print_eval(&test);
    write_json(
        &a.out.join("metrics.json"),
        &RunMetrics {
            epochs: outcome.epochs,
            test,
        },
    )
}
