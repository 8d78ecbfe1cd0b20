//! Convolutions for training on the CPU: a Burn backend extension in which the forward pass, the
//! input gradient and the weight gradient of a convolution and of a transposed convolution are
//! each one GEMM over the whole batch (the `gemm` crate that burn-flex itself uses), with
//! im2col/col2im in parallel over rows and planes.
//!
//! Burn 0.22's `flex` backend runs only the forward passes itself; their gradients take Burn's
//! generic formulas: the weight gradient of a convolution is a convolution that uses the *batch*
//! as its channel dimension (narrow GEMMs), and a transposed convolution runs one small GEMM per
//! image and a scalar col2im (benches/BENCH.md measured where the time goes). Here:
//!
//! - convolution, `x [n, ci, h, w]`, `w [co, ci, kh, kw]`, `cols = im2col(x) [ci·kh·kw, n·P]`:
//!   `y = w·cols`, `dx = col2im(wᵀ·dy)`, `dw = dy·colsᵀ` (the long `n·P` reduction split across
//!   threads);
//! - transposed convolution, `w [ci, co, kh, kw]` read as `[ci, co·kh·kw]`: `y = col2im(wᵀ·x)`,
//!   `dx = w·im2col(dy)`, `dw = x·im2col(dy)ᵀ`; large ones whose kernel is a multiple of
//!   the stride go by output phase instead (`phases`: a GEMM per tap that reads the input in
//!   place, no column matrix).
//!
//! The models call [`conv2d`] and [`conv_transpose2d`], which take this path when the backend
//! is `flex`, the tensors are `f32`, dilation and groups are 1 and the switch ([`set_enabled`],
//! `edgevae --conv burn`) is on; otherwise they call Burn's own ops. The results equal Burn's to
//! float rounding (the tests below compare forward passes and all gradients), so trained weights,
//! exports and model files do not depend on the switch.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::Tensor;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the GEMM convolutions on or off for the rest of the process (on by default); off,
/// every convolution runs Burn's own op (for comparisons and benchmarks).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether [`conv2d`] and [`conv_transpose2d`] may take the GEMM path.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether an op on a tensor of `dtype` may take one of edgevae's `flex` extensions (these
/// convolutions, `super::tanh`): built with `flex`, computing on it, `f32`, the switch on.
pub(crate) fn extension_applies(dtype: burn::tensor::DType) -> bool {
    cfg!(feature = "flex")
        && enabled()
        && crate::backend::selected() == crate::Backend::Flex
        && dtype == burn::tensor::DType::F32
}

fn applies(x: &Tensor<4>, dilation: [usize; 2], groups: usize) -> bool {
    dilation == [1, 1] && groups == 1 && extension_applies(x.dtype())
}

fn add_bias(y: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    match bias {
        Some(b) => {
            let c = b.dims()[0];
            y + b.reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// `burn::tensor::module::conv2d`, through the GEMM extension where it applies.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if applies(&x, options.dilation, options.groups) {
        gemm_conv2d(x, weight, bias, options)
    } else {
        burn::tensor::module::conv2d(x, weight, bias, options)
    }
}

/// `burn::tensor::module::conv_transpose2d`, through the GEMM extension where it applies.
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<4> {
    if applies(&x, options.dilation, options.groups) {
        gemm_conv_transpose2d(x, weight, bias, options)
    } else {
        burn::tensor::module::conv_transpose2d(x, weight, bias, options)
    }
}

#[cfg(feature = "flex")]
fn gemm_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let [(pt, pb), (pl, pr)] = options.padding;
    let [sh, sw] = options.stride;
    let y = Tensor::from_dispatch(<burn::backend::Dispatch as ext::GemmConv>::gemm_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        [sh, sw, pt, pl, pb, pr],
    ));
    add_bias(y, bias)
}

#[cfg(feature = "flex")]
fn gemm_conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<4> {
    let ([sh, sw], [ph, pw], [oph, opw]) = (options.stride, options.padding, options.padding_out);
    let y = Tensor::from_dispatch(
        <burn::backend::Dispatch as ext::GemmConv>::gemm_conv_transpose2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            [sh, sw, ph, pw, oph, opw],
        ),
    );
    add_bias(y, bias)
}

#[cfg(not(feature = "flex"))]
fn gemm_conv2d(x: Tensor<4>, w: Tensor<4>, b: Option<Tensor<1>>, o: ConvOptions<2>) -> Tensor<4> {
    burn::tensor::module::conv2d(x, w, b, o)
}

#[cfg(not(feature = "flex"))]
fn gemm_conv_transpose2d(
    x: Tensor<4>,
    w: Tensor<4>,
    b: Option<Tensor<1>>,
    o: ConvTransposeOptions<2>,
) -> Tensor<4> {
    burn::tensor::module::conv_transpose2d(x, w, b, o)
}

/// A `Conv2d` module's forward pass with weight `weight` (its own, or a rounded copy) through
/// [`conv2d`]; `Same` padding worked out per input size as Burn's module does.
pub fn conv2d_module(
    conv: &burn::nn::conv::Conv2d,
    x: Tensor<4>,
    weight: Option<Tensor<4>>,
) -> Tensor<4> {
    use burn::nn::PaddingConfig2d;
    let w = weight.unwrap_or_else(|| conv.weight.val());
    let [_, _, kh, kw] = w.dims();
    let [_, _, h, wd] = x.dims();
    let same = |k: usize, s: usize, n: usize| {
        let total = ((n.div_ceil(s)).max(1) - 1) * s + k;
        let total = if n == 0 { 0 } else { total.saturating_sub(n) };
        (total / 2, total - total / 2)
    };
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => [(t, b), (l, r)],
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [same(kh, conv.stride[0], h), same(kw, conv.stride[1], wd)],
    };
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    conv2d(x, w, conv.bias.as_ref().map(|b| b.val()), options)
}

