//! The engine against an independent whole-model reference written from the format's semantics,
//! on synthetic models (the default architecture and random small ones). Run on the host this
//! checks the scalar path; under `--target aarch64-unknown-linux-gnu` (qemu-aarch64) the NEON path.

use edgevae_firmware::engine::{required_arena, Engine, EngineError, Fast, KernelSet, Scalar};
use edgevae_firmware::kernels::requantize;
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
use edgevae_firmware::kernels::{
    ConvCall, ConvGeom, ConvTCall, DenseCall, KernelError, Scratch, Shape as KShape,
};
use edgevae_shared::build::{
    synthetic, OwnedActivation, OwnedLayer, OwnedModel, SyntheticSpec, XorShift,
};
use edgevae_shared::format::{Model, Op, Section, Shape};
use proptest::prelude::*;

fn at(s: Shape, y: usize, x: usize, c: usize) -> usize {
    (y * s.w as usize + x) * s.c as usize + c
}

/// One layer, by the definition: explicit loops, i64 accumulators.
fn reference_layer(l: &OwnedLayer, x: &[i8]) -> Vec<i8> {
    let (i, o) = (l.input, l.output);
    if l.op == Op::Reshape {
        return x.to_vec();
    }
    let zp = l.input_q.zero_point as i64;
    let mut acc: Vec<i64> = (0..o.len() as usize)
        .map(|k| l.bias[k % o.c as usize] as i64)
        .collect();
    match l.op {
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
        } => {
            let transposed = matches!(l.op, Op::ConvTranspose2d { .. });
            let (kh, kw, s, p) = (kh as i64, kw as i64, stride as i64, pad as i64);
            for iy in 0..i.h as i64 {
                for ix in 0..i.w as i64 {
                    for oy in 0..o.h as i64 {
                        for ox in 0..o.w as i64 {
                            // The tap linking input (iy, ix) and output (oy, ox), if any.
                            let (ky, kx) = if transposed {
                                (oy - iy * s + p, ox - ix * s + p)
                            } else {
                                (iy - oy * s + p, ix - ox * s + p)
                            };
                            if ky < 0 || kx < 0 || ky >= kh || kx >= kw {
                                continue;
                            }
                            for oc in 0..o.c as usize {
                                for ic in 0..i.c as usize {
                                    let w = l.weights[((oc * kh as usize + ky as usize)
                                        * kw as usize
                                        + kx as usize)
                                        * i.c as usize
                                        + ic] as i64;
                                    let v = x[at(i, iy as usize, ix as usize, ic)] as i64 - zp;
                                    acc[at(o, oy as usize, ox as usize, oc)] += w * v;
                                }
                            }
                        }
                    }
                }
            }
        }
        Op::Dense => {
            let n = i.len() as usize;
            for (k, a) in acc.iter_mut().enumerate() {
                for (w, &xj) in l.weights[k * n..(k + 1) * n].iter().zip(&x[..n]) {
                    *a += *w as i64 * (xj as i64 - zp);
                }
            }
        }
        Op::Reshape => unreachable!(),
    }
    let lo = if l.activation == OwnedActivation::Relu {
        l.output_q.zero_point as i32
    } else {
        -128
    };
    acc.iter()
        .enumerate()
        .map(|(k, &a)| {
            let c = k % o.c as usize;
            let q = requantize(a as i32, l.multiplier[c], l.shift[c] as i32)
                + l.output_q.zero_point as i32;
            let q = q.clamp(lo, 127) as i8;
            match &l.activation {
                OwnedActivation::Lut { table, .. } => table[(q as i32 + 128) as usize] as i8,
                _ => q,
            }
        })
        .collect()
}

fn reference(layers: &[OwnedLayer], x: Vec<i8>) -> Vec<i8> {
    layers.iter().fold(x, |x, l| reference_layer(l, &x))
}

/// Returns the latents and images it produced, to check they are not degenerate.
fn check_model(m: &OwnedModel, seed: u64) -> (BTreeSet<i8>, BTreeSet<u8>) {
    check_model_with::<Fast>(m, seed)
}

