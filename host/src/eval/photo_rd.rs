//! Rate–distortion of the photo codec on whole photographs against JPEG (libjpeg-turbo,
//! optimised Huffman) and WebP (libwebp, method 6): every rate is the bytes of the file each
//! codec actually writes (the `.evz` container included), averaged per image as CompressAI
//! reports it.

use std::path::Path;

use edgevae_shared::format::Model;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::refcodec::{self, Point};
use crate::codec::frame::{compress_frame, padded_size, EVZ_FRAME_OVERHEAD};
use crate::data::photos::Photo;
use crate::error::Error;
use crate::model::photo::PhotoCodec;
use crate::quantize::photo::float_round_trip;

/// The rate range, in bits per pixel, over which BD-rates are taken.
pub const BD_RANGE: (f64, f64) = (0.1, 1.0);

/// One method at one setting, averaged over the images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RdRow {
    /// Codec name (`edgevae int8`, `edgevae float`, `JPEG`, `WebP`).
    pub method: String,
    /// Quality level (edgevae, 1-based) or quality factor (JPEG, WebP).
    pub setting: u32,
    /// Mean bits per pixel of the files.
    pub bpp: f64,
    /// Mean PSNR (dB) over all channels (RGB for colour).
    pub psnr: f64,
    /// Mean PSNR (dB) of the luma.
    pub psnr_luma: f64,
    /// Mean MS-SSIM.
    pub ms_ssim: f64,
    /// Images.
    pub images: usize,
}

/// One coded image's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Measure {
    bpp: f64,
    psnr: f64,
    psnr_luma: f64,
    ms_ssim: f64,
}

fn measure(orig: &Photo, bytes: usize, decoded: &Photo) -> Measure {
    Measure {
        bpp: bytes as f64 * 8.0 / (orig.width * orig.height) as f64,
        psnr: refcodec::psnr(orig, decoded),
        psnr_luma: refcodec::psnr_luma(orig, decoded),
        ms_ssim: refcodec::ms_ssim(orig, decoded),
    }
}

fn row(method: &str, setting: u32, m: &[Measure]) -> RdRow {
    let n = m.len().max(1) as f64;
    let mean = |f: fn(&Measure) -> f64| m.iter().map(f).sum::<f64>() / n;
    RdRow {
        method: method.to_string(),
        setting,
        bpp: mean(|x| x.bpp),
        psnr: mean(|x| x.psnr),
        psnr_luma: mean(|x| x.psnr_luma),
        ms_ssim: mean(|x| x.ms_ssim),
        images: m.len(),
    }
}

/// The float model on one photo with latent steps `steps` (a row of [`PhotoCodec::knob`]): the
/// reconstruction and the rate of its rounded latent under the learned density (ideal code
/// length, plus the container's bytes).
pub fn float_code(codec: &PhotoCodec, photo: &Photo, steps: &[f32]) -> (usize, Photo) {
    let (rows, cols) = padded_size(photo.height, photo.width, 16);
    let padded = photo.padded(rows, cols);
    let (pixels, _, bits) =
        float_round_trip(codec, &padded.pixels, rows, cols, photo.channels, steps);
    let decoded = Photo { pixels, ..padded }.cropped(photo.height, photo.width);
    ((bits / 8.0).ceil() as usize + EVZ_FRAME_OVERHEAD, decoded)
}

/// The whole table: the int8 model file at every level (coded through the firmware's scalar
/// arithmetic), the float model when given, JPEG and WebP over their quality sweeps, all on
/// `photos` (converted to the model's channels).
pub fn sweep(
    model_bytes: &[u8],
    float: Option<&PhotoCodec>,
    photos: &[Photo],
) -> Result<Vec<RdRow>, Error> {
    if photos.is_empty() {
        return Err(Error::Invalid("rate-distortion: no photographs".into()));
    }
    let model = Model::from_bytes(model_bytes)?;
    let channels = model.header().input.c as usize;
    let photos: Vec<Photo> = photos
        .iter()
        .map(|p| match (p.channels, channels) {
            (3, 1) => p.to_gray(),
            _ => p.clone(),
        })
        .collect();
    let levels = model.entropy().map_or(0, |e| e.levels.len());
    let mut rows = Vec::new();
    for level in 0..levels {
        let m: Vec<Measure> = photos
            .par_iter()
            .map(|p| {
                let c = compress_frame(&model, level as u8, p)?;
                Ok(measure(p, c.file.len(), &c.decoded))
            })
            .collect::<Result<_, Error>>()?;
        rows.push(row("edgevae int8", level as u32 + 1, &m));
    }
    if let Some(codec) = float {
        for (level, steps) in codec.knob().iter().enumerate() {
            let m: Vec<Measure> = photos
                .iter()
                .map(|p| {
                    let (bytes, d) = float_code(codec, p, steps);
                    measure(p, bytes, &d)
                })
                .collect();
            rows.push(row("edgevae float", level as u32 + 1, &m));
        }
    }
    type Reference = fn(&Photo, u8) -> Result<refcodec::Coded, Error>;
    let references: [(&str, &[u8], Reference); 2] = [
        ("JPEG", &refcodec::JPEG_QUALITIES, refcodec::jpeg),
        ("WebP", &refcodec::WEBP_QUALITIES, refcodec::webp),
    ];
    for (name, qualities, code) in references {
        for &q in qualities {
            let m: Vec<Measure> = photos
                .par_iter()
                .map(|p| code(p, q).map(|c| measure(p, c.bytes, &c.decoded)))
                .collect::<Result<_, Error>>()?;
            rows.push(row(name, u32::from(q), &m));
        }
    }
    Ok(rows)
}