/// A `ConvTranspose2d` module's forward pass with weight `weight` (its own, or a rounded copy)
/// through [`conv_transpose2d`].
pub fn conv_transpose2d_module(
    deconv: &burn::nn::conv::ConvTranspose2d,
    x: Tensor<4>,
    weight: Option<Tensor<4>>,
) -> Tensor<4> {
    let w = weight.unwrap_or_else(|| deconv.weight.val());
    let options = ConvTransposeOptions::new(
        deconv.stride,
        deconv.padding,
        deconv.padding_out,
        deconv.dilation,
        deconv.groups,
    );
    conv_transpose2d(x, w, deconv.bias.as_ref().map(|b| b.val()), options)
}

#[cfg(feature = "flex")]
mod ext {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::autodiff::NodeId;
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::backend::ops::ModuleOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, Flex};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use burn::tensor::{Bytes, DType, Shape};

    use super::kernels::{self, Geom};
    use super::phases::{self, Plan};

    /// A convolution's geometry: `[sh, sw, pad top, pad left, pad bottom, pad right]`.
    pub type ConvGeom = [usize; 6];
    /// A transposed convolution's: `[sh, sw, pad h, pad w, output pad h, output pad w]`.
    pub type DeconvGeom = [usize; 6];

    /// Convolution (no bias, dilation 1, groups 1) and transposed convolution whose forward
    /// pass and both gradients are batched GEMMs. The `_backward` methods are called by the
    /// autodiff nodes below; they return `(dx, dw)`, `dx` empty unless `need_x`.
    #[backend_extension(Flex, Autodiff)]
    pub trait GemmConv: Backend {
        fn gemm_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            geom: ConvGeom,
        ) -> FloatTensor<Self>;

        fn gemm_conv2d_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            geom: ConvGeom,
            need_x: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let _ = (x, weight, grad, geom, need_x);
            unimplemented!("called by the autodiff node of gemm_conv2d only")
        }

        fn gemm_conv_transpose2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            geom: DeconvGeom,
        ) -> FloatTensor<Self>;

        fn gemm_conv_transpose2d_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            geom: DeconvGeom,
            need_x: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let _ = (x, weight, grad, geom, need_x);
            unimplemented!("called by the autodiff node of gemm_conv_transpose2d only")
        }
    }

    fn dims4(t: &FlexTensor) -> [usize; 4] {
        let s = t.layout().shape();
        [s[0], s[1], s[2], s[3]]
    }

    fn tensor(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::new(shape)),
            DType::F32,
        )
    }

    fn empty() -> FlexTensor {
        tensor(Vec::new(), [0, 0, 0, 0])
    }

    fn conv_options([sh, sw, pt, pl, pb, pr]: ConvGeom) -> ConvOptions<2> {
        ConvOptions::new_with_padding([sh, sw], [(pt, pb), (pl, pr)], [1, 1], 1)
    }

    fn deconv_options([sh, sw, ph, pw, oph, opw]: DeconvGeom) -> ConvTransposeOptions<2> {
        ConvTransposeOptions::new([sh, sw], [ph, pw], [oph, opw], [1, 1], 1)
    }

    /// The geometry of a convolution of `x` by `weight` (`[co, ci, kh, kw]`).
    fn conv_geom(x: [usize; 4], weight: [usize; 4], geom: ConvGeom) -> Geom {
        let ([n, c, h, w], [_, _, kh, kw]) = (x, weight);
        let [sh, sw, pt, pl, pb, pr] = geom;
        Geom {
            n,
            c,
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            oh: (h + pt + pb).saturating_sub(kh) / sh + 1,
            ow: (w + pl + pr).saturating_sub(kw) / sw + 1,
        }
    }

    /// The geometry of the convolution whose input gradient a transposed convolution of `x`
    /// (`[n, ci, h, w]`) by `weight` (`[ci, co, kh, kw]`) is: its image is the output.
    fn deconv_geom(x: [usize; 4], weight: [usize; 4], geom: DeconvGeom) -> Geom {
        let ([n, _, h, w], [_, co, kh, kw]) = (x, weight);
        let [sh, sw, ph, pw, oph, opw] = geom;
        Geom {
            n,
            c: co,
            h: ((h - 1) * sh + kh + oph).saturating_sub(2 * ph),
            w: ((w - 1) * sw + kw + opw).saturating_sub(2 * pw),
            kh,
            kw,
            sh,
            sw,
            pt: ph,
            pl: pw,
            oh: h,
            ow: w,
        }
    }

    impl GemmConv for Flex {
        fn gemm_conv2d(x: FlexTensor, weight: FlexTensor, geom: ConvGeom) -> FlexTensor {
            if x.dtype() != DType::F32 {
                return Flex::conv2d(x, weight, None, conv_options(geom));
            }
            let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
            let g = conv_geom(dims4(&x), dims4(&weight), geom);
            let co = dims4(&weight)[0];
            let y = kernels::conv_forward(x.storage(), weight.storage(), co, &g);
            tensor(y, [g.n, co, g.oh, g.ow])
        }

        fn gemm_conv2d_backward(
            x: FlexTensor,
            weight: FlexTensor,
            grad: FlexTensor,
            geom: ConvGeom,
            need_x: bool,
        ) -> (FlexTensor, FlexTensor) {
            if x.dtype() != DType::F32 {
                let o = conv_options(geom);
                let dx = match need_x {
                    true => {
                        Flex::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), o.clone())
                    }
                    false => empty(),
                };
                return (dx, Flex::conv2d_weight_backward(x, weight, grad, o));
            }
            let (x, weight, grad) = (
                x.to_contiguous(),
                weight.to_contiguous(),
                grad.to_contiguous(),
            );
            let (xd, wd) = (dims4(&x), dims4(&weight));
            let g = conv_geom(xd, wd, geom);
            let (dx, dw) = kernels::conv_backward(
                x.storage(),
                weight.storage(),
                grad.storage(),
                wd[0],
                &g,
                need_x,
            );
            (dx.map_or_else(empty, |d| tensor(d, xd)), tensor(dw, wd))
        }

        fn gemm_conv_transpose2d(
            x: FlexTensor,
            weight: FlexTensor,
            geom: DeconvGeom,
        ) -> FlexTensor {
            if x.dtype() != DType::F32 {
                return Flex::conv_transpose2d(x, weight, None, deconv_options(geom));
            }
            let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
            let g = deconv_geom(dims4(&x), dims4(&weight), geom);
            let ci = dims4(&weight)[0];
            let y = match Plan::new(&g, ci) {
                Some(plan) => phases::forward(x.storage(), weight.storage(), &plan),
                None => kernels::deconv_forward(x.storage(), weight.storage(), ci, &g),
            };
            tensor(y, [g.n, g.c, g.h, g.w])
        }

        fn gemm_conv_transpose2d_backward(
            x: FlexTensor,
            weight: FlexTensor,
            grad: FlexTensor,
            geom: DeconvGeom,
            need_x: bool,
        ) -> (FlexTensor, FlexTensor) {
            if x.dtype() != DType::F32 {
                let o = deconv_options(geom);
                let dx = match need_x {
                    true => {
                        Flex::conv_transpose2d_x_backward(weight.clone(), grad.clone(), o.clone())
                    }
                    false => empty(),
                };
                return (
                    dx,
                    Flex::conv_transpose2d_weight_backward(x, weight, grad, o),
                );
            }
            let (x, weight, grad) = (
                x.to_contiguous(),
                weight.to_contiguous(),
                grad.to_contiguous(),
            );
            let (xd, wd) = (dims4(&x), dims4(&weight));
            let g = deconv_geom(xd, wd, geom);
            let (x, w, dy) = (x.storage(), weight.storage(), grad.storage());
            let (dx, dw) = match Plan::new(&g, wd[0]) {
                Some(plan) => phases::backward(x, w, dy, &plan, need_x),
                None => kernels::deconv_backward(x, w, dy, wd[0], &g, need_x),
            };
            (dx.map_or_else(empty, |d| tensor(d, xd)), tensor(dw, wd))
        }
    }

    /// The autodiff node of either operation: it keeps the checkpointed input and weight and
    /// the geometry, and asks the inner backend for both gradients at once (`dx` only when the
    /// input needs one).
    #[derive(Debug)]
    struct GemmConvBackward {
        transposed: bool,
    }

    impl<B: Backend + GemmConv> Backward<B, 2> for GemmConvBackward {
        type State = (NodeId, NodeId, [usize; 6]);

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let [node_x, node_w] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (xs, ws, geom) = ops.state;
            let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(xs);
            let w = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(ws);
            let need_x = node_x.is_some();
            let (dx, dw) = match self.transposed {
                false => B::gemm_conv2d_backward(x, w, grad, geom, need_x),
                true => B::gemm_conv_transpose2d_backward(x, w, grad, geom, need_x),
            };
            if let Some(node) = node_x {
                grads.register::<B>(node.id, dx);
            }
            if let Some(node) = node_w {
                grads.register::<B>(node.id, dw);
            }
        }
    }

    /// Records `forward(x, weight, geom)` on the autodiff graph with [`GemmConvBackward`].
    fn record<B: Backend + GemmConv, C: CheckpointStrategy>(
        x: FloatTensor<Autodiff<B, C>>,
        weight: FloatTensor<Autodiff<B, C>>,
        geom: [usize; 6],
        transposed: bool,
    ) -> FloatTensor<Autodiff<B, C>> {
        let forward = |x, w| match transposed {
            false => B::gemm_conv2d(x, w, geom),
            true => B::gemm_conv_transpose2d(x, w, geom),
        };
        match (GemmConvBackward { transposed })
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let xs = prep.checkpoint(&x);
                let ws = prep.checkpoint(&weight);
                let y = forward(x.into_primitive(), weight.into_primitive());
                prep.finish((xs, ws, geom), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(x.into_primitive(), weight.into_primitive()))
            }
        }
    }

    impl<B: Backend + GemmConv, C: CheckpointStrategy> GemmConv for Autodiff<B, C> {
        fn gemm_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            geom: ConvGeom,
        ) -> FloatTensor<Self> {
            record::<B, C>(x, weight, geom, false)
        }

        fn gemm_conv_transpose2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            geom: DeconvGeom,
        ) -> FloatTensor<Self> {
            record::<B, C>(x, weight, geom, true)
        }
    }
}

