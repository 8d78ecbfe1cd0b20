//! Recovering images from sparse or corrupted measurements with the VAE's decoder as the prior
//! ("compressed sensing using generative models", Bora et al. 2017), next to the classical
//! Lasso baselines of [`crate::eval::classical`].
//!
//! Tasks: compressed sensing with `m` Gaussian measurements, inpainting with a random pixel mask
//! or a missing block, and denoising. The VAE estimate is `G(ẑ)` with
//! `ẑ = argmin_z ‖A·G(z) − y‖² + λ‖z‖²`, found by Adam from several starts (one from the encoder
//! applied to the back-projected measurements, the others from N(0, I)); the start with the lowest
//! final objective wins, per image.

use std::fmt;
use std::sync::Arc;

use burn::module::Param;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::eval::classical::{lasso, power_norm_sq, Basis, Operator};
use crate::inference::to_vec;
use crate::model::Vae;
use crate::rng::{normals, seeded, Rng64, SliceRandom};

/// A corruption of the image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Task {
    /// `m` measurements `y = A·x + e`, `A` with i.i.d. N(0, 1/m) entries (shared by all images),
    /// `e` Gaussian with standard deviation `noise` on the 0–255 pixel scale.
    Cs { m: usize, noise: f32 },
    /// A random share `missing` (0–1) of the pixels is lost (a new mask per image).
    Inpaint { missing: f32 },
    /// The central `side`×`side` block is lost.
    Block { side: usize },
    /// Additive Gaussian noise of standard deviation `sigma` on the 0–255 pixel scale.
    Denoise { sigma: f32 },
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Task::Cs { m, noise } if noise > 0.0 => write!(f, "cs m={m} noise={noise}"),
            Task::Cs { m, .. } => write!(f, "cs m={m}"),
            Task::Inpaint { missing } => write!(f, "inpaint {:.0}% missing", 100.0 * missing),
            Task::Block { side } => write!(f, "inpaint {side}x{side} block"),
            Task::Denoise { sigma } => write!(f, "denoise sigma={sigma}"),
        }
    }
}

impl Task {
    /// The tasks of the recovery table: CS at m = 25, 50, 100, 200; inpainting with 50, 80, 90%
    /// missing and a 12×12 block; denoising at σ = 25 and 50.
    pub fn table() -> Vec<Task> {
        let mut t: Vec<Task> = [25, 50, 100, 200]
            .into_iter()
            .map(|m| Task::Cs { m, noise: 0.0 })
            .collect();
        t.extend([0.5, 0.8, 0.9].map(|missing| Task::Inpaint { missing }));
        t.push(Task::Block { side: 12 });
        t.extend([25.0, 50.0].map(|sigma| Task::Denoise { sigma }));
        t
    }

    /// Checks the task's numbers.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |s: String| Err(crate::Error::Invalid(s));
        match *self {
            Task::Cs { m, noise }
                if m == 0 || m > 4 * IMAGE_PIXELS || noise.is_nan() || noise < 0.0 =>
            {
                bad(format!(
                    "cs: need 1 <= m <= {} and noise >= 0",
                    4 * IMAGE_PIXELS
                ))
            }
            Task::Inpaint { missing } if !(0.0..1.0).contains(&missing) => bad(format!(
                "inpaint: missing share {missing} must be in [0, 1)"
            )),
            Task::Block { side } if side == 0 || side >= IMAGE_SIDE => {
                bad(format!("block side {side} must be in 1..{IMAGE_SIDE}"))
            }
            Task::Denoise { sigma } if !(sigma > 0.0 && sigma < 1000.0) => {
                bad(format!("denoise: sigma {sigma} must be in (0, 1000)"))
            }
            _ => Ok(()),
        }
    }
}

/// A dense Gaussian measurement matrix, `m × 784`, row-major.
#[derive(Debug)]
pub struct Gaussian {
    m: usize,
    a: Vec<f32>,
    norm_sq: f32,
}

impl Gaussian {
    /// Entries i.i.d. N(0, 1/m) from `seed`.
    pub fn new(m: usize, seed: u64) -> Self {
        let s = 1.0 / (m as f32).sqrt();
        let a = normals(&mut seeded(seed), m * IMAGE_PIXELS)
            .into_iter()
            .map(|v| v * s)
            .collect();
        let mut g = Gaussian { m, a, norm_sq: 1.0 };
        g.norm_sq = power_norm_sq(&g);
        g
    }
}

