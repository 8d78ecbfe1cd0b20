//! Support shared by the QEMU board binaries: a PRNG, random kernel parameters, an instruction
//! counter on SysTick, and exits that QEMU turns into the process exit status.
#![no_std]

use core::num::NonZeroUsize;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SCB, SYST};
use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::debug;

/// Ends the QEMU run with success or failure.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::bkpt();
    }
}

#[cfg(not(feature = "panic-never"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("PANIC: {}", defmt::Display2Format(info));
    exit(false)
}

/// With `panic-never`, a panic handler that cannot link: `edgevae_panic_is_reachable` is defined
/// nowhere, so the release link of a binary fails (naming the symbol) as long as any panicking
/// path survives optimisation, and succeeds only when none does.
#[cfg(feature = "panic-never")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    extern "C" {
        fn edgevae_panic_is_reachable() -> !;
    }
    // SAFETY: never runs: the symbol is undefined, so a binary that could call it does not link.
    unsafe { edgevae_panic_is_reachable() }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!("HARDFAULT at pc={=u32:#x}", frame.pc());
    exit(false)
}

/// The defmt global logger: frames over semihosting (`SYS_WRITE` to the host's stdout, which QEMU
/// `-semihosting-config target=native` prints; the host decodes them with the ELF's `.defmt`
/// table: `edgevae defmt-print`, `edgevae hil`). Written here rather than taken from
/// `defmt-semihosting` because that crate panics on re-entry, and the app must link without a
/// reachable panic (`panic-never`); here a nested frame (a log from an interrupt while another is
/// written) is dropped instead.
mod logger {
    use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    use cortex_m_semihosting::hio::{self, HostStream};

    #[defmt::global_logger]
    struct Semihosting;

    /// Whether a frame is being written, and whether this frame is one the logger writes.
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static NESTED: AtomicU8 = AtomicU8::new(0);
    static mut ENCODER: defmt::Encoder = defmt::Encoder::new();
    static mut STREAM: Option<HostStream> = None;

    fn emit(bytes: &[u8]) {
        // SAFETY: only called between acquire and release of the outermost frame, so this is
        // the only access to STREAM.
        let stream = unsafe { &mut *core::ptr::addr_of_mut!(STREAM) };
        if stream.is_none() {
            *stream = hio::hstdout().ok();
        }
        if let Some(s) = stream {
            let _ = s.write_all(bytes);
        }
    }

    // SAFETY: frames are written one at a time (TAKEN); a nested acquire is counted and its
    // writes and release are ignored, so the encoder's state is never shared.
    unsafe impl defmt::Logger for Semihosting {
        fn acquire() {
            if TAKEN.swap(true, Ordering::Acquire) {
                NESTED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // SAFETY: TAKEN gives this frame exclusive use of ENCODER.
            unsafe { (*core::ptr::addr_of_mut!(ENCODER)).start_frame(emit) }
        }

        unsafe fn flush() {}

        unsafe fn release() {
            if NESTED.load(Ordering::Relaxed) > 0 {
                NESTED.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            // SAFETY: the outermost frame holds ENCODER (TAKEN).
            unsafe { (*core::ptr::addr_of_mut!(ENCODER)).end_frame(emit) };
            TAKEN.store(false, Ordering::Release);
        }

        unsafe fn write(bytes: &[u8]) {
            if NESTED.load(Ordering::Relaxed) > 0 {
                return;
            }
            // SAFETY: as in `release`.
            unsafe { (*core::ptr::addr_of_mut!(ENCODER)).write(bytes, emit) }
        }
    }
}

/// xorshift64*, `edgevae_shared::build::XorShift` (std-only there).
pub struct XorShift64(pub u64);

impl XorShift64 {
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (hi as i64 - lo as i64 + 1) as u64;
        (lo as i64 + (self.next_u32() as u64 % span) as i64) as i32
    }
}

/// A deterministic pseudo-photograph generated row by row, as a camera delivers a frame (rows
/// asked for in order): two smooth gradients, a blocky ±16 ripple and ±8 texture, the frame of
/// `firmware/examples/stripe_bench.rs` for one channel (same pixels, so the same bits as on
/// aarch64); with three channels each pixel's channels are offset by 0, +12 and −12.
pub struct PseudoPhoto {
    rng: XorShift64,
    // Non-zero, so the divisions below cannot panic (the app links with `panic-never`).
    rows: NonZeroUsize,
    cols: NonZeroUsize,
    channels: NonZeroUsize,
}

impl PseudoPhoto {
    pub fn new(rows: usize, cols: usize, channels: usize) -> Self {
        let nz = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        PseudoPhoto {
            rng: XorShift64(0x5EED_F00D_1234_5679),
            rows: nz(rows),
            cols: nz(cols),
            channels: nz(channels),
        }
    }
}

impl edgevae_firmware::stripe::RowSource for PseudoPhoto {
    type Error = core::convert::Infallible;

    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        let mut v = 0;
        for (i, p) in out.iter_mut().enumerate() {
            let c = i % self.channels;
            if c == 0 {
                let x = i / self.channels;
                let g = (x * 140 / self.cols + y * 90 / self.rows) as i32;
                let ripple = (((x / 9 + y / 7) % 16) as i32 - 8) * 2;
                let noise = self.rng.range(-8, 8);
                v = g + 12 + ripple + noise;
            }
            let offset = [0, 12, -12][c % 3];
            *p = (v + offset).clamp(0, 255) as u8;
        }
        Ok(())
    }
}

