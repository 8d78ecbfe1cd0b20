//! Whole frames through a fully convolutional model (format version 3, [`Frame`]): the
//! definition of what the device computes for a frame of any size.
//!
//! Every layer runs over the whole frame with the shapes [`Layer::at_frame`] derives from the
//! frame's size, on the same checked kernel calls as the engine. The caller provides two
//! ping-pong buffers of [`frame_buffer_len`] int8 values and [`frame_scratch_len`] bytes of
//! scratch; nothing is allocated and nothing panics. (A device with less RAM than a whole
//! feature map runs the stripe engine, which must produce the same bytes.)
//!
//! Frames: uint8 pixels, HWC, `rows` and `cols` positive multiples of the total stride S. The
//! latent map is `(rows/S, cols/S, M)` int8, positions in raster order, channels innermost:
//! the order the codec codes it in ([`encode_frame`] then `EntropyLevel::encode_into` per
//! position).

use edgevae_shared::format::{Activation, Frame, Layer, Model, Op, Section};

use crate::engine::{conv_geom, kernel_shape, layer_scratch, output_stage, EngineError, KernelSet};
use crate::kernels::{self, ConvParams, KernelError, Scratch};

fn kernel_err(section: Section, index: usize, error: KernelError) -> EngineError {
    EngineError::Kernel {
        section,
        index: index as u8,
        error: error.into(),
    }
}

/// The frame geometry of `model`, or an error for a model that is not fully convolutional.
pub fn frame_of(model: &Model<'_>) -> Result<Frame, EngineError> {
    model
        .frame()
        .copied()
        .ok_or(EngineError::FrameSize { rows: 0, cols: 0 })
}

/// The layers of `section` at a frame: each layer with the shapes its input of `rows × cols`
/// gives, in order (the first layer's input is `rows × cols`). `None` at the first layer that
/// cannot take its input (a size that is not a multiple of a stride, or past u16).
fn layers_at<'a>(
    layers: &'a [Layer<'a>],
    rows: u16,
    cols: u16,
) -> impl Iterator<Item = Option<Layer<'a>>> + 'a {
    let mut at = Some((rows, cols));
    layers.iter().map(move |l| {
        let (r, c) = at?;
        let scaled = l.at_frame(r, c);
        at = scaled.map(|s| (s.output.h, s.output.w));
        scaled
    })
}

/// The encoder's input rows and columns for a frame of `rows × cols` pixels and the decoder's
/// for a latent map of `rows × cols`, checked against the total stride.
fn section_input(frame: &Frame, section: Section, rows: usize, cols: usize) -> Option<(u16, u16)> {
    let s = frame.total_stride as usize;
    let ok = match section {
        Section::Encoder => {
            rows > 0 && cols > 0 && rows.is_multiple_of(s) && cols.is_multiple_of(s)
        }
        _ => rows > 0 && cols > 0,
    };
    let (r, c) = (u16::try_from(rows).ok()?, u16::try_from(cols).ok()?);
    ok.then_some((r, c))
}

/// int8 values each of the two ping-pong buffers needs to run `section` (encoder: on a frame
/// of `rows × cols` pixels; decoder: on a latent map of `rows × cols`): the largest activation
/// of the section, its input included. `None` for sizes the model cannot take.
pub fn frame_buffer_len(
    model: &Model<'_>,
    section: Section,
    rows: usize,
    cols: usize,
) -> Option<usize> {
    let frame = model.frame()?;
    let (r, c) = section_input(frame, section, rows, cols)?;
    let layers = match section {
        Section::Decoder => model.decoder(),
        _ => model.encoder(),
    };
    let mut most = 0u64;
    for l in layers_at(layers, r, c) {
        let l = l?;
        most = most.max(l.input.len()).max(l.output.len());
    }
    usize::try_from(most).ok()
}

/// Scratch bytes kernel set `K` needs to run `section` at that size (the largest of any layer).
pub fn frame_scratch_len<K: KernelSet>(
    model: &Model<'_>,
    section: Section,
    rows: usize,
    cols: usize,
) -> Option<usize> {
    let frame = model.frame()?;
    let (r, c) = section_input(frame, section, rows, cols)?;
    let layers = match section {
        Section::Decoder => model.decoder(),
        _ => model.encoder(),
    };
    let mut most = 0usize;
    for l in layers_at(layers, r, c) {
        most = most.max(layer_scratch::<K>(&l?));
    }
    Some(most)
}

