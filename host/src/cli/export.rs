//! `edgevae export`: ONNX graphs checked with tract.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

use super::*;

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long, default_value = "models/default")]
    run: PathBuf,
    /// The int8 model file (from `quantize`).
    #[arg(long, default_value = "runs/model.evae")]
    model: PathBuf,
    /// Folder for the .onnx files.
    #[arg(long, default_value = "runs/onnx")]
    out: PathBuf,
    /// Test images for the agreement check.
    #[arg(long, default_value_t = 500)]
    test_images: usize,
}

pub fn run_export(a: ExportArgs) -> Result<(), Error> {
    let r = edgevae::export::export(
        &a.run,
        &a.model,
        a.data.data.as_deref(),
        &a.out,
        a.test_images,
    )?;
    for f in &r.files {
        println!("wrote {}", f.display());
    }
    println!(
        "tract on {} test images: float graphs max |tract - Burn| {:.2e}; int8 QDQ vs fixed-point reference: latent {:.2}% exact, {:.2}% within 1 LSB; pixels {:.2}% exact, {:.2}% within 1 LSB",
        r.test_images,
        r.float_max_diff,
        100.0 * r.latent_exact,
        100.0 * r.latent_within_1,
        100.0 * r.pixels_exact,
        100.0 * r.pixels_within_1
    );
    Ok(())
}
