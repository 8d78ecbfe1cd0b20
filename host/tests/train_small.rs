//! Trains tiny models on a real Fashion-MNIST subset (Debian's `dataset-fashion-mnist`).

use burn::optim::AdamConfig;
use edgevae::data::{self, Dataset, Split, IMAGE_PIXELS};
use edgevae::inference;
use edgevae::model::layers::{layers, LayerKind};
use edgevae::train::{self, TrainConfig, TrainOptions};
use edgevae::VaeConfig;

fn fashion(split: Split, n: usize) -> Dataset {
    match data::load(None, split) {
        Ok(d) => d.truncate(n),
        Err(e) => panic!(
            "these tests need Fashion-MNIST in {} (apt-get install dataset-fashion-mnist): {e}",
            data::DEFAULT_DATA_DIR
        ),
    }
}

fn tiny(epochs: usize, batch: usize) -> TrainConfig {
    let model = VaeConfig::new()
        .with_latent(8)
        .with_channels1(8)
        .with_channels2(16);
    TrainConfig::new(model, AdamConfig::new())
        .with_epochs(epochs)
        .with_batch_size(batch)
        .with_learning_rate(2e-3)
        .with_seed(7)
}

/// Compares two models parameter by parameter, naming the first difference.
fn assert_same(a: &edgevae::Vae, b: &edgevae::Vae) {
    for (la, lb) in layers(a).iter().zip(layers(b).iter()) {
        assert_eq!(la.weight_shape, lb.weight_shape, "{}", la.name);
        for (what, x, y) in [
            ("weight", &la.weight, &lb.weight),
            ("bias", &la.bias, &lb.bias),
        ] {
            if let Some(i) = (0..x.len()).find(|&i| x[i].to_bits() != y[i].to_bits()) {
                panic!("{}.{what}[{i}]: {} != {}", la.name, x[i], y[i]);
            }
        }
    }
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
}

#[test]
fn loss_falls_and_reconstruction_beats_mean_image() {
    let train_set = fashion(Split::Train, 2048);
    let test_set = fashion(Split::Test, 512);
    let cfg = tiny(10, 64); // 32 steps per epoch, 320 steps
    let out = train::train(&cfg, &train_set, Some(&test_set), &TrainOptions::default()).unwrap();
    assert_eq!(out.step_losses.len(), 320);
    assert!(out.step_losses.iter().all(|l| l.is_finite()));
    let first = mean(&out.step_losses[..10]);
    let last = mean(&out.step_losses[290..]);
    assert!(
        last < 0.6 * first,
        "loss did not fall enough: {first:.1} -> {last:.1}"
    );
    let e = &out.epochs;
    assert_eq!(e.len(), 10);
    assert!(e[9].train_neg_elbo < e[0].train_neg_elbo);
    assert!(e[9].test_neg_elbo.unwrap() < e[0].test_neg_elbo.unwrap());

    // Reconstruction from mu against the best constant image (the training mean).
    let train_px = train_set.to_f32();
    let mut mean_img = vec![0.0f32; IMAGE_PIXELS];
    for img in train_px.chunks(IMAGE_PIXELS) {
        for (m, p) in mean_img.iter_mut().zip(img) {
            *m += p / train_set.len() as f32;
        }
    }
    let test_px = test_set.to_f32();
    let mu = inference::encode_mu_batch(&out.model, &test_px);
    assert_eq!(mu.len(), test_set.len() * 8);
    let recon = inference::decode_batch(&out.model, &mu);
    let mse = |a: &[f32], b: &dyn Fn(usize) -> f32| {
        a.iter()
            .enumerate()
            .map(|(i, &x)| f64::from(x - b(i)).powi(2))
            .sum::<f64>()
            / a.len() as f64
    };
    let model_mse = mse(&test_px, &|i| recon[i]);
    let base_mse = mse(&test_px, &|i| mean_img[i % IMAGE_PIXELS]);
    assert!(
        model_mse < 0.7 * base_mse,
        "reconstruction MSE {model_mse:.4} vs mean-image baseline {base_mse:.4}"
    );

    let m = edgevae::eval::evaluate(&out.model, cfg.model.likelihood(), &test_set, 128, 0);
    assert!(m.psnr > 10.0 * (1.0 / base_mse).log10(), "PSNR {}", m.psnr);
    assert!(m.ssim > 0.2 && m.ssim <= 1.0, "SSIM {}", m.ssim);
    assert!(m.active_units >= 1 && m.active_units <= 8);
    assert!((m.elbo.neg_elbo - m.elbo.bce - m.elbo.kl).abs() < 1e-6);
}

