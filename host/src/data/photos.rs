//! Photographs of any size for the photo codec: loading folders of PNG/JPEG/WebP files (grey or
//! colour, converted to the model's channels) and drawing random training crops.

use std::path::Path;

use rand::Rng;

use crate::error::Error;
use crate::rng::Rng64;

/// One photograph: row-major, channels interleaved (HWC), `channels` 1 (grey) or 3 (RGB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Photo {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// 1 or 3.
    pub channels: usize,
    /// `width · height · channels` bytes.
    pub pixels: Vec<u8>,
}

/// BT.601 luma of an RGB pixel, rounded (what JPEG codes as Y).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    (0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64)
        .round()
        .clamp(0.0, 255.0) as u8
}

impl Photo {
    /// `img` with `channels` channels: colour to grey by BT.601 luma, grey to RGB by
    /// replication, alpha dropped.
    pub fn from_dynamic(img: image::DynamicImage, channels: usize) -> Photo {
        let (width, height) = (img.width() as usize, img.height() as usize);
        let rgb = img.to_rgb8().into_raw();
        let pixels = if channels == 1 {
            rgb.chunks_exact(3)
                .map(|p| luma(p[0], p[1], p[2]))
                .collect()
        } else {
            rgb
        };
        Photo {
            width,
            height,
            channels: if channels == 1 { 1 } else { 3 },
            pixels,
        }
    }

    /// Loads a PNG, JPEG or WebP file with `channels` channels.
    pub fn load(path: &Path, channels: usize) -> Result<Photo, Error> {
        let img = image::ImageReader::open(path)
            .map_err(Error::io(path))?
            .with_guessed_format()
            .map_err(Error::io(path))?
            .decode()
            .map_err(|e| Error::data(path, format!("not a readable PNG/JPEG/WebP image: {e}")))?;
        if img.width() == 0 || img.height() == 0 {
            return Err(Error::data(path, "image has no pixels"));
        }
        Ok(Photo::from_dynamic(img, channels))
    }

    /// The grey version (BT.601 luma); a grey photo is returned as it is.
    pub fn to_gray(&self) -> Photo {
        if self.channels == 1 {
            return self.clone();
        }
        Photo {
            width: self.width,
            height: self.height,
            channels: 1,
            pixels: self
                .pixels
                .chunks_exact(3)
                .map(|p| luma(p[0], p[1], p[2]))
                .collect(),
        }
    }

