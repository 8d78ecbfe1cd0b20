//! Whole-frame coding with a fully convolutional model (format version 3): the photo codec.
//!
//! The frame is padded to a multiple of the total stride S by replicating its last row and
//! column, encoded by the firmware's scalar kernels over the whole frame
//! ([`crate::quantize::photo::FrameRef`]), and its latent map coded with the shared entropy
//! coder in raster order of positions, channels innermost, one stream for the frame: the order
//! a device codes each latent row in as soon as it exists.
//!
//! ```text
//! .evz container version 2 (little-endian)
//! offset size
//!      0    4  magic b"EVZ\0"
//!      4    1  container version (2)
//!      5    1  quality level (0 = coarsest)
//!      6    4  CRC-32 of the model file's payload
//!     10    4  width, 4 height (pixels, the true size before padding)
//!     18    1  channels (1 grey, 3 RGB: the model's)
//!     19    n  the bitstream
//!   19+n    4  CRC-32 of bytes [0, 19+n)
//! ```

use edgevae_shared::entropy::{Decoder, Encoder};
use edgevae_shared::format::Model;

use super::{size_ok, EvzError, EVZ_MAGIC};
use crate::data::photos::Photo;
use crate::error::Error;
use crate::quantize::photo::FrameRef;

/// Container version of whole-frame files.
pub const EVZ_FRAME_VERSION: u8 = 2;
/// Bytes of container around a whole-frame bitstream: 19 header + 4 CRC.
pub const EVZ_FRAME_OVERHEAD: usize = 23;

/// A photo compressed with a fully convolutional model.
#[derive(Clone, Debug)]
pub struct FrameCompressed {
    /// The whole `.evz` file.
    pub file: Vec<u8>,
    /// Meaningful bits of the bitstream (termination included).
    pub bits: usize,
    /// The photo as `decompress` returns it (decoded from `file`).
    pub decoded: Photo,
}

/// The padded size of a `rows × cols` frame for total stride `s`.
pub fn padded_size(rows: usize, cols: usize, s: usize) -> (usize, usize) {
    (rows.div_ceil(s) * s, cols.div_ceil(s) * s)
}

/// Compresses `photo` (converted to the model's channels first) at quality `level`.
pub fn compress_frame(
    model: &Model<'_>,
    level: u8,
    photo: &Photo,
) -> Result<FrameCompressed, Error> {
    let levels = model.entropy().map_or(0, |e| e.levels.len());
    let coder = model
        .level(level)
        .ok_or(EvzError::NoSuchLevel { level, levels })?;
    let h = model.header();
    let channels = h.input.c as usize;
    if !size_ok(photo.width as u32, photo.height as u32) {
        return Err(Error::Invalid(
            EvzError::BadSize {
                width: photo.width as u32,
                height: photo.height as u32,
            }
            .to_string(),
        ));
    }
    let photo = photo.with_channels(channels);
    let r = FrameRef::new(model);
    let s = r.stride()?;
    let (rows, cols) = padded_size(photo.height, photo.width, s);
    let padded = photo.padded(rows, cols);
    let latent = r.encode(&padded.pixels, rows, cols)?;
    let m = h.latent as usize;
    let zp = h.latent_q.zero_point;
    // A symbol costs at most 16 bits + the coder's carry: 3 bytes a value is an upper bound.
    let mut stream = vec![0u8; latent.len() * 3 + 16];
    let mut enc = Encoder::new(&mut stream);
    let coder = coder.coder(zp);
    for pos in latent.chunks_exact(m) {
        coder.encode_into(&mut enc, pos)?;
    }
    let bits = enc.finish()?;
    stream.truncate(bits.div_ceil(8));
    let mut file = Vec::with_capacity(stream.len() + EVZ_FRAME_OVERHEAD);
    file.extend_from_slice(&EVZ_MAGIC);
    file.push(EVZ_FRAME_VERSION);
    file.push(level);
    file.extend_from_slice(&model.crc().to_le_bytes());
    file.extend_from_slice(&(photo.width as u32).to_le_bytes());
    file.extend_from_slice(&(photo.height as u32).to_le_bytes());
    file.push(channels as u8);
    file.extend_from_slice(&stream);
    let crc = edgevae_shared::crc::crc32(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    let decoded = decompress_frame(model, &file)?;
    Ok(FrameCompressed {
        file,
        bits,
        decoded,
    })
}

/// The checked header of a whole-frame `.evz` file: (level, width, height, bitstream).
pub fn parse_frame_evz<'f>(
    model: &Model<'_>,
    file: &'f [u8],
) -> Result<(u8, u32, u32, &'f [u8]), EvzError> {
    if file.len() < EVZ_FRAME_OVERHEAD {
        return Err(EvzError::TooShort { len: file.len() });
    }
    if file[..4] != EVZ_MAGIC {
        return Err(EvzError::BadMagic);
    }
    if file[4] != EVZ_FRAME_VERSION {
        return Err(EvzError::Version(file[4]));
    }
    let (body, crc) = file.split_at(file.len() - 4);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if edgevae_shared::crc::crc32(body) != u32_at(crc, 0) {
        return Err(EvzError::Checksum);
    }
    let model_crc = u32_at(body, 6);
    if model_crc != model.crc() {
        return Err(EvzError::WrongModel {
            file: model_crc,
            model: model.crc(),
        });
    }
    let level = body[5];
    let levels = model.entropy().map_or(0, |e| e.levels.len());
    if level as usize >= levels {
        return Err(EvzError::NoSuchLevel { level, levels });
    }
    let (width, height) = (u32_at(body, 10), u32_at(body, 14));
    if !size_ok(width, height) {
        return Err(EvzError::BadSize { width, height });
    }
    if body[18] as u16 != model.header().input.c {
        return Err(EvzError::Channels {
            file: body[18],
            model: model.header().input.c as u8,
        });
    }
    Ok((level, width, height, &body[19..]))
}

/// Decompresses a whole-frame `.evz` file made with `model`.
pub fn decompress_frame(model: &Model<'_>, file: &[u8]) -> Result<Photo, Error> {
    let (level, width, height, stream) = parse_frame_evz(model, file)?;
    let coder = model
        .level(level)
        .ok_or_else(|| Error::Invalid("internal: level vanished".into()))?;
    let h = model.header();
    let r = FrameRef::new(model);
    let s = r.stride()?;
    let (rows, cols) = padded_size(height as usize, width as usize, s);
    let m = h.latent as usize;
    let zp = h.latent_q.zero_point;
    let mut latent = vec![0i8; (rows / s) * (cols / s) * m];
    let mut dec = Decoder::new(stream);
    let coder = coder.coder(zp);
    for pos in latent.chunks_exact_mut(m) {
        coder
            .decode_from(&mut dec, pos)
            .map_err(|e| Error::Invalid(format!("entropy decoding: {e}")))?;
    }
    let px = r.decode(&latent, rows / s, cols / s)?;
    let full = Photo {
        width: cols,
        height: rows,
        channels: h.input.c as usize,
        pixels: px,
    };
    Ok(full.cropped(height as usize, width as usize))
}
