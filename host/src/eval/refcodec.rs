//! Reference codecs and rate–distortion arithmetic for photographs: JPEG from libjpeg-turbo
//! (optimised Huffman tables, 4:2:0 for colour), WebP from libwebp (method 6), PSNR on RGB and
//! on luma, MS-SSIM, and the Bjøntegaard delta rate and PSNR between two curves.

use crate::data::photos::{luma, Photo};
use crate::error::Error;

/// JPEG qualities swept for the reference curve.
pub const JPEG_QUALITIES: [u8; 16] = [3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 95];
/// WebP qualities swept for the reference curve.
pub const WEBP_QUALITIES: [u8; 14] = [0, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95];

/// One coded image: the file's bytes and the decoded picture (same channels as the input).
#[derive(Clone, Debug)]
pub struct Coded {
    /// Bytes of the whole file.
    pub bytes: usize,
    /// The picture decoded from those bytes.
    pub decoded: Photo,
}

fn codec_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what}: {e}"))
}

/// `photo` as libjpeg-turbo's `cjpeg -optimize` writes it at `quality`: greyscale JPEG for a
/// grey photo, 4:2:0 YCbCr for colour.
pub fn jpeg(photo: &Photo, quality: u8) -> Result<Coded, Error> {
    use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};
    let (format, subsamp) = match photo.channels {
        1 => (PixelFormat::GRAY, Subsamp::Gray),
        3 => (PixelFormat::RGB, Subsamp::Sub2x2),
        c => return Err(Error::Invalid(format!("JPEG reference: {c} channels"))),
    };
    let mut c = Compressor::new().map_err(|e| codec_error("libjpeg-turbo", e))?;
    c.set_quality(i32::from(quality.clamp(1, 100)))
        .and_then(|()| c.set_subsamp(subsamp))
        .and_then(|()| c.set_optimize(true))
        .map_err(|e| codec_error("libjpeg-turbo", e))?;
    let image = Image {
        pixels: photo.pixels.as_slice(),
        width: photo.width,
        pitch: photo.width * photo.channels,
        height: photo.height,
        format,
    };
    let file = c
        .compress_to_vec(image)
        .map_err(|e| codec_error("libjpeg-turbo", e))?;
    let out = turbojpeg::decompress(&file, format).map_err(|e| codec_error("libjpeg-turbo", e))?;
    Ok(Coded {
        bytes: file.len(),
        decoded: Photo {
            width: out.width,
            height: out.height,
            channels: photo.channels,
            pixels: out.pixels,
        },
    })
}

/// `photo` as libwebp's `cwebp -m 6 -q quality` writes it (lossy, 4:2:0; a grey photo goes in
/// as equal R, G and B and comes back as its luma).
pub fn webp(photo: &Photo, quality: u8) -> Result<Coded, Error> {
    let rgb: Vec<u8> = match photo.channels {
        1 => photo.pixels.iter().flat_map(|&p| [p, p, p]).collect(),
        3 => photo.pixels.clone(),
        c => return Err(Error::Invalid(format!("WebP reference: {c} channels"))),
    };
    let (w, h) = (photo.width as u32, photo.height as u32);
    let mut config = webp::WebPConfig::new().map_err(|()| codec_error("libwebp", "no config"))?;
    config.quality = f32::from(quality.min(100));
    config.method = 6;
    let file = webp::Encoder::from_rgb(&rgb, w, h)
        .encode_advanced(&config)
        .map_err(|e| codec_error("libwebp", format!("{e:?}")))?;
    let decoded = webp::Decoder::new(&file)
        .decode()
        .ok_or_else(|| codec_error("libwebp", "cannot decode its own file"))?;
    let px: &[u8] = &decoded;
    let step = if decoded.is_alpha() { 4 } else { 3 };
    let pixels: Vec<u8> = match photo.channels {
        1 => px
            .chunks_exact(step)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect(),
        _ => px
            .chunks_exact(step)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
    };
    Ok(Coded {
        bytes: file.len(),
        decoded: Photo {
            width: decoded.width() as usize,
            height: decoded.height() as usize,
            channels: photo.channels,
            pixels,
        },
    })
}

/// PSNR (dB, peak 255) over all channels of two photos of the same size.
pub fn psnr(a: &Photo, b: &Photo) -> f64 {
    crate::metrics::psnr_u8(&a.pixels, &b.pixels)
}