impl Operator for Gaussian {
    fn rows(&self) -> usize {
        self.m
    }
    fn apply(&self, x: &[f32], y: &mut [f32]) {
        for (yi, row) in y.iter_mut().zip(self.a.chunks_exact(IMAGE_PIXELS)) {
            *yi = row.iter().zip(x).map(|(a, b)| a * b).sum();
        }
    }
    fn adjoint(&self, r: &[f32], out: &mut [f32]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        for (&ri, row) in r.iter().zip(self.a.chunks_exact(IMAGE_PIXELS)) {
            out.iter_mut().zip(row).for_each(|(o, &a)| *o += ri * a);
        }
    }
    fn norm_sq(&self) -> f32 {
        self.norm_sq // measured once in `Gaussian::new`
    }
}

/// The measurement operator of one observation.
#[derive(Clone, Debug)]
pub enum Measurement {
    /// `y = A·x`.
    Gaussian(Arc<Gaussian>),
    /// `y = x` where `keep` is true, nothing elsewhere (stored as 0 there).
    Mask(Vec<bool>),
    /// `y = x`.
    Identity,
}

impl Operator for Measurement {
    fn rows(&self) -> usize {
        match self {
            Measurement::Gaussian(g) => g.m,
            _ => IMAGE_PIXELS,
        }
    }
    fn apply(&self, x: &[f32], y: &mut [f32]) {
        match self {
            Measurement::Gaussian(g) => g.apply(x, y),
            Measurement::Mask(keep) => {
                for ((yi, &xi), &k) in y.iter_mut().zip(x).zip(keep) {
                    *yi = if k { xi } else { 0.0 };
                }
            }
            Measurement::Identity => y.copy_from_slice(x),
        }
    }
    fn adjoint(&self, r: &[f32], out: &mut [f32]) {
        match self {
            Measurement::Gaussian(g) => g.adjoint(r, out),
            Measurement::Mask(_) | Measurement::Identity => self.apply(r, out),
        }
    }
    fn norm_sq(&self) -> f32 {
        match self {
            Measurement::Gaussian(g) => g.norm_sq(),
            _ => 1.0,
        }
    }
}

/// One corrupted image: its operator and measurements.
#[derive(Clone, Debug)]
pub struct Observation {
    pub op: Measurement,
    pub y: Vec<f32>,
}

impl Observation {
    /// A picture of what was observed: `Aᵀy` for compressed sensing, the observed pixels with the
    /// lost ones at the mean of the observed ones for inpainting, the noisy image for denoising;
    /// clipped to [0, 1].
    pub fn back_projection(&self) -> Vec<f32> {
        let mut x = vec![0.0f32; IMAGE_PIXELS];
        match &self.op {
            Measurement::Mask(keep) => {
                let (sum, cnt) = self
                    .y
                    .iter()
                    .zip(keep)
                    .filter(|p| *p.1)
                    .fold((0.0f32, 0usize), |(s, c), (v, _)| (s + v, c + 1));
                let fill = if cnt > 0 { sum / cnt as f32 } else { 0.5 };
                for ((o, &v), &k) in x.iter_mut().zip(&self.y).zip(keep) {
                    *o = if k { v } else { fill };
                }
            }
            op => op.adjoint(&self.y, &mut x),
        }
        x.iter_mut().for_each(|p| *p = p.clamp(0.0, 1.0));
        x
    }
}

