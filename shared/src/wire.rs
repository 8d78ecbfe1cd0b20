//! Host <-> device wire protocol.
//!
//! A frame on the serial link is
//!
//! ```text
//! COBS( postcard((seq: u16, message)) ++ crc32_le(postcard bytes) ) ++ 0x00
//! ```
//!
//! COBS removes every zero byte from the frame, so `0x00` delimits frames and a receiver
//! resynchronises after garbage at the next zero. The host sends [`Request`]s; the device answers
//! each with one [`Response`] carrying the same sequence number. A frame the device cannot read is
//! answered with [`Response::Error`] (sequence number 0 when it could not be read) and the device
//! keeps serving. Payload slices borrow from the receive buffer (no copies, no allocation).
//!
//! # Frames of a photo model, row by row
//!
//! A fully convolutional (photo) model encodes a camera frame of any size up to its declared
//! maximum width, which does not fit one message. The host streams it instead, and the device
//! paces it (stop and wait: the host sends the next message only after the device's answer):
//!
//! ```text
//! host                                            device
//! FrameBegin { width, height, channels, level } →
//!                                               ← FrameReady { credit }       (or Error)
//! FrameRows { first_row: 0, rows: k ≤ credit rows } →
//!                                               ← RowsAccepted { next_row: k, credit }
//! …                                                 (credit: rows the next message may carry)
//! FrameRows { first_row, rows: the last rows }  →
//!                                               ← BitstreamChunk { offset, total_bits, last, bytes } ×n
//! ```
//!
//! `credit` is the number of whole rows that fit in the device's receive buffer in one
//! [`Request::FrameRows`] (never more than the rows still missing), so the host never overruns
//! it. Every answer carries the sequence number of the request it answers; the chunks of the
//! bitstream answer the last `FrameRows`, in order, the last one with `last: true`, and
//! together hold `ceil(total_bits / 8)` bytes: the whole-frame bitstream of the host's codec,
//! byte for byte. A wrong header is refused with [`WireErrorCode::BadFrameHeader`]; a chunk
//! that is not the next whole rows gets [`WireErrorCode::RowOutOfOrder`], rows with no frame
//! begun [`WireErrorCode::NoFrame`], any other request during a frame
//! [`WireErrorCode::FrameAborted`] (it is not served: send it again), and garbage, a bad CRC
//! or an oversized frame their usual codes. Each of these ends the frame; the device keeps
//! serving.

use core::fmt;

use heapless::String;
use serde::{Deserialize, Serialize};

use crate::format::{QParams, Shape, MAX_NAME};

/// Largest message overhead around a byte payload: enum tag, varint seq, one varint field
/// (quality level, bit count), varint length, CRC.
pub const MESSAGE_OVERHEAD: usize = 1 + 3 + 3 + 3 + 4;
/// An upper bound on the encoded size of an `Info` response.
pub const INFO_LEN: usize = 96;

/// Largest message overhead around a [`Response::BitstreamChunk`]'s bytes: enum tag, varint
/// seq, varint offset and bit count (u32), the `last` flag, varint length, CRC.
pub const CHUNK_OVERHEAD: usize = 1 + 3 + 5 + 5 + 1 + 3 + 4;

/// The most payload bytes a message with `overhead` bytes around them ([`MESSAGE_OVERHEAD`]
/// for [`Request::FrameRows`], [`CHUNK_OVERHEAD`] for [`Response::BitstreamChunk`]) may carry
/// so that its frame, delimiter included, fits `capacity` bytes (the app's `N`): what
/// [`Response::FrameReady`]'s credit and the bitstream chunks are sized from. 0 when not even
/// the overhead fits.
pub const fn frame_payload(capacity: usize, overhead: usize) -> usize {
    // A raw message of r bytes COBS-encodes into at most r + r/254 + 1 bytes, plus the zero.
    let m = capacity.saturating_sub(2);
    let mut raw = m - m / 255;
    while raw > 0 && raw + raw / 254 > m {
        raw -= 1;
    }
    raw.saturating_sub(overhead)
}

/// Bytes a frame buffer needs (delimiter included) to carry a payload of `data_len` bytes.
pub const fn frame_capacity(data_len: usize) -> usize {
    let raw = if data_len > INFO_LEN {
        data_len
    } else {
        INFO_LEN
    } + MESSAGE_OVERHEAD;
    raw + raw / 254 + 2
}

