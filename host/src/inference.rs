//! A trained run in use: loading it (`config.json` + `model.bpk`), and the float encoder,
//! decoder and prior sampler on plain buffers.

use std::path::Path;

use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::Deserialize;

use crate::data::IMAGE_SIDE;
use crate::error::Error;
pub use crate::model::batch_tensor;
use crate::model::{Vae, VaeConfig};

/// Float encoder on plain buffers: `images` holds `n` images of 28×28 pixels in [0, 1]
/// (row-major, image after image); returns `n × z` values of `mu`, image after image.
///
/// # Panics
/// If `images.len()` is not a multiple of 784.
pub fn encode_mu_batch(model: &Vae, images: &[f32]) -> Vec<f32> {
    let px = IMAGE_SIDE * IMAGE_SIDE;
    assert_eq!(images.len() % px, 0, "images must be whole 28×28 images");
    let n = images.len() / px;
    if n == 0 {
        return Vec::new();
    }
    let device = model_device(model);
    let x = Tensor::<4>::from_data(
        TensorData::new(images.to_vec(), [n, 1, IMAGE_SIDE, IMAGE_SIDE]),
        &device,
    );
    to_vec(model.encode_mu(x).into_data())
}

/// Float decoder on plain buffers: `z` holds `n` codes of the model's latent size; returns `n`
/// images of 28×28 pixels in [0, 1] (after the sigmoid), image after image.
///
/// # Panics
/// If `z.len()` is not a multiple of the latent size.
pub fn decode_batch(model: &Vae, z: &[f32]) -> Vec<f32> {
    let latent = model.fc_mu.weight.val().dims()[1];
    assert_eq!(z.len() % latent, 0, "z must hold whole latent codes");
    let n = z.len() / latent;
    if n == 0 {
        return Vec::new();
    }
    let device = model_device(model);
    let z = Tensor::<2>::from_data(TensorData::new(z.to_vec(), [n, latent]), &device);
    to_vec(model.decode_image(z).into_data())
}

fn model_device(model: &Vae) -> Device {
    model.enc1.weight.val().device()
}

pub(crate) fn to_vec(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// `n` images decoded from latent codes drawn from the prior N(0, I) with `seed`.
pub fn sample_images(model: &Vae, n: usize, seed: u64) -> Vec<f32> {
    let device = model.enc1.weight.val().device();
    let latent = model.fc_mu.weight.val().dims()[1];
    let z = crate::rng::normal_tensor(&mut crate::rng::seeded(seed), n, latent, &device);
    to_vec(model.decode_image(z).into_data())
}

/// File names inside a run directory.
pub const CONFIG_FILE: &str = "config.json";

/// Model weights (burnpack).
pub const MODEL_FILE: &str = "model.bpk";

/// Loads a trained model from a run directory (`config.json` + `model.bpk`) onto
/// [`crate::compute_device`].
pub fn load_model(run_dir: impl AsRef<Path>) -> Result<(VaeConfig, Vae), Error> {
    load_model_on(run_dir, &crate::compute_device())
}

/// [`load_model`] onto `device` (e.g. [`crate::train_device`] to differentiate through it).
pub fn load_model_on(
    run_dir: impl AsRef<Path>,
    device: &Device,
) -> Result<(VaeConfig, Vae), Error> {
    let run_dir = run_dir.as_ref();
    let cfg = RunConfig::load_from(run_dir)?;
    cfg.model.validate()?;
    let model = load_weights(&cfg.model, &run_dir.join(MODEL_FILE), device)?;
    Ok((cfg.model, model))
}

pub(crate) fn load_weights(cfg: &VaeConfig, path: &Path, device: &Device) -> Result<Vae, Error> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::data(path, format!("invalid weights file ({e})")))?;
    cfg.init(device)
        .try_load_record(record)
        .map_err(|e| Error::data(path, format!("weights do not fit config.json ({e})")))
}

/// The part of a run's `config.json` that inference needs (the trainer's `TrainConfig` holds it
/// with the training settings).
#[derive(Deserialize)]
struct RunConfig {
    model: VaeConfig,
}

impl RunConfig {
    fn load_from(run_dir: &Path) -> Result<Self, Error> {
        let path = run_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        serde_json::from_str(&text).map_err(|e| Error::data(&path, format!("invalid config ({e})")))
    }
}