#[cfg(feature = "flex")]
mod phases;

#[cfg(feature = "flex")]
mod kernels {
    use rayon::prelude::*;

    /// A convolution's geometry: an image `[n, c, h, w]` read by `kh × kw` taps at stride
    /// `sh × sw` from `-pt, -pl` onto an output grid of `oh × ow` (outside the image: zeros).
    #[derive(Clone, Copy, Debug)]
    pub struct Geom {
        pub n: usize,
        pub c: usize,
        pub h: usize,
        pub w: usize,
        pub kh: usize,
        pub kw: usize,
        pub sh: usize,
        pub sw: usize,
        pub pt: usize,
        pub pl: usize,
        pub oh: usize,
        pub ow: usize,
    }

    impl Geom {
        /// Rows of the column matrix: `c·kh·kw`.
        fn rows(&self) -> usize {
            self.c * self.kh * self.kw
        }
        /// Columns of the column matrix: `n·oh·ow`.
        fn cols(&self) -> usize {
            self.n * self.oh * self.ow
        }
    }

    /// The output row `oy` whose tap row `ki` reads image row `iy` (`oy·sh + ki − pt = iy`).
    fn tap_row(g: &Geom, iy: usize, ki: usize) -> Option<usize> {
        let t = (iy + g.pt).checked_sub(ki)?;
        (t.is_multiple_of(g.sh) && t / g.sh < g.oh).then_some(t / g.sh)
    }