/// Host to device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Describe the model the device runs.
    Info,
    /// Encode one image (raw uint8 pixels, H×W×C) into a latent code.
    Encode {
        /// uint8 pixels, H×W×C of the model's input shape.
        #[serde(borrow)]
        frame: &'a [u8],
    },
    /// Decode an int8 latent code (as bytes) into an image.
    Decode {
        /// One int8 per latent dimension.
        #[serde(borrow)]
        latent: &'a [u8],
    },
    /// Compress one image (raw uint8 pixels) into an entropy-coded bitstream of quality `level`.
    Compress {
        /// Quality level, an index into the model's entropy section (0: coarsest).
        level: u8,
        /// uint8 pixels, H×W×C of the model's input shape.
        #[serde(borrow)]
        frame: &'a [u8],
    },
    /// Decompress a bitstream of quality `level` into an image.
    Decompress {
        /// Quality level the bitstream was coded with (0: coarsest).
        level: u8,
        /// The entropy-coded bytes, as in [`Response::Bitstream`].
        #[serde(borrow)]
        bitstream: &'a [u8],
    },
    /// Start a frame for a photo model (one with a frame section): `height` rows of `width`
    /// uint8 pixels, `channels` interleaved (HWC; the model's input channels), coded at
    /// quality `level`. Answered with [`Response::FrameReady`] or an error.
    FrameBegin {
        /// Columns, 1 ..= the model's maximum frame width.
        width: u16,
        /// Rows, at least 1.
        height: u16,
        /// Channels per pixel: the model's (1 grey, 3 RGB).
        channels: u8,
        /// Quality level (0: coarsest).
        level: u8,
    },
    /// The next whole rows of the frame begun: rows `first_row ..` (the next row the device
    /// expects), at most the credit of the device's last answer.
    FrameRows {
        /// Index of the first row in `rows`.
        first_row: u16,
        /// One or more whole rows, `width × channels` bytes each.
        #[serde(borrow)]
        rows: &'a [u8],
    },
}

/// What the device runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Newest model-file format version the firmware reads ([`crate::FORMAT_VERSION`] of its
    /// build).
    pub format_version: u16,
    /// Name from the model header.
    pub model_name: String<MAX_NAME>,
    /// CRC-32 of the model payload.
    pub model_crc: u32,
    /// Image shape the model encodes and decodes (uint8 pixels).
    pub input: Shape,
    /// Latent code length (int8 values).
    pub latent: u16,
    /// Quantization of the int8 latent code.
    pub latent_q: QParams,
    /// Arena bytes the model header declares (activations plus kernel scratch).
    pub arena_bytes: u32,
    /// Which kernels the firmware was built with.
    pub kernels: KernelPath,
    /// Quality levels of the model's entropy coder (0: no codec, raw latents only).
    pub levels: u8,
}

/// The kernel implementation compiled into the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KernelPath {
    /// Portable Rust kernels, any target.
    Scalar,
    /// Arm Cortex-M kernels using the DSP extension (SMLAD, two int16 MACs per instruction).
    CortexMDsp,
    /// AArch64 NEON SIMD kernels.
    Neon,
}

/// Device to host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response<'a> {
    /// Answer to [`Request::Info`].
    Info(DeviceInfo),
    /// int8 latent code (as bytes).
    Latent {
        /// One int8 per latent dimension.
        #[serde(borrow)]
        code: &'a [u8],
    },
    /// An entropy-coded latent: `bits` meaningful bits in `ceil(bits / 8)` bytes.
    Bitstream {
        /// Length of the stream in bits.
        bits: u16,
        /// The coded bytes, `ceil(bits / 8)` of them.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// uint8 pixels, H×W×C.
    Image {
        /// uint8 pixels, H×W×C of the model's input shape.
        #[serde(borrow)]
        pixels: &'a [u8],
    },
    /// The request was refused or failed.
    Error(WireErrorCode),
    /// Answer to [`Request::FrameBegin`]: the frame is accepted; send its rows from row 0.
    FrameReady {
        /// Rows the next [`Request::FrameRows`] may carry.
        credit: u16,
    },
    /// Answer to a [`Request::FrameRows`] that was not the frame's last.
    RowsAccepted {
        /// The row the next [`Request::FrameRows`] starts at.
        next_row: u16,
        /// Rows it may carry.
        credit: u16,
    },
    /// Part of a frame's bitstream (the answer to the frame's last rows, in one or more
    /// chunks, in order).
    BitstreamChunk {
        /// Position of `bytes` in the stream.
        offset: u32,
        /// Length of the whole stream in bits (`ceil(total_bits / 8)` bytes in all chunks).
        total_bits: u32,
        /// The stream's last chunk.
        last: bool,
        /// The bytes from `offset`.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
}

/// Why the device refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WireErrorCode {
    /// The frame is not valid COBS or is too short to hold a message.
    BadFrame,
    /// The frame's CRC does not match.
    BadChecksum,
    /// The bytes are not a known request.
    Malformed,
    /// The frame was longer than the device's receive buffer.
    Oversized,
    /// An image or latent of the wrong length.
    WrongLength,
    /// The engine failed (a bug or an arena problem; see the device log).
    Engine,
    /// The model has no entropy coder, or not the requested quality level.
    NoSuchLevel,
    /// A [`Request::FrameBegin`] the device cannot take: no rows or columns, wider than the
    /// model's maximum frame width, not the model's channel count, a model with no frame
    /// section, or a frame wider than the device's memory (arena, receive buffer) holds.
    BadFrameHeader,
    /// A [`Request::FrameRows`] that is not the next whole rows: another first row (a chunk
    /// repeated, one skipped), no rows, a partial row, or rows past the frame's height. The
    /// frame is dropped.
    RowOutOfOrder,
    /// A [`Request::FrameRows`] with no frame begun (or after the frame ended).
    NoFrame,
    /// Another request arrived in the middle of a frame: the frame is dropped and the request
    /// not served (send it again).
    FrameAborted,
    /// The frame's bitstream outgrew the device's output buffer.
    BitstreamFull,
    /// A decode request to a device whose model is encoder-only (it embeds no decoder).
    NoDecoder,
}