    /// The photo with `channels` channels: colour to luma for 1, grey repeated for 3, else as it
    /// is.
    pub fn with_channels(&self, channels: usize) -> Photo {
        match (self.channels, channels) {
            (3, 1) => self.to_gray(),
            (1, 3) => Photo {
                channels: 3,
                pixels: self.pixels.iter().flat_map(|&p| [p, p, p]).collect(),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// Half the size by 2×2 box averaging (rounded); an odd last row or column is dropped. A
    /// side of 1 stays 1.
    pub fn downscale2(&self) -> Photo {
        let (w, h, c) = (self.width, self.height, self.channels);
        if w < 2 || h < 2 {
            return self.clone();
        }
        let (nw, nh) = (w / 2, h / 2);
        let mut out = vec![0u8; nw * nh * c];
        for y in 0..nh {
            for x in 0..nw {
                for k in 0..c {
                    let at = |yy: usize, xx: usize| self.pixels[(yy * w + xx) * c + k] as u32;
                    let s = at(2 * y, 2 * x)
                        + at(2 * y, 2 * x + 1)
                        + at(2 * y + 1, 2 * x)
                        + at(2 * y + 1, 2 * x + 1);
                    out[(y * nw + x) * c + k] = ((s + 2) / 4) as u8;
                }
            }
        }
        Photo {
            width: nw,
            height: nh,
            channels: c,
            pixels: out,
        }
    }

    /// The photo padded to `rows × cols` (at least its own size) by replicating its last row
    /// and column: what the encoder of a fully convolutional model reads.
    pub fn padded(&self, rows: usize, cols: usize) -> Photo {
        let (w, h, c) = (self.width, self.height, self.channels);
        let (rows, cols) = (rows.max(h), cols.max(w));
        let mut out = Vec::with_capacity(rows * cols * c);
        for y in 0..rows {
            let sy = y.min(h - 1);
            for x in 0..cols {
                let sx = x.min(w - 1);
                out.extend_from_slice(&self.pixels[(sy * w + sx) * c..][..c]);
            }
        }
        Photo {
            width: cols,
            height: rows,
            channels: c,
            pixels: out,
        }
    }

    /// The top-left `rows × cols` of the photo (at most its size).
    pub fn cropped(&self, rows: usize, cols: usize) -> Photo {
        let (rows, cols, c) = (rows.min(self.height), cols.min(self.width), self.channels);
        let mut out = Vec::with_capacity(rows * cols * c);
        for y in 0..rows {
            out.extend_from_slice(&self.pixels[y * self.width * c..][..cols * c]);
        }
        Photo {
            width: cols,
            height: rows,
            channels: c,
            pixels: out,
        }
    }

    /// The photo as a PNG file (grey or RGB), written atomically.
    pub fn save_png(&self, path: &Path) -> Result<(), Error> {
        let color = if self.channels == 1 {
            image::ExtendedColorType::L8
        } else {
            image::ExtendedColorType::Rgb8
        };
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&self.pixels, self.width as u32, self.height as u32, color)
            .map_err(|e| Error::data(path, format!("cannot encode PNG: {e}")))?;
        crate::files::write_atomic(path, &png)
    }
}

use image::ImageEncoder;

fn is_photo_file(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg" | "webp")
    )
}

/// Every PNG/JPEG/WebP file in `dir` (sorted by name, not recursive; other files ignored), any
/// size, converted to `channels` (1 or 3).
pub fn load_photos(dir: &Path, channels: usize) -> Result<Vec<Photo>, Error> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_photo_file(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::data(
            dir,
            "folder holds no PNG/JPEG/WebP photograph (for the default set run `edgevae photos`)",
        ));
    }
    files.iter().map(|p| Photo::load(p, channels)).collect()
}

/// Photographs to draw training crops from.
#[derive(Clone, Debug)]
pub struct PhotoSet {
    photos: Vec<Photo>,
    channels: usize,
    /// Cumulative pixel counts, to pick photos by area.
    cumulative: Vec<u64>,
}

impl PhotoSet {
    /// A set of `photos`, all with `channels` channels; empty sets are refused.
    pub fn new(photos: Vec<Photo>, channels: usize) -> Result<Self, Error> {
        if photos.is_empty() {
            return Err(Error::Invalid("no photographs to train on".into()));
        }
        if let Some(p) = photos.iter().find(|p| p.channels != channels) {
            return Err(Error::Invalid(format!(
                "a {}-channel photograph in a {channels}-channel set",
                p.channels
            )));
        }
        let mut total = 0u64;
        let cumulative = photos
            .iter()
            .map(|p| {
                total += (p.width * p.height) as u64;
                total
            })
            .collect();
        Ok(PhotoSet {
            photos,
            channels,
            cumulative,
        })
    }

    /// Number of photographs.
    pub fn len(&self) -> usize {
        self.photos.len()
    }

