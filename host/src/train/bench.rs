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
    /// Latent size of the seed network (`run`; `run_photo` takes the codec's own).
    pub latent: usize,
    /// Also time the phases of a training step ([`StepPhases`]; `run` only), synchronising the device
    /// between them.
    pub phases: bool,
}

/// Mean milliseconds per training step spent in each phase (after the timed repetitions, over
/// `steps` more steps, waiting for the device after each phase: on a GPU this serialises work
/// that otherwise overlaps, so the sum exceeds the step time of the throughput figure).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepPhases {
    /// Building the batch and the noise on the host and moving them to the device.
    pub data: f64,
    /// The loss: encoder, sampling, decoder, likelihood and KL.
    pub forward: f64,
    /// Gradients of every parameter.
    pub backward: f64,
    /// The Adam update.
    pub optimizer: f64,
}

/// Medians of the timed repetitions, in images per second.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Training images per second (forward, backward and Adam step).
    pub train: f64,
    /// Inference images per second (encode `mu`, decode).
    pub infer: f64,
    /// Where a training step goes, when asked for.
    pub phases: Option<StepPhases>,
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
    let model = init_model(&train_cfg.model, &device, 0);
    let mut rng = crate::rng::seeded(0);
    let mut optim = train_cfg.optimizer.init();
    let batch_idx =
        |s: usize, b: usize| -> Vec<usize> { (0..b).map(|k| (s * b + k) % n).collect() };

    let (train, trained) = timed(cfg, cfg.batch, model, |model, s, last| {
        let x = batch_tensor(pixels, &batch_idx(s, cfg.batch), &device);
        let eps = crate::rng::normal_tensor(&mut rng, cfg.batch, cfg.latent, &device);
        let terms = model.loss(x, eps, 1.0, Likelihood::Bernoulli);
        let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
        let model = optim.step(train_cfg.learning_rate, model, grads);
        if last {
            // Reading a parameter waits for all queued work.
            let _ = model.enc1.weight.val().into_data();
        }
        model
    });
    let mut model = trained;

    let mut phases = None;
    if cfg.phases {
        let sync = |device: &Device| {
            device
                .sync()
                .map_err(|e| Error::Invalid(format!("bench: the device failed: {e:?}")))
        };
        let mut p = StepPhases::default();
        let mut lap = Instant::now();
        let mut split = |into: &mut f64| {
            *into += lap.elapsed().as_secs_f64() * 1e3 / cfg.steps as f64;
            lap = Instant::now();
        };
        sync(&device)?;
        split(&mut 0.0);
        for s in 0..cfg.steps {
            let x = batch_tensor(pixels, &batch_idx(s, cfg.batch), &device);
            let eps = crate::rng::normal_tensor(&mut rng, cfg.batch, cfg.latent, &device);
            sync(&device)?;
            split(&mut p.data);
            let terms = model.loss(x, eps, 1.0, Likelihood::Bernoulli);
            sync(&device)?;
            split(&mut p.forward);
            let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
            sync(&device)?;
            split(&mut p.backward);
            model = optim.step(train_cfg.learning_rate, model, grads);
            sync(&device)?;
            split(&mut p.optimizer);
        }
        phases = Some(p);
    }

    let valid = model.valid();
    let plain = crate::compute_device();
    let (infer, ()) = timed(cfg, cfg.infer_batch, (), |(), s, _| {
        let x = batch_tensor(pixels, &batch_idx(s, cfg.infer_batch), &plain);
        let _ = valid.decode_image(valid.encode_mu(x)).into_data();
    });
    Ok(BenchResult {
        train,
        infer,
        phases,
    })
}

/// Times training (forward with noise, backward, Adam; one quality level per step as the
/// trainer draws them) and inference (analysis + synthesis) of the photo codec `photo` on
/// `batch` (training) and `infer_batch` synthetic `crop × crop` crops; rates in crops per second.
pub fn run_photo(
    cfg: &BenchConfig,
    photo: &crate::model::photo::PhotoConfig,
    crop: usize,
) -> Result<BenchResult, Error> {
    use crate::model::photo::TOTAL_STRIDE;
    if cfg.batch == 0 || cfg.infer_batch == 0 || cfg.steps == 0 || cfg.repeats == 0 {
        return Err(Error::Invalid(
            "batch sizes, steps and repeats must be positive".into(),
        ));
    }
    if crop == 0 || !crop.is_multiple_of(TOTAL_STRIDE) {
        return Err(Error::Invalid(format!(
            "bench: the crop must be a positive multiple of {TOTAL_STRIDE}, not {crop}"
        )));
    }
    photo.validate()?;
    let device = crate::train_device();
    let model = photo.init(&device);
    let mut optim = burn::optim::AdamConfig::new().init();
    let (c, m, ls) = (photo.channels, photo.latent, crop / TOTAL_STRIDE);
    let crops = |s: usize, b: usize, device: &Device| {
        let v: Vec<f32> = (0..b * c * crop * crop)
            .map(|i| (((s * 7919 + i) * 2_654_435_761usize) % 256) as f32 / 255.0)
            .collect();
        Tensor::<4>::from_data(TensorData::new(v, [b, c, crop, crop]), device)
    };
    let mut rng = crate::rng::seeded(0);
    let (train, model) = timed(cfg, cfg.batch, model, |model, s, last| {
        let level = s % photo.levels();
        let x = crops(s, cfg.batch, &device);
        let u: Vec<f32> = (0..cfg.batch * m * ls * ls)
            .map(|_| rand::Rng::random::<f32>(&mut rng) - 0.5)
            .collect();
        let u = Tensor::<4>::from_data(TensorData::new(u, [cfg.batch, m, ls, ls]), &device);
        let terms = model.loss(x, u, level, photo.lambdas[level], true, None);
        let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
        let model = optim.step(1e-4, model, grads);
        if last {
            let _ = model.log_steps.val().into_data();
        }
        model
    });
    let valid = model.valid();
    let plain = crate::compute_device();
    let (infer, ()) = timed(cfg, cfg.infer_batch, (), |(), s, _| {
        let x = crops(s, cfg.infer_batch, &plain);
        let _ = valid.synthesis(valid.analysis(x)).into_data();
    });
    Ok(BenchResult {
        train,
        infer,
        phases: None,
    })
}

/// The median over `cfg.repeats` timed repetitions (after one untimed warm-up) of `cfg.steps`
/// calls of `step(state, s, last)`, in items per second (`per_step` items a step), and the
/// state the last call returned (the trained model). `last` marks each repetition's final
/// step, which waits for the device.
fn timed<S>(
    cfg: &BenchConfig,
    per_step: usize,
    mut state: S,
    mut step: impl FnMut(S, usize, bool) -> S,
) -> (f64, S) {
    let mut rates = Vec::new();
    for r in 0..=cfg.repeats {
        let start = Instant::now();
        for s in 0..cfg.steps {
            state = step(state, s, s + 1 == cfg.steps);
        }
        if r > 0 {
            rates.push((cfg.steps * per_step) as f64 / start.elapsed().as_secs_f64());
        }
    }
    (median(rates), state)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
