//! Training: Adam on the negative ELBO, per-epoch metrics, atomic checkpoints and resume.
//!
//! A run directory holds `config.json` ([`TrainConfig`]), `model.bpk` (weights in Burn's burnpack
//! format), `optimizer.bpk` and `state.json` (the checkpoint: epochs done and their metrics), and
//! `metrics.csv`. Each file is written to a temporary name and renamed into place, so a crash
//! leaves the previous checkpoint whole.

pub mod bench;
pub mod photo;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, MultiGradientsParams};
use burn::prelude::*;
use burn::tensor::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::data::{check_shape, Dataset};
use crate::error::Error;
use crate::inference::{batch_tensor, load_weights, CONFIG_FILE, MODEL_FILE};
use crate::model::{Vae, VaeConfig};
use crate::rng::SliceRandom;

/// Adam state (burnpack).
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// Checkpoint state: epochs done and their metrics.
pub const STATE_FILE: &str = "state.json";
/// Per-epoch metrics.
pub const METRICS_CSV: &str = "metrics.csv";

/// Everything that determines a training run; saved as `config.json` beside the weights.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// Model shape.
    pub model: VaeConfig,
    /// Adam's hyper-parameters (betas, epsilon, weight decay).
    pub optimizer: AdamConfig,
    /// Weight of the KL term once warm-up is over (1 gives the true ELBO).
    #[config(default = 1.0)]
    pub beta: f64,
    /// Epochs over which the KL weight ramps linearly from 0 to `beta` (0: no warm-up).
    #[config(default = 0)]
    pub kl_warmup_epochs: usize,
    /// Images per optimiser step.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Epochs to train.
    #[config(default = 10)]
    pub epochs: usize,
    /// Seed of the initial weights, the shuffling and the sampling noise.
    #[config(default = 42)]
    pub seed: u64,
    /// Adam's learning rate.
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// When set, the learning rate follows a cosine from `learning_rate` at the first step down to
    /// this value at the last step of `epochs`; otherwise it stays constant (the seed recipe).
    pub lr_min: Option<f64>,
    /// Train for the codec (rate–distortion) instead of the ELBO: the latent is `mu` plus uniform
    /// noise of this width (what quantizing with that step does, Ballé et al. 2017) and the KL
    /// term becomes the rate, `−ln P(z)` under a fixed logistic(0, 1) prior integrated over the
    /// noise interval, weighted by `beta`. The `logvar` head is left untrained.
    pub rate_noise: Option<f64>,
}

impl TrainConfig {
    /// Adam as the shipped model used it: Burn's defaults. PyTorch's epsilon is 1e-8; with it the
    /// default run ends at 241.50 instead of 241.55 train −ELBO.
    pub fn adam() -> AdamConfig {
        AdamConfig::new()
    }

