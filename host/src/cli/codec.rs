//! `edgevae compress` and `edgevae decompress`: users' images to `.evz` files and back.

use std::path::PathBuf;

use clap::Args;
use edgevae::Error;

/// The photo model `compress` uses when --model is not given (photographs of any size).
const DEFAULT_PHOTO_MODEL: &str = "models/photo-gray/model.evae";
/// The 28×28 tile model, the fallback where no photo model is shipped.
const DEFAULT_TILE_MODEL: &str = "models/wide-gauss/model.evae";
/// Where `decompress` looks, in order, for the model an `.evz` file names.
const SHIPPED_MODELS: [&str; 4] = [
    DEFAULT_PHOTO_MODEL,
    DEFAULT_COLOUR_MODEL,
    DEFAULT_TILE_MODEL,
    "models/default/model.evae",
];

/// The colour photo model, the default for colour photographs.
const DEFAULT_COLOUR_MODEL: &str = "models/photo-rgb/model.evae";

fn default_compress_model() -> PathBuf {
    let photo = PathBuf::from(DEFAULT_PHOTO_MODEL);
    if photo.exists() {
        photo
    } else {
        PathBuf::from(DEFAULT_TILE_MODEL)
    }
}

/// Whether the image file (or the first image of a folder, by name) is in colour, from its
/// header; `false` where it cannot be read (compressing it will say why).
fn first_is_colour(input: &std::path::Path) -> bool {
    use image::ImageDecoder;
    let first = if input.is_dir() {
        std::fs::read_dir(input).ok().and_then(|d| {
            let mut v: Vec<PathBuf> = d
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| edgevae::codec::is_image(p))
                .collect();
            v.sort();
            v.into_iter().next()
        })
    } else {
        Some(input.to_path_buf())
    };
    first
        .and_then(|f| image::ImageReader::open(f).ok())
        .and_then(|r| r.with_guessed_format().ok())
        .and_then(|r| r.into_decoder().ok())
        .is_some_and(|d| d.color_type().has_color())
}

/// `compress`'s model without --model: the colour photo model for colour input when shipped,
/// else the grey photo model, else the tile model.
fn default_model_for(input: &std::path::Path) -> PathBuf {
    let colour = PathBuf::from(DEFAULT_COLOUR_MODEL);
    if colour.exists() && first_is_colour(input) {
        colour
    } else {
        default_compress_model()
    }
}

/// The model for decompressing `input` (a file or folder of `.evz` files): the shipped model
/// whose CRC the first file names, else the default.
fn default_decompress_model(input: &std::path::Path) -> PathBuf {
    let first = if input.is_dir() {
        std::fs::read_dir(input).ok().and_then(|d| {
            let mut v: Vec<PathBuf> = d
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "evz"))
                .collect();
            v.sort();
            v.into_iter().next()
        })
    } else {
        Some(input.to_path_buf())
    };
    let candidates: Vec<PathBuf> = SHIPPED_MODELS.iter().map(PathBuf::from).collect();
    first
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|bytes| edgevae::codec::find_model_for(&bytes, &candidates))
        .unwrap_or_else(default_compress_model)
}

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
    /// Also code each input with JPEG (libjpeg-turbo, optimised Huffman) at the highest quality
    /// whose file is no larger, and print both PSNRs (in the model's channels).
    #[arg(long)]
    vs_jpeg: bool,
    /// Model file with an entropy section [default: models/photo-gray/model.evae (colour
    /// images coded as luma; models/photo-rgb/model.evae codes colour);
    /// models/wide-gauss/model.evae where no photo model is shipped].
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Args)]
pub struct DecompressArgs {
    /// An .evz file, or a folder of them.
    input: PathBuf,
    /// The PNG file (or the folder, for a folder input).
    #[arg(short, long)]
    out: PathBuf,
    /// The model file the .evz files were made with [default: the shipped model whose CRC the
    /// file names].
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run_compress(a: CompressArgs) -> Result<(), Error> {
    let model = a
        .model
        .clone()
        .unwrap_or_else(|| default_model_for(&a.input));
    let reports = edgevae::codec::compress_path(&model, &a.input, &a.out, a.quality)?;
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
        if a.vs_jpeg {
            vs_jpeg(&model, r)?;
        }
    }
    Ok(())
}

/// JPEG at the same size or smaller than `r`'s `.evz` file, on the same picture.
fn vs_jpeg(model: &std::path::Path, r: &edgevae::codec::FileReport) -> Result<(), Error> {
    use edgevae::data::photos::Photo;
    let bytes = edgevae::codec::read_codec_model(model)?;
    let m = edgevae_shared::format::Model::from_bytes(&bytes).map_err(|e| Error::data(model, e))?;
    let channels = if m.frame().is_some() {
        m.header().input.c as usize
    } else {
        1
    };
    let photo = Photo::load(&r.input, channels)?;
    let mut best = None;
    for q in 1..=100u8 {
        let c = edgevae::eval::refcodec::jpeg(&photo, q)?;
        if c.bytes > r.bytes {
            break;
        }
        best = Some((q, c));
    }
    match best {
        Some((q, c)) => println!(
            "  JPEG (libjpeg-turbo, optimised Huffman{}) at the same size: quality {q}, {} bytes, {:.4} bpp, PSNR {:.2} dB ({:+.2} dB for edgevae)",
            if channels == 3 { ", 4:2:0" } else { "" },
            c.bytes,
            8.0 * c.bytes as f64 / (photo.width * photo.height) as f64,
            edgevae::eval::refcodec::psnr(&photo, &c.decoded),
            r.psnr - edgevae::eval::refcodec::psnr(&photo, &c.decoded)
        ),
        None => {
            let c = edgevae::eval::refcodec::jpeg(&photo, 1)?;
            println!(
                "  JPEG cannot go as small: its smallest file (quality 1) is {} bytes ({:.4} bpp), PSNR {:.2} dB",
                c.bytes,
                8.0 * c.bytes as f64 / (photo.width * photo.height) as f64,
                edgevae::eval::refcodec::psnr(&photo, &c.decoded)
            )
        }
    }
    Ok(())
}

pub fn run_decompress(a: DecompressArgs) -> Result<(), Error> {
    let model = a
        .model
        .clone()
        .unwrap_or_else(|| default_decompress_model(&a.input));
    for (out, w, h) in edgevae::codec::decompress_path(&model, &a.input, &a.out)? {
        println!("wrote {} ({w}x{h})", out.display());
    }
    Ok(())
}
