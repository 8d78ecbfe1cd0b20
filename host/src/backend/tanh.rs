//! `tanh` for training on the CPU: a Burn backend extension whose forward pass and gradient are
//! each one vectorised loop.
//!
//! The photo codec's factorized density gates every hidden value with `tanh` (about a million
//! per training step at 8 crops of 128×128). burn-flex evaluates it with a scalar libm call per
//! element, and Burn's autodiff node evaluates it again in the backward pass and then runs four
//! more element-wise ops for `1 − tanh²`; `perf` put 8.5 % of a photo training step in `tanhf`
//! and `expm1f` (benches/BENCH.md). Here both passes are branch-free loops the compiler
//! vectorises: `tanh(x) = 1 − 2 / (e^{2x} + 1)` with an exponential from range reduction and a
//! polynomial, and an odd Taylor polynomial near 0 where that form would cancel. The values
//! agree with `f64::tanh` to 1.5e-7 absolute and 1e-6 relative (a test checks a dense sweep).
//!
//! [`tanh`] takes this path when the backend is `flex`, the tensor is `f32` and the extension
//! switch ([`super::conv::set_enabled`], `edgevae --conv burn` turns both off) is on.

use burn::tensor::Tensor;

/// `x.tanh()`, through the extension where it applies.
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if super::conv::extension_applies(x.dtype()) {
        fast(x)
    } else {
        x.tanh()
    }
}

#[cfg(feature = "flex")]
fn fast<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as ext::FastTanh>::fast_tanh(
        x.into_dispatch(),
    ))
}

#[cfg(not(feature = "flex"))]
fn fast<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.tanh()
}

/// `tanh(x)` for one `f32`, written so that a loop of it vectorises (no branches, no libm).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs().min(10.0);
    // Near 0: the odd Taylor series to x⁹ (|x| < 0.25: the next term is below 4e-9 · |x|).
    let a2 = a * a;
    let series = a
        * (1.0
            + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))));
    // Elsewhere: 1 − 2 / (e^{2a} + 1), e^{2a} = 2^n · e^r with |r| ≤ ln 2 / 2.
    let t = 2.0 * a;
    // n = round(t / ln 2) by the 1.5 · 2²³ trick (no libm `round`, which would not vectorise):
    // the sum's low mantissa bits are n.
    const SHIFT: f32 = 12_582_912.0;
    let k = t * std::f32::consts::LOG2_E + SHIFT;
    let n_int = k.to_bits() as i32 - SHIFT.to_bits() as i32;
    let n = k - SHIFT;
    // ln 2 split in two so that n · ln 2 is exact to f32 precision for n ≤ 29.
    let r = (t - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    let e = p * f32::from_bits(((n_int + 127) as u32) << 23);
    let far = 1.0 - 2.0 / (e + 1.0);
    let y = if a < 0.25 { series } else { far };
    y.copysign(x)
}

#[cfg(feature = "flex")]
mod ext {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::autodiff::NodeId;
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, Flex};
    use burn::tensor::{Bytes, DType};

    use super::tanh_f32;

    /// `tanh` and its gradient as single loops. `fast_tanh_backward(x, dy) = dy · (1 − tanh²x)`
    /// is called by the autodiff node below.
    #[backend_extension(Flex, Autodiff)]
    pub trait FastTanh: Backend {
        fn fast_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;

        fn fast_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
            let _ = (x, grad);
            unimplemented!("called by the autodiff node of fast_tanh only")
        }
    }

    /// `f(a[i], b[i])` for every `i`, in parallel chunks when long.
    fn map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        let mut out = vec![0.0; a.len()];
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = f(a, b);
                }
            });
        out
    }

    fn like(t: &FlexTensor, data: Vec<f32>) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(t.layout().shape().clone()),
            DType::F32,
        )
    }

    impl FastTanh for Flex {
        fn fast_tanh(x: FlexTensor) -> FlexTensor {
            if x.dtype() != DType::F32 {
                return Flex::float_tanh(x);
            }
            let x = x.to_contiguous();
            let y = map(x.storage::<f32>(), x.storage::<f32>(), |v, _| tanh_f32(v));
            like(&x, y)
        }

        fn fast_tanh_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
            let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
            let dx = map(x.storage::<f32>(), grad.storage::<f32>(), |v, g| {
                let t = tanh_f32(v);
                g * (1.0 - t * t)
            });
            like(&x, dx)
        }
    }

    #[derive(Debug)]
    struct FastTanhBackward;

    impl<B: Backend + FastTanh> Backward<B, 1> for FastTanhBackward {
        type State = NodeId;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let [parent] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(ops.state);
            if let Some(node) = parent {
                grads.register::<B>(node.id, B::fast_tanh_backward(x, grad));
            }
        }
    }

    impl<B: Backend + FastTanh, C: CheckpointStrategy> FastTanh for Autodiff<B, C> {
        fn fast_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
            match FastTanhBackward
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let state = prep.checkpoint(&x);
                    prep.finish(state, B::fast_tanh(x.into_primitive()))
                }
                OpsKind::UnTracked(prep) => prep.finish(B::fast_tanh(x.into_primitive())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// The scalar formula against `f64::tanh` over a dense sweep, both signs, the switch-over
    /// at 0.25, tiny values and the clamp.
    #[test]
    fn fast_tanh_matches_f64() {
        let mut worst = (0f64, 0f32);
        let mut x = 1e-8f32;
        while x < 40.0 {
            for v in [x, -x] {
                let want = f64::from(v).tanh();
                let got = f64::from(tanh_f32(v));
                let err = (got - want).abs();
                assert!(
                    err <= 1.5e-7 && err <= 1e-6 * want.abs().max(0.15),
                    "tanh({v}) = {got}, want {want}"
                );
                if err > worst.0 {
                    worst = (err, v);
                }
            }
            x *= 1.0001;
        }
        assert_eq!(tanh_f32(0.0), 0.0);
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
    }

    /// Through Burn's autodiff: the same values and gradient as Burn's own `tanh`.
    #[test]
    fn fast_tanh_equals_burns_forward_and_gradient() {
        let device = crate::train_device();
        let v: Vec<f32> = (0..600).map(|i| (i as f32 - 300.0) / 37.0).collect();
        let run = |fast: bool| {
            let x = Tensor::<3>::from_data(TensorData::new(v.clone(), [2, 3, 100]), &device)
                .require_grad();
            let y = if fast {
                tanh(x.clone())
            } else {
                x.clone().tanh()
            };
            let w = Tensor::<3>::from_data(
                TensorData::new(
                    (0..600).map(|i| (i % 7) as f32 - 3.0).collect(),
                    [2, 3, 100],
                ),
                &device,
            );
            let grads = (y.clone() * w).sum().backward();
            let dx = x.grad(&grads).expect("gradient");
            (
                y.into_data().try_to_vec::<f32>().unwrap(),
                dx.into_data().try_to_vec::<f32>().unwrap(),
            )
        };
        let (y0, d0) = run(false);
        let (y1, d1) = run(true);
        for (a, b) in y0.iter().zip(&y1).chain(d0.iter().zip(&d1)) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }
}