/// PSNR (dB, peak 255) of the BT.601 luma of two photos.
pub fn psnr_luma(a: &Photo, b: &Photo) -> f64 {
    crate::metrics::psnr_u8(&a.to_gray().pixels, &b.to_gray().pixels)
}

/// The MS-SSIM weights of Wang, Simoncelli and Bovik (2003), finest scale first.
const MS_WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];

/// Mean SSIM and mean contrast-structure term of one channel (`rows × cols`, values 0–255),
/// Gaussian window 11, σ 1.5, valid region.
fn ssim_cs(a: &[f64], b: &[f64], rows: usize, cols: usize) -> (f64, f64) {
    const K: usize = 11;
    let g: Vec<f64> = {
        let w: Vec<f64> = (0..K)
            .map(|i| (-((i as f64 - 5.0).powi(2)) / 4.5).exp())
            .collect();
        let s: f64 = w.iter().sum();
        w.into_iter().map(|v| v / s).collect()
    };
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    // Separable filtering of a, b, a², b², ab: horizontal pass, then vertical.
    let oc = cols + 1 - K;
    let or = rows + 1 - K;
    let mut h = vec![[0f64; 5]; rows * oc];
    for r in 0..rows {
        for c in 0..oc {
            let mut acc = [0f64; 5];
            for (k, &w) in g.iter().enumerate() {
                let (x, y) = (a[r * cols + c + k], b[r * cols + c + k]);
                acc[0] += w * x;
                acc[1] += w * y;
                acc[2] += w * x * x;
                acc[3] += w * y * y;
                acc[4] += w * x * y;
            }
            h[r * oc + c] = acc;
        }
    }
    let (mut ssim, mut cs) = (0f64, 0f64);
    for r in 0..or {
        for c in 0..oc {
            let mut m = [0f64; 5];
            for (k, &w) in g.iter().enumerate() {
                let v = h[(r + k) * oc + c];
                for j in 0..5 {
                    m[j] += w * v[j];
                }
            }
            let (va, vb) = (m[2] - m[0] * m[0], m[3] - m[1] * m[1]);
            let cov = m[4] - m[0] * m[1];
            let csv = (2.0 * cov + c2) / (va + vb + c2);
            cs += csv;
            ssim += csv * (2.0 * m[0] * m[1] + c1) / (m[0] * m[0] + m[1] * m[1] + c1);
        }
    }
    let n = (or * oc) as f64;
    (ssim / n, cs / n)
}

fn halve(x: &[f64], rows: usize, cols: usize) -> (Vec<f64>, usize, usize) {
    let (r2, c2) = (rows / 2, cols / 2);
    let mut out = vec![0f64; r2 * c2];
    for r in 0..r2 {
        for c in 0..c2 {
            let i = 2 * r * cols + 2 * c;
            out[r * c2 + c] = (x[i] + x[i + 1] + x[i + cols] + x[i + cols + 1]) / 4.0;
        }
    }
    (out, r2, c2)
}

/// MS-SSIM (Wang et al. 2003, five scales, 2×2 average between scales) of two photos of the
/// same size, averaged over channels. Images too small for five scales use as many as fit
/// (the weights renormalised); `NaN` below 11 pixels a side.
pub fn ms_ssim(a: &Photo, b: &Photo) -> f64 {
    let (rows, cols, ch) = (a.height, a.width, a.channels);
    if rows < 11 || cols < 11 || b.pixels.len() != a.pixels.len() {
        return f64::NAN;
    }
    let mut total = 0f64;
    for c in 0..ch {
        let plane = |p: &Photo| -> Vec<f64> {
            p.pixels
                .iter()
                .skip(c)
                .step_by(ch)
                .map(|&v| f64::from(v))
                .collect()
        };
        let (mut x, mut y, mut r, mut w) = (plane(a), plane(b), rows, cols);
        let mut parts = Vec::new();
        for scale in 0..MS_WEIGHTS.len() {
            let (s, cs) = ssim_cs(&x, &y, r, w);
            parts.push((s, cs));
            if scale + 1 == MS_WEIGHTS.len() || r / 2 < 11 || w / 2 < 11 {
                break;
            }
            (x, _, _) = halve(&x, r, w);
            let (yy, r2, w2) = halve(&y, r, w);
            (y, r, w) = (yy, r2, w2);
        }
        let weights = &MS_WEIGHTS[..parts.len()];
        let norm: f64 = weights.iter().sum();
        let last = parts.len() - 1;
        let mut v = 1f64;
        for (i, (&(s, cs), &wt)) in parts.iter().zip(weights).enumerate() {
            let term = if i == last { s } else { cs };
            v *= term.max(0.0).powf(wt / norm);
        }
        total += v;
    }
    total / ch as f64
}

