//! Transposed convolutions by output phase ("sub-pixel"), for kernels that are a multiple of
//! their stride (the synthesis transforms' 4×4/2).
//!
//! An output pixel `o = s·a + φ` of phase `φ` receives the kernel taps `k = r + s·τ`
//! (`r = (φ + p) mod s`, `τ < k/s`), each reading input `a + q − τ` (`q = (φ + p) div s`): per
//! phase, a stride-1 convolution with `k/s` taps per axis. The input is copied once,
//! channel-major, onto a zero-padded grid; each tap is then one GEMM that reads that copy in
//! place at a shifted offset (an implicit GEMM), accumulating into the phase's outputs. The
//! column path of the parent module instead writes `16·co` values per input pixel and adds
//! them back with col2im, a memory-bound pass over a buffer many times the output. The
//! gradients are the same GEMMs transposed: the input gradient reads each phase's output
//! gradient (zero off the phase's pixels) shifted the other way, the weight gradient is one
//! long-`k` product per tap.
//!
//! Outputs computed at grid positions between images and rows are discarded; reads there stay
//! inside the padded copy (its margin), so no index is ever out of bounds.

use rayon::prelude::*;

use super::kernels::{product_into, product_oriented, Geom, Mat};

/// Layers with fewer input or output channels keep the column path: per tap, a GEMM of so few
/// rows or so short a reduction is memory-bound, where the column matrix is small.
const MIN_CHANNELS: usize = 8;

/// The phase path computes the outputs of the grid's padding too: `(ih + 2)(iw + 2)/(ih·iw)`
/// times the work for a 4×4/2 kernel. It pays where the column matrix (`co·kh·kw·n·ih·iw`
/// values) is too large for the caches and the grid's excess small. Timed on the photo
/// codec's synthesis layers (2-core EPYC, best of 15, forward / backward in ms): 96→64 from
/// 32×32, 8 images, 11 / 21 by phase against 22 / 35 by columns (8.4 M column values, grid
/// 1.13×), and from 16×16, 32 images, 14 / 26 against 26 / 36 (8.4 M, 1.27×); 128→96 from
/// 16×16, 8 images, 5.7 / 11.1 against 5.5 / 10.4 (3.1 M, 1.27×); 96→128 from 8×8,
/// 2.2 / 3.9 against 1.6 / 2.8 (1 M, 1.56×).
const MIN_COLUMN_VALUES: usize = 1 << 22;
/// The largest grid, relative to the input, taken by phase (in tenths).
const MAX_GRID_TENTHS: usize = 13;

/// One axis of a transposed convolution: input length `inp`, output length `out`, stride `s`,
/// `t` taps per phase (kernel `s·t`), padding `p`. On the grid an input `i` sits at `i + lo`
/// and a phase's output `a` at `a + lo`; the grid is `len` long.
#[derive(Clone, Copy, Debug)]
struct Axis {
    out: usize,
    s: usize,
    t: usize,
    p: usize,
    lo: usize,
    len: usize,
}

impl Axis {
    fn new(inp: usize, out: usize, s: usize, k: usize, p: usize) -> Option<Axis> {
        if s == 0 || k == 0 || !k.is_multiple_of(s) {
            return None;
        }
        let t = k / s;
        let mut a = Axis {
            out,
            s,
            t,
            p,
            // reads `a + q − τ ≥ −lo` for a ≥ 0, τ < t; q is smallest at φ = 0
            lo: (t - 1).saturating_sub(p / s),
            len: 0,
        };
        // and `a + q − τ < inp + hi` for a < count(φ)
        let hi = (0..s)
            .map(|phi| (a.count(phi) + a.q(phi)).saturating_sub(inp))
            .max()
            .unwrap_or(0);
        a.len = a.lo + inp + hi;
        Some(a)
    }

    fn q(&self, phi: usize) -> usize {
        (phi + self.p) / self.s
    }

    /// Outputs of phase `φ`: `o = s·a + φ < out`.
    fn count(&self, phi: usize) -> usize {
        self.out.saturating_sub(phi).div_ceil(self.s)
    }

    /// Tap `τ` of phase `φ`: its kernel index and the shift `q − τ` of the input it reads.
    fn tap(&self, phi: usize, tau: usize) -> (usize, isize) {
        (
            (phi + self.p) % self.s + self.s * tau,
            self.q(phi) as isize - tau as isize,
        )
    }

    /// The largest shift in either direction.
    fn reach(&self) -> usize {
        self.q(self.s - 1).max(self.t)
    }
}

/// A transposed convolution of `x [n, ci, ih, iw]` by `w [ci, co, kh, kw]` laid out by phase:
/// each channel's stretch of the grid is `margin + n·plane + margin` values.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    n: usize,
    ci: usize,
    co: usize,
    ih: usize,
    iw: usize,
    y: Axis,
    x: Axis,
    margin: usize,
}

