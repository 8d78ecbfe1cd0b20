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
    /// Training images used to calibrate activation ranges.
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

pub fn run_quantize(a: QuantizeArgs) -> Result<(), Error> {
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
