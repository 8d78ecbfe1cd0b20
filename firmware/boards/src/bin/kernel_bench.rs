//! The default model's layers with random weights and requantisation parameters, timed with
//! SysTick under `-icount` (instruction counts, not cycles): the DSP path against the scalar
//! reference, in the same binary. Also checks that both give the same bytes.
//!
//! `firmware/boards/run-qemu.sh kernel_bench an386` (run-qemu.sh passes `-icount shift=5`).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use edgevae_boards::checked::{
    conv_params, dense_params, dsp_conv2d, dsp_conv_transpose2d, dsp_dense, scalar_conv2d,
    scalar_conv_transpose2d, scalar_dense,
};
use edgevae_boards::{exit, Params, Rng, Ticks};
use edgevae_firmware::kernels::{
    dsp, ConvGeom, ConvParams, KernelError, OutputStage, Scratch, Shape,
};

/// Must match the `-icount shift` of the runner: one SysTick tick is 40 ns of virtual time
/// (25 MHz), one instruction 2^SHIFT ns.
const ICOUNT_SHIFT: u32 = 5;

/// Scratch the shipped models' declared arenas leave beside their activations, what every layer
/// gets on the device: default 16,324 − 9,408 B, wide-gauss 16,324 − 15,680 B.
const BUDGET_DEFAULT: usize = 6916;
const BUDGET_WIDE: usize = 644;

static mut INPUT: [i8; 9408] = [0; 9408];
static mut WEIGHTS: [i8; 6272 * 16] = [0; 6272 * 16];
static mut OUT_DSP: [i8; 9408] = [0; 9408];
static mut OUT_SCALAR: [i8; 9408] = [0; 9408];
static mut SCRATCH: [u8; 24 * 1024] = [0; 24 * 1024];
/// The pre-laid block of a dense 16 → 6272 layer (`edgevae_shared::layout`), word-aligned.
static mut BLOCK: [u32; 3136 * 22] = [0; 3136 * 22];

