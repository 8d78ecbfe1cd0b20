//! `edgevae quantize`: a run → an int8 model file.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

use super::*;

#[derive(Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    data: DataArg,
    /// Trained run directory (config.json + model.bpk).
    #[arg(long, default_value = "models/default")]
    run: PathBuf,
    /// Model file to write.
    #[arg(long, default_value = "runs/model.evae")]
    out: PathBuf,
    /// Training images used to calibrate activation ranges (photo codec: crops of 128×128,
    /// at most 256).
    #[arg(long, default_value_t = 1000)]
    calibration: usize,
    /// Clip activation ranges to this percentile (e.g. 99.99) instead of min/max.
    #[arg(long)]
    percentile: Option<f64>,
    /// Test images for the float vs int8 PSNR comparison.
    #[arg(long, default_value_t = 2000)]
    test_images: usize,
    /// Name stored in the model header (at most 32 bytes).
    #[arg(long, default_value = "edgevae-seed-z16")]
    name: String,
}

/// A photo codec run: calibrate on crops of the training photographs, write a version 3 file.
fn run_quantize_photo(a: &QuantizeArgs) -> Result<(), Error> {
    use edgevae::data::photos::{load_photos, PhotoSet};
    use edgevae::quantize::photo::{nchw_to_hwc, quantize_photo};
    let device = edgevae::compute_device();
    let (cfg, codec) = edgevae::train::photo::load_photo_model(&a.run, &device)?;
    let dir = a
        .data
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/photos/train"));
    let set = PhotoSet::new(load_photos(&dir, cfg.channels)?, cfg.channels)?;
    let side = 128;
    let n = a.calibration.clamp(1, 256);
    let crops = set.crops(&mut edgevae::rng::seeded(0xca1), n, side);
    let crops = nchw_to_hwc(&crops, n, cfg.channels, side);
    let name = if a.name == DEFAULT_NAME {
        format!(
            "edgevae-photo-{}",
            if cfg.channels == 1 { "gray" } else { "rgb" }
        )
    } else {
        a.name.clone()
    };
    // A quantization-aware run froze the gains its weights were rounded with.
    let plan = edgevae::train::photo::read_qat_plan(&a.run)?;
    let q = quantize_photo(&codec, &crops, side, &name, 640, plan.as_ref())?;
    edgevae::files::write_atomic(&a.out, &q.bytes)?;
    let ratios: Vec<String> = q
        .step_ratios
        .iter()
        .zip(&q.step_errors)
        .map(|((lo, hi), e)| format!("{lo:.1}..{hi:.1} (±{:.1} %)", 100.0 * e))
        .collect();
    println!(
        "wrote {} ({} bytes, format v3, {} levels, latent scale {:.4} zp {}); steps in latent units per level: {}; encoder {:.0} MACs/pixel, decoder {:.0} MACs/pixel",
        a.out.display(),
        q.bytes.len(),
        q.step_ratios.len(),
        q.latent_q.scale,
        q.latent_q.zero_point,
        ratios.join(" "),
        cfg.encoder_macs_per_pixel(),
        cfg.decoder_macs_per_pixel()
    );
    Ok(())
}

const DEFAULT_NAME: &str = "edgevae-seed-z16";

pub fn run_quantize(a: QuantizeArgs) -> Result<(), Error> {
    if edgevae::train::photo::PhotoTrainConfig::load_from(&a.run).is_ok() {
        return run_quantize_photo(&a);
    }
    use edgevae::quantize::Calibration;
    let cal = match a.percentile {
        Some(p) if (50.0..=100.0).contains(&p) => Calibration::Percentile(p),
        Some(p) => {
            return Err(Error::Invalid(format!(
                "--percentile {p}: expected 50..=100"
            )))
        }
        None => Calibration::MinMax,
    };
    let r = edgevae::quantize::quantize(
        &a.run,
        a.data.data.as_deref(),
        &a.out,
        a.calibration,
        cal,
        a.test_images,
        &a.name,
    )?;
    println!(
        "wrote {} ({} bytes, arena {} bytes, {} entropy-coding levels); latent {} bits/image; PSNR on {} test images: float {:.3} dB, int8 {:.3} dB (delta {:+.3} dB); Burn vs reference mu max diff {:.2e}",
        r.file.display(),
        r.file_bytes,
        r.arena_bytes,
        r.levels,
        r.latent_bits,
        r.test_images,
        r.float_psnr,
        r.int8_psnr,
        r.int8_psnr - r.float_psnr,
        r.burn_vs_reference_mu
    );
    Ok(())
}
