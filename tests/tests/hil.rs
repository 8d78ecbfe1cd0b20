//! Hardware in the loop: the device app on emulated Cortex-M4 (mps2-an386) and Cortex-M7
//! (mps2-an500) receives real Fashion-MNIST test images over the emulated UART; every latent code
//! and every decoded image must equal the host's fixed-point reference byte for byte; so must
//! every entropy-coded bitstream (quality levels in turn) and every decompressed image.

use edgevae::data::{load, Split};
use edgevae::device::{Device, Reply};
use edgevae::metrics::psnr_u8;
use edgevae::quantize::Reference;
use edgevae_shared::build::XorShift;
use edgevae_shared::format::Model;
use edgevae_shared::wire::{encode_frame_vec, Request};
use edgevae_tests::{build_firmware, build_stdio_app, default_model};

fn stream_images(machine: &str, images: usize) {
    let bytes = std::fs::read(default_model()).expect("shipped model present");
    let model = Model::from_bytes(&bytes).expect("shipped model valid");
    let mut reference = Reference::new(&model);
    let test = load(None, Split::Test)
        .expect("Fashion-MNIST test set (apt-get install dataset-fashion-mnist)");
    let mut dev = if machine == "aarch64" {
        Device::launch_aarch64(&build_stdio_app(), &default_model()).expect("qemu-aarch64 starts")
    } else {
        Device::launch(&build_firmware("app"), machine, Some(5)).expect("QEMU starts")
    };
    match dev.request(&Request::Info).expect("info") {
        Reply::Info(i) => assert_eq!(i.model_crc, model.crc(), "device runs the shipped model"),
        r => panic!("unexpected {r:?}"),
    }
    let (mut mismatches, mut psnr) = (0, 0.0);
    let levels = model
        .entropy()
        .expect("the shipped model carries entropy tables")
        .levels
        .len();
    let zp = model.header().latent_q.zero_point;
    let mut coded_bits = 0usize;
    for k in 0..images {
        let img = test.image(k);
        let want_z = reference.encode(img).unwrap();
        let got_z = match dev.request(&Request::Encode { frame: img }).unwrap() {
            Reply::Latent(z) => z,
            r => panic!("image {k}: {r:?}"),
        };
        if got_z != want_z {
            mismatches += 1;
            eprintln!("image {k}: latent differs: device {got_z:?} host {want_z:?}");
        }
        let want_px = reference.decode(&want_z).unwrap();
        let code: Vec<u8> = want_z.iter().map(|&v| v as u8).collect();
        let got_px = match dev.request(&Request::Decode { latent: &code }).unwrap() {
            Reply::Image(p) => p,
            r => panic!("image {k}: {r:?}"),
        };
        if got_px != want_px {
            mismatches += 1;
            let diff: Vec<usize> = (0..784).filter(|&i| got_px[i] != want_px[i]).collect();
            eprintln!("image {k}: pixels differ at {diff:?}");
        }
        psnr += psnr_u8(img, &got_px);

        // The codec: bitstream and decompressed image equal the host's, byte for byte.
        let level = (k % levels) as u8;
        let coder = model.level(level).unwrap();
        let mut want_bits = vec![0u8; 64];
        let n = coder.encode(zp, &want_z, &mut want_bits).unwrap();
        want_bits.truncate(n.div_ceil(8));
        match dev
            .request(&Request::Compress { level, frame: img })
            .unwrap()
        {
            Reply::Bitstream(bits, bytes) => {
                if (bits as usize, &bytes) != (n, &want_bits) {
                    mismatches += 1;
                    eprintln!("image {k} level {level}: device {bits} bits {bytes:?}, host {n} bits {want_bits:?}");
                }
                coded_bits += n;
            }
            r => panic!("image {k}: {r:?}"),
        }
        let mut dq = vec![0i8; want_z.len()];
        coder.decode(zp, &want_bits, &mut dq).unwrap();
        let want_px = reference.decode(&dq).unwrap();
        match dev
            .request(&Request::Decompress {
                level,
                bitstream: &want_bits,
            })
            .unwrap()
        {
            Reply::Image(p) if p == want_px => {}
            r => {
                mismatches += 1;
                eprintln!("image {k} level {level}: decompressed image differs: {r:?}");
            }
        }
    }
    eprintln!(
        "{machine}: codec {:.1} bits per image on average over {levels} levels",
        coded_bits as f64 / images as f64
    );
    eprintln!(
        "{machine}: {images} images, {mismatches} mismatches, device PSNR {:.2} dB; device log:\n{}",
        psnr / images as f64,
        dev.log()
    );
    assert_eq!(mismatches, 0);
    assert!(dev.alive());
}

#[test]
fn cortex_m4_matches_reference() {
    stream_images("mps2-an386", 60);
}

#[test]
fn cortex_m7_matches_reference() {
    stream_images("mps2-an500", 20);
}

/// The NEON kernels: the Linux build of the app under qemu-aarch64.
#[test]
fn aarch64_neon_matches_reference() {
    stream_images("aarch64", 200);
}

