//! The device application: serves the wire protocol over any serial port that implements the
//! embedded-hal 1.0 family's `embedded_hal_nb::serial::{Read, Write}`.
//!
//! Requests arrive as COBS frames (see `edgevae_shared::wire`); each complete frame is answered
//! with exactly one response frame. Every failure — bad COBS, bad CRC, unknown message, wrong
//! length, oversized frame, engine error — is answered with `Response::Error` and the app keeps
//! serving. Nothing here allocates or panics; all buffers are fixed at compile time (`N`, from
//! `wire::frame_capacity(image bytes)`).
//!
//! # Frames
//!
//! For a photo model (one with a frame section) the app also streams whole camera frames
//! (`Request::FrameBegin`, then `Request::FrameRows`; the protocol and its flow control are in
//! `edgevae_shared::wire`). On `FrameBegin` it checks the header and runs the stripe engine
//! ([`crate::stripe::compress`]) with a [`RowSource`] that reads the frame from the link: when
//! the engine asks for a row the app does not hold, it sends the pending flow-control answer
//! (`FrameReady` or `RowsAccepted` with the credit: the whole rows one `FrameRows` may carry
//! in `N` bytes) and polls the serial port for the next `FrameRows`. So [`App::poll`] blocks
//! for a whole frame once it has begun. The UART link is today's row source; a camera driver
//! would implement [`RowSource`] directly and call [`crate::stripe::compress`] itself.
//! Anything but the next whole rows (garbage, a bad CRC, an oversized frame, another request,
//! a repeated, skipped, partial or extra chunk) ends the frame with an error answer, and the
//! app goes on serving. After the last row the bitstream goes back in `BitstreamChunk`s of at
//! most `wire::frame_payload(N, wire::CHUNK_OVERHEAD)` bytes.
//!
//! Memory: the frame path uses the app's arena, which requests use one at a time: the stripe
//! engine's [`crate::stripe::required_arena`]`::<K>(model, width)` bytes at its front, plus the
//! kernel scratch set with [`App::with_frame_scratch`] (the DSP and NEON kernels run any layer
//! with no scratch, but through their reference loops: several times slower), and the
//! bitstream in the rest (`BitstreamFull` when it does not fit; [`frame_stripe_len`] never
//! gives the scratch more than half of what the minimum leaves). A board serving frames up to
//! `W` pixels wide therefore sizes its arena as the larger of the model's declared arena and
//! `required_arena(model, W)` + its kernel scratch + its bitstream budget, and `N` at least
//! `wire::frame_capacity(W × channels)` (one row a message; more rows a message with a larger
//! `N`). The row chunk is held in the `N`-byte image buffer; nothing else is added.

use edgevae_shared::entropy::CodingError;
use edgevae_shared::wire::{
    decode_frame, encode_frame, frame_payload, DeviceInfo, Feed, FrameReader, KernelPath, Request,
    Response, WireErrorCode, CHUNK_OVERHEAD, MESSAGE_OVERHEAD,
};
use edgevae_shared::{Model, FORMAT_VERSION};
use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{Read, Write};

use crate::engine::{Engine, EngineError, Fast, KernelSet};
use crate::stripe::{self, RowSource, StripeError};

/// Longest latent code served.
pub const MAX_LATENT: usize = 256;

/// Counters, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Complete frames received (each answered with one response); oversized frames not included.
    pub requests: u32,
    /// Frames answered with `Response::Error`: oversized, undecodable, or a request that failed.
    pub errors: u32,
}

/// The kernels this build runs.
pub const fn kernel_path() -> KernelPath {
    if cfg!(feature = "force-scalar") {
        KernelPath::Scalar
    } else if cfg!(edgevae_dsp) {
        KernelPath::CortexMDsp
    } else if cfg!(edgevae_neon) {
        KernelPath::Neon
    } else {
        KernelPath::Scalar
    }
}

