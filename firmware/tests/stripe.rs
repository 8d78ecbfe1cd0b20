//! The stripe engine (`stripe`) against its definition: the whole-frame run
//! (`frame::encode_frame`) on the frame padded as the host pads it (last row and column
//! replicated), and the host's coding of that latent map (one `Encoder`, `encode_into` per
//! position). Latent rows and bitstream bytes must be equal for every frame size.

use edgevae_firmware::engine::{Fast, KernelErrorCode, KernelSet, Scalar};
use edgevae_firmware::frame::{encode_frame, frame_buffer_len, frame_scratch_len};
use edgevae_firmware::kernels::{dsp_scratch, neon_scratch};
use edgevae_firmware::stripe::{
    compress, compress_with, encode, required_arena, required_arena_with, RowOutOfRange, RowSource,
    SliceRows, StripeError,
};
use edgevae_shared::build::{
    synthetic, synthetic_frame, FrameSpec, OwnedActivation, OwnedModel, SyntheticSpec, XorShift,
};
use edgevae_shared::entropy::{CodingError, Encoder};
use edgevae_shared::format::{Model, Op, QParams, Section};
use proptest::prelude::*;

fn frame_pixels(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed | 1);
    (0..n).map(|_| rng.range(0, 255) as u8).collect()
}

/// The host's padding: the last column, then the last row, replicated up to multiples of `s`.
fn pad_frame(px: &[u8], rows: usize, cols: usize, c: usize, s: usize) -> (Vec<u8>, usize, usize) {
    let (pr, pc) = (rows.div_ceil(s) * s, cols.div_ceil(s) * s);
    let mut out = Vec::with_capacity(pr * pc * c);
    for y in 0..pr {
        let y = y.min(rows - 1);
        for x in 0..pc {
            let x = x.min(cols - 1);
            out.extend_from_slice(&px[(y * cols + x) * c..][..c]);
        }
    }
    (out, pr, pc)
}

/// The definition: the whole-frame latent map of the padded frame, and the host's stream of
/// `level` (bits, bytes).
fn whole_frame(
    model: &Model<'_>,
    level: u8,
    px: &[u8],
    rows: usize,
    cols: usize,
) -> (Vec<i8>, usize, Vec<u8>) {
    let h = model.header();
    let (c, m) = (h.input.c as usize, h.latent as usize);
    let s = model.frame().unwrap().total_stride as usize;
    let (padded, pr, pc) = pad_frame(px, rows, cols, c, s);
    let n = frame_buffer_len(model, Section::Encoder, pr, pc).unwrap();
    let sc = frame_scratch_len::<Scalar>(model, Section::Encoder, pr, pc).unwrap();
    let (mut a, mut b, mut scratch) = (vec![0i8; n], vec![0i8; n], vec![0u8; sc]);
    let mut z = vec![0i8; (pr / s) * (pc / s) * m];
    encode_frame::<Scalar>(model, &padded, pr, pc, &mut z, &mut a, &mut b, &mut scratch).unwrap();
    let coder = model.level(level).unwrap();
    let zp = h.latent_q.zero_point;
    let mut stream = vec![0u8; z.len() * 3 + 16];
    let mut enc = Encoder::new(&mut stream);
    for pos in z.chunks_exact(m) {
        coder.encode_into(&mut enc, zp, pos).unwrap();
    }
    let bits = enc.finish().unwrap();
    stream.truncate(bits.div_ceil(8));
    (z, bits, stream)
}

/// The stripe engine in an arena of `arena_len` bytes: the latent rows (checked to arrive in
/// order) and the stream.
fn stripes<K: KernelSet>(
    model: &Model<'_>,
    level: u8,
    px: &[u8],
    rows: usize,
    cols: usize,
    arena_len: usize,
) -> (Vec<i8>, usize, Vec<u8>) {
    let c = model.header().input.c as usize;
    let mut arena = vec![0xA5u8; arena_len];
    let mut out = vec![0u8; px.len() * 4 + 4096];
    let mut z = Vec::new();
    let mut next_row = 0;
    let bits = compress_with::<K, _, _>(
        model,
        level,
        rows,
        cols,
        &mut SliceRows::new(px, cols, c),
        &mut arena,
        &mut out,
        |y, row| {
            assert_eq!(y, next_row, "latent rows out of order");
            next_row += 1;
            z.extend_from_slice(row);
        },
    )
    .unwrap();
    out.truncate(bits.div_ceil(8));
    (z, bits, out)
}

