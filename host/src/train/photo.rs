//! Training the photo codec ([`crate::model::photo`]) on random crops of photographs.
//!
//! Each optimiser step draws `batch` random crops (random photo, position and horizontal flip),
//! picks a quality level, and minimises that level's `λ·255²·MSE + bpp` with uniform latent
//! noise. Crops, levels and noise of step `s` come from a generator seeded with `(seed, s)`, so a
//! resumed run draws exactly what an uninterrupted one would.
//!
//! A run directory holds `config.json` ([`PhotoTrainConfig`]), `model.bpk`, `optimizer.bpk`,
//! `state.json` (steps done and the log) and `metrics.csv`, all written atomically every
//! `checkpoint_every` steps: a crash loses at most that many steps. A run resumed without
//! `optimizer.bpk` (a shipped model may leave it out) continues with fresh Adam moments.

use std::fs;
use std::path::Path;
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::{TrainOptions, OPTIMIZER_FILE, STATE_FILE};
use crate::data::photos::PhotoSet;
use crate::error::Error;
use crate::inference::{CONFIG_FILE, MODEL_FILE};
use crate::model::photo::{plain, ActGrid, ActGrids, PhotoCodec, PhotoConfig, TOTAL_STRIDE};
use crate::quantize::photo::QuantPlan;
use crate::rng::Rng64;

/// Everything that determines a photo training run; saved as `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhotoTrainConfig {
    /// The codec's shape and λ ladder.
    pub photo: PhotoConfig,
    /// Adam's hyper-parameters.
    pub optimizer: AdamConfig,
    /// Optimiser steps in total.
    pub steps: usize,
    /// Crops per step.
    pub batch: usize,
    /// Side of the square crops (a multiple of 16).
    pub crop: usize,
    /// Learning rate at the first step.
    pub learning_rate: f64,
    /// Cosine-annealed down to this value at the last step.
    pub lr_min: f64,
    /// Seed of the initial weights and of every step's draws.
    pub seed: u64,
    /// Steps between checkpoints (and validation lines).
    pub checkpoint_every: usize,
    /// The synthesis trains on the rounded latent (straight-through) rather than the noisy
    /// one ([`crate::model::photo::PhotoCodec::loss`]); runs saved before the switch existed
    /// read as `false`. May be switched on when a run is resumed.
    #[serde(default)]
    pub rounded_synthesis: bool,
    /// Quantization-aware training: both transforms see every hidden activation on the int8
    /// grid the quantizer would give it and every weight rounded as it would round it
    /// ([`crate::model::photo::ActGrids`]), measured again at every checkpoint on the
    /// quantizer's calibration crops, with the gains frozen in the run's `qat.json`. For
    /// fine-tuning a trained model before it is quantized; may be switched on when a run is
    /// resumed.
    #[serde(default)]
    pub qat: bool,
}

impl PhotoTrainConfig {
    /// The shipped recipe for `photo`: Adam (gradient norm clipped at 1, CompressAI's
    /// setting), 8 crops of 128×128 a step, learning rate 3e-4 cosine-annealed to 1e-5.
    pub fn new(photo: PhotoConfig, steps: usize) -> Self {
        PhotoTrainConfig {
            photo,
            optimizer: AdamConfig::new()
                .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0))),
            steps,
            batch: 8,
            crop: 128,
            learning_rate: 3e-4,
            lr_min: 1e-5,
            seed: 42,
            checkpoint_every: 250,
            rounded_synthesis: true,
            qat: false,
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), Error> {
        self.photo.validate()?;
        if self.batch == 0 || self.steps == 0 || self.checkpoint_every == 0 {
            return Err(Error::Invalid(
                "steps, batch and checkpoint interval must be positive".into(),
            ));
        }
        if self.crop == 0 || !self.crop.is_multiple_of(TOTAL_STRIDE) || self.crop > 2048 {
            return Err(Error::Invalid(format!(
                "crop must be a positive multiple of {TOTAL_STRIDE} up to 2048, got {}",
                self.crop
            )));
        }
        let lr_ok = self.learning_rate > 0.0 && self.learning_rate.is_finite();
        if !(lr_ok && self.lr_min >= 0.0 && self.lr_min <= self.learning_rate) {
            return Err(Error::Invalid(format!(
                "learning rates must satisfy 0 <= lr_min ({}) <= lr ({}), lr > 0",
                self.lr_min, self.learning_rate
            )));
        }
        Ok(())
    }

    /// Learning rate at `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let t = step as f64 / self.steps.max(1) as f64;
        self.lr_min
            + 0.5 * (self.learning_rate - self.lr_min) * (1.0 + (std::f64::consts::PI * t).cos())
    }

    /// Reads `config.json` of a photo run.
    pub fn load_from(run_dir: &Path) -> Result<Self, Error> {
        let path = run_dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, format!("not a photo model's config ({e})")))
    }
}

