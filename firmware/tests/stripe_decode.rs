//! The stripe decoder (`stripe_decode`) against its definition: the whole-frame decoder
//! (`frame::decode_frame`) on the whole latent map, cropped to the frame. Pixels must be equal
//! byte for byte for every frame size, on every kernel set, in any arena from the minimum up.

use edgevae_firmware::engine::{Fast, KernelSet, Scalar};
use edgevae_firmware::frame::{decode_frame, encode_frame, frame_buffer_len, frame_scratch_len};
use edgevae_firmware::kernels::dsp_scratch;
use edgevae_firmware::stripe::{self, SliceRows};
use edgevae_firmware::stripe_decode::{
    decode, decoder_macs, decompress, required_arena, required_arena_with, DecodeError, NoRoom,
    RowSink, SliceSink,
};
use edgevae_shared::build::{synthetic_frame, FrameSpec, XorShift};
use edgevae_shared::entropy::Decoder;
use edgevae_shared::format::{Model, Section};
use proptest::prelude::*;

fn model_bytes(spec: &FrameSpec) -> Vec<u8> {
    synthetic_frame(spec).unwrap().to_bytes().unwrap()
}

fn random_latent(n: usize, seed: u64) -> Vec<i8> {
    let mut rng = XorShift(seed | 1);
    (0..n).map(|_| rng.range(-128, 127) as i8).collect()
}

/// The definition: the whole latent map through `decode_frame`, cropped to `rows × cols`.
fn whole(model: &Model<'_>, latent: &[i8], rows: usize, cols: usize) -> Vec<u8> {
    let h = model.header();
    let c = h.input.c as usize;
    let s = model.frame().unwrap().total_stride as usize;
    let (lr, lc) = (rows.div_ceil(s), cols.div_ceil(s));
    let n = frame_buffer_len(model, Section::Decoder, lr, lc).unwrap();
    let sc = frame_scratch_len::<Scalar>(model, Section::Decoder, lr, lc).unwrap();
    let (mut a, mut b, mut scratch) = (vec![0i8; n], vec![0i8; n], vec![0u8; sc]);
    let mut px = vec![0u8; lr * s * lc * s * c];
    decode_frame::<Scalar>(model, latent, lr, lc, &mut px, &mut a, &mut b, &mut scratch).unwrap();
    let mut out = Vec::with_capacity(rows * cols * c);
    for y in 0..rows {
        out.extend_from_slice(&px[y * lc * s * c..][..cols * c]);
    }
    out
}

/// A sink that checks the rows arrive in order, each once, with the frame's length.
struct Ordered {
    px: Vec<u8>,
    next: usize,
    row_len: usize,
}

impl RowSink for Ordered {
    type Error = NoRoom;
    fn write_row(&mut self, row: usize, pixels: &[u8]) -> Result<(), NoRoom> {
        assert_eq!(row, self.next, "rows out of order");
        assert_eq!(pixels.len(), self.row_len, "row of the wrong length");
        self.next += 1;
        self.px.extend_from_slice(pixels);
        Ok(())
    }
}

fn stripes<K: KernelSet>(
    model: &Model<'_>,
    latent: &[i8],
    rows: usize,
    cols: usize,
    arena_len: usize,
) -> Vec<u8> {
    let c = model.header().input.c as usize;
    let mut arena = vec![0x5Au8; arena_len];
    let mut sink = Ordered {
        px: Vec::new(),
        next: 0,
        row_len: cols * c,
    };
    decode::<K, _>(model, rows, cols, latent, &mut arena, &mut sink).unwrap();
    assert_eq!(sink.next, rows, "not every row was handed over");
    sink.px
}

fn compare<K: KernelSet>(model: &Model<'_>, rows: usize, cols: usize, seed: u64) {
    let m = model.header().latent as usize;
    let s = model.frame().unwrap().total_stride as usize;
    let latent = random_latent(rows.div_ceil(s) * cols.div_ceil(s) * m, seed);
    let reference = whole(model, &latent, rows, cols);
    let least = required_arena::<K>(model, cols).unwrap();
    let most = least
        .max(required_arena_with(model, cols, dsp_scratch::conv_transpose2d_scratch_size).unwrap());
    for arena in [least, most + 100] {
        let px = stripes::<K>(model, &latent, rows, cols, arena);
        let diff = px.iter().zip(&reference).position(|(a, b)| a != b);
        assert!(
            diff.is_none() && px.len() == reference.len(),
            "{rows}x{cols} (arena {arena}): pixels differ first at {diff:?}"
        );
    }
}