type BTreeSet<T> = std::collections::BTreeSet<T>;

/// [`check_model`] with the kernel set `K` as the fast engine.
fn check_model_with<K: KernelSet>(
    m: &OwnedModel,
    seed: u64,
) -> (
    std::collections::BTreeSet<i8>,
    std::collections::BTreeSet<u8>,
) {
    let mut spread: (
        std::collections::BTreeSet<i8>,
        std::collections::BTreeSet<u8>,
    ) = Default::default();
    // A kernel set that needs its scratch declared (the NEON SDOT set called directly, without
    // the dispatcher's fallback for short scratch) gets a model declaring it.
    let mut m = m.clone();
    let probe = m.to_bytes().unwrap();
    let need = edgevae_firmware::engine::required_arena::<K>(&Model::from_bytes(&probe).unwrap());
    m.header.arena_bytes = m.header.arena_bytes.max(need as u32);
    let m = &m;
    let bytes = m.to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena_f = vec![0u8; model.header().arena_bytes as usize];
    let mut arena_s = vec![0u8; model.header().arena_bytes as usize];
    let mut fast = Engine::<K>::new(&model, &mut arena_f).unwrap();
    let mut scalar = Engine::<Scalar>::new(&model, &mut arena_s).unwrap();
    let mut rng = XorShift(seed);
    let n = m.header.input.len() as usize;
    let z = m.header.latent as usize;
    for _ in 0..3 {
        let pixels: Vec<u8> = (0..n).map(|_| rng.range(0, 255) as u8).collect();
        let expected = reference(
            &m.encoder,
            pixels.iter().map(|&p| (p as i32 - 128) as i8).collect(),
        );
        let (mut lf, mut ls) = (vec![0i8; z], vec![0i8; z]);
        fast.encode(&pixels, &mut lf).unwrap();
        scalar.encode(&pixels, &mut ls).unwrap();
        assert_eq!(ls, expected, "scalar encoder vs reference");
        assert_eq!(lf, expected, "fast encoder vs reference");

        let latent: Vec<i8> = (0..z).map(|_| rng.range(-128, 127) as i8).collect();
        let expected: Vec<u8> = reference(&m.decoder, latent.clone())
            .iter()
            .map(|&q| q as u8)
            .collect();
        let (mut pf, mut ps) = (vec![0u8; n], vec![0u8; n]);
        fast.decode(&latent, &mut pf).unwrap();
        scalar.decode(&latent, &mut ps).unwrap();
        assert_eq!(ps, expected, "scalar decoder vs reference");
        assert_eq!(pf, expected, "fast decoder vs reference");
        spread.0.extend(lf);
        spread.1.extend(pf);
    }
    spread
}

fn with_scratch(spec: &SyntheticSpec) -> OwnedModel {
    // Declare what both kernel sets need, as the exporter does.
    let mut m = synthetic(spec, 0).unwrap();
    let mut probe = m.clone();
    probe.header.arena_bytes = u32::MAX;
    let probe_bytes = probe.to_bytes().unwrap();
    let parsed = Model::from_bytes(&probe_bytes).unwrap();
    let need = edgevae_firmware::engine::required_arena_all_paths(&parsed);
    m.header.arena_bytes = need as u32;
    m
}

#[test]
fn default_architecture_matches_reference() {
    // Its file carries pre-laid blocks (dense 16 → 3136, conv2, convT1), which the fast engine
    // hands to the kernels' `*_prelaid` entry points (read on the Cortex-M DSP path, ignored here).
    let m = with_scratch(&SyntheticSpec::seed_architecture(42));
    let bytes = m.to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let blocks = (0..model.encoder().len())
        .filter_map(|i| model.dsp_block(Section::Encoder, i))
        .chain((0..model.decoder().len()).filter_map(|i| model.dsp_block(Section::Decoder, i)))
        .count();
    assert_eq!(blocks, 3);
    let (latents, pixels) = check_model(&m, 1);
    // The synthetic parameters exercise the arithmetic: outputs are spread, not saturated.
    assert!(latents.len() > 8, "latent values {latents:?}");
    assert!(pixels.len() > 16, "{} distinct pixel values", pixels.len());
}

