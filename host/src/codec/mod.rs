//! The learned codec on the host: the `.evz` container and `compress`/`decompress` of users'
//! images of any size, with the entropy model that `quantize` wrote into the model file
//! ([`crate::quantize::entropy`]).
//!
//! Every bit goes through the one coder in `edgevae_shared::entropy`, and every latent through the
//! firmware's scalar kernels ([`Reference`]), so a 28×28 image compressed here is the bitstream
//! the device sends, bit for bit.
//!
//! ```text
//! .evz container (little-endian)
//! offset size
//!      0    4  magic b"EVZ\0"
//!      4    1  container version (1)
//!      5    1  quality level (0 = coarsest)
//!      6    4  CRC-32 of the model file's payload (the model that wrote it)
//!     10    4  width, 4 height (pixels)
//!     18    n  one bitstream: every tile's latent, tiles in row-major order
//!   18+n    4  CRC-32 of bytes [0, 18+n)
//! ```

use std::path::Path;

use edgevae_shared::entropy::{Decoder, Encoder};
use edgevae_shared::format::Model;

use crate::error::Error;
use crate::quantize::Reference;

pub mod frame;

/// Container magic and version.
pub const EVZ_MAGIC: [u8; 4] = *b"EVZ\0";
pub const EVZ_VERSION: u8 = 1;
/// Bytes of container around the bitstream: 18 header + 4 CRC.
pub const EVZ_OVERHEAD: usize = 22;
/// Largest image side a container may declare.
pub const MAX_SIDE: u32 = 1 << 15;
/// Most pixels a container may declare (64 Mpixel), so a crafted header cannot ask for more
/// memory than a real picture would.
pub const MAX_PIXELS: u64 = 1 << 26;

fn size_ok(width: u32, height: u32) -> bool {
    width > 0
        && height > 0
        && width <= MAX_SIDE
        && height <= MAX_SIDE
        && width as u64 * height as u64 <= MAX_PIXELS
}

/// A grey image of any size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gray {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Gray {
    /// Loads a PNG or JPEG; colour is converted to luma. Returns the image and whether it was
    /// in colour.
    pub fn load(path: &Path) -> Result<(Gray, bool), Error> {
        let img = image::ImageReader::open(path)
            .map_err(Error::io(path))?
            .with_guessed_format()
            .map_err(Error::io(path))?
            .decode()
            .map_err(|e| Error::data(path, format!("not a readable PNG/JPEG image: {e}")))?;
        let colour = img.color().has_color();
        let g = img.to_luma8();
        let (width, height) = g.dimensions();
        if width == 0 || height == 0 {
            return Err(Error::data(path, "image has no pixels"));
        }
        Ok((
            Gray {
                width,
                height,
                pixels: g.into_raw(),
            },
            colour,
        ))
    }

    /// PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, Error> {
        let img = image::GrayImage::from_raw(self.width, self.height, self.pixels.clone())
            .ok_or_else(|| Error::Invalid("internal: image size mismatch".into()))?;
        crate::files::png_bytes(&image::DynamicImage::ImageLuma8(img))
            .map_err(|e| Error::Invalid(format!("PNG encoding failed: {e}")))
    }

    /// Tile `(ty, tx)` of `side × side` pixels; edges padded by replicating the last row/column.
    fn tile(&self, ty: u32, tx: u32, th: u32, tw: u32) -> Vec<u8> {
        let mut t = Vec::with_capacity((th * tw) as usize);
        for y in 0..th {
            let sy = (ty * th + y).min(self.height - 1);
            for x in 0..tw {
                let sx = (tx * tw + x).min(self.width - 1);
                t.push(self.pixels[(sy * self.width + sx) as usize]);
            }
        }
        t
    }
}

/// What went wrong reading a `.evz` file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvzError {
    #[error("{len} bytes, too short for an .evz file ({EVZ_OVERHEAD} at least)")]
    TooShort { len: usize },
    #[error("not an .evz file (bad magic)")]
    BadMagic,
    #[error("container version {0} is not supported (this build reads 1 and 2)")]
    Version(u8),
    #[error("file is corrupt or truncated (CRC mismatch)")]
    Checksum,
    #[error("made with another model (model CRC {file:#010x}, this model {model:#010x})")]
    WrongModel { file: u32, model: u32 },
    #[error("quality level {level} does not exist in this model ({levels} levels)")]
    NoSuchLevel { level: u8, levels: usize },
    #[error(
        "image size {width}x{height} is outside 1..={MAX_SIDE} a side or over {MAX_PIXELS} pixels"
    )]
    BadSize { width: u32, height: u32 },
    #[error("file has {file} channels, the model {model}")]
    Channels { file: u8, model: u8 },
}

