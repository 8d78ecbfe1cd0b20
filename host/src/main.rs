//! `edgevae`: train, evaluate, sample and benchmark the VAE. Errors print as one line on stderr
//! and exit with status 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::optim::GradientsParams;
use clap::{Args, Parser, Subcommand};
use edgevae::data::{self, Split, IMAGE_PIXELS};
use edgevae::eval::{self, RunMetrics};
use edgevae::train::{self, TrainConfig, TrainOptions};
use edgevae::{rd, recover};
use edgevae::{Error, VaeConfig};

#[derive(Parser)]
#[command(version, about = "Train and evaluate the edgevae convolutional VAE")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model into a run directory, then evaluate it on the test set.
    Train(TrainArgs),
    /// Evaluate a trained model on the test set and draw its figures.
    Eval(EvalArgs),
    /// Decode images from the prior into a PNG grid.
    Sample(SampleArgs),
    /// Measure training and inference throughput (images/s).
    Bench(BenchArgs),
    /// Quantise a trained run to an int8 model file (and compare float vs int8 PSNR).
    Quantize(QuantizeArgs),
    /// Export ONNX graphs (float and int8 QDQ) and check them with tract.
    Export(ExportArgs),
    /// Describe a model file: header, layers, sizes, arena, checksum.
    Inspect(InspectArgs),
    /// Stream test images through the device app under QEMU and check it byte for byte.
    Hil(HilArgs),
    /// Recover images from compressed, masked or noisy measurements: VAE prior vs Lasso.
    Recover(RecoverArgs),
    /// Compress a PNG/JPEG image (any size) or a folder of them into .evz files.
    Compress(CompressArgs),
    /// Decompress an .evz file or a folder of them into PNG files.
    Decompress(DecompressArgs),
}

/// The codec model used when --model is not given.
const DEFAULT_CODEC_MODEL: &str = "models/wide-gauss/model.evae";

#[derive(Args)]
struct CompressArgs {
    /// A PNG/JPEG file, or a folder of them.
    input: PathBuf,
    /// The .evz file (or the folder, for a folder input).
    #[arg(short, long)]
    out: PathBuf,
    /// Quality 1..=levels of the model (higher: more bits, better pictures); default the finest.
    #[arg(long)]
    quality: Option<u8>,
    /// Model file with an entropy section.
    #[arg(long, default_value = DEFAULT_CODEC_MODEL)]
    model: PathBuf,
}

