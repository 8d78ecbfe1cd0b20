//! `edgevae photos`: the default photo sets, from Debian packages — training photographs from
//! gcompris-qt-data's resource bundles, held-out validation photographs from other packages.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use edgevae::data::photos::{gcompris_photos, validation_photos, GCOMPRIS_RCC};
use edgevae::Error;

#[derive(Args)]
pub struct PhotosArgs {
    /// Output folder: `train/` and `val/` (PNG, RGB) with their LICENSES.txt.
    #[arg(long, default_value = "runs/photos")]
    out: PathBuf,
    /// Folder of gcompris-qt-data's `.rcc` bundles.
    #[arg(long, default_value = GCOMPRIS_RCC)]
    gcompris: PathBuf,
}

const GCOMPRIS_COPYRIGHT: &str = "/usr/share/doc/gcompris-qt-data/copyright";
const VAL_COPYRIGHTS: [&str; 2] = [
    "/usr/share/doc/mate-backgrounds/copyright",
    "/usr/share/doc/opencv-doc/copyright",
];

fn licences(header: &str, files: &[&str]) -> String {
    let mut s = format!("{header}\n\n");
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(t) => s += &format!("===== {f} =====\n{t}\n"),
            Err(_) => s += &format!("===== {f}: not found on this machine =====\n"),
        }
    }
    s
}

pub fn run_photos(a: PhotosArgs) -> Result<(), Error> {
    let (train, left) = gcompris_photos(&a.gcompris)?;
    let dir = a.out.join("train");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let mut px = 0usize;
    for (name, p) in &train {
        p.save_png(&dir.join(format!("{name}.png")))?;
        px += p.width * p.height;
    }
    edgevae::files::write_atomic(
        &dir.join("LICENSES.txt"),
        licences(
            "Photographs extracted from Debian's gcompris-qt-data resource bundles (licences per file below).",
            &[GCOMPRIS_COPYRIGHT],
        )
        .as_bytes(),
    )?;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (why, _) in &left {
        *reasons.entry(format!("{why:?}")).or_default() += 1;
    }
    println!(
        "train: {} photographs ({:.1} Mpixel) in {}; left out: {reasons:?}",
        train.len(),
        px as f64 / 1e6,
        dir.display()
    );
    let val = validation_photos()?;
    let dir = a.out.join("val");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let mut px = 0usize;
    for (name, p) in &val {
        p.save_png(&dir.join(format!("{name}.png")))?;
        px += p.width * p.height;
    }
    edgevae::files::write_atomic(
        &dir.join("LICENSES.txt"),
        licences(
            "Held-out validation photographs from mate-backgrounds and opencv-doc (never trained on).",
            &VAL_COPYRIGHTS,
        )
        .as_bytes(),
    )?;
    println!(
        "val: {} photographs ({:.1} Mpixel) in {}",
        val.len(),
        px as f64 / 1e6,
        dir.display()
    );
    Ok(())
}
