//! Kernel tests: the scalar reference against an independent naive implementation (i64
//! accumulation, explicit loops, transposed convolution by zero insertion), and every compiled
//! path (scalar, the dispatching front end, NEON on aarch64) against the scalar reference, bit for
//! bit, through one macro.
//!
//! Host: `cargo test -p edgevae-firmware --test kernels`
//! NEON: `cargo test -p edgevae-firmware --target aarch64-unknown-linux-gnu --test kernels`

use edgevae_firmware::kernels::{
    self, ConvGeom, ConvParams, DenseParams, KernelError, LeI32, OutputStage, Scratch, Shape,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- independent reference

/// gemmlowp's SaturatingRoundingDoublingHighMul, written as in gemmlowp (nudge, truncating /).
fn naive_srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// Division by 2^e rounding half away from zero, on magnitudes.
fn naive_rdbpot(x: i32, e: u32) -> i32 {
    if e == 0 {
        return x;
    }
    let (x, half) = (x as i64, 1i64 << (e - 1));
    (if x >= 0 {
        (x + half) >> e
    } else {
        -((-x + half) >> e)
    }) as i32
}

/// TFLite MultiplyByQuantizedMultiplier with the documented saturation of the left shift.
fn naive_requant(acc: i32, m: i32, shift: i32) -> i32 {
    let x = if shift > 0 {
        (acc as i64 * (1i64 << shift)).clamp(i32::MIN as i64, i32::MAX as i64) as i32
    } else {
        acc
    };
    naive_rdbpot(
        naive_srdhm(x, m),
        if shift < 0 { (-shift) as u32 } else { 0 },
    )
}

/// Per-channel output parameters, owned.
#[derive(Clone, Debug)]
struct Params {
    bias: Vec<u8>,
    mult: Vec<u8>,
    shift: Vec<i8>,
    zp: i32,
    min: i32,
    max: i32,
}

impl Params {
    fn stage(&self) -> OutputStage<'_> {
        OutputStage {
            bias: LeI32(&self.bias),
            multiplier: LeI32(&self.mult),
            shift: &self.shift,
            output_zp: self.zp,
            act_min: self.min,
            act_max: self.max,
        }
    }
    fn out(&self, acc: i64, oc: usize) -> i8 {
        let s = self.stage();
        let acc = acc + s.bias.get(oc) as i64;
        assert!(i32::try_from(acc).is_ok(), "test data overflowed i32");
        let q = naive_requant(acc as i32, s.multiplier.get(oc), self.shift[oc] as i32) as i64;
        (q + self.zp as i64).clamp(self.min as i64, self.max as i64) as i8
    }
}

/// Direct convolution with explicit loops and i64 sums.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[i8],
    is: Shape,
    zp: i32,
    w: &[i8],
    g: ConvGeom,
    p: &Params,
    os: Shape,
) -> Vec<i8> {
    let mut out = vec![0i8; os.len()];
    for oy in 0..os.h {
        for ox in 0..os.w {
            for oc in 0..os.c {
                let mut acc = 0i64;
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let iy = (oy * g.stride + ky) as i64 - g.pad as i64;
                        let ix = (ox * g.stride + kx) as i64 - g.pad as i64;
                        if iy < 0 || ix < 0 || iy >= is.h as i64 || ix >= is.w as i64 {
                            continue;
                        }
                        let (iy, ix) = (iy as usize, ix as usize);
                        for c in 0..is.c {
                            let xv = x[(iy * is.w + ix) * is.c + c] as i64 - zp as i64;
                            let wv = w[((oc * g.kh + ky) * g.kw + kx) * is.c + c] as i64;
                            acc += xv * wv;
                        }
                    }
                }
                out[(oy * os.w + ox) * os.c + oc] = p.out(acc, oc);
            }
        }
    }
    out
}