fn first_difference<T: PartialEq>(a: &[T], b: &[T]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or(if a.len() == b.len() {
            None
        } else {
            Some(a.len().min(b.len()))
        })
}

/// Stripe == whole frame for kernel set `K`, latent and stream, in the smallest arena and in
/// one with the fast paths' full scratch (the NEON GEMM and the DSP plans that need it); a
/// message on failure.
fn compare<K: KernelSet>(
    model: &Model<'_>,
    level: u8,
    px: &[u8],
    rows: usize,
    cols: usize,
) -> Result<(), String> {
    let least = required_arena::<K>(model, cols).unwrap();
    let most = required_arena_with(model, cols, neon_scratch::conv2d_scratch_size)
        .unwrap()
        .max(required_arena_with(model, cols, dsp_scratch::conv2d_scratch_size).unwrap());
    compare_in::<K>(model, level, px, rows, cols, least)?;
    compare_in::<K>(model, level, px, rows, cols, most)
}

fn compare_in<K: KernelSet>(
    model: &Model<'_>,
    level: u8,
    px: &[u8],
    rows: usize,
    cols: usize,
    arena_len: usize,
) -> Result<(), String> {
    let (z_ref, bits_ref, bytes_ref) = whole_frame(model, level, px, rows, cols);
    let (z, bits, bytes) = stripes::<K>(model, level, px, rows, cols, arena_len);
    if let Some(i) = first_difference(&z, &z_ref) {
        let diffs: Vec<usize> = (0..z.len().min(z_ref.len()))
            .filter(|&k| z[k] != z_ref[k])
            .collect();
        return Err(format!(
            "{rows}x{cols} level {level}: latent differs first at {i} ({} values differ: {diffs:?}; lengths {} vs {})",
            diffs.len(),
            z.len(),
            z_ref.len()
        ));
    }
    if bits != bits_ref || bytes != bytes_ref {
        return Err(format!(
            "{rows}x{cols} level {level}: stream {bits} bits vs {bits_ref}, first byte difference {:?}",
            first_difference(&bytes, &bytes_ref)
        ));
    }
    // The latent-only entry point hands over the same rows.
    let c = model.header().input.c as usize;
    let mut arena = vec![0u8; required_arena::<K>(model, cols).unwrap()];
    let mut z2 = Vec::new();
    encode::<K, _, _>(
        model,
        rows,
        cols,
        &mut SliceRows::new(px, cols, c),
        &mut arena,
        |_, row| z2.extend_from_slice(row),
    )
    .map_err(|e| e.to_string())?;
    if z2 != z_ref {
        return Err(format!("{rows}x{cols}: encode's latent differs"));
    }
    Ok(())
}

fn model_bytes(m: &OwnedModel) -> Vec<u8> {
    m.to_bytes().unwrap()
}

/// `synthetic_frame` with encoder layer `i`'s kernel set to `k × k` (padding `p`, stride 2),
/// new random weights; `lut` puts a random lookup table on layer `lut` (not the last).
fn reshape_layers(m: &mut OwnedModel, kernels: &[(u8, u8)], lut: Option<usize>, seed: u64) {
    let mut rng = XorShift(seed | 1);
    for (l, &(k, p)) in m.encoder.iter_mut().zip(kernels) {
        l.op = Op::Conv2d {
            kh: k,
            kw: k,
            stride: 2,
            pad: p,
        };
        let n = l.output.c as usize * (k as usize) * (k as usize) * l.input.c as usize;
        l.weights = (0..n).map(|_| rng.range(-127, 127) as i8).collect();
    }
    if let Some(i) = lut.filter(|&i| i + 1 < m.encoder.len()) {
        let out = QParams {
            scale: 0.04,
            zero_point: rng.range(-30, 30) as i8,
        };
        m.encoder[i].activation = OwnedActivation::Lut {
            table: (0..256).map(|_| rng.range(0, 255) as u8).collect(),
            out,
        };
        m.encoder[i + 1].input_q = out;
    }
    m.header.arena_bytes = m.activation_bytes().unwrap() as u32;
}

