//! PNG figures: image grids (reconstructions, prior samples) and the loss curve.

use std::path::Path;

use plotters::prelude::*;

use crate::data::{Dataset, IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::Error;
use crate::files::save_gray;
use crate::inference::sample_images;
use crate::metrics::pixel_u8;
use crate::model::Vae;
use crate::train::EpochMetrics;

/// Tiles 28×28 float images (row-major, [0, 1]) into a grid of `cols` columns, each pixel
/// scaled up `scale` times, with a 2-pixel gap.
pub fn tile(images: &[Vec<f32>], cols: usize, scale: usize) -> (u32, u32, Vec<u8>) {
    let rows = images.len().div_ceil(cols);
    let cell = IMAGE_SIDE * scale + 2;
    let (w, h) = (cols * cell + 2, rows * cell + 2);
    let mut out = vec![64u8; w * h];
    for (k, img) in images.iter().enumerate() {
        let (gy, gx) = (k / cols, k % cols);
        for y in 0..IMAGE_SIDE * scale {
            for x in 0..IMAGE_SIDE * scale {
                let v = img[(y / scale) * IMAGE_SIDE + x / scale];
                out[(2 + gy * cell + y) * w + 2 + gx * cell + x] = pixel_u8(v);
            }
        }
    }
    (w as u32, h as u32, out)
}

/// Writes `path`: rows of 8 test images, each row followed by their reconstructions from `mu`.
pub fn reconstruction_figure(model: &Vae, data: &Dataset, path: &Path) -> Result<(), Error> {
    let n = data.len().min(32);
    let pixels = data.to_f32();
    let originals = &pixels[..n * IMAGE_PIXELS];
    let mu = crate::inference::encode_mu_batch(model, originals);
    let recon = crate::inference::decode_batch(model, &mu);
    let mut cells = Vec::new();
    for row in 0..n.div_ceil(8) {
        for src in [originals, &recon[..]] {
            for k in row * 8..((row + 1) * 8).min(n) {
                cells.push(src[k * IMAGE_PIXELS..(k + 1) * IMAGE_PIXELS].to_vec());
            }
            while cells.len() % 8 != 0 {
                cells.push(vec![0.25; IMAGE_PIXELS]);
            }
        }
    }
    let (w, h, px) = tile(&cells, 8, 3);
    save_gray(path, w, h, px)
}

/// Writes `path`: an 8×8 grid of images decoded from `z ~ N(0, I)`.
pub fn samples_figure(model: &Vae, seed: u64, path: &Path) -> Result<(), Error> {
    let images = sample_images(model, 64, seed);
    let cells: Vec<Vec<f32>> = images.chunks(IMAGE_PIXELS).map(<[f32]>::to_vec).collect();
    let (w, h, px) = tile(&cells, 8, 3);
    save_gray(path, w, h, px)
}

/// Writes `path`: train (and test) negative ELBO per epoch.
pub fn loss_figure(epochs: &[EpochMetrics], path: &Path) -> Result<(), Error> {
    if epochs.is_empty() {
        return Ok(());
    }
    let fail = |e: &dyn std::fmt::Display| Error::data(path, format!("cannot draw figure ({e})"));
    let train: Vec<(f64, f64)> = epochs
        .iter()
        .map(|m| (m.epoch as f64, m.train_neg_elbo))
        .collect();
    let test: Vec<(f64, f64)> = epochs
        .iter()
        .filter_map(|m| m.test_neg_elbo.map(|t| (m.epoch as f64, t)))
        .collect();
    let all = train.iter().chain(&test).map(|p| p.1);
    let lo = all.clone().fold(f64::INFINITY, f64::min);
    let hi = all.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.1).max(1.0);
    let x_max = (epochs.len() as f64).max(2.0);
    let font = register_font();
    let mut rgb = vec![0u8; 640 * 400 * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (640, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15);
        if font {
            builder
                .caption("negative ELBO (nats per image)", ("sans-serif", 20))
                .x_label_area_size(35)
                .y_label_area_size(55);
        }
        let mut chart = builder
            .build_cartesian_2d(1.0..x_max, (lo - pad)..(hi + pad))
            .map_err(|e| fail(&e))?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("epoch");
        if !font {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(|e| fail(&e))?;
        let train_series = chart
            .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))
            .map_err(|e| fail(&e))?;
        if font {
            train_series
                .label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        }
        if !test.is_empty() {
            let test_series = chart
                .draw_series(LineSeries::new(test, RED.stroke_width(2)))
                .map_err(|e| fail(&e))?;
            if font {
                test_series
                    .label("test")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
            }
        }
        if font {
            chart
                .configure_series_labels()
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    crate::files::save_rgb(path, 640, 400, rgb)
}

/// Registers DejaVu Sans for plot text; false when no font file is installed (plots are then
/// drawn without text).
pub(crate) fn register_font() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
        ];
        for c in candidates {
            if let Ok(bytes) = std::fs::read(c) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Writes `reconstructions.png`, `samples.png` and `loss.png` into `dir`.
pub fn write_figures(
    model: &Vae,
    test: &Dataset,
    epochs: &[EpochMetrics],
    seed: u64,
    dir: &Path,
) -> Result<(), Error> {
    reconstruction_figure(model, test, &dir.join("reconstructions.png"))?;
    samples_figure(model, seed, &dir.join("samples.png"))?;
    loss_figure(epochs, &dir.join("loss.png"))
}

/// Height in pixels of the label row above a [`labelled_grid`].
const LABEL_ROW: usize = 22;

/// Writes `path`: [`tile`] of `images` under a row naming each column (`labels[c]` centred over
/// column `c`). Without an installed font the label row stays blank.
pub fn labelled_grid(
    images: &[Vec<f32>],
    cols: usize,
    scale: usize,
    labels: &[&str],
    path: &Path,
) -> Result<(), Error> {
    let (w, h, px) = tile(images, cols, scale);
    let (w, h) = (w as usize, h as usize);
    let total_h = h + LABEL_ROW;
    let mut rgb = vec![255u8; w * total_h * 3];
    for (i, &v) in px.iter().enumerate() {
        let o = (LABEL_ROW * w + i) * 3;
        rgb[o..o + 3].fill(v);
    }
    if register_font() {
        let fail =
            |e: &dyn std::fmt::Display| Error::data(path, format!("cannot draw labels ({e})"));
        let root =
            BitMapBackend::with_buffer(&mut rgb, (w as u32, total_h as u32)).into_drawing_area();
        let cell = IMAGE_SIDE * scale + 2;
        let style = TextStyle::from(("sans-serif", 14).into_font())
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
        for (c, label) in labels.iter().enumerate().take(cols) {
            let x = 2 + c * cell + cell / 2 - 1;
            root.draw_text(label, &style, (x as i32, (LABEL_ROW / 2) as i32))
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    crate::files::save_rgb(path, w as u32, total_h as u32, rgb)
}

/// Axes and labels of a [`plot_curves`] figure.
pub struct CurvePlot<'a> {
    /// Caption.
    pub title: &'a str,
    /// X axis label.
    pub x_desc: &'a str,
    /// Y axis label.
    pub y_desc: &'a str,
    /// X range (drawn on a log scale).
    pub x_range: (f64, f64),
    /// Decimals of the x tick labels (`None`: plotters' default).
    pub x_decimals: Option<usize>,
}

/// Named curves of `(x, y)` points (x on a log scale) into a 900×600 PNG at `path`: a line and
/// markers per curve (a single point is a marker only), a legend when a font is available.
pub fn plot_curves(
    curves: &[(String, Vec<(f64, f64)>)],
    axes: &CurvePlot<'_>,
    path: &Path,
) -> Result<(), Error> {
    let fail = |e: &dyn std::fmt::Display| Error::data(path, format!("cannot draw figure ({e})"));
    let (lo_x, hi_x) = axes.x_range;
    let (lo_y, hi_y) = curves
        .iter()
        .flat_map(|(_, pts)| pts)
        .filter(|p| p.0 >= lo_x && p.0 <= hi_x)
        .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (lo_y, hi_y) = if lo_y > hi_y {
        (0.0, 1.0)
    } else {
        (lo_y, hi_y)
    };
    let font = register_font();
    let mut rgb = vec![0u8; 900 * 600 * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15);
        if font {
            builder
                .caption(axes.title, ("sans-serif", 20))
                .x_label_area_size(40)
                .y_label_area_size(55);
        }
        let mut chart = builder
            .build_cartesian_2d(
                (lo_x..hi_x).log_scale(),
                (lo_y - 1.0).floor()..(hi_y + 1.0).ceil(),
            )
            .map_err(|e| fail(&e))?;
        let mut mesh = chart.configure_mesh();
        let decimals = axes.x_decimals;
        let fmt = move |v: &f64| match decimals {
            Some(d) => format!("{v:.d$}"),
            None => format!("{v}"),
        };
        if decimals.is_some() {
            mesh.x_label_formatter(&fmt);
        }
        mesh.x_desc(axes.x_desc).y_desc(axes.y_desc);
        if !font {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(|e| fail(&e))?;
        for (i, (name, pts)) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let mut pts: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .filter(|p| p.0 >= lo_x && p.0 <= hi_x)
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let line = if pts.len() > 1 {
                pts.clone()
            } else {
                Vec::new()
            };
            let series = chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(|e| fail(&e))?;
            if font {
                series
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
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