    /// The learning rate at optimiser step `step` of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        match self.lr_min {
            None => self.learning_rate,
            Some(lo) => {
                let t = step as f64 / total.max(1) as f64;
                lo + 0.5 * (self.learning_rate - lo) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), Error> {
        self.model.validate()?;
        if self.batch_size == 0 {
            return Err(Error::Invalid("batch size must be positive".into()));
        }
        if let Some(lo) = self.lr_min {
            if !(lo >= 0.0 && lo <= self.learning_rate) {
                return Err(Error::Invalid(format!(
                    "lr_min {lo} must be in [0, learning rate {}]",
                    self.learning_rate
                )));
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(Error::Invalid(format!(
                "learning rate must be positive, got {}",
                self.learning_rate
            )));
        }
        if let Some(d) = self.rate_noise {
            if !(d > 0.0 && d <= 16.0) {
                return Err(Error::Invalid(format!(
                    "rate noise width must be in (0, 16], got {d}"
                )));
            }
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(Error::Invalid(format!(
                "beta must be non-negative, got {}",
                self.beta
            )));
        }
        Ok(())
    }

    /// KL weight during `epoch` (0-based) after `progress` ∈ [0, 1] of it.
    pub fn beta_at(&self, epoch: usize, progress: f64) -> f64 {
        if self.kl_warmup_epochs == 0 {
            return self.beta;
        }
        let t = (epoch as f64 + progress) / self.kl_warmup_epochs as f64;
        self.beta * t.min(1.0)
    }

    /// Reads `config.json` from a run directory.
    pub fn load_from(run_dir: &Path) -> Result<Self, Error> {
        let path = run_dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
        serde_json::from_str(&text).map_err(|e| Error::data(&path, format!("invalid config ({e})")))
    }
}

/// Metrics of one training epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// KL weight at the end of the epoch.
    pub beta: f64,
    /// Mean optimised loss (BCE + beta·KL) per image.
    pub train_loss: f64,
    /// Mean negative ELBO (BCE + KL) per image, in nats.
    pub train_neg_elbo: f64,
    /// Mean reconstruction BCE per image, in nats.
    pub train_bce: f64,
    /// Mean KL per image, in nats.
    pub train_kl: f64,
    /// Negative ELBO on the test set after the epoch (nats per image), if a test set was given.
    pub test_neg_elbo: Option<f64>,
    /// Training images per second in this epoch.
    pub images_per_s: f64,
    /// Wall-clock seconds of the epoch's training steps.
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct State {
    epochs_done: usize,
    metrics: Vec<EpochMetrics>,
}

/// How to run training (what does not change the result).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Where to write config, checkpoints and metrics; `None` keeps everything in memory.
    pub run_dir: Option<PathBuf>,
    /// Continue from the checkpoint in `run_dir`.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop after this many optimiser steps in total (for tests and benchmarks).
    pub max_steps: Option<usize>,
    /// Data parallelism: each batch split across these devices (`None` or one device: the
    /// process's training device). See [`crate::backend::train_devices`].
    pub devices: Option<Vec<burn::tensor::Device>>,
}

/// What a training run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The trained model, on the plain (non-autodiff) device.
    pub model: Vae,
    /// Metrics of every epoch, including those of a resumed run's earlier epochs.
    pub epochs: Vec<EpochMetrics>,
    /// Optimised loss of every step of this invocation.
    pub step_losses: Vec<f32>,
}

/// `n` contiguous shards of `0..batch`, as even as they can be (empty shards dropped).
pub fn shards(batch: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    let n = n.clamp(1, batch.max(1));
    (0..n)
        .map(|i| batch * i / n..batch * (i + 1) / n)
        .filter(|r| !r.is_empty())
        .collect()
}

fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    rand::Rng::random(&mut crate::rng::seeded(
        seed ^ (epoch as u64).wrapping_mul(0xd1b5_4a32_d192_ed03),
    ))
}

/// Initialises `cfg` on `device` from `seed`. Burn's generator is global, so seeding and
/// drawing happen under one lock: concurrent initialisations in one process stay reproducible.
pub fn init_model(cfg: &VaeConfig, device: &Device, seed: u64) -> Vae {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    device.seed(seed);
    let model = cfg.init(device);
    // Read every parameter so that lazy initialisation has run before the lock is released.
    let _ = crate::model::layers::layers(&model);
    model
}

fn save_run_files(
    dir: &Path,
    model: &Vae,
    optim: &burn::optim::ModuleOptimizer,
    state: &State,
) -> Result<(), Error> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::data(dir.join(MODEL_FILE), e))?;
    crate::files::write_atomic(&dir.join(MODEL_FILE), &bytes)?;
    let bytes = optim
        .into_bytes()
        .map_err(|e| Error::data(dir.join(OPTIMIZER_FILE), e))?;
    crate::files::write_atomic(&dir.join(OPTIMIZER_FILE), &bytes)?;
    let json =
        serde_json::to_vec_pretty(state).map_err(|e| Error::data(dir.join(STATE_FILE), e))?;
    crate::files::write_atomic(&dir.join(STATE_FILE), &json)?;
    crate::files::write_atomic(
        &dir.join(METRICS_CSV),
        metrics_csv(&state.metrics).as_bytes(),
    )
}