/// A [`RowSink`](edgevae_firmware::stripe_decode::RowSink) that folds a decoded frame into a
/// checksum (`c·31 + p` per pixel), so the board binaries compare decoders without holding the
/// frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChecksumSink(pub u32);

/// [`ChecksumSink`]'s error: it never fails (`Infallible`'s defmt impl would bring a panic path
/// into binaries that format a decoder error).
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct NeverFails;

impl edgevae_firmware::stripe_decode::RowSink for ChecksumSink {
    type Error = NeverFails;

    fn write_row(&mut self, _: usize, pixels: &[u8]) -> Result<(), NeverFails> {
        for &p in pixels {
            self.0 = self.0.wrapping_mul(31).wrapping_add(p as u32);
        }
        Ok(())
    }
}

/// xorshift32: tiny, deterministic.
pub struct Rng(pub u32);

/// Bytes aligned to 8, for a model file embedded with `include_bytes!`: the pre-laid blocks of
/// its DSP section (`edgevae_shared::layout`) are 8-aligned from the file's first byte, and the
/// kernels read them with LDM/LDRD, which need word alignment (a misaligned block runs the
/// kernels that read the canonical layout instead).
#[repr(C, align(8))]
pub struct Aligned<T: ?Sized>(pub T);

/// int8 weights as the bytes the model file holds.
pub fn i8_bytes(w: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u8, w.len()) }
}

/// Words as their little-endian bytes (word-aligned: how a pre-laid block sits in a file).
pub fn word_bytes(w: &[u32]) -> &[u8] {
    // SAFETY: a u32 slice viewed as its bytes (u8 has no alignment requirement).
    unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 4) }
}

/// The words of a dense 16-input layer's pre-laid block (`n_out` outputs, the parameters of `p`)
/// into `out` (its bytes returned), or `None` when `out` is too short.
pub fn dense16_block<'a, const N: usize>(
    w: &[i8],
    p: &Params<N>,
    n_out: usize,
    out: &'a mut [u32],
) -> Option<&'a [u8]> {
    let words = out.get_mut(..edgevae_shared::layout::dense16_block_len(n_out) / 4)?;
    let shift = i8_bytes(&p.shift);
    for (j, d) in words.iter_mut().enumerate() {
        *d = edgevae_shared::layout::dense16_word(i8_bytes(w), &p.bias, &p.mult, shift, j);
    }
    Some(word_bytes(words))
}

/// The words of a (transposed) convolution's pre-laid GEMM block into `out` (its bytes
/// returned), or `None` when `out` is too short.
pub fn gemm_block<'a>(
    w: &[i8],
    g: edgevae_shared::layout::GemmGeom,
    out: &'a mut [u32],
) -> Option<&'a [u8]> {
    let words = out.get_mut(..g.block_len() / 4)?;
    let mut it = words.iter_mut();
    edgevae_shared::layout::gemm_words(i8_bytes(w), g, |v| {
        if let Some(d) = it.next() {
            *d = v;
        }
        true
    });
    Some(word_bytes(words))
}

impl Rng {
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u32() % (hi - lo + 1) as u32) as i32
    }
    pub fn fill(&mut self, buf: &mut [i8]) {
        for b in buf {
            *b = self.next_u32() as i8;
        }
    }
}

/// Random per-channel output parameters in caller-provided storage (no alloc).
pub struct Params<const N: usize> {
    pub bias: [u8; N],
    pub mult: [u8; N],
    pub shift: [i8; N],
    pub zp: i32,
    pub min: i32,
    pub max: i32,
}

