//! `hil --photos`: photographs streamed row by row to the device app (the frame protocol of
//! [`edgevae_shared::wire`]); every bitstream must equal the host's whole-frame codec
//! ([`crate::codec::frame::compress_frame`]) byte for byte.

use std::path::Path;
use std::time::Instant;

use edgevae_shared::Model;

use super::{
    build_board, build_stdio_app, elf_size, log_value, ticks_to_instructions, Device, HilError,
};
use crate::codec::frame::{compress_frame, parse_frame_evz};
use crate::data::photos::Photo;
use crate::eval::refcodec;

/// The frame sizes each photograph is sent at: QVGA and an odd size (neither a multiple of the
/// model's stride), each the photograph's top-left corner (or the whole photograph when it is
/// smaller).
pub const FRAME_SIZES: [(usize, usize); 2] = [(320, 240), (173, 97)];

/// One frame through the device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhotoFrame {
    /// The photograph's file name.
    pub name: String,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Quality level (0-based).
    pub level: u8,
    /// Bits of the device's bitstream.
    pub bits: u32,
    /// Whether bits and bytes equal the host's.
    pub exact: bool,
    /// PSNR (dB, all channels) of the host's decoding of that bitstream.
    pub psnr: f64,
}

/// The `-icount` shift the Cortex-M boards run under here (SysTick ticks → instructions).
const ICOUNT_SHIFT: u32 = 5;

/// What one frame costs on a Cortex-M board: the app's self-test at start (a built-in
/// pseudo-photograph through the stripe engine at the finest level, the kernels and arena the
/// app serves frames with), counted with SysTick under `-icount`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FrameCost {
    /// Columns of the self-test frame (320, or the model's widest frame when narrower).
    pub width: usize,
    /// Rows (240).
    pub height: usize,
    /// Instructions to compress it (encoder and entropy coding).
    pub instructions: u64,
    /// Instructions to encode it without the coding.
    pub encode_instructions: u64,
    /// Bits of its bitstream.
    pub bits: u64,
    /// The encoder's multiply–accumulates for the frame (full kernels, padding included).
    pub macs: u64,
    /// Stack high-water mark after the self-test, bytes.
    pub self_test_stack_bytes: u64,
    /// Stack high-water mark after every request of the run (the frame protocol's path), bytes.
    pub stack_bytes: Option<u64>,
}

impl FrameCost {
    /// Instructions per pixel, with the coding.
    pub fn per_pixel(&self) -> f64 {
        self.instructions as f64 / (self.width * self.height).max(1) as f64
    }

    /// Instructions per MAC, with the coding.
    pub fn per_mac(&self) -> f64 {
        self.instructions as f64 / self.macs.max(1) as f64
    }

    /// The entropy coding's share of the compress instructions.
    pub fn coding_share(&self) -> f64 {
        self.instructions.saturating_sub(self.encode_instructions) as f64
            / self.instructions.max(1) as f64
    }

    /// Reads the app's self-test line and stack lines from its decoded log.
    fn from_log(log: &str, model: &Model<'_>) -> Option<Self> {
        let v = |key: &str| log_value(log, key, false);
        let (width, height) = (v("frame_cols=")? as usize, v("frame_rows=")? as usize);
        Some(FrameCost {
            width,
            height,
            instructions: ticks_to_instructions(v("frame_ticks=")?, ICOUNT_SHIFT),
            encode_instructions: ticks_to_instructions(v("frame_encode_ticks=")?, ICOUNT_SHIFT),
            bits: v("frame_bits=")?,
            macs: edgevae_firmware::stripe::encoder_macs(model, height, width)?,
            self_test_stack_bytes: v("frame_stack_bytes=")?,
            stack_bytes: log_value(log, "stack_high_water=", true),
        })
    }
}

/// What a photo run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhotoHilReport {
    /// `mps2-an386`, `mps2-an500` or `aarch64`.
    pub machine: String,
    /// Every frame sent.
    pub frames: Vec<PhotoFrame>,
    /// Frames whose bitstream differs from the host's.
    pub mismatches: usize,
    /// Pixels streamed per second of wall time (emulated, over the link).
    pub pixels_per_s: f64,
    /// Flash and static RAM of the board ELF (Cortex-M machines only).
    pub size: Option<super::ElfSize>,
    /// Instructions, MACs and stack of one frame (Cortex-M machines only).
    pub cost: Option<FrameCost>,
}

/// Sends every photograph of `photos` (converted to the model's channels) at each of
/// [`FRAME_SIZES`] to the device app on `machine` (built with `model_file` embedded, or the
/// aarch64 app given it), quality levels in turn, and compares each bitstream with the host's.
pub fn run_photos(
    model_file: &Path,
    machine: &str,
    photos: &[(String, Photo)],
) -> Result<PhotoHilReport, crate::Error> {
    let hil = |e: HilError| crate::Error::Invalid(format!("hil: {e}"));
    let bytes = std::fs::read(model_file).map_err(crate::Error::io(model_file))?;
    let model = Model::from_bytes(&bytes).map_err(|e| crate::Error::data(model_file, e))?;
    let Some(frame) = model.frame() else {
        return Err(crate::Error::Invalid(format!(
            "{}: not a photo model (no frame section): `hil --photos` needs one",
            model_file.display()
        )));
    };
    let channels = model.header().input.c as usize;
    let levels = model.entropy().map_or(0, |e| e.levels.len());
    if levels == 0 || photos.is_empty() {
        return Err(crate::Error::Invalid(
            "hil --photos: the model has no quality levels or there are no photographs".into(),
        ));
    }
    let (mut dev, size) = if machine == "aarch64" {
        let app = build_stdio_app().map_err(hil)?;
        (Device::launch_aarch64(&app, model_file).map_err(hil)?, None)
    } else {
        let elf = build_board("app", Some(model_file)).map_err(hil)?;
        let size = elf_size(&elf).map_err(hil)?;
        (
            Device::launch(&elf, machine, Some(ICOUNT_SHIFT)).map_err(hil)?,
            Some(size),
        )
    };
    let mut frames = Vec::new();
    let (mut pixels, start) = (0usize, Instant::now());
    for (k, (name, photo)) in photos.iter().enumerate() {
        let photo = photo.with_channels(channels);
        for (j, &(w, h)) in FRAME_SIZES.iter().enumerate() {
            let crop = photo.cropped(h, w.min(usize::from(frame.max_width)));
            let level = ((k * FRAME_SIZES.len() + j) % levels) as u8;
            let host = compress_frame(&model, level, &crop)?;
            let (_, _, _, stream) = parse_frame_evz(&model, &host.file)?;
            let (bits, got) = dev
                .compress_frame(&crop.pixels, crop.width, crop.height, channels, level)
                .map_err(|e| {
                    crate::Error::Invalid(format!(
                        "hil: {name} at {}×{}: {e}",
                        crop.width, crop.height
                    ))
                })?;
            pixels += crop.width * crop.height;
            let exact = bits as usize == host.bits && got == stream;
            frames.push(PhotoFrame {
                name: name.clone(),
                width: crop.width,
                height: crop.height,
                level,
                bits,
                exact,
                psnr: refcodec::psnr(&crop, &host.decoded),
            });
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cost = size
        .as_ref()
        .and_then(|_| FrameCost::from_log(&dev.log(), &model));
    Ok(PhotoHilReport {
        machine: machine.into(),
        mismatches: frames.iter().filter(|f| !f.exact).count(),
        frames,
        pixels_per_s: pixels as f64 / secs.max(1e-9),
        size,
        cost,
    })
}