/// A rate–distortion point: mean bits per pixel and mean quality over a set of images.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Bits per pixel (file bytes × 8 / pixels), averaged over images.
    pub bpp: f64,
    /// PSNR in dB (RGB for colour, luma for grey), averaged over images.
    pub psnr: f64,
}

/// Least-squares polynomial of degree `deg` through `(x, y)`: coefficients, lowest first.
fn polyfit(x: &[f64], y: &[f64], deg: usize) -> Vec<f64> {
    let n = deg + 1;
    let mut a = vec![vec![0f64; n + 1]; n];
    for (&xi, &yi) in x.iter().zip(y) {
        let pw: Vec<f64> = (0..2 * n).map(|k| xi.powi(k as i32)).collect();
        for r in 0..n {
            for c in 0..n {
                a[r][c] += pw[r + c];
            }
            a[r][n] += pw[r] * yi;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        let d = a[col][col];
        if d.abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / d;
                for (v, &p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    (0..n)
        .map(|i| {
            if a[i][i].abs() < 1e-300 {
                0.0
            } else {
                a[i][n] / a[i][i]
            }
        })
        .collect()
}

/// ∫ from `lo` to `hi` of the polynomial `p`.
fn integrate(p: &[f64], lo: f64, hi: f64) -> f64 {
    let f = |x: f64| {
        p.iter()
            .enumerate()
            .map(|(k, &c)| c * x.powi(k as i32 + 1) / (k as f64 + 1.0))
            .sum::<f64>()
    };
    f(hi) - f(lo)
}

/// The points of `curve` whose rate lies in `[lo, hi]` bpp, sorted by rate.
pub fn within(curve: &[Point], lo: f64, hi: f64) -> Vec<Point> {
    let mut v: Vec<Point> = curve
        .iter()
        .copied()
        .filter(|p| p.bpp >= lo && p.bpp <= hi && p.bpp > 0.0 && p.psnr.is_finite())
        .collect();
    v.sort_by(|a, b| a.bpp.total_cmp(&b.bpp));
    v
}

fn degree(n: usize) -> usize {
    n.saturating_sub(1).min(3)
}

/// The mean gap `test − anchor` of cubic fits of `y` against `x` over the `x` range both curves
/// cover; `None` with fewer than two points a curve or no overlap.
fn bd_gap(
    anchor: &[Point],
    test: &[Point],
    x: fn(&Point) -> f64,
    y: fn(&Point) -> f64,
) -> Option<f64> {
    if anchor.len() < 2 || test.len() < 2 {
        return None;
    }
    let fit = |c: &[Point]| {
        let xs: Vec<f64> = c.iter().map(x).collect();
        let ys: Vec<f64> = c.iter().map(y).collect();
        let lo = xs.iter().copied().fold(f64::MAX, f64::min);
        let hi = xs.iter().copied().fold(f64::MIN, f64::max);
        (polyfit(&xs, &ys, degree(c.len())), lo, hi)
    };
    let (pa, la, ha) = fit(anchor);
    let (pt, lt, ht) = fit(test);
    let (lo, hi) = (la.max(lt), ha.min(ht));
    (hi > lo).then(|| (integrate(&pt, lo, hi) - integrate(&pa, lo, hi)) / (hi - lo))
}

/// Bjøntegaard delta rate of `test` against `anchor` in percent (negative: `test` needs fewer
/// bits for the same PSNR): cubic fits of log-rate against PSNR, integrated over the PSNR range
/// both curves cover. `None` when a curve has fewer than two points or the ranges do not
/// overlap.
pub fn bd_rate(anchor: &[Point], test: &[Point]) -> Option<f64> {
    bd_gap(anchor, test, |p| p.psnr, |p| p.bpp.ln()).map(|avg| (avg.exp() - 1.0) * 100.0)
}

/// Bjøntegaard delta PSNR of `test` against `anchor` in dB (positive: `test` is better), over
/// the log-rate range both curves cover.
pub fn bd_psnr(anchor: &[Point], test: &[Point]) -> Option<f64> {
    bd_gap(anchor, test, |p| p.bpp.ln(), |p| p.psnr)
}

/// PSNR of `curve` at `bpp`, interpolated linearly in log-rate between its neighbouring points;
/// `None` outside the curve's range.
pub fn psnr_at(curve: &[Point], bpp: f64) -> Option<f64> {
    let c = within(curve, 0.0, f64::MAX);
    let x = bpp.ln();
    c.windows(2).find_map(|w| {
        let (a, b) = (w[0], w[1]);
        let (xa, xb) = (a.bpp.ln(), b.bpp.ln());
        (x >= xa && x <= xb).then(|| {
            if xb - xa < 1e-12 {
                a.psnr.max(b.psnr)
            } else {
                a.psnr + (b.psnr - a.psnr) * (x - xa) / (xb - xa)
            }
        })
    })
}

/// The points of `curve` not beaten by another one (higher PSNR at no more bits), by rate.
pub fn envelope(curve: &[Point]) -> Vec<Point> {
    let mut c = within(curve, 0.0, f64::MAX);
    let mut out: Vec<Point> = Vec::new();
    c.sort_by(|a, b| a.bpp.total_cmp(&b.bpp));
    for p in c {
        while out
            .last()
            .is_some_and(|q| q.psnr <= p.psnr && q.bpp >= p.bpp)
        {
            out.pop();
        }
        if out.last().is_none_or(|q| p.psnr > q.psnr) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize, c: usize) -> Photo {
        let pixels = (0..w * h * c)
            .map(|i| {
                let p = i / c;
                ((p % w) * 7 + (p / w) * 3 + (i % c) * 40) as u8
            })
            .collect();
        Photo {
            width: w,
            height: h,
            channels: c,
            pixels,
        }
    }

    #[test]
    fn jpeg_and_webp_get_better_with_quality() {
        for c in [1, 3] {
            let p = gradient(67, 45, c);
            let lo = jpeg(&p, 10).unwrap();
            let hi = jpeg(&p, 90).unwrap();
            assert_eq!(lo.decoded.pixels.len(), p.pixels.len());
            assert!(hi.bytes > lo.bytes);
            assert!(psnr(&p, &hi.decoded) > psnr(&p, &lo.decoded));
            let lo = webp(&p, 5).unwrap();
            let hi = webp(&p, 90).unwrap();
            assert_eq!(hi.decoded.pixels.len(), p.pixels.len());
            assert!(psnr(&p, &hi.decoded) > psnr(&p, &lo.decoded) + 1.0);
        }
    }

    #[test]
    fn ms_ssim_is_one_for_identical_images_and_falls_with_noise() {
        let p = gradient(200, 190, 1);
        assert!((ms_ssim(&p, &p) - 1.0).abs() < 1e-9);
        let mut rng = crate::rng::seeded(3);
        let mut noisy = p.clone();
        for v in &mut noisy.pixels {
            *v = v.saturating_add((rand::Rng::random::<u8>(&mut rng)) % 40);
        }
        let m = ms_ssim(&p, &noisy);
        assert!(m < 0.99 && m > 0.0, "{m}");
        assert!(ms_ssim(&gradient(8, 8, 1), &gradient(8, 8, 1)).is_nan());
    }

    #[test]
    fn bd_rate_of_a_curve_needing_half_the_bits_is_minus_fifty_percent() {
        let anchor: Vec<Point> = (1..=6)
            .map(|i| {
                let bpp = 0.1 * f64::from(i);
                Point {
                    bpp,
                    psnr: 30.0 + 6.0 * bpp.log2(),
                }
            })
            .collect();
        let half: Vec<Point> = anchor
            .iter()
            .map(|p| Point {
                bpp: p.bpp / 2.0,
                psnr: p.psnr,
            })
            .collect();
        let r = bd_rate(&anchor, &half).unwrap();
        assert!((r + 50.0).abs() < 1e-6, "{r}");
        // Half the bits at 6 dB per doubling is +6 dB at the same rate.
        let d = bd_psnr(&anchor, &half).unwrap();
        assert!((d - 6.0).abs() < 1e-6, "{d}");
        assert!(bd_rate(&anchor, &anchor[..1]).is_none());
        let p = psnr_at(&anchor, 0.25).unwrap();
        assert!(p > anchor[1].psnr && p < anchor[2].psnr);
        assert!(psnr_at(&anchor, 0.05).is_none());
    }

    #[test]
    fn envelope_drops_dominated_points() {
        let c = [
            Point {
                bpp: 0.2,
                psnr: 25.0,
            },
            Point {
                bpp: 0.3,
                psnr: 24.0,
            },
            Point {
                bpp: 0.4,
                psnr: 27.0,
            },
        ];
        let e = envelope(&c);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].bpp, 0.4);
    }
}