/// Runs `section` of a fully convolutional model on `input` (the section's input at `rows ×
/// cols`, already in `a`); returns which buffer holds the output (`false`: `a`, `true`: `b`)
/// and its length.
fn run_section<K: KernelSet>(
    model: &Model<'_>,
    section: Section,
    rows: u16,
    cols: u16,
    a: &mut [i8],
    b: &mut [i8],
    scratch: &mut [u8],
) -> Result<(bool, usize), EngineError> {
    let layers = match section {
        Section::Decoder => model.decoder(),
        _ => model.encoder(),
    };
    let mut in_b = false;
    let mut cur = 0usize;
    for (index, l) in layers_at(layers, rows, cols).enumerate() {
        let bad = kernel_err(section, index, KernelError::BufferTooSmall);
        let l = l.ok_or(bad)?;
        let (in_len, out_len) = (l.input.len() as usize, l.output.len() as usize);
        if index > 0 && in_len != cur {
            return Err(bad);
        }
        let (src, dst): (&[i8], &mut [i8]) = if in_b {
            (&b[..], &mut a[..])
        } else {
            (&a[..], &mut b[..])
        };
        let input = src.get(..in_len).ok_or(bad)?;
        let output = dst.get_mut(..out_len).ok_or(bad)?;
        let stage = output_stage(&l);
        let w = l.weights_i8();
        let params = |geom| ConvParams {
            in_shape: kernel_shape(l.input),
            out_shape: kernel_shape(l.output),
            geom,
            input_zp: l.input_q.zero_point as i32,
        };
        let need = layer_scratch::<K>(&l);
        let scratch = Scratch::new(scratch.get_mut(..need).ok_or(bad)?);
        match (l.op, conv_geom(l.op)) {
            (Op::Conv2d { .. }, Some(g)) => params(g)
                .check(input, w, &stage, output)
                .and_then(|c| K::conv2d(c, scratch)),
            (Op::ConvTranspose2d { .. }, Some(g)) => params(g)
                .check_transposed(input, w, &stage, output)
                .and_then(|c| K::conv_transpose2d(c, scratch)),
            _ => Err(KernelError::BadParams),
        }
        .map_err(|e| kernel_err(section, index, e))?;
        if let Activation::Lut { table, .. } = l.activation {
            let table: &[u8; 256] = table.try_into().map_err(|_| bad)?;
            kernels::apply_lut(output, table);
        }
        in_b = !in_b;
        cur = out_len;
    }
    Ok((in_b, cur))
}

/// Encodes a frame: `pixels` (`rows × cols × C` uint8, HWC; sides multiples of the total
/// stride) → `latent` (`rows/S × cols/S × M` int8). `a` and `b` hold at least
/// [`frame_buffer_len`] values each, `scratch` at least [`frame_scratch_len`] bytes.
#[allow(clippy::too_many_arguments)]
pub fn encode_frame<K: KernelSet>(
    model: &Model<'_>,
    pixels: &[u8],
    rows: usize,
    cols: usize,
    latent: &mut [i8],
    a: &mut [i8],
    b: &mut [i8],
    scratch: &mut [u8],
) -> Result<(), EngineError> {
    let frame = frame_of(model)?;
    let h = model.header();
    if h.input_q.zero_point != -128 {
        return Err(EngineError::UnsupportedInput);
    }
    let (r, c) = section_input(&frame, Section::Encoder, rows, cols)
        .ok_or(EngineError::FrameSize { rows, cols })?;
    let n = rows * cols * h.input.c as usize;
    if pixels.len() != n {
        return Err(EngineError::WrongLength {
            expected: n,
            found: pixels.len(),
        });
    }
    let s = frame.total_stride as usize;
    let m = (rows / s) * (cols / s) * h.latent as usize;
    if latent.len() != m {
        return Err(EngineError::WrongLength {
            expected: m,
            found: latent.len(),
        });
    }
    kernels::quantize_pixels(pixels, a).map_err(|e| kernel_err(Section::Encoder, 0, e))?;
    let (in_b, len) = run_section::<K>(model, Section::Encoder, r, c, a, b, scratch)?;
    let out = if in_b { &b[..] } else { &a[..] };
    let out = out.get(..len).filter(|o| o.len() == m).ok_or(kernel_err(
        Section::Encoder,
        0,
        KernelError::BufferTooSmall,
    ))?;
    latent.copy_from_slice(out);
    Ok(())
}

/// Decodes a latent map of `rows × cols` positions (`× M` int8) to `pixels` (`rows·S × cols·S
/// × C` uint8). Buffers as for [`encode_frame`], sized by [`frame_buffer_len`] for the decoder.
#[allow(clippy::too_many_arguments)]
pub fn decode_frame<K: KernelSet>(
    model: &Model<'_>,
    latent: &[i8],
    rows: usize,
    cols: usize,
    pixels: &mut [u8],
    a: &mut [i8],
    b: &mut [i8],
    scratch: &mut [u8],
) -> Result<(), EngineError> {
    if model.encoder_only() {
        return Err(EngineError::NoDecoder);
    }
    let frame = frame_of(model)?;
    let h = model.header();
    let (r, c) = section_input(&frame, Section::Decoder, rows, cols)
        .ok_or(EngineError::FrameSize { rows, cols })?;
    let m = rows * cols * h.latent as usize;
    if latent.len() != m {
        return Err(EngineError::WrongLength {
            expected: m,
            found: latent.len(),
        });
    }
    let s = frame.total_stride as usize;
    let n = rows * s * cols * s * h.input.c as usize;
    if pixels.len() != n {
        return Err(EngineError::WrongLength {
            expected: n,
            found: pixels.len(),
        });
    }
    let bad = kernel_err(Section::Decoder, 0, KernelError::BufferTooSmall);
    a.get_mut(..m).ok_or(bad)?.copy_from_slice(latent);
    let (in_b, len) = run_section::<K>(model, Section::Decoder, r, c, a, b, scratch)?;
    let out = if in_b { &b[..] } else { &a[..] };
    let out = out.get(..len).filter(|o| o.len() == n).ok_or(bad)?;
    for (p, &q) in pixels.iter_mut().zip(out) {
        *p = q as u8; // the last lookup table yields uint8 pixels
    }
    Ok(())
}