/// Transposed convolution the textbook way: insert s-1 zeros between the (zero-point-corrected)
/// inputs, pad by k-1-pad (negative: crop), and correlate with the flipped kernel at stride 1.
#[allow(clippy::too_many_arguments)]
fn naive_conv_transpose(
    x: &[i8],
    is: Shape,
    zp: i32,
    w: &[i8],
    g: ConvGeom,
    p: &Params,
    os: Shape,
) -> Vec<i8> {
    let (uh, uw) = ((is.h - 1) * g.stride + 1, (is.w - 1) * g.stride + 1);
    let mut up = vec![0i64; uh * uw * is.c];
    for iy in 0..is.h {
        for ix in 0..is.w {
            for c in 0..is.c {
                up[((iy * g.stride) * uw + ix * g.stride) * is.c + c] =
                    x[(iy * is.w + ix) * is.c + c] as i64 - zp as i64;
            }
        }
    }
    let (py, px) = (
        g.kh as i64 - 1 - g.pad as i64,
        g.kw as i64 - 1 - g.pad as i64,
    );
    let mut out = vec![0i8; os.len()];
    for oy in 0..os.h {
        for ox in 0..os.w {
            for oc in 0..os.c {
                let mut acc = 0i64;
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let uy = oy as i64 + ky as i64 - py;
                        let ux = ox as i64 + kx as i64 - px;
                        if uy < 0 || ux < 0 || uy >= uh as i64 || ux >= uw as i64 {
                            continue;
                        }
                        let (fy, fx) = (g.kh - 1 - ky, g.kw - 1 - kx);
                        for c in 0..is.c {
                            let u = up[(uy as usize * uw + ux as usize) * is.c + c];
                            acc += u * w[((oc * g.kh + fy) * g.kw + fx) * is.c + c] as i64;
                        }
                    }
                }
                out[(oy * os.w + ox) * os.c + oc] = p.out(acc, oc);
            }
        }
    }
    out
}

fn naive_dense(x: &[i8], zp: i32, w: &[i8], n_in: usize, n_out: usize, p: &Params) -> Vec<i8> {
    (0..n_out)
        .map(|o| {
            let acc: i64 = (0..n_in)
                .map(|i| w[o * n_in + i] as i64 * (x[i] as i64 - zp as i64))
                .sum();
            p.out(acc, o)
        })
        .collect()
}

// ---------------------------------------------------------------- random cases

/// xorshift64*: deterministic data from one proptest-chosen seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.next() as i8).collect()
    }
    fn params(&mut self, n_out: usize, fan_in: usize) -> Params {
        let zp = self.range(-128, 127) as i32;
        let relu = self.next().is_multiple_of(2);
        let (min, max) = if relu {
            (zp, 127)
        } else {
            let a = self.range(-128, 127) as i32;
            let b = self.range(-128, 127) as i32;
            (a.min(b).min(-100), a.max(b).max(100))
        };
        let bias_span = 1 + 300 * fan_in as i64;
        let mut bias = Vec::new();
        let mut mult = Vec::new();
        let mut shift = Vec::new();
        for _ in 0..n_out {
            bias.extend_from_slice(&(self.range(-bias_span, bias_span) as i32).to_le_bytes());
            let m = match self.next() % 8 {
                0 => 0,
                1 => i32::MAX,
                _ => self.range(1 << 30, i32::MAX as i64) as i32,
            };
            mult.extend_from_slice(&m.to_le_bytes());
            // Mostly shifts that keep outputs inside int8, sometimes anywhere in TFLite's range.
            let s = if self.next().is_multiple_of(4) {
                self.range(-31, 30)
            } else {
                self.range(-14, 1)
            };
            shift.push(s as i8);
        }
        Params {
            bias,
            mult,
            shift,
            zp,
            min,
            max,
        }
    }
}

#[derive(Clone, Debug)]
struct ConvCase {
    is: Shape,
    os: Shape,
    g: ConvGeom,
    zp: i32,
    x: Vec<i8>,
    w: Vec<i8>,
    p: Params,
}

