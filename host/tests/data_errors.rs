//! Bad data gives one clear error naming the file, never a panic.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use edgevae::data::{self, Split};

const REAL_LABELS: &str = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

fn err_of(path: &Path) -> String {
    match data::load(Some(path), Split::Test) {
        Ok(d) => panic!(
            "{} loaded {} images, expected an error",
            path.display(),
            d.len()
        ),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, path: &Path, word: &str) {
    assert!(
        msg.contains(&path.display().to_string()),
        "no path in: {msg}"
    );
    assert!(msg.to_lowercase().contains(word), "no '{word}' in: {msg}");
    assert!(!msg.contains('\n'), "not one line: {msg}");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx3(magic: u32, n: u32, payload: usize) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in [n, 28, 28] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.resize(16 + payload, 9);
    v
}

#[test]
fn missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nothing-here");
    assert_names(&err_of(&p), &p, "does not exist");
}

#[test]
fn missing_split_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx3(0x803, 1, 784),
    )
    .unwrap();
    let msg = err_of(dir.path());
    assert!(msg.contains("t10k-images-idx3-ubyte"), "{msg}");
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn truncated_and_corrupt_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let good = gz(&idx3(0x803, 10, 7840));
    let p = dir.path().join("t10k-images-idx3-ubyte.gz");
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    assert_names(&err_of(dir.path()), &p, "gzip");

    let mut bad = good.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid - 8..mid + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&p, &bad).unwrap();
    assert_names(&err_of(dir.path()), &p, "gzip");
}

#[test]
fn real_gzip_file_cut_short() {
    let real = std::fs::read(REAL_LABELS)
        .unwrap_or_else(|e| panic!("{REAL_LABELS}: {e} (apt-get install dataset-fashion-mnist)"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx3(0x803, 10_000, 7_840_000),
    )
    .unwrap();
    let p = dir.path().join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&p, &real[..real.len() - 100]).unwrap();
    assert_names(&err_of(dir.path()), &p, "truncated");
}

#[test]
fn wrong_magic_wrong_length_and_label_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t10k-images-idx3-ubyte");
    std::fs::write(&p, idx3(0x801, 2, 2 * 784)).unwrap();
    assert_names(&err_of(dir.path()), &p, "magic");

    std::fs::write(&p, idx3(0x803, 2, 784)).unwrap();
    assert_names(&err_of(dir.path()), &p, "truncated");

    std::fs::write(&p, idx3(0x803, 2, 2 * 784)).unwrap();
    let l = dir.path().join("t10k-labels-idx1-ubyte");
    let mut labels = 0x801u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&3u32.to_be_bytes());
    labels.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&l, labels).unwrap();
    assert_names(&err_of(dir.path()), &l, "labels");

    std::fs::write(&p, [0u8, 0]).unwrap();
    assert_names(&err_of(dir.path()), &p, "header");
}

#[test]
fn image_folder_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..3u8 {
        let img =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, k]));
        img.save(dir.path().join(format!("img{k}.png"))).unwrap();
    }
    let train = data::load(Some(dir.path()), Split::Train).unwrap();
    let test = data::load(Some(dir.path()), Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (2, 1));
    assert_eq!(
        (train.rows, train.cols, train.pixels.len()),
        (28, 28, 2 * 784)
    );

    let bad = dir.path().join("zz-broken.png");
    std::fs::write(&bad, b"this is not a PNG").unwrap();
    assert_names(&err_of(dir.path()), &bad, "decode");

    let empty = tempfile::tempdir().unwrap();
    assert_names(&err_of(empty.path()), empty.path(), "images");
}

#[test]
fn cli_prints_one_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-data");
    let out = Command::new(env!("CARGO_BIN_EXE_edgevae"))
        .args(["train", "--quiet", "--data"])
        .arg(&missing)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no-data") && err.contains("does not exist"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_edgevae"))
        .args(["eval", "--run"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn recover_rejects_bad_settings_and_unreadable_images() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgevae"))
            .arg("recover")
            .args(args)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };
    let err = run(&["--task", "inpaint", "--missing", "1.5"]);
    assert!(err.contains("missing share 1.5"), "{err}");
    let err = run(&["--task", "cs", "--m", "0"]);
    assert!(err.contains("m"), "{err}");
    let err = run(&["--task", "denoise", "--steps", "0"]);
    assert!(err.contains("--steps"), "{err}");
    let not_png = dir.path().join("broken.png");
    std::fs::write(&not_png, b"not an image at all").unwrap();
    let err = run(&["--task", "denoise", "--input", not_png.to_str().unwrap()]);
    assert!(
        err.contains("broken.png") && err.contains("cannot decode"),
        "{err}"
    );
}
