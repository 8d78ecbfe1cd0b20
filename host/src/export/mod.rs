//! After quantization: the model file described for people ([`inspect`]), and ONNX graphs of
//! the float and int8 models ([`onnx`]), checked in tract ([`tract`]) against Burn and the
//! fixed-point reference ([`export`]).

pub mod onnx;
pub mod tract;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use edgevae_firmware::engine::{required_arena, Scalar};
use edgevae_shared::format::{Activation, Model, Op, Section};

use crate::data::{self, Split, IMAGE_SIDE};
use crate::error::Error;
use crate::files::write_atomic;
use crate::metrics::max_abs_diff;
use crate::quantize::{float_model_of, Reference};

/// A human-readable description of a model file; an invalid file is described as far as it goes.
pub fn inspect(bytes: &[u8]) -> Result<String, edgevae_shared::FormatError> {
    inspect_at(bytes, None)
}

/// [`inspect`], with the stripe engine's arena for frames `width` pixels wide (fully
/// convolutional models; by default at 320 pixels and at the widest frame the file declares).
pub fn inspect_at(
    bytes: &[u8],
    width: Option<usize>,
) -> Result<String, edgevae_shared::FormatError> {
    let m = Model::from_bytes(bytes)?;
    let h = m.header();
    let mut s = String::new();
    let _ = writeln!(s, "model      {}", h.name);
    let _ = writeln!(
        s,
        "format     v{}, {} bytes, CRC-32 {:#010x} (ok)",
        u16::from_le_bytes([bytes[4], bytes[5]]),
        bytes.len(),
        m.payload_crc()
    );
    if m.encoder_only() {
        let _ = writeln!(
            s,
            "cut        encoder-only (a device file, flag FLAG_ENCODER_ONLY): no decoder; its bitstreams name model CRC-32 {:#010x}",
            m.crc()
        );
    }
    let sections = [
        (Section::Encoder, m.encoder().len()),
        (Section::Decoder, m.decoder().len()),
    ];
    let model = &m;
    let blocks: Vec<usize> = sections
        .iter()
        .flat_map(|&(sec, n)| (0..n).filter_map(move |i| model.dsp_block(sec, i)))
        .map(<[u8]>::len)
        .collect();
    if !blocks.is_empty() {
        let _ = writeln!(
            s,
            "pre-laid   {} DSP blocks, {} bytes (flag FLAG_DSP_LAYOUT)",
            blocks.len(),
            blocks.iter().sum::<usize>()
        );
    }
    let _ = writeln!(
        s,
        "input      {}x{}x{} uint8 (scale {:.6}, zp {})",
        h.input.h, h.input.w, h.input.c, h.input_q.scale, h.input_q.zero_point
    );
    let _ = writeln!(
        s,
        "latent     {} x int8 = {} bits (scale {:.6}, zp {})",
        h.latent,
        8 * h.latent as u32,
        h.latent_q.scale,
        h.latent_q.zero_point
    );
    let _ = writeln!(
        s,
        "arena      {} bytes declared (activations {}, scalar needs {}, DSP needs {})",
        h.arena_bytes,
        m.activation_bytes(),
        required_arena::<Scalar>(&m),
        edgevae_firmware::engine::required_arena_all_paths(&m)
    );
    let mut weights = 0usize;
    let mut macs = 0u64;
    for (section, layers) in [("encoder", m.encoder()), ("decoder", m.decoder())] {
        let _ = writeln!(s, "{section}:");
        for (i, l) in layers.iter().enumerate() {
            let op = match l.op {
                Op::Conv2d {
                    kh, stride, pad, ..
                } => format!("conv{kh}x{kh}/s{stride}p{pad}"),
                Op::ConvTranspose2d {
                    kh, stride, pad, ..
                } => format!("convT{kh}x{kh}/s{stride}p{pad}"),
                Op::Dense => "dense".into(),
                Op::Reshape => "reshape".into(),
            };
            let act = match l.activation {
                Activation::None => "",
                Activation::Relu => "+relu",
                Activation::Lut { .. } => "+lut",
            };
            let _ = writeln!(
                s,
                "  {i:2} {:<16} {:>3}x{:<3}x{:<4} -> {:>3}x{:<3}x{:<4} weights {:>7} MACs {:>8} out scale {:.5} zp {}",
                format!("{op}{act}"),
                l.input.h, l.input.w, l.input.c, l.output.h, l.output.w, l.output.c,
                l.weights.len(), l.macs(), l.output_q.scale, l.output_q.zero_point
            );
            weights += l.weights.len() + l.bias.len() + l.multiplier.len() + l.shift.len();
            macs += l.macs();
        }
    }
    let _ = writeln!(
        s,
        "parameters {weights} bytes; {macs} MACs per encode + decode"
    );
    if let Some(f) = m.frame() {
        let st = u64::from(f.total_stride);
        let px = st * st;
        let per = |sec: &[edgevae_shared::format::Layer<'_>]| -> u64 {
            sec.iter().map(|l| l.macs()).sum::<u64>()
        };
        let enc_bytes: usize = m
            .encoder()
            .iter()
            .map(|l| l.weights.len() + l.bias.len() + l.multiplier.len() + l.shift.len())
            .sum();
        let _ = writeln!(
            s,
            "frame      fully convolutional: total stride {}, frames up to {} pixels wide; layers \
             shown at a {}x{} frame; encoder {:.0} MACs/pixel ({} bytes of parameters), decoder \
             {:.0} MACs/pixel",
            f.total_stride,
            f.max_width,
            f.total_stride,
            f.total_stride,
            per(m.encoder()) as f64 / px as f64,
            enc_bytes,
            per(m.decoder()) as f64 / px as f64
        );
        let (w, h) = (u64::from(f.max_width), u64::from(f.max_width) * 3 / 4);
        let (rows, cols) = (h.div_ceil(st) * st, w.div_ceil(st) * st);
        let buf = edgevae_firmware::frame::frame_buffer_len(
            &m,
            Section::Encoder,
            rows as usize,
            cols as usize,
        );
        if let Some(b) = buf {
            let _ = writeln!(
                s,
                "           a whole {cols}x{rows} frame needs 2 x {b} bytes of feature maps \
                 (firmware::frame)"
            );
        }
        let widths = match width {
            Some(w) => vec![w],
            None => vec![320.min(usize::from(f.max_width)), usize::from(f.max_width)],
        };
        for w in widths {
            use edgevae_firmware::kernels::{dsp_scratch, neon_scratch};
            use edgevae_firmware::stripe::{required_arena, required_arena_with};
            match required_arena::<edgevae_firmware::engine::Scalar>(&m, w) {
                Some(min) => {
                    let dsp = required_arena_with(&m, w, dsp_scratch::conv2d_scratch_size);
                    let neon = required_arena_with(&m, w, neon_scratch::conv2d_scratch_size);
                    let _ = writeln!(
                        s,
                        "           stripe engine, frames {w} pixels wide: arena {min} bytes \
                         (any kernel set; {} with the Cortex-M DSP kernels' full scratch, {} \
                         with NEON's), no frame buffer",
                        dsp.unwrap_or(min),
                        neon.unwrap_or(min)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "           stripe engine: frames {w} pixels wide are not supported \
                         (widest {})",
                        f.max_width
                    );
                }
            }
        }
    }
    match m.entropy() {
        None => {
            let _ = writeln!(s, "entropy    none (raw int8 latents only)");
        }
        Some(e) => {
            let table_bytes: usize = e.levels.iter().map(|l| l.steps.len() + l.cdfs.len()).sum();
            let _ = writeln!(
                s,
                "entropy    {} quality levels, {table_bytes} bytes of steps and 16-bit CDF tables",
                e.levels.len()
            );
            for (i, l) in e.levels.iter().enumerate() {
                let _ = writeln!(s, "  level {i:2} steps {:?}", l.steps);
            }
        }
    }
    Ok(s)
}