fn conv_case(transpose: bool) -> impl Strategy<Value = ConvCase> {
    (
        1usize..=9,
        1usize..=9,
        1usize..=17,
        1usize..=17,
        1usize..=5,
        1usize..=5,
        1usize..=3,
        0usize..=2,
        any::<u64>(),
    )
        .prop_filter_map(
            "kernel must fit",
            move |(h, w, ic, oc, kh, kw, stride, pad, seed)| {
                let g = ConvGeom {
                    kh,
                    kw,
                    stride,
                    pad,
                };
                let (oh, ow) = if transpose {
                    let oh = ((h - 1) * stride + kh)
                        .checked_sub(2 * pad)
                        .filter(|&n| n > 0)?;
                    let ow = ((w - 1) * stride + kw)
                        .checked_sub(2 * pad)
                        .filter(|&n| n > 0)?;
                    (oh, ow)
                } else {
                    (
                        (h + 2 * pad).checked_sub(kh)? / stride + 1,
                        (w + 2 * pad).checked_sub(kw)? / stride + 1,
                    )
                };
                let mut r = Rng(seed | 1);
                let is = Shape { h, w, c: ic };
                let os = Shape {
                    h: oh,
                    w: ow,
                    c: oc,
                };
                Some(ConvCase {
                    is,
                    os,
                    g,
                    zp: r.range(-128, 127) as i32,
                    x: r.i8s(is.len()),
                    w: r.i8s(oc * kh * kw * ic),
                    p: r.params(oc, kh * kw * ic),
                })
            },
        )
}

/// One input channel with more than ten taps on long rows (the photo encoder's 5×5 first
/// layer and its neighbours: the DSP paired kernel, the NEON row-copy gather): odd and even
/// widths up to 41, strides 1 and 2, padding 0–2, 1–30 output channels.
fn conv_case_ic1_wide() -> impl Strategy<Value = ConvCase> {
    (
        3usize..=9,
        3usize..=41,
        1usize..=30,
        prop_oneof![3 => Just((5usize, 5usize)), 1 => (3usize..=7, 4usize..=7)],
        1usize..=2,
        0usize..=2,
        any::<u64>(),
    )
        .prop_filter_map(
            "kernel must fit",
            |(h, w, oc, (kh, kw), stride, pad, seed)| {
                let g = ConvGeom {
                    kh,
                    kw,
                    stride,
                    pad,
                };
                let oh = (h + 2 * pad).checked_sub(kh)? / stride + 1;
                let ow = (w + 2 * pad).checked_sub(kw)? / stride + 1;
                let mut r = Rng(seed | 1);
                let is = Shape { h, w, c: 1 };
                let os = Shape {
                    h: oh,
                    w: ow,
                    c: oc,
                };
                Some(ConvCase {
                    is,
                    os,
                    g,
                    zp: r.range(-128, 127) as i32,
                    x: r.i8s(is.len()),
                    w: r.i8s(oc * kh * kw),
                    p: r.params(oc, kh * kw),
                })
            },
        )
}

#[derive(Clone, Debug)]
struct DenseCase {
    n_in: usize,
    n_out: usize,
    zp: i32,
    x: Vec<i8>,
    w: Vec<i8>,
    p: Params,
}

fn dense_case() -> impl Strategy<Value = DenseCase> {
    (0usize..=70, 1usize..=19, any::<u64>()).prop_map(|(n_in, n_out, seed)| {
        let mut r = Rng(seed | 1);
        DenseCase {
            n_in,
            n_out,
            zp: r.range(-128, 127) as i32,
            x: r.i8s(n_in),
            w: r.i8s(n_in * n_out),
            p: r.params(n_out, n_in),
        }
    })
}

// ---------------------------------------------------------------- one suite per implementation

