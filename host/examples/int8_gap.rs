//! Splits the int8 photo codec's loss against the float one into its encoder and decoder
//! halves, per validation photograph, at one quality level:
//!
//! - `float`: the Burn model (what `eval` reports as `edgevae float`);
//! - `int8`: the model file end to end (`compress_frame`, what `eval` reports as `edgevae int8`);
//! - `grid`: the float codec with its quantized latent moved onto the int8 latent grid;
//! - `i8enc`: the int8 encoder, its latent dequantized by the float model, the float decoder;
//! - `i8dec`: the float encoder and quantizer, the int8 decoder.
//!
//! It re-quantizes the run (as `edgevae quantize` does, same calibration crops) to get the
//! per-channel latent units, and reports the clipped fraction of each int8 activation.
//!
//! `cargo run --release -p edgevae --example int8_gap -- RUN TRAIN_DIR VAL_DIR LEVEL`
//! (LEVEL 1-based).

use edgevae::codec::frame::{compress_frame, padded_size};
use edgevae::data::photos::{load_photos, Photo, PhotoSet};
use edgevae::eval::refcodec::psnr;
use edgevae::quantize::photo::{
    float_layers, float_round_trip, layers_at, nchw_to_hwc, quantize_photo, run_float, FrameRef,
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
    let q = quantize_photo(&codec, &crops, 128, "gap", 640)?;
    let model = Model::from_bytes(&q.bytes)?;
    let m = codec.latent();
    let knob = codec.knob();
    let delta = knob
        .get(level)
        .cloned()
        .ok_or("LEVEL is past the model's rate knob")?;
    let (enc, dec) = float_layers(&codec);
    println!(
        "level {}: units {:.4}..{:.4}",
        level + 1,
        q.units.iter().copied().fold(f32::INFINITY, f32::min),
        q.units.iter().copied().fold(0.0, f32::max)
    );
    println!("photo | float | int8 | grid | i8enc | i8dec");
    let mut sums = [0f64; 5];
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
        // Clipped latents of the int8 encoder: how many sit at ±127.
        let sat = z.iter().filter(|&&v| v.unsigned_abs() >= 127).count() as f64 / z.len() as f64;
        println!(
            "{i:2} {}x{} | {float:.2} | {int8:.2} | {grid:.2} | {i8enc:.2} | {i8dec:.2} | latent at ±127: {:.3} %",
            p.width,
            p.height,
            100.0 * sat
        );
        for (s, v) in sums.iter_mut().zip([float, int8, grid, i8enc, i8dec]) {
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
        "mean | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}",
        sums[0] / n,
        sums[1] / n,
        sums[2] / n,
        sums[3] / n,
        sums[4] / n
    );
    Ok(())
}
