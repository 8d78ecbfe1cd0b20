//! Image data: idx files in the MNIST layout (gzip or raw) and folders of PNG/JPEG images.
//!
//! Everything here returns [`Error`] naming the file and what is wrong with it; nothing panics on
//! bad input. Pixels stay `u8` (what the device receives); [`Dataset::to_f32`] scales to [0, 1].

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::Error;

pub mod photos;
pub mod rcc;

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Side of the square model input, in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Pixels in one model input image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

const IDX_MAGIC_U8_1D: u32 = 0x0000_0801;
const IDX_MAGIC_U8_3D: u32 = 0x0000_0803;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Which part of a data source to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-*` idx files; the first 90 % (sorted by name) of an image folder.
    Train,
    /// `t10k-*` idx files; the last 10 % (at least one image) of an image folder.
    Test,
}

/// Grayscale images, row-major, one byte per pixel, with one label per image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// `len() * rows * cols` pixels, image after image, rows top to bottom.
    pub pixels: Vec<u8>,
    /// One class label per image (0 for image folders, which carry no labels).
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The first `n` images (all of them when `n` is larger).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * self.rows * self.cols);
        self
    }

    /// All pixels scaled to [0, 1].
    pub fn to_f32(&self) -> Vec<f32> {
        self.pixels.iter().map(|&p| f32::from(p) / 255.0).collect()
    }

    /// Up to `n` images spread evenly over the set (every `len / n`-th image): calibration and
    /// table-building sets. Empty for an empty set.
    pub fn spread(&self, n: usize) -> Vec<&[u8]> {
        let len = self.len();
        if len == 0 || n == 0 {
            return Vec::new();
        }
        let n = n.min(len);
        let step = len / n;
        (0..n).map(|k| self.image(k * step)).collect()
    }
}

/// Loads one split from `source`: `None` means [`DEFAULT_DATA_DIR`].
///
/// `source` may be
/// - a folder holding `{train,t10k}-{images-idx3,labels-idx1}-ubyte` files, gzip (`.gz`) or raw;
/// - one idx3 image file (its labels are read from the matching `labels-idx1` file when present);
/// - a folder of PNG/JPEG images, converted to grayscale and resized/cropped to 28×28.
pub fn load(source: Option<&Path>, split: Split) -> Result<Dataset, Error> {
    let dir = source.unwrap_or(Path::new(DEFAULT_DATA_DIR));
    if !dir.exists() {
        let hint = if source.is_none() {
            " (install Debian's dataset-fashion-mnist package or pass --data)"
        } else {
            ""
        };
        return Err(Error::Data {
            path: dir.to_path_buf(),
            problem: format!("does not exist{hint}"),
        });
    }
    if dir.is_file() {
        return load_idx_pair(dir, None);
    }
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"));
    if let Some(images) = images {
        let labels = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"));
        return load_idx_pair(&images, labels.as_deref());
    }
    if find_idx(dir, "train-images-idx3-ubyte").is_some()
        || find_idx(dir, "t10k-images-idx3-ubyte").is_some()
    {
        return Err(Error::Data {
            path: dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            problem: "missing (the folder holds the other split only)".into(),
        });
    }
    load_image_folder(dir, split)
}

fn find_idx(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// Loads an idx3 image file and, if given (or found beside it), its idx1 label file.
fn load_idx_pair(images: &Path, labels: Option<&Path>) -> Result<Dataset, Error> {
    let (dims, pixels) = read_idx(images, IDX_MAGIC_U8_3D)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let labels_path = labels.map(Path::to_path_buf).or_else(|| {
        let name = images.file_name()?.to_str()?;
        let guess = images.with_file_name(name.replace("images-idx3", "labels-idx1"));
        (guess != images && guess.is_file()).then_some(guess)
    });
    let labels = match labels_path {
        Some(path) => {
            let (ldims, labels) = read_idx(&path, IDX_MAGIC_U8_1D)?;
            if ldims[0] != n {
                return Err(Error::Data {
                    path,
                    problem: format!(
                        "holds {} labels but the images file holds {n} images",
                        ldims[0]
                    ),
                });
            }
            labels
        }
        None => vec![0; n],
    };
    Ok(Dataset {
        pixels,
        labels,
        rows,
        cols,
    })
}

/// Parses an idx file of unsigned bytes (gzip or raw, detected from the content), checking the
/// magic number, the rank and that the payload is exactly as long as the dimensions say.
pub fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), Error> {
    let raw = fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Data {
                path: path.to_path_buf(),
                problem: format!("corrupt or truncated gzip stream ({e})"),
            })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, magic).map_err(|problem| Error::Data {
        path: path.to_path_buf(),
        problem,
    })
}

fn parse_idx(bytes: &[u8], magic: u32) -> Result<(Vec<usize>, Vec<u8>), String> {
    let word = |i: usize| -> Result<u32, String> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("truncated idx header ({} bytes)", bytes.len()))
    };
    let found = word(0)?;
    if found != magic {
        return Err(format!(
            "bad idx magic number {found:#010x}, expected {magic:#010x} \
             (unsigned bytes, {} dimensions)",
            magic & 0xff
        ));
    }
    let rank = (magic & 0xff) as usize;
    let dims = (1..=rank)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Result<Vec<_>, _>>()?;
    let header = 4 * (rank + 1);
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("idx dimensions {dims:?} overflow"))?;
    let payload = bytes.len() - header;
    if payload != expected {
        return Err(format!(
            "idx dimensions {dims:?} need {expected} data bytes, found {payload}{}",
            if payload < expected {
                " (truncated)"
            } else {
                ""
            }
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Loads every PNG/JPEG file of `dir` (sorted by name), as grayscale 28×28: each image is resized
/// so that its shorter side is 28 pixels, then centre-cropped.
fn load_image_folder(dir: &Path, split: Split) -> Result<Dataset, Error> {
    let entries = fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(Error::Data {
            path: dir.to_path_buf(),
            problem: "holds neither idx files nor PNG/JPEG images".into(),
        });
    }
    files.sort();
    let n_test = (files.len() / 10).max(1).min(files.len());
    let chosen = match split {
        Split::Train if files.len() > 1 => &files[..files.len() - n_test],
        Split::Train => &files[..],
        Split::Test => &files[files.len() - n_test..],
    };
    let mut pixels = Vec::with_capacity(chosen.len() * IMAGE_PIXELS);
    for path in chosen {
        pixels.extend_from_slice(&load_image(path)?);
    }
    Ok(Dataset {
        pixels,
        labels: vec![0; chosen.len()],
        rows: IMAGE_SIDE,
        cols: IMAGE_SIDE,
    })
}

/// Decodes one PNG/JPEG file to 28×28 grayscale pixels.
pub fn load_image(path: &Path) -> Result<Vec<u8>, Error> {
    let img = image::ImageReader::open(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .decode()
        .map_err(|e| Error::Data {
            path: path.to_path_buf(),
            problem: format!("cannot decode image ({e})"),
        })?;
    let side = IMAGE_SIDE as u32;
    let gray = img
        .resize_to_fill(side, side, image::imageops::FilterType::Triangle)
        .to_luma8();
    Ok(gray.into_raw())
}

/// Checks that a data set holds 28×28 images.
pub fn check_shape(data: &Dataset, what: &str) -> Result<(), Error> {
    if data.rows != IMAGE_SIDE || data.cols != IMAGE_SIDE {
        return Err(Error::Invalid(format!(
            "{what} images are {}×{}, the model needs {IMAGE_SIDE}×{IMAGE_SIDE}",
            data.rows, data.cols
        )));
    }
    if data.is_empty() {
        return Err(Error::Invalid(format!("{what} set is empty")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], payload: usize) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(7u8, payload));
        v
    }

    #[test]
    fn parses_well_formed_idx() {
        let (dims, data) =
            parse_idx(&idx(IDX_MAGIC_U8_3D, &[2, 3, 4], 24), IDX_MAGIC_U8_3D).unwrap();
        assert_eq!(dims, [2, 3, 4]);
        assert_eq!(data.len(), 24);
    }

    #[test]
    fn rejects_bad_magic_short_payload_and_short_header() {
        let e = parse_idx(&idx(0x0803_0000, &[1, 1, 1], 1), IDX_MAGIC_U8_3D).unwrap_err();
        assert!(e.contains("magic"), "{e}");
        let e = parse_idx(&idx(IDX_MAGIC_U8_3D, &[2, 3, 4], 23), IDX_MAGIC_U8_3D).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = parse_idx(&[0, 0, 8], IDX_MAGIC_U8_3D).unwrap_err();
        assert!(e.contains("header"), "{e}");
        let huge = idx(IDX_MAGIC_U8_3D, &[u32::MAX, u32::MAX, u32::MAX], 0);
        assert!(parse_idx(&huge, IDX_MAGIC_U8_3D).is_err());
    }
}
