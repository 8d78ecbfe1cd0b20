//! The steps after training: quantise a run directory into a model file, check it against the
//! float model, and export ONNX checked with tract. The CLI's `quantize`, `export` and `inspect`
//! call these.

use std::path::{Path, PathBuf};

use edgevae_shared::format::{Model, Shape};

use crate::data::{self, Dataset, Split, IMAGE_SIDE};
use crate::error::Error;
use crate::modelfile::{declare_arena, psnr_u8, write_atomic, Reference};
use crate::quantize::{quantise, Calibration, FloatModel};

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
    let (_, vae) = crate::load_model(run_dir)?;
    let layers = crate::weights::layers(&vae);
    let side = IMAGE_SIDE as u16;
    FloatModel::from_layers(&layers, Shape::new(side, side, 1))
        .map_err(|e| Error::data(run_dir, e))
        .and_then(|fm| {
            // Check the layout conversion against Burn itself on a few images.
            let probe: Vec<f32> = (0..2 * 784)
                .map(|i| ((i * 37) % 256) as f32 / 255.0)
                .collect();
            let burn_mu = crate::weights::encode_mu_batch(&vae, &probe);
            let mine: Vec<f32> = probe.chunks(784).flat_map(|x| fm.encode(x)).collect();
            let diff = max_diff(&burn_mu, &mine);
            if diff > 1e-3 {
                return Err(Error::Invalid(format!(
                    "internal: float reference disagrees with Burn by {diff} (layout conversion)"
                )));
            }
            Ok(fm)
        })
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Calibration images: `n` training images spread over the set.
pub fn calibration_set(train: &Dataset, n: usize) -> Vec<&[u8]> {
    let n = n.clamp(1, train.len().max(1));
    let step = (train.len() / n).max(1);
    (0..n)
        .map(|k| train.image((k * step).min(train.len() - 1)))
        .collect()
}

/// Quantises the run in `run_dir`, writes the model file to `out` atomically, and measures PSNR
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
    let fm = float_model(run_dir)?;
    let train = data::load(data_dir, Split::Train)?;
    let (bytes, arena) = quantize_bytes(&fm, &train, calib, cal, name)?;
    let (_, vae) = crate::load_model(run_dir)?;
    let bytes = crate::codec::add_entropy(&bytes, &vae, &train)?;
    let levels = Model::from_bytes(&bytes)
        .ok()
        .and_then(|m| m.entropy().map(|e| e.levels.len()))
        .unwrap_or(0);
    write_atomic(out, &bytes)?;

    let test = data::load(data_dir, Split::Test)?;
    let (float_psnr, int8_psnr, n) = compare(&fm, &bytes, &test, test_images)?;
    let probe: Vec<f32> = test.image(0).iter().map(|&p| p as f32 / 255.0).collect();
    let burn_vs_reference_mu = max_diff(
        &crate::weights::encode_mu_batch(&vae, &probe),
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

/// Quantises `fm` with activation ranges calibrated on `calib` images of `train`: the model
/// file's bytes and its declared arena.
pub fn quantize_bytes(
    fm: &FloatModel,
    train: &Dataset,
    calib: usize,
    cal: Calibration,
    name: &str,
) -> Result<(Vec<u8>, u32), Error> {
    let images = calibration_set(train, calib);
    let q = quantise(fm, &images, cal, name).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut m = q.model;
    let arena = declare_arena(&mut m).map_err(Error::Invalid)?;
    let bytes = m
        .to_bytes()
        .map_err(|e| Error::Invalid(format!("model file: {e}")))?;
    Ok((bytes, arena))
}

/// Mean PSNR over the first `n` test images: float (reconstruction from mu, rounded to uint8) and
/// int8 (the device's arithmetic).
pub fn compare(
    fm: &FloatModel,
    model_bytes: &[u8],
    test: &Dataset,
    n: usize,
) -> Result<(f64, f64, usize), Error> {
    let model =
        Model::from_bytes(model_bytes).map_err(|e| Error::Invalid(format!("model file: {e}")))?;
    let mut reference = Reference::new(&model);
    let n = n.min(test.len());
    let (mut pf, mut pq) = (0.0, 0.0);
    for k in 0..n {
        let img = test.image(k);
        let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
        let rec: Vec<u8> = fm
            .decode(&fm.encode(&x))
            .iter()
            .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect();
        pf += psnr_u8(img, &rec);
        let z = reference
            .encode(img)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let px = reference
            .decode(&z)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        pq += psnr_u8(img, &px);
    }
    let d = n.max(1) as f64;
    Ok((pf / d, pq / d, n))
}

/// What `export` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    pub files: Vec<PathBuf>,
    pub test_images: usize,
    /// Largest |tract − Burn| over mu and decoded pixels of the float graphs.
    pub float_max_diff: f32,
    /// Share of int8 latent values where tract's QDQ graph equals the fixed-point reference,
    /// and within 1 LSB.
    pub latent_exact: f64,
    pub latent_within_1: f64,
    /// The same for decoded uint8 pixels.
    pub pixels_exact: f64,
    pub pixels_within_1: f64,
}