impl Plan {
    /// The plan for a transposed convolution whose input gradient `g` describes (its image is
    /// the output) with `ci` input channels, if its kernel is a multiple of its stride and it
    /// is large enough to gain from it ([`MIN_COLUMN_VALUES`]).
    pub(super) fn new(g: &Geom, ci: usize) -> Option<Plan> {
        if ci < MIN_CHANNELS || g.c < MIN_CHANNELS {
            return None;
        }
        let columns = g.c * g.kh * g.kw * g.n * g.oh * g.ow;
        let plan = Plan::any(g, ci)?;
        let small_grid = 10 * plan.plane() <= MAX_GRID_TENTHS * g.oh * g.ow;
        (columns >= MIN_COLUMN_VALUES && small_grid).then_some(plan)
    }

    /// [`Plan::new`] whatever the channel counts.
    fn any(g: &Geom, ci: usize) -> Option<Plan> {
        if g.n * ci * g.c * g.oh * g.ow * g.h * g.w == 0 {
            return None;
        }
        let y = Axis::new(g.oh, g.h, g.sh, g.kh, g.pt)?;
        let x = Axis::new(g.ow, g.w, g.sw, g.kw, g.pl)?;
        Some(Plan {
            n: g.n,
            ci,
            co: g.c,
            ih: g.oh,
            iw: g.ow,
            y,
            x,
            margin: y.reach() * x.len + x.reach(),
        })
    }

    fn plane(&self) -> usize {
        self.y.len * self.x.len
    }

    /// One channel's stretch.
    fn stride(&self) -> usize {
        self.n * self.plane() + 2 * self.margin
    }

    /// Where grid position `(b, gy, gx)` is in a channel's stretch.
    fn at(&self, b: usize, gy: usize, gx: usize) -> usize {
        self.margin + b * self.plane() + gy * self.x.len + gx
    }

    /// The offset of a read shifted by `(dy, dx)` grid positions.
    fn shift(&self, dy: isize, dx: isize) -> isize {
        dy * self.x.len as isize + dx
    }

    /// The grid columns `[c0, c1)` from the first to the last output of phase `(py, px)`.
    fn span(&self, py: usize, px: usize) -> (usize, usize) {
        let (ay, ax) = (self.y.count(py), self.x.count(px));
        if ay == 0 || ax == 0 {
            return (0, 0);
        }
        let (y, x) = (self.y.lo, self.x.lo);
        (
            self.at(0, y, x),
            self.at(self.n - 1, y + ay - 1, x + ax - 1) + 1,
        )
    }

    /// The grid columns from the first to the last input pixel.
    fn input_span(&self) -> (usize, usize) {
        let (y, x) = (self.y.lo, self.x.lo);
        (
            self.at(0, y, x),
            self.at(self.n - 1, y + self.ih - 1, x + self.iw - 1) + 1,
        )
    }

    /// The phases `(py, px)` that have outputs (an output shorter than the stride leaves
    /// some without), with their grid columns `[c0, c1)`.
    fn phases(&self) -> Vec<(usize, usize, usize, usize)> {
        let all = (0..self.y.s).flat_map(|py| (0..self.x.s).map(move |px| (py, px)));
        all.filter_map(|(py, px)| {
            let (c0, c1) = self.span(py, px);
            (c1 > c0).then_some((py, px, c0, c1))
        })
        .collect()
    }

