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
    /// Learning rate [default: 1e-3; photo codec 3e-4].
    #[arg(long)]
    lr: Option<f64>,
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
    /// Data parallelism: split each batch across N devices of the backend (GPUs 0..N of wgpu,
    /// Vulkan or CUDA), the gradients summed per parameter on one of them by Burn's
    /// `step_multi`. The CPU backends have one device, which every shard then shares (same
    /// result, no faster). The 28×28 trainer only, for now.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Train the fully convolutional photo codec instead of the 28×28 VAE: `gray` (1 channel)
    /// or `rgb`, on random crops of the photographs in --data (any size, PNG/JPEG/WebP)
    /// [--data default: runs/photos/train, made by `edgevae photos`].
    #[arg(long, value_parser = ["gray", "rgb"])]
    photo: Option<String>,
    /// Photo codec: side of the square training crops (a multiple of 16).
    #[arg(long, default_value_t = 128)]
    crop: usize,
    /// Photo codec: optimiser steps in total.
    #[arg(long, default_value_t = 20000)]
    steps: usize,
    /// Photo codec: folder of held-out photographs checked at every checkpoint
    /// [default: runs/photos/val when it exists].
    #[arg(long)]
    val: Option<PathBuf>,
    /// Photo codec: steps between checkpoints.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Photo codec: train the synthesis on the noisy latent (CompressAI's convention) instead
    /// of the rounded one with a straight-through gradient.
    #[arg(long)]
    noise_synthesis: bool,
    /// Photo codec: quantization-aware training: every hidden activation is rounded to the
    /// int8 grid `edgevae quantize` would give it (fine-tune a trained run with --resume
    /// before quantizing it).
    #[arg(long)]
    qat: bool,
    /// Photo codec: latent channels [default: 64].
    #[arg(long)]
    photo_latent: Option<usize>,
    /// Photo codec: synthesis widths, three numbers `A,B,C` [default: 64,48,32].
    #[arg(long, value_delimiter = ',')]
    photo_dec: Option<Vec<usize>>,
    /// Photo codec: start a new run from the trained photo run in this folder, widened to
    /// --photo-latent / --photo-dec without changing what it computes (the new channels then
    /// learn what the old ones could not carry).
    #[arg(long, conflicts_with = "resume")]
    widen_from: Option<PathBuf>,
}

fn run_train_photo(a: TrainArgs, kind: &str) -> Result<(), Error> {
    use edgevae::data::photos::{load_photos, PhotoSet};
    use edgevae::model::photo::PhotoConfig;
    use edgevae::train::photo::{train_photo_from, PhotoTrainConfig};
    let mut photo = if kind == "rgb" {
        PhotoConfig::rgb()
    } else {
        PhotoConfig::gray()
    };
    if let Some(m) = a.photo_latent {
        photo.latent = m;
    }
    if let Some(d) = &a.photo_dec {
        photo.dec = <[usize; 3]>::try_from(d.as_slice()).map_err(|_| {
            Error::Invalid(format!(
                "--photo-dec takes three widths A,B,C, got {} ({d:?})",
                d.len()
            ))
        })?;
    }
    let channels = photo.channels;
    let mut cfg = PhotoTrainConfig::new(photo, a.steps);
    cfg.batch = a.batch;
    cfg.crop = a.crop;
    cfg.learning_rate = a.lr.unwrap_or(cfg.learning_rate);
    cfg.lr_min = a.lr_min.unwrap_or(cfg.lr_min.min(cfg.learning_rate));
    cfg.seed = a.seed;
    cfg.checkpoint_every = a.checkpoint_every;
    cfg.rounded_synthesis = !a.noise_synthesis;
    cfg.qat = a.qat;
    cfg.validate()?;
    let dir = a
        .data
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/photos/train"));
    let mut photos = load_photos(&dir, channels)?;
    if let Some(n) = a.limit {
        photos.truncate(n.max(1));
    }
    let train = PhotoSet::new(photos, channels)?;
    let val_dir = a.val.clone().or_else(|| {
        let d = PathBuf::from("runs/photos/val");
        d.is_dir().then_some(d)
    });
    let val = match val_dir {
        Some(d) => Some(PhotoSet::new(load_photos(&d, channels)?, channels)?),
        None => None,
    };
    if a.devices != 1 {
        return Err(Error::Invalid(
            "--devices is not implemented for the photo codec yet (the 28x28 trainer has it)"
                .into(),
        ));
    }
    let opts = TrainOptions {
        run_dir: Some(a.out.clone()),
        resume: a.resume,
        progress: !a.quiet,
        max_steps: None,
        devices: None,
    };
    eprintln!(
        "photo codec {kind}: {} training photos, encoder {:.0} MACs/pixel, decoder {:.0} MACs/pixel, {} levels",
        train.len(),
        cfg.photo.encoder_macs_per_pixel(),
        cfg.photo.decoder_macs_per_pixel(),
        cfg.photo.levels()
    );
    let init = match &a.widen_from {
        Some(dir) => {
            let device = edgevae::train_device();
            let (from, codec) = edgevae::train::photo::load_photo_model(dir, &device)?;
            cfg.photo.lambdas = from.lambdas.clone();
            let wide = codec.widen(&cfg.photo)?;
            eprintln!(
                "widened {} (latent {}, synthesis {:?}) to latent {}, synthesis {:?}",
                dir.display(),
                from.latent,
                from.dec,
                cfg.photo.latent,
                cfg.photo.dec
            );
            Some(wide)
        }
        None => None,
    };
    let out = train_photo_from(&cfg, init, &train, val.as_ref(), &opts)?;
    if let Some(last) = out.log.last() {
        for v in &last.val {
            println!(
                "level {}: {:.4} bpp (entropy model), {:.2} dB on validation crops",
                v.level, v.bpp, v.psnr
            );
        }
    }
    Ok(())
}

pub fn run_train(a: TrainArgs) -> Result<(), Error> {
    if let Some(kind) = a.photo.clone() {
        return run_train_photo(a, &kind);
    }
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
        .with_learning_rate(a.lr.unwrap_or(1e-3))
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
        devices: Some(edgevae::backend::train_devices(a.devices)?),
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
