//! Splits the int8 photo codec's loss against the float one into its encoder and decoder
//! halves, per validation photograph, at one quality level:
//!
//! - `float`: the Burn model (what `eval` reports as `edgevae float`);
//! - `int8`: the model file end to end (`compress_frame`, what `eval` reports as `edgevae int8`);
//! - `grid`: the float codec with its quantized latent moved onto the int8 latent grid;
//! - `i8enc`: the int8 encoder, its latent dequantized by the float model, the float decoder;
//! - `i8dec`: the float encoder and quantizer, the int8 decoder;
//! - `fq`: the float networks with every hidden activation rounded to its int8 grid (what
//!   `train --qat` simulates of the activations);
//! - `wq`: the float networks with int8 weights, equalised as the quantizer does; `wq0`: with
//!   int8 weights, not equalised.
//!
//! A quantization-aware run's frozen plan (`qat.json`) is used when the run has one.
//!
//! It re-quantizes the run (as `edgevae quantize` does, same calibration crops) to get the
//! per-channel latent units, and reports the clipped fraction of each int8 activation.
//!
//! `cargo run --release -p edgevae --example int8_gap -- RUN TRAIN_DIR VAL_DIR LEVEL`
//! (LEVEL 1-based).

use edgevae::codec::frame::{compress_frame, padded_size};
use edgevae::data::photos::{load_photos, Photo, PhotoSet};
use edgevae::eval::refcodec::psnr;
use edgevae::quantize::int8::{forward, FloatLayer};
use edgevae::quantize::photo::{
    equalise, float_layers, float_round_trip, layers_at, nchw_to_hwc, qat_targets, quantize_photo,
    run_float, FrameRef, QuantPlan,
};
use edgevae_shared::format::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, run, train, val, level] = &args[..] else {
        return Err("usage: int8_gap RUN TRAIN_DIR VAL_DIR LEVEL".into());
    };
    let level: usize = level.parse::<usize>()? - 1;
    let device = edgevae::compute_device();
    let (cfg, codec) = edgevae::train::photo::load_photo_model(run.as_ref(), &device)?;
    let ch = cfg.channels;
    let set = PhotoSet::new(load_photos(train.as_ref(), ch)?, ch)?;
    let crops = set.crops(&mut edgevae::rng::seeded(0xca1), 256, 128);
    let crops = nchw_to_hwc(&crops, 256, ch, 128);
    let plan = edgevae::train::photo::read_qat_plan(run.as_ref())?;
    let q = quantize_photo(&codec, &crops, 128, "gap", 640, plan.as_ref())?;
    let model = Model::from_bytes(&q.bytes)?;
    let m = codec.latent();
    let knob = codec.knob();
    let delta = knob
        .get(level)
        .cloned()
        .ok_or("LEVEL is past the model's rate knob")?;
    let (enc, dec) = float_layers(&codec);
    // The hidden activations' int8 grids in the float model's units (what `--qat` trains on).
    let plan = match plan {
        Some(p) => p,
        None => QuantPlan::measure(&codec, &crops, 128)?,
    };
    let t = qat_targets(&codec, &crops, 128, &plan)?;
    let (enc_steps, dec_steps) = (t.enc_steps, t.dec_steps);
    // The float networks with int8 weights (per output channel), equalised as the quantizer
    // does and not: what the weights alone cost.
    let (mut enc_eq, mut dec_eq) = (enc.clone(), dec.clone());
    equalise(&mut enc_eq, 128, 128, &crops);
    let y_cal: Vec<Vec<f32>> = crops
        .iter()
        .map(|x| {
            run_float(&layers_at(&enc, 128, 128), x)
                .iter()
                .enumerate()
                .map(|(k, &v)| (v / delta[k % m]).round() * delta[k % m])
                .collect()
        })
        .collect();
    equalise(&mut dec_eq, 8, 8, &y_cal);
    let wq = |layers: &[FloatLayer]| -> Vec<FloatLayer> {
        layers
            .iter()
            .map(|l| {
                let mut l = l.clone();
                let per = l.weights.len() / l.output.c as usize;
                for row in l.weights.chunks_mut(per) {
                    let s = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                    if s > 0.0 {
                        row.iter_mut().for_each(|v| *v = (*v / s).round() * s);
                    }
                }
                l
            })
            .collect()
    };
    let (enc_wq, dec_wq, enc_wq0, dec_wq0) = (wq(&enc_eq), wq(&dec_eq), wq(&enc), wq(&dec));
    println!(
        "level {}: units {:.4}..{:.4}",
        level + 1,
        q.units.iter().copied().fold(f32::INFINITY, f32::min),
        q.units.iter().copied().fold(0.0, f32::max)
    );
    println!("photo | float | int8 | grid | i8enc | i8dec | fq | wq | wq0");
    let mut sums = [0f64; 8];
    // Per channel, the largest |y| / unit and |y| / finest step over the validation photos.
    let fine: Vec<f32> = (0..m)
        .map(|c| knob.iter().map(|d| d[c]).fold(f32::INFINITY, f32::min))
        .collect();
    let mut worst = vec![(0f32, 0f32); m];
    let photos = load_photos(val.as_ref(), ch)?;
    let to_photo = |px: &[f32], rows: usize, cols: usize| Photo {
        width: cols,
        height: rows,
        channels: ch,
        pixels: px
            .iter()
            .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect(),
    };
    for (i, p) in photos.iter().enumerate() {
        let (rows, cols) = padded_size(p.height, p.width, 16);
        let padded = p.padded(rows, cols);
        let crop = |x: Photo| x.cropped(p.height, p.width);
        let (fpx, _, _) = float_round_trip(&codec, &padded.pixels, rows, cols, ch, &delta);
        let float = psnr(
            p,
            &crop(Photo {
                pixels: fpx,
                ..padded.clone()
            }),
        );
        let int8 = psnr(p, &compress_frame(&model, level as u8, p)?.decoded);
        let x: Vec<f32> = padded
            .pixels
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        let y = run_float(&layers_at(&enc, rows as u16, cols as u16), &x);
        for (k, &v) in y.iter().enumerate() {
            let w = &mut worst[k % m];
            w.0 = w.0.max(v.abs() / q.units[k % m]);
            w.1 = w.1.max(v.abs() / fine[k % m]);
        }
        let dec_at = layers_at(&dec, (rows / 16) as u16, (cols / 16) as u16);
        let y_hat: Vec<f32> = y
            .iter()
            .enumerate()
            .map(|(k, &v)| (v / delta[k % m]).round() * delta[k % m])
            .collect();
        let z_hat: Vec<i8> = y_hat
            .iter()
            .enumerate()
            .map(|(k, &v)| (v / q.units[k % m]).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let on_grid: Vec<f32> = z_hat
            .iter()
            .enumerate()
            .map(|(k, &z)| f32::from(z) * q.units[k % m])
            .collect();
        let grid = psnr(
            p,
            &crop(to_photo(&run_float(&dec_at, &on_grid), rows, cols)),
        );
        let r = FrameRef::new(&model);
        let z = r.encode(&padded.pixels, rows, cols)?;
        let y8: Vec<f32> = z
            .iter()
            .enumerate()
            .map(|(k, &z)| {
                let v = f32::from(z) * q.units[k % m];
                (v / delta[k % m]).round() * delta[k % m]
            })
            .collect();
        let i8enc = psnr(p, &crop(to_photo(&run_float(&dec_at, &y8), rows, cols)));
        let px8 = r.decode(&z_hat, rows / 16, cols / 16)?;
        let i8dec = psnr(
            p,
            &crop(Photo {
                pixels: px8,
                ..padded.clone()
            }),
        );
        // The float networks with every hidden activation rounded to its int8 grid.
        let yq = run_on_grids(&layers_at(&enc, rows as u16, cols as u16), &x, &enc_steps);
        let yq_hat: Vec<f32> = yq
            .iter()
            .enumerate()
            .map(|(k, &v)| (v / delta[k % m]).round() * delta[k % m])
            .collect();
        let fq = psnr(
            p,
            &crop(to_photo(
                &run_on_grids(&dec_at, &yq_hat, &dec_steps),
                rows,
                cols,
            )),
        );
        let wpsnr = |e: &[FloatLayer], d: &[FloatLayer]| {
            let y = run_float(&layers_at(e, rows as u16, cols as u16), &x);
            let y_hat: Vec<f32> = y
                .iter()
                .enumerate()
                .map(|(k, &v)| (v / delta[k % m]).round() * delta[k % m])
                .collect();
            let d_at = layers_at(d, (rows / 16) as u16, (cols / 16) as u16);
            psnr(p, &crop(to_photo(&run_float(&d_at, &y_hat), rows, cols)))
        };
        let (wq, wq0) = (wpsnr(&enc_wq, &dec_wq), wpsnr(&enc_wq0, &dec_wq0));
        // Clipped latents of the int8 encoder: how many sit at ±127.
        let sat = z.iter().filter(|&&v| v.unsigned_abs() >= 127).count() as f64 / z.len() as f64;
        println!(
            "{i:2} {}x{} | {float:.2} | {int8:.2} | {grid:.2} | {i8enc:.2} | {i8dec:.2} | {fq:.2} | {wq:.2} | {wq0:.2} | latent at ±127: {:.3} %",
            p.width,
            p.height,
            100.0 * sat
        );
        for (s, v) in sums
            .iter_mut()
            .zip([float, int8, grid, i8enc, i8dec, fq, wq, wq0])
        {
            *s += v;
        }
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| worst[b].0.total_cmp(&worst[a].0));
    for &c in order.iter().take(12) {
        println!(
            "channel {c}: max |y|/unit {:.0}, max |y|/finest step {:.0}, finest step {:.0} units",
            worst[c].0,
            worst[c].1,
            fine[c] / q.units[c]
        );
    }
    let n = photos.len().max(1) as f64;
    println!(
        "mean | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}",
        sums[0] / n,
        sums[1] / n,
        sums[2] / n,
        sums[3] / n,
        sums[4] / n,
        sums[5] / n,
        sums[6] / n,
        sums[7] / n
    );
    Ok(())
}

/// Float layers with each hidden (ReLU) output rounded to its channel's int8 grid
/// (`steps[i][c]`, 256 steps from 0), as quantization-aware training sees them.
fn run_on_grids(layers: &[FloatLayer], x: &[f32], steps: &[Vec<f32>]) -> Vec<f32> {
    let mut cur = x.to_vec();
    for (i, l) in layers.iter().enumerate() {
        cur = forward(l, &cur);
        if let Some(st) = steps.get(i).filter(|_| i + 1 < layers.len()) {
            let c = st.len();
            for (k, v) in cur.iter_mut().enumerate() {
                let s = st[k % c];
                *v = (v.max(0.0) / s).round().min(255.0) * s;
            }
        }
    }
    cur
}
