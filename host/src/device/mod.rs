//! Hardware in the loop: start the device firmware under QEMU, talk to it over the emulated
//! UART (a Unix socket), and collect what it prints on semihosting.

pub mod firmware;
pub mod log;
pub mod photos;

pub use firmware::{build_board, build_stdio_app, elf_size, ElfSize};
pub use photos::{run_photos, PhotoHilReport};

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgevae_shared::wire::{
    decode_frame, encode_frame_vec, DeviceInfo, Request, Response, WireErrorCode,
};

/// Why a device session failed.
#[derive(Debug, thiserror::Error)]
pub enum HilError {
    #[error("cannot start {0}: {1} (is qemu-system-arm installed? run scripts/setup.sh)")]
    Launch(String, std::io::Error),
    #[error(
        "firmware image {0} not found (build it: cd firmware/boards && cargo build --release)"
    )]
    NoFirmware(PathBuf),
    #[error("device did not open its UART socket within {0:?}")]
    NoSocket(Duration),
    #[error("UART: {0}")]
    Io(#[from] std::io::Error),
    #[error("device sent a bad frame: {0}")]
    Frame(edgevae_shared::wire::FrameError),
    #[error("device answered {0}")]
    Unexpected(String),
    #[error("device answered sequence {got}, expected {want}")]
    Sequence { got: u16, want: u16 },
    #[error("device exited")]
    Exited,
}

/// A response, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Info(DeviceInfo),
    Latent(Vec<i8>),
    /// An entropy-coded latent: meaningful bits, bytes.
    Bitstream(u16, Vec<u8>),
    Image(Vec<u8>),
    Error(WireErrorCode),
    /// A frame was begun: the rows the next `FrameRows` may carry.
    FrameReady(u16),
    /// Rows taken: the next row the device expects, and how many the next message may carry.
    RowsAccepted {
        next_row: u16,
        credit: u16,
    },
    /// A piece of a frame's bitstream at byte `offset`; `last` ends it, `total_bits` long.
    BitstreamChunk {
        offset: u32,
        total_bits: u32,
        last: bool,
        bytes: Vec<u8>,
    },
}

/// A QEMU machine running the device app.
pub struct Device {
    child: Child,
    tx: Box<dyn std::io::Write + Send>,
    rx: Box<dyn std::io::Read + Send>,
    seq: u16,
    /// The UART socket and the semihosting log; removed with the session.
    dir: tempfile::TempDir,
    /// Bytes read past the last frame.
    pending: Vec<u8>,
    /// The firmware image, for decoding its defmt log.
    elf: PathBuf,
}

