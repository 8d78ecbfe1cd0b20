//! Random cases per kernel: `kernels::dsp` against `kernels::scalar`, bit for bit. Prints the first
//! mismatch and exits with failure, else exits with success.
//!
//! `firmware/boards/run-qemu.sh kernel_check an386` (Cortex-M4) or `… an500` (Cortex-M7).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use edgevae_boards::checked::{
    dsp_conv2d, dsp_conv_transpose2d, scalar_conv2d, scalar_conv_transpose2d,
};
use edgevae_boards::{exit, Params, Rng};
use edgevae_firmware::kernels::{
    dsp, scalar, ConvGeom, ConvParams, DenseParams, KernelError, OutputStage, Scratch, Shape,
};

const CASES: usize = 300;
const MAX_IN: usize = 9 * 9 * 17;
const MAX_W: usize = 17 * 5 * 5 * 17;
const MAX_OUT: usize = 29 * 29 * 17;
const MAX_SCRATCH: usize = 20 * 1024;

#[entry]
fn main() -> ! {
    let mut r = Rng(0x2545_F491);
    let mut x = [0i8; MAX_IN];
    let mut w = [0i8; MAX_W];
    let mut fast = [0i8; MAX_OUT];
    let mut reference = [0i8; MAX_OUT];
    let mut scratch = [0u8; MAX_SCRATCH];
    let mut ok = true;

    // Pass 0: random shapes. Pass 1: the special-case kernels: one input channel (conv2d, up to
    // 70 output channels: both prepared blocks and the fallback above 64) or 1–3 output channels.
    // Pass 4 (`wide`): one input channel with more than ten taps (the paired kernel: the photo
    // encoder's 5×5 first layer and its neighbours) on rows up to 41 wide, odd and even, every
    // shift in the fast requantisation's domain in odd cases.
    for (transpose, narrow, wide) in [
        (false, false, false),
        (true, false, false),
        (false, true, false),
        (true, true, false),
        (false, true, true),
    ] {
        let name = match (transpose, narrow, wide) {
            (_, _, true) => "conv2d ic=1 >10 taps",
            (true, false, _) => "conv_transpose2d",
            (false, false, _) => "conv2d",
            (true, true, _) => "conv_transpose2d oc<4",
            (false, true, _) => "conv2d ic=1",
        };
        let mut done = 0;
        while ok && done < CASES {
            let is = Shape {
                h: r.range(if wide { 3 } else { 1 }, 9) as usize,
                w: r.range(if wide { 3 } else { 1 }, if wide { 41 } else { 9 }) as usize,
                c: if narrow && !transpose {
                    1
                } else {
                    r.range(1, 17) as usize
                },
            };
            let g = if wide {
                // Mostly the photo layer (5×5, stride 2), else 3..=7 × 4..=7.
                let photo = !r.next_u32().is_multiple_of(3);
                ConvGeom {
                    kh: if photo { 5 } else { r.range(3, 7) as usize },
                    kw: if photo { 5 } else { r.range(4, 7) as usize },
                    stride: if photo && r.next_u32().is_multiple_of(2) {
                        2
                    } else {
                        r.range(1, 2) as usize
                    },
                    pad: r.range(0, 2) as usize,
                }
            } else {
                ConvGeom {
                    kh: r.range(1, 5) as usize,
                    kw: r.range(1, 5) as usize,
                    stride: r.range(1, 3) as usize,
                    pad: r.range(0, 2) as usize,
                }
            };
            let oc = match (narrow, transpose, wide) {
                (_, _, true) => r.range(1, 30),
                (false, _, _) => r.range(1, 17),
                (true, true, _) => r.range(1, 3),
                (true, false, _) => r.range(1, 70),
            } as usize;
            let dim = |i: usize, k: usize| {
                if transpose {
                    ((i - 1) * g.stride + k)
                        .checked_sub(2 * g.pad)
                        .filter(|&n| n > 0)
                } else {
                    (i + 2 * g.pad).checked_sub(k).map(|n| n / g.stride + 1)
                }
            };
            let (Some(oh), Some(ow)) = (dim(is.h, g.kh), dim(is.w, g.kw)) else {
                continue;
            };
            let os = Shape {
                h: oh,
                w: ow,
                c: oc,
            };
            let zp = r.range(-128, 127);
            let cp = ConvParams {
                in_shape: is,
                out_shape: os,
                geom: g,
                input_zp: zp,
            };
            let (x, w) = (&mut x[..is.len()], &mut w[..oc * g.kh * g.kw * is.c]);
            r.fill(x);
            r.fill(w);
            let mut p: Params<{ 4 * 70 }> = Params::random(&mut r, oc, g.kh * g.kw * is.c);
            if wide && done % 2 == 1 {
                // Every shift in the fast requantisation's domain (-31..=-1): the paired kernel
                // runs (any other shift takes the general one-channel path).
                for s in p.shift[..oc].iter_mut() {
                    if !(-31..=-1).contains(s) {
                        *s = -1 - (r.next_u32() % 31) as i8;
                    }
                }
            }
            let stage = p.stage();
            let (fo, ro) = (&mut fast[..os.len()], &mut reference[..os.len()]);
            fo.fill(0x5A);
            ro.fill(0x3C);
            let (f, s, size) = if transpose {
                (
                    dsp_conv_transpose2d as Conv,
                    scalar_conv_transpose2d as Conv,
                    dsp::conv_transpose2d_scratch_size(is, os, g),
                )
            } else {
                (
                    dsp_conv2d as Conv,
                    scalar_conv2d as Conv,
                    dsp::conv2d_scratch_size(is, os, g),
                )
            };
            if size > MAX_SCRATCH {
                defmt::println!("{}: scratch {} > {}", name, size, MAX_SCRATCH);
                exit(false);
            }
            let rf = f(&cp, x, w, &stage, fo, Scratch::new(&mut scratch[..size]));
            let rs = s(&cp, x, w, &stage, ro, Scratch::none());
            if rf != rs || rf.is_err() || fo != ro {
                defmt::println!(
                    "MISMATCH {} case {}: in {} out {} {} zp {} results {}/{}",
                    name,
                    done,
                    is,
                    os,
                    g,
                    zp,
                    rf,
                    rs
                );
                print_differences(fo, ro);
                ok = false;
                break;
            }
            // The GEMM from a pre-laid block (`edgevae_shared::layout::gemm_words`), with the
            // full scratch and a random shorter one (then other paths ignore the block).
            if !prelaid_conv_matches(&cp, x, w, &stage, transpose, &mut r, ro) {
                defmt::println!(
                    "MISMATCH {} case {} (pre-laid): in {} out {} {}",
                    name,
                    done,
                    is,
                    os,
                    g
                );
                ok = false;
                break;
            }
            // Any shorter scratch (smaller chunks or channel blocks), and none (the direct
            // kernels or the reference loop).
            let random_short = r.next_u32() as usize % size.max(1);
            for short in [random_short, 0] {
                if size == 0 {
                    break;
                }
                fo.fill(0x5A);
                let rf = f(&cp, x, w, &stage, fo, Scratch::new(&mut scratch[..short]));
                if rf != rs || fo != ro {
                    defmt::println!(
                        "MISMATCH {} case {} with {} of {} scratch bytes: {}",
                        name,
                        done,
                        short,
                        size,
                        rf
                    );
                    ok = false;
                    break;
                }
            }
            done += 1;
        }
        defmt::println!("{}: {} cases", name, done);
    }

    let mut done = 0;
    while ok && done < CASES {
        let (n_in, n_out) = match done {
            0 => (3136, 16),
            1 => (16, 3136),
            // The 16-input assembly loop: odd and even output counts, every shift and clamp.
            2..=100 => (16, r.range(1, 40) as usize),
            _ => (r.range(0, 70) as usize, r.range(1, 19) as usize),
        };
        let zp = r.range(-128, 127);
        let mut pbig: Params<{ 4 * 3136 }> = Params::random(&mut r, n_out, n_in);
        pbig.shift.iter_mut().skip(n_out).for_each(|s| *s = 0);
        if n_in == 16 && done % 2 == 1 {
            // Every shift in the pre-laid block's domain (-31..=-1), so the block applies.
            for s in pbig.shift[..n_out].iter_mut() {
                if !(-31..=-1).contains(s) {
                    *s = -1 - (r.next_u32() % 31) as i8;
                }
            }
        }
        let stage = pbig.stage();
        let (x, w) = (&mut x[..n_in.min(MAX_IN)], &mut w[..]);
        let mut wbig = [0i8; 3136 * 16];
        let w = if n_in * n_out > w.len() {
            &mut wbig[..n_in * n_out]
        } else {
            &mut w[..n_in * n_out]
        };
        let mut xbig = [0i8; 3136];
        let x = if n_in > x.len() {
            &mut xbig[..n_in]
        } else {
            &mut x[..n_in]
        };
        r.fill(x);
        r.fill(w);
        let (fo, ro) = (&mut fast[..n_out], &mut reference[..n_out]);
        fo.fill(0x5A);
        ro.fill(0x3C);
        let size = dsp::dense_scratch_size(n_in, n_out);
        let dp = DenseParams {
            n_in,
            n_out,
            input_zp: zp,
        };
        let rf = dp
            .check(x, w, &stage, fo)
            .and_then(|c| dsp::dense(c, Scratch::new(&mut scratch[..size])));
        let rs = dp
            .check(x, w, &stage, ro)
            .and_then(|c| scalar::dense(c, Scratch::none()));
        let mut short_ok = true;
        if size > 0 {
            let mut fs = [0x5Ai8; 3136];
            let fs = &mut fs[..n_out];
            let short = r.next_u32() as usize % size;
            let rf2 = dp
                .check(x, w, &stage, fs)
                .and_then(|c| dsp::dense(c, Scratch::new(&mut scratch[..short])));
            short_ok = rf2 == rs && fs == ro;
        }
        if n_in == 16 && short_ok {
            short_ok = prelaid_matches(x, zp, w, n_out, &pbig, ro);
        }
        if rf != rs || rf.is_err() || fo != ro || !short_ok {
            defmt::println!(
                "MISMATCH dense case {}: {} -> {} zp {} results {}/{}",
                done,
                n_in,
                n_out,
                zp,
                rf,
                rs
            );
            print_differences(fo, ro);
            ok = false;
        }
        done += 1;
    }
    defmt::println!("dense: {} cases", done);
    defmt::println!(
        "{}",
        if ok {
            "kernel_check: PASS"
        } else {
            "kernel_check: FAIL"
        }
    );
    exit(ok)
}