/// Thousands of random and corrupted frames; the device answers each complete frame with an
/// error, never faults, and still serves a valid request afterwards.
#[test]
fn survives_garbage_frames() {
    let elf = build_firmware("app");
    let mut dev = Device::launch(&elf, "mps2-an386", None).expect("QEMU starts");
    let mut rng = XorShift(2026);
    let good = encode_frame_vec(1, &Request::Decode { latent: &[3u8; 16] }).unwrap();
    // Batches of 50 frames: the link is flow-controlled, so keep both directions moving.
    for batch in 0..40 {
        let mut stream = Vec::new();
        for j in 0..50 {
            let i = batch * 50 + j;
            match i % 8 {
                // random bytes without zeros, then a delimiter
                0 => stream.extend((0..rng.range(1, 40)).map(|_| rng.range(1, 255) as u8)),
                // a valid frame with one byte changed
                1..=3 => {
                    let mut f = good.clone();
                    let at = rng.range(0, f.len() as i32 - 2) as usize;
                    f[at] = (f[at] % 255) + 1;
                    f.pop();
                    stream.extend(f);
                }
                // a truncated frame
                4..=6 => stream.extend(&good[..rng.range(1, good.len() as i32 - 2) as usize]),
                // a frame longer than any buffer
                _ => stream.extend(std::iter::repeat_n(0x55u8, 1000)),
            }
            stream.push(0);
        }
        dev.send_raw(&stream).unwrap();
        // Every frame gets exactly one error reply.
        for _ in 0..50 {
            let (_, r) = dev.read_reply().expect("a reply per frame");
            assert!(matches!(r, Reply::Error(_)), "{r:?}");
        }
    }
    assert!(dev.alive(), "device faulted: {}", dev.log());
    match dev.request(&Request::Info).unwrap() {
        Reply::Info(_) => {}
        r => panic!("after garbage: {r:?}"),
    }
}

/// The app's defmt log, decoded on the host, against the checked-in snapshot
/// `tests/golden/app-an386.log` (knurling style). A short fixed session: start-up self-test, one
/// good request, one refused request, one corrupted frame. Counts that move with every kernel
/// change (instruction ticks, stack bytes) are masked to `#`; everything else must match.
/// `UPDATE_GOLDEN=1 cargo test -p edgevae-tests --test hil golden` rewrites the snapshot.
#[test]
fn app_log_matches_golden_snapshot() {
    let elf = build_firmware("app");
    let mut dev = Device::launch(&elf, "mps2-an386", Some(5)).expect("QEMU starts");
    match dev.request(&Request::Info).unwrap() {
        Reply::Info(_) => {}
        r => panic!("info: {r:?}"),
    }
    match dev
        .request(&Request::Decompress {
            level: 200,
            bitstream: &[0u8; 4],
        })
        .unwrap()
    {
        Reply::Error(_) => {}
        r => panic!("a missing level must be refused: {r:?}"),
    }
    let mut bad = encode_frame_vec(7, &Request::Info).unwrap();
    bad[1] ^= 0x20;
    dev.send_raw(&bad).unwrap();
    let (_, r) = dev.read_reply().expect("a reply to the corrupted frame");
    assert!(matches!(r, Reply::Error(_)), "{r:?}");
    // The device logs before it answers, so every line is in by now.
    let log = mask_counts(&dev.log());
    let path = edgevae_tests::root().join("tests/golden/app-an386.log");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &log).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("tests/golden/app-an386.log");
    assert_eq!(
        log, want,
        "the app's decoded log changed; if on purpose, rerun with UPDATE_GOLDEN=1"
    );
}

/// `key=123` → `key=#` for the counts that depend on the kernels.
fn mask_counts(log: &str) -> String {
    let mut out = String::new();
    for line in log.lines() {
        let words: Vec<String> = line
            .split(' ')
            .map(|w| match w.split_once('=') {
                Some((k, v))
                    if [
                        "encode_ticks",
                        "decode_ticks",
                        "entropy_enc",
                        "entropy_dec",
                        "stack_bytes",
                        "stack_high_water",
                    ]
                    .contains(&k)
                        && v.trim_end_matches(',').chars().all(|c| c.is_ascii_digit()) =>
                {
                    format!("{k}=#")
                }
                _ => w.to_string(),
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

/// A deterministic stand-in for a photograph: smooth gradients, a blocky ripple and texture.
fn pseudo_photo(width: usize, height: usize) -> edgevae::data::photos::Photo {
    let pixels = (0..height)
        .flat_map(|y| {
            (0..width).map(move |x| {
                let v = 40 + (x * 150) / width.max(1) + (y * 50) / height.max(1);
                let ripple = if (x / 8 + y / 8) % 2 == 0 { 16 } else { 0 };
                let texture = (x * 7 + y * 13) % 9;
                (v + ripple + texture).min(255) as u8
            })
        })
        .collect();
    edgevae::data::photos::Photo {
        width,
        height,
        channels: 1,
        pixels,
    }
}

#[test]
fn aarch64_neon_photo_frames_match_the_host_codec() {
    // The shipped grey photo model, frames streamed row by row over the link at 320×240 and an
    // odd size: every bitstream equals the host's whole-frame codec byte for byte.
    let model = edgevae_tests::root().join("models/photo-gray/model.evae");
    let photos = vec![
        ("pseudo-a".to_string(), pseudo_photo(400, 300)),
        ("pseudo-b".to_string(), pseudo_photo(200, 120)),
    ];
    let r = edgevae::device::run_photos(&model, "aarch64", &photos).expect("photo HIL runs");
    assert_eq!(r.frames.len(), 4);
    assert!(r.frames.iter().any(|f| (f.width, f.height) == (320, 240)));
    assert!(r.frames.iter().any(|f| (f.width, f.height) == (173, 97)));
    for f in &r.frames {
        assert!(f.exact, "{f:?}");
        assert!(f.bits > 0 && f.psnr > 20.0, "{f:?}");
    }
    assert_eq!(r.mismatches, 0);
}