/// Kernel sizes and paddings a stride-2 frame layer may have (k − 2 ≤ 2p < k).
const GEOMETRIES: [(u8, u8); 7] = [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 3)];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random frame sizes (1..=70 rows, 1..=96 columns: every remainder modulo the stride),
    /// random small models (1 to 4 encoder layers, 4 to 12 channels, grey or RGB) and pixels,
    /// every level: the stripe engine equals the whole frame, latent and stream.
    #[test]
    fn stripes_equal_the_whole_frame(rows in 1usize..=70, cols in 1usize..=96,
                                     channels in prop::sample::select(vec![1u16, 3]),
                                     widths in prop::collection::vec(4u16..=12, 1..=4),
                                     dec in prop::collection::vec(2u16..=6, 3),
                                     level in 0u8..3, seed in any::<u64>()) {
        // The decoder upsamples by the total stride: one layer fewer than the encoder's, then
        // the image layer.
        let dec = dec[..widths.len() - 1].to_vec();
        let spec = FrameSpec { channels, encoder: widths, decoder: dec, max_width: 96, seed };
        let m = synthetic_frame(&spec).unwrap();
        let bytes = model_bytes(&m);
        let model = Model::from_bytes(&bytes).unwrap();
        let px = frame_pixels(rows * cols * channels as usize, seed ^ 0x55);
        prop_assert_eq!(compare::<Scalar>(&model, level, &px, rows, cols), Ok(()));
        prop_assert_eq!(compare::<Fast>(&model, level, &px, rows, cols), Ok(()));
    }

    /// Other stride-2 geometries (kernels 1 to 7: windows shorter than the stride, rows no
    /// output reads, two rows of bottom padding) and a lookup table inside the encoder.
    #[test]
    fn other_geometries_equal_the_whole_frame(rows in 1usize..=40, cols in 1usize..=64,
                                              kernels in prop::collection::vec(prop::sample::select(GEOMETRIES.to_vec()), 3),
                                              lut in prop::option::of(0usize..2),
                                              level in 0u8..3, seed in any::<u64>()) {
        let spec = FrameSpec { channels: 1, encoder: vec![5, 6, 7], decoder: vec![3, 4], max_width: 64, seed };
        let mut m = synthetic_frame(&spec).unwrap();
        reshape_layers(&mut m, &kernels, lut, seed);
        let bytes = model_bytes(&m);
        let model = Model::from_bytes(&bytes).unwrap();
        let px = frame_pixels(rows * cols, seed ^ 0x77);
        prop_assert_eq!(compare::<Scalar>(&model, level, &px, rows, cols), Ok(()));
        prop_assert_eq!(compare::<Fast>(&model, level, &px, rows, cols), Ok(()));
    }
}

fn small_model(channels: u16, max_width: u16, seed: u64) -> Vec<u8> {
    let spec = FrameSpec {
        channels,
        encoder: vec![6, 8, 10, 12],
        decoder: vec![6, 5, 4],
        max_width,
        seed,
    };
    model_bytes(&synthetic_frame(&spec).unwrap())
}

#[test]
fn explicit_sizes_equal_the_whole_frame() {
    for channels in [1u16, 3] {
        let bytes = small_model(channels, 96, 11);
        let model = Model::from_bytes(&bytes).unwrap();
        for (rows, cols) in [
            (1, 1),
            (15, 17),
            (16, 16),
            (33, 50),
            (17, 33),
            (1, 96),
            (70, 96),
            (64, 95),
        ] {
            let px = frame_pixels(rows * cols * channels as usize, (rows * 131 + cols) as u64);
            for level in 0..3 {
                assert_eq!(compare::<Scalar>(&model, level, &px, rows, cols), Ok(()));
                assert_eq!(compare::<Fast>(&model, level, &px, rows, cols), Ok(()));
            }
        }
    }
}

#[test]
fn photo_structure_equals_the_whole_frame() {
    for channels in [1u16, 3] {
        let m = synthetic_frame(&FrameSpec::photo(channels, 21)).unwrap();
        let bytes = model_bytes(&m);
        let model = Model::from_bytes(&bytes).unwrap();
        for (rows, cols) in [(37, 71), (48, 640)] {
            let px = frame_pixels(rows * cols * channels as usize, 5);
            assert_eq!(compare::<Scalar>(&model, 1, &px, rows, cols), Ok(()));
            assert_eq!(compare::<Fast>(&model, 2, &px, rows, cols), Ok(()));
        }
    }
}

