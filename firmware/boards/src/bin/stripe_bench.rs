//! The stripe engine on a whole QVGA grey frame (320 × 240) through the photo structure
//! (`FrameSpec::photo(1, 1)`: 5×5/2 → 24, 3×3/2 → 32, 48, 64-channel latent), timed with
//! SysTick under `-icount` (instruction counts, not cycles): the DSP path in its fastest arena
//! and in 32 KiB, the scalar reference in its minimum arena, each with the entropy coding
//! (`stripe::compress`) and without (`stripe::encode`). All runs must give the same latent
//! (checksum) and the compressed ones the same bits.
//!
//! Then the stripe decoder (`stripe_decode::decompress`) turns that stream back into the frame,
//! row by row, through the model's decoder (4×4/2 transposed convolutions 64 → 64, 48, 32 → 1):
//! the DSP path in its fastest arena and in its minimum, the scalar reference in its minimum;
//! all three must give the same pixels (checksum).
//!
//! The frame is generated row by row as a camera would deliver it: the pseudo-photo of
//! `firmware/examples/stripe_bench.rs` (same pixels, so the same bits as on aarch64).
//! The model file is written by build.rs (encoder pre-laid blocks only).
//!
//! `firmware/boards/run-qemu.sh stripe_bench an386` (run-qemu.sh passes `-icount shift=5`);
//! `STRIPE_BENCH_LAYERS=n` at build time keeps the first n encoder layers (uncoded runs only).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use edgevae_boards::{exit, ChecksumSink, PseudoPhoto, Ticks};
use edgevae_firmware::engine::{Fast, KernelSet, Scalar};
use edgevae_firmware::kernels::dsp_scratch;
use edgevae_firmware::stripe::{self, required_arena, required_arena_with};
use edgevae_firmware::stripe_decode;
use edgevae_shared::Model;

/// Must match the `-icount shift` of the runner: one SysTick tick is 40 ns of virtual time
/// (25 MHz), one instruction 2^SHIFT ns.
const ICOUNT_SHIFT: u32 = 5;

const ROWS: usize = 240;
const COLS: usize = 320;
/// Quality level coded (the aarch64 example's).
const LEVEL: u8 = 1;
/// Built with `STRIPE_BENCH_LAYERS=n` (a prefix of the encoder, for per-layer costs): its
/// latent rows are wider than the output buffer takes, so only the uncoded runs are made.
const PREFIX: bool = option_env!("STRIPE_BENCH_LAYERS").is_some();
/// The arena's fixed upper bound (checked against `required_arena_with` at run time).
const ARENA: usize = 48 * 1024;
/// The arena the module docs suggest for 320 pixels (the DSP kernels plan from what is left).
const SMALL_ARENA: usize = 32 * 1024;

/// The model file, 8-aligned (its pre-laid blocks are read with LDM/LDRD).
static MODEL: &[u8] = &edgevae_boards::Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/stripe_model.evae"
)))
.0;

static mut ARENA_BUF: [u8; ARENA] = [0; ARENA];
static mut OUT: [u8; 32 * 1024] = [0; 32 * 1024];
/// The stripe decoder's arena (checked against `stripe_decode::required_arena_with` at run time).
const DEC_ARENA: usize = 128 * 1024;
static mut DEC_ARENA_BUF: [u8; DEC_ARENA] = [0; DEC_ARENA];


/// One decode of `stream` with kernel set `K` in `arena`: (instructions, pixel checksum).
fn decode<K: KernelSet>(
    ticks: &mut Ticks,
    model: &Model<'_>,
    stream: &[u8],
    arena: &mut [u8],
) -> Option<(u64, u32)> {
    let mut sink = ChecksumSink(0);
    let t0 = ticks.now();
    let r = stripe_decode::decompress::<K, _>(model, LEVEL, ROWS, COLS, stream, arena, &mut sink);
    let t1 = ticks.now();
    match r {
        Ok(()) => Some((((t1 - t0) * 40) >> ICOUNT_SHIFT, sink.0)),
        Err(e) => {
            defmt::println!("stripe_decode: {}", e);
            None
        }
    }
}

struct Ratio(u64, u64);

impl defmt::Format for Ratio {
    fn format(&self, f: defmt::Formatter) {
        let thousandths = (self.0 * 1000 + self.1 / 2) / self.1.max(1);
        defmt::write!(
            f,
            "{=u64}.{=u64:03}",
            thousandths / 1000,
            thousandths % 1000
        )
    }
}

/// One frame with kernel set `K` in `arena`: (instructions, bits or 0, latent checksum).
fn frame<K: KernelSet>(
    ticks: &mut Ticks,
    model: &Model<'_>,
    coding: bool,
    arena: &mut [u8],
    out: &mut [u8],
) -> Option<(u64, usize, u32)> {
    let mut src = PseudoPhoto::new(ROWS, COLS, 1);
    let mut sum = 0u32;
    let mut on_row = |_: usize, row: &[i8]| {
        for &v in row {
            sum = sum.wrapping_mul(31).wrapping_add(v as u8 as u32);
        }
    };
    let t0 = ticks.now();
    let r = if coding {
        stripe::compress_with::<K, _, _>(
            model,
            LEVEL,
            ROWS,
            COLS,
            &mut src,
            arena,
            out,
            &mut on_row,
        )
    } else {
        stripe::encode::<K, _, _>(model, ROWS, COLS, &mut src, arena, &mut on_row).map(|()| 0)
    };
    let t1 = ticks.now();
    match r {
        Ok(bits) => Some((((t1 - t0) * 40) >> ICOUNT_SHIFT, bits, sum)),
        Err(e) => {
            defmt::println!("stripe: {}", e);
            None
        }
    }
}

