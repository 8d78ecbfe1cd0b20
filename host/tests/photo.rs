//! The photo codec on the host: photographs of any size (grey, RGB, RGBA, tiny, odd) round-trip
//! through whole-frame `.evz` files, bad files get one-line errors, photo folders are checked,
//! random crops are reproducible, a tiny photo model trains, quantizes and codes, and the
//! reference codecs and BD-rate behave.

use edgevae::codec::{self, frame};
use edgevae::data::photos::{load_photos, Photo, PhotoSet};
use edgevae_shared::build::{synthetic_frame, FrameSpec};
use edgevae_shared::format::Model;

fn frame_model(channels: u16, seed: u64) -> Vec<u8> {
    let spec = FrameSpec {
        channels,
        encoder: vec![6, 8, 8, 8],
        decoder: vec![8, 8, 6],
        max_width: 640,
        seed,
    };
    synthetic_frame(&spec).unwrap().to_bytes().unwrap()
}

fn photo(width: usize, height: usize, channels: usize) -> Photo {
    let pixels = (0..width * height * channels)
        .map(|i| {
            let p = i / channels;
            let (x, y) = (p % width, p / width);
            ((x * 13 + y * 7 + (i % channels) * 50 + (x * y) % 17) % 256) as u8
        })
        .collect();
    Photo {
        width,
        height,
        channels,
        pixels,
    }
}

#[test]
fn frames_of_any_size_round_trip_and_match_the_reference() {
    for channels in [1u16, 3] {
        let bytes = frame_model(channels, 11);
        let model = Model::from_bytes(&bytes).unwrap();
        for (w, h) in [(1, 1), (3, 5), (16, 16), (17, 33), (70, 9)] {
            let p = photo(w, h, channels as usize);
            for level in 0..3u8 {
                let c = frame::compress_frame(&model, level, &p).unwrap();
                assert_eq!(c.file.len(), frame::EVZ_FRAME_OVERHEAD + c.bits.div_ceil(8));
                let back = frame::decompress_frame(&model, &c.file).unwrap();
                assert_eq!((back.width, back.height), (w, h));
                assert_eq!(back.channels, channels as usize);
                assert_eq!(back, c.decoded);
            }
            // The decoded picture is the fixed-point reference's decode of the padded frame's
            // latent, cropped: nothing is lost or invented in the container.
            let r = edgevae::quantize::photo::FrameRef::new(&model);
            let (rows, cols) = frame::padded_size(h, w, 16);
            let z = r.encode(&p.padded(rows, cols).pixels, rows, cols).unwrap();
            let c = frame::compress_frame(&model, 2, &p).unwrap();
            let coder = model.level(2).unwrap();
            let zp = model.header().latent_q.zero_point;
            let m = model.header().latent as usize;
            let mut stream = vec![0u8; z.len() * 3 + 16];
            let mut enc = edgevae_shared::entropy::Encoder::new(&mut stream);
            for pos in z.chunks_exact(m) {
                coder.encode_into(&mut enc, zp, pos).unwrap();
            }
            assert_eq!(enc.finish().unwrap(), c.bits);
        }
    }
}

#[test]
fn bad_frame_files_get_one_line_errors() {
    let bytes = frame_model(1, 5);
    let model = Model::from_bytes(&bytes).unwrap();
    let other = frame_model(1, 6);
    let other = Model::from_bytes(&other).unwrap();
    let c = frame::compress_frame(&model, 1, &photo(40, 24, 1)).unwrap();
    let good = c.file;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 2].to_vec()),
        ("header only", good[..10].to_vec()),
    ];
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    cases.push(("flipped", flipped));
    let mut version = good.clone();
    version[4] = 9;
    cases.push(("version", version));
    for (what, f) in &cases {
        let e = frame::decompress_frame(&model, f).unwrap_err().to_string();
        assert!(!e.is_empty() && !e.contains('\n'), "{what}: {e}");
    }
    let e = frame::decompress_frame(&other, &good)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model") && !e.contains('\n'), "{e}");
    // A level the model does not have.
    let e = frame::compress_frame(&model, 9, &photo(8, 8, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains('9') && !e.contains('\n'), "{e}");
}