/// The methods of `rows`, in order of appearance.
pub fn methods(rows: &[RdRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.method) {
            out.push(r.method.clone());
        }
    }
    out
}

/// One method's curve (bpp, PSNR), on luma when `luma`.
pub fn curve(rows: &[RdRow], method: &str, luma: bool) -> Vec<Point> {
    rows.iter()
        .filter(|r| r.method == method)
        .map(|r| Point {
            bpp: r.bpp,
            psnr: if luma { r.psnr_luma } else { r.psnr },
        })
        .collect()
}

/// Comparison of one method with JPEG.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The method.
    pub method: String,
    /// BD-rate against JPEG (%) over [`BD_RANGE`] (negative: fewer bits).
    pub bd_rate_vs_jpeg: Option<f64>,
    /// BD-PSNR against JPEG (dB) over [`BD_RANGE`].
    pub bd_psnr_vs_jpeg: Option<f64>,
    /// PSNR at 0.25 bpp.
    pub psnr_at_025: Option<f64>,
    /// PSNR at 0.5 bpp.
    pub psnr_at_050: Option<f64>,
}

/// BD-rate, BD-PSNR and PSNR at 0.25 / 0.5 bpp of every method against JPEG, on the measure
/// the channels call for (luma for grey, RGB for colour), on each curve's upper envelope.
pub fn summarise(rows: &[RdRow], luma: bool) -> Vec<Summary> {
    let (lo, hi) = BD_RANGE;
    let jpeg = refcodec::envelope(&curve(rows, "JPEG", luma));
    let jr = refcodec::within(&jpeg, lo, hi);
    methods(rows)
        .into_iter()
        .map(|m| {
            let c = refcodec::envelope(&curve(rows, &m, luma));
            let cr = refcodec::within(&c, lo, hi);
            Summary {
                bd_rate_vs_jpeg: refcodec::bd_rate(&jr, &cr),
                bd_psnr_vs_jpeg: refcodec::bd_psnr(&jr, &cr),
                psnr_at_025: refcodec::psnr_at(&c, 0.25),
                psnr_at_050: refcodec::psnr_at(&c, 0.5),
                method: m,
            }
        })
        .collect()
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("–".to_string(), |x| format!("{x:+.1}{unit}"))
}

fn plain_opt(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |x| format!("{x:.2}"))
}

/// The table and the summary as Markdown.
pub fn markdown(rows: &[RdRow], summary: &[Summary], luma: bool) -> String {
    let mut s = String::new();
    let measure = if luma { "luma" } else { "RGB" };
    s.push_str(&format!(
        "| method | BD-rate vs JPEG ({measure} PSNR, {}–{} bpp) | BD-PSNR | PSNR @ 0.25 bpp | \
         PSNR @ 0.5 bpp |\n|---|---:|---:|---:|---:|\n",
        BD_RANGE.0, BD_RANGE.1
    ));
    for m in summary {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            m.method,
            opt(m.bd_rate_vs_jpeg, " %"),
            opt(m.bd_psnr_vs_jpeg, " dB"),
            plain_opt(m.psnr_at_025),
            plain_opt(m.psnr_at_050)
        ));
    }
    s.push_str(
        "\n| method | setting | bpp | PSNR (dB) | luma PSNR (dB) | MS-SSIM |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.2} | {:.2} | {:.4} |\n",
            r.method, r.setting, r.bpp, r.psnr, r.psnr_luma, r.ms_ssim
        ));
    }
    s
}

/// The curves as a PNG plot (PSNR against bits per pixel, log scale), 0.05–1.5 bpp.
pub fn plot(rows: &[RdRow], luma: bool, title: &str, path: &Path) -> Result<(), Error> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = methods(rows)
        .into_iter()
        .map(|m| {
            let pts = curve(rows, &m, luma)
                .iter()
                .map(|p| (p.bpp, p.psnr))
                .collect();
            (m, pts)
        })
        .collect();
    let axes = crate::eval::figures::CurvePlot {
        title,
        x_desc: "bits per pixel (file bytes)",
        y_desc: if luma {
            "luma PSNR (dB)"
        } else {
            "RGB PSNR (dB)"
        },
        x_range: (0.05, 1.5),
        x_decimals: Some(2),
    };
    crate::eval::figures::plot_curves(&curves, &axes, path)
}