/// The shipped grey model's structure (latent 96, decoder 96 → 64 → 48 → 1).
fn shipped_grey() -> FrameSpec {
    FrameSpec {
        channels: 1,
        encoder: vec![24, 32, 48, 96],
        decoder: vec![96, 64, 48],
        max_width: 640,
        seed: 3,
    }
}

#[test]
fn photo_structures_decode_row_by_row_as_the_whole_frame_does() {
    for (spec, sizes) in [
        (
            shipped_grey(),
            &[(240usize, 320usize), (1, 1), (97, 173), (16, 640), (33, 17)][..],
        ),
        (FrameSpec::photo(3, 5), &[(48, 64), (1, 1), (31, 45)][..]),
    ] {
        let bytes = model_bytes(&spec);
        let model = Model::from_bytes(&bytes).unwrap();
        for (i, &(rows, cols)) in sizes.iter().enumerate() {
            compare::<Scalar>(&model, rows, cols, 11 + i as u64);
            compare::<Fast>(&model, rows, cols, 11 + i as u64);
        }
    }
}

fn small_spec() -> impl Strategy<Value = FrameSpec> {
    (
        prop_oneof![Just(1u16), Just(3u16)],
        proptest::collection::vec(1u16..12, 1..=4),
        any::<u64>(),
    )
        .prop_map(|(channels, enc, seed)| {
            let dec = enc.iter().rev().skip(1).copied().collect::<Vec<_>>();
            FrameSpec {
                channels,
                encoder: enc,
                decoder: dec,
                max_width: 96,
                seed,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_models_and_sizes_decode_as_the_whole_frame(
        spec in small_spec(),
        rows in 1usize..70,
        cols in 1usize..=96,
        seed in any::<u64>(),
    ) {
        let bytes = model_bytes(&spec);
        let model = Model::from_bytes(&bytes).unwrap();
        compare::<Scalar>(&model, rows, cols, seed);
        compare::<Fast>(&model, rows, cols, seed);
    }
}

/// The device's round trip: its stripe bitstream, decompressed row by row, is the whole-frame
/// decode of the whole-frame latent.
#[test]
fn a_compressed_frame_decompresses_row_by_row_to_the_hosts_frame() {
    let spec = shipped_grey();
    let bytes = model_bytes(&spec);
    let model = Model::from_bytes(&bytes).unwrap();
    for &(rows, cols) in &[(64usize, 80usize), (37, 51)] {
        let mut rng = XorShift(rows as u64 * 7 + 1);
        let px: Vec<u8> = (0..rows * cols).map(|_| rng.range(0, 255) as u8).collect();
        let mut arena = vec![0u8; stripe::required_arena::<Fast>(&model, cols).unwrap()];
        let mut out = vec![0u8; 1 << 16];
        let mut latent = Vec::new();
        let bits = stripe::compress_with::<Fast, _, _>(
            &model,
            1,
            rows,
            cols,
            &mut SliceRows::new(&px, cols, 1),
            &mut arena,
            &mut out,
            |_, row| latent.extend_from_slice(row),
        )
        .unwrap();
        out.truncate(bits.div_ceil(8));
        // The host's decoder: the stream back to the level's latent values (each channel's
        // step applied), then the whole frame.
        let coder = model
            .level(1)
            .unwrap()
            .coder(model.header().latent_q.zero_point);
        let mut dec = Decoder::new(&out);
        let mut latent_hat = vec![0i8; latent.len()];
        for pos in latent_hat.chunks_exact_mut(96) {
            coder.decode_from(&mut dec, pos).unwrap();
        }
        let reference = whole(&model, &latent_hat, rows, cols);
        let mut arena = vec![0u8; required_arena::<Fast>(&model, cols).unwrap()];
        let mut frame = vec![0u8; rows * cols];
        decompress::<Fast, _>(
            &model,
            1,
            rows,
            cols,
            &out,
            &mut arena,
            &mut SliceSink::new(&mut frame),
        )
        .unwrap();
        assert_eq!(frame, reference, "{rows}x{cols}");
        // And the encoder half of the definition, for completeness: the same latent.
        let s = 16;
        let (pr, pc) = (rows.div_ceil(s) * s, cols.div_ceil(s) * s);
        let mut padded = Vec::new();
        for y in 0..pr {
            for x in 0..pc {
                padded.push(px[y.min(rows - 1) * cols + x.min(cols - 1)]);
            }
        }
        let n = frame_buffer_len(&model, Section::Encoder, pr, pc).unwrap();
        let sc = frame_scratch_len::<Scalar>(&model, Section::Encoder, pr, pc).unwrap();
        let mut z = vec![0i8; latent.len()];
        encode_frame::<Scalar>(
            &model,
            &padded,
            pr,
            pc,
            &mut z,
            &mut vec![0; n],
            &mut vec![0; n],
            &mut vec![0; sc],
        )
        .unwrap();
        assert_eq!(z, latent);
    }
}

#[test]
fn bad_calls_get_errors_not_panics() {
    let spec = shipped_grey();
    let bytes = model_bytes(&spec);
    let model = Model::from_bytes(&bytes).unwrap();
    let need = required_arena::<Fast>(&model, 64).unwrap();
    let latent = random_latent(4 * 4 * 96, 1);
    let mut frame = vec![0u8; 64 * 64];
    let mut arena = vec![0u8; need];
    let mut sink = SliceSink::new(&mut frame);
    assert!(matches!(
        decode::<Fast, _>(&model, 64, 64, &latent, &mut arena[..need - 1], &mut sink),
        Err(DecodeError::ArenaTooSmall { needed, provided }) if needed == need && provided == need - 1
    ));
    assert!(matches!(
        decode::<Fast, _>(&model, 64, 64, &latent[1..], &mut arena, &mut sink),
        Err(DecodeError::LatentLength { .. })
    ));
    assert!(matches!(
        decode::<Fast, _>(&model, 0, 64, &[], &mut arena, &mut sink),
        Err(DecodeError::FrameSize { .. })
    ));
    assert!(matches!(
        decode::<Fast, _>(
            &model,
            16,
            656,
            &random_latent(41 * 96, 2),
            &mut arena,
            &mut sink
        ),
        Err(DecodeError::TooWide {
            cols: 656,
            max_width: 640
        })
    ));
    assert!(matches!(
        decompress::<Fast, _>(&model, 9, 64, 64, &[1, 2, 3], &mut arena, &mut sink),
        Err(DecodeError::NoSuchLevel { level: 9 })
    ));
    // A sink with room for half the frame: the decoder stops at the first row it refuses.
    let mut half = vec![0u8; 32 * 64];
    let e = decode::<Fast, _>(
        &model,
        64,
        64,
        &latent,
        &mut arena,
        &mut SliceSink::new(&mut half),
    );
    assert_eq!(
        e,
        Err(DecodeError::Sink {
            row: 32,
            error: NoRoom { row: 32 }
        })
    );
    // Garbage and empty streams decode to some frame, without failing.
    let mut frame = vec![0u8; 64 * 64];
    for stream in [&[][..], &[0xFF; 7][..], &[0x00, 0x80, 0x13][..]] {
        decompress::<Fast, _>(
            &model,
            1,
            64,
            64,
            stream,
            &mut arena,
            &mut SliceSink::new(&mut frame),
        )
        .unwrap();
    }
    // An encoder-only file has nothing to decode with.
    let cut = model.to_encoder_only_bytes().unwrap();
    let cut = Model::from_bytes(&cut).unwrap();
    assert_eq!(required_arena::<Fast>(&cut, 64), None);
    assert!(matches!(
        decode::<Fast, _>(&cut, 64, 64, &latent, &mut arena, &mut sink),
        Err(DecodeError::NoDecoder)
    ));
}

/// The arena grows with the width, not the frame (printed with `--nocapture`), and the MACs
/// with the pixels.
#[test]
fn the_arena_is_a_function_of_the_width() {
    let bytes = model_bytes(&shipped_grey());
    let model = Model::from_bytes(&bytes).unwrap();
    let mut last = 0;
    for w in [16, 160, 320, 640] {
        let least = required_arena::<Scalar>(&model, w).unwrap();
        let dsp =
            required_arena_with(&model, w, dsp_scratch::conv_transpose2d_scratch_size).unwrap();
        println!(
            "grey photo decoder, {w} wide: {least} B (scalar minimum), {dsp} B (DSP fastest scratch); {:.0} MACs/pixel",
            decoder_macs(&model, 240, w).unwrap() as f64 / (240 * w) as f64
        );
        assert!(least > last);
        last = least;
        // Every width up to the next multiple of S takes the same arena.
        assert_eq!(required_arena::<Scalar>(&model, w - 1), Some(least));
    }
    assert_eq!(
        decoder_macs(&model, 480, 640),
        decoder_macs(&model, 240, 320).map(|m| 4 * m)
    );
}