/// Writes `<stem>_{float,int8}_{encoder,decoder}.onnx` into `out_dir` and checks them with tract
/// against Burn (float) and the fixed-point reference (int8) on `n` test images.
pub fn export(
    run_dir: &Path,
    model_file: &Path,
    data_dir: Option<&Path>,
    out_dir: &Path,
    n: usize,
) -> Result<ExportReport, Error> {
    use crate::onnx::{float_graphs, quantised_graphs, to_bytes};
    let fm = float_model(run_dir)?;
    let bytes = std::fs::read(model_file).map_err(Error::io(model_file))?;
    let model = Model::from_bytes(&bytes).map_err(|e| Error::data(model_file, e))?;
    let owned = edgevae_shared::build::OwnedModel::from_model(&model);
    let (fe, fd) = float_graphs(&fm);
    let (qe, qd) = quantised_graphs(&owned);
    let mut files = Vec::new();
    for (name, g) in [
        ("float_encoder", &fe),
        ("float_decoder", &fd),
        ("int8_encoder", &qe),
        ("int8_decoder", &qd),
    ] {
        let p = out_dir.join(format!("{name}.onnx"));
        write_atomic(&p, &to_bytes(g))?;
        files.push(p);
    }
    let test = data::load(data_dir, Split::Test)?;
    let n = n.min(test.len()).max(1);
    let (_, vae) = crate::load_model(run_dir)?;
    let side = IMAGE_SIDE;
    let z = fm.latent as usize;

    // Float: tract vs Burn.
    let x: Vec<f32> = (0..n)
        .flat_map(|k| test.image(k).iter().map(|&p| p as f32 / 255.0))
        .collect();
    let burn_mu = crate::weights::encode_mu_batch(&vae, &x);
    let tract_mu = tract_run_f32(&files[0], &x, &[n, 1, side, side])?;
    let burn_img = crate::weights::decode_batch(&vae, &burn_mu);
    let tract_img = tract_run_f32(&files[1], &burn_mu, &[n, z])?;
    let float_max_diff = max_diff(&burn_mu, &tract_mu).max(max_diff(&burn_img, &tract_img));

    // int8: tract QDQ vs the fixed-point reference.
    let mut reference = Reference::new(&model);
    let pixels: Vec<u8> = (0..n).flat_map(|k| test.image(k).to_vec()).collect();
    let t_lat = tract_run_q::<u8, i8>(&files[2], &pixels, &[n, 1, side, side])?;
    let mut r_lat = Vec::new();
    let mut r_img = Vec::new();
    for k in 0..n {
        let zq = reference
            .encode(test.image(k))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        r_img.extend(
            reference
                .decode(&zq)
                .map_err(|e| Error::Invalid(e.to_string()))?,
        );
        r_lat.extend(zq);
    }
    // Decode the reference's latents so the decoder comparison is independent of the encoder's.
    let t_img = tract_run_q::<i8, u8>(&files[3], &r_lat, &[n, z])?;
    let share = |a: &[i32], b: &[i32], tol: i32| {
        a.iter()
            .zip(b)
            .filter(|(x, y)| (*x - *y).abs() <= tol)
            .count() as f64
            / a.len().max(1) as f64
    };
    let (tl, rl): (Vec<i32>, Vec<i32>) = (
        t_lat.iter().map(|&v| v as i32).collect(),
        r_lat.iter().map(|&v| v as i32).collect(),
    );
    let (ti, ri): (Vec<i32>, Vec<i32>) = (
        t_img.iter().map(|&v| v as i32).collect(),
        r_img.iter().map(|&v| v as i32).collect(),
    );
    Ok(ExportReport {
        files,
        test_images: n,
        float_max_diff,
        latent_exact: share(&tl, &rl, 0),
        latent_within_1: share(&tl, &rl, 1),
        pixels_exact: share(&ti, &ri, 0),
        pixels_within_1: share(&ti, &ri, 1),
    })
}

fn tract_err(path: &Path) -> impl Fn(tract_onnx::prelude::TractError) -> Error + '_ {
    move |e| Error::data(path, format!("tract: {e:#}"))
}

/// Runs a float ONNX graph in tract.
pub fn tract_run_f32(path: &Path, input: &[f32], shape: &[usize]) -> Result<Vec<f32>, Error> {
    use tract_onnx::prelude::{
        tvec, Framework, InferenceModelExt, IntoRunnable, Tensor as TTensor,
    };
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(tract_err(path))?;
    let t = TTensor::from_shape(shape, input).map_err(tract_err(path))?;
    let out = plan.run(tvec!(t.into())).map_err(tract_err(path))?;
    let view = out[0].try_as_plain_ram().map_err(tract_err(path))?;
    let v = view.as_slice::<f32>().map_err(tract_err(path))?.to_vec();
    Ok(v)
}

/// Runs a quantised ONNX graph (input type `I`, output type `O`) in tract.
pub fn tract_run_q<I, O>(path: &Path, input: &[I], shape: &[usize]) -> Result<Vec<O>, Error>
where
    I: tract_onnx::prelude::Datum + Copy,
    O: tract_onnx::prelude::Datum + Copy,
{
    use tract_onnx::prelude::{
        tvec, Framework, InferenceModelExt, IntoRunnable, Tensor as TTensor,
    };
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(tract_err(path))?;
    let t = TTensor::from_shape(shape, input).map_err(tract_err(path))?;
    let out = plan.run(tvec!(t.into())).map_err(tract_err(path))?;
    let view = out[0].try_as_plain_ram().map_err(tract_err(path))?;
    let v = view.as_slice::<O>().map_err(tract_err(path))?.to_vec();
    Ok(v)
}
