//! `edgevae recover`: images from sparse or corrupted measurements.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

use super::*;
use edgevae::data::{Split, IMAGE_PIXELS};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TaskKind {
    /// Compressed sensing with --m Gaussian measurements (and --noise).
    Cs,
    /// Inpainting with a random --missing share of the pixels lost.
    Inpaint,
    /// Inpainting of a missing central --block.
    Block,
    /// Denoising of Gaussian noise --sigma.
    Denoise,
}

#[derive(Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    data: DataArg,
    /// Trained run directory.
    #[arg(long, default_value = "models/default")]
    run: PathBuf,
    #[arg(long, value_enum)]
    task: TaskKind,
    /// Measurements for --task cs.
    #[arg(long, default_value_t = 100)]
    m: usize,
    /// Measurement noise (standard deviation, 0-255 pixel scale) for --task cs.
    #[arg(long, default_value_t = 0.0)]
    noise: f32,
    /// Share of pixels lost for --task inpaint.
    #[arg(long, default_value_t = 0.8)]
    missing: f32,
    /// Side of the lost central block for --task block.
    #[arg(long, default_value_t = 12)]
    block: usize,
    /// Noise standard deviation (0-255 pixel scale) for --task denoise.
    #[arg(long, default_value_t = 25.0)]
    sigma: f32,
    /// A PNG/JPEG image to corrupt and recover (made 28x28 grayscale) instead of test images.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Test images to corrupt and recover when no --input is given.
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// Output folder (PNGs, recovery.json, recovery.md).
    #[arg(long, default_value = "runs/recover")]
    out: PathBuf,
    #[command(flatten)]
    prior: PriorArgs,
}

pub fn run_recover(a: RecoverArgs) -> Result<(), Error> {
    let task = match a.task {
        TaskKind::Cs => edgevae::eval::recover::Task::Cs {
            m: a.m,
            noise: a.noise,
        },
        TaskKind::Inpaint => edgevae::eval::recover::Task::Inpaint { missing: a.missing },
        TaskKind::Block => edgevae::eval::recover::Task::Block { side: a.block },
        TaskKind::Denoise => edgevae::eval::recover::Task::Denoise { sigma: a.sigma },
    };
    task.validate()?;
    let opts = a.prior.options()?;
    let images: Vec<f32> = match &a.input {
        Some(path) => edgevae::data::load_image(path)?
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect(),
        None => {
            let test = edgevae::data::load(a.data.data.as_deref(), Split::Test)?;
            edgevae::data::check_shape(&test, "test")?;
            let n = a.images.clamp(1, test.len());
            test.to_f32()[..n * IMAGE_PIXELS].to_vec()
        }
    };
    let train_set = edgevae::data::load(a.data.data.as_deref(), Split::Train)?;
    edgevae::data::check_shape(&train_set, "training")?;
    let tune = tune_images(&train_set);
    let (_, model) = edgevae::inference::load_model_on(&a.run, &edgevae::train_device())?;
    std::fs::create_dir_all(&a.out).map_err(|source| Error::Io {
        path: a.out.clone(),
        source,
    })?;
    let result = edgevae::eval::recover::run_task(&model, task, &images, &tune, &opts);
    let rows = result.rows(&images);
    let n = images.len() / IMAGE_PIXELS;
    println!("{task} on {n} image(s):");
    for row in &rows {
        println!(
            "  {:<11} PSNR {:6.2} dB  SSIM {:.4}  {}",
            row.method, row.psnr, row.ssim, row.setting
        );
    }
    write_json(&a.out.join("recovery.json"), &rows)?;
    edgevae::files::write_atomic(
        &a.out.join("recovery.md"),
        edgevae::eval::recover::table_markdown(&rows).as_bytes(),
    )?;
    // One PNG per method for the first image, and a panel of up to 8 images.
    for (method, _, rec) in &result.methods {
        let px = edgevae::metrics::to_u8(&rec[0]);
        let path = a.out.join(format!("{method}.png"));
        edgevae::files::save_gray(&path, 28, 28, px)?;
    }
    let path = a.out.join("panel.png");
    edgevae::eval::recover::panel(&images, &result, &path)?;
    println!(
        "wrote {} (one image a row; columns: original, then each method, labelled)",
        path.display()
    );
    Ok(())
}
