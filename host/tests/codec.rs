//! The learned codec on the host: `.evz` round trips for images of any size, one-line errors for
//! corrupt or foreign files, and the shipped model's rate knob (coarser levels, fewer bits).

use std::path::{Path, PathBuf};

use edgevae::codec::{self, Gray};
use edgevae::quantize::Reference;
use edgevae_shared::build::{synthetic, SyntheticSpec};
use edgevae_shared::format::Model;

fn synthetic_model(seed: u64) -> Vec<u8> {
    let mut m = synthetic(&SyntheticSpec::seed_architecture(seed), 0).unwrap();
    m.header.name = heapless::String::try_from(format!("synthetic-{seed}").as_str()).unwrap();
    m.header.arena_bytes = u32::MAX;
    let probe = m.to_bytes().unwrap();
    let parsed = Model::from_bytes(&probe).unwrap();
    m.header.arena_bytes = edgevae_firmware::engine::required_arena_all_paths(&parsed) as u32;
    m.to_bytes().unwrap()
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default/model.evae")
}

fn picture(width: u32, height: u32) -> Gray {
    let pixels = (0..height)
        .flat_map(|y| (0..width).map(move |x| ((x * 5 + y * 3) % 256) as u8))
        .collect();
    Gray {
        width,
        height,
        pixels,
    }
}

#[test]
fn any_size_round_trips_through_the_container() {
    let bytes = synthetic_model(4);
    let model = Model::from_bytes(&bytes).unwrap();
    for (w, h) in [(1, 1), (28, 28), (45, 61), (100, 3)] {
        let img = picture(w, h);
        for level in 0..2 {
            let c = codec::compress(&model, level, &img).unwrap();
            assert_eq!(c.file.len(), codec::EVZ_OVERHEAD + c.bits.div_ceil(8));
            let back = codec::decompress(&model, &c.file).unwrap();
            assert_eq!((back.width, back.height), (w, h));
            assert_eq!(back, c.decoded);
        }
    }
    // One 28x28 tile is exactly the device's bitstream for that image.
    let img = picture(28, 28);
    let c = codec::compress(&model, 1, &img).unwrap();
    let z = Reference::new(&model).encode(&img.pixels).unwrap();
    let mut want = [0u8; 64];
    let bits = model
        .level(1)
        .unwrap()
        .encode(model.header().latent_q.zero_point, &z, &mut want)
        .unwrap();
    assert_eq!(c.bits, bits);
    assert_eq!(&c.file[18..c.file.len() - 4], &want[..bits.div_ceil(8)]);
}

#[test]
fn corrupt_truncated_and_foreign_files_are_refused() {
    let bytes = synthetic_model(4);
    let model = Model::from_bytes(&bytes).unwrap();
    let other_bytes = synthetic_model(5);
    let other = Model::from_bytes(&other_bytes).unwrap();
    let good = codec::compress(&model, 0, &picture(40, 30)).unwrap().file;
    let err = |f: &[u8]| codec::decompress(&model, f).unwrap_err().to_string();
    assert!(err(&good[..10]).contains("too short"));
    assert!(err(&good[..good.len() - 1]).contains("CRC"));
    let mut b = good.clone();
    b[0] = b'X';
    assert!(err(&b).contains("magic"));
    let mut b = good.clone();
    b[4] = 9;
    assert!(err(&b).contains("version 9"));
    for i in 5..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x10;
        assert!(err(&b).contains("CRC"), "byte {i}");
    }
    // A header that passes its CRC but declares an impossible size.
    for (w, h) in [(0u32, 30u32), (40, 0), (40_000, 40_000)] {
        let mut b = good[..good.len() - 4].to_vec();
        b[10..14].copy_from_slice(&w.to_le_bytes());
        b[14..18].copy_from_slice(&h.to_le_bytes());
        let crc = edgevae_shared::crc::crc32(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        assert!(err(&b).contains("image size"), "{w}x{h}: {}", err(&b));
    }
    let e = codec::decompress(&other, &good).unwrap_err().to_string();
    assert!(e.contains("another model"), "{e}");
    assert!(!e.contains('\n'));
    assert!(codec::compress(&model, 2, &picture(5, 5))
        .unwrap_err()
        .to_string()
        .contains("quality level 2"));
}