/// Corrupts `images` (each 784 pixels in [0, 1]) by `task`. The same `seed` gives the same
/// matrix, masks and noise.
pub fn observe(task: Task, images: &[f32], seed: u64) -> Vec<Observation> {
    let gaussian = match task {
        Task::Cs { m, .. } => Some(Arc::new(Gaussian::new(m, seed ^ 0xC5))),
        _ => None,
    };
    images
        .chunks_exact(IMAGE_PIXELS)
        .enumerate()
        .map(|(i, x)| {
            let mut rng = seeded(seed.wrapping_mul(0x9E37).wrapping_add(i as u64 + 1));
            let op = match task {
                Task::Cs { .. } => Measurement::Gaussian(gaussian.clone().expect("set for cs")),
                Task::Inpaint { missing } => {
                    // Exactly round(missing·784) pixels lost: a random permutation's prefix.
                    let lost = (missing * IMAGE_PIXELS as f32).round() as usize;
                    let mut order: Vec<usize> = (0..IMAGE_PIXELS).collect();
                    order.shuffle(&mut rng);
                    let mut keep = vec![true; IMAGE_PIXELS];
                    order[..lost].iter().for_each(|&j| keep[j] = false);
                    Measurement::Mask(keep)
                }
                Task::Block { side } => {
                    let start = (IMAGE_SIDE - side) / 2;
                    let range = start..start + side;
                    let keep = (0..IMAGE_PIXELS)
                        .map(|j| {
                            !(range.contains(&(j / IMAGE_SIDE))
                                && range.contains(&(j % IMAGE_SIDE)))
                        })
                        .collect();
                    Measurement::Mask(keep)
                }
                Task::Denoise { .. } => Measurement::Identity,
            };
            let mut y = vec![0.0f32; op.rows()];
            op.apply(x, &mut y);
            let sigma = match task {
                Task::Cs { noise, .. } => noise / 255.0,
                Task::Denoise { sigma } => sigma / 255.0,
                _ => 0.0,
            };
            if sigma > 0.0 {
                for (v, e) in y.iter_mut().zip(normals(&mut rng, op.rows())) {
                    *v += sigma * e;
                }
            }
            Observation { op, y }
        })
        .collect()
}

/// Settings of the VAE-prior search.
#[derive(Clone, Debug, Serialize)]
pub struct PriorOptions {
    /// Starts per image (the first from the encoder, the rest from N(0, I)).
    pub restarts: usize,
    /// Adam steps per start.
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of `‖z‖²`.
    pub lambda: f64,
    /// Seed of the random starts.
    pub seed: u64,
    /// Images optimised together (times `restarts` rows per batch).
    pub batch: usize,
}

impl Default for PriorOptions {
    fn default() -> Self {
        PriorOptions {
            restarts: 4,
            steps: 300,
            lr: 0.05,
            lambda: 0.01,
            seed: 0,
            batch: 64,
        }
    }
}

#[derive(Module, Debug)]
struct Code {
    z: Param<Tensor<2>>,
}

/// Recovers every observation with the VAE decoder as the prior. `model` must live on an
/// autodiff device (see [`crate::train_device`]); its weights are not changed. All
/// observations must come from one [`observe`] call (one task).
pub fn recover_vae(model: &Vae, obs: &[Observation], opts: &PriorOptions) -> Vec<Vec<f32>> {
    let model = model.clone().set_require_grad(false);
    let mut out = Vec::with_capacity(obs.len());
    let mut rng = seeded(opts.seed ^ 0x5EED);
    for chunk in obs.chunks(opts.batch.max(1)) {
        out.extend(recover_chunk(&model, chunk, opts, &mut rng));
    }
    out
}