/// A source that counts its reads and fails at one row.
struct Counting<'a> {
    inner: SliceRows<'a>,
    asked: Vec<usize>,
    fail_at: Option<usize>,
}

#[derive(Debug, PartialEq, Eq)]
struct SensorFault;

impl std::fmt::Display for SensorFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sensor fault")
    }
}

impl RowSource for Counting<'_> {
    type Error = SensorFault;
    fn read_row(&mut self, row: usize, out: &mut [u8]) -> Result<(), SensorFault> {
        self.asked.push(row);
        if self.fail_at == Some(row) {
            return Err(SensorFault);
        }
        self.inner.read_row(row, out).map_err(|_| SensorFault)
    }
}

#[test]
fn each_row_is_read_once_in_order() {
    let bytes = small_model(3, 96, 4);
    let model = Model::from_bytes(&bytes).unwrap();
    let (rows, cols) = (37, 29);
    let px = frame_pixels(rows * cols * 3, 8);
    let mut src = Counting {
        inner: SliceRows::new(&px, cols, 3),
        asked: Vec::new(),
        fail_at: None,
    };
    let mut arena = vec![0u8; required_arena::<Fast>(&model, cols).unwrap()];
    let mut out = vec![0u8; 1 << 16];
    compress::<Fast, _>(&model, 0, rows, cols, &mut src, &mut arena, &mut out).unwrap();
    assert_eq!(src.asked, (0..rows).collect::<Vec<_>>());
}

#[test]
fn errors_are_typed() {
    let bytes = small_model(1, 96, 6);
    let model = Model::from_bytes(&bytes).unwrap();
    let (rows, cols) = (40, 50);
    let px = frame_pixels(rows * cols, 3);
    let need = required_arena::<Scalar>(&model, cols).unwrap();
    let mut out = vec![0u8; 1 << 16];
    let mut arena = vec![0u8; need + 100];
    let run = |rows: usize, cols: usize, arena: &mut [u8], out: &mut [u8], level: u8| {
        compress::<Scalar, _>(
            &model,
            level,
            rows,
            cols,
            &mut SliceRows::new(&px, cols, 1),
            arena,
            out,
        )
    };
    // Sizes.
    assert_eq!(
        run(0, cols, &mut arena, &mut out, 0),
        Err(StripeError::FrameSize { rows: 0, cols })
    );
    assert_eq!(
        run(rows, 0, &mut arena, &mut out, 0),
        Err(StripeError::FrameSize { rows, cols: 0 })
    );
    assert_eq!(
        run(1, 97, &mut arena, &mut out, 0),
        Err(StripeError::TooWide {
            cols: 97,
            max_width: 96
        })
    );
    assert_eq!(required_arena::<Scalar>(&model, 97), None);
    assert_eq!(required_arena::<Scalar>(&model, 0), None);
    // The arena: one byte short is refused; a larger one gives the same stream.
    assert_eq!(
        run(rows, cols, &mut arena[..need - 1], &mut out, 0),
        Err(StripeError::ArenaTooSmall {
            needed: need,
            provided: need - 1
        })
    );
    let bits = run(rows, cols, &mut arena, &mut out, 0).unwrap();
    let (_, bits_ref, bytes_ref) = whole_frame(&model, 0, &px, rows, cols);
    assert_eq!(bits, bits_ref);
    assert_eq!(&out[..bytes_ref.len()], &bytes_ref[..]);
    // The source: a short slice, a failing sensor.
    let short = &px[..cols * 10];
    assert_eq!(
        compress::<Scalar, _>(
            &model,
            0,
            rows,
            cols,
            &mut SliceRows::new(short, cols, 1),
            &mut arena,
            &mut out
        ),
        Err(StripeError::Source {
            row: 10,
            error: RowOutOfRange { row: 10 }
        })
    );
    let mut src = Counting {
        inner: SliceRows::new(&px, cols, 1),
        asked: Vec::new(),
        fail_at: Some(23),
    };
    let mut rows_seen = 0;
    let e = compress_with::<Scalar, _, _>(
        &model,
        0,
        rows,
        cols,
        &mut src,
        &mut arena,
        &mut out,
        |_, _| rows_seen += 1,
    );
    assert_eq!(
        e,
        Err(StripeError::Source {
            row: 23,
            error: SensorFault
        })
    );
    assert_eq!(e.unwrap_err().to_string(), "reading row 23: sensor fault");
    assert_eq!(src.asked.last(), Some(&23));
    assert!(
        rows_seen >= 1,
        "latent rows before the failure were handed over"
    );
    // The output: too small for the stream, mid-frame or at the end.
    for len in [0, 1, bytes_ref.len() / 2, bytes_ref.len() - 1] {
        assert_eq!(
            run(rows, cols, &mut arena, &mut out[..len], 0),
            Err(StripeError::Coding(CodingError::OutputFull)),
            "{len}-byte output"
        );
    }
    assert_eq!(
        run(rows, cols, &mut arena, &mut out[..bytes_ref.len()], 0),
        Ok(bits_ref)
    );
    // A level the model does not have.
    assert_eq!(
        run(rows, cols, &mut arena, &mut out, 3),
        Err(StripeError::NoSuchLevel { level: 3 })
    );
    // A model that is not fully convolutional.
    let plain = synthetic(&SyntheticSpec::seed_architecture(1), 0).unwrap();
    let plain_bytes = plain.to_bytes().unwrap();
    let plain = Model::from_bytes(&plain_bytes).unwrap();
    assert_eq!(required_arena::<Scalar>(&plain, 28), None);
    assert_eq!(
        encode::<Scalar, _, _>(
            &plain,
            28,
            28,
            &mut SliceRows::new(&px, 28, 1),
            &mut arena,
            |_, _| {}
        ),
        Err(StripeError::NotFullyConvolutional)
    );
    // Every error prints one line.
    for e in [
        StripeError::<SensorFault>::NotFullyConvolutional,
        StripeError::ArenaTooSmall {
            needed: 2,
            provided: 1,
        },
        StripeError::Kernel {
            index: 1,
            error: KernelErrorCode::BadParams,
        },
    ] {
        assert!(!e.to_string().contains('\n'));
    }
}