    /// The taps of phase `(py, px)`: `(ky, kx, shift)`.
    fn taps(&self, py: usize, px: usize) -> impl Iterator<Item = (usize, usize, isize)> + '_ {
        let (y, x) = (self.y, self.x);
        (0..y.t).flat_map(move |ty| {
            (0..x.t).map(move |tx| {
                let ((ky, dy), (kx, dx)) = (y.tap(py, ty), x.tap(px, tx));
                (ky, kx, self.shift(dy, dx))
            })
        })
    }

    /// `x [n, ci, ih, iw]` on the grid, channel-major: `[ci, stride]`.
    fn input_grid(&self, x: &[f32]) -> Vec<f32> {
        let (c, hw, stride) = (self.ci, self.ih * self.iw, self.stride());
        let mut grid = vec![0.0f32; c * stride];
        grid.par_chunks_mut(stride).enumerate().for_each(|(ch, g)| {
            for b in 0..self.n {
                let plane = &x[(b * c + ch) * hw..][..hw];
                for (iy, row) in plane.chunks_exact(self.iw).enumerate() {
                    let at = self.at(b, iy + self.y.lo, self.x.lo);
                    g[at..at + self.iw].copy_from_slice(row);
                }
            }
        });
        grid
    }

    /// The outputs of phase `(py, px)` of `y [n, co, oh, ow]` on the grid: `[co, stride]`,
    /// zero everywhere else.
    fn phase_grid(&self, y: &[f32], py: usize, px: usize) -> Vec<f32> {
        let (oh, ow, stride) = (self.y.out, self.x.out, self.stride());
        let (ay, ax) = (self.y.count(py), self.x.count(px));
        let mut grid = vec![0.0f32; self.co * stride];
        grid.par_chunks_mut(stride).enumerate().for_each(|(c, g)| {
            for b in 0..self.n {
                let plane = &y[(b * self.co + c) * oh * ow..][..oh * ow];
                for a in 0..ay {
                    let src = plane[(self.y.s * a + py) * ow + px..].iter();
                    let at = self.at(b, a + self.y.lo, self.x.lo);
                    for (d, v) in g[at..at + ax].iter_mut().zip(src.step_by(self.x.s)) {
                        *d = *v;
                    }
                }
            }
        });
        grid
    }

    /// The weight `[ci, co, kh, kw]` at tap `(ky, kx)` as `[co, ci]`, or as `[ci, co]` when
    /// `by_input`.
    fn weight_tap<'a>(&self, w: &'a [f32], ky: usize, kx: usize, by_input: bool) -> Mat<'a> {
        let taps = self.y.s * self.y.t * self.x.s * self.x.t;
        let (per_co, per_ci) = (taps as isize, (self.co * taps) as isize);
        let (rs, cs) = match by_input {
            true => (per_ci, per_co),
            false => (per_co, per_ci),
        };
        Mat {
            data: &w[ky * self.x.s * self.x.t + kx..],
            rs,
            cs,
        }
    }
}

/// `[rows, stride]` grid rows read from column `c` on, `stride` apart.
fn grid_at(grid: &[f32], stride: usize, c: isize) -> Mat<'_> {
    Mat {
        data: &grid[c as usize..],
        rs: stride as isize,
        cs: 1,
    }
}

/// Fills a column-major `[e, rows]` buffer in column blocks, one per thread:
/// `f(first column, block)`.
fn by_columns(dst: &mut [f32], rows: usize, e: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let per = e.div_ceil(rayon::current_num_threads().max(1)).max(1);
    dst.par_chunks_mut(per * rows)
        .enumerate()
        .for_each(|(i, block)| f(i * per, block));
}

/// The transposed convolution of `x` by `w`: `[n, co, oh, ow]`.
pub(super) fn forward(x: &[f32], w: &[f32], p: &Plan) -> Vec<f32> {
    let (oh, ow, stride) = (p.y.out, p.x.out, p.stride());
    let xg = p.input_grid(x);
    let mut y = vec![0.0f32; p.n * p.co * oh * ow];
    for (py, px, c0, c1) in p.phases() {
        // The phase's outputs on the grid, column-major `[c1 − c0, co]`.
        let e = c1 - c0;
        let mut z = vec![0.0f32; p.co * e];
        by_columns(&mut z, p.co, e, |lo, block| {
            let cols = block.len() / p.co;
            for (i, (ky, kx, shift)) in p.taps(py, px).enumerate() {
                let b = grid_at(&xg, stride, (c0 + lo) as isize + shift);
                let a = p.weight_tap(w, ky, kx, false);
                product_into(block, a, b, [p.co, p.ci, cols], i > 0);
            }
        });
        let (ay, ax) = (p.y.count(py), p.x.count(px));
        y.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(i, plane)| {
                let (b, c) = (i / p.co, i % p.co);
                for a in 0..ay {
                    let src = z[(p.at(b, a + p.y.lo, p.x.lo) - c0) * p.co + c..].iter();
                    let dst = plane[(p.y.s * a + py) * ow + px..].iter_mut();
                    for (d, v) in dst.step_by(p.x.s).zip(src.step_by(p.co)).take(ax) {
                        *d = *v;
                    }
                }
            });
    }
    y
}