/// Serves one model over one serial port. `N` bounds a frame (receive and transmit).
pub struct App<'m, 'a, S, const N: usize, K: KernelSet = Fast> {
    model: &'m Model<'m>,
    /// The engine's arena, and the stripe engine's and the frame bitstream's while a frame
    /// runs (one request at a time).
    arena: &'a mut [u8],
    _kernels: core::marker::PhantomData<K>,
    serial: S,
    reader: FrameReader<N>,
    work: [u8; N],
    out: [u8; N],
    pixels: [u8; N],
    latent: [i8; MAX_LATENT],
    info: DeviceInfo,
    stats: Stats,
    /// Kernel scratch the stripe engine gets on top of its minimum ([`App::with_frame_scratch`]).
    frame_scratch: usize,
}

/// Bytes at the front of an `arena_len`-byte arena that the stripe engine gets for a frame
/// `width` pixels wide: its minimum [`crate::stripe::required_arena`]`::<K>` plus up to
/// `scratch` bytes of kernel scratch, the scratch capped at half of what the minimum leaves so
/// that the bitstream behind it always keeps the other half. `None` when the model takes no
/// such frame or the minimum does not fit.
pub fn frame_stripe_len<K: KernelSet>(
    model: &Model<'_>,
    width: usize,
    scratch: usize,
    arena_len: usize,
) -> Option<usize> {
    let need = stripe::required_arena::<K>(model, width)?;
    let left = arena_len.checked_sub(need)?;
    Some(need + scratch.min(left / 2))
}

/// Why the app could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StartError {
    /// The engine refused the model or the arena.
    Engine(EngineError),
    /// The image or latent does not fit the frame buffers `N` / `MAX_LATENT`.
    BuffersTooSmall,
}