enum Layer {
    Conv(&'static str, Shape, Shape, ConvGeom, bool),
    ConvT(&'static str, Shape, Shape, ConvGeom, bool),
    Dense(&'static str, usize, usize, bool),
}

/// A path's (transposed) convolution behind the front door's check.
type ConvFn =
    fn(&ConvParams, &[i8], &[i8], &OutputStage, &mut [i8], Scratch) -> Result<(), KernelError>;

#[entry]
fn main() -> ! {
    let cp = cortex_m::Peripherals::take().unwrap_or_else(|| exit(false));
    let mut ticks = Ticks::new(cp.SYST);
    // SAFETY: single-threaded, the only references to these statics are taken here, once.
    let (input, weights, out_dsp, out_scalar, scratch, block) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(INPUT),
            &mut *core::ptr::addr_of_mut!(WEIGHTS),
            &mut *core::ptr::addr_of_mut!(OUT_DSP),
            &mut *core::ptr::addr_of_mut!(OUT_SCALAR),
            &mut *core::ptr::addr_of_mut!(SCRATCH),
            &mut *core::ptr::addr_of_mut!(BLOCK),
        )
    };
    let s = |h, w, c| Shape { h, w, c };
    let g3 = ConvGeom {
        kh: 3,
        kw: 3,
        stride: 2,
        pad: 1,
    };
    let g4 = ConvGeom {
        kh: 4,
        kw: 4,
        stride: 2,
        pad: 1,
    };
    let layers = [
        Layer::Conv(
            "enc conv1 28x28x1->14x14x32 k3s2p1",
            Shape { h: 28, w: 28, c: 1 },
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            g3,
            true,
        ),
        Layer::Conv(
            "enc conv2 14x14x32->7x7x64 k3s2p1",
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            Shape { h: 7, w: 7, c: 64 },
            g3,
            true,
        ),
        Layer::Dense("enc dense 3136->16", 3136, 16, false),
        Layer::Dense("dec dense 16->3136", 16, 3136, true),
        Layer::ConvT(
            "dec convT1 7x7x64->14x14x32 k4s2p1",
            Shape { h: 7, w: 7, c: 64 },
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            g4,
            true,
        ),
        Layer::ConvT(
            "dec convT2 14x14x32->28x28x1 k4s2p1",
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            Shape { h: 28, w: 28, c: 1 },
            g4,
            false,
        ),
        // models/wide-gauss (c1 = 48, c2 = 128).
        Layer::Conv(
            "wide conv1 28x28x1->14x14x48",
            s(28, 28, 1),
            s(14, 14, 48),
            g3,
            true,
        ),
        Layer::Conv(
            "wide conv2 14x14x48->7x7x128",
            s(14, 14, 48),
            s(7, 7, 128),
            g3,
            true,
        ),
        Layer::Dense("wide enc dense 6272->16", 6272, 16, false),
        Layer::Dense("wide dec dense 16->6272", 16, 6272, true),
        Layer::ConvT(
            "wide convT1 7x7x128->14x14x48",
            s(7, 7, 128),
            s(14, 14, 48),
            g4,
            true,
        ),
        Layer::ConvT(
            "wide convT2 14x14x48->28x28x1",
            s(14, 14, 48),
            s(28, 28, 1),
            g4,
            false,
        ),
    ];
    let budgets = [BUDGET_DEFAULT; 6].into_iter().chain([BUDGET_WIDE; 6]);

    // Cost of the measurement itself.
    let t0 = ticks.now();
    let t1 = ticks.now();
    let overhead = t1 - t0;

    let mut r = Rng(0x1234_5678);
    let mut ok = true;
    let (mut total_macs, mut total_dsp, mut total_scalar) = (0u64, 0u64, 0u64);
    let (mut total_budget, mut total_none) = (0u64, 0u64);
    defmt::println!(
        "layer | MACs | dsp instr | dsp instr/MAC | scalar instr | scalar instr/MAC | scratch B | dsp instr/MAC with the model's scratch | dsp instr/MAC without scratch"
    );
    for (index, (layer, budget)) in layers.iter().zip(budgets).enumerate() {
        let (name, n_in, n_out, fan_in, macs, relu) = match *layer {
            Layer::Conv(n, is, os, g, relu) => (
                n,
                is.len(),
                os.len(),
                g.kh * g.kw * is.c,
                (os.len() * g.kh * g.kw * is.c) as u64,
                relu,
            ),
            Layer::ConvT(n, is, os, g, relu) => (
                n,
                is.len(),
                os.len(),
                g.kh * g.kw * is.c / 4,
                (is.len() * g.kh * g.kw * os.c) as u64,
                relu,
            ),
            Layer::Dense(n, i, o, relu) => (n, i, o, i, (i * o) as u64, relu),
        };
        let n_w = match *layer {
            Layer::Conv(_, is, os, g, _) | Layer::ConvT(_, is, os, g, _) => {
                os.c * g.kh * g.kw * is.c
            }
            Layer::Dense(_, i, o, _) => i * o,
        };
        let n_oc = match *layer {
            Layer::Conv(_, _, os, _, _) | Layer::ConvT(_, _, os, _, _) => os.c,
            Layer::Dense(_, _, o, _) => o,
        };
        let (x, w) = (&mut input[..n_in], &mut weights[..n_w]);
        r.fill(x);
        r.fill(w);
        let zp = r.range(-128, 127);
        let mut p: Params<{ 4 * 6272 }> = Params::random(&mut r, n_oc, fan_in);
        // Realistic requantisation: every channel in [2^30, 2^31) with a moderate right shift.
        for c in 0..n_oc {
            p.mult[4 * c..4 * c + 4].copy_from_slice(&r.range(1 << 30, i32::MAX).to_le_bytes());
            p.shift[c] = r.range(-12, -6) as i8;
        }
        if relu {
            p.min = p.zp;
        } else {
            p.min = -128;
        }
        let stage = p.stage();
        let (od, os_) = (&mut out_dsp[..n_out], &mut out_scalar[..n_out]);
        let size = match *layer {
            Layer::Conv(_, is, os, g, _) => dsp::conv2d_scratch_size(is, os, g),
            Layer::ConvT(_, is, os, g, _) => dsp::conv_transpose2d_scratch_size(is, os, g),
            Layer::Dense(_, i, o, _) => dsp::dense_scratch_size(i, o),
        };
        if size > scratch.len() {
            defmt::println!("{}: scratch {} too large", name, size);
            exit(false);
        }
        let sc = &mut scratch[..size];
        let (x, w) = (&*x, &*w);
        let (rd, rs, td, ts) = match *layer {
            Layer::Conv(_, is, os, g, _) | Layer::ConvT(_, is, os, g, _) => {
                let (f, s): (ConvFn, ConvFn) = if matches!(layer, Layer::Conv(..)) {
                    (dsp_conv2d, scalar_conv2d)
                } else {
                    (dsp_conv_transpose2d, scalar_conv_transpose2d)
                };
                let cp = conv_params(is, os, g, zp);
                let a = ticks.now();
                let rd = f(&cp, x, w, &stage, od, Scratch::new(sc));
                let b = ticks.now();
                let rs = s(&cp, x, w, &stage, os_, Scratch::none());
                let c = ticks.now();
                (rd, rs, b - a, c - b)
            }
            Layer::Dense(_, i, o, _) => {
                let dp = dense_params(i, o, zp);
                let a = ticks.now();
                let rd = dsp_dense(&dp, x, w, &stage, od, Scratch::new(sc));
                let b = ticks.now();
                let rs = scalar_dense(&dp, x, w, &stage, os_, Scratch::none());
                let c = ticks.now();
                (rd, rs, b - a, c - b)
            }
        };
        if rd.is_err() || rs.is_err() || od != os_ {
            defmt::println!("{}: dsp and scalar differ ({} / {})", name, rd, rs);
            ok = false;
        }
        // The same layer with the scratch the default model's arena leaves, and with none.
        let mut smaller = [0u64; 2];
        for (t, n) in smaller.iter_mut().zip([budget.min(size), 0]) {
            od.fill(0x5A);
            let sc = Scratch::new(&mut scratch[..n]);
            let a = ticks.now();
            let r = match *layer {
                Layer::Conv(_, is, os, g, _) => {
                    dsp_conv2d(&conv_params(is, os, g, zp), x, w, &stage, od, sc)
                }
                Layer::ConvT(_, is, os, g, _) => {
                    dsp_conv_transpose2d(&conv_params(is, os, g, zp), x, w, &stage, od, sc)
                }
                Layer::Dense(_, i, o, _) => {
                    dsp_dense(&dense_params(i, o, zp), x, w, &stage, od, sc)
                }
            };
            *t = ticks.now() - a;
            if r.is_err() || od != os_ {
                defmt::println!("{}: dsp with {} scratch bytes differs ({})", name, n, r);
                ok = false;
            }
        }
        let instr = |t: u64| (t.saturating_sub(overhead) * 40) >> ICOUNT_SHIFT;
        // The GEMM with the weights pre-laid in the model file (no widening per chunk), for the
        // layers the DSP path runs as a GEMM: timed with the fastest and the model's scratch.
        let mut gemm_prelaid = None;
        if let Layer::Conv(_, is, os, g, _) | Layer::ConvT(_, is, os, g, _) = *layer {
            let transpose = matches!(layer, Layer::ConvT(..));
            if os.c < 4 || (is.c == 1 && !transpose) {
                // Not a GEMM layer (no pre-laid block).
            } else {
                let gg = edgevae_shared::layout::GemmGeom {
                    kh: g.kh,
                    kw: g.kw,
                    stride: g.stride,
                    ic: is.c,
                    oc: os.c,
                    transpose,
                };
                let len = gg.block_len();
                let bytes = edgevae_boards::gemm_block(w, gg, &mut block[..]).unwrap_or(&[]);
                let mut t = [0u64; 2];
                for (t, n) in t.iter_mut().zip([size, budget.min(size)]) {
                    od.fill(0x5A);
                    let sc = Scratch::new(&mut scratch[..n]);
                    let cp = conv_params(is, os, g, zp);
                    let a = ticks.now();
                    let r = if transpose {
                        cp.check_transposed(x, w, &stage, od)
                            .and_then(|c| dsp::conv_transpose2d_prelaid(c, bytes, sc))
                    } else {
                        cp.check(x, w, &stage, od)
                            .and_then(|c| dsp::conv2d_prelaid(c, bytes, sc))
                    };
                    *t = instr(ticks.now() - a);
                    if r.is_err() || od != os_ {
                        defmt::println!(
                            "{}: pre-laid dsp with {} B scratch differs ({})",
                            name,
                            n,
                            r
                        );
                        ok = false;
                    }
                }
                gemm_prelaid = Some((t, len));
            }
        }
        let (mut id, is_) = (instr(td), instr(ts));
        let (mut ib, mut in_) = (instr(smaller[0]), instr(smaller[1]));
        if let Some((t, len)) = gemm_prelaid {
            defmt::println!(
                "{} (int8 weights, no pre-laid block) | {} | {} | {} | model's scratch {} | block {} B",
                name,
                macs,
                id,
                Ratio(id, macs),
                Ratio(ib, macs),
                len
            );
            (id, ib) = (t[0], t[1]);
        }
        if let Layer::Dense(_, 16, o, _) = *layer {
            // What a model file with the pre-laid section runs (no scratch either way); the
            // int8-weight kernel above for comparison.
            let bytes = edgevae_boards::dense16_block(w, &p, o, &mut block[..]).unwrap_or(&[]);
            od.fill(0x5A);
            let a = ticks.now();
            let r = dsp::dense_prelaid(
                &dense_params(16, o, zp),
                x,
                w,
                bytes,
                &stage,
                od,
                Scratch::none(),
            );
            let t = instr(ticks.now() - a);
            if r.is_err() || od != os_ {
                defmt::println!("{}: pre-laid dsp differs ({})", name, r);
                ok = false;
            }
            defmt::println!(
                "{} (int8 weights, no pre-laid block) | {} | {} | {}",
                name,
                macs,
                id,
                Ratio(id, macs)
            );
            (id, ib, in_) = (t, t, t);
        }
        total_macs += macs;
        total_dsp += id;
        total_scalar += is_;
        total_budget += ib;
        total_none += in_;
        defmt::println!(
            "{} | {} | {} | {} | {} | {} | {} | {} | {}",
            name,
            macs,
            id,
            Ratio(id, macs),
            is_,
            Ratio(is_, macs),
            size,
            Ratio(ib, macs),
            Ratio(in_, macs)
        );
        if index % 6 == 5 {
            defmt::println!(
                "total {} | {} | {} | {} | {} | {} | | {} ({}) | {} ({})",
                if index == 5 { "default" } else { "wide-gauss" },
                total_macs,
                total_dsp,
                Ratio(total_dsp, total_macs),
                total_scalar,
                Ratio(total_scalar, total_macs),
                Ratio(total_budget, total_macs),
                total_budget,
                Ratio(total_none, total_macs),
                total_none
            );
            (
                total_macs,
                total_dsp,
                total_scalar,
                total_budget,
                total_none,
            ) = (0, 0, 0, 0, 0);
        }
    }
    exit(ok)
}

/// `a / b` with two decimals, without floating point.
struct Ratio(u64, u64);

impl defmt::Format for Ratio {
    fn format(&self, f: defmt::Formatter) {
        let hundredths = (self.0 * 100 + self.1 / 2) / self.1.max(1);
        defmt::write!(f, "{=u64}.{=u64:02}", hundredths / 100, hundredths % 100)
    }
}