#[test]
fn same_seed_same_weights_and_resume_matches_uninterrupted_run() {
    let train_set = fashion(Split::Train, 256);
    let cfg = tiny(2, 64);
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let split = dir.path().join("split");
    let opts = |d: &std::path::Path, resume| TrainOptions {
        run_dir: Some(d.to_path_buf()),
        resume,
        ..TrainOptions::default()
    };
    let a = train::train(&cfg, &train_set, None, &opts(&whole, false)).unwrap();
    let b = train::train(&cfg, &train_set, None, &TrainOptions::default()).unwrap();
    assert_same(&a.model, &b.model);

    let first = cfg.clone().with_epochs(1);
    train::train(&first, &train_set, None, &opts(&split, false)).unwrap();
    let resumed = train::train(&cfg, &train_set, None, &opts(&split, true)).unwrap();
    assert_eq!(
        resumed.step_losses.len(),
        4,
        "resume must run only the second epoch"
    );
    assert_eq!(resumed.epochs.len(), 2);
    assert_same(&a.model, &resumed.model);

    // The run directory alone rebuilds the model.
    let (loaded_cfg, loaded) = edgevae::inference::load_model(&whole).unwrap();
    assert_eq!(loaded_cfg, cfg.model);
    assert_same(&loaded, &a.model);
    let csv = std::fs::read_to_string(whole.join(train::METRICS_CSV)).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(!whole.join("model.bpk.tmp").exists());

    // A different model config is refused on resume, with the file named.
    let mut other = cfg.clone();
    other.model = VaeConfig::new().with_latent(4);
    let e = train::train(&other, &train_set, None, &opts(&split, true)).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
}

#[test]
fn layer_export_has_documented_shapes() {
    let cfg = VaeConfig::seed();
    let model = cfg.init(&edgevae::compute_device());
    let layers = layers(&model);
    let shapes: Vec<(&str, Vec<usize>, usize)> = layers
        .iter()
        .map(|l| (l.name, l.weight_shape.clone(), l.bias.len()))
        .collect();
    assert_eq!(
        shapes,
        vec![
            ("enc1", vec![32, 1, 3, 3], 32),
            ("enc2", vec![64, 32, 3, 3], 64),
            ("fc_mu", vec![3136, 16], 16),
            ("fc_logvar", vec![3136, 16], 16),
            ("dec_fc", vec![16, 3136], 3136),
            ("dec1", vec![64, 32, 4, 4], 32),
            ("dec2", vec![32, 1, 4, 4], 1),
        ]
    );
    for l in &layers {
        assert_eq!(l.weight.len(), l.weight_shape.iter().product::<usize>());
    }
    assert_eq!(
        layers[0].kind,
        LayerKind::Conv2d {
            stride: [2, 2],
            padding: [1, 1]
        }
    );
    assert_eq!(
        layers[5].kind,
        LayerKind::ConvTranspose2d {
            stride: [2, 2],
            padding: [1, 1]
        }
    );
    let images = vec![0.5f32; 3 * IMAGE_PIXELS];
    let out = inference::decode_batch(&model, &inference::encode_mu_batch(&model, &images));
    assert_eq!(out.len(), 3 * IMAGE_PIXELS);
    assert!(out.iter().all(|&p| (0.0..=1.0).contains(&p)));
}

#[test]
fn cosine_schedule_runs_from_lr_to_lr_min() {
    let cfg = tiny(1, 64).with_learning_rate(1e-3).with_lr_min(Some(1e-5));
    assert!((cfg.lr_at(0, 100) - 1e-3).abs() < 1e-12);
    assert!((cfg.lr_at(100, 100) - 1e-5).abs() < 1e-12);
    assert!((cfg.lr_at(50, 100) - (1e-3 + 1e-5) / 2.0).abs() < 1e-12);
    let lrs: Vec<f64> = (0..=100).map(|s| cfg.lr_at(s, 100)).collect();
    assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    assert_eq!(tiny(1, 64).lr_at(77, 100), tiny(1, 64).learning_rate);
    assert!(cfg.clone().with_lr_min(Some(2e-3)).validate().is_err());
    assert!(cfg.with_lr_min(Some(-1.0)).validate().is_err());
}

