//! Convolution and transposed convolution without scratch, for layers whose scratch does not fit
//! the RAM budget (`dsp_scratch::ARENA_BUDGET`): every output pixel lists its input runs (a kernel
//! row of in-bounds taps is one contiguous run of HWC input and of `[ky][kx][ic]` weights; a
//! transposed tap is a run of `ic`), then each four output channels are one SMLAD dot per run
//! with pixels and weights widened in registers ([`asm::dot4_i8`]; the last channels in pairs,
//! [`asm::dot2_i8`]).

use super::super::{ConvGeom, OutputStage, Shape};
use super::{asm, dot2_tail, store_pair};

/// Runs one output pixel may have; shapes with more take the reference loop.
const MAX_RUNS: usize = 32;

/// A run: input offset, offset in one output channel's kernel, length (elements).
#[derive(Clone, Copy, Default)]
struct Run {
    x: usize,
    w: usize,
    len: usize,
}

/// Whether [`conv_direct`] handles this geometry (at most [`MAX_RUNS`] runs a pixel).
pub(super) fn supported(geom: ConvGeom, transpose: bool) -> bool {
    let runs = if transpose {
        let s = geom.stride.max(1);
        geom.kh.div_ceil(s).saturating_mul(geom.kw.div_ceil(s))
    } else {
        geom.kh
    };
    runs <= MAX_RUNS
}

/// See [`crate::kernels::conv2d`] / [`crate::kernels::conv_transpose2d`]; the caller has validated
/// the call and checked [`supported`].
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_direct(
    input: &[i8],
    in_shape: Shape,
    input_zp: i32,
    weights: &[i8],
    geom: ConvGeom,
    stage: &OutputStage,
    output: &mut [i8],
    out_shape: Shape,
    transpose: bool,
) {
    let Shape { h, w, c: ic } = in_shape;
    let ConvGeom { kh, kw, pad, .. } = geom;
    let s = geom.stride.max(1);
    let oc_n = out_shape.c;
    let k_len = kh * kw * ic;
    let zz = (input_zp as u16 as u32).wrapping_mul(0x0001_0001);
    let mut runs = [Run::default(); MAX_RUNS];
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            let mut n = 0;
            let mut push = |r: Run| {
                if let Some(slot) = runs.get_mut(n) {
                    *slot = r;
                    n += 1;
                }
            };
            if transpose {
                // oy = iy·s - pad + ky: the taps ky ≡ oy + pad (mod s) reach this pixel.
                let (ty, tx) = (oy + pad, ox + pad);
                for ky in (ty % s..kh.min(ty + 1)).step_by(s) {
                    let iy = (ty - ky) / s;
                    for kx in (tx % s..kw.min(tx + 1)).step_by(s) {
                        let ix = (tx - kx) / s;
                        if iy < h && ix < w {
                            let (x, w) = ((iy * w + ix) * ic, (ky * kw + kx) * ic);
                            push(Run { x, w, len: ic });
                        }
                    }
                }
            } else {
                // ix = ox·s + kx - pad in [0, w): the in-bounds taps of a row are kx_lo..kx_hi.
                let bx = ox * s;
                let kx_lo = pad.saturating_sub(bx);
                let kx_hi = kw.min((w + pad).saturating_sub(bx));
                for ky in 0..kh {
                    let iy = (oy * s + ky).checked_sub(pad).filter(|&y| y < h);
                    if let (Some(iy), true) = (iy, kx_lo < kx_hi) {
                        let ix = bx + kx_lo - pad;
                        push(Run {
                            x: (iy * w + ix) * ic,
                            w: (ky * kw + kx_lo) * ic,
                            len: (kx_hi - kx_lo) * ic,
                        });
                    }
                }
            }
            let runs = runs.get(..n).unwrap_or(&[]);
            let base = (oy * out_shape.w + ox) * oc_n;
            // Channels four at a time, the rest in pairs.
            let quads = oc_n / 4;
            for q in 0..quads {
                let oc0 = 4 * q;
                let mut job = asm::Dot4 {
                    x: input.as_ptr(),
                    w: weights.as_ptr(),
                    stride: k_len,
                    words: 0,
                    zz,
                    acc: [0; 4],
                };
                for (a, oc) in job.acc.iter_mut().zip(oc0..) {
                    *a = stage.bias.get(oc);
                }
                for r in runs {
                    let x = input.get(r.x..r.x + r.len).unwrap_or(&[]);
                    let row = |j: usize| {
                        let at = (oc0 + j) * k_len + r.w;
                        weights.get(at..at + r.len).unwrap_or(&[])
                    };
                    let w = [row(0), row(1), row(2), row(3)];
                    let main = r.len / 4;
                    if main > 0 && x.len() == r.len && w.iter().all(|w| w.len() == r.len) {
                        job.x = x.as_ptr();
                        job.w = w[0].as_ptr();
                        job.words = main as u32;
                        // SAFETY: `x` and the four rows (`k_len` bytes apart, from one weight
                        // slice) hold `r.len ≥ 4 · main` bytes each, checked just above.
                        unsafe { asm::dot4_i8(&mut job) };
                    }
                    let [a0, a1, a2, a3] = job.acc;
                    let [a0, a1] = dot2_tail(x, w[0], w[1], 4 * main, input_zp, [a0, a1]);
                    let [a2, a3] = dot2_tail(x, w[2], w[3], 4 * main, input_zp, [a2, a3]);
                    job.acc = [a0, a1, a2, a3];
                }
                let [a0, a1, a2, a3] = job.acc;
                store_pair(output, base, [oc0, oc0 + 1], [a0, a1], stage);
                store_pair(output, base, [oc0 + 2, oc0 + 3], [a2, a3], stage);
            }
            for oc0 in (4 * quads..oc_n).step_by(2) {
                let oc1 = (oc0 + 1).min(oc_n - 1);
                let (k0, k1) = (oc0 * k_len, oc1 * k_len);
                let mut acc = [stage.bias.get(oc0), stage.bias.get(oc1)];
                for r in runs {
                    let x = input.get(r.x..r.x + r.len).unwrap_or(&[]);
                    let w0 = weights.get(k0 + r.w..k0 + r.w + r.len).unwrap_or(&[]);
                    let w1 = weights.get(k1 + r.w..k1 + r.w + r.len).unwrap_or(&[]);
                    let main = r.len / 4;
                    if oc1 == oc0 {
                        // A last single channel: half the work of a pair with itself.
                        acc[0] = asm::dot1_i8(x, w0, main, zz, acc[0]);
                    } else {
                        acc = asm::dot2_i8(x, w0, w1, main, zz, acc);
                    }
                    acc = dot2_tail(x, w0, w1, 4 * main, input_zp, acc);
                }
                store_pair(output, base, [oc0, oc1], acc, stage);
            }
        }
    }
}
