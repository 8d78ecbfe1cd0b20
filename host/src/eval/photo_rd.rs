//! Rate–distortion of the photo codec on whole photographs against JPEG (libjpeg-turbo,
//! optimised Huffman) and WebP (libwebp, method 6): every rate is the bytes of the file each
//! codec actually writes (the `.evz` container included), averaged per image as CompressAI
//! reports it.

use std::path::Path;

use burn::prelude::*;
use edgevae_shared::format::Model;
use plotters::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::refcodec::{self, Point};
use crate::codec::frame::{compress_frame, padded_size, EVZ_FRAME_OVERHEAD};
use crate::data::photos::Photo;
use crate::error::Error;
use crate::model::photo::{plain, PhotoCodec};

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

/// The float model on one photo at `level` (0-based): the reconstruction and the rate of its
/// rounded latent under the learned density (ideal code length, plus the container's bytes).
pub fn float_code(codec: &PhotoCodec, photo: &Photo, level: usize) -> (usize, Photo) {
    let c = photo.channels;
    let (rows, cols) = padded_size(photo.height, photo.width, 16);
    let padded = photo.padded(rows, cols);
    let mut chw = vec![0f32; padded.pixels.len()];
    for p in 0..rows * cols {
        for k in 0..c {
            chw[k * rows * cols + p] = f32::from(padded.pixels[p * c + k]) / 255.0;
        }
    }
    let device = codec.device();
    let x = Tensor::<4>::from_data(TensorData::new(chw, [1, c, rows, cols]), &device);
    let y_hat = codec.dequantize(codec.quantize(codec.analysis(x), level), level);
    let bits = f64::from(
        plain(codec.bits(y_hat.clone(), codec.steps(level)).into_data())
            .first()
            .copied()
            .unwrap_or(0.0),
    );
    let out = plain(codec.synthesis(y_hat).clamp(0.0, 1.0).into_data());
    let mut hwc = vec![0u8; padded.pixels.len()];
    for p in 0..rows * cols {
        for k in 0..c {
            hwc[p * c + k] = (out[k * rows * cols + p] * 255.0).round() as u8;
        }
    }
    let decoded = Photo {
        pixels: hwc,
        ..padded
    }
    .cropped(photo.height, photo.width);
    let bytes = (bits / 8.0).ceil() as usize + EVZ_FRAME_OVERHEAD;
    (bytes, decoded)
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
        for level in 0..codec.levels() {
            let m: Vec<Measure> = photos
                .iter()
                .map(|p| {
                    let (bytes, d) = float_code(codec, p, level);
                    measure(p, bytes, &d)
                })
                .collect();
            rows.push(row("edgevae float", level as u32 + 1, &m));
        }
    }
    for &q in &refcodec::JPEG_QUALITIES {
        let m: Vec<Measure> = photos
            .par_iter()
            .map(|p| refcodec::jpeg(p, q).map(|c| measure(p, c.bytes, &c.decoded)))
            .collect::<Result<_, Error>>()?;
        rows.push(row("JPEG", u32::from(q), &m));
    }
    for &q in &refcodec::WEBP_QUALITIES {
        let m: Vec<Measure> = photos
            .par_iter()
            .map(|p| refcodec::webp(p, q).map(|c| measure(p, c.bytes, &c.decoded)))
            .collect::<Result<_, Error>>()?;
        rows.push(row("WebP", u32::from(q), &m));
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
    let fail = |e: &dyn std::fmt::Display| Error::data(path, format!("cannot draw figure ({e})"));
    let (lo_b, hi_b) = (0.05f64, 1.5f64);
    let shown: Vec<&RdRow> = rows
        .iter()
        .filter(|r| r.bpp >= lo_b && r.bpp <= hi_b)
        .collect();
    let val = |r: &RdRow| if luma { r.psnr_luma } else { r.psnr };
    let (lo_p, hi_p) = shown.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
        (lo.min(val(r)), hi.max(val(r)))
    });
    let (lo_p, hi_p) = if lo_p > hi_p {
        (20.0, 40.0)
    } else {
        (lo_p, hi_p)
    };
    let font = crate::eval::figures::register_font();
    let mut rgb = vec![0u8; 900 * 600 * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15);
        if font {
            builder
                .caption(title, ("sans-serif", 20))
                .x_label_area_size(40)
                .y_label_area_size(55);
        }
        let mut chart = builder
            .build_cartesian_2d(
                (lo_b..hi_b).log_scale(),
                (lo_p - 1.0).floor()..(hi_p + 1.0).ceil(),
            )
            .map_err(|e| fail(&e))?;
        let mut mesh = chart.configure_mesh();
        mesh.x_label_formatter(&|v| format!("{v:.2}"))
            .x_desc("bits per pixel (file bytes)")
            .y_desc(if luma {
                "luma PSNR (dB)"
            } else {
                "RGB PSNR (dB)"
            });
        if !font {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(|e| fail(&e))?;
        for (i, m) in methods(rows).iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let mut pts: Vec<(f64, f64)> = shown
                .iter()
                .filter(|r| r.method == *m)
                .map(|r| (r.bpp, val(r)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let series = chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| fail(&e))?;
            if font {
                let name = m.clone();
                series
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| fail(&e))?;
        }
        if font {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    crate::files::save_rgb(path, 900, 600, rgb)
}