/// Validation at one quality level: rounded latents, rate from the entropy model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelCheck {
    /// Quality level (0 = coarsest).
    pub level: usize,
    /// Bits per pixel under the entropy model (the coded rate is measured by `eval`).
    pub bpp: f64,
    /// PSNR of the clamped reconstruction, dB (mean over crops).
    pub psnr: f64,
}

/// One line of the training log, written at every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoLog {
    /// Steps done.
    pub step: usize,
    /// Mean loss over the steps since the previous line.
    pub loss: f64,
    /// Mean training PSNR (from the MSE with noise) since the previous line.
    pub train_psnr: f64,
    /// Mean training bpp since the previous line.
    pub train_bpp: f64,
    /// Validation crops at every level (empty without a validation set).
    pub val: Vec<LevelCheck>,
    /// Crops per second since the previous line.
    pub crops_per_s: f64,
}

#[derive(Serialize, Deserialize)]
struct PhotoState {
    steps_done: usize,
    log: Vec<PhotoLog>,
}

/// What a photo training run produced.
#[derive(Debug)]
pub struct PhotoOutcome {
    /// The trained model on the plain device.
    pub model: PhotoCodec,
    /// The log, including a resumed run's earlier lines.
    pub log: Vec<PhotoLog>,
}

/// Calibration crops of quantization-aware training (as many as `edgevae quantize` takes).
const QAT_CALIBRATION: usize = 256;

/// Their side.
const QAT_SIDE: usize = 128;

/// The frozen quantization plan of a quantization-aware run: `run_dir/qat.json` if it exists,
/// else measured on `crops` and written there.
pub fn qat_plan(
    model: &PhotoCodec,
    crops: &[Vec<f32>],
    run_dir: Option<&Path>,
) -> Result<QuantPlan, Error> {
    if let Some(plan) = run_dir.map(read_qat_plan).transpose()?.flatten() {
        return Ok(plan);
    }
    let plan = QuantPlan::measure(model, crops, QAT_SIDE)?;
    if let Some(p) = run_dir.map(|d| d.join(QAT_PLAN_FILE)) {
        let json = serde_json::to_vec(&plan).map_err(|e| Error::data(&p, e))?;
        crate::files::write_atomic(&p, &json)?;
    }
    Ok(plan)
}

/// How far a latent channel's range may grow past its frozen int8 unit before the frozen plan
/// is measured again: beyond it the quantizer clips that channel's largest values. Between two
/// checkpoints the largest of 96 channels' ranges moves by 5–20 % without any trend (the
/// photo-gray-next run, checked every 500 steps at 1.05); the failure this guards against was
/// 1.29–1.32, and each new plan moves every grid the weights are being fitted to.
pub const STALE_UNIT: f32 = 1.25;

