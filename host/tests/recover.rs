//! Recovery with the shipped model's decoder as the prior, the Lasso baselines, and the
//! rate-distortion codecs, on real Fashion-MNIST test images.

use edgevae::data::{self, Split, IMAGE_PIXELS};
use edgevae::eval::classical::{lasso, top_k, Basis, Operator, Pca, RangeQuantizer};
use edgevae::eval::recover::{self, Measurement, PriorOptions, Task};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/default");

fn test_images(n: usize) -> Vec<f32> {
    let d = data::load(None, Split::Test).unwrap_or_else(|e| {
        panic!(
            "these tests need Fashion-MNIST in {} (apt-get install dataset-fashion-mnist): {e}",
            data::DEFAULT_DATA_DIR
        )
    });
    d.truncate(n).to_f32()
}

fn train_images(n: usize) -> Vec<f32> {
    data::load(None, Split::Train).unwrap().truncate(n).to_f32()
}

#[test]
fn observations_are_deterministic_and_shaped_by_the_task() {
    let x = test_images(3);
    let a = recover::observe(Task::Inpaint { missing: 0.8 }, &x, 5);
    let b = recover::observe(Task::Inpaint { missing: 0.8 }, &x, 5);
    let c = recover::observe(Task::Inpaint { missing: 0.8 }, &x, 6);
    for (o, p) in a.iter().zip(&b) {
        assert_eq!(o.y, p.y);
    }
    assert_ne!(a[0].y, c[0].y, "another seed, another mask");
    let Measurement::Mask(keep) = &a[0].op else {
        panic!("inpainting is a mask")
    };
    assert_eq!(
        keep.iter().filter(|k| !**k).count(),
        627,
        "round(0.8 * 784) pixels lost"
    );
    let Measurement::Mask(keep1) = &a[1].op else {
        panic!()
    };
    assert_ne!(keep, keep1, "each image has its own mask");

    let block = recover::observe(Task::Block { side: 12 }, &x, 0);
    let Measurement::Mask(keep) = &block[0].op else {
        panic!()
    };
    assert_eq!(keep.iter().filter(|k| !**k).count(), 144);
    assert!(!keep[14 * 28 + 14] && keep[0] && keep[27 * 28 + 27]);

    let cs = recover::observe(Task::Cs { m: 50, noise: 0.0 }, &x, 0);
    assert_eq!(cs[0].y.len(), 50);
    // Noise-free Gaussian measurements are exactly A·x.
    let mut y = vec![0.0; 50];
    cs[2].op.apply(&x[2 * IMAGE_PIXELS..], &mut y);
    assert_eq!(y, cs[2].y);

    for bad in [
        Task::Cs { m: 0, noise: 0.0 },
        Task::Inpaint { missing: 1.0 },
        Task::Block { side: 28 },
        Task::Denoise { sigma: -1.0 },
        Task::Denoise { sigma: f32::NAN },
    ] {
        assert!(bad.validate().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn lasso_recovers_a_sparse_dct_image_from_gaussian_measurements() {
    // An image with 6 non-zero DCT coefficients, seen through 120 Gaussian measurements: far
    // fewer than 784, enough for l1 recovery.
    let dct = Basis::dct();
    let mut c = vec![0.0f32; IMAGE_PIXELS];
    for (j, v) in [
        (0, 12.0),
        (1, -2.0),
        (29, 1.5),
        (57, -1.0),
        (200, 0.8),
        (403, 0.6),
    ] {
        c[j] = v;
    }
    let mut x = vec![0.0f32; IMAGE_PIXELS];
    dct.inverse(&c, &mut x);
    assert!(
        x.iter().all(|p| (0.0..=1.0).contains(p)),
        "test image out of range"
    );
    let obs = recover::observe(Task::Cs { m: 120, noise: 0.0 }, &x, 1);
    let l = obs[0].op.norm_sq();
    let rec = lasso(&obs[0].op, &dct, &obs[0].y, 1e-3, 3000, 1.05 * l);
    let p = edgevae::metrics::psnr(&x, &rec);
    assert!(p > 40.0, "sparse image recovered at only {p:.1} dB");
    // The same measurements in the wrong basis do much worse.
    let haar = lasso(&obs[0].op, &Basis::haar(), &obs[0].y, 1e-3, 3000, 1.05 * l);
    assert!(edgevae::metrics::psnr(&x, &haar) < p - 10.0);
}

#[test]
fn vae_prior_beats_lasso_dct_on_real_inpainting() {
    let (_, model) = edgevae::inference::load_model_on(SHIPPED, &edgevae::train_device())
        .expect("shipped model");
    let images = test_images(8);
    let tune = train_images(8);
    let opts = PriorOptions {
        restarts: 2,
        steps: 120,
        lr: 0.05,
        ..Default::default()
    };
    let r = recover::run_task(
        &model,
        Task::Inpaint { missing: 0.8 },
        &images,
        &tune,
        &opts,
    );
    let rows = r.rows(&images);
    let get = |m: &str| rows.iter().find(|r| r.method == m).unwrap().psnr;
    let (observed, vae, dct) = (get("observed"), get("vae-prior"), get("lasso-dct"));
    assert!(
        vae > observed + 5.0,
        "vae {vae:.2} vs observed {observed:.2}"
    );
    assert!(vae > dct + 2.0, "vae {vae:.2} vs lasso-dct {dct:.2}");
    assert!(rows
        .iter()
        .all(|r| r.psnr.is_finite() && r.ssim.is_finite()));
    // The winning start is never worse (in the objective) than the encoder's start alone.
    let one = PriorOptions {
        restarts: 1,
        steps: 1,
        ..opts.clone()
    };
    let first = recover::recover_vae(&model, &r.observations, &one);
    assert!(recover::mean_psnr(&images, &first) < vae);
}

#[test]
fn transform_coding_gets_better_with_more_bits() {
    let fit = train_images(2000);
    let test = test_images(50);
    let pca = Pca::fit(&fit, 64).unwrap();
    let dct = Basis::dct();
    let coefs: Vec<Vec<f32>> = fit
        .chunks_exact(IMAGE_PIXELS)
        .map(|x| {
            let mut c = vec![0.0; IMAGE_PIXELS];
            dct.forward(x, &mut c);
            c
        })
        .collect();
    let q = RangeQuantizer::fit(IMAGE_PIXELS, coefs.iter().map(Vec::as_slice));
    let mut last = (0.0, 0.0);
    for k in [4, 16, 64] {
        let (mut p_pca, mut p_dct) = (0.0, 0.0);
        for x in test.chunks_exact(IMAGE_PIXELS) {
            let (r, bits) = pca.code(x, k);
            assert_eq!(bits, 8 * k as u32);
            p_pca += edgevae::metrics::psnr(x, &r) / 50.0;
            let (r, bits) = top_k(&dct, &q, x, k);
            assert!(bits > 8 * k as u32);
            p_dct += edgevae::metrics::psnr(x, &r) / 50.0;
        }
        assert!(
            p_pca > last.0 + 1.0 && p_dct > last.1 + 1.0,
            "k={k}: {p_pca} {p_dct}"
        );
        last = (p_pca, p_dct);
    }
    // Every DCT coefficient kept: only the 8-bit rounding is lost.
    let x = &test[..IMAGE_PIXELS];
    let (r, _) = top_k(&dct, &q, x, IMAGE_PIXELS);
    assert!(edgevae::metrics::psnr(x, &r) > 35.0);
}

#[test]
fn rate_distortion_sweep_covers_every_codec() {
    let (_, vae) = edgevae::inference::load_model(SHIPPED).expect("shipped model");
    let bytes = std::fs::read(format!("{SHIPPED}/model.evae")).unwrap();
    let test = data::load(None, Split::Test).unwrap().truncate(20);
    let fit = train_images(500);
    let inputs = edgevae::eval::rd::RdInputs {
        test: &test.pixels,
        fit: &fit,
        vaes: vec![("shipped".into(), &vae, bytes.as_slice())],
    };
    let points = edgevae::eval::rd::sweep(&inputs).unwrap();
    let find = |m: &'static str| points.iter().filter(move |p| p.method == m);
    let int8 = find("vae-int8 shipped").next().unwrap();
    assert_eq!(int8.bits, 128.0);
    let float = find("vae-float shipped").next().unwrap();
    assert!(
        (float.psnr - int8.psnr).abs() < 0.5,
        "{} vs {}",
        float.psnr,
        int8.psnr
    );
    for family in ["pca", "dct-top-k", "haar-top-k", "jpeg"] {
        let series: Vec<_> = find(family).collect();
        assert!(series.len() >= 5, "{family}");
        assert!(
            series.windows(2).all(|w| w[1].bits > w[0].bits),
            "{family}: more bits at each setting"
        );
        assert!(
            series.last().unwrap().psnr > series[0].psnr + 5.0,
            "{family}"
        );
    }
    for p in find("jpeg") {
        let h = p.header_bits.unwrap();
        assert!(h > 1000.0 && h < p.bits, "{p:?}");
    }
    assert!(points
        .iter()
        .all(|p| p.psnr.is_finite() && p.ssim.is_finite()));
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("rd.png");
    edgevae::eval::rd::plot(&points, &png).unwrap();
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
}
