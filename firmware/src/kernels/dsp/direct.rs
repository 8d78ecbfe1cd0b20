//! Convolution and transposed convolution without scratch, for layers whose scratch does not fit
//! the RAM budget (`dsp_scratch::ARENA_BUDGET`): every output pixel lists its input runs (a kernel
//! row of in-bounds taps is one contiguous run of HWC input and of `[ky][kx][ic]` weights; a
//! transposed tap is a run of `ic`), then each four output channels are one SMLAD dot per run
//! with pixels and weights widened in registers ([`asm::dot4_i8`]; the last channels in pairs,
//! [`asm::dot2_i8`]).

use super::super::{ConvGeom, OutputStage, Shape};
use super::{asm, dot2_tail, put_row, store_pair, Rq};

pub(super) use crate::kernels::dsp_scratch::direct_supported as supported;
use crate::kernels::dsp_scratch::{direct_channels, direct_run_max, DIRECT_MAX_RUNS as MAX_RUNS};

/// A run: input offset, offset in one output channel's kernel, length (elements).
#[derive(Clone, Copy, Default)]
struct Run {
    x: usize,
    w: usize,
    len: usize,
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
    scratch: &mut [u8],
) {
    let Shape { h, w, c: ic } = in_shape;
    let ConvGeom { kh, kw, pad, .. } = geom;
    let s = geom.stride.max(1);
    let oc_n = out_shape.c;
    let k_len = kh * kw * ic;
    let zz = (input_zp as u16 as u32).wrapping_mul(0x0001_0001);
    let mut runs = [Run::default(); MAX_RUNS];
    // With room for a block of sums and one widened run: pixels widened once a run, not once a
    // run and channel quad.
    let nch = direct_channels(
        direct_run_max(in_shape, geom, transpose),
        oc_n,
        scratch.len(),
    );
    let mut widened = match nch {
        0 => None,
        _ => {
            let words = super::scratch_words(scratch);
            let (sums, xw) = words.split_at_mut(nch.min(words.len()));
            Some((bytemuck::cast_slice_mut::<u32, i32>(sums), xw))
        }
    };
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
            if let Some((sums, xw)) = widened.as_mut() {
                let ctx = Widened {
                    input,
                    input_zp,
                    weights,
                    k_len,
                    stage,
                };
                ctx.pixel(runs, sums, xw, output, base, oc_n);
                continue;
            }
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

/// The pieces of a call the widened-run variant reads.
struct Widened<'a, 'b> {
    input: &'a [i8],
    input_zp: i32,
    weights: &'a [i8],
    k_len: usize,
    stage: &'a OutputStage<'b>,
}

impl Widened<'_, '_> {
    /// One output pixel: channels in blocks of `sums.len()`; per block, each run is widened into
    /// `xw` once (`x - zp`, groups of four) and every channel quad adds its dot
    /// ([`asm::dot4_w16`]), the last channels in pairs ([`asm::dense_2`]); the elements of a run
    /// past its last group of four in Rust.
    fn pixel(
        &self,
        runs: &[Run],
        sums: &mut [i32],
        xw: &mut [u32],
        output: &mut [i8],
        base: usize,
        oc_n: usize,
    ) {
        let nch = sums.len();
        if nch == 0 {
            return;
        }
        let row = |oc: usize, r: &Run| {
            let at = oc * self.k_len + r.w;
            self.weights.get(at..at + r.len).unwrap_or(&[])
        };
        for c0 in (0..oc_n).step_by(nch) {
            let cn = nch.min(oc_n - c0);
            let Some(sums) = sums.get_mut(..cn) else {
                return;
            };
            for (i, a) in sums.iter_mut().enumerate() {
                *a = self.stage.bias.get(c0 + i);
            }
            for r in runs {
                let Some(x) = self.input.get(r.x..r.x + r.len) else {
                    continue;
                };
                let groups = r.len / 4;
                let head = x.get(..4 * groups).unwrap_or(&[]);
                put_row::<1>(xw, 0, 0, head, self.input_zp);
                let xw = &*xw;
                let quads = if groups > 0 && xw.len() >= 2 * groups {
                    cn / 4
                } else {
                    0
                };
                for (q, acc) in sums.chunks_exact_mut(4).take(quads).enumerate() {
                    let at = (c0 + 4 * q) * self.k_len + r.w;
                    // The four rows: from `at`, `k_len` bytes apart, `r.len` bytes each.
                    let Some(rows) = self.weights.get(at..at + 3 * self.k_len + r.len) else {
                        continue;
                    };
                    let job = asm::Dot4W16 {
                        x: xw.as_ptr(),
                        w: rows.as_ptr(),
                        stride: self.k_len,
                        groups: groups as u32,
                        acc: acc.as_mut_ptr(),
                    };
                    // SAFETY: `xw` holds 2·groups words (checked above), the four weight rows of
                    // 4·groups ≤ r.len bytes lie inside `rows`, `acc` is four aligned words.
                    unsafe { asm::dot4_w16(&job) };
                }
                for i in (4 * quads..cn).step_by(2) {
                    let j = (i + 1).min(cn - 1);
                    let (w0, w1) = (row(c0 + i, r), row(c0 + j, r));
                    let acc = [
                        sums.get(i).copied().unwrap_or(0),
                        sums.get(j).copied().unwrap_or(0),
                    ];
                    let [a0, a1] = asm::dense_2(w0, w1, xw, groups, acc);
                    if let Some(s) = sums.get_mut(i) {
                        *s = a0;
                    }
                    if j != i {
                        if let Some(s) = sums.get_mut(j) {
                            *s = a1;
                        }
                    }
                }
                if r.len > 4 * groups {
                    for (i, a) in sums.iter_mut().enumerate() {
                        let w = row(c0 + i, r);
                        for (&x, &w) in x.iter().zip(w).skip(4 * groups) {
                            *a = a.wrapping_add(w as i32 * (x as i32 - self.input_zp));
                        }
                    }
                }
            }
            for (i, &a) in sums.iter().enumerate() {
                if let Some(o) = output.get_mut(base + c0 + i) {
                    *o = Rq::new(self.stage, c0 + i).apply(a, self.stage);
                }
            }
        }
    }
}