#[test]
fn cli_paths_take_grey_rgb_rgba_and_odd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("photo.evae");
    std::fs::write(&model_path, frame_model(1, 3)).unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    image::RgbImage::from_fn(37, 21, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 90]))
        .save(inputs.join("rgb.png"))
        .unwrap();
    image::RgbaImage::from_fn(5, 3, |x, y| {
        image::Rgba([x as u8 * 40, y as u8 * 60, 9, 128])
    })
    .save(inputs.join("rgba.png"))
    .unwrap();
    image::GrayImage::from_fn(1, 1, |_, _| image::Luma([77]))
        .save(inputs.join("tiny.png"))
        .unwrap();
    let out = dir.path().join("evz");
    let reports = codec::compress_path(&model_path, &inputs, &out, Some(2)).unwrap();
    assert_eq!(reports.len(), 3);
    let pngs = dir.path().join("png");
    let done = codec::decompress_path(&model_path, &out, &pngs).unwrap();
    let sizes: Vec<(u32, u32)> = done.iter().map(|d| (d.1, d.2)).collect();
    assert_eq!(sizes, vec![(37, 21), (5, 3), (1, 1)]);
    for (p, w, h) in &done {
        let img = image::open(p).unwrap();
        assert_eq!((img.width(), img.height()), (*w, *h));
    }
    // A whole-frame file given to a tile model (and the other way round) is refused clearly.
    let tile = dir.path().join("tile.evae");
    let mut m = edgevae_shared::build::synthetic(
        &edgevae_shared::build::SyntheticSpec::seed_architecture(1),
        0,
    )
    .unwrap();
    m.header.arena_bytes = u32::MAX;
    let probe = m.to_bytes().unwrap();
    m.header.arena_bytes =
        edgevae_firmware::engine::required_arena_all_paths(&Model::from_bytes(&probe).unwrap())
            as u32;
    std::fs::write(&tile, m.to_bytes().unwrap()).unwrap();
    let e = codec::decompress_path(&tile, &out.join("rgb.evz"), &dir.path().join("x.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rgb.evz") && !e.contains('\n'), "{e}");
    assert!(!dir.path().join("x.png").exists());
}