/// Per-epoch metrics as CSV (a header line, then one line per epoch).
pub fn metrics_csv(metrics: &[EpochMetrics]) -> String {
    let mut s = String::from(
        "epoch,beta,train_loss,train_neg_elbo,train_bce,train_kl,test_neg_elbo,images_per_s,seconds\n",
    );
    for m in metrics {
        let test = m
            .test_neg_elbo
            .map(|v| format!("{v:.4}"))
            .unwrap_or_default();
        s += &format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{},{:.1},{:.2}\n",
            m.epoch,
            m.beta,
            m.train_loss,
            m.train_neg_elbo,
            m.train_bce,
            m.train_kl,
            test,
            m.images_per_s,
            m.seconds
        );
    }
    s
}

/// Trains `cfg` on `train`, evaluating the negative ELBO on `test` after every epoch.
///
/// With `opts.run_dir`, writes `config.json` first and a checkpoint after every epoch; with
/// `opts.resume`, continues from that checkpoint (the run's own `config.json` must match `cfg`
/// except for `epochs`). Same seed, same data and same machine give the same weights.
pub fn train(
    cfg: &TrainConfig,
    train: &Dataset,
    test: Option<&Dataset>,
    opts: &TrainOptions,
) -> Result<TrainOutcome, Error> {
    cfg.validate()?;
    check_shape(train, "training")?;
    if let Some(test) = test {
        check_shape(test, "test")?;
    }
    let device = crate::train_device();
    let mut model = init_model(&cfg.model, &device, cfg.seed);
    let mut optim = cfg.optimizer.init();
    let mut state = State {
        epochs_done: 0,
        metrics: Vec::new(),
    };

    if let Some(dir) = &opts.run_dir {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        if opts.resume {
            let saved = TrainConfig::load_from(dir)?;
            let mut same = saved.clone();
            same.epochs = cfg.epochs;
            if serde_json::to_value(&same).ok() != serde_json::to_value(cfg).ok() {
                return Err(Error::data(
                    dir.join(CONFIG_FILE),
                    "differs from the requested settings (only --epochs may change on --resume)",
                ));
            }
            let path = dir.join(STATE_FILE);
            let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
            state = serde_json::from_str(&text)
                .map_err(|e| Error::data(&path, format!("invalid checkpoint state ({e})")))?;
            model = load_weights(&cfg.model, &dir.join(MODEL_FILE), &device)?;
            let path = dir.join(OPTIMIZER_FILE);
            let bytes = fs::read(&path).map_err(Error::io(&path))?;
            optim = cfg
                .optimizer
                .init()
                .from_bytes(Bytes::from_bytes_vec(bytes))
                .map_err(|e| Error::data(&path, format!("invalid optimizer state ({e})")))?;
        }
        let json =
            serde_json::to_vec_pretty(cfg).map_err(|e| Error::data(dir.join(CONFIG_FILE), e))?;
        crate::files::write_atomic(&dir.join(CONFIG_FILE), &json)?;
    }

    let pixels = train.to_f32();
    let test_pixels = test.map(Dataset::to_f32);
    let n = train.len();
    let batch = cfg.batch_size.min(n);
    let steps_per_epoch = n / batch; // the last partial batch is dropped, as PyTorch's drop_last
    let mut order: Vec<usize> = (0..n).collect();
    let mut step_losses = Vec::new();
    let mut steps_total = 0usize;

    for epoch in state.epochs_done..cfg.epochs {
        let eseed = epoch_seed(cfg.seed, epoch);
        order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
        let mut rng = crate::rng::seeded(eseed);
        order.shuffle(&mut rng);

        let bar = if opts.progress {
            let bar = ProgressBar::new(steps_per_epoch as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
            bar
        } else {
            ProgressBar::hidden()
        };

        let start = Instant::now();
        let (mut sum_loss, mut sum_bce, mut sum_kl) = (0.0f64, 0.0f64, 0.0f64);
        let mut steps = 0usize;
        let mut beta = cfg.beta_at(epoch, 0.0);
        for s in 0..steps_per_epoch {
            if opts.max_steps.is_some_and(|m| steps_total >= m) {
                break;
            }
            beta = cfg.beta_at(epoch, s as f64 / steps_per_epoch as f64);
            let idx = &order[s * batch..(s + 1) * batch];
            let noise = match cfg.rate_noise {
                Some(_) => crate::rng::uniform_tensor(&mut rng, batch, cfg.model.latent, &device),
                None => crate::rng::normal_tensor(&mut rng, batch, cfg.model.latent, &device),
            };
            let terms_on = |model: &Vae, idx: &[usize], noise: Tensor<2>, dev: &Device| {
                let x = batch_tensor(&pixels, idx, dev);
                match cfg.rate_noise {
                    Some(width) => model.rate_loss(x, noise, width, beta, cfg.model.likelihood()),
                    None => model.loss(x, noise, beta, cfg.model.likelihood()),
                }
            };
            let lr = cfg.lr_at(epoch * steps_per_epoch + s, cfg.epochs * steps_per_epoch);
            let (bce, kl);
            match opts.devices.as_deref().filter(|d| d.len() > 1) {
                None => {
                    let terms = terms_on(&model, idx, noise, &device);
                    bce = terms.bce.clone().into_scalar::<f32>() as f64;
                    kl = terms.kl.clone().into_scalar::<f32>() as f64;
                    let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
                    model = optim.step(lr, model, grads);
                }
                Some(devices) => {
                    // Each device takes a shard of the batch with its own copy of the model;
                    // each shard's loss is weighted by its share, so the gradients Burn sums
                    // per parameter (`step_multi`) are the whole batch's mean.
                    let mut multi = MultiGradientsParams::default();
                    let (mut b, mut k) = (0.0, 0.0);
                    for (dev, r) in devices.iter().zip(shards(batch, devices.len())) {
                        let share = r.len() as f64 / batch as f64;
                        let copy = model.clone().fork(dev);
                        let eps = noise.clone().narrow(0, r.start, r.len()).to_device(dev);
                        let terms = terms_on(&copy, &idx[r], eps, dev);
                        b += share * terms.bce.clone().into_scalar::<f32>() as f64;
                        k += share * terms.kl.clone().into_scalar::<f32>() as f64;
                        let loss = terms.loss.mul_scalar(share);
                        let grads = GradientsParams::from_grads(loss.backward(), &copy);
                        multi.grads.push((grads, dev.clone()));
                    }
                    (bce, kl) = (b, k);
                    model = optim.step_multi(lr, model, multi);
                }
            }
            let loss = bce + beta * kl;

            sum_loss += loss;
            sum_bce += bce;
            sum_kl += kl;
            steps += 1;
            steps_total += 1;
            step_losses.push(loss as f32);
            if s % 10 == 0 {
                let rate = (steps * batch) as f64 / start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.1} -ELBO {:.1} {rate:.0} img/s",
                    sum_loss / steps as f64,
                    (sum_bce + sum_kl) / steps as f64
                ));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        if steps == 0 {
            break;
        }
        let seconds = start.elapsed().as_secs_f64();
        let test_neg_elbo = match (&test_pixels, test) {
            (Some(px), Some(t)) => {
                let valid = model.valid();
                Some(
                    crate::model::neg_elbo(
                        &valid,
                        cfg.model.likelihood(),
                        px,
                        t.len(),
                        256,
                        eseed ^ 1,
                    )
                    .neg_elbo,
                )
            }
            _ => None,
        };
        let k = steps as f64;
        let m = EpochMetrics {
            epoch: epoch + 1,
            beta,
            train_loss: sum_loss / k,
            train_neg_elbo: (sum_bce + sum_kl) / k,
            train_bce: sum_bce / k,
            train_kl: sum_kl / k,
            test_neg_elbo,
            images_per_s: (steps * batch) as f64 / seconds,
            seconds,
        };
        if opts.progress {
            eprintln!(
                "epoch {}/{}: train -ELBO {:.2} (BCE {:.2}, KL {:.2}){} {:.0} img/s",
                m.epoch,
                cfg.epochs,
                m.train_neg_elbo,
                m.train_bce,
                m.train_kl,
                m.test_neg_elbo
                    .map(|t| format!(", test -ELBO {t:.2}"))
                    .unwrap_or_default(),
                m.images_per_s
            );
        }
        state.metrics.push(m);
        state.epochs_done = epoch + 1;
        if let Some(dir) = &opts.run_dir {
            save_run_files(dir, &model, &optim, &state)?;
        }
        if steps < steps_per_epoch {
            break;
        }
    }

    Ok(TrainOutcome {
        model: model.valid(),
        epochs: state.metrics,
        step_losses,
    })
}
