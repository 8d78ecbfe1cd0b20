//! ONNX export, written as a `ModelProto` with tract-onnx's prost types (Burn's own exporter
//! fails on ConvTranspose2d), and checked by running it in tract.
//!
//! Two graphs per model, each split into `*_encoder.onnx` (image → mu) and `*_decoder.onnx`
//! (z → image), all NCHW as ONNX expects (the exporter permutes; the device stays HWC):
//! - float: Conv/Gemm/ConvTranspose with Burn's weights, ReLU and Sigmoid;
//! - int8 QDQ: every layer is `DequantizeLinear → float op with DequantizeLinear'd per-channel int8
//!   weights and int32 bias → (Relu) → QuantizeLinear`; the decoder ends in a `Gather` on the
//!   256-entry pixel table, so its output is the device's uint8 image.

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use edgevae_shared::build::{OwnedActivation, OwnedLayer, OwnedModel};
use edgevae_shared::format::{Op, Shape};

use crate::model::layers::Activation as Act;
use crate::quantize::int8::{FloatLayer, FloatModel};

#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    n: usize,
}

fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}
fn attr_is(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

impl Graph {
    fn fresh(&mut self, stem: &str) -> String {
        self.n += 1;
        format!("{stem}_{}", self.n)
    }
    fn init(&mut self, stem: &str, dt: DataType, dims: &[usize], raw: Vec<u8>) -> String {
        let name = self.fresh(stem);
        self.inits.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dt as i32,
            raw_data: raw,
            ..Default::default()
        });
        name
    }
    fn f32s(&mut self, stem: &str, dims: &[usize], v: &[f32]) -> String {
        self.init(
            stem,
            DataType::Float,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
    fn i8s(&mut self, stem: &str, dims: &[usize], v: &[i8]) -> String {
        self.init(
            stem,
            DataType::Int8,
            dims,
            v.iter().map(|&x| x as u8).collect(),
        )
    }
    fn i32s(&mut self, stem: &str, dims: &[usize], v: &[i32]) -> String {
        self.init(
            stem,
            DataType::Int32,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
    fn i64s(&mut self, stem: &str, dims: &[usize], v: &[i64]) -> String {
        self.init(
            stem,
            DataType::Int64,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
    fn u8s(&mut self, stem: &str, dims: &[usize], v: &[u8]) -> String {
        self.init(stem, DataType::Uint8, dims, v.to_vec())
    }
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, attrs, &out);
        out
    }
    fn node_to(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, out: &str) {
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name,
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }
    /// Renames the last node's output.
    fn finish(
        mut self,
        output: &str,
        input: (&str, DataType, Vec<i64>),
        out: (DataType, Vec<i64>),
    ) -> ModelProto {
        if let Some(last) = self.nodes.last_mut() {
            last.output = vec![output.to_string()];
        }
        let vi = |name: &str, dt: DataType, dims: &[i64]| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: dt as i32,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| tensor_shape_proto::Dimension {
                                value: Some(if d < 0 {
                                    tensor_shape_proto::dimension::Value::DimParam("N".into())
                                } else {
                                    tensor_shape_proto::dimension::Value::DimValue(d)
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "edgevae".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                name: "edgevae".into(),
                node: self.nodes,
                initializer: self.inits,
                input: vec![vi(input.0, input.1, &input.2)],
                output: vec![vi(output, out.0, &out.1)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// `[oc][ky][kx][ic]` → ONNX `[oc][ic][ky][kx]` (conv) or `[ic][oc][ky][kx]` (transposed conv).
fn conv_weights_nchw<T: Copy + Default>(w: &[T], l: &OwnedLayerShape, transposed: bool) -> Vec<T> {
    let (oc, ic, k) = (l.oc, l.ic, l.k);
    let mut out = vec![T::default(); w.len()];
    for o in 0..oc {
        for i in 0..ic {
            for ky in 0..k {
                for kx in 0..k {
                    let dst = if transposed {
                        ((i * oc + o) * k + ky) * k + kx
                    } else {
                        ((o * ic + i) * k + ky) * k + kx
                    };
                    out[dst] = w[((o * k + ky) * k + kx) * ic + i];
                }
            }
        }
    }
    out
}

struct OwnedLayerShape {
    oc: usize,
    ic: usize,
    k: usize,
}

/// HWC flat index → CHW flat index for `s`.
fn hwc_to_chw(s: Shape, i: usize) -> usize {
    let (hw, c) = (s.h as usize * s.w as usize, s.c as usize);
    (i % c) * hw + i / c
}

/// Per-output values in device order → Gemm output order.
fn permute_out<T: Copy + Default>(v: &[T], reshape: Option<Shape>) -> Vec<T> {
    let mut out = vec![T::default(); v.len()];
    for (o, &x) in v.iter().enumerate() {
        out[reshape.map_or(o, |r| hwc_to_chw(r, o))] = x;
    }
    out
}

/// Dense weights `[out][in_hwc]` (and bias) → Gemm `[in_chw, out_chw]` given the input shape and
/// the shape the output is reshaped to (if any).
fn dense_to_gemm<T: Copy + Default, B: Copy + Default>(
    w: &[T],
    bias: &[B],
    input: Shape,
    reshape: Option<Shape>,
) -> (Vec<T>, Vec<B>) {
    let n_in = input.len() as usize;
    let n_out = bias.len();
    let mut gw = vec![T::default(); w.len()];
    for o in 0..n_out {
        let oo = reshape.map_or(o, |r| hwc_to_chw(r, o));
        for i in 0..n_in {
            gw[hwc_to_chw(input, i) * n_out + oo] = w[o * n_in + i];
        }
    }
    (gw, permute_out(bias, reshape))
}

fn conv_attrs(op: Op) -> Vec<AttributeProto> {
    match op {
        Op::Conv2d {
            kh,
            kw,
            stride,
            pad,
        }
        | Op::ConvTranspose2d {
            kh,
            kw,
            stride,
            pad,
        } => vec![
            attr_is("kernel_shape", vec![kh as i64, kw as i64]),
            attr_is("strides", vec![stride as i64; 2]),
            attr_is("pads", vec![pad as i64; 4]),
        ],
        _ => vec![],
    }
}

fn reshape_after(layers: &[FloatLayer], k: usize) -> Option<Shape> {
    layers
        .get(k + 1)
        .filter(|n| n.op == Op::Reshape)
        .map(|n| n.output)
}

/// The float model as ONNX (encoder, decoder).
pub fn float_graphs(m: &FloatModel) -> (ModelProto, ModelProto) {
    let build = |layers: &[FloatLayer],
                 input: &str,
                 in_dims: Vec<i64>,
                 output: &str,
                 out_dims: Vec<i64>| {
        let mut g = Graph::default();
        let mut x = input.to_string();
        let mut four_d = in_dims.len() == 4;
        for (k, l) in layers.iter().enumerate() {
            match l.op {
                Op::Conv2d { kh, .. } | Op::ConvTranspose2d { kh, .. } => {
                    let t = matches!(l.op, Op::ConvTranspose2d { .. });
                    let s = OwnedLayerShape {
                        oc: l.output.c as usize,
                        ic: l.input.c as usize,
                        k: kh as usize,
                    };
                    let w = conv_weights_nchw(&l.weights, &s, t);
                    let dims = if t {
                        [s.ic, s.oc, s.k, s.k]
                    } else {
                        [s.oc, s.ic, s.k, s.k]
                    };
                    let wn = g.f32s("w", &dims, &w);
                    let bn = g.f32s("b", &[s.oc], &l.bias);
                    x = g.node(
                        if t { "ConvTranspose" } else { "Conv" },
                        &[&x, &wn, &bn],
                        conv_attrs(l.op),
                    );
                }
                Op::Dense => {
                    if four_d {
                        x = g.node("Flatten", &[&x], vec![attr_i("axis", 1)]);
                        four_d = false;
                    }
                    let (w, b) =
                        dense_to_gemm(&l.weights, &l.bias, l.input, reshape_after(layers, k));
                    let wn = g.f32s("w", &[l.input.len() as usize, l.output.len() as usize], &w);
                    let bn = g.f32s("b", &[l.output.len() as usize], &b);
                    x = g.node("Gemm", &[&x, &wn, &bn], vec![]);
                }
                Op::Reshape => {
                    let o = l.output;
                    let sn = g.i64s("shape", &[4], &[-1, o.c as i64, o.h as i64, o.w as i64]);
                    x = g.node("Reshape", &[&x, &sn], vec![]);
                    four_d = true;
                }
            }
            match l.act {
                Act::Relu => x = g.node("Relu", &[&x], vec![]),
                Act::Sigmoid => x = g.node("Sigmoid", &[&x], vec![]),
                Act::Identity => {}
            }
        }
        g.finish(
            output,
            (input, DataType::Float, in_dims),
            (DataType::Float, out_dims),
        )
    };
    let i = m.input;
    let img = vec![-1, i.c as i64, i.h as i64, i.w as i64];
    let z = vec![-1, m.latent as i64];
    (
        build(&m.encoder, "image", img.clone(), "mu", z.clone()),
        build(&m.decoder, "z", z, "image", img),
    )
}

/// The int8 model as a QDQ ONNX graph (encoder: uint8 image → int8 mu; decoder: int8 z → uint8 image).
pub fn quantized_graphs(m: &OwnedModel) -> (ModelProto, ModelProto) {
    let build = |layers: &[OwnedLayer], encoder: bool| {
        let mut g = Graph::default();
        let h = &m.header;
        let (input, in_dims, in_dt) = if encoder {
            (
                "image",
                vec![-1, h.input.c as i64, h.input.h as i64, h.input.w as i64],
                DataType::Uint8,
            )
        } else {
            ("z", vec![-1, h.latent as i64], DataType::Int8)
        };
        // Current int8 tensor name; the encoder's uint8 image is p = q + 128 with scale 1/255.
        let mut q_name = input.to_string();
        let mut q_is_u8 = encoder;
        let mut four_d = encoder;
        for (k, l) in layers.iter().enumerate() {
            if l.op == Op::Reshape {
                let o = l.output;
                let sn = g.i64s("shape", &[4], &[-1, o.c as i64, o.h as i64, o.w as i64]);
                q_name = g.node("Reshape", &[&q_name, &sn], vec![]);
                four_d = true;
                continue;
            }
            let (xs, xz) = if q_is_u8 {
                (
                    g.f32s("x_scale", &[], &[l.input_q.scale]),
                    g.u8s("x_zp", &[], &[0]),
                )
            } else {
                (
                    g.f32s("x_scale", &[], &[l.input_q.scale]),
                    g.i8s("x_zp", &[], &[l.input_q.zero_point]),
                )
            };
            let mut x = g.node("DequantizeLinear", &[&q_name, &xs, &xz], vec![]);
            let oc = l.output.c as usize;
            // Per-channel weight scales: s_acc / s_in, where s_acc = s_in * s_w is the bias scale
            // and the requantization multiplier is s_acc / s_out.
            let s_w: Vec<f32> = (0..oc)
                .map(|c| {
                    let mult = l.multiplier[c] as f64 * 2f64.powi(l.shift[c] as i32 - 31);
                    (mult * l.output_q.scale as f64 / l.input_q.scale as f64) as f32
                })
                .collect();
            let s_b: Vec<f32> = s_w.iter().map(|s| s * l.input_q.scale).collect();
            let zeros8 = vec![0i8; oc];
            let zeros32 = vec![0i32; oc];
            match l.op {
                Op::Conv2d { kh, .. } | Op::ConvTranspose2d { kh, .. } => {
                    let t = matches!(l.op, Op::ConvTranspose2d { .. });
                    let s = OwnedLayerShape {
                        oc,
                        ic: l.input.c as usize,
                        k: kh as usize,
                    };
                    let w = conv_weights_nchw(&l.weights, &s, t);
                    let dims = if t {
                        [s.ic, s.oc, s.k, s.k]
                    } else {
                        [s.oc, s.ic, s.k, s.k]
                    };
                    let wq = g.i8s("wq", &dims, &w);
                    let ws = g.f32s("w_scale", &[oc], &s_w);
                    let wz = g.i8s("w_zp", &[oc], &zeros8);
                    let wf = g.node(
                        "DequantizeLinear",
                        &[&wq, &ws, &wz],
                        vec![attr_i("axis", if t { 1 } else { 0 })],
                    );
                    let bq = g.i32s("bq", &[oc], &l.bias);
                    let bs = g.f32s("b_scale", &[oc], &s_b);
                    let bz = g.i32s("b_zp", &[oc], &zeros32);
                    let bf = g.node(
                        "DequantizeLinear",
                        &[&bq, &bs, &bz],
                        vec![attr_i("axis", 0)],
                    );
                    x = g.node(
                        if t { "ConvTranspose" } else { "Conv" },
                        &[&x, &wf, &bf],
                        conv_attrs(l.op),
                    );
                }
                Op::Dense => {
                    if four_d {
                        x = g.node("Flatten", &[&x], vec![attr_i("axis", 1)]);
                        four_d = false;
                    }
                    let reshape = layers
                        .get(k + 1)
                        .filter(|n| n.op == Op::Reshape)
                        .map(|n| n.output);
                    let (w, b) = dense_to_gemm(&l.weights, &l.bias, l.input, reshape);
                    let (s_w, s_b) = (permute_out(&s_w, reshape), permute_out(&s_b, reshape));
                    let wq = g.i8s("wq", &[l.input.len() as usize, oc], &w);
                    let ws = g.f32s("w_scale", &[oc], &s_w);
                    let wz = g.i8s("w_zp", &[oc], &zeros8);
                    let wf = g.node(
                        "DequantizeLinear",
                        &[&wq, &ws, &wz],
                        vec![attr_i("axis", 1)],
                    );
                    let bq = g.i32s("bq", &[oc], &b);
                    let bs = g.f32s("b_scale", &[oc], &s_b);
                    let bz = g.i32s("b_zp", &[oc], &zeros32);
                    let bf = g.node(
                        "DequantizeLinear",
                        &[&bq, &bs, &bz],
                        vec![attr_i("axis", 0)],
                    );
                    x = g.node("Gemm", &[&x, &wf, &bf], vec![]);
                }
                Op::Reshape => unreachable!("handled above"),
            }
            if l.activation == OwnedActivation::Relu {
                x = g.node("Relu", &[&x], vec![]);
            }
            let ys = g.f32s("y_scale", &[], &[l.output_q.scale]);
            let yz = g.i8s("y_zp", &[], &[l.output_q.zero_point]);
            q_name = g.node("QuantizeLinear", &[&x, &ys, &yz], vec![]);
            q_is_u8 = false;
            if let OwnedActivation::Lut { table, .. } = &l.activation {
                let wide = g.node(
                    "Cast",
                    &[&q_name],
                    vec![attr_i("to", DataType::Int64 as i64)],
                );
                let off = g.i64s("offset", &[], &[128]);
                let idx = g.node("Add", &[&wide, &off], vec![]);
                let tn = g.u8s("table", &[256], table);
                q_name = g.node("Gather", &[&tn, &idx], vec![attr_i("axis", 0)]);
            }
        }
        let (output, out_dims, out_dt) = if encoder {
            ("mu", vec![-1, h.latent as i64], DataType::Int8)
        } else {
            (
                "image",
                vec![-1, h.input.c as i64, h.input.h as i64, h.input.w as i64],
                DataType::Uint8,
            )
        };
        g.finish(output, (input, in_dt, in_dims), (out_dt, out_dims))
    };
    (build(&m.encoder, true), build(&m.decoder, false))
}

/// Serialised bytes of a graph.
pub fn to_bytes(p: &ModelProto) -> Vec<u8> {
    p.encode_to_vec()
}