/// The photo structure's arena by the formula of the module docs (scalar scratch: none).
fn photo_formula(width: usize, channels: usize, first: usize) -> usize {
    let mut total = width * channels + (width / 16) * 64; // pixel row, latent row
    let (mut w, mut c) = (width, channels);
    for (k, p, out) in [(5, 2, first), (3, 1, 32), (3, 1, 48), (3, 1, 64)] {
        total += k * (w + 2 * p) * c;
        (w, c) = (w / 2, out);
    }
    total
}

#[test]
fn photo_arena_numbers() {
    println!("stripe arena for FrameSpec::photo (bytes):");
    println!("channels width   scalar     Fast  DSP(fastest)     NEON");
    for channels in [1u16, 3] {
        let m = synthetic_frame(&FrameSpec::photo(channels, 1)).unwrap();
        let bytes = model_bytes(&m);
        let model = Model::from_bytes(&bytes).unwrap();
        for width in [320usize, 640] {
            let scalar = required_arena::<Scalar>(&model, width).unwrap();
            let fast = required_arena::<Fast>(&model, width).unwrap();
            let dsp = required_arena_with(&model, width, dsp_scratch::conv2d_scratch_size).unwrap();
            let neon =
                required_arena_with(&model, width, neon_scratch::conv2d_scratch_size).unwrap();
            println!("{channels:>8} {width:>5} {scalar:>8} {fast:>8} {dsp:>13} {neon:>8}");
            let first = if channels == 1 { 24 } else { 16 };
            assert_eq!(scalar, photo_formula(width, channels as usize, first));
            if channels == 1 {
                let budget = if width == 320 { 32 << 10 } else { 64 << 10 };
                assert!(scalar <= budget, "{width}: {scalar} > {budget}");
            }
        }
        // Monotone in the width: the arena for max_width serves every frame.
        let mut last = 0;
        for width in 1..=640 {
            let n = required_arena::<Scalar>(&model, width).unwrap();
            assert!(n >= last, "{width}");
            last = n;
        }
        assert_eq!(required_arena::<Scalar>(&model, 641), None);
    }
}
