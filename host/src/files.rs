//! Writing files: every file the host writes goes through [`write_atomic`] (a temporary file in
//! the same folder, then a rename), so a crash or a full disk never leaves half a file.

use std::path::Path;

use crate::error::Error;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder (created with the
/// folder if missing, removed on failure), then a rename. The host's one way to write a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = Error::io;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.persist(path).map_err(|e| Error::io(path)(e.error))?;
    Ok(())
}

/// Writes a greyscale PNG (`pixels` row-major, `width × height`) atomically.
pub fn save_gray(path: &Path, width: u32, height: u32, pixels: Vec<u8>) -> Result<(), Error> {
    let img = image::GrayImage::from_raw(width, height, pixels)
        .ok_or_else(|| Error::Invalid("figure buffer has the wrong size".into()))?;
    save_png(path, image::DynamicImage::ImageLuma8(img))
}

/// Writes an RGB PNG (`rgb` row-major, 3 bytes a pixel) atomically: plots are drawn into memory
/// and land with this.
pub fn save_rgb(path: &Path, width: u32, height: u32, rgb: Vec<u8>) -> Result<(), Error> {
    let img = image::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| Error::Invalid("figure buffer has the wrong size".into()))?;
    save_png(path, image::DynamicImage::ImageRgb8(img))
}

/// PNG bytes of `img`.
pub fn png_bytes(img: &image::DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

fn save_png(path: &Path, img: image::DynamicImage) -> Result<(), Error> {
    let png = png_bytes(&img).map_err(|e| Error::data(path, format!("cannot encode PNG ({e})")))?;
    write_atomic(path, &png)
}
