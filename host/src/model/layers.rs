//! Plain-`f32` view of a trained Burn model, layer by layer, for the quantizer and exporters.

use burn::module::Param;
use burn::prelude::*;

use crate::model::Vae;

/// What a layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// 2-D convolution. Weight shape `[out, in, kh, kw]` (Burn's and PyTorch's layout).
    Conv2d {
        /// Stride (rows, columns).
        stride: [usize; 2],
        /// Zero padding on each side (rows, columns).
        padding: [usize; 2],
    },
    /// 2-D transposed convolution. Weight shape `[in, out, kh, kw]` (Burn's and PyTorch's layout).
    ConvTranspose2d {
        /// Stride (rows, columns).
        stride: [usize; 2],
        /// Padding removed from each side of the full output (rows, columns).
        padding: [usize; 2],
    },
    /// Dense layer `y = x·W + b`. Weight shape `[in, out]`, as Burn stores it (the transpose of
    /// PyTorch's `[out, in]`): element `(i, o)` is at `i * out + o`.
    Linear,
}

/// Activation applied after a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// None (the layer's output is used as is).
    Identity,
    /// `max(0, x)`.
    Relu,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
}

/// One layer's float parameters, row-major in the shape given.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    /// Field name in [`Vae`]: `enc1`, `enc2`, `fc_mu`, `fc_logvar`, `dec_fc`, `dec1`, `dec2`.
    pub name: &'static str,
    /// Operation and its geometry (the weight layout is documented on each variant).
    pub kind: LayerKind,
    /// Activation that follows the layer in the model.
    pub activation: Activation,
    /// Weight values, row-major.
    pub weight: Vec<f32>,
    /// Weight shape as Burn stores it (see [`LayerKind`]).
    pub weight_shape: Vec<usize>,
    /// One bias per output channel / feature.
    pub bias: Vec<f32>,
}

/// Every layer of `model` in execution order: encoder (`enc1`, `enc2`, `fc_mu`, `fc_logvar`), then
/// decoder (`dec_fc`, `dec1`, `dec2`).
///
/// Between `enc2` and `fc_mu`/`fc_logvar` the `[c2, 7, 7]` feature map is flattened in (channel,
/// row, column) order; after `dec_fc` the vector is reshaped back the same way. `dec2` ends in
/// a sigmoid. The device runs `fc_logvar` never.
pub fn layers(model: &Vae) -> Vec<LayerWeights> {
    let conv = |name, c: &burn::nn::conv::Conv2d, activation| {
        let [pt, pl, _, _] = match c.padding {
            burn::nn::PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            _ => [0; 4],
        };
        let (weight, weight_shape) = param(&c.weight);
        LayerWeights {
            name,
            kind: LayerKind::Conv2d {
                stride: c.stride,
                padding: [pt, pl],
            },
            activation,
            weight,
            weight_shape,
            bias: c.bias.as_ref().map(|b| param(b).0).unwrap_or_default(),
        }
    };
    let deconv = |name, c: &burn::nn::conv::ConvTranspose2d, activation| {
        let (weight, weight_shape) = param(&c.weight);
        LayerWeights {
            name,
            kind: LayerKind::ConvTranspose2d {
                stride: c.stride,
                padding: c.padding,
            },
            activation,
            weight,
            weight_shape,
            bias: c.bias.as_ref().map(|b| param(b).0).unwrap_or_default(),
        }
    };
    let linear = |name, l: &burn::nn::Linear, activation| {
        let (weight, weight_shape) = param(&l.weight);
        LayerWeights {
            name,
            kind: LayerKind::Linear,
            activation,
            weight,
            weight_shape,
            bias: l.bias.as_ref().map(|b| param(b).0).unwrap_or_default(),
        }
    };
    vec![
        conv("enc1", &model.enc1, Activation::Relu),
        conv("enc2", &model.enc2, Activation::Relu),
        linear("fc_mu", &model.fc_mu, Activation::Identity),
        linear("fc_logvar", &model.fc_logvar, Activation::Identity),
        linear("dec_fc", &model.dec_fc, Activation::Relu),
        deconv("dec1", &model.dec1, Activation::Relu),
        deconv("dec2", &model.dec2, Activation::Sigmoid),
    ]
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> (Vec<f32>, Vec<usize>) {
    let t = p.val();
    let shape = t.dims().to_vec();
    let data = t.into_data().convert::<f32>();
    (data.try_to_vec::<f32>().unwrap_or_default(), shape)
}