#[test]
fn gaussian_likelihood_is_the_gaussian_negative_log_density() {
    use burn::prelude::*;
    use edgevae::model::Likelihood;
    let device = edgevae::compute_device();
    let logits = Tensor::<4>::zeros([1, 1, 2, 2], &device); // sigmoid = 0.5 everywhere
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![0.5f32, 1.0, 0.0, 0.5], [1, 1, 2, 2]),
        &device,
    );
    let sigma = 0.1f64;
    let got = Likelihood::Gaussian { sigma }
        .nll_sum(logits.clone(), x.clone())
        .into_scalar::<f32>() as f64;
    let norm = (sigma * (2.0 * std::f64::consts::PI).sqrt()).ln();
    let want = 2.0 * 0.25 / (2.0 * sigma * sigma) + 4.0 * norm;
    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    // Bernoulli at p = 0.5 costs ln 2 per pixel whatever x is.
    let bce = Likelihood::Bernoulli
        .nll_sum(logits, x)
        .into_scalar::<f32>() as f64;
    assert!((bce - 4.0 * std::f64::consts::LN_2).abs() < 1e-4, "{bce}");
    let cfg = VaeConfig::seed().with_gaussian_sigma(Some(0.0));
    assert!(cfg.validate().is_err());
    assert_eq!(VaeConfig::seed().likelihood(), Likelihood::Bernoulli);
}

/// The codec objective (uniform latent noise + logistic rate) trains: the loss falls, and the
/// rate term behaves as a rate (wider bins cost fewer nats for the same latents).
#[test]
fn rate_distortion_training_lowers_its_loss() {
    let train_set = fashion(Split::Train, 1024);
    let cfg = tiny(4, 64).with_rate_noise(Some(1.0)).with_beta(0.5);
    cfg.validate().unwrap();
    let out = train::train(&cfg, &train_set, None, &TrainOptions::default()).unwrap();
    assert!(out.step_losses.iter().all(|l| l.is_finite()));
    let (first, last) = (mean(&out.step_losses[..8]), mean(&out.step_losses[56..]));
    assert!(last < 0.9 * first, "loss {first} -> {last}");
    assert!(tiny(1, 64).with_rate_noise(Some(0.0)).validate().is_err());

    use burn::tensor::{Tensor, TensorData};
    let device = edgevae::compute_device();
    let z = Tensor::<2>::from_data(
        TensorData::new(vec![-3.0f32, -0.2, 0.0, 0.7, 5.0, 40.0], [2, 3]),
        &device,
    );
    let r1 = edgevae::model::logistic_rate_sum(z.clone(), 1.0).into_scalar::<f32>();
    let r2 = edgevae::model::logistic_rate_sum(z, 2.0).into_scalar::<f32>();
    assert!(r1.is_finite() && r2 > 0.0 && r2 < r1, "{r1} {r2}");
}

/// `--devices N`: each batch split across N devices (here N copies of the CPU device, the
/// shards uneven for N = 3), the gradients summed per parameter by Burn's `step_multi`: every
/// step's loss and the final weights are one device's up to float rounding (a shard given the
/// wrong images or the wrong slice of the noise would not be).
#[test]
fn data_parallel_steps_equal_one_devices() {
    let train_set = fashion(Split::Train, 200);
    let cfg = tiny(1, 50);
    let one = train::train(&cfg, &train_set, None, &TrainOptions::default()).unwrap();
    for n in [2usize, 3] {
        let opts = TrainOptions {
            devices: Some(edgevae::backend::train_devices(n).unwrap()),
            ..TrainOptions::default()
        };
        let many = train::train(&cfg, &train_set, None, &opts).unwrap();
        assert_eq!(many.step_losses.len(), one.step_losses.len());
        for (a, b) in one.step_losses.iter().zip(&many.step_losses) {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "{n} devices: loss {b} vs {a}"
            );
        }
        for (la, lb) in layers(&one.model).iter().zip(layers(&many.model).iter()) {
            let scale = la
                .weight
                .iter()
                .fold(0f32, |m, &x| m.max(x.abs()))
                .max(1e-3);
            for (x, y) in la
                .weight
                .iter()
                .zip(&lb.weight)
                .chain(la.bias.iter().zip(&lb.bias))
            {
                assert!(
                    (x - y).abs() <= 1e-3 * scale,
                    "{n} devices: {} differs: {y} vs {x}",
                    la.name
                );
            }
        }
    }
    assert!(edgevae::backend::train_devices(0).is_err());
    assert_eq!(train::shards(10, 3), vec![0..3, 3..6, 6..10]);
    assert_eq!(train::shards(2, 5), vec![0..1, 1..2]);
}
