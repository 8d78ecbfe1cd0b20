//! `edgevae compress` and `edgevae decompress`: users' images to `.evz` files and back.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

/// The codec model used when --model is not given.
const DEFAULT_CODEC_MODEL: &str = "models/wide-gauss/model.evae";

#[derive(Args)]
pub struct CompressArgs {
    /// A PNG/JPEG/WebP file, or a folder of them.
    input: PathBuf,
    /// The .evz file (or the folder, for a folder input).
    #[arg(short, long)]
    out: PathBuf,
    /// Quality 1..=levels of the model (higher: more bits, better pictures); default the finest.
    #[arg(long)]
    quality: Option<u8>,
    /// Model file with an entropy section.
    #[arg(long, default_value = DEFAULT_CODEC_MODEL)]
    model: PathBuf,
}

#[derive(Args)]
pub struct DecompressArgs {
    /// An .evz file, or a folder of them.
    input: PathBuf,
    /// The PNG file (or the folder, for a folder input).
    #[arg(short, long)]
    out: PathBuf,
    /// The model file the .evz files were made with.
    #[arg(long, default_value = DEFAULT_CODEC_MODEL)]
    model: PathBuf,
}

pub fn run_compress(a: CompressArgs) -> Result<(), Error> {
    let reports = edgevae::codec::compress_path(&a.model, &a.input, &a.out, a.quality)?;
    for r in &reports {
        if r.colour {
            println!(
                "note: {} is in colour; coded as luma (grey)",
                r.input.display()
            );
        }
        println!(
            "{} -> {}: {}x{}, quality {}, {} bytes ({} bitstream bits + {} container bytes), {:.4} bpp, PSNR {:.2} dB, SSIM {:.4}",
            r.input.display(),
            r.output.display(),
            r.width,
            r.height,
            r.quality,
            r.bytes,
            r.bitstream_bits,
            r.bytes - r.bitstream_bits.div_ceil(8),
            r.bpp,
            r.psnr,
            r.ssim
        );
    }
    Ok(())
}

pub fn run_decompress(a: DecompressArgs) -> Result<(), Error> {
    for (out, w, h) in edgevae::codec::decompress_path(&a.model, &a.input, &a.out)? {
        println!("wrote {} ({w}x{h})", out.display());
    }
    Ok(())
}