/// Number of tiles along each axis.
fn tiles(model: &Model<'_>, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let th = model.header().input.h as u32;
    let tw = model.header().input.w as u32;
    (height.div_ceil(th), width.div_ceil(tw), th, tw)
}

/// Result of compressing one image.
#[derive(Clone, Debug)]
pub struct Compressed {
    /// The whole `.evz` file.
    pub file: Vec<u8>,
    /// Meaningful bits of the bitstream (termination included).
    pub bits: usize,
    /// The image as `decompress` returns it (decoded from `file`).
    pub decoded: Gray,
}

/// Compresses `img` at quality `level` with `model` (which must carry an entropy section).
pub fn compress(model: &Model<'_>, level: u8, img: &Gray) -> Result<Compressed, Error> {
    let levels = model.entropy().map_or(0, |e| e.levels.len());
    let coder = model
        .level(level)
        .ok_or(EvzError::NoSuchLevel { level, levels })?;
    if model.header().input.c != 1 {
        return Err(Error::Invalid(
            "compress needs a single-channel model".into(),
        ));
    }
    if !size_ok(img.width, img.height) {
        return Err(Error::Invalid(
            EvzError::BadSize {
                width: img.width,
                height: img.height,
            }
            .to_string(),
        ));
    }
    let (ny, nx, th, tw) = tiles(model, img.width, img.height);
    let zp = model.header().latent_q.zero_point;
    let z = model.header().latent as usize;
    let mut r = Reference::new(model);
    let mut stream = vec![0u8; (ny * nx) as usize * (2 * z + 1) + 8];
    let mut enc = Encoder::new(&mut stream);
    for ty in 0..ny {
        for tx in 0..nx {
            let latent = r.encode(&img.tile(ty, tx, th, tw))?;
            coder.encode_into(&mut enc, zp, &latent)?;
        }
    }
    let bits = enc.finish()?;
    stream.truncate(bits.div_ceil(8));
    let mut file = Vec::with_capacity(stream.len() + EVZ_OVERHEAD);
    file.extend_from_slice(&EVZ_MAGIC);
    file.push(EVZ_VERSION);
    file.push(level);
    file.extend_from_slice(&model.crc().to_le_bytes());
    file.extend_from_slice(&img.width.to_le_bytes());
    file.extend_from_slice(&img.height.to_le_bytes());
    file.extend_from_slice(&stream);
    let crc = edgevae_shared::crc::crc32(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    // What the user will get back, from the file itself.
    let decoded = decompress(model, &file)?;
    Ok(Compressed {
        file,
        bits,
        decoded,
    })
}

/// Copies a decoded tile into the image, dropping the padding.
fn place(img: &mut Gray, tile: &[u8], ty: u32, tx: u32, th: u32, tw: u32) {
    for y in 0..th {
        let iy = ty * th + y;
        if iy >= img.height {
            break;
        }
        for x in 0..tw {
            let ix = tx * tw + x;
            if ix >= img.width {
                break;
            }
            img.pixels[(iy * img.width + ix) as usize] = tile[(y * tw + x) as usize];
        }
    }
}

/// The header fields of a checked `.evz` file: (level, width, height, bitstream).
pub fn parse_evz<'f>(
    model: &Model<'_>,
    file: &'f [u8],
) -> Result<(u8, u32, u32, &'f [u8]), EvzError> {
    if file.len() < EVZ_OVERHEAD {
        return Err(EvzError::TooShort { len: file.len() });
    }
    if file[..4] != EVZ_MAGIC {
        return Err(EvzError::BadMagic);
    }
    if file[4] != EVZ_VERSION {
        return Err(EvzError::Version(file[4]));
    }
    let (body, crc) = file.split_at(file.len() - 4);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if edgevae_shared::crc::crc32(body) != u32_at(crc, 0) {
        return Err(EvzError::Checksum);
    }
    let level = body[5];
    let model_crc = u32_at(body, 6);
    if model_crc != model.crc() {
        return Err(EvzError::WrongModel {
            file: model_crc,
            model: model.crc(),
        });
    }
    let levels = model.entropy().map_or(0, |e| e.levels.len());
    if level as usize >= levels {
        return Err(EvzError::NoSuchLevel { level, levels });
    }
    let (width, height) = (u32_at(body, 10), u32_at(body, 14));
    if !size_ok(width, height) {
        return Err(EvzError::BadSize { width, height });
    }
    Ok((level, width, height, &body[18..]))
}

