//! Classical image models the VAE is compared against: orthonormal DCT and Haar bases, Lasso by
//! FISTA (sparse recovery and, with the identity operator, soft-threshold denoising), top-k
//! transform coding, PCA, and JPEG (the `image` crate's encoder) with its header counted apart.
//!
//! Every image here is 28×28, row-major, pixels in [0, 1] as `f32`.

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::Error;

const N: usize = IMAGE_SIDE;

/// A separable orthonormal 2-D basis: coefficients `C = M·X·Mᵀ` for a 28×28 matrix `M` with
/// `M·Mᵀ = I`, so the inverse is `X = Mᵀ·C·M`.
#[derive(Clone, Debug)]
pub struct Basis {
    /// Short name for tables: `dct` or `haar`.
    pub name: &'static str,
    m: Vec<f32>,
}

impl Basis {
    /// The orthonormal DCT-II: `M[k][n] = s_k·cos(π(2n+1)k / 2N)`, `s_0 = √(1/N)`, else `√(2/N)`.
    pub fn dct() -> Self {
        let mut m = vec![0.0f32; N * N];
        for k in 0..N {
            let s = if k == 0 {
                (1.0 / N as f64).sqrt()
            } else {
                (2.0 / N as f64).sqrt()
            };
            for n in 0..N {
                let a = std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * N) as f64;
                m[k * N + n] = (s * a.cos()) as f32;
            }
        }
        Basis { name: "dct", m }
    }

    /// The orthonormal Haar wavelet, two levels (28 → 14 → 7 averages), applied separably to rows
    /// and columns. Row 0 of `M` is the coarsest average.
    pub fn haar() -> Self {
        // One level on the first `len` entries: averages first, then details.
        let level = |len: usize| {
            let mut l = vec![0.0f64; N * N];
            let h = std::f64::consts::FRAC_1_SQRT_2;
            for i in 0..len / 2 {
                l[i * N + 2 * i] = h;
                l[i * N + 2 * i + 1] = h;
                l[(len / 2 + i) * N + 2 * i] = h;
                l[(len / 2 + i) * N + 2 * i + 1] = -h;
            }
            for i in len..N {
                l[i * N + i] = 1.0;
            }
            l
        };
        let (l1, l2) = (level(N), level(N / 2));
        let mut m = vec![0.0f32; N * N];
        for r in 0..N {
            for c in 0..N {
                m[r * N + c] = (0..N).map(|k| l2[r * N + k] * l1[k * N + c]).sum::<f64>() as f32;
            }
        }
        Basis { name: "haar", m }
    }

    /// Both bases, DCT first.
    pub fn all() -> [Basis; 2] {
        [Basis::dct(), Basis::haar()]
    }

    /// `M·X·Mᵀ`: image → coefficients.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        self.sandwich(x, out, false);
    }

    /// `Mᵀ·C·M`: coefficients → image.
    pub fn inverse(&self, c: &[f32], out: &mut [f32]) {
        self.sandwich(c, out, true);
    }

    fn sandwich(&self, x: &[f32], out: &mut [f32], transpose: bool) {
        let m = |r: usize, c: usize| {
            if transpose {
                self.m[c * N + r]
            } else {
                self.m[r * N + c]
            }
        };
        let mut tmp = [0.0f32; IMAGE_PIXELS];
        // tmp = M·X
        for r in 0..N {
            for k in 0..N {
                let a = m(r, k);
                if a == 0.0 {
                    continue;
                }
                let row = &x[k * N..(k + 1) * N];
                for (t, &v) in tmp[r * N..(r + 1) * N].iter_mut().zip(row) {
                    *t += a * v;
                }
            }
        }
        // out = tmp·Mᵀ
        for r in 0..N {
            for c in 0..N {
                out[r * N + c] = (0..N).map(|k| tmp[r * N + k] * m(c, k)).sum();
            }
        }
    }
}

/// A linear measurement operator `y = A·x` on one image.
pub trait Operator {
    /// Number of measurements.
    fn rows(&self) -> usize;
    /// `y = A·x`.
    fn apply(&self, x: &[f32], y: &mut [f32]);
    /// `out = Aᵀ·r`.
    fn adjoint(&self, r: &[f32], out: &mut [f32]);
    /// `‖A‖²` (largest eigenvalue of `AᵀA`), the Lipschitz constant of the data term's gradient.
    fn norm_sq(&self) -> f32 {
        power_norm_sq(self)
    }
}

