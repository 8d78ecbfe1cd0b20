//! `edgevae eval`: test-set metrics, figures, rate–distortion and recovery of a run.

use std::path::{Path, PathBuf};

use clap::Args;
use edgevae::Error;

use super::*;
use edgevae::data::{Split, IMAGE_PIXELS};
use std::time::Instant;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArg,
    /// Run directory of the model (for --photos: the float photo model, optional).
    #[arg(long, required_unless_present = "photos")]
    run: Option<PathBuf>,
    /// Evaluate the photo codec instead on every photograph in this folder (whole images):
    /// --model (a photo model file) against JPEG (libjpeg-turbo) and WebP (libwebp), writing
    /// rd.md, rd.json and rd.png into --out.
    #[arg(long)]
    photos: Option<PathBuf>,
    /// Where to write metrics.json's test part (eval.json), the tables and the figures
    /// [default: the run; for --photos, the model file's folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The run's int8 model file [default: <run>/model.evae, or quantized now if missing].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Further run directories to put in the rate-distortion table (each with its model.evae,
    /// or quantized now).
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

pub fn run_eval(a: EvalArgs) -> Result<(), Error> {
    if let Some(dir) = &a.photos {
        return photo_eval(&a, dir);
    }
    let run = a.run.clone().unwrap_or_default();
    let (vae_cfg, model) = edgevae::inference::load_model(&run)?;
    let test_set = edgevae::data::load(a.data.data.as_deref(), Split::Test)?;
    edgevae::data::check_shape(&test_set, "test")?;
    let out = a.out.clone().unwrap_or_else(|| run.clone());
    std::fs::create_dir_all(&out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    let m = edgevae::eval::evaluate(&model, vae_cfg.likelihood(), &test_set, 256, a.prior.seed);
    print_eval(&m);
    edgevae::eval::reconstruction_figure(&model, &test_set, &out.join("reconstructions.png"))?;
    edgevae::eval::samples_figure(&model, a.prior.seed, &out.join("samples.png"))?;
    write_json(&out.join("eval.json"), &m)?;
    if a.rd_images == 0 && a.recovery_images == 0 {
        return Ok(());
    }
    let train_set = edgevae::data::load(a.data.data.as_deref(), Split::Train)?;
    edgevae::data::check_shape(&train_set, "training")?;
    if a.rd_images > 0 {
        rate_distortion(&a, &run, &model, &test_set, &train_set, &out)?;
    }
    if a.recovery_images > 0 {
        let opts = a.prior.options()?;
        let n = a.recovery_images.min(test_set.len());
        let images = test_set.to_f32()[..n * IMAGE_PIXELS].to_vec();
        let tune = tune_images(&train_set);
        let (_, ad_model) = edgevae::inference::load_model_on(&run, &edgevae::train_device())?;
        let mut rows = Vec::new();
        for task in edgevae::eval::recover::Task::table() {
            let start = Instant::now();
            let result = edgevae::eval::recover::run_task(&ad_model, task, &images, &tune, &opts);
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
            edgevae::eval::recover::table_markdown(&rows)
        );
        edgevae::files::write_atomic(&out.join("recovery.md"), md.as_bytes())?;
        println!("wrote {}", out.join("recovery.md").display());
    }
    Ok(())
}

/// The int8 model file of a run: `explicit`, else `<run>/model.evae`, else quantized now.
fn int8_model(
    run: &Path,
    explicit: Option<&Path>,
    train_set: &edgevae::data::Dataset,
) -> Result<Vec<u8>, Error> {
    let path = explicit.map_or_else(|| run.join("model.evae"), Path::to_path_buf);
    if explicit.is_some() || path.exists() {
        return std::fs::read(&path).map_err(|source| Error::Io { path, source });
    }
    let fm = edgevae::quantize::float_model(run)?;
    let (bytes, _) = edgevae::quantize::quantize_bytes(
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
    run: &Path,
    model: &edgevae::Vae,
    test_set: &edgevae::data::Dataset,
    train_set: &edgevae::data::Dataset,
    out: &Path,
) -> Result<(), Error> {
    let start = Instant::now();
    let n = a.rd_images.min(test_set.len());
    let mut runs = vec![(
        run.to_path_buf(),
        model.clone(),
        int8_model(run, a.model.as_deref(), train_set)?,
    )];
    for r in &a.also {
        let (_, m) = edgevae::inference::load_model(r)?;
        runs.push((r.clone(), m, int8_model(r, None, train_set)?));
    }
    let fit = spread_images(train_set, 10_000);
    let inputs = edgevae::eval::rd::RdInputs {
        test: &test_set.pixels[..n * IMAGE_PIXELS],
        fit: &fit,
        vaes: runs
            .iter()
            .map(|(p, m, b)| (run_name(p), m, b.as_slice()))
            .collect(),
    };
    let points = edgevae::eval::rd::sweep(&inputs)?;
    let md = format!(
        "Rate-distortion on the first {n} of the {} test images; PCA and coefficient ranges \
         fitted on {} of the {} training images (spread over the set).\n\n{}",
        test_set.len(),
        fit.len() / IMAGE_PIXELS,
        train_set.len(),
        edgevae::eval::rd::table_markdown(&points)
    );
    print!("{md}");
    edgevae::files::write_atomic(&out.join("rd.md"), md.as_bytes())?;
    write_json(&out.join("rd.json"), &points)?;
    edgevae::eval::rd::plot(&points, &out.join("rd.png"))?;
    eprintln!("rate-distortion: {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// `edgevae eval --photos DIR --model FILE [--run RUN]`: the photo codec's rate–distortion on
/// whole photographs against JPEG and WebP.
fn photo_eval(a: &EvalArgs, dir: &Path) -> Result<(), Error> {
    use edgevae::eval::photo_rd;
    let start = Instant::now();
    let model_path = a
        .model
        .clone()
        .or_else(|| a.run.as_ref().map(|r| r.join("model.evae")));
    let Some(model_path) = model_path else {
        return Err(Error::Invalid(
            "eval --photos needs --model FILE (a photo model file) or --run RUN".into(),
        ));
    };
    let bytes = std::fs::read(&model_path).map_err(Error::io(&model_path))?;
    let model = edgevae_shared::format::Model::from_bytes(&bytes)
        .map_err(|e| Error::data(&model_path, e))?;
    if model.frame().is_none() {
        return Err(Error::data(
            &model_path,
            "not a photo model (no frame section): eval --photos needs a fully convolutional model",
        ));
    }
    let channels = model.header().input.c as usize;
    let photos = edgevae::data::photos::load_photos(dir, 3)?;
    let float = match &a.run {
        Some(run) => {
            Some(edgevae::train::photo::load_photo_model(run, &edgevae::train_device())?.1)
        }
        None => None,
    };
    let rows = photo_rd::sweep(&bytes, float.as_ref(), &photos)?;
    let luma = channels == 1;
    let summary = photo_rd::summarise(&rows, luma);
    let pixels: usize = photos.iter().map(|p| p.width * p.height).sum();
    let name = model.header().name.as_str().to_string();
    let int8_vs_float = if let Some(codec) = &float {
        // Over the trained levels only: on the extrapolated coarse settings the float model's
        // bin-centre reconstruction is far below the int8 file's bin means.
        let trained = codec.knob_trained();
        let settings = (trained.start + 1) as u32..=trained.end as u32;
        let only_trained: Vec<photo_rd::RdRow> = rows
            .iter()
            .filter(|r| !r.method.starts_with("edgevae") || settings.contains(&r.setting))
            .cloned()
            .collect();
        let curve = |m| edgevae::eval::refcodec::envelope(&photo_rd::curve(&only_trained, m, luma));
        let (f, q) = (curve("edgevae float"), curve("edgevae int8"));
        match edgevae::eval::refcodec::bd_psnr(&f, &q) {
            Some(d) => format!(
                "\n\nint8 against float at the same rate (BD-PSNR over the rates both cover, \
                 trained levels: settings {}–{}): {d:+.2} dB.\n",
                settings.start(),
                settings.end()
            ),
            None => "\n\nint8 and float cover no common rate.\n".to_string(),
        }
    } else {
        String::new()
    };
    let md = format!(
        "Rate-distortion of `{name}` ({}) on the {} photographs of {} ({:.1} Mpixel, whole \
         images); rates are the bytes of the files each codec writes (the .evz container \
         included; the float model's rate is its ideal code length plus the container), \
         averaged per image. JPEG: libjpeg-turbo with optimised Huffman tables ({}); WebP: \
         libwebp, method 6.\n\n{}",
        if luma {
            "grey, PSNR on luma"
        } else {
            "colour, PSNR on RGB"
        },
        photos.len(),
        dir.display(),
        pixels as f64 / 1e6,
        if luma { "greyscale" } else { "4:2:0" },
        photo_rd::markdown(&rows, &summary, luma)
    ) + &int8_vs_float;
    print!("{md}");
    let out = a.out.clone().unwrap_or_else(|| {
        model_path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    std::fs::create_dir_all(&out).map_err(Error::io(&out))?;
    edgevae::files::write_atomic(&out.join("rd.md"), md.as_bytes())?;
    write_json(&out.join("rd.json"), &(&rows, &summary))?;
    let title = format!("{name}: {} validation photos", photos.len());
    photo_rd::plot(&rows, luma, &title, &out.join("rd.png"))?;
    eprintln!(
        "wrote {} (rate-distortion: {:.1} s)",
        out.join("rd.md").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