impl<'m, 'a, S, const N: usize, K> App<'m, 'a, S, N, K>
where
    S: Read<u8> + Write<u8>,
    K: KernelSet,
{
    /// Checks that the model's image and latent fit the buffers (`N`, [`MAX_LATENT`]) and that
    /// the engine takes `arena` (at least the model's declared `arena_bytes`), serving on
    /// `serial`. Frames use the whole of `arena` (see the [module docs](self)).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8], serial: S) -> Result<Self, StartError> {
        let h = model.header();
        let image = h.input.len() as usize;
        if edgevae_shared::wire::frame_capacity(image) > N || h.latent as usize > MAX_LATENT {
            return Err(StartError::BuffersTooSmall);
        }
        let info = DeviceInfo {
            format_version: FORMAT_VERSION,
            model_name: h.name.clone(),
            model_crc: model.crc(),
            input: h.input,
            latent: h.latent,
            latent_q: h.latent_q,
            arena_bytes: h.arena_bytes,
            kernels: kernel_path(),
            levels: model.entropy().map_or(0, |e| e.levels.len() as u8),
        };
        Engine::<K>::new(model, arena).map_err(StartError::Engine)?;
        Ok(App {
            model,
            arena,
            _kernels: core::marker::PhantomData,
            serial,
            reader: FrameReader::new(),
            work: [0; N],
            out: [0; N],
            pixels: [0; N],
            latent: [0; MAX_LATENT],
            info,
            stats: Stats::default(),
            frame_scratch: 0,
        })
    }

    /// Gives the stripe engine `bytes` of kernel scratch beyond its minimum for every frame
    /// (see [`frame_stripe_len`]): what the fast kernels run at full speed with, for example
    /// [`crate::stripe::required_arena_with`] with the kernels' own scratch sizes less
    /// `required_arena`, at the widest frame served. The bitstream gets the rest of the arena.
    pub fn with_frame_scratch(mut self, bytes: usize) -> Self {
        self.frame_scratch = bytes;
        self
    }

    /// Counters since [`App::new`].
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The serial port served (e.g. for a test to inject request bytes or read responses).
    pub fn serial(&mut self) -> &mut S {
        &mut self.serial
    }

    /// Reads at most one byte; when it completes a frame, answers it. Returns `Ok(true)` when a
    /// response was sent, `Ok(false)` when no byte was waiting or the frame is not complete yet.
    /// A `FrameBegin` that is accepted is served to its end here: `poll` then reads the frame's
    /// rows from the port (waiting for them) and returns after the bitstream's last chunk or
    /// the error answer that ended the frame. An `Err` is the port's own error.
    pub fn poll(&mut self) -> Result<bool, S::Error> {
        let byte = match self.serial.read() {
            Ok(b) => b,
            Err(nb::Error::WouldBlock) => return Ok(false),
            Err(nb::Error::Other(e)) => return Err(e),
        };
        let h = self.model.header();
        let (image, z) = (h.input.len() as usize, h.latent as usize);
        let frame = match self.reader.push(byte) {
            Feed::Pending => return Ok(false),
            Feed::Overflow => {
                self.stats.errors += 1;
                log_warn("frame longer than the receive buffer");
                let n = encode_error(WireErrorCode::Oversized, 0, &mut self.work, &mut self.out);
                send(&mut self.serial, &self.out, n)?;
                return Ok(true);
            }
            Feed::Frame(frame) => frame,
        };
        self.stats.requests += 1;
        let mut engine = match Engine::<K>::new(self.model, self.arena) {
            Ok(e) => e,
            Err(e) => {
                self.stats.errors += 1;
                let n = encode_error(engine_code(e), 0, &mut self.work, &mut self.out);
                send(&mut self.serial, &self.out, n)?;
                return Ok(true);
            }
        };
        let answer: Result<(u16, Response<'_>), (u16, WireErrorCode)> =
            match decode_frame::<Request>(frame) {
                Err(e) => Err((0, e.into())),
                Ok((seq, Request::Info)) => Ok((seq, Response::Info(self.info.clone()))),
                Ok((seq, Request::Encode { frame })) => {
                    let latent = self.latent.get_mut(..z).unwrap_or(&mut []);
                    match engine.encode(frame, latent) {
                        Ok(()) => Ok((
                            seq,
                            Response::Latent {
                                code: bytemuck::cast_slice(latent),
                            },
                        )),
                        Err(e) => Err((seq, engine_code(e))),
                    }
                }
                Ok((seq, Request::Decode { latent })) => {
                    let pixels = self.pixels.get_mut(..image).unwrap_or(&mut []);
                    match engine.decode(bytemuck::cast_slice(latent), pixels) {
                        Ok(()) => Ok((seq, Response::Image { pixels })),
                        Err(e) => Err((seq, engine_code(e))),
                    }
                }
                Ok((seq, Request::Compress { level, frame })) => {
                    let latent = self.latent.get_mut(..z).unwrap_or(&mut []);
                    // The bitstream goes to `pixels`, free until the response is framed.
                    match engine.compress(frame, level, latent, &mut self.pixels) {
                        Ok(bits) => match self.pixels.get(..bits.div_ceil(8)) {
                            Some(bytes) if bits <= u16::MAX as usize => Ok((
                                seq,
                                Response::Bitstream {
                                    bits: bits as u16,
                                    bytes,
                                },
                            )),
                            _ => Err((seq, WireErrorCode::Engine)),
                        },
                        Err(e) => Err((seq, engine_code(e))),
                    }
                }
                Ok((seq, Request::Decompress { level, bitstream })) => {
                    let latent = self.latent.get_mut(..z).unwrap_or(&mut []);
                    let pixels = self.pixels.get_mut(..image).unwrap_or(&mut []);
                    match engine.decompress(level, bitstream, latent, pixels) {
                        Ok(()) => Ok((seq, Response::Image { pixels })),
                        Err(e) => Err((seq, engine_code(e))),
                    }
                }
                Ok((
                    seq,
                    Request::FrameBegin {
                        width,
                        height,
                        channels,
                        level,
                    },
                )) => {
                    let header = FrameHeader {
                        width: width as usize,
                        height: height as usize,
                        channels,
                        level,
                    };
                    return self.serve_frame(seq, header).map(|()| true);
                }
                Ok((seq, Request::FrameRows { .. })) => Err((seq, WireErrorCode::NoFrame)),
            };
        let n = match answer {
            Ok((seq, resp)) => match encode_frame(seq, &resp, &mut self.work, &mut self.out) {
                Ok(n) => n,
                Err(_) => encode_error(WireErrorCode::Engine, seq, &mut self.work, &mut self.out),
            },
            Err((seq, code)) => {
                self.stats.errors += 1;
                log_error_code(code);
                encode_error(code, seq, &mut self.work, &mut self.out)
            }
        };
        send(&mut self.serial, &self.out, n)?;
        Ok(true)
    }

    /// One frame, from its accepted header to the bitstream's last chunk or the error that
    /// ended it; every answer is sent here.
    fn serve_frame(&mut self, seq: u16, header: FrameHeader) -> Result<(), S::Error> {
        let (last_seq, result) = self.run_frame(seq, header);
        let code = match result {
            Ok(bits) => match self.send_bitstream(last_seq, header, bits) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(code)) => code,
                Err(e) => return Err(e),
            },
            Err(FrameFail::Serial(e)) => return Err(e),
            Err(FrameFail::Wire(code)) => code,
        };
        self.stats.errors += 1;
        log_error_code(code);
        let n = encode_error(code, last_seq, &mut self.work, &mut self.out);
        send(&mut self.serial, &self.out, n)
    }

    /// Checks the header and runs the stripe engine over the link; the sequence number to
    /// answer (that of the last request read) and the bitstream's length in bits.
    fn run_frame(
        &mut self,
        seq: u16,
        hd: FrameHeader,
    ) -> (u16, Result<usize, FrameFail<S::Error>>) {
        let model = self.model;
        let bad = |code| (seq, Err(FrameFail::Wire(code)));
        let c = model.header().input.c as usize;
        let Some(frame) = model.frame() else {
            return bad(WireErrorCode::BadFrameHeader);
        };
        let row_len = hd.width.saturating_mul(c);
        let credit = frame_payload(N, MESSAGE_OVERHEAD) / row_len.max(1);
        if hd.channels as usize != c
            || hd.width == 0
            || hd.height == 0
            || hd.width > frame.max_width as usize
            || credit == 0
        {
            return bad(WireErrorCode::BadFrameHeader);
        }
        if model.level(hd.level).is_none() {
            return bad(WireErrorCode::NoSuchLevel);
        }
        let Some(need) =
            frame_stripe_len::<K>(model, hd.width, self.frame_scratch, self.arena.len())
        else {
            return bad(WireErrorCode::BadFrameHeader);
        };
        let Some((arena, out)) = self.arena.split_at_mut_checked(need) else {
            return bad(WireErrorCode::BadFrameHeader);
        };
        let mut link = LinkRows {
            serial: &mut self.serial,
            reader: &mut self.reader,
            work: &mut self.work,
            out: &mut self.out,
            chunk: &mut self.pixels,
            have: 0,
            used: 0,
            next_row: 0,
            height: hd.height,
            row_len,
            credit: credit.min(u16::MAX as usize),
            seq,
            begun: false,
            stats: &mut self.stats,
        };
        let result =
            stripe::compress::<K, _>(model, hd.level, hd.height, hd.width, &mut link, arena, out);
        let last_seq = link.seq;
        let result = result.map_err(|e| match e {
            StripeError::Source { error, .. } => error,
            StripeError::Coding(CodingError::OutputFull) => {
                FrameFail::Wire(WireErrorCode::BitstreamFull)
            }
            StripeError::NoSuchLevel { .. } => FrameFail::Wire(WireErrorCode::NoSuchLevel),
            StripeError::NotFullyConvolutional
            | StripeError::UnsupportedInput
            | StripeError::FrameSize { .. }
            | StripeError::TooWide { .. }
            | StripeError::ArenaTooSmall { .. } => FrameFail::Wire(WireErrorCode::BadFrameHeader),
            StripeError::Coding(_) | StripeError::Kernel { .. } => {
                FrameFail::Wire(WireErrorCode::Engine)
            }
        });
        (last_seq, result)
    }

    /// The frame's bitstream (`bits` bits after the stripe arena) in chunks answering `seq`.
    fn send_bitstream(
        &mut self,
        seq: u16,
        hd: FrameHeader,
        bits: usize,
    ) -> Result<Result<(), WireErrorCode>, S::Error> {
        let model = self.model;
        let need = frame_stripe_len::<K>(model, hd.width, self.frame_scratch, self.arena.len())
            .unwrap_or(usize::MAX);
        let stream = self
            .arena
            .get(need..)
            .and_then(|o| o.get(..bits.div_ceil(8)));
        let (Some(stream), Ok(total_bits)) = (stream, u32::try_from(bits)) else {
            return Ok(Err(WireErrorCode::Engine));
        };
        let step = frame_payload(N, CHUNK_OVERHEAD);
        if step == 0 {
            return Ok(Err(WireErrorCode::Engine));
        }
        let mut offset = 0usize;
        loop {
            let end = offset.saturating_add(step).min(stream.len());
            let bytes = stream.get(offset..end).unwrap_or(&[]);
            let last = end >= stream.len();
            let resp = Response::BitstreamChunk {
                offset: offset as u32, // ≤ total_bits / 8 + 1, a u32
                total_bits,
                last,
                bytes,
            };
            let Ok(n) = encode_frame(seq, &resp, &mut self.work, &mut self.out) else {
                return Ok(Err(WireErrorCode::Engine));
            };
            send(&mut self.serial, &self.out, n)?;
            if last {
                return Ok(Ok(()));
            }
            offset = end;
        }
    }
}