/// The same tests for every implementation of the kernel interface (tract style): each result must
/// equal the scalar reference's, which must equal the naive one's.
macro_rules! kernel_suite {
    ($suite:ident, $kind:ident, $($path:tt)+) => {
        mod $suite {
            use super::*;
            use edgevae_firmware::kernels::scalar;
            kernel_adapter!($kind, $($path)+);

            /// The reference, through the front door's check.
            mod reference {
                use super::*;
                pub fn conv2d(p: &ConvParams, x: &[i8], w: &[i8], st: &OutputStage, out: &mut [i8]) -> Result<(), KernelError> {
                    scalar::conv2d(p.check(x, w, st, out)?, Scratch::none())
                }
                pub fn conv_transpose2d(p: &ConvParams, x: &[i8], w: &[i8], st: &OutputStage, out: &mut [i8]) -> Result<(), KernelError> {
                    scalar::conv_transpose2d(p.check_transposed(x, w, st, out)?, Scratch::none())
                }
                pub fn dense(p: &DenseParams, x: &[i8], w: &[i8], st: &OutputStage, out: &mut [i8]) -> Result<(), KernelError> {
                    scalar::dense(p.check(x, w, st, out)?, Scratch::none())
                }
            }

            fn cp(is: Shape, os: Shape, g: ConvGeom, zp: i32) -> ConvParams {
                ConvParams { in_shape: is, out_shape: os, geom: g, input_zp: zp }
            }
            fn dp(n_in: usize, n_out: usize, zp: i32) -> DenseParams {
                DenseParams { n_in, n_out, input_zp: zp }
            }

            fn run_conv(c: &ConvCase, transpose: bool) -> (Vec<i8>, Vec<i8>) {
                let stage = c.p.stage();
                let size = if transpose {
                    k::conv_transpose2d_scratch_size(c.is, c.os, c.g)
                } else {
                    k::conv2d_scratch_size(c.is, c.os, c.g)
                };
                let mut scratch = vec![0xA5u8; size];
                // Outputs poisoned, so a skipped element shows.
                let mut fast = vec![0x5Ai8; c.os.len()];
                let mut reference = vec![0x3Ci8; c.os.len()];
                let f = if transpose { k::conv_transpose2d } else { k::conv2d };
                let s = if transpose { reference::conv_transpose2d } else { reference::conv2d };
                let p = cp(c.is, c.os, c.g, c.zp);
                f(&p, &c.x, &c.w, &stage, &mut fast, Scratch::new(&mut scratch)).unwrap();
                s(&p, &c.x, &c.w, &stage, &mut reference).unwrap();
                if size > 0 {
                    // Short scratch: refused, or (the NEON dispatcher) the reference loop's result.
                    let mut small = vec![0u8; size - 1];
                    let mut short = vec![0x5Ai8; c.os.len()];
                    match f(&p, &c.x, &c.w, &stage, &mut short, Scratch::new(&mut small)) {
                        Ok(()) => assert_eq!(short, reference, "short-scratch fallback"),
                        r => assert_eq!(r, Err(KernelError::ScratchTooSmall)),
                    }
                }
                (fast, reference)
            }

            fn diff(a: &[i8], b: &[i8]) -> Vec<(usize, i8, i8)> {
                a.iter().zip(b).enumerate().filter(|(_, (x, y))| x != y).map(|(i, (x, y))| (i, *x, *y)).collect()
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(200))]

                #[test]
                fn conv2d_matches(c in conv_case(false)) {
                    let (fast, reference) = run_conv(&c, false);
                    let naive = naive_conv(&c.x, c.is, c.zp, &c.w, c.g, &c.p, c.os);
                    prop_assert!(reference == naive, "scalar vs naive differ at {:?}", diff(&reference, &naive));
                    prop_assert!(fast == reference, "path vs scalar differ at {:?}", diff(&fast, &reference));
                }

                #[test]
                fn conv2d_ic1_wide_matches(c in conv_case_ic1_wide()) {
                    let (fast, reference) = run_conv(&c, false);
                    let naive = naive_conv(&c.x, c.is, c.zp, &c.w, c.g, &c.p, c.os);
                    prop_assert!(reference == naive, "scalar vs naive differ at {:?}", diff(&reference, &naive));
                    prop_assert!(fast == reference, "path vs scalar differ at {:?}", diff(&fast, &reference));
                }

                #[test]
                fn conv_transpose2d_matches(c in conv_case(true)) {
                    let (fast, reference) = run_conv(&c, true);
                    let naive = naive_conv_transpose(&c.x, c.is, c.zp, &c.w, c.g, &c.p, c.os);
                    prop_assert!(reference == naive, "scalar vs naive differ at {:?}", diff(&reference, &naive));
                    prop_assert!(fast == reference, "path vs scalar differ at {:?}", diff(&fast, &reference));
                }

                #[test]
                fn dense_matches(c in dense_case()) {
                    let stage = c.p.stage();
                    let mut scratch = vec![0xA5u8; k::dense_scratch_size(c.n_in, c.n_out)];
                    let mut fast = vec![0x5Ai8; c.n_out];
                    let mut reference = vec![0x3Ci8; c.n_out];
                    let p = dp(c.n_in, c.n_out, c.zp);
                    k::dense(&p, &c.x, &c.w, &stage, &mut fast, Scratch::new(&mut scratch)).unwrap();
                    reference::dense(&p, &c.x, &c.w, &stage, &mut reference).unwrap();
                    let naive = naive_dense(&c.x, c.zp, &c.w, c.n_in, c.n_out, &c.p);
                    prop_assert!(reference == naive, "scalar vs naive differ at {:?}", diff(&reference, &naive));
                    prop_assert!(fast == reference, "path vs scalar differ at {:?}", diff(&fast, &reference));
                }

                /// Arbitrary (mostly inconsistent) arguments: an error or a result, never a panic.
                #[test]
                fn never_panics(
                    dims in proptest::collection::vec(0usize..=12, 10),
                    lens in proptest::collection::vec(0usize..=400, 6),
                    zp in -300i32..=300,
                    act in (-200i32..=200, -200i32..=200),
                ) {
                    let is = Shape { h: dims[0], w: dims[1], c: dims[2] };
                    let os = Shape { h: dims[3], w: dims[4], c: dims[5] };
                    let g = ConvGeom { kh: dims[6], kw: dims[7], stride: dims[8] % 4, pad: dims[9] % 4 };
                    let (x, w) = (vec![1i8; lens[0]], vec![-1i8; lens[1]]);
                    let bias = vec![7u8; lens[3]];
                    let mult = vec![0x40u8; lens[3]];
                    let shift = vec![-3i8; lens[4] % 40];
                    let stage = OutputStage {
                        bias: LeI32(&bias), multiplier: LeI32(&mult), shift: &shift,
                        output_zp: zp / 2, act_min: act.0, act_max: act.1,
                    };
                    let mut out = vec![0i8; lens[2]];
                    let mut scratch = vec![0u8; lens[5] * 8];
                    let _ = k::conv2d(&cp(is, os, g, zp), &x, &w, &stage, &mut out, Scratch::new(&mut scratch));
                    let _ = k::conv_transpose2d(&cp(is, os, g, zp), &x, &w, &stage, &mut out, Scratch::new(&mut scratch));
                    let _ = k::dense(&dp(dims[0] * dims[1], dims[2] + dims[3], zp), &x, &w, &stage, &mut out, Scratch::new(&mut scratch));
                    let _ = k::conv2d_scratch_size(is, os, g);
                    let _ = k::conv_transpose2d_scratch_size(is, os, g);
                    let _ = k::dense_scratch_size(lens[0], lens[1]);
                }
            }

            /// The default model's layer shapes, deterministic data (catches what small random
            /// shapes might miss: long rows, many channels).
            #[test]
            fn default_model_layers() {
                let mut r = Rng(0x1234_5678_9abc_def1);
                let layers: [(Shape, Shape, ConvGeom, bool); 4] = [
                    (Shape { h: 28, w: 28, c: 1 }, Shape { h: 14, w: 14, c: 32 }, ConvGeom { kh: 3, kw: 3, stride: 2, pad: 1 }, false),
                    (Shape { h: 14, w: 14, c: 32 }, Shape { h: 7, w: 7, c: 64 }, ConvGeom { kh: 3, kw: 3, stride: 2, pad: 1 }, false),
                    (Shape { h: 7, w: 7, c: 64 }, Shape { h: 14, w: 14, c: 32 }, ConvGeom { kh: 4, kw: 4, stride: 2, pad: 1 }, true),
                    (Shape { h: 14, w: 14, c: 32 }, Shape { h: 28, w: 28, c: 1 }, ConvGeom { kh: 4, kw: 4, stride: 2, pad: 1 }, true),
                ];
                for (is, os, g, transpose) in layers {
                    let c = ConvCase {
                        is, os, g,
                        zp: r.range(-128, 127) as i32,
                        x: r.i8s(is.len()),
                        w: r.i8s(os.c * g.kh * g.kw * is.c),
                        p: r.params(os.c, g.kh * g.kw * is.c),
                    };
                    let (fast, reference) = run_conv(&c, transpose);
                    assert!(fast == reference, "{is:?}->{os:?}: differ at {:?}", diff(&fast, &reference));
                }
                for (n_in, n_out) in [(3136, 16), (16, 3136)] {
                    let (x, w, p, zp) = (r.i8s(n_in), r.i8s(n_in * n_out), r.params(n_out, n_in), r.range(-128, 127) as i32);
                    let mut scratch = vec![0u8; k::dense_scratch_size(n_in, n_out)];
                    let (mut fast, mut reference) = (vec![0i8; n_out], vec![1i8; n_out]);
                    let d = dp(n_in, n_out, zp);
                    k::dense(&d, &x, &w, &p.stage(), &mut fast, Scratch::new(&mut scratch)).unwrap();
                    reference::dense(&d, &x, &w, &p.stage(), &mut reference).unwrap();
                    assert!(fast == reference, "dense {n_in}->{n_out}: differ at {:?}", diff(&fast, &reference));
                }
            }

            #[test]
            fn bad_arguments_are_errors() {
                let is = Shape { h: 5, w: 5, c: 3 };
                let os = Shape { h: 3, w: 3, c: 2 };
                let g = ConvGeom { kh: 3, kw: 3, stride: 2, pad: 1 };
                let x = vec![0i8; is.len()];
                let w = vec![1i8; 2 * 9 * 3];
                let p = Rng(9).params(2, 27);
                let stage = p.stage();
                let mut out = vec![0i8; os.len()];
                let mut scratch = vec![0u8; k::conv2d_scratch_size(is, os, g)];
                let conv = |x: &[i8], is, zp, w: &[i8], g, stage: &OutputStage, out: &mut [i8], os, scratch: &mut [u8]| {
                    k::conv2d(&cp(is, os, g, zp), x, w, stage, out, Scratch::new(scratch))
                };
                assert_eq!(conv(&x, is, 0, &w, g, &stage, &mut out, os, &mut scratch), Ok(()));
                assert_eq!(conv(&x[1..], is, 0, &w, g, &stage, &mut out, os, &mut scratch), Err(KernelError::BufferTooSmall));
                assert_eq!(conv(&x, is, 0, &w[1..], g, &stage, &mut out, os, &mut scratch), Err(KernelError::BufferTooSmall));
                assert_eq!(conv(&x, is, 0, &w, g, &stage, &mut out[1..], os, &mut scratch), Err(KernelError::BufferTooSmall));
                assert_eq!(conv(&x, is, 0, &w, g, &stage, &mut out, Shape { h: 2, ..os }, &mut scratch), Err(KernelError::ShapeMismatch));
                assert_eq!(conv(&x, is, 0, &w, ConvGeom { stride: 0, ..g }, &stage, &mut out, os, &mut scratch), Err(KernelError::BadParams));
                assert_eq!(conv(&x, is, 0, &w, ConvGeom { kh: 0, ..g }, &stage, &mut out, os, &mut scratch), Err(KernelError::BadParams));
                assert_eq!(conv(&x, is, 128, &w, g, &stage, &mut out, os, &mut scratch), Err(KernelError::BadParams));
                assert_eq!(conv(&x, Shape { h: 1, w: 1, c: 3 }, 0, &w, ConvGeom { kh: 5, ..g }, &stage, &mut out, os, &mut scratch), Err(KernelError::ShapeMismatch));
                let short = OutputStage { shift: &p.shift[..1], ..p.stage() };
                assert_eq!(conv(&x, is, 0, &w, g, &short, &mut out, os, &mut scratch), Err(KernelError::BadParams));
                let short = OutputStage { bias: LeI32(&p.bias[..7]), ..p.stage() };
                assert_eq!(conv(&x, is, 0, &w, g, &short, &mut out, os, &mut scratch), Err(KernelError::BadParams));
                let bad_shift = [31i8, 0];
                let bad = OutputStage { shift: &bad_shift, ..p.stage() };
                assert_eq!(conv(&x, is, 0, &w, g, &bad, &mut out, os, &mut scratch), Err(KernelError::BadParams));
                let bad = OutputStage { act_min: 5, act_max: 4, ..p.stage() };
                assert_eq!(conv(&x, is, 0, &w, g, &bad, &mut out, os, &mut scratch), Err(KernelError::BadParams));
                let bad = OutputStage { output_zp: -129, ..p.stage() };
                assert_eq!(conv(&x, is, 0, &w, g, &bad, &mut out, os, &mut scratch), Err(KernelError::BadParams));

                // Transposed: 3x3 -> 5x5 with k3 s2 p1.
                let (tis, tos) = (Shape { h: 3, w: 3, c: 3 }, Shape { h: 5, w: 5, c: 2 });
                let mut tout = vec![0i8; tos.len()];
                let mut ts = vec![0u8; k::conv_transpose2d_scratch_size(tis, tos, g)];
                assert_eq!(k::conv_transpose2d(&cp(tis, tos, g, 0), &x, &w, &stage, &mut tout, Scratch::new(&mut ts)), Ok(()));
                assert_eq!(k::conv_transpose2d(&cp(tis, Shape { w: 6, ..tos }, g, 0), &x, &w, &stage, &mut tout, Scratch::new(&mut ts)), Err(KernelError::ShapeMismatch));
                assert_eq!(k::conv_transpose2d(&cp(tis, tos, g, 0), &x[..26], &w, &stage, &mut tout, Scratch::new(&mut ts)), Err(KernelError::BufferTooSmall));
                assert_eq!(k::conv_transpose2d(&cp(tis, tos, g, 0), &x, &w, &stage, &mut tout[..49], Scratch::new(&mut ts)), Err(KernelError::BufferTooSmall));

                // Dense.
                let mut ds = vec![0u8; k::dense_scratch_size(27, 2)];
                assert_eq!(k::dense(&dp(27, 2, 0), &x, &w, &stage, &mut out, Scratch::new(&mut ds)), Ok(()));
                assert_eq!(k::dense(&dp(27, 2, 0), &x[..26], &w, &stage, &mut out, Scratch::new(&mut ds)), Err(KernelError::BufferTooSmall));
                assert_eq!(k::dense(&dp(27, 2, 0), &x, &w[..53], &stage, &mut out, Scratch::new(&mut ds)), Err(KernelError::BufferTooSmall));
                assert_eq!(k::dense(&dp(27, 2, 0), &x, &w, &stage, &mut out[..1], Scratch::new(&mut ds)), Err(KernelError::BufferTooSmall));
                assert_eq!(k::dense(&dp(27, 2, -129), &x, &w, &stage, &mut out, Scratch::new(&mut ds)), Err(KernelError::BadParams));
                assert_eq!(k::dense(&dp(usize::MAX, 2, 0), &x, &w, &stage, &mut out, Scratch::new(&mut ds)), Err(KernelError::ShapeMismatch));
                if !ds.is_empty() {
                    assert_eq!(k::dense(&dp(27, 2, 0), &x, &w, &stage, &mut out, Scratch::new(&mut ds[1..])), Err(KernelError::ScratchTooSmall));
                }
            }
        }
    };
}