#[test]
fn arena_and_length_errors() {
    let m = with_scratch(&SyntheticSpec::seed_architecture(3));
    let bytes = m.to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let declared = model.header().arena_bytes as usize;
    let mut small = vec![0u8; declared - 1];
    assert_eq!(
        Engine::<Fast>::new(&model, &mut small).err(),
        Some(EngineError::ArenaTooSmall {
            needed: declared,
            provided: declared - 1
        })
    );
    let mut arena = vec![0u8; declared];
    let mut e = Engine::<Fast>::new(&model, &mut arena).unwrap();
    assert_eq!(
        e.encode(&[0; 783], &mut [0; 16]),
        Err(EngineError::WrongLength {
            expected: 784,
            found: 783
        })
    );
    assert_eq!(
        e.encode(&[0; 784], &mut [0; 15]),
        Err(EngineError::WrongLength {
            expected: 16,
            found: 15
        })
    );
    assert_eq!(
        e.decode(&[0; 17], &mut [0; 784]),
        Err(EngineError::WrongLength {
            expected: 16,
            found: 17
        })
    );
    // A model declaring only its activations is refused where the kernels need scratch.
    let mut lean = m.clone();
    lean.header.arena_bytes = model.activation_bytes() as u32;
    let lean_bytes = lean.to_bytes().unwrap();
    let lean_model = Model::from_bytes(&lean_bytes).unwrap();
    let mut arena = vec![0u8; declared];
    let need = required_arena::<Fast>(&lean_model);
    match Engine::<Fast>::new(&lean_model, &mut arena) {
        Ok(_) => assert_eq!(
            need,
            lean_model.activation_bytes() as usize,
            "fast path needs no scratch"
        ),
        Err(e) => assert_eq!(
            e,
            EngineError::DeclaredArenaTooSmall {
                declared: lean_model.activation_bytes() as usize,
                needed: need
            }
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_models_match_reference(mult in 1u16..=2, k in 1u16..=3, widths in prop::collection::vec(1u16..=9, 1..=2),
                                     latent in 1u16..=12, c in 1u16..=3, seed in any::<u64>()) {
        let side = k * (1 << widths.len()) * mult;
        let spec = SyntheticSpec { input: Shape::new(side, side, c), widths, latent, seed };
        let m = with_scratch(&spec);
        check_model(&m, seed);
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        check_model_with::<NeonDot>(&m, seed);
    }
}

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[path = "common/neon_dot.rs"]
mod neon_dot;

/// The aarch64 SDOT kernels as a kernel set (the dispatching `Fast` set runs plain NEON unless a
/// program enables SDOT; this runs SDOT whatever the global choice).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
struct NeonDot;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
impl KernelSet for NeonDot {
    const PRELAID: bool = false;
    fn conv2d_scratch_size(i: KShape, o: KShape, g: ConvGeom) -> usize {
        neon_dot::conv2d_scratch_size(i, o, g)
    }
    fn conv_transpose2d_scratch_size(i: KShape, o: KShape, g: ConvGeom) -> usize {
        neon_dot::conv_transpose2d_scratch_size(i, o, g)
    }
    fn dense_scratch_size(n_in: usize, n_out: usize) -> usize {
        neon_dot::dense_scratch_size(n_in, n_out)
    }
    fn conv2d(call: ConvCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
        neon_dot::conv2d(call, scratch)
    }
    fn conv_transpose2d(call: ConvTCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
        neon_dot::conv_transpose2d(call, scratch)
    }
    fn dense(call: DenseCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
        neon_dot::dense(call, scratch)
    }
}

/// The SDOT path end to end on the default architecture (random small models: in
/// `random_models_match_reference`).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[test]
fn neon_dot_matches_reference() {
    for seed in 0..3u64 {
        let spec = SyntheticSpec::seed_architecture(seed);
        check_model_with::<NeonDot>(&with_scratch(&spec), seed);
    }
}

/// The shipped model files declare exactly the arena the exporter computes today, and it is
/// within the 16 KiB budget (activations plus Cortex-M DSP scratch).
#[test]
fn shipped_models_declare_their_exact_arena_within_16_kib() {
    for name in ["default", "wide-gauss"] {
        let path = format!("{}/../models/{name}/model.evae", env!("CARGO_MANIFEST_DIR"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // a checkout without the model files
        };
        let model = Model::from_bytes(&bytes).unwrap();
        let need = edgevae_firmware::engine::required_arena_all_paths(&model);
        assert_eq!(model.header().arena_bytes as usize, need, "{path}");
        assert!(
            need <= edgevae_firmware::kernels::dsp_scratch::ARENA_BUDGET,
            "{path}: {need}"
        );
    }
}

// ---- Whole frames through fully convolutional models (format version 3) ----

use edgevae_firmware::frame::{decode_frame, encode_frame, frame_buffer_len, frame_scratch_len};
use edgevae_shared::build::{synthetic_frame, FrameSpec};

/// The oracle on a frame: every layer of `layers` with its shapes scaled to the frame.
fn reference_at(layers: &[OwnedLayer], x: Vec<i8>, rows: u16, cols: u16) -> Vec<i8> {
    let (mut r, mut c) = (rows, cols);
    let mut x = x;
    for l in layers {
        let mut l = l.clone();
        let (oh, ow) = match l.op {
            Op::Conv2d { stride, .. } => (r / stride as u16, c / stride as u16),
            _ => (r * 2, c * 2),
        };
        l.input = Shape::new(r, c, l.input.c);
        l.output = Shape::new(oh, ow, l.output.c);
        x = reference_layer(&l, &x);
        (r, c) = (oh, ow);
    }
    x
}

fn run_frame<K: KernelSet>(
    model: &Model<'_>,
    px: &[u8],
    rows: usize,
    cols: usize,
) -> (Vec<i8>, Vec<u8>) {
    let s = model.frame().unwrap().total_stride as usize;
    let m = model.header().latent as usize;
    let (lr, lc) = (rows / s, cols / s);
    let n = frame_buffer_len(model, Section::Encoder, rows, cols).unwrap();
    let sc = frame_scratch_len::<K>(model, Section::Encoder, rows, cols).unwrap();
    let (mut a, mut b, mut scratch) = (vec![0i8; n], vec![0i8; n], vec![0u8; sc]);
    let mut z = vec![0i8; lr * lc * m];
    encode_frame::<K>(model, px, rows, cols, &mut z, &mut a, &mut b, &mut scratch).unwrap();
    let n = frame_buffer_len(model, Section::Decoder, lr, lc).unwrap();
    let sc = frame_scratch_len::<K>(model, Section::Decoder, lr, lc).unwrap();
    let (mut a, mut b, mut scratch) = (vec![0i8; n], vec![0i8; n], vec![0u8; sc]);
    let mut out = vec![0u8; px.len()];
    decode_frame::<K>(model, &z, lr, lc, &mut out, &mut a, &mut b, &mut scratch).unwrap();
    (z, out)
}

fn frame_pixels(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed | 1);
    (0..n).map(|_| rng.range(0, 255) as u8).collect()
}

#[test]
fn nominal_frame_matches_the_engine() {
    // On its nominal S×S frame a fully convolutional model is an ordinary model: the frame
    // path and the engine must agree byte for byte.
    for channels in [1u16, 3] {
        let m = synthetic_frame(&FrameSpec::photo(channels, 5)).unwrap();
        let bytes = m.to_bytes().unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        let s = model.frame().unwrap().total_stride as usize;
        let px = frame_pixels(s * s * channels as usize, 9);
        let (z, out) = run_frame::<Scalar>(&model, &px, s, s);
        let mut arena = vec![0u8; model.header().arena_bytes as usize];
        let mut engine = Engine::<Scalar>::new(&model, &mut arena).unwrap();
        let mut z2 = vec![0i8; z.len()];
        engine.encode(&px, &mut z2).unwrap();
        assert_eq!(z, z2);
        let mut out2 = vec![0u8; out.len()];
        engine.decode(&z, &mut out2).unwrap();
        assert_eq!(out, out2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Frames of random sizes (multiples of the stride, 1 to 5 latent rows and columns) through
    /// random small fully convolutional models: the fast path and the scalar path equal the
    /// oracle, latent and pixels.
    #[test]
    fn frames_match_reference(lr in 1usize..=5, lc in 1usize..=5, channels in prop::sample::select(vec![1u16, 3]),
                              widths in prop::collection::vec(1u16..=12, 4), dec in prop::collection::vec(1u16..=12, 3),
                              seed in any::<u64>()) {
        let spec = FrameSpec { channels, encoder: widths, decoder: dec, max_width: 640, seed };
        let m = synthetic_frame(&spec).unwrap();
        let bytes = m.to_bytes().unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        let (rows, cols) = (lr * 16, lc * 16);
        let px = frame_pixels(rows * cols * channels as usize, seed);
        let x: Vec<i8> = px.iter().map(|&p| (p ^ 0x80) as i8).collect();
        let z_ref = reference_at(&m.encoder, x, rows as u16, cols as u16);
        let out_ref: Vec<u8> = reference_at(&m.decoder, z_ref.clone(), lr as u16, lc as u16)
            .iter().map(|&q| q as u8).collect();
        let (z, out) = run_frame::<Scalar>(&model, &px, rows, cols);
        prop_assert_eq!(&z, &z_ref);
        prop_assert_eq!(&out, &out_ref);
        let (z, out) = run_frame::<Fast>(&model, &px, rows, cols);
        prop_assert_eq!(&z, &z_ref);
        prop_assert_eq!(&out, &out_ref);
    }
}

#[test]
fn frame_errors_are_typed() {
    let m = synthetic_frame(&FrameSpec::photo(1, 3)).unwrap();
    let bytes = m.to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let (mut a, mut b, mut sc) = (vec![0i8; 1 << 16], vec![0i8; 1 << 16], vec![0u8; 1 << 16]);
    let mut z = vec![0i8; 64];
    for (rows, cols) in [(0, 16), (16, 0), (17, 16), (16, 24), (70_000, 16)] {
        let px = vec![0u8; rows * cols];
        let e = encode_frame::<Scalar>(&model, &px, rows, cols, &mut z, &mut a, &mut b, &mut sc);
        assert_eq!(
            e,
            Err(EngineError::FrameSize { rows, cols }),
            "{rows}x{cols}"
        );
        assert!(frame_buffer_len(&model, Section::Encoder, rows, cols).is_none());
    }
    // Wrong buffer lengths.
    let px = vec![0u8; 16 * 16 - 1];
    assert!(matches!(
        encode_frame::<Scalar>(&model, &px, 16, 16, &mut z, &mut a, &mut b, &mut sc),
        Err(EngineError::WrongLength { .. })
    ));
    let px = vec![0u8; 16 * 16];
    let mut short = vec![0i8; 10];
    assert!(matches!(
        encode_frame::<Scalar>(&model, &px, 16, 16, &mut z, &mut short, &mut b, &mut sc),
        Err(EngineError::Kernel { .. })
    ));
    // A model that is not fully convolutional.
    let plain = synthetic(&SyntheticSpec::seed_architecture(1), 0).unwrap();
    let bytes = plain.to_bytes().unwrap();
    let plain = Model::from_bytes(&bytes).unwrap();
    assert!(matches!(
        encode_frame::<Scalar>(&plain, &px, 16, 16, &mut z, &mut a, &mut b, &mut sc),
        Err(EngineError::FrameSize { .. })
    ));
}