impl<const N: usize> Params<N> {
    /// Parameters for `n_out ≤ N / 4` channels and a fan-in of `fan_in`.
    pub fn random(r: &mut Rng, n_out: usize, fan_in: usize) -> Self {
        let mut p = Params {
            bias: [0; N],
            mult: [0; N],
            shift: [0; N],
            zp: 0,
            min: -128,
            max: 127,
        };
        p.zp = r.range(-128, 127);
        if r.next_u32().is_multiple_of(2) {
            p.min = p.zp; // fused ReLU
        }
        let span = 1 + 300 * fan_in.min(100_000) as i32;
        for c in 0..n_out.min(N / 4) {
            p.bias[4 * c..4 * c + 4].copy_from_slice(&r.range(-span, span).to_le_bytes());
            let m = match r.next_u32() % 8 {
                0 => 0,
                1 => i32::MAX,
                _ => r.range(1 << 30, i32::MAX),
            };
            p.mult[4 * c..4 * c + 4].copy_from_slice(&m.to_le_bytes());
            p.shift[c] = if r.next_u32().is_multiple_of(4) {
                r.range(-31, 30)
            } else {
                r.range(-14, 1)
            } as i8;
        }
        p
    }

    pub fn stage(&self) -> edgevae_firmware::kernels::OutputStage<'_> {
        edgevae_firmware::kernels::OutputStage {
            bias: edgevae_firmware::kernels::LeI32(&self.bias),
            multiplier: edgevae_firmware::kernels::LeI32(&self.mult),
            shift: &self.shift,
            output_zp: self.zp,
            act_min: self.min,
            act_max: self.max,
        }
    }
}

static WRAPS: AtomicU32 = AtomicU32::new(0);
const RELOAD: u32 = 0x00FF_FFFF;

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Counts SysTick ticks (core clock) across wraps. Under `-icount shift=N` a tick is
/// `40 / 2^N` executed instructions (mps2: 25 MHz core clock).
pub struct Ticks {
    syst: SYST,
}

impl Ticks {
    pub fn new(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Ticks { syst }
    }

    /// Monotonic tick count.
    pub fn now(&mut self) -> u64 {
        let _ = &mut self.syst;
        loop {
            let w0 = WRAPS.load(Ordering::SeqCst);
            let cur = SYST::get_current();
            // A wrap whose interrupt has not run yet: count it if `cur` was read after it.
            let pending = SCB::is_pendst_pending() && cur > RELOAD / 2;
            let w1 = WRAPS.load(Ordering::SeqCst);
            if w0 == w1 {
                let wraps = w0 as u64 + pending as u64;
                return wraps * (RELOAD as u64 + 1) + (RELOAD - cur) as u64;
            }
        }
    }
}

/// The DSP and scalar paths behind the front door's check (`ConvParams::check` and friends), with
/// the front door's signatures: what `kernels::conv2d` does, with the path named, so the boards'
/// binaries compare and time the two paths (the check included, as in the engine).
pub mod checked {
    use edgevae_firmware::kernels::{
        dsp, scalar, ConvGeom, ConvParams, DenseParams, KernelError, OutputStage, Scratch, Shape,
    };

    /// The parameters of a (transposed) convolution.
    pub fn conv_params(in_shape: Shape, out_shape: Shape, geom: ConvGeom, zp: i32) -> ConvParams {
        ConvParams {
            in_shape,
            out_shape,
            geom,
            input_zp: zp,
        }
    }

    /// The parameters of a dense layer.
    pub fn dense_params(n_in: usize, n_out: usize, zp: i32) -> DenseParams {
        DenseParams {
            n_in,
            n_out,
            input_zp: zp,
        }
    }

    macro_rules! checked {
        ($name:ident, $params:ty, $path:ident :: $f:ident, $check:ident) => {
            /// The path's kernel behind the front door's check.
            #[inline(never)]
            pub fn $name(
                p: &$params,
                x: &[i8],
                w: &[i8],
                st: &OutputStage,
                out: &mut [i8],
                s: Scratch,
            ) -> Result<(), KernelError> {
                $path::$f(p.$check(x, w, st, out)?, s)
            }
        };
    }
    checked!(dsp_conv2d, ConvParams, dsp::conv2d, check);
    checked!(scalar_conv2d, ConvParams, scalar::conv2d, check);
    checked!(
        dsp_conv_transpose2d,
        ConvParams,
        dsp::conv_transpose2d,
        check_transposed
    );
    checked!(
        scalar_conv_transpose2d,
        ConvParams,
        scalar::conv_transpose2d,
        check_transposed
    );
    checked!(dsp_dense, DenseParams, dsp::dense, check);
    checked!(scalar_dense, DenseParams, scalar::dense, check);
}
