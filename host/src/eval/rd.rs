//! Rate–distortion over the test set: bits per image against PSNR and SSIM for the float VAE,
//! the int8 VAE as the device computes it, the learned codec (each quality level, bits counted
//! from the real bitstream of every image, termination included; int8 and its float twin), PCA,
//! DCT and Haar top-k coding, and JPEG.
//!
//! Every reconstruction is rounded to 8-bit pixels before it is scored, as a stored image would
//! be. PSNR is the mean over images of the per-image PSNR (peak 255); SSIM is [`crate::metrics::ssim`].

use std::path::Path;

use edgevae_shared::format::Model;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::Error;
use crate::eval::classical::{jpeg, top_k, Basis, Pca, RangeQuantizer};
use crate::metrics::{psnr_u8, to_f32, to_u8};
use crate::model::Vae;
use crate::quantize::Reference;

/// One codec at one setting, averaged over the test images.
#[derive(Clone, Debug, Serialize)]
pub struct RdPoint {
    /// Codec family, or VAE and run (one line or marker in the plot).
    pub method: String,
    /// Its setting: latent size, k, or JPEG quality.
    pub setting: String,
    /// Mean bits per image.
    pub bits: f64,
    /// Mean bits of those that are JPEG's header (markers and tables), when there is one.
    pub header_bits: Option<f64>,
    /// For bitstreams sent one per image: mean bits once padded to whole bytes.
    pub bytes: Option<f64>,
    pub psnr: f64,
    pub ssim: f64,
}

/// Coefficient counts tried for PCA and top-k coding.
pub const KS: [usize; 7] = [2, 4, 8, 16, 32, 64, 128];
/// JPEG qualities tried.
pub const JPEG_QUALITIES: [u8; 8] = [1, 5, 10, 20, 30, 50, 75, 90];

