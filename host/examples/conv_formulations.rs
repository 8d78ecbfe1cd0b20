//! Times the encoder's convolutions and the decoder's transposed convolutions (forward + backward,
//! batch BATCH, default 128, the seed network's shapes) as Burn computes them, against the same functions written
//! as im2col + one GEMM from Burn tensor ops in NHWC (strided slices for the stride-2
//! convolutions; the four output phases of each transposed convolution as 2×2 convolutions,
//! i.e. sub-pixel convolution), and checks both give the same values.
//! Then times forward + backward of the seed model's parts at batch BATCH (default 128): the
//! two dense layers alone, the encoder, the decoder and the whole loss.
//! `cargo run --release -p edgevae --example conv_formulations [-- BACKEND [BATCH]]`; results in
//! benches/BENCH.md.

use burn::prelude::*;
use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Distribution, Slice};
use std::time::Instant;

/// conv k3 s2 p1 on NHWC x [n,h,w,ic], weight [oc,ic,3,3] -> NHWC [n,h/2,w/2,oc]
fn conv_gemm(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
    let [n, h, wd, ic] = x.dims();
    let [oc, _, _, _] = w.dims();
    let (ho, wo) = (h / 2, wd / 2);
    let xp = x.pad(
        [(0, 0), (1, 1), (1, 1), (0, 0)],
        burn::tensor::ops::PadMode::Constant(0.0),
    );
    let mut cols = Vec::new();
    for a in 0..3 {
        for bb in 0..3 {
            cols.push(xp.clone().slice([
                Slice::new(0, Some(n as isize), 1),
                Slice::new(a, Some(a + 2 * ho as isize - 1), 2),
                Slice::new(bb, Some(bb + 2 * wo as isize - 1), 2),
                Slice::new(0, Some(ic as isize), 1),
            ]));
        }
    }
    let cols = Tensor::cat(cols, 3).reshape([n * ho * wo, 9 * ic]);
    // weight rows ordered (a, b, ic)
    let wm = w.permute([2, 3, 1, 0]).reshape([9 * ic, oc]);
    (cols.matmul(wm) + b.unsqueeze()).reshape([n, ho, wo, oc])
}

/// convT k4 s2 p1 on NHWC x [n,h,w,ic], weight [ic,oc,4,4] -> NHWC [n,2h,2w,oc]
fn convt_gemm(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
    let [n, h, wd, ic] = x.dims();
    let [_, oc, _, _] = w.dims();
    let xp = x.pad(
        [(0, 0), (1, 1), (1, 1), (0, 0)],
        burn::tensor::ops::PadMode::Constant(0.0),
    );
    // offset a in phase p uses tap k: p=0: a0->k3, a1->k1; p=1: a1->k2, a2->k0
    let taps = [[(0usize, 3usize), (1, 1)], [(1, 2), (2, 0)]];
    let mut rows = Vec::new();
    for py in 0..2 {
        let mut row = Vec::new();
        for px in 0..2 {
            let mut cols = Vec::new();
            let mut ws = Vec::new();
            for &(a, ky) in &taps[py] {
                for &(bb, kx) in &taps[px] {
                    cols.push(xp.clone().slice([0..n, a..a + h, bb..bb + wd, 0..ic]));
                    ws.push(
                        w.clone()
                            .slice([0..ic, 0..oc, ky..ky + 1, kx..kx + 1])
                            .reshape([ic, oc]),
                    );
                }
            }
            let cols = Tensor::cat(cols, 3).reshape([n * h * wd, 4 * ic]);
            let y = cols.matmul(Tensor::cat(ws, 0)) + b.clone().unsqueeze();
            row.push(y.reshape([n, h, wd, oc]));
        }
        rows.push(Tensor::stack::<5>(row, 3)); // [n,h,w,2,oc]
    }
    let s: Tensor<6> = Tensor::stack(rows, 2); // [n,h,2,w,2,oc]
    s.reshape([n, 2 * h, 2 * wd, oc])
}

type Layer = dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>;

/// Checks that `burn` (NCHW) and `gemm` (NHWC) agree on random inputs, then times forward +
/// backward of each (best of 5 × 10 passes), with the input gradient when `xgrad`.
fn compare(
    name: &str,
    x: Tensor<4>,
    w: Tensor<4>,
    b: Tensor<1>,
    xgrad: bool,
    burn: &Layer,
    gemm: &Layer,
) {
    let a = burn(x.clone(), w.clone(), b.clone());
    let g = gemm(x.clone().permute([0, 2, 3, 1]), w.clone(), b.clone()).permute([0, 3, 1, 2]);
    let diff = (a - g).abs().max().into_scalar::<f32>();
    println!("{name}: max |burn - gemm| = {diff:e}");
    for (label, f, x) in [
        ("burn op", burn, x.clone()),
        ("gemm NHWC", gemm, x.permute([0, 2, 3, 1])),
    ] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..10 {
                // Reading the gradients back waits for queued GPU work.
                let xg = if xgrad {
                    x.clone().require_grad()
                } else {
                    x.clone()
                };
                let wg = w.clone().require_grad();
                let y = f(xg.clone(), wg.clone(), b.clone().require_grad());
                let g = (y.clone() * y).sum().backward();
                let _ = wg.grad(&g).map(|t| t.into_data());
                let _ = xg.grad(&g).map(|t| t.into_data());
            }
            best = best.min(t.elapsed().as_secs_f64() / 10.0);
        }
        println!("  {label}: forward + backward {:.2} ms", best * 1e3);
    }
}