/// A frame's header, checked by [`App::run_frame`].
#[derive(Clone, Copy, Debug)]
struct FrameHeader {
    width: usize,
    height: usize,
    channels: u8,
    level: u8,
}

/// Why a frame ended early: the serial port failed (handed to the caller of [`App::poll`]), or
/// an error to answer.
enum FrameFail<E> {
    Serial(E),
    Wire(WireErrorCode),
}

/// The frame's rows from the link: the [`RowSource`] the stripe engine reads while a frame is
/// streamed. It holds one `FrameRows` chunk (in the app's image buffer) and, when that is used
/// up, sends the flow-control answer and reads frames from the serial port until the next one.
struct LinkRows<'s, S, const N: usize> {
    serial: &'s mut S,
    reader: &'s mut FrameReader<N>,
    work: &'s mut [u8; N],
    out: &'s mut [u8; N],
    /// The current chunk's rows.
    chunk: &'s mut [u8; N],
    /// Bytes of `chunk` held, and handed out.
    have: usize,
    used: usize,
    /// The row the next chunk must start at.
    next_row: usize,
    height: usize,
    row_len: usize,
    /// Rows a chunk may carry (at least 1, fits `N`).
    credit: usize,
    /// Sequence number of the last request read (answers carry it).
    seq: u16,
    /// `FrameReady` sent.
    begun: bool,
    stats: &'s mut Stats,
}