/// Scores reconstructions (`u8`, image after image) against `test`.
fn score(test: &[u8], rec: &[Vec<u8>]) -> (f64, f64) {
    let n = rec.len().max(1) as f64;
    let (p, s) = test
        .par_chunks_exact(IMAGE_PIXELS)
        .zip(rec.par_iter())
        .map(|(x, r)| {
            (
                psnr_u8(x, r),
                crate::metrics::ssim(&to_f32(x), &to_f32(r), IMAGE_SIDE, IMAGE_SIDE),
            )
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    (p / n, s / n)
}

fn point(method: &str, setting: String, bits: f64, test: &[u8], rec: &[Vec<u8>]) -> RdPoint {
    let (psnr, ssim) = score(test, rec);
    RdPoint {
        method: method.into(),
        setting,
        bits,
        header_bits: None,
        bytes: None,
        psnr,
        ssim,
    }
}

/// What the rate–distortion sweep compares.
pub struct RdInputs<'a> {
    /// Test images, `u8`, image after image.
    pub test: &'a [u8],
    /// Training images (pixels in [0, 1]) that PCA and the coefficient ranges are fitted on.
    pub fit: &'a [f32],
    /// VAEs: a name, the float model, and its int8 model file.
    pub vaes: Vec<(String, &'a Vae, &'a [u8])>,
}

/// Runs every codec at every setting over the test images.
pub fn sweep(inputs: &RdInputs<'_>) -> Result<Vec<RdPoint>, Error> {
    let test = inputs.test;
    let n = test.len() / IMAGE_PIXELS;
    let test_f: Vec<f32> = to_f32(test);
    let mut points = Vec::new();

    for (name, vae, bytes) in &inputs.vaes {
        let latent = vae.fc_mu.weight.val().dims()[1];
        let mut rec = Vec::with_capacity(n);
        for chunk in test_f.chunks(256 * IMAGE_PIXELS) {
            let mu = crate::inference::encode_mu_batch(vae, chunk);
            let px = crate::inference::decode_batch(vae, &mu);
            rec.extend(px.chunks_exact(IMAGE_PIXELS).map(to_u8));
        }
        points.push(point(
            &format!("vae-float {name}"),
            format!("z={latent} f32"),
            32.0 * latent as f64,
            test,
            &rec,
        ));
        let model = Model::from_bytes(bytes)
            .map_err(|e| Error::Invalid(format!("{name}: model file: {e}")))?;
        let engine = |e: String| Error::Invalid(format!("{name}: int8 engine: {e}"));
        let images: Vec<&[u8]> = test.chunks_exact(IMAGE_PIXELS).collect();
        let z = crate::quantize::entropy::latents(&model, &images)
            .map_err(|e| engine(e.to_string()))?;
        let rec = decode_all(&model, &z).map_err(engine)?;
        points.push(point(
            &format!("vae-int8 {name}"),
            format!("z={} int8", model.header().latent),
            8.0 * f64::from(model.header().latent),
            test,
            &rec,
        ));
        if let Some(entropy) = model.entropy() {
            let q = model.header().latent_q;
            // The float twin: Burn's mu, rounded to the int8 latent grid as the device would.
            let mu: Vec<f32> = test_f
                .chunks(256 * IMAGE_PIXELS)
                .flat_map(|c| crate::inference::encode_mu_batch(vae, c))
                .collect();
            let zf: Vec<Vec<i8>> = mu
                .chunks_exact(latent)
                .map(|m| {
                    m.iter()
                        .map(|&v| {
                            ((v / q.scale).round() + f32::from(q.zero_point)).clamp(-128.0, 127.0)
                                as i8
                        })
                        .collect()
                })
                .collect();
            for (l, level) in entropy.levels.iter().enumerate() {
                let coded = code_all(level, q.zero_point, &z).map_err(engine)?;
                let bits: Vec<u32> = coded.iter().map(|c| c.0).collect();
                let dq: Vec<Vec<i8>> = coded.into_iter().map(|c| c.1).collect();
                let rec = decode_all(&model, &dq).map_err(engine)?;
                let mut p = point(
                    &format!("codec-int8 {name}"),
                    format!("quality {}", l + 1),
                    mean(&bits),
                    test,
                    &rec,
                );
                p.bytes = Some(
                    bits.iter()
                        .map(|&b| 8.0 * f64::from(b.div_ceil(8)))
                        .sum::<f64>()
                        / bits.len().max(1) as f64,
                );
                points.push(p);

                let coded = code_all(level, q.zero_point, &zf).map_err(engine)?;
                let bits: Vec<u32> = coded.iter().map(|c| c.0).collect();
                let zr: Vec<f32> = coded
                    .iter()
                    .flat_map(|c| {
                        c.1.iter()
                            .map(|&v| q.scale * (f32::from(v) - f32::from(q.zero_point)))
                    })
                    .collect();
                let rec: Vec<Vec<u8>> = zr
                    .chunks(256 * latent)
                    .flat_map(|c| {
                        let px = crate::inference::decode_batch(vae, c);
                        px.chunks_exact(IMAGE_PIXELS).map(to_u8).collect::<Vec<_>>()
                    })
                    .collect();
                points.push(point(
                    &format!("codec-float {name}"),
                    format!("quality {}", l + 1),
                    mean(&bits),
                    test,
                    &rec,
                ));
            }
        }
    }

    let pca = Pca::fit(inputs.fit, *KS.iter().max().unwrap_or(&1))?;
    for k in KS {
        let (rec, bits): (Vec<Vec<u8>>, Vec<u32>) = test_f
            .par_chunks_exact(IMAGE_PIXELS)
            .map(|x| {
                let (r, b) = pca.code(x, k);
                (to_u8(&r), b)
            })
            .unzip();
        points.push(point("pca", format!("k={k}"), mean(&bits), test, &rec));
    }

    for basis in Basis::all() {
        let coefs: Vec<Vec<f32>> = inputs
            .fit
            .chunks_exact(IMAGE_PIXELS)
            .map(|x| {
                let mut c = vec![0.0; IMAGE_PIXELS];
                basis.forward(x, &mut c);
                c
            })
            .collect();
        let q = RangeQuantizer::fit(IMAGE_PIXELS, coefs.iter().map(Vec::as_slice));
        for k in KS {
            let (rec, bits): (Vec<Vec<u8>>, Vec<u32>) = test_f
                .par_chunks_exact(IMAGE_PIXELS)
                .map(|x| {
                    let (r, b) = top_k(&basis, &q, x, k);
                    (to_u8(&r), b)
                })
                .unzip();
            points.push(point(
                &format!("{}-top-k", basis.name),
                format!("k={k}"),
                mean(&bits),
                test,
                &rec,
            ));
        }
    }

    for quality in JPEG_QUALITIES {
        let coded = test
            .par_chunks_exact(IMAGE_PIXELS)
            .map(|x| jpeg(x, quality))
            .collect::<Result<Vec<_>, _>>()?;
        let rec: Vec<Vec<u8>> = coded.iter().map(|c| c.image.clone()).collect();
        let file: Vec<u32> = coded.iter().map(|c| c.file_bits).collect();
        let header: Vec<u32> = coded.iter().map(|c| c.header_bits).collect();
        let mut whole = point("jpeg", format!("q={quality}"), mean(&file), test, &rec);
        whole.header_bits = Some(mean(&header));
        let scan: Vec<u32> = coded.iter().map(|c| c.file_bits - c.header_bits).collect();
        let mut scan_only = whole.clone();
        scan_only.method = "jpeg-scan-only".into();
        scan_only.bits = mean(&scan);
        scan_only.header_bits = None;
        points.push(whole);
        points.push(scan_only);
    }
    Ok(points)
}

/// Decodes int8 latents with the fixed-point reference, in parallel.
fn decode_all(model: &Model<'_>, z: &[Vec<i8>]) -> Result<Vec<Vec<u8>>, String> {
    z.par_chunks(64)
        .map(|chunk| {
            let mut r = Reference::new(model);
            chunk
                .iter()
                .map(|zk| r.decode(zk).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// Codes each latent as its own bitstream (as the device sends it): the bits written,
/// termination included, and the dequantized latent decoded back from those bits.
fn code_all(
    level: &edgevae_shared::format::EntropyLevel<'_>,
    zero_point: i8,
    z: &[Vec<i8>],
) -> Result<Vec<(u32, Vec<i8>)>, String> {
    z.par_iter()
        .map(|zk| {
            let mut buf = vec![0u8; 4 * zk.len() + 8];
            let bits = level
                .encode(zero_point, zk, &mut buf)
                .map_err(|e| e.to_string())?;
            let mut dq = vec![0i8; zk.len()];
            level
                .decode(zero_point, &buf[..bits.div_ceil(8)], &mut dq)
                .map_err(|e| e.to_string())?;
            Ok((bits as u32, dq))
        })
        .collect()
}

fn mean(v: &[u32]) -> f64 {
    v.iter().map(|&b| f64::from(b)).sum::<f64>() / v.len().max(1) as f64
}

/// The table as Markdown.
pub fn table_markdown(points: &[RdPoint]) -> String {
    let mut s = String::from(
        "| method | setting | bits/image | of which header | whole bytes (bits) | PSNR (dB) | SSIM |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for p in points {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {:.2} | {:.4} |\n",
            p.method,
            p.setting,
            p.bits,
            p.header_bits.map_or(String::new(), |h| format!("{h:.1}")),
            p.bytes.map_or(String::new(), |b| format!("{b:.1}")),
            p.psnr,
            p.ssim
        ));
    }
    s
}

/// Draws bits per image (log scale) against PSNR, one line per method, into a PNG at `path`.
pub fn plot(points: &[RdPoint], path: &Path) -> Result<(), Error> {
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in points {
        let pt = (p.bits.max(1.0), p.psnr);
        match curves.iter_mut().find(|(m, _)| *m == p.method) {
            Some((_, pts)) => pts.push(pt),
            None => curves.push((p.method.clone(), vec![pt])),
        }
    }
    let (lo_b, hi_b) = points.iter().fold((f64::MAX, 1.0f64), |(lo, hi), p| {
        (lo.min(p.bits.max(1.0)), hi.max(p.bits))
    });
    let axes = crate::eval::figures::CurvePlot {
        title: "rate-distortion, Fashion-MNIST test set",
        x_desc: "bits per image",
        y_desc: "PSNR (dB)",
        x_range: (lo_b * 0.8, hi_b * 1.25),
        x_decimals: None,
    };
    crate::eval::figures::plot_curves(&curves, &axes, path)
}