    /// Where tap column `kj` puts output column `ox` in an image row, split by phase: image
    /// column `ox·sw + kj − pl = sw·(ox + d) + φ`. Returns `(φ, d)`.
    fn phase(g: &Geom, kj: usize) -> (usize, isize) {
        let e = kj as isize - g.pl as isize;
        (
            e.rem_euclid(g.sw as isize) as usize,
            e.div_euclid(g.sw as isize),
        )
    }

    /// Image columns of phase `φ`: `φ, φ + sw, …` below `w`.
    fn phase_len(g: &Geom, phi: usize) -> usize {
        g.w.saturating_sub(phi).div_ceil(g.sw)
    }

    /// The output columns `ox` (a range) that tap column `kj` reads from inside the image, and
    /// the offset `d` of their phase: `ox + d` indexes the phase row.
    fn phase_span(g: &Geom, kj: usize) -> (usize, usize, usize, isize) {
        let (phi, d) = phase(g, kj);
        let len = phase_len(g, phi) as isize;
        let lo = (-d).max(0).min(g.ow as isize) as usize;
        let hi = (len - d).clamp(0, g.ow as isize) as usize;
        (phi, lo, hi.max(lo), d)
    }

    /// Output rows shorter than this are gathered and scattered through [`tap_table`]: the
    /// per-row runs of [`im2col`] and [`col2im`] would be a few values each.
    const ROW_RUNS: usize = 24;