impl<S: Read<u8> + Write<u8>, const N: usize> LinkRows<'_, S, N> {
    /// Sends `FrameReady` (first) or `RowsAccepted` and reads frames until the next chunk.
    fn next_chunk(&mut self) -> Result<(), FrameFail<S::Error>> {
        let left = self.height.saturating_sub(self.next_row);
        let credit = self.credit.min(left) as u16; // credit ≤ u16::MAX
        let resp = if self.begun {
            Response::RowsAccepted {
                next_row: self.next_row as u16, // < height ≤ u16::MAX
                credit,
            }
        } else {
            Response::FrameReady { credit }
        };
        self.begun = true;
        let n = encode_frame(self.seq, &resp, self.work, self.out)
            .map_err(|_| FrameFail::Wire(WireErrorCode::Engine))?;
        send(self.serial, self.out, n).map_err(FrameFail::Serial)?;
        loop {
            let byte = match self.serial.read() {
                Ok(b) => b,
                Err(nb::Error::WouldBlock) => continue,
                Err(nb::Error::Other(e)) => return Err(FrameFail::Serial(e)),
            };
            let frame = match self.reader.push(byte) {
                Feed::Pending => continue,
                Feed::Overflow => {
                    self.seq = 0;
                    return Err(FrameFail::Wire(WireErrorCode::Oversized));
                }
                Feed::Frame(frame) => frame,
            };
            self.stats.requests += 1;
            let (seq, first_row, rows) = match decode_frame::<Request>(frame) {
                Err(e) => {
                    self.seq = 0;
                    return Err(FrameFail::Wire(e.into()));
                }
                Ok((seq, Request::FrameRows { first_row, rows })) => (seq, first_row, rows),
                Ok((seq, _)) => {
                    self.seq = seq;
                    return Err(FrameFail::Wire(WireErrorCode::FrameAborted));
                }
            };
            self.seq = seq;
            let n = rows.len() / self.row_len.max(1);
            let fits = first_row as usize == self.next_row
                && n > 0
                && rows.len() % self.row_len.max(1) == 0
                && n <= left;
            let dest = self.chunk.get_mut(..rows.len());
            let (true, Some(dest)) = (fits, dest) else {
                return Err(FrameFail::Wire(WireErrorCode::RowOutOfOrder));
            };
            dest.copy_from_slice(rows);
            (self.have, self.used) = (rows.len(), 0);
            self.next_row += n;
            return Ok(());
        }
    }
}

