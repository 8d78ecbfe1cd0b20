//! Quantization: a trained run → an int8 model file with its entropy tables, checked against
//! the float model. The CLI's `quantize` calls [`quantize`].
//!
//! - [`int8`]: the post-training quantizer (float layers in device layout → int8 layers).
//! - [`entropy`]: quality levels by rate allocation and the coder's CDF tables.
//! - [`reference`](mod@reference): the model file run with the device's exact integer arithmetic.

pub mod entropy;
pub mod int8;
pub mod photo;
pub mod reference;

use std::path::{Path, PathBuf};

use edgevae_shared::build::OwnedModel;
use edgevae_shared::format::{Model, Shape};

use crate::data::{self, Dataset, Split, IMAGE_SIDE};
use crate::error::Error;
use crate::files::write_atomic;
use crate::metrics::{max_abs_diff, psnr_u8, to_f32, to_u8};

pub use int8::{quantize_model, Calibration, FloatModel};
pub use reference::Reference;

/// What `quantize` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantReport {
    pub file: PathBuf,
    pub file_bytes: usize,
    pub arena_bytes: u32,
    pub latent_bits: u32,
    /// Quality levels of the entropy coder written into the file.
    pub levels: usize,
    pub test_images: usize,
    /// PSNR (dB) of the float model's reconstruction from mu, with pixels rounded to uint8.
    pub float_psnr: f64,
    /// PSNR (dB) of the int8 model as the device computes it.
    pub int8_psnr: f64,
    /// Largest |mu| difference between Burn and the plain-Rust float reference (layout check).
    pub burn_vs_reference_mu: f32,
}

/// The float model of a run directory in device layout.
pub fn float_model(run_dir: &Path) -> Result<FloatModel, Error> {
    let (_, vae) = crate::inference::load_model(run_dir)?;
    float_model_of(&vae, run_dir)
}

/// [`float_model`] of a loaded run (`run_dir` only names it in errors).
pub fn float_model_of(vae: &crate::model::Vae, run_dir: &Path) -> Result<FloatModel, Error> {
    let layers = crate::model::layers::layers(vae);
    let side = IMAGE_SIDE as u16;
    FloatModel::from_layers(&layers, Shape::new(side, side, 1))
        .map_err(|e| Error::data(run_dir, e))
        .and_then(|fm| {
            // Check the layout conversion against Burn itself on a few images.
            let probe: Vec<f32> = (0..2 * 784)
                .map(|i| ((i * 37) % 256) as f32 / 255.0)
                .collect();
            let burn_mu = crate::inference::encode_mu_batch(vae, &probe);
            let mine: Vec<f32> = probe.chunks(784).flat_map(|x| fm.encode(x)).collect();
            let diff = max_abs_diff(&burn_mu, &mine);
            if diff > 1e-3 {
                return Err(Error::Invalid(format!(
                    "internal: float reference disagrees with Burn by {diff} (layout conversion)"
                )));
            }
            Ok(fm)
        })
}

/// Quantizes the run in `run_dir`, writes the model file to `out` atomically, and measures PSNR
/// of the float and the int8 model on `test_images` test images.
pub fn quantize(
    run_dir: &Path,
    data_dir: Option<&Path>,
    out: &Path,
    calib: usize,
    cal: Calibration,
    test_images: usize,
    name: &str,
) -> Result<QuantReport, Error> {
    let (_, vae) = crate::inference::load_model(run_dir)?;
    let fm = float_model_of(&vae, run_dir)?;
    let train = data::load(data_dir, Split::Train)?;
    data::check_shape(&train, "training")?;
    let (bytes, arena) = quantize_bytes(&fm, &train, calib, cal, name)?;
    let bytes = crate::quantize::entropy::add_entropy(&bytes, &vae, &train)?;
    let levels = Model::from_bytes(&bytes)
        .ok()
        .and_then(|m| m.entropy().map(|e| e.levels.len()))
        .unwrap_or(0);
    write_atomic(out, &bytes)?;

    let test = data::load(data_dir, Split::Test)?;
    data::check_shape(&test, "test")?;
    let (float_psnr, int8_psnr, n) = compare(&fm, &bytes, &test, test_images)?;
    let probe = to_f32(test.image(0));
    let burn_vs_reference_mu = max_abs_diff(
        &crate::inference::encode_mu_batch(&vae, &probe),
        &fm.encode(&probe),
    );
    Ok(QuantReport {
        file: out.to_path_buf(),
        file_bytes: bytes.len(),
        arena_bytes: arena,
        latent_bits: 8 * fm.latent as u32,
        levels,
        test_images: n,
        float_psnr,
        int8_psnr,
        burn_vs_reference_mu,
    })
}

/// Quantizes `fm` with activation ranges calibrated on `calib` images of `train`: the model
/// file's bytes and its declared arena.
pub fn quantize_bytes(
    fm: &FloatModel,
    train: &Dataset,
    calib: usize,
    cal: Calibration,
    name: &str,
) -> Result<(Vec<u8>, u32), Error> {
    let images = train.spread(calib);
    let q = quantize_model(fm, &images, cal, name)?;
    let mut m = q.model;
    let arena = declare_arena(&mut m)?;
    let bytes = model_file_bytes(&m)?;
    Ok((bytes, arena))
}

/// The model file of `m` (its arena declared): the canonical layers plus the pre-laid DSP
/// section (`edgevae_shared::layout`) with the blocks the Cortex-M kernels read with the
/// scratch this arena leaves ([`edgevae_firmware::engine::prelaid_pays`]).
pub fn model_file_bytes(m: &OwnedModel) -> Result<Vec<u8>, Error> {
    let scratch = (m.header.arena_bytes as u64).saturating_sub(m.activation_bytes()?) as usize;
    Ok(m.to_bytes_with(|_, _, l| edgevae_firmware::engine::prelaid_pays(l, scratch))?)
}

/// Mean PSNR over the first `n` test images: float (reconstruction from mu, rounded to uint8) and
/// int8 (the device's arithmetic).
pub fn compare(
    fm: &FloatModel,
    model_bytes: &[u8],
    test: &Dataset,
    n: usize,
) -> Result<(f64, f64, usize), Error> {
    let model = Model::from_bytes(model_bytes)?;
    let mut reference = Reference::new(&model);
    let n = n.min(test.len());
    let (mut pf, mut pq) = (0.0, 0.0);
    for k in 0..n {
        let img = test.image(k);
        let rec = to_u8(&fm.decode(&fm.encode(&to_f32(img))));
        pf += psnr_u8(img, &rec);
        let z = reference.encode(img)?;
        let px = reference.decode(&z)?;
        pq += psnr_u8(img, &px);
    }
    let d = n.max(1) as f64;
    Ok((pf / d, pq / d, n))
}

/// The arena every kernel set needs: the largest of the scalar reference, this host's fast path
/// and the Cortex-M DSP path (whose scratch the firmware states through its size functions).
pub fn declare_arena(m: &mut OwnedModel) -> Result<u32, Error> {
    m.header.arena_bytes = u32::MAX;
    let bytes = m.to_bytes()?;
    let parsed = Model::from_bytes(&bytes)?;
    let need = edgevae_firmware::engine::required_arena_all_paths(&parsed);
    let need = u32::try_from(need)
        .map_err(|_| Error::Invalid("the model needs an arena larger than 4 GiB".into()))?;
    m.header.arena_bytes = need;
    Ok(need)
}