/// Decompresses a `.evz` file made with `model`.
pub fn decompress(model: &Model<'_>, file: &[u8]) -> Result<Gray, Error> {
    let (level, width, height, stream) = parse_evz(model, file)?;
    let coder = model
        .level(level)
        .ok_or_else(|| Error::Invalid("internal: level vanished".into()))?;
    let (ny, nx, th, tw) = tiles(model, width, height);
    let zp = model.header().latent_q.zero_point;
    let mut r = Reference::new(model);
    let mut dec = Decoder::new(stream);
    let mut img = Gray {
        width,
        height,
        pixels: vec![0; width as usize * height as usize],
    };
    let mut latent = vec![0i8; model.header().latent as usize];
    for ty in 0..ny {
        for tx in 0..nx {
            coder
                .decode_from(&mut dec, zp, &mut latent)
                .map_err(|e| Error::Invalid(format!("entropy decoding: {e}")))?;
            let px = r.decode(&latent)?;
            place(&mut img, &px, ty, tx, th, tw);
        }
    }
    Ok(img)
}

/// One file through `compress`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileReport {
    pub input: std::path::PathBuf,
    pub output: std::path::PathBuf,
    pub width: u32,
    pub height: u32,
    /// Colour input converted to luma.
    pub colour: bool,
    pub quality: u8,
    /// Bytes of the `.evz` file, container included.
    pub bytes: usize,
    /// Meaningful bits of the bitstream alone.
    pub bitstream_bits: usize,
    /// File bits per pixel.
    pub bpp: f64,
    pub psnr: f64,
    pub ssim: f64,
}

/// The model CRC an `.evz` file names (either container version), if it looks like one.
pub fn evz_model_crc(file: &[u8]) -> Option<u32> {
    (file.len() >= 10 && file[..4] == EVZ_MAGIC)
        .then(|| u32::from_le_bytes([file[6], file[7], file[8], file[9]]))
}

/// The first of `candidates` (model files) whose CRC is the one `file` (an `.evz` file) names
/// and that can decode it: an encoder-only device file names the same model, but has no
/// decoder.
pub fn find_model_for(
    file: &[u8],
    candidates: &[std::path::PathBuf],
) -> Option<std::path::PathBuf> {
    let want = evz_model_crc(file)?;
    candidates.iter().find_map(|c| {
        let bytes = std::fs::read(c).ok()?;
        let model = Model::from_bytes(&bytes).ok()?;
        (model.crc() == want && !model.encoder_only()).then(|| c.clone())
    })
}

/// Reads and validates a model file that carries an entropy section.
pub fn read_codec_model(path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    let has_entropy = Model::from_bytes(&bytes)
        .map_err(|e| Error::data(path, e))?
        .entropy()
        .is_some();
    if !has_entropy {
        return Err(Error::data(
            path,
            "model has no entropy section (format v1 or quantized without tables): run `edgevae quantize` again",
        ));
    }
    Ok(bytes)
}

/// Whether `p` names an image file the codec reads (PNG, JPEG or WebP, by extension).
pub fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg" | "webp")
    )
}

/// Files of `dir` that `keep` accepts, sorted by name.
fn list(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && keep(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::data(dir, "folder holds no file to process"));
    }
    Ok(files)
}

/// `(input, output)` pairs: a file to a file, or a folder's files to a folder with `ext`.
fn pairs(
    input: &Path,
    out: &Path,
    keep: impl Fn(&Path) -> bool,
    ext: &str,
) -> Result<Vec<(std::path::PathBuf, std::path::PathBuf)>, Error> {
    if input.is_dir() {
        Ok(list(input, keep)?
            .into_iter()
            .map(|p| {
                let name = p.file_stem().unwrap_or_default().to_os_string();
                let o = out.join(name).with_extension(ext);
                (p, o)
            })
            .collect())
    } else {
        Ok(vec![(input.to_path_buf(), out.to_path_buf())])
    }
}