/// The latent channel whose range has outgrown the frozen `plan` the most (`fresh` measured on
/// the same crops now), as (channel, fresh unit ÷ frozen unit), if any grew past
/// [`STALE_UNIT`]. A run resumed on a new schedule (a restart at a higher learning rate) can
/// widen the latent after its plan was frozen; the file's int8 latent then clips.
pub fn stale_latent(plan: &QuantPlan, fresh: &QuantPlan) -> Option<(usize, f32)> {
    plan.units
        .iter()
        .zip(&fresh.units)
        .map(|(&old, &new)| new / old.max(f32::MIN_POSITIVE))
        .enumerate()
        .filter(|&(_, r)| r > STALE_UNIT)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The frozen plan of the run in `run_dir` (its `qat.json`), or `None` if it has none.
pub fn read_qat_plan(run_dir: &Path) -> Result<Option<QuantPlan>, Error> {
    let path = run_dir.join(QAT_PLAN_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::data(&path, format!("not a quantization plan ({e})")))
}

/// A quantization-aware run's frozen plan ([`QuantPlan`]).
pub const QAT_PLAN_FILE: &str = "qat.json";

fn step_rng(seed: u64, step: usize) -> Rng64 {
    crate::rng::seeded(seed ^ (step as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Loads a photo run's weights (`config.json` + `model.bpk`) onto `device`.
pub fn load_photo_model(
    run_dir: &Path,
    device: &Device,
) -> Result<(PhotoConfig, PhotoCodec), Error> {
    let cfg = PhotoTrainConfig::load_from(run_dir)?;
    cfg.photo.validate()?;
    let model = load_photo_weights(&cfg.photo, &run_dir.join(MODEL_FILE), device)?;
    Ok((cfg.photo, model))
}

fn load_photo_weights(
    cfg: &PhotoConfig,
    path: &Path,
    device: &Device,
) -> Result<PhotoCodec, Error> {
    let bytes = fs::read(path).map_err(Error::io(path))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::data(path, format!("invalid weights file ({e})")))?;
    cfg.init(device)
        .try_load_record(record)
        .map_err(|e| Error::data(path, format!("weights do not fit config.json ({e})")))
}

/// Rounded-latent rate and PSNR of `crops` (`[n, C, s, s]` values in [0, 1]) at every level.
pub fn check_levels(model: &PhotoCodec, crops: &[f32], shape: [usize; 4]) -> Vec<LevelCheck> {
    let device = model.device();
    let [n, _, h, w] = shape;
    let x = Tensor::<4>::from_data(TensorData::new(crops.to_vec(), shape), &device);
    let y = model.analysis(x.clone());
    (0..model.levels())
        .map(|level| {
            let s = model.quantize(y.clone(), level);
            let y_hat = model.dequantize(s, level);
            let bits = model
                .bits(y_hat.clone(), model.steps(level))
                .into_scalar::<f32>() as f64;
            let x_hat = model.synthesis(y_hat).clamp(0.0, 1.0);
            let mse = plain(
                (x_hat - x.clone())
                    .powi_scalar(2)
                    .reshape([n as i32, -1])
                    .mean_dim(1)
                    .into_data(),
            );
            let psnr = mse
                .iter()
                .map(|&m| 10.0 * (1.0 / (m as f64).max(1e-10)).log10())
                .sum::<f64>()
                / n.max(1) as f64;
            LevelCheck {
                level,
                bpp: bits / (n * h * w) as f64,
                psnr,
            }
        })
        .collect()
}

fn save_photo_run(
    dir: &Path,
    model: &PhotoCodec,
    optim: &burn::optim::ModuleOptimizer,
    state: &PhotoState,
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
        &dir.join(super::METRICS_CSV),
        log_csv(&state.log).as_bytes(),
    )
}

/// The training log as CSV: one line per checkpoint, validation bpp and PSNR per level.
pub fn log_csv(log: &[PhotoLog]) -> String {
    let levels = log.iter().map(|l| l.val.len()).max().unwrap_or(0);
    let mut s = String::from("step,loss,train_psnr,train_bpp,crops_per_s");
    for l in 0..levels {
        s += &format!(",val_bpp_{l},val_psnr_{l}");
    }
    s.push('\n');
    for l in log {
        s += &format!(
            "{},{:.5},{:.3},{:.4},{:.1}",
            l.step, l.loss, l.train_psnr, l.train_bpp, l.crops_per_s
        );
        for c in &l.val {
            s += &format!(",{:.4},{:.3}", c.bpp, c.psnr);
        }
        s.push('\n');
    }
    s
}

/// Trains `cfg` on crops of `train`, checking rate and PSNR on fixed crops of `val` at every
/// checkpoint. With `opts.run_dir` it writes `config.json` first and checkpoints as it goes;
/// with `opts.resume` it continues the run there (its config must equal `cfg` except `steps`
/// `rounded_synthesis` and `qat`).
pub fn train_photo(
    cfg: &PhotoTrainConfig,
    train: &PhotoSet,
    val: Option<&PhotoSet>,
    opts: &TrainOptions,
) -> Result<PhotoOutcome, Error> {
    train_photo_from(cfg, None, train, val, opts)
}

/// [`train_photo`] starting a fresh run from `init` (a model of `cfg.photo`'s shape, such as a
/// trained one [`PhotoCodec::widen`]ed) instead of a random initialisation; a resumed run loads
/// its checkpoint either way.
pub fn train_photo_from(
    cfg: &PhotoTrainConfig,
    init: Option<PhotoCodec>,
    train: &PhotoSet,
    val: Option<&PhotoSet>,
    opts: &TrainOptions,
) -> Result<PhotoOutcome, Error> {
    cfg.validate()?;
    if train.channels() != cfg.photo.channels {
        return Err(Error::Invalid(format!(
            "training photos have {} channels, the model takes {}",
            train.channels(),
            cfg.photo.channels
        )));
    }
    let device = crate::train_device();
    let mut model = {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        device.seed(cfg.seed);
        let m = cfg.photo.init(&device);
        let _ = m.steps_vec(0);
        m
    };
    if let Some(m) = init {
        if m.latent() != cfg.photo.latent || m.levels() != cfg.photo.levels() {
            return Err(Error::Invalid(
                "the initial photo model does not have the configured shape".into(),
            ));
        }
        // `m` lives on the training device already (`to_device` would put a node in front
        // of every parameter that the first backward pass consumes).
        model = m;
    }
    let mut optim = cfg.optimizer.init();
    let mut state = PhotoState {
        steps_done: 0,
        log: Vec::new(),
    };
    if let Some(dir) = &opts.run_dir {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        if opts.resume {
            let mut saved = PhotoTrainConfig::load_from(dir)?;
            saved.steps = cfg.steps;
            saved.rounded_synthesis = cfg.rounded_synthesis;
            saved.qat = cfg.qat;
            if serde_json::to_value(&saved).ok() != serde_json::to_value(cfg).ok() {
                return Err(Error::data(
                    dir.join(CONFIG_FILE),
                    "differs from the requested settings (only --steps, --noise-synthesis and --qat may change on --resume)",
                ));
            }
            let path = dir.join(STATE_FILE);
            let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
            state = serde_json::from_str(&text)
                .map_err(|e| Error::data(&path, format!("invalid checkpoint state ({e})")))?;
            model = load_photo_weights(&cfg.photo, &dir.join(MODEL_FILE), &device)?;
            let path = dir.join(OPTIMIZER_FILE);
            if path.exists() {
                let bytes = fs::read(&path).map_err(Error::io(&path))?;
                optim = cfg
                    .optimizer
                    .init()
                    .from_bytes(Bytes::from_bytes_vec(bytes))
                    .map_err(|e| Error::data(&path, format!("invalid optimizer state ({e})")))?;
            } else {
                // A shipped model may come without Adam's moments (they double its size):
                // continue from its weights and step count with fresh moments.
                eprintln!(
                    "warning: {} is missing: resuming with a fresh optimizer state",
                    path.display()
                );
            }
        }
        let json =
            serde_json::to_vec_pretty(cfg).map_err(|e| Error::data(dir.join(CONFIG_FILE), e))?;
        crate::files::write_atomic(&dir.join(CONFIG_FILE), &json)?;
    }

    // Fixed validation crops: 8 of 256×256 (or the training crop if larger).
    let val_side = cfg.crop.max(256);
    let val_crops = val.map(|v| {
        let mut rng = crate::rng::seeded(cfg.seed ^ 0x7a1);
        v.crops(&mut rng, 8, val_side)
    });
    let val_shape = [8, cfg.photo.channels, val_side, val_side];

    let (c, s, b) = (cfg.photo.channels, cfg.crop, cfg.batch);
    let (m, ls) = (cfg.photo.latent, cfg.crop / TOTAL_STRIDE);
    let levels = cfg.photo.levels();
    // Quantization-aware training calibrates on what `edgevae quantize` does (its crops).
    let cal_crops = cfg.qat.then(|| {
        let n = QAT_CALIBRATION;
        let crops = train.crops(&mut crate::rng::seeded(0xca1), n, QAT_SIDE);
        crate::quantize::photo::nchw_to_hwc(&crops, n, c, QAT_SIDE)
    });
    // The gains and latent units are measured once and frozen in `qat.json` (a resumed run
    // reads them back): the quantizer then rounds the weights exactly as training did.
    let mut plan = match &cal_crops {
        Some(crops) => Some(qat_plan(&model.valid(), crops, opts.run_dir.as_deref())?),
        None => None,
    };
    // At the start and at each checkpoint the plan is checked against the weights of now: a
    // latent channel that outgrew its frozen unit gets the whole plan measured again (and
    // written), so that training goes on under the grids the file will have.
    let refresh = |model: &PhotoCodec,
                   plan: &mut Option<QuantPlan>,
                   step: usize|
     -> Result<(), Error> {
        let (Some(crops), Some(frozen)) = (&cal_crops, plan.as_ref()) else {
            return Ok(());
        };
        let fresh = QuantPlan::measure(model, crops, QAT_SIDE)?;
        if let Some((ch, ratio)) = stale_latent(frozen, &fresh) {
            eprintln!(
                "step {step}: latent channel {ch} outgrew the frozen quantization plan ({:.0} % of its int8 range); measured again",
                100.0 * ratio
            );
            if let Some(p) = opts.run_dir.as_deref().map(|d| d.join(QAT_PLAN_FILE)) {
                let json = serde_json::to_vec(&fresh).map_err(|e| Error::data(&p, e))?;
                crate::files::write_atomic(&p, &json)?;
            }
            *plan = Some(fresh);
        }
        Ok(())
    };
    refresh(&model.valid(), &mut plan, state.steps_done)?;
    let grids_of =
        |model: &PhotoCodec, plan: &Option<QuantPlan>| -> Result<Option<ActGrids>, Error> {
            let (Some(crops), Some(plan)) = (&cal_crops, plan) else {
                return Ok(None);
            };
            let t = crate::quantize::photo::qat_targets(&model.valid(), crops, QAT_SIDE, plan)?;
            let grid = |v: Vec<Vec<f32>>| v.iter().map(|s| ActGrid::new(s, &device)).collect();
            let weights = |gains: Vec<Vec<f32>>, dims: Vec<[usize; 4]>| {
                gains
                    .into_iter()
                    .zip(dims)
                    .map(|(g, d)| Tensor::<4>::from_data(TensorData::new(g, d), &device))
                    .collect()
            };
            let enc_dims = model.enc.iter().map(|l| l.weight.val().dims()).collect();
            let dec_dims = model.dec.iter().map(|l| l.weight.val().dims()).collect();
            Ok(Some(ActGrids {
                enc: grid(t.enc_steps),
                dec: grid(t.dec_steps),
                enc_weights: weights(t.enc_weight_gains, enc_dims),
                dec_weights: weights(t.dec_weight_gains, dec_dims),
            }))
        };
    let mut grids = grids_of(&model, &plan)?;
    let (mut sum_loss, mut sum_psnr, mut sum_bpp, mut k) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    let mut start = Instant::now();
    let first = state.steps_done;
    for step in first..cfg.steps {
        if opts.max_steps.is_some_and(|mx| step - first >= mx) {
            break;
        }
        let mut rng = step_rng(cfg.seed, step);
        let level = rand::Rng::random_range(&mut rng, 0..levels);
        let crops = train.crops(&mut rng, b, s);
        let x = Tensor::<4>::from_data(TensorData::new(crops, [b, c, s, s]), &device);
        let u: Vec<f32> = (0..b * m * ls * ls)
            .map(|_| rand::Rng::random::<f32>(&mut rng) - 0.5)
            .collect();
        let u = Tensor::<4>::from_data(TensorData::new(u, [b, m, ls, ls]), &device);
        let terms = model.loss(
            x,
            u,
            level,
            cfg.photo.lambdas[level],
            cfg.rounded_synthesis,
            grids.as_ref(),
        );
        let loss = terms.loss.clone().into_scalar::<f32>() as f64;
        if !loss.is_finite() {
            return Err(Error::Invalid(format!(
                "training diverged at step {step} (loss {loss}); lower the learning rate"
            )));
        }
        let mse = terms.mse.clone().into_scalar::<f32>() as f64;
        sum_loss += loss;
        sum_psnr += 10.0 * (1.0 / mse.max(1e-10)).log10();
        sum_bpp += terms.bpp.clone().into_scalar::<f32>() as f64;
        k += 1;
        let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
        model = optim.step(cfg.lr_at(step), model, grads);

        let done = step + 1;
        if done % cfg.checkpoint_every == 0 || done == cfg.steps {
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            let val = match &val_crops {
                Some(crops) => check_levels(&model.valid(), crops, val_shape),
                None => Vec::new(),
            };
            let line = PhotoLog {
                step: done,
                loss: sum_loss / k as f64,
                train_psnr: sum_psnr / k as f64,
                train_bpp: sum_bpp / k as f64,
                val,
                crops_per_s: (k * b) as f64 / secs,
            };
            if opts.progress {
                let vals: Vec<String> = line
                    .val
                    .iter()
                    .map(|v| format!("{:.3}/{:.2}", v.bpp, v.psnr))
                    .collect();
                eprintln!(
                    "step {done}/{}: loss {:.4}, train {:.2} dB {:.3} bpp, {:.1} crops/s; val bpp/dB {}",
                    cfg.steps,
                    line.loss,
                    line.train_psnr,
                    line.train_bpp,
                    line.crops_per_s,
                    vals.join(" ")
                );
            }
            state.log.push(line);
            state.steps_done = done;
            if let Some(dir) = &opts.run_dir {
                save_photo_run(dir, &model, &optim, &state)?;
            }
            // A resumed run measures the grids from this checkpoint as well.
            if done < cfg.steps {
                refresh(&model.valid(), &mut plan, done)?;
                grids = grids_of(&model, &plan)?;
            }
            (sum_loss, sum_psnr, sum_bpp, k) = (0.0, 0.0, 0.0, 0);
            start = Instant::now();
        }
    }
    Ok(PhotoOutcome {
        model: model.valid(),
        log: state.log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(units: &[f32]) -> QuantPlan {
        QuantPlan {
            enc_gains: vec![],
            dec_gains: vec![],
            units: units.to_vec(),
        }
    }

    #[test]
    fn a_latent_that_outgrew_its_frozen_unit_is_found() {
        let frozen = plan(&[0.05, 0.02, 0.01]);
        // Within 25 %, or narrower: the frozen plan stands.
        assert_eq!(stale_latent(&frozen, &plan(&[0.062, 0.01, 0.0124])), None);
        // The run's case: 0.0466 frozen, 0.0600 measured again (129 %); the worst channel wins.
        let fresh = plan(&[0.06, 0.0233, 0.0129]);
        let (ch, r) = stale_latent(&plan(&[0.0466, 0.02, 0.01]), &fresh).unwrap();
        assert_eq!(ch, 2);
        assert!((r - 1.29).abs() < 1e-3);
    }
}