/// `k`: the implementation under test with the front door's signatures. `front`: the front door
/// itself; `path`: a path module (which takes checked calls), behind the front door's check.
macro_rules! kernel_adapter {
    (front, $($path:tt)+) => {
        use $($path)+ as k;
    };
    (path, $($path:tt)+) => {
        mod k {
            use super::*;
            use $($path)+ as path;
            pub use path::{conv2d_scratch_size, conv_transpose2d_scratch_size, dense_scratch_size};
            pub fn conv2d(p: &ConvParams, x: &[i8], w: &[i8], st: &OutputStage, out: &mut [i8], s: Scratch<'_>) -> Result<(), KernelError> {
                path::conv2d(p.check(x, w, st, out)?, s)
            }
            pub fn conv_transpose2d(p: &ConvParams, x: &[i8], w: &[i8], st: &OutputStage, out: &mut [i8], s: Scratch<'_>) -> Result<(), KernelError> {
                path::conv_transpose2d(p.check_transposed(x, w, st, out)?, s)
            }
            pub fn dense(p: &DenseParams, x: &[i8], w: &[i8], st: &OutputStage, out: &mut [i8], s: Scratch<'_>) -> Result<(), KernelError> {
                path::dense(p.check(x, w, st, out)?, s)
            }
        }
    };
}

