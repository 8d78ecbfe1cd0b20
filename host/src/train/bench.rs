//! Training and inference throughput (`edgevae bench`): the trainer's step (forward, backward,
//! Adam) and the float encode + decode, timed on a fixed set of images.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::data::IMAGE_PIXELS;
use crate::error::Error;
use crate::model::{batch_tensor, Likelihood, VaeConfig};
use crate::train::{init_model, TrainConfig};

/// What to time.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Training batch size.
    pub batch: usize,
    /// Inference batch size.
    pub infer_batch: usize,
    /// Timed steps per repetition.
    pub steps: usize,
    /// Timed repetitions (after one untimed warm-up); the median is reported.
    pub repeats: usize,
    /// Latent size of the model.
    pub latent: usize,
}

/// Medians of the timed repetitions, in images per second.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Training images per second (forward, backward and Adam step).
    pub train: f64,
    /// Inference images per second (encode `mu`, decode).
    pub infer: f64,
}

/// Times training and inference of the seed network on `pixels` (images in [0, 1], 28×28).
pub fn run(cfg: &BenchConfig, pixels: &[f32]) -> Result<BenchResult, Error> {
    if cfg.batch == 0 || cfg.infer_batch == 0 || cfg.steps == 0 || cfg.repeats == 0 {
        return Err(Error::Invalid(
            "batch sizes, steps and repeats must be positive".into(),
        ));
    }
    let n = pixels.len() / IMAGE_PIXELS;
    if n == 0 {
        return Err(Error::Invalid("bench: no images to time".into()));
    }
    let train_cfg = TrainConfig::new(
        VaeConfig::new().with_latent(cfg.latent),
        TrainConfig::adam(),
    );
    let device = crate::train_device();
    let mut model = init_model(&train_cfg.model, &device, 0);
    let mut rng = crate::rng::seeded(0);
    let mut optim = train_cfg.optimizer.init();
    let batch_idx =
        |s: usize, b: usize| -> Vec<usize> { (0..b).map(|k| (s * b + k) % n).collect() };

    let mut train_rates = Vec::new();
    for r in 0..=cfg.repeats {
        let start = Instant::now();
        for s in 0..cfg.steps {
            let x = batch_tensor(pixels, &batch_idx(s, cfg.batch), &device);
            let eps = crate::rng::normal_tensor(&mut rng, cfg.batch, cfg.latent, &device);
            let terms = model.loss(x, eps, 1.0, Likelihood::Bernoulli);
            let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
            model = optim.step(train_cfg.learning_rate, model, grads);
        }
        // Reading a parameter waits for all queued work.
        let _ = model.enc1.weight.val().into_data();
        if r > 0 {
            train_rates.push((cfg.steps * cfg.batch) as f64 / start.elapsed().as_secs_f64());
        }
    }

    let valid = model.valid();
    let plain = crate::compute_device();
    let mut infer_rates = Vec::new();
    for r in 0..=cfg.repeats {
        let start = Instant::now();
        for s in 0..cfg.steps {
            let x = batch_tensor(pixels, &batch_idx(s, cfg.infer_batch), &plain);
            let img = valid.decode_image(valid.encode_mu(x));
            let _ = img.into_data();
        }
        if r > 0 {
            infer_rates.push((cfg.steps * cfg.infer_batch) as f64 / start.elapsed().as_secs_f64());
        }
    }
    Ok(BenchResult {
        train: median(train_rates),
        infer: median(infer_rates),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