    /// For each tap `(ki, kj)` and output position `(oy, ox)`, one plus the offset in the
    /// image of the pixel it reads, or 0 where it reads the zero padding: `[kh·kw, oh·ow]`.
    fn tap_table(g: &Geom) -> Vec<u32> {
        let mut t = Vec::with_capacity(g.kh * g.kw * g.oh * g.ow);
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + ki).wrapping_sub(g.pt);
                    for ox in 0..g.ow {
                        let ix = (ox * g.sw + kj).wrapping_sub(g.pl);
                        let inside = iy < g.h && ix < g.w;
                        t.push(if inside {
                            (iy * g.w + ix + 1) as u32
                        } else {
                            0
                        });
                    }
                }
            }
        }
        t
    }

    /// [`im2col`] for short rows: a gather through [`tap_table`] from the plane behind a zero.
    fn im2col_table(x: &[f32], g: &Geom) -> Vec<f32> {
        let (p, ncols, taps, hw) = (g.oh * g.ow, g.cols(), g.kh * g.kw, g.h * g.w);
        let mut cols = vec![0.0f32; g.rows() * ncols];
        if ncols == 0 || hw == 0 {
            return cols;
        }
        let table = tap_table(g);
        cols.par_chunks_mut(taps * ncols)
            .enumerate()
            .for_each(|(ci, block)| {
                let mut padded = vec![0.0f32; hw + 1];
                for b in 0..g.n {
                    padded[1..].copy_from_slice(&x[(b * g.c + ci) * hw..][..hw]);
                    for (t, idx) in table.chunks_exact(p).enumerate() {
                        let dst = &mut block[t * ncols + b * p..][..p];
                        for (d, &i) in dst.iter_mut().zip(idx) {
                            *d = padded[i as usize];
                        }
                    }
                }
            });
        cols
    }

    /// [`col2im`] for short rows: a scatter-add through [`tap_table`] (padding lands on the
    /// discarded slot 0).
    fn col2im_table(cols: &[f32], g: &Geom) -> Vec<f32> {
        let (p, ncols, taps, hw) = (g.oh * g.ow, g.cols(), g.kh * g.kw, g.h * g.w);
        let mut x = vec![0.0f32; g.n * g.c * hw];
        if hw == 0 || ncols == 0 {
            return x;
        }
        let table = tap_table(g);
        x.par_chunks_mut(hw)
            .enumerate()
            .for_each(|(plane_i, plane)| {
                let (b, ci) = (plane_i / g.c, plane_i % g.c);
                let mut padded = vec![0.0f32; hw + 1];
                for (t, idx) in table.chunks_exact(p).enumerate() {
                    let src = &cols[(ci * taps + t) * ncols + b * p..][..p];
                    for (v, &i) in src.iter().zip(idx) {
                        padded[i as usize] += *v;
                    }
                }
                plane.copy_from_slice(&padded[1..]);
            });
        x
    }

    /// `[c·kh·kw, n·oh·ow]`: row `(ci, ki, kj)`, column `(b, oy, ox)` holds
    /// `x[b, ci, oy·sh + ki − pt, ox·sw + kj − pl]` (zero outside the image). Each image row is
    /// split into its `sw` phases once, then copied in contiguous runs to the rows that read it.
    pub fn im2col(x: &[f32], g: &Geom) -> Vec<f32> {
        match g.ow < ROW_RUNS {
            true => im2col_table(x, g),
            false => im2col_rows(x, g),
        }
    }

    fn im2col_rows(x: &[f32], g: &Geom) -> Vec<f32> {
        let (p, ncols, taps) = (g.oh * g.ow, g.cols(), g.kh * g.kw);
        let mut cols = vec![0.0f32; g.rows() * ncols];
        if ncols == 0 || g.h * g.w == 0 {
            return cols;
        }
        let spans: Vec<_> = (0..g.kw).map(|kj| phase_span(g, kj)).collect();
        cols.par_chunks_mut(taps * ncols)
            .enumerate()
            .for_each(|(ci, block)| {
                let mut phases = vec![0.0f32; g.w + g.sw];
                let starts: Vec<usize> = (0..g.sw).map(|phi| phi * g.w.div_ceil(g.sw)).collect();
                for b in 0..g.n {
                    let plane = &x[(b * g.c + ci) * g.h * g.w..][..g.h * g.w];
                    for iy in 0..g.h {
                        let src = &plane[iy * g.w..][..g.w];
                        if g.sw > 1 {
                            for (phi, &start) in starts.iter().enumerate() {
                                let run = src.iter().skip(phi).step_by(g.sw);
                                for (d, v) in phases[start..].iter_mut().zip(run) {
                                    *d = *v;
                                }
                            }
                        }
                        for ki in 0..g.kh {
                            let Some(oy) = tap_row(g, iy, ki) else {
                                continue;
                            };
                            for (kj, &(phi, lo, hi, d)) in spans.iter().enumerate() {
                                if lo == hi {
                                    continue;
                                }
                                let row = (ki * g.kw + kj) * ncols + b * p + oy * g.ow;
                                let m0 = (lo as isize + d) as usize;
                                let run = if g.sw > 1 {
                                    &phases[starts[phi] + m0..][..hi - lo]
                                } else {
                                    &src[m0..][..hi - lo]
                                };
                                block[row + lo..row + hi].copy_from_slice(run);
                            }
                        }
                    }
                }
            });
        cols
    }

    /// The adjoint of [`im2col`]: `[n, c, h, w]`, each column entry added back to the pixel it
    /// was read from. Each image row is gathered per phase with contiguous adds, then
    /// interleaved once.
    pub fn col2im(cols: &[f32], g: &Geom) -> Vec<f32> {
        match g.ow < ROW_RUNS {
            true => col2im_table(cols, g),
            false => col2im_rows(cols, g),
        }
    }

    fn col2im_rows(cols: &[f32], g: &Geom) -> Vec<f32> {
        let (p, ncols, hw) = (g.oh * g.ow, g.cols(), g.h * g.w);
        let mut x = vec![0.0f32; g.n * g.c * hw];
        if hw == 0 || ncols == 0 {
            return x;
        }
        let spans: Vec<_> = (0..g.kw).map(|kj| phase_span(g, kj)).collect();
        x.par_chunks_mut(hw)
            .enumerate()
            .for_each(|(plane_i, plane)| {
                let (b, ci) = (plane_i / g.c, plane_i % g.c);
                let mut phases = vec![0.0f32; g.w + g.sw];
                let starts: Vec<usize> = (0..g.sw).map(|phi| phi * g.w.div_ceil(g.sw)).collect();
                for iy in 0..g.h {
                    let dst = &mut plane[iy * g.w..][..g.w];
                    if g.sw > 1 {
                        phases.fill(0.0);
                    }
                    for ki in 0..g.kh {
                        let Some(oy) = tap_row(g, iy, ki) else {
                            continue;
                        };
                        for (kj, &(phi, lo, hi, d)) in spans.iter().enumerate() {
                            if lo == hi {
                                continue;
                            }
                            let r = (ci * g.kh + ki) * g.kw + kj;
                            let src = &cols[r * ncols + b * p + oy * g.ow..][lo..hi];
                            let m0 = (lo as isize + d) as usize;
                            let acc = if g.sw > 1 {
                                &mut phases[starts[phi] + m0..][..hi - lo]
                            } else {
                                &mut dst[m0..][..hi - lo]
                            };
                            for (a, v) in acc.iter_mut().zip(src) {
                                *a += *v;
                            }
                        }
                    }
                    if g.sw > 1 {
                        for (phi, &start) in starts.iter().enumerate() {
                            let run = dst.iter_mut().skip(phi).step_by(g.sw);
                            for (d, v) in run.zip(&phases[start..]) {
                                *d = *v;
                            }
                        }
                    }
                }
            });
        x
    }

    /// `[n, c, p]` → `[c, n·p]`.
    fn to_channel_major(x: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; x.len()];
        if p == 0 {
            return out;
        }
        out.par_chunks_mut(p).enumerate().for_each(|(i, dst)| {
            let (ci, b) = (i / n, i % n);
            dst.copy_from_slice(&x[(b * c + ci) * p..][..p]);
        });
        out
    }

    /// `[c, n·p]` → `[n, c, p]`.
    fn to_batch_major(x: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; x.len()];
        if p == 0 {
            return out;
        }
        out.par_chunks_mut(p).enumerate().for_each(|(i, dst)| {
            let (b, ci) = (i / c, i % c);
            dst.copy_from_slice(&x[(ci * n + b) * p..][..p]);
        });
        out
    }

    /// A matrix operand: data and its row and column strides.
    #[derive(Clone, Copy)]
    pub(super) struct Mat<'a> {
        pub(super) data: &'a [f32],
        pub(super) rs: isize,
        pub(super) cs: isize,
    }

    impl<'a> Mat<'a> {
        /// Row-major `[rows, cols]`.
        fn rm(data: &'a [f32], cols: usize) -> Self {
            Mat {
                data,
                rs: cols as isize,
                cs: 1,
            }
        }
        /// The transpose of row-major `[rows, cols]`.
        fn tr(data: &'a [f32], cols: usize) -> Self {
            Mat {
                data,
                rs: 1,
                cs: cols as isize,
            }
        }
    }

    /// `a [m, k] · b [k, n]` as a new `[m, n]`, row-major, or column-major (`[n, m]` row-major)
    /// when `col_major`: one GEMM, on the rayon pool when `par` and it is large enough to share.
    ///
    /// The orientation decides which operand `gemm` packs: it computes a row-major product as
    /// `bᵀ·aᵀ`, so `b` becomes its left operand, which it repacks into column panels; for a
    /// weight gradient both operands are contiguous along `k`, and that repacking is a
    /// transpose. Asking for the column-major result keeps `a` on the left, so the operand
    /// transposed is `a`'s `m·k` values instead of `b`'s `n·k`.
    pub(super) fn product_oriented(
        a: Mat,
        b: Mat,
        [m, k, n]: [usize; 3],
        par: bool,
        col_major: bool,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(m * n);
        if m == 0 || n == 0 {
            return out;
        }
        if k == 0 {
            out.resize(m * n, 0.0);
            return out;
        }
        let (dst_rs, dst_cs) = if col_major { (1, m) } else { (n, 1) };
        // SAFETY: `out` has room for `m·n` values, which the GEMM writes with these strides
        // without reading them (`read_dst` false); then the length is set.
        unsafe {
            gemm_raw(
                out.as_mut_ptr(),
                [dst_rs, dst_cs],
                false,
                a,
                b,
                [m, k, n],
                par,
            );
            out.set_len(m * n);
        }
        out
    }

    /// `dst = a·b`, or `dst += a·b` when `accumulate`, column-major (`dst` is `[n, m]`
    /// row-major), on the calling thread.
    pub(super) fn product_into(
        dst: &mut [f32],
        a: Mat,
        b: Mat,
        [m, k, n]: [usize; 3],
        accumulate: bool,
    ) {
        assert!(dst.len() >= m * n);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                dst[..m * n].fill(0.0);
            }
            return;
        }
        // SAFETY: `dst` holds the `m·n` values written (and read when accumulating).
        unsafe { gemm_raw(dst.as_mut_ptr(), [1, m], accumulate, a, b, [m, k, n], false) }
    }

    /// `gemm` with row and column strides `dst_strides`; `m, n, k ≥ 1`. The operands' extents
    /// are checked here.
    ///
    /// # Safety
    /// `dst` must be valid for writes (and reads when `read_dst`) at every `(i, j)` of
    /// `[m, n]` with these strides, and not alias the operands.
    unsafe fn gemm_raw(
        dst: *mut f32,
        [dst_rs, dst_cs]: [usize; 2],
        read_dst: bool,
        a: Mat,
        b: Mat,
        [m, k, n]: [usize; 3],
        par: bool,
    ) {
        let span = |x: Mat, r: usize, c: usize| (r - 1) * x.rs as usize + (c - 1) * x.cs as usize;
        assert!(span(a, m, k) < a.data.len() && span(b, k, n) < b.data.len());
        let parallelism = if par && m * n * k >= 1 << 18 {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the operands' extents were checked above, the destination's is the
        // caller's; `alpha` (the destination's weight) is 1 when it is read, else unused.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                dst_cs as isize,
                dst_rs as isize,
                read_dst,
                a.data.as_ptr(),
                a.cs,
                a.rs,
                b.data.as_ptr(),
                b.cs,
                b.rs,
                if read_dst { 1.0 } else { 0.0 },
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }

    /// `a [m, k] · b [k, n]` as a new row-major `[m, n]`.
    fn product(a: Mat, b: Mat, m: usize, k: usize, n: usize, par: bool) -> Vec<f32> {
        product_oriented(a, b, [m, k, n], par, false)
    }

    /// `a [m, k] · b [k, n]` as a new row-major `[m, n]`, where `k` is long and `m·n` small
    /// and both operands are contiguous along `k` (a weight gradient): `k` split into one part
    /// per thread, the partial products summed. Of the two operands, `gemm` transposes the
    /// one with fewer rows or columns ([`product_oriented`]): on the photo codec's layers that
    /// is 1.2–2× faster than always transposing `b` (`n > m` everywhere but its last layer).
    pub(super) fn gemm_long_k(a: Mat, b: Mat, m: usize, k: usize, n: usize) -> Vec<f32> {
        let col_major = n > m;
        // `[n, m]` to `[m, n]`: the layout change the activations use, with planes of one value.
        let finish = |t: Vec<f32>| {
            if col_major {
                to_channel_major(&t, n, m, 1)
            } else {
                t
            }
        };
        let threads = rayon::current_num_threads().max(1);
        let parts = if k >= 4096 && m * n < 1 << 16 {
            threads.min(k / 1024)
        } else {
            1
        };
        if parts <= 1 {
            return finish(product_oriented(a, b, [m, k, n], true, col_major));
        }
        let chunk = k.div_ceil(parts);
        let partial: Vec<Vec<f32>> = (0..parts)
            .into_par_iter()
            .map(|t| {
                let (k0, k1) = (t * chunk, ((t + 1) * chunk).min(k).max(t * chunk));
                let a = Mat {
                    data: &a.data[k0.min(k) * a.cs as usize..],
                    ..a
                };
                let b = Mat {
                    data: &b.data[k0.min(k) * b.rs as usize..],
                    ..b
                };
                product_oriented(a, b, [m, k1 - k0, n], false, col_major)
            })
            .collect();
        let mut out = partial[0].clone();
        for p in &partial[1..] {
            for (o, v) in out.iter_mut().zip(p) {
                *o += *v;
            }
        }
        finish(out)
    }

    /// Convolution of `x` by `w` (`[co, c, kh, kw]`): `[n, co, oh, ow]`.
    pub fn conv_forward(x: &[f32], w: &[f32], co: usize, g: &Geom) -> Vec<f32> {
        let cols = im2col(x, g);
        let (r, nc) = (g.rows(), g.cols());
        let y = product(Mat::rm(w, r), Mat::rm(&cols, nc), co, r, nc, true);
        to_batch_major(&y, g.n, co, g.oh * g.ow)
    }

    /// The convolution's gradients from `dy` (`[n, co, oh, ow]`): `(dx if need_x, dw)`.
    pub fn conv_backward(
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        co: usize,
        g: &Geom,
        need_x: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>) {
        let (r, nc) = (g.rows(), g.cols());
        let dy = to_channel_major(dy, g.n, co, g.oh * g.ow);
        let dx = need_x.then(|| {
            let dcols = product(Mat::tr(w, r), Mat::rm(&dy, nc), r, co, nc, true);
            col2im(&dcols, g)
        });
        let cols = im2col(x, g);
        let dw = gemm_long_k(Mat::rm(&dy, nc), Mat::tr(&cols, nc), co, nc, r);
        (dx, dw)
    }

    /// Transposed convolution of `x` (`[n, ci, oh, ow]` in `g`'s terms) by `w`
    /// (`[ci, c, kh, kw]`): `[n, c, h, w]`.
    pub fn deconv_forward(x: &[f32], w: &[f32], ci: usize, g: &Geom) -> Vec<f32> {
        let (r, nc) = (g.rows(), g.cols());
        let xt = to_channel_major(x, g.n, ci, g.oh * g.ow);
        let cols = product(Mat::tr(w, r), Mat::rm(&xt, nc), r, ci, nc, true);
        col2im(&cols, g)
    }

    /// The transposed convolution's gradients from `dy` (`[n, c, h, w]`): `(dx if need_x, dw)`.
    pub fn deconv_backward(
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        ci: usize,
        g: &Geom,
        need_x: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>) {
        let (r, nc) = (g.rows(), g.cols());
        let dcols = im2col(dy, g);
        let dx = need_x.then(|| {
            let dxt = product(Mat::rm(w, r), Mat::rm(&dcols, nc), ci, r, nc, true);
            to_batch_major(&dxt, g.n, ci, g.oh * g.ow)
        });
        let xt = to_channel_major(x, g.n, ci, g.oh * g.ow);
        let dw = gemm_long_k(Mat::rm(&xt, nc), Mat::tr(&dcols, nc), ci, nc, r);
        (dx, dw)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use rand::Rng;

        /// The weight-gradient product equals a plain triple loop in both result orientations
        /// (`n > m` and `n ≤ m`), with `k` split across threads and whole.
        #[test]
        fn long_k_products_equal_the_definition() {
            let mut rng = crate::rng::seeded(0x1f);
            for &(m, k, n) in &[
                (3, 5000, 40),
                (40, 5000, 3),
                (7, 300, 9),
                (9, 8192, 9),
                (1, 4096, 1),
            ] {
                let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                let b: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                // `a` row-major `[m, k]`, `b` given as the transpose of row-major `[n, k]`.
                let got = gemm_long_k(Mat::rm(&a, k), Mat::tr(&b, k), m, k, n);
                assert_eq!(got.len(), m * n);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|t| f64::from(a[i * k + t]) * f64::from(b[j * k + t]))
                            .sum();
                        let v = f64::from(got[i * n + j]);
                        assert!(
                            (v - want).abs() < 1e-3,
                            "{m}x{k}x{n} at ({i}, {j}): {v} vs {want}"
                        );
                    }
                }
            }
        }

        /// The two ways of reading columns agree exactly, and of adding them back to float
        /// rounding, on random geometries with short and long rows.
        #[test]
        fn row_runs_and_tap_tables_agree() {
            let mut rng = crate::rng::seeded(0xc2);
            for _ in 0..60 {
                let (kh, kw) = (rng.random_range(1..=5), rng.random_range(1..=5));
                let (sh, sw) = (rng.random_range(1..=3), rng.random_range(1..=3));
                let (h, w) = (rng.random_range(1..=9), rng.random_range(1..=70));
                let (pt, pl) = (rng.random_range(0..kh), rng.random_range(0..kw));
                let (pb, pr) = (rng.random_range(0..kh), rng.random_range(0..kw));
                if h + pt + pb < kh || w + pl + pr < kw {
                    continue;
                }
                let (n, c) = (rng.random_range(1..=2), rng.random_range(1..=3));
                let g = Geom {
                    n,
                    c,
                    h,
                    w,
                    kh,
                    kw,
                    sh,
                    sw,
                    pt,
                    pl,
                    oh: (h + pt + pb - kh) / sh + 1,
                    ow: (w + pl + pr - kw) / sw + 1,
                };
                let x: Vec<f32> = (0..n * c * h * w)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                assert_eq!(im2col_rows(&x, &g), im2col_table(&x, &g), "{g:?}");
                let cols: Vec<f32> = (0..g.rows() * g.cols())
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let (a, b) = (col2im_rows(&cols, &g), col2im_table(&cols, &g));
                let worst = a
                    .iter()
                    .zip(&b)
                    .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(worst <= 1e-5, "{g:?}: off by {worst}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{seeded, Rng64 as Rng};
    use burn::tensor::TensorData;
    use rand::{Rng as _, RngCore};

    fn random<const D: usize>(
        shape: [usize; D],
        rng: &mut Rng,
        device: &burn::tensor::Device,
    ) -> Tensor<D> {
        let n = shape.iter().product::<usize>();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_data(TensorData::new(v, shape), device).require_grad()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// `a` equals `b` to 1e-5 of `b`'s largest magnitude.
    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: sizes");
        let top = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-5 * top,
            "{what}: off by {worst} (largest {top})"
        );
    }

    type Op = dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>;

    /// The forward pass and the gradients of input, weight and bias of `gemm` against `burn`
    /// (Burn's op) under a loss that weighs every output differently. With `xs[0] == 1` the
    /// input needs no gradient (as the image into a first layer), which skips `dx`.
    fn check(
        xs: [usize; 4],
        ws: [usize; 4],
        bias: usize,
        gemm: &Op,
        burn: &Op,
        what: &str,
        rng: &mut Rng,
    ) {
        let device = crate::train_device();
        let x = random(xs, rng, &device);
        let x = if xs[0] == 1 {
            x.set_require_grad(false)
        } else {
            x
        };
        let w = random(ws, rng, &device);
        let b = random([bias], rng, &device);
        let seed = rng.next_u64();
        let mut outs = Vec::new();
        for f in [gemm, burn] {
            let (x, w, b) = (x.clone(), w.clone(), b.clone());
            let y = f(x.clone(), w.clone(), b.clone());
            let r = random(y.dims(), &mut seeded(seed), &device).detach();
            let grads = (y.clone() * r).sum().backward();
            let dx = x.grad(&grads).map(values).unwrap_or_default();
            outs.push([
                values(y),
                dx,
                values(w.grad(&grads).unwrap()),
                values(b.grad(&grads).unwrap()),
            ]);
        }
        assert_eq!(
            outs[0][1].is_empty(),
            xs[0] == 1,
            "{what}: dx only where asked for"
        );
        for (i, part) in ["forward", "dx", "dw", "db"].iter().enumerate() {
            close(&outs[0][i], &outs[1][i], &format!("{what}: {part}"));
        }
    }

    fn conv(s: [usize; 2], p: [(usize, usize); 2]) -> [Box<Op>; 2] {
        let o = ConvOptions::new_with_padding(s, p, [1, 1], 1);
        let o2 = o.clone();
        [
            Box::new(move |x, w, b| gemm_conv2d(x, w, Some(b), o.clone())),
            Box::new(move |x, w, b| burn::tensor::module::conv2d(x, w, Some(b), o2.clone())),
        ]
    }

    fn deconv(s: [usize; 2], p: [usize; 2], op: [usize; 2]) -> [Box<Op>; 2] {
        let o = ConvTransposeOptions::new(s, p, op, [1, 1], 1);
        let o2 = o.clone();
        [
            Box::new(move |x, w, b| gemm_conv_transpose2d(x, w, Some(b), o.clone())),
            Box::new(move |x, w, b| {
                burn::tensor::module::conv_transpose2d(x, w, Some(b), o2.clone())
            }),
        ]
    }

    fn check_conv(xs: [usize; 4], ws: [usize; 4], ops: [Box<Op>; 2], what: &str, rng: &mut Rng) {
        check(xs, ws, ws[0], &*ops[0], &*ops[1], what, rng);
    }

    fn check_deconv(xs: [usize; 4], ws: [usize; 4], ops: [Box<Op>; 2], what: &str, rng: &mut Rng) {
        check(xs, ws, ws[1], &*ops[0], &*ops[1], what, rng);
    }

    #[test]
    fn gemm_convolutions_equal_burns_forward_and_gradients_on_the_models_layers() {
        let mut rng = seeded(0xc0);
        let (p2, p1) = ([(2, 2), (2, 2)], [(1, 1), (1, 1)]);
        // The photo codec's analysis (5×5/2, 3×3/2) on sizes that are not multiples of the
        // stride, the seed network's first layer; then transposed 4×4/2 as in both synthesis
        // transforms.
        let convs = [
            ([2, 1, 19, 23], [4, 1, 5, 5], p2, "conv 5x5/2"),
            ([1, 3, 17, 16], [6, 3, 5, 5], p2, "conv rgb, no dx"),
            ([3, 5, 16, 17], [6, 5, 3, 3], p1, "conv 3x3/2"),
            ([4, 1, 28, 28], [8, 1, 3, 3], p1, "seed enc1"),
            ([2, 2, 11, 64], [3, 2, 5, 5], p2, "conv, long rows"),
        ];
        for (xs, ws, p, what) in convs {
            check_conv(xs, ws, conv([2, 2], p), what, &mut rng);
        }
        let deconvs = [
            ([2, 6, 5, 7], [6, 3, 4, 4], "deconv 4x4/2"),
            ([2, 4, 7, 7], [4, 1, 4, 4], "deconv to 1"),
            ([2, 3, 5, 30], [3, 2, 4, 4], "deconv, long rows"),
            // large enough for the phase path (`phases::Plan::new`: 4.2 M column values)
            ([4, 8, 64, 64], [8, 16, 4, 4], "deconv 4x4/2 by phase"),
        ];
        for (xs, ws, what) in deconvs {
            check_deconv(xs, ws, deconv([2, 2], [1, 1], [0, 0]), what, &mut rng);
        }
    }

    #[test]
    fn gemm_convolutions_equal_burns_on_random_geometries() {
        let mut rng = seeded(0xc1);
        let mut checked = 0;
        for case in 0..40 {
            let k = [rng.random_range(1..=5usize), rng.random_range(1..=5usize)];
            let s = [rng.random_range(1..=3usize), rng.random_range(1..=3usize)];
            let n = rng.random_range(1..=3);
            let (ci, co) = (rng.random_range(1..=4), rng.random_range(1..=5));
            let (h, w) = (rng.random_range(1..=11usize), rng.random_range(1..=11usize));
            if case % 2 == 0 {
                let p = [0, 1].map(|d| (rng.random_range(0..k[d]), rng.random_range(0..k[d])));
                if h + p[0].0 + p[0].1 < k[0] || w + p[1].0 + p[1].1 < k[1] {
                    continue;
                }
                let what = format!("conv {n}x{ci}x{h}x{w} k{k:?} s{s:?} p{p:?}");
                check_conv(
                    [n, ci, h, w],
                    [co, ci, k[0], k[1]],
                    conv(s, p),
                    &what,
                    &mut rng,
                );
            } else {
                let p = [0, 1].map(|d| rng.random_range(0..k[d]));
                let op = [0, 1].map(|d| rng.random_range(0..s[d]));
                let (oh, ow) = ((h - 1) * s[0] + k[0] + op[0], (w - 1) * s[1] + k[1] + op[1]);
                if oh <= 2 * p[0] || ow <= 2 * p[1] {
                    continue;
                }
                let what = format!("deconv {n}x{ci}x{h}x{w} k{k:?} s{s:?} p{p:?} op{op:?}");
                let ws = [ci, co, k[0], k[1]];
                check_deconv([n, ci, h, w], ws, deconv(s, p, op), &what, &mut rng);
            }
            checked += 1;
        }
        assert!(checked >= 30, "only {checked} geometries checked");
    }
}