kernel_suite!(scalar_path, path, edgevae_firmware::kernels::scalar);
kernel_suite!(dispatched_path, front, edgevae_firmware::kernels);
#[cfg(target_arch = "aarch64")]
kernel_suite!(neon_path, path, edgevae_firmware::kernels::neon);
#[cfg(target_arch = "aarch64")]
kernel_suite!(
    neon_plain_path,
    path,
    edgevae_firmware::kernels::neon::plain
);
#[cfg(target_arch = "aarch64")]
kernel_suite!(neon_dot_path, path, super::neon_dot);

/// The SDOT kernels behind the suite's safe signatures (shared with `engine.rs`).
#[cfg(target_arch = "aarch64")]
#[path = "common/neon_dot.rs"]
mod neon_dot;

// ---------------------------------------------------------------- requantisation and small ops

const ACC_EDGES: [i32; 9] = [
    i32::MIN,
    i32::MIN + 1,
    -65536,
    -1,
    0,
    1,
    65535,
    i32::MAX - 1,
    i32::MAX,
];
const MULT_EDGES: [i32; 7] = [
    0,
    1,
    1 << 30,
    (1 << 30) + 1,
    i32::MAX - 1,
    i32::MAX,
    i32::MIN,
];

#[test]
fn requantize_edges() {
    for &acc in &ACC_EDGES {
        for &m in &MULT_EDGES {
            for shift in -31..=30 {
                assert_eq!(
                    kernels::requantize(acc, m, shift),
                    naive_requant(acc, m, shift),
                    "acc {acc} mult {m} shift {shift}"
                );
            }
        }
    }
    // The single saturating case of the doubling high multiply.
    assert_eq!(kernels::requantize(i32::MIN, i32::MIN, 0), i32::MAX);
    // High mul rounds half up (3 * 2^30 * 2 / 2^32 = 1.5 -> 2; -2.5 -> -2), then the right shift
    // rounds half away from zero (2/2 = 1, 3/2 -> 2, -3/2 -> -2).
    assert_eq!(kernels::requantize(3, 1 << 30, -1), 1);
    assert_eq!(kernels::requantize(6, 1 << 30, -1), 2);
    assert_eq!(kernels::requantize(-6, 1 << 30, -1), -2);
    assert_eq!(kernels::requantize(-5, 1 << 30, 0), -2);
    // Out-of-range shifts never panic.
    for shift in [i32::MIN, -1000, -32, 31, 32, 1000, i32::MAX] {
        for &acc in &ACC_EDGES {
            let _ = kernels::requantize(acc, i32::MAX, shift);
        }
    }
}

