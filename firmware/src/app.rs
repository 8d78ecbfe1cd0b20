//! The device application: serves the wire protocol over any serial port that implements the
//! embedded-hal 1.0 family's `embedded_hal_nb::serial::{Read, Write}`.
//!
//! Requests arrive as COBS frames (see `edgevae_shared::wire`); each complete frame is answered
//! with exactly one response frame. Every failure — bad COBS, bad CRC, unknown message, wrong
//! length, oversized frame, engine error — is answered with `Response::Error` and the app keeps
//! serving. Nothing here allocates or panics; all buffers are fixed at compile time (`N`, from
//! `wire::frame_capacity(image bytes)`).

use edgevae_shared::wire::{
    decode_frame, encode_frame, DeviceInfo, Feed, FrameReader, KernelPath, Request, Response,
    WireErrorCode,
};
use edgevae_shared::{Model, FORMAT_VERSION};
use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{Read, Write};

use crate::engine::{Engine, EngineError, Fast, KernelSet};

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
    engine: Engine<'m, 'a, K>,
    serial: S,
    reader: FrameReader<N>,
    work: [u8; N],
    out: [u8; N],
    pixels: [u8; N],
    latent: [i8; MAX_LATENT],
    info: DeviceInfo,
    stats: Stats,
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
    /// Checks that the model's image and latent fit the buffers (`N`, [`MAX_LATENT`]) and starts
    /// the engine in `arena` (at least the model's declared `arena_bytes`), serving on `serial`.
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
        let engine = Engine::new(model, arena).map_err(StartError::Engine)?;
        Ok(App {
            engine,
            serial,
            reader: FrameReader::new(),
            work: [0; N],
            out: [0; N],
            pixels: [0; N],
            latent: [0; MAX_LATENT],
            info,
            stats: Stats::default(),
        })
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
    pub fn poll(&mut self) -> Result<bool, S::Error> {
        let byte = match self.serial.read() {
            Ok(b) => b,
            Err(nb::Error::WouldBlock) => return Ok(false),
            Err(nb::Error::Other(e)) => return Err(e),
        };
        let h = self.engine.model().header();
        let (image, z) = (h.input.len() as usize, h.latent as usize);
        let resp_len = match self.reader.push(byte) {
            Feed::Pending => return Ok(false),
            Feed::Overflow => {
                self.stats.errors += 1;
                log_warn("frame longer than the receive buffer");
                encode_error(WireErrorCode::Oversized, 0, &mut self.work, &mut self.out)
            }
            Feed::Frame(frame) => {
                self.stats.requests += 1;
                let answer: Result<(u16, Response<'_>), (u16, WireErrorCode)> =
                    match decode_frame::<Request>(frame) {
                        Err(e) => Err((0, e.into())),
                        Ok((seq, Request::Info)) => Ok((seq, Response::Info(self.info.clone()))),
                        Ok((seq, Request::Encode { frame })) => {
                            let latent = self.latent.get_mut(..z).unwrap_or(&mut []);
                            match self.engine.encode(frame, latent) {
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
                            match self.engine.decode(bytemuck::cast_slice(latent), pixels) {
                                Ok(()) => Ok((seq, Response::Image { pixels })),
                                Err(e) => Err((seq, engine_code(e))),
                            }
                        }
                        Ok((seq, Request::Compress { level, frame })) => {
                            let latent = self.latent.get_mut(..z).unwrap_or(&mut []);
                            // The bitstream goes to `pixels`, free until the response is framed.
                            match self.engine.compress(frame, level, latent, &mut self.pixels) {
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
                            match self.engine.decompress(level, bitstream, latent, pixels) {
                                Ok(()) => Ok((seq, Response::Image { pixels })),
                                Err(e) => Err((seq, engine_code(e))),
                            }
                        }
                    };
                match answer {
                    Ok((seq, resp)) => {
                        match encode_frame(seq, &resp, &mut self.work, &mut self.out) {
                            Ok(n) => n,
                            Err(_) => encode_error(
                                WireErrorCode::Engine,
                                seq,
                                &mut self.work,
                                &mut self.out,
                            ),
                        }
                    }
                    Err((seq, code)) => {
                        self.stats.errors += 1;
                        log_error_code(code);
                        encode_error(code, seq, &mut self.work, &mut self.out)
                    }
                }
            }
        };
        for &b in self.out.get(..resp_len).unwrap_or(&[]) {
            nb::block!(self.serial.write(b))?;
        }
        nb::block!(self.serial.flush())?;
        Ok(true)
    }
}

fn engine_code(e: EngineError) -> WireErrorCode {
    match e {
        EngineError::WrongLength { .. } => WireErrorCode::WrongLength,
        EngineError::NoSuchLevel { .. } => WireErrorCode::NoSuchLevel,
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