impl From<FrameError> for WireErrorCode {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Empty | FrameError::TooShort | FrameError::Cobs => WireErrorCode::BadFrame,
            FrameError::Checksum { .. } => WireErrorCode::BadChecksum,
            FrameError::Decode | FrameError::TrailingBytes { .. } => WireErrorCode::Malformed,
            FrameError::Oversized => WireErrorCode::Oversized,
            FrameError::BufferTooSmall | FrameError::Encode => WireErrorCode::Engine,
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// Nothing between two delimiters.
    Empty,
    /// Not valid COBS.
    Cobs,
    /// Too short to hold a sequence number, a message and a CRC.
    TooShort,
    /// The frame's CRC-32 does not match its bytes.
    Checksum {
        /// CRC-32 carried in the frame.
        stored: u32,
        /// CRC-32 of the frame's bytes as received.
        computed: u32,
    },
    /// The bytes are not the expected message type.
    Decode,
    /// Bytes left over after the message.
    TrailingBytes {
        /// Number of leftover bytes.
        extra: usize,
    },
    /// More bytes than the receive buffer before a delimiter.
    Oversized,
    /// The output buffer cannot hold the encoded frame.
    BufferTooSmall,
    /// The message could not be serialised.
    Encode,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::Empty => write!(f, "empty frame"),
            FrameError::Cobs => write!(f, "frame is not valid COBS"),
            FrameError::TooShort => write!(f, "frame too short for a message and its CRC"),
            FrameError::Checksum { stored, computed } => {
                write!(
                    f,
                    "frame CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            FrameError::Decode => write!(f, "frame does not hold a valid message"),
            FrameError::TrailingBytes { extra } => write!(f, "{extra} bytes after the message"),
            FrameError::Oversized => write!(f, "frame longer than the receive buffer"),
            FrameError::BufferTooSmall => write!(f, "buffer too small for the frame"),
            FrameError::Encode => write!(f, "message could not be serialised"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Encode `(seq, msg)` as one delimited frame into `out`, using `work` for the raw bytes.
/// Returns the frame length, delimiter included.
pub fn encode_frame<T: Serialize>(
    seq: u16,
    msg: &T,
    work: &mut [u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let n = match postcard::to_slice(&(seq, msg), work) {
        Ok(used) => used.len(),
        Err(postcard::Error::SerializeBufferFull) => return Err(FrameError::BufferTooSmall),
        Err(_) => return Err(FrameError::Encode),
    };
    let crc = crate::crc::crc32(work.get(..n).ok_or(FrameError::BufferTooSmall)?);
    work.get_mut(n..n + 4)
        .ok_or(FrameError::BufferTooSmall)?
        .copy_from_slice(&crc.to_le_bytes());
    let raw = work.get(..n + 4).ok_or(FrameError::BufferTooSmall)?;
    if out.len() < cobs::max_encoding_length(raw.len()) + 1 {
        return Err(FrameError::BufferTooSmall);
    }
    let len = cobs::try_encode(raw, out).map_err(|_| FrameError::BufferTooSmall)?;
    *out.get_mut(len).ok_or(FrameError::BufferTooSmall)? = 0;
    Ok(len + 1)
}

/// COBS decoding in place, byte for byte what `cobs::decode_in_place` (0.3) accepts and writes,
/// with every access checked (the crate's indexing is correct but leaves panic paths that the
/// device's link-time no-panic proof cannot remove). Returns the decoded length.
fn cobs_decode_in_place(buf: &mut [u8]) -> Option<usize> {
    if buf.is_empty() {
        return None;
    }
    // Stop at the first terminator, if any.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let (mut src, mut dst) = (0usize, 0usize);
    while src < end {
        let code = *buf.get(src)? as usize;
        if src.checked_add(code)? > end && code != 1 {
            return None;
        }
        src += 1;
        for _ in 1..code {
            let b = *buf.get(src)?;
            *buf.get_mut(dst)? = b;
            src += 1;
            dst += 1;
        }
        if code != 0xFF && src < end {
            *buf.get_mut(dst)? = 0;
            dst += 1;
        }
    }
    Some(dst)
}

/// Decode one frame (without its delimiter) in place and parse `(seq, message)`.
/// The message may borrow from `frame`.
pub fn decode_frame<'b, T: Deserialize<'b>>(frame: &'b mut [u8]) -> Result<(u16, T), FrameError> {
    if frame.is_empty() {
        return Err(FrameError::Empty);
    }
    let n = cobs_decode_in_place(frame).ok_or(FrameError::Cobs)?;
    let frame: &'b [u8] = frame;
    let raw = frame.get(..n).ok_or(FrameError::Cobs)?;
    if raw.len() < 5 {
        return Err(FrameError::TooShort);
    }
    let (body, tail) = raw.split_at(raw.len() - 4);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crate::crc::crc32(body);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    let (msg, left) =
        postcard::take_from_bytes::<(u16, T)>(body).map_err(|_| FrameError::Decode)?;
    if !left.is_empty() {
        return Err(FrameError::TrailingBytes { extra: left.len() });
    }
    Ok(msg)
}

/// Encode a frame into a new vector.
#[cfg(feature = "alloc")]
pub fn encode_frame_vec<T: Serialize>(
    seq: u16,
    msg: &T,
) -> Result<alloc::vec::Vec<u8>, FrameError> {
    let raw = postcard::to_allocvec(&(seq, msg)).map_err(|_| FrameError::Encode)?;
    let mut work = raw.clone();
    work.extend_from_slice(&[0; 4]);
    let mut out = alloc::vec![0u8; cobs::max_encoding_length(work.len()) + 1];
    let n = encode_frame(seq, msg, &mut work, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// What one received byte did.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed<'r> {
    /// Keep sending bytes.
    Pending,
    /// A complete frame (delimiter stripped), to pass to [`decode_frame`].
    Frame(&'r mut [u8]),
    /// The frame just ended was longer than the buffer and was dropped.
    Overflow,
}

/// Collects bytes from a serial link into frames, resynchronising at each zero byte.
/// Fixed capacity `N`; an oversized frame is dropped whole and reported once.
pub struct FrameReader<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameReader<N> {
    /// An empty reader.
    pub const fn new() -> Self {
        FrameReader {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    /// Feed one byte.
    pub fn push(&mut self, byte: u8) -> Feed<'_> {
        if byte == 0 {
            let len = core::mem::replace(&mut self.len, 0);
            if core::mem::replace(&mut self.overflow, false) {
                return Feed::Overflow;
            }
            return match self.buf.get_mut(..len) {
                Some(frame) if !frame.is_empty() => Feed::Frame(frame),
                _ => Feed::Pending,
            };
        }
        match self.buf.get_mut(self.len) {
            Some(slot) if !self.overflow => {
                *slot = byte;
                self.len += 1;
            }
            _ => {
                self.overflow = true;
                self.len = 0;
            }
        }
        Feed::Pending
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The checked COBS decoder accepts, rejects and writes exactly what the `cobs` crate does,
        /// on valid encodings and on any bytes (small alphabets make zeros and short codes common).
        #[test]
        fn cobs_decode_matches_the_crate(raw in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(2u8), Just(255u8), any::<u8>()], 0..300),
                                         encode in any::<bool>()) {
            let mut ours = if encode { cobs::encode_vec(&raw) } else { raw.clone() };
            let mut theirs = ours.clone();
            let a = super::cobs_decode_in_place(&mut ours);
            let b = cobs::decode_in_place(&mut theirs).ok();
            prop_assert_eq!(a, b);
            if let Some(n) = a {
                prop_assert_eq!(&ours[..n], &theirs[..n]);
            }
        }
    }
}