#[derive(Args)]
struct DecompressArgs {
    /// An .evz file, or a folder of them.
    input: PathBuf,
    /// The PNG file (or the folder, for a folder input).
    #[arg(short, long)]
    out: PathBuf,
    /// The model file the .evz files were made with.
    #[arg(long, default_value = DEFAULT_CODEC_MODEL)]
    model: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TaskKind {
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
struct PriorArgs {
    /// Starts per image for the VAE prior (the first from the encoder, the rest from N(0, I)).
    #[arg(long, default_value_t = 4)]
    restarts: usize,
    /// Adam steps per start.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Adam's learning rate on z.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Weight of ||z||^2.
    #[arg(long, default_value_t = 0.01)]
    lambda: f64,
    /// Seed of the measurements, masks, noise and random starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl PriorArgs {
    fn options(&self) -> Result<edgevae::recover::PriorOptions, Error> {
        if self.restarts == 0
            || self.steps == 0
            || self.lr.is_nan()
            || self.lr <= 0.0
            || self.lambda.is_nan()
            || self.lambda < 0.0
        {
            return Err(Error::Invalid(
                "--restarts and --steps must be positive, --lr > 0 and --lambda >= 0".into(),
            ));
        }
        Ok(edgevae::recover::PriorOptions {
            restarts: self.restarts,
            steps: self.steps,
            lr: self.lr,
            lambda: self.lambda,
            seed: self.seed,
            ..Default::default()
        })
    }
}

#[derive(Args)]
struct RecoverArgs {
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

#[derive(Args)]
struct QuantizeArgs {
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

#[derive(Args)]
struct ExportArgs {
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

#[derive(Args)]
struct InspectArgs {
    /// Model file.
    file: PathBuf,
}

#[derive(Args)]
struct HilArgs {
    #[command(flatten)]
    data: DataArg,
    #[arg(long, default_value = "runs/model.evae")]
    model: PathBuf,
    /// QEMU machine: mps2-an386 (Cortex-M4F) or mps2-an500 (Cortex-M7).
    #[arg(long, default_value = "mps2-an386")]
    machine: String,
    #[arg(long, default_value_t = 100)]
    images: usize,
}

#[derive(Args)]
struct DataArg {
    /// Data: a folder of MNIST-layout idx files (.gz or raw), one idx3 file, or a folder of
    /// PNG/JPEG images [default: /usr/share/datasets/fashion-mnist]
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArg,
    /// Run directory (config.json, model.bpk, checkpoints, metrics, figures).
    #[arg(long, default_value = "runs/default")]
    out: PathBuf,
    /// Continue from the checkpoint in the run directory (only --epochs may change).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Latent size.
    #[arg(long, default_value_t = 16)]
    latent: usize,
    /// Channels of the first convolution.
    #[arg(long, default_value_t = 32)]
    channels1: usize,
    /// Channels of the second convolution.
    #[arg(long, default_value_t = 64)]
    channels2: usize,
    /// KL weight.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Train with a Gaussian pixel likelihood of this standard deviation (pixels in [0, 1])
    /// instead of the Bernoulli (binary cross-entropy) of the seed recipe.
    #[arg(long)]
    gaussian_sigma: Option<f64>,
    /// Epochs of linear KL warm-up from 0 to beta.
    #[arg(long, default_value_t = 0)]
    kl_warmup: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Anneal the learning rate along a cosine from --lr down to this value over the run.
    #[arg(long)]
    lr_min: Option<f64>,
    /// Train for the codec: uniform latent noise of this width and a rate term (weighted by
    /// --beta) instead of the ELBO's sampling and KL.
    #[arg(long)]
    rate_noise: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    data: DataArg,
    /// Run directory of the model.
    #[arg(long)]
    run: PathBuf,
    /// Where to write metrics.json's test part (eval.json), the tables and the figures
    /// [default: the run].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The run's int8 model file [default: <run>/model.evae, or quantised now if missing].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Further run directories to put in the rate-distortion table (each with its model.evae,
    /// or quantised now).
    #[arg(long)]
    also: Vec<PathBuf>,
    /// Test images for the rate-distortion table and plot (rd.md, rd.json, rd.png); 0 skips it.
    #[arg(long, default_value_t = 2000)]
    rd_images: usize,
    /// Test images for the recovery table (recovery.md, recovery.json); 0 skips it.
    #[arg(long, default_value_t = 0)]
    recovery_images: usize,
    #[command(flatten)]
    prior: PriorArgs,
}

#[derive(Args)]
struct SampleArgs {
    /// Run directory of the model.
    #[arg(long)]
    run: PathBuf,
    /// PNG file to write (an 8-column grid).
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct BenchArgs {
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
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgevae: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Sample(a) => cmd_sample(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Quantize(a) => cmd_quantize(a),
        Command::Export(a) => cmd_export(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Hil(a) => cmd_hil(a),
        Command::Recover(a) => cmd_recover(a),
        Command::Compress(a) => cmd_compress(a),
        Command::Decompress(a) => cmd_decompress(a),
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    edgevae::modelfile::write_atomic(path, &json)
}

fn cmd_train(a: TrainArgs) -> Result<(), Error> {
    let model = VaeConfig::new()
        .with_latent(a.latent)
        .with_channels1(a.channels1)
        .with_channels2(a.channels2)
        .with_gaussian_sigma(a.gaussian_sigma);
    let cfg = TrainConfig::new(model, TrainConfig::adam())
        .with_epochs(a.epochs)
        .with_batch_size(a.batch)
        .with_beta(a.beta)
        .with_kl_warmup_epochs(a.kl_warmup)
        .with_learning_rate(a.lr)
        .with_lr_min(a.lr_min)
        .with_rate_noise(a.rate_noise)
        .with_seed(a.seed);
    cfg.validate()?;
    let mut train_set = data::load(a.data.data.as_deref(), Split::Train)?;
    if let Some(n) = a.limit {
        train_set = train_set.truncate(n);
    }
    let test_set = data::load(a.data.data.as_deref(), Split::Test)?;
    let opts = TrainOptions {
        run_dir: Some(a.out.clone()),
        resume: a.resume,
        progress: !a.quiet,
        max_steps: None,
    };
    let outcome = train::train(&cfg, &train_set, Some(&test_set), &opts)?;
    let test = eval::evaluate(
        &outcome.model,
        cfg.model.likelihood(),
        &test_set,
        256,
        cfg.seed,
    );
    eval::write_figures(&outcome.model, &test_set, &outcome.epochs, cfg.seed, &a.out)?;
    print_eval(&test);
    write_json(
        &a.out.join("metrics.json"),
        &RunMetrics {
            epochs: outcome.epochs,
            test,
        },
    )
}

fn print_eval(m: &eval::EvalMetrics) {
    println!(
        "test ({} images): -ELBO {:.2} nats (BCE {:.2}, KL {:.2}), PSNR {:.2} dB, SSIM {:.4}, \
         active units {}/{}",
        m.images, m.elbo.neg_elbo, m.elbo.bce, m.elbo.kl, m.psnr, m.ssim, m.active_units, m.latent
    );
}

fn cmd_eval(a: EvalArgs) -> Result<(), Error> {
    let (vae_cfg, model) = edgevae::load_model(&a.run)?;
    let test_set = data::load(a.data.data.as_deref(), Split::Test)?;
    train::check_shape(&test_set, "test")?;
    let out = a.out.clone().unwrap_or_else(|| a.run.clone());
    std::fs::create_dir_all(&out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    let m = eval::evaluate(&model, vae_cfg.likelihood(), &test_set, 256, a.prior.seed);
    print_eval(&m);
    eval::reconstruction_figure(&model, &test_set, &out.join("reconstructions.png"))?;
    eval::samples_figure(&model, a.prior.seed, &out.join("samples.png"))?;
    write_json(&out.join("eval.json"), &m)?;
    if a.rd_images == 0 && a.recovery_images == 0 {
        return Ok(());
    }
    let train_set = data::load(a.data.data.as_deref(), Split::Train)?;
    train::check_shape(&train_set, "training")?;
    if a.rd_images > 0 {
        rate_distortion(&a, &model, &test_set, &train_set, &out)?;
    }
    if a.recovery_images > 0 {
        let opts = a.prior.options()?;
        let n = a.recovery_images.min(test_set.len());
        let images = test_set.to_f32()[..n * IMAGE_PIXELS].to_vec();
        let tune = tune_images(&train_set);
        let (_, ad_model) = edgevae::train::load_model_on(&a.run, &edgevae::train_device())?;
        let mut rows = Vec::new();
        for task in recover::Task::table() {
            let start = Instant::now();
            let result = recover::run_task(&ad_model, task, &images, &tune, &opts);
            let r = result.rows(&images);
            for row in &r {
                println!(
                    "{:<24} {:<11} PSNR {:6.2} dB  SSIM {:.4}  {}",
                    row.task, row.method, row.psnr, row.ssim, row.setting
                );
            }
            eprintln!("  ({task}: {:.1} s)", start.elapsed().as_secs_f64());
            rows.extend(r);
        }
        write_json(&out.join("recovery.json"), &rows)?;
        let md = format!(
            "Recovery on the first {n} test images (seed {}); Lasso weights tuned on 16 \
             training images.\n\n{}",
            opts.seed,
            recover::table_markdown(&rows)
        );
        edgevae::modelfile::write_atomic(&out.join("recovery.md"), md.as_bytes())?;
        println!("wrote {}", out.join("recovery.md").display());
    }
    Ok(())
}

/// `n` training images spread over the set, pixels in [0, 1].
fn spread_images(train_set: &data::Dataset, n: usize) -> Vec<f32> {
    edgevae::pipeline::calibration_set(train_set, n)
        .into_iter()
        .flat_map(|img| img.iter().map(|&p| f32::from(p) / 255.0))
        .collect()
}

/// 16 training images spread over the set: what the Lasso weights are tuned on.
fn tune_images(train_set: &data::Dataset) -> Vec<f32> {
    spread_images(train_set, 16)
}

/// The int8 model file of a run: `explicit`, else `<run>/model.evae`, else quantised now.
fn int8_model(
    run: &Path,
    explicit: Option<&Path>,
    train_set: &data::Dataset,
) -> Result<Vec<u8>, Error> {
    let path = explicit.map_or_else(|| run.join("model.evae"), Path::to_path_buf);
    if explicit.is_some() || path.exists() {
        return std::fs::read(&path).map_err(|source| Error::Io { path, source });
    }
    let fm = edgevae::pipeline::float_model(run)?;
    let (bytes, _) = edgevae::pipeline::quantize_bytes(
        &fm,
        train_set,
        1000,
        edgevae::quantize::Calibration::MinMax,
        "edgevae",
    )?;
    Ok(bytes)
}

fn rate_distortion(
    a: &EvalArgs,
    model: &edgevae::Vae,
    test_set: &data::Dataset,
    train_set: &data::Dataset,
    out: &Path,
) -> Result<(), Error> {
    let start = Instant::now();
    let n = a.rd_images.min(test_set.len());
    let mut runs = vec![(
        a.run.clone(),
        model.clone(),
        int8_model(&a.run, a.model.as_deref(), train_set)?,
    )];
    for r in &a.also {
        let (_, m) = edgevae::load_model(r)?;
        runs.push((r.clone(), m, int8_model(r, None, train_set)?));
    }
    let fit = spread_images(train_set, 10_000);
    let inputs = rd::RdInputs {
        test: &test_set.pixels[..n * IMAGE_PIXELS],
        fit: &fit,
        vaes: runs
            .iter()
            .map(|(p, m, b)| (run_name(p), m, b.as_slice()))
            .collect(),
    };
    let points = rd::sweep(&inputs)?;
    let md = format!(
        "Rate-distortion on the first {n} of the {} test images; PCA and coefficient ranges \
         fitted on {} of the {} training images (spread over the set).\n\n{}",
        test_set.len(),
        fit.len() / IMAGE_PIXELS,
        train_set.len(),
        rd::table_markdown(&points)
    );
    print!("{md}");
    edgevae::modelfile::write_atomic(&out.join("rd.md"), md.as_bytes())?;
    write_json(&out.join("rd.json"), &points)?;
    rd::plot(&points, &out.join("rd.png"))?;
    eprintln!("rate-distortion: {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn run_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn cmd_recover(a: RecoverArgs) -> Result<(), Error> {
    let task = match a.task {
        TaskKind::Cs => recover::Task::Cs {
            m: a.m,
            noise: a.noise,
        },
        TaskKind::Inpaint => recover::Task::Inpaint { missing: a.missing },
        TaskKind::Block => recover::Task::Block { side: a.block },
        TaskKind::Denoise => recover::Task::Denoise { sigma: a.sigma },
    };
    task.validate()?;
    let opts = a.prior.options()?;
    let images: Vec<f32> = match &a.input {
        Some(path) => data::load_image(path)?
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect(),
        None => {
            let test = data::load(a.data.data.as_deref(), Split::Test)?;
            train::check_shape(&test, "test")?;
            let n = a.images.clamp(1, test.len());
            test.to_f32()[..n * IMAGE_PIXELS].to_vec()
        }
    };
    let train_set = data::load(a.data.data.as_deref(), Split::Train)?;
    train::check_shape(&train_set, "training")?;
    let tune = tune_images(&train_set);
    let (_, model) = edgevae::train::load_model_on(&a.run, &edgevae::train_device())?;
    std::fs::create_dir_all(&a.out).map_err(|source| Error::Io {
        path: a.out.clone(),
        source,
    })?;
    let result = recover::run_task(&model, task, &images, &tune, &opts);
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
    edgevae::modelfile::write_atomic(
        &a.out.join("recovery.md"),
        recover::table_markdown(&rows).as_bytes(),
    )?;
    // One PNG per method for the first image, and a panel of up to 8 images.
    for (method, _, rec) in &result.methods {
        let px: Vec<u8> = rec[0]
            .iter()
            .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect();
        let path = a.out.join(format!("{method}.png"));
        eval::save_gray(&path, 28, 28, px)?;
    }
    let path = a.out.join("panel.png");
    recover::panel(&images, &result, &path)?;
    println!(
        "wrote {} (rows: original, then each method)",
        path.display()
    );
    Ok(())
}

fn cmd_sample(a: SampleArgs) -> Result<(), Error> {
    let (_, model) = edgevae::load_model(&a.run)?;
    eval::samples_figure(&model, a.seed, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cmd_bench(a: BenchArgs) -> Result<(), Error> {
    if a.batch == 0 || a.infer_batch == 0 || a.steps == 0 || a.repeats == 0 {
        return Err(Error::Invalid(
            "batch sizes, steps and repeats must be positive".into(),
        ));
    }
    // Real images when available; the throughput does not depend on pixel values.
    let pixels: Vec<f32> = match data::load(a.data.data.as_deref(), Split::Test) {
        Ok(d) if d.rows * d.cols == IMAGE_PIXELS => d.to_f32(),
        _ => (0..10_000 * IMAGE_PIXELS)
            .map(|i| ((i * 2_654_435_761usize) % 256) as f32 / 255.0)
            .collect(),
    };
    let n = pixels.len() / IMAGE_PIXELS;
    let cfg = TrainConfig::new(VaeConfig::new().with_latent(a.latent), TrainConfig::adam());
    let device = edgevae::train_device();
    let mut model = train::init_model(&cfg.model, &device, 0);
    let mut rng = train::SplitMix64(0);
    let mut optim = cfg.optimizer.init();
    let batch_idx =
        |s: usize, b: usize| -> Vec<usize> { (0..b).map(|k| (s * b + k) % n).collect() };

    let mut train_rates = Vec::new();
    for r in 0..=a.repeats {
        let start = Instant::now();
        for s in 0..a.steps {
            let x = train::batch_tensor(&pixels, &batch_idx(s, a.batch), &device);
            let eps = rng.noise(a.batch, a.latent, &device);
            let terms = model.loss(x, eps, 1.0, edgevae::model::Likelihood::Bernoulli);
            let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
            model = optim.step(cfg.learning_rate, model, grads);
        }
        // Reading a parameter waits for all queued work.
        let _ = model.enc1.weight.val().into_data();
        if r > 0 {
            train_rates.push((a.steps * a.batch) as f64 / start.elapsed().as_secs_f64());
        }
    }

    let valid = burn::module::Module::valid(&model);
    let plain = edgevae::device();
    let mut infer_rates = Vec::new();
    for r in 0..=a.repeats {
        let start = Instant::now();
        for s in 0..a.steps {
            let x = train::batch_tensor(&pixels, &batch_idx(s, a.infer_batch), &plain);
            let img = valid.decode_image(valid.encode_mu(x));
            let _ = img.into_data();
        }
        if r > 0 {
            infer_rates.push((a.steps * a.infer_batch) as f64 / start.elapsed().as_secs_f64());
        }
    }
    println!(
        "backend {}, {} threads: train {:.0} images/s (batch {}), infer {:.0} images/s \
         (encode mu + decode, batch {}); medians of {} x {} steps",
        if cfg!(feature = "flex") {
            "flex"
        } else {
            "ndarray"
        },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        median(train_rates),
        a.batch,
        median(infer_rates),
        a.infer_batch,
        a.repeats,
        a.steps
    );
    Ok(())
}

fn cmd_quantize(a: QuantizeArgs) -> Result<(), Error> {
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
    let r = edgevae::pipeline::quantize(
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

fn cmd_export(a: ExportArgs) -> Result<(), Error> {
    let r = edgevae::pipeline::export(
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

fn cmd_compress(a: CompressArgs) -> Result<(), Error> {
    let reports = edgevae::codec::compress_path(&a.model, &a.input, &a.out, a.quality)?;
    for r in &reports {
        if r.colour {
            println!(
                "note: {} is in colour; coded as luma (grey)",
                r.input.display()
            );
        }
        println!(
            "{} -> {}: {}x{}, quality {}, {} bytes ({} bitstream bits + {} container bytes), {:.4} bpp, PSNR {:.2} dB, SSIM {:.4}",
            r.input.display(),
            r.output.display(),
            r.width,
            r.height,
            r.quality,
            r.bytes,
            r.bitstream_bits,
            edgevae::codec::EVZ_OVERHEAD,
            r.bpp,
            r.psnr,
            r.ssim
        );
    }
    Ok(())
}

fn cmd_decompress(a: DecompressArgs) -> Result<(), Error> {
    for (out, img) in edgevae::codec::decompress_path(&a.model, &a.input, &a.out)? {
        println!("wrote {} ({}x{})", out.display(), img.width, img.height);
    }
    Ok(())
}

fn cmd_inspect(a: InspectArgs) -> Result<(), Error> {
    let bytes = std::fs::read(&a.file).map_err(|e| Error::Io {
        path: a.file.clone(),
        source: e,
    })?;
    let text = edgevae::modelfile::inspect(&bytes).map_err(|e| Error::Data {
        path: a.file.clone(),
        problem: e.to_string(),
    })?;
    print!("{text}");
    Ok(())
}

fn cmd_hil(a: HilArgs) -> Result<(), Error> {
    let test = data::load(a.data.data.as_deref(), Split::Test)?;
    let r = edgevae::hil::run(&a.model, &a.machine, &test, a.images)?;
    println!(
        "{}: {} test images streamed over the emulated UART, {} mismatches vs the host fixed-point reference",
        r.machine, r.images, r.mismatches
    );
    println!(
        "latent {} bits/image; device reconstruction PSNR {:.2} dB; {:.1} frames/s through the link",
        r.bits_per_image, r.device_psnr, r.frames_per_s
    );
    if let (Some(e), Some(d)) = (r.encode_instructions, r.decode_instructions) {
        println!("instructions per inference (QEMU -icount): encode {e}, decode {d}");
        if let (Some(c), Some(u)) = (r.code_instructions, r.uncode_instructions) {
            println!(
                "entropy coding at the finest level adds {c} instructions to the encode ({:.2} %) and {u} to the decode",
                100.0 * c as f64 / e.max(1) as f64
            );
        }
    }
    for (level, n, bits, bytes, psnr) in &r.codec {
        println!(
            "codec quality {}: {n} images, {bits:.1} bits ({bytes:.1} bytes) per image over the link, device PSNR {psnr:.2} dB",
            level + 1
        );
    }
    println!(
        "firmware: flash {} bytes (model file {} bytes), RAM {} bytes static (arena {} bytes) + {} bytes stack",
        r.flash_bytes,
        r.model_bytes,
        r.static_ram_bytes,
        r.arena_bytes,
        r.stack_bytes.map_or("?".to_string(), |s| s.to_string())
    );
    if r.mismatches > 0 {
        return Err(Error::Invalid(format!(
            "{} mismatches between device and reference",
            r.mismatches
        )));
    }
    Ok(())
}