impl Device {
    /// Starts `qemu-system-arm -M <machine>` with `elf`; `icount_shift` makes the instruction
    /// count deterministic (SysTick then counts instructions, see ../shared/RECIPES.md).
    pub fn launch(elf: &Path, machine: &str, icount_shift: Option<u32>) -> Result<Self, HilError> {
        if !elf.is_file() {
            return Err(HilError::NoFirmware(elf.to_path_buf()));
        }
        let dir = tempfile::Builder::new().prefix("edgevae-hil-").tempdir()?;
        let sock = dir.path().join("uart.sock");
        let log = std::fs::File::create(dir.path().join("semihosting.log"))?;
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args([
            "-M",
            machine,
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
        ])
        .arg("-chardev")
        .arg(format!(
            "socket,id=s0,path={},server=on,wait=on",
            sock.display()
        ))
        .args([
            "-serial",
            "chardev:s0",
            "-semihosting-config",
            "enable=on,target=native",
        ]);
        if let Some(shift) = icount_shift {
            cmd.args(["-icount", &format!("shift={shift}")]);
        }
        cmd.arg("-kernel")
            .arg(elf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| HilError::Launch("qemu-system-arm".into(), e))?;
        let start = Instant::now();
        let limit = Duration::from_secs(20);
        let stream = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            if child.try_wait()?.is_some() {
                return Err(HilError::Exited);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                return Err(HilError::NoSocket(limit));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let rx = Box::new(stream.try_clone()?);
        Ok(Device {
            child,
            tx: Box::new(stream),
            rx,
            seq: 0,
            dir,
            pending: Vec::new(),
            elf: elf.to_path_buf(),
        })
    }

    /// Starts the Linux build of the app (`firmware/examples/stdio_app.rs`) under `qemu-aarch64`
    /// (the NEON kernels), speaking the protocol over its stdin/stdout.
    pub fn launch_aarch64(binary: &Path, model_file: &Path) -> Result<Self, HilError> {
        if !binary.is_file() {
            return Err(HilError::NoFirmware(binary.to_path_buf()));
        }
        let dir = tempfile::Builder::new().prefix("edgevae-hil-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("semihosting.log"))?;
        let mut child = Command::new("qemu-aarch64")
            .args(["-L", "/usr/aarch64-linux-gnu", "-cpu", "max"])
            .arg(binary)
            .arg(model_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| HilError::Launch("qemu-aarch64".into(), e))?;
        let (Some(tx), Some(rx)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(HilError::Exited);
        };
        Ok(Device {
            child,
            tx: Box::new(tx),
            rx: Box::new(rx),
            seq: 0,
            dir,
            pending: Vec::new(),
            elf: binary.to_path_buf(),
        })
    }

    /// What the firmware logged so far: its defmt frames (over semihosting) decoded to text, or
    /// the plain stderr of the Linux build.
    pub fn log(&self) -> String {
        let bytes = std::fs::read(self.dir.path().join("semihosting.log")).unwrap_or_default();
        log::decode(&self.elf, &bytes).unwrap_or_else(|e| {
            format!(
                "(log not decoded: {e})\n{}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    /// Sends raw bytes (for robustness tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), HilError> {
        self.tx.write_all(bytes)?;
        self.tx.flush()?;
        Ok(())
    }

    /// Reads one frame and decodes it.
    pub fn read_reply(&mut self) -> Result<(u16, Reply), HilError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == 0) {
                let mut frame: Vec<u8> = self.pending.drain(..=end).collect();
                frame.pop();
                if frame.is_empty() {
                    continue;
                }
                let (seq, r): (u16, Response) =
                    decode_frame(&mut frame).map_err(HilError::Frame)?;
                let reply = match r {
                    Response::Info(i) => Reply::Info(i),
                    Response::Latent { code } => {
                        Reply::Latent(code.iter().map(|&b| b as i8).collect())
                    }
                    Response::Image { pixels } => Reply::Image(pixels.to_vec()),
                    Response::Bitstream { bits, bytes } => Reply::Bitstream(bits, bytes.to_vec()),
                    Response::Error(e) => Reply::Error(e),
                    Response::FrameReady { credit } => Reply::FrameReady(credit),
                    Response::RowsAccepted { next_row, credit } => {
                        Reply::RowsAccepted { next_row, credit }
                    }
                    Response::BitstreamChunk {
                        offset,
                        total_bits,
                        last,
                        bytes,
                    } => Reply::BitstreamChunk {
                        offset,
                        total_bits,
                        last,
                        bytes: bytes.to_vec(),
                    },
                };
                return Ok((seq, reply));
            }
            let mut buf = [0u8; 4096];
            let n = self.rx.read(&mut buf)?;
            if n == 0 {
                return Err(HilError::Exited);
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// One request, one reply (checked against the sequence number).
    pub fn request(&mut self, req: &Request<'_>) -> Result<Reply, HilError> {
        self.seq = self.seq.wrapping_add(1);
        let frame = encode_frame_vec(self.seq, req).map_err(HilError::Frame)?;
        self.tx.write_all(&frame)?;
        self.tx.flush()?;
        let (got, reply) = self.read_reply()?;
        if got != self.seq {
            return Err(HilError::Sequence {
                got,
                want: self.seq,
            });
        }
        Ok(reply)
    }

    /// Streams one camera frame (`height` rows of `width × channels` uint8 pixels, HWC) to the
    /// device at quality `level`, in as many rows per message as it grants, and collects the
    /// bitstream it answers with: `(bits, bytes)`.
    pub fn compress_frame(
        &mut self,
        pixels: &[u8],
        width: usize,
        height: usize,
        channels: usize,
        level: u8,
    ) -> Result<(u32, Vec<u8>), HilError> {
        let row = width * channels;
        let (Ok(w), Ok(h), Ok(c)) = (
            u16::try_from(width),
            u16::try_from(height),
            u8::try_from(channels),
        ) else {
            return Err(HilError::Unexpected(format!(
                "no answer: a {width}×{height}×{channels} frame does not fit the protocol"
            )));
        };
        if row == 0 || pixels.len() != row * height {
            return Err(HilError::Unexpected(format!(
                "no answer: {} bytes are not a {width}×{height}×{channels} frame",
                pixels.len()
            )));
        }
        let begin = Request::FrameBegin {
            width: w,
            height: h,
            channels: c,
            level,
        };
        let mut credit = match self.request(&begin)? {
            Reply::FrameReady(n) => usize::from(n),
            r => return Err(HilError::Unexpected(format!("{r:?} to FrameBegin"))),
        };
        let mut next = 0usize;
        let mut out = Vec::new();
        loop {
            let n = credit.min(height - next);
            if n == 0 {
                return Err(HilError::Unexpected(format!(
                    "a credit of 0 rows at row {next} of {height}"
                )));
            }
            let rows = Request::FrameRows {
                first_row: next as u16,
                rows: &pixels[next * row..(next + n) * row],
            };
            next += n;
            match self.request(&rows)? {
                Reply::RowsAccepted {
                    next_row,
                    credit: c,
                } if usize::from(next_row) == next => {
                    credit = usize::from(c);
                }
                Reply::BitstreamChunk {
                    offset,
                    total_bits,
                    last,
                    bytes,
                } if next == height => {
                    let mut chunk = (offset, total_bits, last, bytes);
                    loop {
                        if chunk.0 as usize != out.len() {
                            return Err(HilError::Unexpected(format!(
                                "a bitstream chunk at byte {} after {} bytes",
                                chunk.0,
                                out.len()
                            )));
                        }
                        out.extend_from_slice(&chunk.3);
                        if chunk.2 {
                            return Ok((chunk.1, out));
                        }
                        match self.read_reply()? {
                            (seq, _) if seq != self.seq => {
                                return Err(HilError::Sequence {
                                    got: seq,
                                    want: self.seq,
                                })
                            }
                            (
                                _,
                                Reply::BitstreamChunk {
                                    offset,
                                    total_bits,
                                    last,
                                    bytes,
                                },
                            ) => chunk = (offset, total_bits, last, bytes),
                            (_, r) => {
                                return Err(HilError::Unexpected(format!(
                                    "{r:?} within the bitstream"
                                )))
                            }
                        }
                    }
                }
                r => {
                    return Err(HilError::Unexpected(format!(
                        "{r:?} to rows ..{next} of {height}"
                    )))
                }
            }
        }
    }

    /// Whether QEMU is still running (a hard fault ends it through semihosting).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a hardware-in-the-loop run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HilReport {
    pub machine: String,
    pub images: usize,
    pub mismatches: usize,
    pub bits_per_image: u32,
    pub device_psnr: f64,
    pub encode_instructions: Option<u64>,
    pub decode_instructions: Option<u64>,
    pub frames_per_s: f64,
    pub flash_bytes: u64,
    pub static_ram_bytes: u64,
    /// Stack high-water mark after one encode + decode (painted stack).
    pub stack_bytes: Option<u64>,
    pub arena_bytes: u32,
    pub model_bytes: usize,
    /// Per quality level (images cycle through the levels): (level, images, mean bits of the
    /// device's bitstream, mean bytes sent, mean PSNR of the device's decompressed image).
    pub codec: Vec<(u8, usize, f64, f64, f64)>,
    /// Instructions of entropy coding alone (finest level), encode and decode side.
    pub code_instructions: Option<u64>,
    pub uncode_instructions: Option<u64>,
}

/// Streams the first `images` test images through the device app on `machine` and checks every
/// latent code and image against the fixed-point reference.
pub fn run(
    model_file: &Path,
    machine: &str,
    test: &crate::data::Dataset,
    images: usize,
) -> Result<HilReport, crate::Error> {
    use crate::metrics::psnr_u8;
    use crate::quantize::Reference;
    let hil = |e: HilError| crate::Error::Invalid(format!("hil: {e}"));
    let bytes = std::fs::read(model_file).map_err(crate::Error::io(model_file))?;
    let model =
        edgevae_shared::Model::from_bytes(&bytes).map_err(|e| crate::Error::data(model_file, e))?;
    let elf = build_board("app", Some(model_file)).map_err(hil)?;
    let size = elf_size(&elf).map_err(hil)?;
    let shift = 5u32;
    let mut dev = Device::launch(&elf, machine, Some(shift)).map_err(hil)?;
    let mut reference = Reference::new(&model);
    let images = images.min(test.len());
    let (mut mismatches, mut psnr) = (0usize, 0.0);
    let levels = model.entropy().map_or(0, |e| e.levels.len());
    let mut codec_sums = vec![(0usize, 0.0f64, 0.0f64, 0.0f64); levels];
    // Encode + decode per image, and compress + decompress where the model has a codec.
    let requests = images * if levels > 0 { 4 } else { 2 };
    let start = Instant::now();
    for k in 0..images {
        let img = test.image(k);
        let want = reference.encode(img)?;
        let got = match dev.request(&Request::Encode { frame: img }).map_err(hil)? {
            Reply::Latent(z) => z,
            r => {
                return Err(crate::Error::Invalid(format!(
                    "image {k}: device answered {r:?}"
                )))
            }
        };
        mismatches += usize::from(got != want);
        let code: Vec<u8> = got.iter().map(|&v| v as u8).collect();
        let px = match dev
            .request(&Request::Decode { latent: &code })
            .map_err(hil)?
        {
            Reply::Image(p) => p,
            r => {
                return Err(crate::Error::Invalid(format!(
                    "image {k}: device answered {r:?}"
                )))
            }
        };
        let want_px = reference.decode(&got)?;
        mismatches += usize::from(px != want_px);
        psnr += psnr_u8(img, &px);
        if levels > 0 {
            // The codec: the device's bitstream and decompressed image, byte for byte.
            let level = (k % levels) as u8;
            let coder = model
                .level(level)
                .ok_or_else(|| crate::Error::Invalid("internal: level".into()))?;
            let zp = model.header().latent_q.zero_point;
            let mut buf = vec![0u8; 4 * want.len() + 8];
            let bits = coder.encode(zp, &want, &mut buf)?;
            buf.truncate(bits.div_ceil(8));
            let (got_bits, got) = match dev
                .request(&Request::Compress { level, frame: img })
                .map_err(hil)?
            {
                Reply::Bitstream(b, bytes) => (b as usize, bytes),
                r => {
                    return Err(crate::Error::Invalid(format!(
                        "image {k}: device answered {r:?}"
                    )))
                }
            };
            mismatches += usize::from(got_bits != bits || got != buf);
            let mut dq = vec![0i8; want.len()];
            coder.decode(zp, &buf, &mut dq)?;
            let want_px = reference.decode(&dq)?;
            let px = match dev
                .request(&Request::Decompress {
                    level,
                    bitstream: &got,
                })
                .map_err(hil)?
            {
                Reply::Image(p) => p,
                r => {
                    return Err(crate::Error::Invalid(format!(
                        "image {k}: device answered {r:?}"
                    )))
                }
            };
            mismatches += usize::from(px != want_px);
            let e = &mut codec_sums[level as usize];
            e.0 += 1;
            e.1 += got_bits as f64;
            e.2 += got.len() as f64;
            e.3 += psnr_u8(img, &px);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let log = dev.log();
    // SysTick at the 25 MHz core clock under -icount shift=N: a tick is 40 / 2^N instructions.
    let ticks = |key: &str| log_value(&log, key, false);
    let to_instr = |t: u64| ticks_to_instructions(t, shift);
    Ok(HilReport {
        machine: machine.into(),
        images,
        mismatches,
        bits_per_image: 8 * model.header().latent as u32,
        device_psnr: psnr / images.max(1) as f64,
        encode_instructions: ticks("encode_ticks=").map(to_instr),
        decode_instructions: ticks("decode_ticks=").map(to_instr),
        frames_per_s: requests as f64 / secs.max(1e-9),
        flash_bytes: size.flash,
        static_ram_bytes: size.ram,
        stack_bytes: ticks("stack_bytes="),
        arena_bytes: model.header().arena_bytes,
        model_bytes: bytes.len(),
        codec: codec_sums
            .iter()
            .enumerate()
            .filter(|(_, e)| e.0 > 0)
            .map(|(l, e)| {
                let n = e.0 as f64;
                (l as u8, e.0, e.1 / n, e.2 / n, e.3 / n)
            })
            .collect(),
        code_instructions: ticks("entropy_enc=").map(to_instr),
        uncode_instructions: ticks("entropy_dec=").map(to_instr),
    })
}

/// The number after the first (or, with `last`, the last) `key` in a device log, such as
/// `encode_ticks=` in `… encode_ticks=1234 …`.
pub(crate) fn log_value(log: &str, key: &str, last: bool) -> Option<u64> {
    let at = if last { log.rfind(key) } else { log.find(key) }? + key.len();
    log[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse::<u64>()
        .ok()
}

/// Instructions in `ticks` of the boards' SysTick under `-icount shift=N`: SysTick runs at the
/// 25 MHz core clock (40 ns a tick) and one instruction is 2^N ns (../shared/RECIPES.md).
pub(crate) fn ticks_to_instructions(ticks: u64, shift: u32) -> u64 {
    ticks * 40 / (1u64 << shift)
}