impl<S: Read<u8> + Write<u8>, const N: usize> RowSource for LinkRows<'_, S, N> {
    type Error = FrameFail<S::Error>;

    fn read_row(&mut self, _row: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        if self.used >= self.have {
            self.next_chunk()?;
        }
        let end = self.used.saturating_add(self.row_len);
        let row = self.chunk.get(self.used..end);
        match row {
            Some(row) if row.len() == out.len() => out.copy_from_slice(row),
            _ => return Err(FrameFail::Wire(WireErrorCode::Engine)),
        }
        self.used = end;
        Ok(())
    }
}

/// Writes the first `n` bytes of `out` (one encoded frame) and flushes.
fn send<S: Write<u8>>(serial: &mut S, out: &[u8], n: usize) -> Result<(), S::Error> {
    for &b in out.get(..n).unwrap_or(&[]) {
        nb::block!(serial.write(b))?;
    }
    nb::block!(serial.flush())
}

fn engine_code(e: EngineError) -> WireErrorCode {
    match e {
        EngineError::WrongLength { .. } => WireErrorCode::WrongLength,
        EngineError::NoSuchLevel { .. } => WireErrorCode::NoSuchLevel,
        EngineError::NoDecoder => WireErrorCode::NoDecoder,
        _ => WireErrorCode::Engine,
    }
}

/// Encodes an error response; an error frame always fits (it is a few bytes).
fn encode_error(code: WireErrorCode, seq: u16, work: &mut [u8], out: &mut [u8]) -> usize {
    encode_frame(seq, &Response::Error(code), work, out).unwrap_or(0)
}

#[cfg(feature = "defmt")]
fn log_warn(msg: &str) {
    defmt::warn!("{=str}", msg);
}
#[cfg(not(feature = "defmt"))]
fn log_warn(_msg: &str) {}

#[cfg(feature = "defmt")]
fn log_error_code(code: WireErrorCode) {
    defmt::warn!("request refused: {}", code);
}
#[cfg(not(feature = "defmt"))]
fn log_error_code(_code: WireErrorCode) {}