#[test]
fn cli_paths_handle_files_folders_and_colour() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("m.evae");
    std::fs::write(&model_path, synthetic_model(4)).unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let colour =
        image::RgbImage::from_fn(33, 20, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 200]));
    colour.save(inputs.join("a.png")).unwrap();
    image::GrayImage::from_fn(29, 57, |x, y| image::Luma([(x * y) as u8]))
        .save(inputs.join("b.png"))
        .unwrap();
    std::fs::write(inputs.join("notes.txt"), "skip me").unwrap();

    let out = dir.path().join("evz");
    let reports = codec::compress_path(&model_path, &inputs, &out, Some(1)).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports[0].colour && !reports[1].colour);
    assert!(reports
        .iter()
        .all(|r| r.bytes > 0 && r.bpp > 0.0 && r.psnr > 0.0));
    let pngs = dir.path().join("png");
    let done = codec::decompress_path(&model_path, &out, &pngs).unwrap();
    assert_eq!(done.len(), 2);
    let back = image::open(pngs.join("b.png")).unwrap().to_luma8();
    assert_eq!(back.dimensions(), (29, 57));

    // Bad inputs: one line naming the file.
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let e = codec::compress_path(&model_path, &bad, &dir.path().join("x.evz"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.png") && !e.contains('\n'), "{e}");
    let e = codec::compress_path(&model_path, &inputs, &out, Some(9))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--quality 9"), "{e}");
    let trunc = dir.path().join("t.evz");
    let whole = std::fs::read(out.join("a.evz")).unwrap();
    std::fs::write(&trunc, &whole[..whole.len() - 3]).unwrap();
    let e = codec::decompress_path(&model_path, &trunc, &dir.path().join("t.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.evz") && e.contains("CRC"), "{e}");
    assert!(!dir.path().join("t.png").exists());
}

/// The shipped model's rate knob on real test images: each finer level spends more bits and
/// loses less PSNR; the finest reproduces the raw int8 latent exactly.
#[test]
fn shipped_model_levels_trade_bits_for_quality() {
    let bytes = std::fs::read(shipped()).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let levels = &model
        .entropy()
        .expect("shipped model has entropy tables")
        .levels;
    let test = edgevae::data::load(None, edgevae::data::Split::Test).unwrap();
    let zp = model.header().latent_q.zero_point;
    let mut r = Reference::new(&model);
    let n = 100;
    let z: Vec<Vec<i8>> = (0..n).map(|k| r.encode(test.image(k)).unwrap()).collect();
    let mut last = (0.0f64, 0.0f64);
    for (l, level) in levels.iter().enumerate() {
        let (mut bits, mut psnr) = (0usize, 0.0);
        for (k, zk) in z.iter().enumerate() {
            let mut buf = [0u8; 64];
            let b = level.encode(zp, zk, &mut buf).unwrap();
            bits += b;
            let mut dq = vec![0i8; zk.len()];
            level.decode(zp, &buf[..b.div_ceil(8)], &mut dq).unwrap();
            if l + 1 == levels.len() {
                assert_eq!(&dq, zk, "the finest level is lossless on the int8 latent");
            }
            psnr += edgevae::metrics::psnr_u8(test.image(k), &r.decode(&dq).unwrap());
        }
        let (bits, psnr) = (bits as f64 / n as f64, psnr / n as f64);
        eprintln!(
            "level {l}: {bits:.1} bits, {psnr:.2} dB, steps {:?}",
            level.steps
        );
        if l > 0 {
            assert!(bits > last.0, "level {l}: {bits} bits after {}", last.0);
            assert!(
                psnr > last.1 - 0.05,
                "level {l}: {psnr} dB after {}",
                last.1
            );
        }
        last = (bits, psnr);
    }
    assert!(
        last.0 < 128.0,
        "the finest level beats the raw 128 bits: {}",
        last.0
    );
}