/// `‖A‖²` by power iteration on `AᵀA` (50 steps from a fixed, non-degenerate start).
pub fn power_norm_sq(op: &(impl Operator + ?Sized)) -> f32 {
    let mut v: Vec<f32> = (0..IMAGE_PIXELS)
        .map(|i| 1.0 + ((i * 7919) % 97) as f32 / 97.0)
        .collect();
    let mut y = vec![0.0; op.rows()];
    let mut w = vec![0.0; IMAGE_PIXELS];
    let mut est = 1.0f32;
    for _ in 0..50 {
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-20);
        v.iter_mut().for_each(|a| *a /= norm);
        op.apply(&v, &mut y);
        op.adjoint(&y, &mut w);
        est = v.iter().zip(&w).map(|(a, b)| a * b).sum();
        std::mem::swap(&mut v, &mut w);
    }
    est.max(1e-12)
}

/// Soft threshold: `sign(v)·max(|v| − t, 0)`.
pub fn soft(v: f32, t: f32) -> f32 {
    if v > t {
        v - t
    } else if v < -t {
        v + t
    } else {
        0.0
    }
}

/// Lasso in a basis, by FISTA (Beck & Teboulle 2009):
/// `argmin_c ½‖A·Ψᵀc − y‖² + α‖c‖₁` (the first coefficient, the mean, is not penalised);
/// returns the image `Ψᵀc` clipped to [0, 1].
///
/// With the identity operator one step is exact: soft-thresholding of the noisy image's
/// coefficients, the classical transform-domain denoiser.
pub fn lasso(
    op: &dyn Operator,
    basis: &Basis,
    y: &[f32],
    alpha: f32,
    iters: usize,
    lipschitz: f32,
) -> Vec<f32> {
    let step = 1.0 / lipschitz;
    let mut c = vec![0.0f32; IMAGE_PIXELS];
    let mut v = c.clone();
    let mut c_new = c.clone();
    let mut x = vec![0.0f32; IMAGE_PIXELS];
    let mut g = vec![0.0f32; IMAGE_PIXELS];
    let mut r = vec![0.0f32; op.rows()];
    let mut t = 1.0f32;
    for _ in 0..iters.max(1) {
        basis.inverse(&v, &mut x);
        op.apply(&x, &mut r);
        r.iter_mut().zip(y).for_each(|(a, b)| *a -= b);
        op.adjoint(&r, &mut x);
        basis.forward(&x, &mut g);
        for (i, ((cn, &vi), &gi)) in c_new.iter_mut().zip(&v).zip(&g).enumerate() {
            let u = vi - step * gi;
            *cn = if i == 0 { u } else { soft(u, alpha * step) };
        }
        let t_new = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        let mom = (t - 1.0) / t_new;
        for ((vi, &cn), &co) in v.iter_mut().zip(&c_new).zip(&c) {
            *vi = cn + mom * (cn - co);
        }
        std::mem::swap(&mut c, &mut c_new);
        t = t_new;
    }
    basis.inverse(&c, &mut x);
    x.iter_mut().for_each(|p| *p = p.clamp(0.0, 1.0));
    x
}