fn recover_chunk(
    model: &Vae,
    obs: &[Observation],
    opts: &PriorOptions,
    rng: &mut Rng64,
) -> Vec<Vec<f32>> {
    let device = model.enc1.weight.val().device();
    let latent = model.fc_mu.weight.val().dims()[1];
    let (b, r) = (obs.len(), opts.restarts.max(1));
    let n = b * r;
    let rows = obs[0].op.rows();
    // Row `k·b + i` is start `k` of image `i`.
    let repeat = |per: &dyn Fn(&Observation) -> Vec<f32>, width: usize| {
        let one: Vec<f32> = obs.iter().flat_map(per).collect();
        let all: Vec<f32> = (0..r).flat_map(|_| one.iter().copied()).collect();
        Tensor::<2>::from_data(TensorData::new(all, [n, width]), &device)
    };
    let y = repeat(&|o| o.y.clone(), rows);
    // Either a projection (Aᵀ, `[784, m]`) or a 0/1 mask (`[n, 784]`).
    let (proj, keep) = match &obs[0].op {
        Measurement::Gaussian(g) => {
            let mut at = vec![0.0f32; IMAGE_PIXELS * g.m];
            for (i, row) in g.a.chunks_exact(IMAGE_PIXELS).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    at[j * g.m + i] = v;
                }
            }
            let at = Tensor::<2>::from_data(TensorData::new(at, [IMAGE_PIXELS, g.m]), &device);
            (Some(at), None)
        }
        _ => {
            let mask = |o: &Observation| match &o.op {
                Measurement::Mask(k) => k.iter().map(|&k| f32::from(u8::from(k))).collect(),
                _ => vec![1.0; IMAGE_PIXELS],
            };
            (None, Some(repeat(&mask, IMAGE_PIXELS)))
        }
    };

    // Starts: the encoder's mu of the back-projection, then prior samples.
    let start: Vec<f32> = {
        let pictures: Vec<f32> = obs.iter().flat_map(Observation::back_projection).collect();
        let x = Tensor::<4>::from_data(
            TensorData::new(pictures, [b, 1, IMAGE_SIDE, IMAGE_SIDE]),
            &device,
        );
        let mut v = to_vec(model.encode_mu(x).into_data());
        v.extend(normals(rng, (r - 1) * b * latent));
        v
    };
    let mut code = Code {
        z: Param::from_tensor(Tensor::from_data(
            TensorData::new(start, [n, latent]),
            &device,
        )),
    };
    let objective = |z: Tensor<2>| {
        let x = model.decode_image(z.clone()).reshape([n, IMAGE_PIXELS]);
        let pred = match (&proj, &keep) {
            (Some(at), _) => x.clone().matmul(at.clone()),
            (None, Some(k)) => x.clone() * k.clone(),
            (None, None) => x.clone(),
        };
        let per = (pred - y.clone()).powi_scalar(2).sum_dim(1)
            + z.powi_scalar(2).sum_dim(1) * opts.lambda;
        (per, x)
    };
    let mut optim = AdamConfig::new().init();
    for _ in 0..opts.steps {
        let (per, _) = objective(code.z.val());
        let grads = GradientsParams::from_grads(per.sum().backward(), &code);
        code = optim.step(opts.lr, code, grads);
    }
    let (per, x) = objective(code.z.val());
    let per = to_vec(per.into_data());
    let x = to_vec(x.into_data());
    (0..b)
        .map(|i| {
            let best = (0..r)
                .min_by(|&p, &q| per[p * b + i].total_cmp(&per[q * b + i]))
                .unwrap_or(0);
            let row = best * b + i;
            x[row * IMAGE_PIXELS..(row + 1) * IMAGE_PIXELS].to_vec()
        })
        .collect()
}

/// FISTA iterations for an operator: one is exact for the identity.
fn lasso_iters(op: &Measurement) -> usize {
    match op {
        Measurement::Identity => 1,
        _ => 300,
    }
}

/// Lasso recovery of every observation in `basis` with weight `alpha`.
pub fn recover_lasso(basis: &Basis, obs: &[Observation], alpha: f32) -> Vec<Vec<f32>> {
    obs.par_iter()
        .map(|o| {
            // 5% above the power-iteration estimate keeps FISTA's step safe.
            let l = 1.05 * o.op.norm_sq();
            lasso(&o.op, basis, &o.y, alpha, lasso_iters(&o.op), l)
        })
        .collect()
}

/// Weights tried for the Lasso baselines.
pub const ALPHA_GRID: [f32; 10] = [3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.2, 0.4, 0.8, 1.6];

/// The Lasso weight from [`ALPHA_GRID`] with the best mean PSNR on `tune_images` (training
/// images, never the test images reported) under `task`.
pub fn tune_alpha(basis: &Basis, task: Task, tune_images: &[f32], seed: u64) -> f32 {
    let obs = observe(task, tune_images, seed);
    let mut best = (f64::NEG_INFINITY, ALPHA_GRID[0]);
    for alpha in ALPHA_GRID {
        let rec = recover_lasso(basis, &obs, alpha);
        let p = mean_psnr(tune_images, &rec);
        if p > best.0 {
            best = (p, alpha);
        }
    }
    best.1
}