/// `edgevae compress`: one image or a folder of PNG/JPEG files to `.evz` files. `quality` is
/// 1..=levels (higher is better; default the finest).
pub fn compress_path(
    model_path: &Path,
    input: &Path,
    out: &Path,
    quality: Option<u8>,
) -> Result<Vec<FileReport>, Error> {
    let bytes = read_codec_model(model_path)?;
    let model = Model::from_bytes(&bytes).map_err(|e| Error::data(model_path, e))?;
    let levels = model.entropy().map_or(0, |e| e.levels.len()) as u8;
    let quality = quality.unwrap_or(levels);
    if quality == 0 || quality > levels {
        return Err(Error::Invalid(format!(
            "--quality {quality}: this model has qualities 1..={levels}"
        )));
    }
    let mut reports = Vec::new();
    if model.frame().is_some() {
        for (inp, outp) in pairs(input, out, is_image, "evz")? {
            reports.push(compress_photo_file(&model, quality, &inp, &outp)?);
        }
        return Ok(reports);
    }
    for (inp, outp) in pairs(input, out, is_image, "evz")? {
        let (img, colour) = Gray::load(&inp)?;
        let c = compress(&model, quality - 1, &img)?;
        crate::files::write_atomic(&outp, &c.file)?;
        let f = crate::metrics::to_f32;
        reports.push(FileReport {
            input: inp,
            output: outp,
            width: img.width,
            height: img.height,
            colour,
            quality,
            bytes: c.file.len(),
            bitstream_bits: c.bits,
            bpp: 8.0 * c.file.len() as f64 / img.pixels.len() as f64,
            psnr: crate::metrics::psnr_u8(&img.pixels, &c.decoded.pixels),
            ssim: crate::metrics::ssim(
                &f(&img.pixels),
                &f(&c.decoded.pixels),
                img.height as usize,
                img.width as usize,
            ),
        });
    }
    Ok(reports)
}

/// One photo through a fully convolutional model (grey or colour as the model is).
fn compress_photo_file(
    model: &Model<'_>,
    quality: u8,
    inp: &Path,
    outp: &Path,
) -> Result<FileReport, Error> {
    let rgb = crate::data::photos::Photo::load(inp, 3)?;
    let colour = rgb
        .pixels
        .chunks_exact(3)
        .any(|p| p[0] != p[1] || p[1] != p[2]);
    let photo = if model.header().input.c == 1 {
        rgb.to_gray()
    } else {
        rgb
    };
    let c = frame::compress_frame(model, quality - 1, &photo)?;
    crate::files::write_atomic(outp, &c.file)?;
    let (a, b) = (photo.to_gray(), c.decoded.to_gray());
    let f = crate::metrics::to_f32;
    Ok(FileReport {
        input: inp.to_path_buf(),
        output: outp.to_path_buf(),
        width: photo.width as u32,
        height: photo.height as u32,
        colour: colour && photo.channels == 1,
        quality,
        bytes: c.file.len(),
        bitstream_bits: c.bits,
        bpp: 8.0 * c.file.len() as f64 / (photo.width * photo.height) as f64,
        psnr: crate::metrics::psnr_u8(&photo.pixels, &c.decoded.pixels),
        ssim: crate::metrics::ssim(&f(&a.pixels), &f(&b.pixels), a.height, a.width),
    })
}

/// `edgevae decompress`: one `.evz` file or a folder of them to PNG files (grey, or RGB from a
/// colour model). Returns each output with its width and height.
pub fn decompress_path(
    model_path: &Path,
    input: &Path,
    out: &Path,
) -> Result<Vec<(std::path::PathBuf, u32, u32)>, Error> {
    let bytes = read_codec_model(model_path)?;
    let model = Model::from_bytes(&bytes).map_err(|e| Error::data(model_path, e))?;
    let is_evz = |p: &Path| p.extension().is_some_and(|e| e == "evz");
    let mut done = Vec::new();
    for (inp, outp) in pairs(input, out, is_evz, "png")? {
        let file = std::fs::read(&inp).map_err(Error::io(&inp))?;
        if model.frame().is_some() {
            let img = frame::decompress_frame(&model, &file).map_err(|e| Error::data(&inp, e))?;
            img.save_png(&outp)?;
            done.push((outp, img.width as u32, img.height as u32));
        } else {
            let img = decompress(&model, &file).map_err(|e| Error::data(&inp, e))?;
            let png = img.to_png()?;
            crate::files::write_atomic(&outp, &png)?;
            done.push((outp, img.width, img.height));
        }
    }
    Ok(done)
}
