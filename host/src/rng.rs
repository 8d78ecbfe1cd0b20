//! Seeded random numbers on the host: one generator ([`Rng64`], PCG-64 MCG from `rand_pcg`,
//! whose stream is fixed by its seed across versions and platforms), normal draws from
//! `rand_distr`, and noise tensors. Burn's own generator is global to the process, so the
//! trainer draws its noise here to stay reproducible however the library is used. (The device
//! needs no random numbers.)

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

pub use rand::seq::SliceRandom;

/// The host's generator.
pub type Rng64 = rand_pcg::Pcg64Mcg;

/// A generator seeded with `seed`.
pub fn seeded(seed: u64) -> Rng64 {
    Rng64::seed_from_u64(seed)
}

/// `n` standard normal samples.
pub fn normals(rng: &mut Rng64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// A `[n, latent]` tensor of standard normal noise.
pub fn normal_tensor(rng: &mut Rng64, n: usize, latent: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(normals(rng, n * latent), [n, latent]),
        device,
    )
}

/// A `[n, latent]` tensor of uniform noise in [−½, ½).
pub fn uniform_tensor(rng: &mut Rng64, n: usize, latent: usize, device: &Device) -> Tensor<2> {
    let u: Vec<f32> = (0..n * latent).map(|_| rng.random::<f32>() - 0.5).collect();
    Tensor::from_data(TensorData::new(u, [n, latent]), device)
}