    /// Whether the set is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.photos.is_empty()
    }

    /// Channels of every photograph.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The photographs.
    pub fn photos(&self) -> &[Photo] {
        &self.photos
    }

    /// `n` random `crop × crop` crops, NCHW `f32` in [0, 1]: each from a photo chosen with
    /// probability proportional to its area, at a random position, flipped left–right half the
    /// time. A photo smaller than the crop is edge-replicated to fit.
    pub fn crops(&self, rng: &mut Rng64, n: usize, crop: usize) -> Vec<f32> {
        let c = self.channels;
        let total = self.cumulative.last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; n * c * crop * crop];
        for i in 0..n {
            let t = rng.random_range(0..total);
            let k = self.cumulative.partition_point(|&v| v <= t);
            let p = &self.photos[k.min(self.photos.len() - 1)];
            let y0 = rng.random_range(0..=p.height.saturating_sub(crop));
            let x0 = rng.random_range(0..=p.width.saturating_sub(crop));
            let flip = rng.random::<bool>();
            let img = &mut out[i * c * crop * crop..(i + 1) * c * crop * crop];
            for y in 0..crop {
                let sy = (y0 + y).min(p.height - 1);
                for x in 0..crop {
                    let xx = if flip { crop - 1 - x } else { x };
                    let sx = (x0 + xx).min(p.width - 1);
                    for ch in 0..c {
                        img[(ch * crop + y) * crop + x] =
                            p.pixels[(sy * p.width + sx) * c + ch] as f32 / 255.0;
                    }
                }
            }
        }
        out
    }
}

/// Where Debian's `gcompris-qt-data` installs its resource bundles.
pub const GCOMPRIS_RCC: &str = "/usr/share/gcompris-qt/rcc";
/// The bundles that hold photographs (RECIPES: about 246 once drawings are left out).
pub const GCOMPRIS_BUNDLES: [&str; 7] = [
    "erase",
    "explore_world_animals",
    "explore_farm_animals",
    "explore_monuments",
    "categorization",
    "clickgame",
    "details",
];
/// Name fragments of the bundles' paintings and drawings (not photographs).
const NOT_PHOTOS: [&str; 8] = [
    "gogh", "eglise", "portrait", "painting", "drawing", "cartoon", "icon", "logo",
];

/// Why a bundle entry was left out of the photo set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LeftOut {
    /// Not an image file, or unreadable.
    NotImage,
    /// A painting, drawing, icon or logo by its name.
    NotPhoto,
    /// Transparent pixels: a cut-out sprite.
    CutOut,
    /// Under 200 pixels on a side.
    Small,
    /// A near-duplicate (8×8 average hash within 4 bits) of one kept.
    Duplicate,
}

/// The 8×8 average hash of a photo's luma (box-averaged cells, bit set where above the mean).
pub fn average_hash(p: &Photo) -> u64 {
    let g = p.to_gray();
    let mut cells = [0f64; 64];
    for (i, cell) in cells.iter_mut().enumerate() {
        let (cy, cx) = (i / 8, i % 8);
        let (y0, y1) = (
            cy * g.height / 8,
            ((cy + 1) * g.height / 8).max(cy * g.height / 8 + 1),
        );
        let (x0, x1) = (
            cx * g.width / 8,
            ((cx + 1) * g.width / 8).max(cx * g.width / 8 + 1),
        );
        let mut s = 0f64;
        let mut n = 0f64;
        for y in y0..y1.min(g.height) {
            for x in x0..x1.min(g.width) {
                s += g.pixels[y * g.width + x] as f64;
                n += 1.0;
            }
        }
        *cell = s / n.max(1.0);
    }
    let mean = cells.iter().sum::<f64>() / 64.0;
    cells
        .iter()
        .enumerate()
        .fold(0u64, |h, (i, &v)| if v > mean { h | (1 << i) } else { h })
}

/// Photographs with a name each.
pub type NamedPhotos = Vec<(String, Photo)>;