/// What `export` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    pub files: Vec<PathBuf>,
    pub test_images: usize,
    /// Largest |tract − Burn| over mu and decoded pixels of the float graphs.
    pub float_max_diff: f32,
    /// Share of int8 latent values where tract's QDQ graph equals the fixed-point reference,
    /// and within 1 LSB.
    pub latent_exact: f64,
    pub latent_within_1: f64,
    /// The same for decoded uint8 pixels.
    pub pixels_exact: f64,
    pub pixels_within_1: f64,
}

/// Writes `<stem>_{float,int8}_{encoder,decoder}.onnx` into `out_dir` and checks them with tract
/// against Burn (float) and the fixed-point reference (int8) on `n` test images.
pub fn export(
    run_dir: &Path,
    model_file: &Path,
    data_dir: Option<&Path>,
    out_dir: &Path,
    n: usize,
) -> Result<ExportReport, Error> {
    use onnx::{float_graphs, quantized_graphs, to_bytes};
    let (_, vae) = crate::inference::load_model(run_dir)?;
    let fm = float_model_of(&vae, run_dir)?;
    let bytes = std::fs::read(model_file).map_err(Error::io(model_file))?;
    let model = Model::from_bytes(&bytes).map_err(|e| Error::data(model_file, e))?;
    let owned = edgevae_shared::build::OwnedModel::from_model(&model);
    let (fe, fd) = float_graphs(&fm);
    let (qe, qd) = quantized_graphs(&owned);
    let mut files = Vec::new();
    for (name, g) in [
        ("float_encoder", &fe),
        ("float_decoder", &fd),
        ("int8_encoder", &qe),
        ("int8_decoder", &qd),
    ] {
        let p = out_dir.join(format!("{name}.onnx"));
        write_atomic(&p, &to_bytes(g))?;
        files.push(p);
    }
    let test = data::load(data_dir, Split::Test)?;
    data::check_shape(&test, "test")?;
    let n = n.min(test.len()).max(1);
    let side = IMAGE_SIDE;
    let z = fm.latent as usize;

    // Float: tract vs Burn.
    let x: Vec<f32> = (0..n)
        .flat_map(|k| crate::metrics::to_f32(test.image(k)))
        .collect();
    let burn_mu = crate::inference::encode_mu_batch(&vae, &x);
    let tract_mu = tract::run::<f32, f32>(&files[0], &x, &[n, 1, side, side])?;
    let burn_img = crate::inference::decode_batch(&vae, &burn_mu);
    let tract_img = tract::run::<f32, f32>(&files[1], &burn_mu, &[n, z])?;
    let float_max_diff = max_abs_diff(&burn_mu, &tract_mu).max(max_abs_diff(&burn_img, &tract_img));

    // int8: tract QDQ vs the fixed-point reference.
    let mut reference = Reference::new(&model);
    let pixels: Vec<u8> = (0..n).flat_map(|k| test.image(k).to_vec()).collect();
    let t_lat = tract::run::<u8, i8>(&files[2], &pixels, &[n, 1, side, side])?;
    let mut r_lat = Vec::new();
    let mut r_img = Vec::new();
    for k in 0..n {
        let zq = reference.encode(test.image(k))?;
        r_img.extend(reference.decode(&zq)?);
        r_lat.extend(zq);
    }
    // Decode the reference's latents so the decoder comparison is independent of the encoder's.
    let t_img = tract::run::<i8, u8>(&files[3], &r_lat, &[n, z])?;
    let share = |a: &[i32], b: &[i32], tol: i32| {
        a.iter()
            .zip(b)
            .filter(|(x, y)| (*x - *y).abs() <= tol)
            .count() as f64
            / a.len().max(1) as f64
    };
    let (tl, rl): (Vec<i32>, Vec<i32>) = (
        t_lat.iter().map(|&v| v as i32).collect(),
        r_lat.iter().map(|&v| v as i32).collect(),
    );
    let (ti, ri): (Vec<i32>, Vec<i32>) = (
        t_img.iter().map(|&v| v as i32).collect(),
        r_img.iter().map(|&v| v as i32).collect(),
    );
    Ok(ExportReport {
        files,
        test_images: n,
        float_max_diff,
        latent_exact: share(&tl, &rl, 0),
        latent_within_1: share(&tl, &rl, 1),
        pixels_exact: share(&ti, &ri, 0),
        pixels_within_1: share(&ti, &ri, 1),
    })
}
