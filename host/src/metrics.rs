//! Image quality metrics and pixel conversions, one implementation each: PSNR (float and
//! uint8 pixels), SSIM, and the f32 → u8 rounding every figure and codec uses.

/// Pixels in [0, 1] → uint8, rounded to nearest and clamped.
pub fn to_u8(x: &[f32]) -> Vec<u8> {
    x.iter().map(|&v| pixel_u8(v)).collect()
}

/// One pixel in [0, 1] → uint8, rounded to nearest and clamped.
pub fn pixel_u8(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// uint8 pixels → [0, 1].
pub fn to_f32(x: &[u8]) -> Vec<f32> {
    x.iter().map(|&p| f32::from(p) / 255.0).collect()
}

/// Mean squared error of two equally long sequences (0 for empty ones).
fn mse(a: impl Iterator<Item = f64>, b: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (x, y) in a.zip(b) {
        sum += (x - y).powi(2);
        n += 1;
    }
    sum / n.max(1) as f64
}

/// PSNR in dB of `rec` against `orig`, pixels in [0, 1] (peak 1). The MSE is floored at 1e-10,
/// so identical images give 100 dB rather than infinity.
pub fn psnr(orig: &[f32], rec: &[f32]) -> f64 {
    let e = mse(
        orig.iter().map(|&v| f64::from(v)),
        rec.iter().map(|&v| f64::from(v)),
    );
    10.0 * (1.0 / e.max(1e-10)).log10()
}

/// PSNR in dB between two uint8 images (peak 255); 99 dB for identical images.
pub fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    let e = mse(
        a.iter().map(|&v| f64::from(v)),
        b.iter().map(|&v| f64::from(v)),
    );
    if e == 0.0 {
        return 99.0;
    }
    10.0 * (255.0f64 * 255.0 / e).log10()
}

/// SSIM of two `rows × cols` images with pixels in [0, 1]: Gaussian window of 11 taps, σ 1.5,
/// over the valid region (no padding), C1 = 0.01², C2 = 0.03² (Wang et al. 2004).
pub fn ssim(a: &[f32], b: &[f32], rows: usize, cols: usize) -> f64 {
    const K: usize = 11;
    if rows < K || cols < K {
        return f64::NAN;
    }
    let g: Vec<f64> = {
        let w: Vec<f64> = (0..K)
            .map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
            .collect();
        let s: f64 = w.iter().sum();
        w.into_iter().map(|v| v / s).collect()
    };
    // Separable filter of the five maps a, b, a², b², ab over the valid region.
    let (or, oc) = (rows - K + 1, cols - K + 1);
    let maps: [Box<dyn Fn(usize) -> f64>; 5] = [
        Box::new(|i| f64::from(a[i])),
        Box::new(|i| f64::from(b[i])),
        Box::new(|i| f64::from(a[i]).powi(2)),
        Box::new(|i| f64::from(b[i]).powi(2)),
        Box::new(|i| f64::from(a[i]) * f64::from(b[i])),
    ];
    let mut filtered = vec![vec![0.0f64; or * oc]; 5];
    let mut tmp = vec![0.0f64; rows * oc];
    for (m, f) in maps.iter().enumerate() {
        for r in 0..rows {
            for c in 0..oc {
                tmp[r * oc + c] = (0..K).map(|k| g[k] * f(r * cols + c + k)).sum();
            }
        }
        for r in 0..or {
            for c in 0..oc {
                filtered[m][r * oc + c] = (0..K).map(|k| g[k] * tmp[(r + k) * oc + c]).sum();
            }
        }
    }
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    let [fa, fb, faa, fbb, fab] = &filtered[..] else {
        unreachable!("five maps")
    };
    for i in 0..or * oc {
        let (ma, mb) = (fa[i], fb[i]);
        let va = faa[i] - ma * ma;
        let vb = fbb[i] - mb * mb;
        let cov = fab[i] - ma * mb;
        total +=
            ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
    }
    total / (or * oc) as f64
}

/// Largest absolute difference between two equally long float sequences.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