#[test]
fn photo_folders_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_photos(dir.path(), 1).unwrap_err().to_string();
    assert!(
        !e.contains('\n') && e.contains(&dir.path().display().to_string()),
        "{e}"
    );
    std::fs::write(dir.path().join("broken.png"), b"\x89PNG garbage").unwrap();
    let e = load_photos(dir.path(), 1).unwrap_err().to_string();
    assert!(e.contains("broken.png") && !e.contains('\n'), "{e}");
    let e = load_photos(&dir.path().join("missing"), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn crops_are_reproducible_in_range_and_cover_small_photos() {
    let photos = vec![photo(100, 60, 3), photo(9, 7, 3)];
    let set = PhotoSet::new(photos, 3).unwrap();
    let a = set.crops(&mut edgevae::rng::seeded(1), 6, 32);
    let b = set.crops(&mut edgevae::rng::seeded(1), 6, 32);
    let c = set.crops(&mut edgevae::rng::seeded(2), 6, 32);
    assert_eq!(a.len(), 6 * 3 * 32 * 32);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
    // Grey sets from colour photos.
    let grey = PhotoSet::new(vec![photo(20, 20, 3).to_gray()], 1).unwrap();
    assert_eq!(
        grey.crops(&mut edgevae::rng::seeded(0), 2, 16).len(),
        2 * 16 * 16
    );
    assert!(PhotoSet::new(Vec::new(), 1).is_err());
    assert!(PhotoSet::new(vec![photo(20, 20, 3)], 1).is_err());
}

#[test]
fn tiny_photo_model_trains_quantizes_and_codes() {
    use edgevae::model::photo::PhotoConfig;
    use edgevae::train::photo::{train_photo, PhotoTrainConfig};
    let photos: Vec<Photo> = (0..3).map(|i| photo(64 + 16 * i, 48, 1)).collect();
    let set = PhotoSet::new(photos, 1).unwrap();
    let cfg_photo = PhotoConfig {
        channels: 1,
        enc: [4, 6, 8],
        latent: 8,
        dec: [8, 6, 4],
        lambdas: vec![0.005, 0.05],
    };
    let mut cfg = PhotoTrainConfig::new(cfg_photo, 40);
    cfg.crop = 32;
    cfg.batch = 4;
    cfg.checkpoint_every = 20;
    cfg.learning_rate = 3e-3;
    cfg.lr_min = 3e-3;
    let dir = tempfile::tempdir().unwrap();
    let opts = edgevae::train::TrainOptions {
        run_dir: Some(dir.path().to_path_buf()),
        progress: false,
        ..Default::default()
    };
    let out = train_photo(&cfg, &set, Some(&set), &opts).unwrap();
    assert_eq!(out.log.len(), 2);
    assert!(
        out.log[1].loss < out.log[0].loss,
        "loss did not fall: {:?}",
        out.log
    );
    assert!(dir.path().join("model.bpk").exists());
    // Quantization-aware fine-tuning resumes the run: each hidden activation gets a positive
    // step per channel, and the loss stays finite on the grids.
    let cal = set.crops(&mut edgevae::rng::seeded(5), 8, 32);
    let cal = edgevae::quantize::photo::nchw_to_hwc(&cal, 8, 1, 32);
    let plan = edgevae::quantize::photo::QuantPlan::measure(&out.model, &cal, 32).unwrap();
    let t = edgevae::quantize::photo::qat_targets(&out.model, &cal, 32, &plan).unwrap();
    let (enc, dec) = (t.enc_steps, t.dec_steps);
    let widths = |v: &[Vec<f32>]| v.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!((widths(&enc), widths(&dec)), (vec![4, 6, 8], vec![8, 6, 4]));
    assert!(enc
        .iter()
        .chain(&dec)
        .flatten()
        .all(|&s| s > 0.0 && s.is_finite()));
    let mut qat = cfg.clone();
    qat.steps = 60;
    qat.qat = true;
    let resumed = edgevae::train::TrainOptions {
        resume: true,
        ..opts.clone()
    };
    let tuned = train_photo(&qat, &set, Some(&set), &resumed).unwrap();
    assert_eq!(tuned.log.len(), 3);
    assert!(tuned.log[2].loss.is_finite());
    // The gains it rounded the weights with are frozen for `quantize`.
    let plan = edgevae::train::photo::read_qat_plan(dir.path()).unwrap();
    assert_eq!(plan.map(|p| p.units.len()), Some(8));
    // Quantize and code a frame that is not a multiple of the stride.
    let crops = set.crops(&mut edgevae::rng::seeded(4), 32, 32);
    let crops = edgevae::quantize::photo::nchw_to_hwc(&crops, 32, 1, 32);
    let q = edgevae::quantize::photo::quantize_photo(&out.model, &crops, 32, "tiny", 640, None)
        .unwrap();
    let model = Model::from_bytes(&q.bytes).unwrap();
    assert_eq!(model.frame().unwrap().total_stride, 16);
    let p = photo(50, 37, 1);
    let coarse = frame::compress_frame(&model, 0, &p).unwrap();
    let fine = frame::compress_frame(&model, 1, &p).unwrap();
    assert_eq!(coarse.decoded.width, 50);
    assert!(
        fine.bits >= coarse.bits,
        "{} < {}; steps {:?}",
        fine.bits,
        coarse.bits,
        q.step_ratios
    );
}

#[test]
fn reference_codecs_and_bd_rate_rank_codecs() {
    use edgevae::eval::refcodec;
    let pixels = (0..96 * 64 * 3)
        .map(|i| {
            let p = i / 3;
            ((p % 96) * 2 + (p / 96) * 3 + (i % 3) * 30) as u8
        })
        .collect();
    let p = Photo {
        width: 96,
        height: 64,
        channels: 3,
        pixels,
    };
    let j = refcodec::jpeg(&p, 50).unwrap();
    let w = refcodec::webp(&p, 50).unwrap();
    assert_eq!(j.decoded.pixels.len(), p.pixels.len());
    assert_eq!(w.decoded.pixels.len(), p.pixels.len());
    assert!(refcodec::psnr(&p, &j.decoded) > 20.0);
    let curve = |q: &[u8]| -> Vec<refcodec::Point> {
        q.iter()
            .map(|&q| {
                let c = refcodec::jpeg(&p, q).unwrap();
                refcodec::Point {
                    bpp: c.bytes as f64 * 8.0 / (96.0 * 64.0),
                    psnr: refcodec::psnr(&p, &c.decoded),
                }
            })
            .collect()
    };
    let a = curve(&[20, 40, 60, 80, 90]);
    // The same codec against itself: BD-rate 0.
    assert!(refcodec::bd_rate(&a, &a).unwrap().abs() < 1e-9);
    // Low qualities cost fewer bits than high ones.
    assert!(a[0].bpp < a[4].bpp);
}

#[test]
fn stripe_engine_writes_the_host_bitstream_and_inspect_states_its_arena() {
    use edgevae_firmware::engine::Scalar;
    use edgevae_firmware::stripe::{compress, required_arena, SliceRows};
    for channels in [1u16, 3] {
        let bytes = frame_model(channels, 21);
        let model = Model::from_bytes(&bytes).unwrap();
        for (w, h) in [(1, 1), (17, 33), (70, 9), (640, 20)] {
            let p = photo(w, h, channels as usize);
            let c = frame::compress_frame(&model, 1, &p).unwrap();
            let mut arena = vec![0u8; required_arena::<Scalar>(&model, w).unwrap()];
            let mut out = vec![0u8; c.file.len() + 64];
            let mut rows = SliceRows::new(&p.pixels, w, channels as usize);
            let bits =
                compress::<Scalar, _>(&model, 1, h, w, &mut rows, &mut arena, &mut out).unwrap();
            let stream = &c.file[19..c.file.len() - 4];
            assert_eq!(&out[..bits.div_ceil(8)], stream, "{w}x{h}x{channels}");
        }
    }
    let text = edgevae::export::inspect_at(&frame_model(1, 3), Some(320)).unwrap();
    assert!(
        text.contains("stripe engine, frames 320 pixels wide: arena"),
        "{text}"
    );
}