/// Uniform 8-bit quantizer per coefficient position, over ranges fitted on training data.
#[derive(Clone, Debug)]
pub struct RangeQuantizer {
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl RangeQuantizer {
    /// Fits `[min, max]` of each of `dim` positions over `rows` (each `dim` long).
    pub fn fit<'a>(dim: usize, rows: impl Iterator<Item = &'a [f32]>) -> Self {
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        for r in rows {
            for (j, &v) in r.iter().enumerate().take(dim) {
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        for j in 0..dim {
            let span = hi[j] - lo[j];
            if span.is_nan() || span <= 1e-6 {
                let mid = if lo[j].is_finite() { lo[j] } else { 0.0 };
                lo[j] = mid - 1e-3;
                hi[j] = mid + 1e-3;
            }
        }
        RangeQuantizer { lo, hi }
    }

    /// Value at position `j` → nearest of 256 levels → its value.
    pub fn round_trip(&self, j: usize, v: f32) -> f32 {
        let (lo, hi) = (self.lo[j], self.hi[j]);
        let q = ((v - lo) / (hi - lo) * 255.0).round().clamp(0.0, 255.0);
        lo + q / 255.0 * (hi - lo)
    }
}

/// `⌈log₂ C(n, k)⌉`: bits to say which `k` of `n` positions are kept.
pub fn subset_bits(n: usize, k: usize) -> u32 {
    let k = k.min(n);
    let bits: f64 = (0..k)
        .map(|i| ((n - i) as f64 / (i + 1) as f64).log2())
        .sum();
    // The sum of logs is off by a few ulps where C(n, k) is a power of two (k = 0 or n).
    (bits - 1e-9).ceil().max(0.0) as u32
}

/// Top-k transform coding in `basis`: keep the `k` largest-magnitude coefficients of each image,
/// each quantized to 8 bits by `q`, plus which positions they are.
///
/// Returns the decoded image and its bit count (`8k + ⌈log₂ C(784, k)⌉`).
pub fn top_k(basis: &Basis, q: &RangeQuantizer, x: &[f32], k: usize) -> (Vec<f32>, u32) {
    let mut c = vec![0.0f32; IMAGE_PIXELS];
    basis.forward(x, &mut c);
    let mut order: Vec<usize> = (0..IMAGE_PIXELS).collect();
    order.sort_by(|&a, &b| c[b].abs().total_cmp(&c[a].abs()));
    let mut kept = vec![0.0f32; IMAGE_PIXELS];
    for &j in order.iter().take(k) {
        kept[j] = q.round_trip(j, c[j]);
    }
    let mut out = vec![0.0f32; IMAGE_PIXELS];
    basis.inverse(&kept, &mut out);
    out.iter_mut().for_each(|p| *p = p.clamp(0.0, 1.0));
    (out, 8 * k as u32 + subset_bits(IMAGE_PIXELS, k))
}

/// Principal component analysis of 28×28 images, with 8-bit coefficients.
#[derive(Clone, Debug)]
pub struct Pca {
    mean: Vec<f32>,
    /// Components, strongest first, each 784 long.
    components: Vec<Vec<f32>>,
    quant: RangeQuantizer,
}

impl Pca {
    /// Fits the mean and the `k_max` strongest components on `images` (each 784 pixels), and the
    /// 8-bit coefficient ranges on the same images.
    pub fn fit(images: &[f32], k_max: usize) -> Result<Self, Error> {
        use nalgebra::DMatrix;
        let n = images.len() / IMAGE_PIXELS;
        if n < 2 {
            return Err(Error::Invalid("PCA needs at least two images".into()));
        }
        let mut mean = vec![0.0f64; IMAGE_PIXELS];
        for img in images.chunks_exact(IMAGE_PIXELS) {
            mean.iter_mut()
                .zip(img)
                .for_each(|(m, &p)| *m += f64::from(p));
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred = DMatrix::<f64>::from_fn(n, IMAGE_PIXELS, |i, j| {
            f64::from(images[i * IMAGE_PIXELS + j]) - mean[j]
        });
        let cov = (centred.transpose() * &centred) / (n as f64);
        let eig = cov.symmetric_eigen();
        let mut order: Vec<usize> = (0..IMAGE_PIXELS).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let k_max = k_max.min(IMAGE_PIXELS);
        let components: Vec<Vec<f32>> = order[..k_max]
            .iter()
            .map(|&j| {
                eig.eigenvectors
                    .column(j)
                    .iter()
                    .map(|&v| v as f32)
                    .collect()
            })
            .collect();
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let mut pca = Pca {
            mean,
            components,
            quant: RangeQuantizer::fit(0, std::iter::empty::<&[f32]>()),
        };
        let coefs: Vec<Vec<f32>> = images
            .chunks_exact(IMAGE_PIXELS)
            .map(|x| pca.project(x, k_max))
            .collect();
        pca.quant = RangeQuantizer::fit(k_max, coefs.iter().map(Vec::as_slice));
        Ok(pca)
    }

    /// Components fitted.
    pub fn k_max(&self) -> usize {
        self.components.len()
    }

    fn project(&self, x: &[f32], k: usize) -> Vec<f32> {
        self.components[..k]
            .iter()
            .map(|u| {
                u.iter()
                    .zip(x.iter().zip(&self.mean))
                    .map(|(a, (p, m))| a * (p - m))
                    .sum()
            })
            .collect()
    }

    /// Encodes `x` with `k` coefficients of 8 bits and decodes it: the reconstruction (clipped to
    /// [0, 1]) and its bit count `8k`.
    pub fn code(&self, x: &[f32], k: usize) -> (Vec<f32>, u32) {
        let k = k.min(self.k_max());
        let mut out = self.mean.clone();
        for (j, c) in self.project(x, k).into_iter().enumerate() {
            let c = self.quant.round_trip(j, c);
            out.iter_mut()
                .zip(&self.components[j])
                .for_each(|(o, &u)| *o += c * u);
        }
        out.iter_mut().for_each(|p| *p = p.clamp(0.0, 1.0));
        (out, 8 * k as u32)
    }
}

/// A JPEG file of one image and how its bits split.
#[derive(Clone, Debug)]
pub struct JpegCoded {
    /// The decoded image.
    pub image: Vec<u8>,
    /// Bits of the whole file.
    pub file_bits: u32,
    /// Bits of everything but the entropy-coded scan (markers, quantization and Huffman tables,
    /// frame and scan headers, end of image).
    pub header_bits: u32,
}

/// Encodes a 28×28 grayscale image as baseline JPEG at `quality` (1–100) with the `image`
/// crate, decodes it back, and splits the file's bits into header and scan data.
pub fn jpeg(pixels: &[u8], quality: u8) -> Result<JpegCoded, Error> {
    use image::codecs::jpeg::JpegEncoder;
    let mut file = Vec::new();
    JpegEncoder::new_with_quality(&mut file, quality)
        .encode(pixels, N as u32, N as u32, image::ExtendedColorType::L8)
        .map_err(|e| Error::Invalid(format!("JPEG encoder: {e}")))?;
    let decoded = image::load_from_memory_with_format(&file, image::ImageFormat::Jpeg)
        .map_err(|e| Error::Invalid(format!("JPEG decoder: {e}")))?
        .to_luma8()
        .into_raw();
    let scan = jpeg_scan_bytes(&file)
        .ok_or_else(|| Error::Invalid("JPEG encoder wrote a file without one scan".into()))?;
    Ok(JpegCoded {
        image: decoded,
        file_bits: 8 * file.len() as u32,
        header_bits: 8 * (file.len() - scan) as u32,
    })
}

/// Length of the entropy-coded data of a single-scan JPEG file: the bytes between the end of
/// the start-of-scan segment and the end-of-image marker.
pub fn jpeg_scan_bytes(file: &[u8]) -> Option<usize> {
    if file.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut pos = 2;
    loop {
        if *file.get(pos)? != 0xFF {
            return None;
        }
        let marker = *file.get(pos + 1)?;
        let len = usize::from(u16::from_be_bytes([
            *file.get(pos + 2)?,
            *file.get(pos + 3)?,
        ]));
        let end = pos + 2 + len;
        if marker == 0xDA {
            let eoi = file.len().checked_sub(2)?;
            if file.get(eoi..)? != [0xFF, 0xD9] || end > eoi {
                return None;
            }
            return Some(eoi - end);
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_image(seed: usize) -> Vec<f32> {
        (0..IMAGE_PIXELS)
            .map(|i| (((i * 2_654_435_761 + seed * 97) % 1000) as f32) / 1000.0)
            .collect()
    }

    #[test]
    fn bases_are_orthonormal() {
        for b in Basis::all() {
            let x = test_image(1);
            let (mut c, mut y) = (vec![0.0; IMAGE_PIXELS], vec![0.0; IMAGE_PIXELS]);
            b.forward(&x, &mut c);
            b.inverse(&c, &mut y);
            let err = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{}: inverse(forward(x)) off by {err}", b.name);
            let ex: f32 = x.iter().map(|v| v * v).sum();
            let ec: f32 = c.iter().map(|v| v * v).sum();
            assert!(
                (ex - ec).abs() / ex < 1e-4,
                "{}: energy {ex} vs {ec}",
                b.name
            );
        }
    }

    #[test]
    fn subset_bits_counts_combinations() {
        assert_eq!(subset_bits(784, 0), 0);
        assert_eq!(subset_bits(784, 1), 10); // log2 784 = 9.61
        assert_eq!(subset_bits(4, 2), 3); // C(4,2) = 6
        assert_eq!(subset_bits(784, 784), 0);
    }

    #[test]
    fn jpeg_header_and_scan_add_up() {
        let px: Vec<u8> = test_image(3).iter().map(|v| (v * 255.0) as u8).collect();
        let lo = jpeg(&px, 10).unwrap();
        let hi = jpeg(&px, 90).unwrap();
        assert!(lo.header_bits < lo.file_bits && hi.header_bits < hi.file_bits);
        assert!(hi.file_bits - hi.header_bits > lo.file_bits - lo.header_bits);
        assert_eq!(lo.image.len(), IMAGE_PIXELS);
        assert_eq!(jpeg_scan_bytes(&[0xFF, 0xD8, 0x00]), None);
        assert_eq!(jpeg_scan_bytes(&[]), None);
    }
}
