//! `edgevae bench`: training and inference throughput.

use clap::Args;
use edgevae::Error;

use super::*;
use edgevae::data::{Split, IMAGE_PIXELS};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    data: DataArg,
    /// Training batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Inference batch size.
    #[arg(long, default_value_t = 256)]
    infer_batch: usize,
    /// Timed steps per repetition.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long, default_value_t = 16)]
    latent: usize,
    /// Also print where a training step goes (data, forward, backward, optimiser), waiting for
    /// the device after each phase.
    #[arg(long)]
    phases: bool,
    /// Time the photo codec (latent 96, synthesis 96,64,48: the colour model's, and the grey
    /// model's until 2026-12-08; kept so that figures compare across sessions)
    /// on synthetic crops instead of the seed network; `--batch` and `--infer-batch` count crops.
    #[arg(long, value_enum)]
    photo: Option<PhotoKind>,
    /// Crop side for `--photo` (a multiple of 16).
    #[arg(long, default_value_t = 64)]
    crop: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PhotoKind {
    Gray,
    Rgb,
}

pub fn run_bench(a: BenchArgs) -> Result<(), Error> {
    let conv = if edgevae::backend::conv::enabled() {
        "gemm"
    } else {
        "burn"
    };
    let cfg = edgevae::train::bench::BenchConfig {
        batch: a.batch,
        infer_batch: a.infer_batch,
        steps: a.steps,
        repeats: a.repeats,
        latent: a.latent,
        phases: a.phases,
    };
    if let Some(kind) = a.photo {
        let mut photo = match kind {
            PhotoKind::Gray => edgevae::model::photo::PhotoConfig::gray(),
            PhotoKind::Rgb => edgevae::model::photo::PhotoConfig::rgb(),
        };
        photo.latent = 96;
        photo.dec = [96, 64, 48];
        let r = edgevae::train::bench::run_photo(&cfg, &photo, a.crop)?;
        println!(
            "photo {}x{}, backend {}, conv {conv}, {} threads: train {:.1} crops/s (batch {}), \
             infer {:.1} crops/s (analysis + synthesis, batch {}); medians of {} x {} steps",
            a.crop,
            a.crop,
            edgevae::backend::selected().name(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            r.train,
            a.batch,
            r.infer,
            a.infer_batch,
            a.repeats,
            a.steps
        );
        return Ok(());
    }
    // Real images when available; the throughput does not depend on pixel values.
    let pixels: Vec<f32> = match edgevae::data::load(a.data.data.as_deref(), Split::Test) {
        Ok(d) if d.rows * d.cols == IMAGE_PIXELS => d.to_f32(),
        _ => (0..10_000 * IMAGE_PIXELS)
            .map(|i| ((i * 2_654_435_761usize) % 256) as f32 / 255.0)
            .collect(),
    };
    let r = edgevae::train::bench::run(&cfg, &pixels)?;
    println!(
        "backend {}, conv {conv}, {} threads: train {:.0} images/s (batch {}), infer {:.0} \
         images/s (encode mu + decode, batch {}); medians of {} x {} steps",
        edgevae::backend::selected().name(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        r.train,
        a.batch,
        r.infer,
        a.infer_batch,
        a.repeats,
        a.steps
    );
    if let Some(p) = r.phases {
        println!(
            "training step, ms (device synchronised between phases): data {:.2}, forward {:.2}, \
             backward {:.2}, optimizer {:.2}",
            p.data, p.forward, p.backward, p.optimizer
        );
    }
    Ok(())
}