#[entry]
fn main() -> ! {
    let cp = cortex_m::Peripherals::take().unwrap_or_else(|| exit(false));
    let mut ticks = Ticks::new(cp.SYST);
    // SAFETY: single-threaded, the only references to these statics are taken here, once.
    let (arena, out, dec_arena) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(ARENA_BUF),
            &mut *core::ptr::addr_of_mut!(OUT),
            &mut *core::ptr::addr_of_mut!(DEC_ARENA_BUF),
        )
    };
    let Ok(model) = Model::from_bytes(MODEL) else {
        defmt::println!("stripe model invalid");
        exit(false)
    };
    let min = required_arena::<Scalar>(&model, COLS).unwrap_or(usize::MAX);
    let min_fast = required_arena::<Fast>(&model, COLS).unwrap_or(usize::MAX);
    let fastest =
        required_arena_with(&model, COLS, dsp_scratch::conv2d_scratch_size).unwrap_or(usize::MAX);
    let macs = stripe::encoder_macs(&model, ROWS, COLS).unwrap_or(0);
    defmt::println!(
        "stripe {=usize}x{=usize} grey, model {=usize} B, {=u64} MACs; arena: scalar {=usize} B, DSP minimum {=usize} B, DSP fastest {=usize} B (static {=usize} B)",
        COLS,
        ROWS,
        MODEL.len(),
        macs,
        min,
        min_fast,
        fastest,
        ARENA
    );
    if fastest > ARENA || min_fast > SMALL_ARENA {
        defmt::println!("static arena too small");
        exit(false);
    }
    let pixels = (ROWS * COLS) as u64;
    let mut ok = true;
    let mut reference: Option<(usize, u32)> = None;
    let runs: [(&str, bool, usize, bool); 6] = [
        ("dsp, fastest arena", true, fastest, true),
        ("dsp, fastest arena", true, fastest, false),
        ("dsp, 32 KiB arena", true, SMALL_ARENA, true),
        ("dsp, 32 KiB arena", true, SMALL_ARENA, false),
        ("scalar, minimum arena", false, min, true),
        ("scalar, minimum arena", false, min, false),
    ];
    let mut with_coding = 0u64;
    for (name, dsp, len, coding) in runs {
        if PREFIX && coding {
            continue;
        }
        let Some(a) = arena.get_mut(..len) else {
            exit(false)
        };
        let r = if dsp {
            frame::<Fast>(&mut ticks, &model, coding, a, out)
        } else {
            frame::<Scalar>(&mut ticks, &model, coding, a, out)
        };
        let Some((instr, bits, sum)) = r else {
            exit(false)
        };
        let same = match reference {
            None => {
                reference = Some((bits, sum));
                true
            }
            Some((b, s)) => s == sum && (!coding || b == bits),
        };
        ok &= same;
        if coding {
            with_coding = instr;
            defmt::println!(
                "{} | compress | {=u64} instr | {} /pixel | {} /MAC | {=usize} B arena | {=usize} bits | latent {=u32:x} {}",
                name,
                instr,
                Ratio(instr, pixels),
                Ratio(instr, macs),
                len,
                bits,
                sum,
                if same { "ok" } else { "MISMATCH" }
            );
        } else {
            let coding_cost = with_coding.saturating_sub(instr);
            defmt::println!(
                "{} | encode | {=u64} instr | {} /pixel | {} /MAC | coding {=u64} instr = {} % of compress | latent {=u32:x} {}",
                name,
                instr,
                Ratio(instr, pixels),
                Ratio(instr, macs),
                coding_cost,
                Ratio(coding_cost * 100, with_coding),
                sum,
                if same { "ok" } else { "MISMATCH" }
            );
        }
    }
    if let (false, Some((bits, _))) = (PREFIX, reference) {
        let stream = out.get(..bits.div_ceil(8)).unwrap_or(&[]);
        let min = stripe_decode::required_arena::<Scalar>(&model, COLS).unwrap_or(usize::MAX);
        let fastest = stripe_decode::required_arena_with(
            &model,
            COLS,
            dsp_scratch::conv_transpose2d_scratch_size,
        )
        .unwrap_or(usize::MAX);
        let macs = stripe_decode::decoder_macs(&model, ROWS, COLS).unwrap_or(0);
        defmt::println!(
            "stripe decoder: {=u64} MACs; arena: minimum {=usize} B, DSP fastest {=usize} B (static {=usize} B)",
            macs,
            min,
            fastest,
            DEC_ARENA
        );
        if fastest > DEC_ARENA {
            defmt::println!("static decoder arena too small");
            exit(false);
        }
        let mut first: Option<u32> = None;
        let runs: [(&str, bool, usize); 3] = [
            ("dsp, fastest arena", true, fastest),
            ("dsp, minimum arena", true, min),
            ("scalar, minimum arena", false, min),
        ];
        for (name, dsp, len) in runs {
            let Some(a) = dec_arena.get_mut(..len) else {
                exit(false)
            };
            let r = if dsp {
                decode::<Fast>(&mut ticks, &model, stream, a)
            } else {
                decode::<Scalar>(&mut ticks, &model, stream, a)
            };
            let Some((instr, sum)) = r else {
                exit(false)
            };
            let same = *first.get_or_insert(sum) == sum;
            ok &= same;
            defmt::println!(
                "{} | decompress | {=u64} instr | {} /pixel | {} /MAC | {=usize} B arena | pixels {=u32:x} {}",
                name,
                instr,
                Ratio(instr, pixels),
                Ratio(instr, macs),
                len,
                sum,
                if same { "ok" } else { "MISMATCH" }
            );
        }
    }
    exit(ok)
}