/// The gradients of [`forward`] from `dy` (`[n, co, oh, ow]`): `(dx if need_x, dw)`.
pub(super) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    p: &Plan,
    need_x: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let stride = p.stride();
    let (kh, kw) = (p.y.s * p.y.t, p.x.s * p.x.t);
    let xg = p.input_grid(x);
    let phases = p.phases();
    let dyg: Vec<Vec<f32>> = phases
        .iter()
        .map(|&(py, px, ..)| p.phase_grid(dy, py, px))
        .collect();
    // dw[:, :, ky, kx] = x shifted [ci, c0..c1] · dy's phase [co, c0..c1]ᵀ: one product per
    // tap, the taps shared among the threads.
    let taps: Vec<_> = (phases.iter().zip(&dyg))
        .flat_map(|(&(py, px, c0, c1), g)| p.taps(py, px).map(move |t| (t, c0, c1, g)))
        .collect();
    let grads: Vec<Vec<f32>> = taps
        .par_iter()
        .map(|&((_, _, shift), c0, c1, g)| {
            let a = grid_at(&xg, stride, c0 as isize + shift);
            let b = Mat {
                data: &g[c0..],
                rs: 1,
                cs: stride as isize,
            };
            product_oriented(a, b, [p.ci, c1 - c0, p.co], false, false)
        })
        .collect();
    let mut dw = vec![0.0f32; p.ci * p.co * kh * kw];
    for (&((ky, kx, _), ..), tap) in taps.iter().zip(&grads) {
        for (i, v) in tap.iter().enumerate() {
            dw[(i * kh + ky) * kw + kx] = *v;
        }
    }
    let dx = need_x.then(|| {
        // dx [ci, e0..e1] = Σ taps: w's tap [ci, co] · dy's phase shifted back [co, e0..e1],
        // column-major `[e1 − e0, ci]`.
        let (e0, e1) = p.input_span();
        let e = e1 - e0;
        let mut dxg = vec![0.0f32; p.ci * e];
        by_columns(&mut dxg, p.ci, e, |lo, block| {
            let cols = block.len() / p.ci;
            for (k, &((ky, kx, shift), _, _, g)) in taps.iter().enumerate() {
                let b = grid_at(g, stride, (e0 + lo) as isize - shift);
                let a = p.weight_tap(w, ky, kx, true);
                product_into(block, a, b, [p.ci, p.co, cols], k > 0);
            }
        });
        let hw = p.ih * p.iw;
        let mut dx = vec![0.0f32; p.n * p.ci * hw];
        dx.par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
            let (b, c) = (i / p.ci, i % p.ci);
            for (iy, row) in plane.chunks_exact_mut(p.iw).enumerate() {
                let at = p.at(b, iy + p.y.lo, p.x.lo) - e0;
                let src = dxg[at * p.ci + c..].iter().step_by(p.ci);
                for (d, v) in row.iter_mut().zip(src) {
                    *d = *v;
                }
            }
        });
        dx
    });
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::super::kernels::{deconv_backward, deconv_forward};
    use super::*;
    use rand::Rng;

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let top = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / top
    }

    /// By phase and by columns, the forward pass and both gradients agree to float rounding on
    /// random geometries: strides 1–3, kernels 1–3 times the stride, any padding and output
    /// padding, odd sizes, one to three images.
    #[test]
    fn phases_equal_the_column_path() {
        let mut rng = crate::rng::seeded(0x5b);
        let mut checked = 0;
        for _ in 0..80 {
            let s = [rng.random_range(1..=3usize), rng.random_range(1..=3usize)];
            let k = [0, 1].map(|d| s[d] * rng.random_range(1..=3usize));
            let pad = [0, 1].map(|d| rng.random_range(0..k[d]));
            let op = [0, 1].map(|d| rng.random_range(0..s[d]));
            let (n, ci, co) = (
                rng.random_range(1..=3),
                rng.random_range(1..=5),
                rng.random_range(1..=6),
            );
            let (ih, iw) = (rng.random_range(1..=9usize), rng.random_range(1..=13usize));
            let out = [(ih, 0), (iw, 1)].map(|(i, d)| (i - 1) * s[d] + k[d] + op[d]);
            if out[0] <= 2 * pad[0] || out[1] <= 2 * pad[1] {
                continue;
            }
            let g = Geom {
                n,
                c: co,
                h: out[0] - 2 * pad[0],
                w: out[1] - 2 * pad[1],
                kh: k[0],
                kw: k[1],
                sh: s[0],
                sw: s[1],
                pt: pad[0],
                pl: pad[1],
                oh: ih,
                ow: iw,
            };
            let plan = Plan::any(&g, ci).expect("kernel a multiple of the stride");
            let mut random = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
            };
            let x = random(n * ci * ih * iw);
            let w = random(ci * co * k[0] * k[1]);
            let dy = random(n * co * g.h * g.w);
            let what = format!("{g:?} ci {ci}");
            let y = forward(&x, &w, &plan);
            assert!(worst(&y, &deconv_forward(&x, &w, ci, &g)) < 1e-5, "{what}");
            let need_x = checked % 3 != 0;
            let (dx, dw) = backward(&x, &w, &dy, &plan, need_x);
            let (dx_c, dw_c) = deconv_backward(&x, &w, &dy, ci, &g, need_x);
            assert!(worst(&dw, &dw_c) < 1e-5, "{what}: dw");
            assert_eq!(dx.is_some(), need_x, "{what}");
            if let (Some(a), Some(b)) = (dx, dx_c) {
                assert!(worst(&a, &b) < 1e-5, "{what}: dx");
            }
            checked += 1;
        }
        assert!(checked >= 50, "only {checked} geometries checked");
    }
}