/// A path's (transposed) convolution behind the front door's check.
type Conv =
    fn(&ConvParams, &[i8], &[i8], &OutputStage, &mut [i8], Scratch) -> Result<(), KernelError>;

/// Every index where the DSP output differs from the scalar one, with both values.
fn print_differences(dsp: &[i8], scalar: &[i8]) {
    for (i, (a, b)) in dsp.iter().zip(scalar).enumerate() {
        if a != b {
            defmt::println!("  index {}: dsp {} scalar {}", i, a, b);
        }
    }
}

/// The dense 16-input kernel from a pre-laid block (`edgevae_shared::layout`), word-aligned and
/// (where the parameters allow a block) misaligned by 2 bytes (then it falls back): both must
/// give the reference output `expected`.
fn prelaid_matches(
    x: &[i8],
    zp: i32,
    w: &[i8],
    n_out: usize,
    p: &Params<{ 4 * 3136 }>,
    expected: &[i8],
) -> bool {
    use edgevae_shared::layout::{dense16_block_len, dense16_eligible, write_dense16_block};
    let shift = edgevae_boards::i8_bytes(&p.shift[..n_out]);
    let w8 = edgevae_boards::i8_bytes(w);
    let mut words = [0u32; 1568 * 22 + 1];
    // SAFETY: a u32 array viewed as its bytes.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 4) };
    let len = dense16_block_len(n_out);
    let eligible = dense16_eligible(16, n_out, shift);
    let stage = p.stage();
    let mut ok = true;
    for offset in [0, 2] {
        let block = &mut bytes[offset..offset + len];
        write_dense16_block(w8, &p.bias, &p.mult, shift, n_out, block);
        let mut out = [0x5Ai8; 3136];
        let out = &mut out[..n_out];
        let block: &[u8] = if eligible || offset != 0 { block } else { &[] };
        let dp = DenseParams {
            n_in: 16,
            n_out,
            input_zp: zp,
        };
        let r = dsp::dense_prelaid(&dp, x, w, block, &stage, out, Scratch::none());
        if r.is_err() || out != expected {
            defmt::println!(
                "MISMATCH pre-laid dense 16 -> {} (block offset {}, eligible {}): {}",
                n_out,
                offset,
                eligible,
                r
            );
            print_differences(out, expected);
            ok = false;
        }
    }
    ok
}