/// The photographs of the gcompris bundles in `rcc_dir`, RGB, larger ones (long side over
/// 1000) halved (they are lossy WebP), near-duplicates dropped: `(bundle-stem, photo)`, and
/// what was left out per reason.
pub fn gcompris_photos(rcc_dir: &Path) -> Result<(NamedPhotos, Vec<(LeftOut, String)>), Error> {
    if !rcc_dir.is_dir() {
        return Err(Error::data(
            rcc_dir,
            "no gcompris resource bundles here (bash scripts/setup.sh --photos installs gcompris-qt-data)",
        ));
    }
    let mut kept: Vec<(String, Photo, u64)> = Vec::new();
    let mut left = Vec::new();
    for bundle in GCOMPRIS_BUNDLES {
        let path = rcc_dir.join(format!("{bundle}.rcc"));
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        let rcc = super::rcc::Rcc::parse(&bytes).map_err(|e| Error::data(&path, e))?;
        for (name, node) in rcc.files().map_err(|e| Error::data(&path, e))? {
            let lower = name.to_ascii_lowercase();
            if !is_photo_file(Path::new(&lower)) {
                continue;
            }
            let stem = Path::new(&name)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("photo")
                .to_string();
            let label = format!("{bundle}-{stem}");
            if NOT_PHOTOS.iter().any(|n| lower.contains(n)) {
                left.push((LeftOut::NotPhoto, label));
                continue;
            }
            let Ok(data) = rcc.read(node, &name) else {
                left.push((LeftOut::NotImage, label));
                continue;
            };
            let Ok(img) = image::load_from_memory(&data) else {
                left.push((LeftOut::NotImage, label));
                continue;
            };
            if img.color().has_alpha() && img.to_rgba8().pixels().any(|p| p.0[3] < 250) {
                left.push((LeftOut::CutOut, label));
                continue;
            }
            if img.width() < 200 || img.height() < 200 {
                left.push((LeftOut::Small, label));
                continue;
            }
            let mut p = Photo::from_dynamic(img, 3);
            if p.width.max(p.height) > 1000 {
                p = p.downscale2();
            }
            let h = average_hash(&p);
            if kept.iter().any(|(_, _, k)| (k ^ h).count_ones() <= 4) {
                left.push((LeftOut::Duplicate, label));
                continue;
            }
            let mut unique = label.clone();
            let mut n = 2;
            while kept.iter().any(|(l, _, _)| *l == unique) {
                unique = format!("{label}-{n}");
                n += 1;
            }
            kept.push((unique, p, h));
        }
    }
    Ok((kept.into_iter().map(|(l, p, _)| (l, p)).collect(), left))
}

/// The held-out validation photographs (never trained on): mate-backgrounds' nature photos and
/// opencv-doc's sample photographs, RGB, halved until the long side is at most 768.
pub const VALIDATION_SOURCES: [&str; 13] = [
    "/usr/share/backgrounds/mate/nature",
    "/usr/share/doc/opencv-doc/examples/data/baboon.jpg",
    "/usr/share/doc/opencv-doc/examples/data/fruits.jpg",
    "/usr/share/doc/opencv-doc/examples/data/building.jpg",
    "/usr/share/doc/opencv-doc/examples/data/home.jpg",
    "/usr/share/doc/opencv-doc/examples/data/messi5.jpg",
    "/usr/share/doc/opencv-doc/examples/data/orange.jpg",
    "/usr/share/doc/opencv-doc/examples/data/apple.jpg",
    "/usr/share/doc/opencv-doc/examples/data/butterfly.jpg",
    "/usr/share/doc/opencv-doc/examples/data/lena.jpg",
    "/usr/share/doc/opencv-doc/examples/data/graf1.png",
    "/usr/share/doc/opencv-doc/examples/data/leuvenA.jpg",
    "/usr/share/doc/opencv-doc/examples/data/aero1.jpg",
];

/// The validation photographs that exist on this machine: `(name, photo)`. Fails naming the
/// packages when none is installed.
pub fn validation_photos() -> Result<Vec<(String, Photo)>, Error> {
    let mut files = Vec::new();
    for src in VALIDATION_SOURCES {
        let p = Path::new(src);
        if p.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .map_err(Error::io(p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| is_photo_file(f))
                .collect();
            v.sort();
            files.extend(v);
        } else if p.is_file() {
            files.push(p.to_path_buf());
        }
    }
    if files.is_empty() {
        return Err(Error::Invalid(
            "no validation photographs (bash scripts/setup.sh --photos installs mate-backgrounds and opencv-doc)".into(),
        ));
    }
    files
        .iter()
        .map(|f| {
            let mut p = Photo::load(f, 3)?;
            while p.width.max(p.height) > 768 {
                p = p.downscale2();
            }
            let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("photo");
            Ok((stem.to_string(), p))
        })
        .collect()
}