fn main() {
    // The backend named by the first argument (as `--backend` takes it), else flex; with autodiff.
    if let Some(name) = std::env::args().nth(1) {
        use clap::ValueEnum;
        let backend = edgevae::Backend::from_str(&name, true).expect("a backend name");
        edgevae::backend::select(backend).expect("a backend this build has");
    }
    let dev = edgevae::backend::train_device();
    let n: usize = std::env::args()
        .nth(2)
        .map_or(128, |b| b.parse().expect("a batch size"));
    let normal =
        |shape: [usize; 4], s: f64| Tensor::<4>::random(shape, Distribution::Normal(0.0, s), &dev);
    for (ic, oc, side) in [(64usize, 32usize, 7usize), (32, 1, 14)] {
        let b = Tensor::<1>::random([oc], Distribution::Normal(0.0, 0.1), &dev);
        let opts = ConvTransposeOptions::new([2, 2], [1, 1], [0, 0], [1, 1], 1);
        let burn = move |x, w, b| conv_transpose2d(x, w, Some(b), opts.clone());
        let name = format!("convT {ic}->{oc} k4 s2 p1, {side}x{side}");
        let (x, w) = (
            normal([n, ic, side, side], 1.0),
            normal([ic, oc, 4, 4], 0.1),
        );
        compare(&name, x, w, b, true, &burn, &convt_gemm);
    }
    for (ic, oc, side, xgrad) in [(1usize, 32usize, 28usize, false), (32, 64, 14, true)] {
        let b = Tensor::<1>::random([oc], Distribution::Normal(0.0, 0.1), &dev);
        let opts = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
        let burn = move |x, w, b| conv2d(x, w, Some(b), opts.clone());
        let name = format!("conv {ic}->{oc} k3 s2 p1, {side}x{side}");
        let (x, w) = (
            normal([n, ic, side, side], 1.0),
            normal([oc, ic, 3, 3], 0.1),
        );
        compare(&name, x, w, b, xgrad, &burn, &conv_gemm);
    }
    model_parts(&dev, n);
}

/// Forward + backward of the encoder (Σ mu + Σ logvar), of the decoder (Σ logits²) and of the
/// training loss, each best of 5 × 10.
fn model_parts(dev: &Device, batch: usize) {
    use edgevae::model::{Likelihood, VaeConfig};
    let model = edgevae::train::init_model(&VaeConfig::new(), dev, 0);
    let x = Tensor::<4>::random([batch, 1, 28, 28], Distribution::Uniform(0.0, 1.0), dev);
    let z = Tensor::<2>::random([batch, 16], Distribution::Normal(0.0, 1.0), dev);
    let h = Tensor::<2>::random([batch, 3136], Distribution::Normal(0.0, 1.0), dev);
    use burn::tensor::activation::relu;
    let parts: [(&str, &dyn Fn() -> Tensor<1>); 9] = [
        ("enc1 alone, sum", &|| model.enc1.forward(x.clone()).sum()),
        ("enc1 alone, sum of squares", &|| {
            let y = model.enc1.forward(x.clone());
            (y.clone() * y).sum()
        }),
        ("enc1, relu, enc2", &|| {
            model
                .enc2
                .forward(relu(model.enc1.forward(x.clone())))
                .sum()
        }),
        ("enc1, relu, enc2, relu, flatten", &|| {
            relu(model.enc2.forward(relu(model.enc1.forward(x.clone()))))
                .reshape([batch, 3136])
                .sum()
        }),
        ("dense 3136->16 (fc_mu)", &|| {
            model.fc_mu.forward(h.clone()).sum()
        }),
        ("dense 16->3136 (dec_fc)", &|| {
            model.dec_fc.forward(z.clone()).sum()
        }),
        ("encoder", &|| {
            let (mu, logvar) = model.encode(x.clone());
            mu.sum() + logvar.sum()
        }),
        ("decoder", &|| {
            let y = model.decode(z.clone());
            (y.clone() * y).sum()
        }),
        ("loss", &|| {
            model
                .loss(x.clone(), z.clone(), 1.0, Likelihood::Bernoulli)
                .loss
        }),
    ];
    println!("seed model, batch {batch}:");
    for (name, f) in parts {
        let mut best = [f64::MAX; 2];
        for _ in 0..5 {
            let (mut fwd, mut bwd) = (0.0, 0.0);
            for _ in 0..10 {
                let t = Instant::now();
                let y = f();
                dev.sync().expect("device");
                fwd += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let _grads = y.backward();
                dev.sync().expect("device");
                bwd += t.elapsed().as_secs_f64();
            }
            best = [best[0].min(fwd / 10.0), best[1].min(bwd / 10.0)];
        }
        println!(
            "  {name}: forward {:.2} ms, backward {:.2} ms",
            best[0] * 1e3,
            best[1] * 1e3
        );
    }
}