/// Mean PSNR of reconstructions `rec` of the images in `images`.
pub fn mean_psnr(images: &[f32], rec: &[Vec<f32>]) -> f64 {
    let n = rec.len().max(1) as f64;
    images
        .chunks_exact(IMAGE_PIXELS)
        .zip(rec)
        .map(|(x, r)| crate::metrics::psnr(x, r))
        .sum::<f64>()
        / n
}

/// Mean SSIM of reconstructions `rec` of the images in `images`.
pub fn mean_ssim(images: &[f32], rec: &[Vec<f32>]) -> f64 {
    let n = rec.len().max(1) as f64;
    images
        .chunks_exact(IMAGE_PIXELS)
        .zip(rec)
        .map(|(x, r)| crate::metrics::ssim(x, r, IMAGE_SIDE, IMAGE_SIDE))
        .sum::<f64>()
        / n
}

/// One method's result on one task.
#[derive(Clone, Debug, Serialize)]
pub struct RecoveryRow {
    pub task: String,
    pub method: String,
    /// Mean PSNR (dB, peak 1) over the images.
    pub psnr: f64,
    pub ssim: f64,
    /// The method's setting (Lasso: the tuned alpha).
    pub setting: String,
}

/// Every method's reconstructions of one task.
pub struct TaskResult {
    pub task: Task,
    pub observations: Vec<Observation>,
    /// `(method, setting, reconstructions)`: observed, vae, lasso-dct, lasso-haar.
    pub methods: Vec<(String, String, Vec<Vec<f32>>)>,
}

impl TaskResult {
    /// The table rows of this task against the true `images`.
    pub fn rows(&self, images: &[f32]) -> Vec<RecoveryRow> {
        self.methods
            .iter()
            .map(|(method, setting, rec)| RecoveryRow {
                task: self.task.to_string(),
                method: method.clone(),
                psnr: mean_psnr(images, rec),
                ssim: mean_ssim(images, rec),
                setting: setting.clone(),
            })
            .collect()
    }
}

/// Runs `task` on `images` with the VAE prior (`model` on an autodiff device) and both Lasso
/// baselines (weights tuned on `tune_images`), plus the back-projection for reference.
pub fn run_task(
    model: &Vae,
    task: Task,
    images: &[f32],
    tune_images: &[f32],
    opts: &PriorOptions,
) -> TaskResult {
    let observations = observe(task, images, opts.seed);
    let mut methods = vec![(
        "observed".to_string(),
        String::new(),
        observations
            .iter()
            .map(Observation::back_projection)
            .collect(),
    )];
    methods.push((
        "vae-prior".to_string(),
        format!(
            "lambda {} x{} starts x{} steps",
            opts.lambda, opts.restarts, opts.steps
        ),
        recover_vae(model, &observations, opts),
    ));
    for basis in Basis::all() {
        let alpha = tune_alpha(&basis, task, tune_images, opts.seed ^ 0x7E57);
        methods.push((
            format!("lasso-{}", basis.name),
            format!("alpha {alpha}"),
            recover_lasso(&basis, &observations, alpha),
        ));
    }
    TaskResult {
        task,
        observations,
        methods,
    }
}

/// The recovery table as Markdown.
pub fn table_markdown(rows: &[RecoveryRow]) -> String {
    let mut s =
        String::from("| task | method | PSNR (dB) | SSIM | setting |\n|---|---|---:|---:|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.4} | {} |\n",
            r.task, r.method, r.psnr, r.ssim, r.setting
        ));
    }
    s
}

/// Writes a panel to `path`: for up to 8 images, a row of the original, then every method's
/// reconstruction in the order of `result.methods`, under a header naming each column.
pub fn panel(
    images: &[f32],
    result: &TaskResult,
    path: &std::path::Path,
) -> Result<(), crate::Error> {
    let cols = 1 + result.methods.len();
    let mut cells = Vec::new();
    for (i, x) in images.chunks_exact(IMAGE_PIXELS).take(8).enumerate() {
        cells.push(x.to_vec());
        for (_, _, rec) in &result.methods {
            cells.push(rec[i].clone());
        }
    }
    let labels: Vec<&str> = std::iter::once("original")
        .chain(result.methods.iter().map(|(m, _, _)| m.as_str()))
        .collect();
    crate::eval::figures::labelled_grid(&cells, cols, 3, &labels, path)
}