/// A (transposed) convolution from its pre-laid GEMM block, with the full scratch the DSP path
/// asks for and a random shorter scratch: both must give the reference output `expected`.
fn prelaid_conv_matches(
    p: &ConvParams,
    x: &[i8],
    w: &[i8],
    stage: &OutputStage,
    transpose: bool,
    r: &mut Rng,
    expected: &[i8],
) -> bool {
    use edgevae_shared::layout::GemmGeom;
    let (is, os, g) = (p.in_shape, p.out_shape, p.geom);
    let size = if transpose {
        dsp::conv_transpose2d_scratch_size(is, os, g)
    } else {
        dsp::conv2d_scratch_size(is, os, g)
    };
    let gg = GemmGeom {
        kh: g.kh,
        kw: g.kw,
        stride: g.stride,
        ic: is.c,
        oc: os.c,
        transpose,
    };
    let mut words = [0u32; 8192];
    let Some(block) = edgevae_boards::gemm_block(w, gg, &mut words) else {
        return true; // larger than this check's buffer
    };
    let mut scratch = [0u8; MAX_SCRATCH];
    let mut out = [0i8; MAX_OUT];
    let out = &mut out[..os.len()];
    let short = r.next_u32() as usize % size.max(1);
    for n in [size, short] {
        out.fill(0x5A);
        let sc = &mut scratch[..n.min(MAX_SCRATCH)];
        let sc = Scratch::new(sc);
        let res = if transpose {
            p.check_transposed(x, w, stage, out)
                .and_then(|c| dsp::conv_transpose2d_prelaid(c, block, sc))
        } else {
            p.check(x, w, stage, out)
                .and_then(|c| dsp::conv2d_prelaid(c, block, sc))
        };
        if res.is_err() || out != expected {
            print_differences(out, expected);
            return false;
        }
    }
    true
}