proptest! {
    #[test]
    fn requantize_matches_naive(acc in any::<i32>(), m in any::<i32>(), shift in -31i32..=30) {
        prop_assert_eq!(kernels::requantize(acc, m, shift), naive_requant(acc, m, shift));
    }

    #[test]
    fn requantize_q31_matches_naive(acc in -(1i32 << 24)..(1 << 24), m in (1i32 << 30)..=i32::MAX, shift in -20i32..=4) {
        prop_assert_eq!(kernels::requantize(acc, m, shift), naive_requant(acc, m, shift));
    }

    #[test]
    fn lut_and_pixels(buf in proptest::collection::vec(any::<i8>(), 0..300), seed in any::<u64>()) {
        let mut r = Rng(seed | 1);
        let table: [u8; 256] = core::array::from_fn(|_| r.next() as u8);
        let mut b = buf.clone();
        kernels::apply_lut(&mut b, &table);
        for (o, i) in b.iter().zip(&buf) {
            prop_assert_eq!(*o as u8, table[(*i as i32 + 128) as usize]);
        }
        let pixels: Vec<u8> = buf.iter().map(|&v| v as u8).collect();
        let mut q = vec![0i8; pixels.len() + 3];
        kernels::quantize_pixels(&pixels, &mut q).unwrap();
        for (o, &p) in q.iter().zip(&pixels) {
            prop_assert_eq!(*o as i32, p as i32 - 128);
        }
        if !pixels.is_empty() {
            prop_assert_eq!(kernels::quantize_pixels(&pixels, &mut q[..pixels.len() - 1]), Err(KernelError::BufferTooSmall));
        }
    }
}

#[test]
fn le_i32_reads_unaligned_and_never_panics() {
    let bytes = [0xFFu8, 0x01, 0x02, 0x03, 0x04, 0x80, 0x00];
    let v = LeI32(&bytes[1..]);
    assert_eq!(v.len(), 1);
    assert_eq!(v.get(0), 0x0403_0201);
    assert_eq!(v.get(1), 0);
    assert_eq!(v.get(usize::MAX), 0);
    assert_eq!(LeI32(&[]).get(0), 0);
}

#[test]
fn shape_len_saturates() {
    assert_eq!(Shape { h: 28, w: 28, c: 1 }.len(), 784);
    assert_eq!(
        Shape {
            h: usize::MAX,
            w: 2,
            c: 1
        }
        .len(),
        usize::MAX
    );
}
