//! The device app over a mock serial port: every request is answered exactly as the engine
//! computes, and garbage, corrupted and oversized frames are answered with errors while the app
//! keeps serving. Frames of a photo model streamed in row chunks come back as the stripe
//! engine's and the whole-frame reference's bitstream, byte for byte, and every way a frame
//! can go wrong gets its error code, after which the app still serves.

use std::collections::VecDeque;

use edgevae_firmware::app::{frame_stripe_len, App};
use edgevae_firmware::engine::{required_arena, Engine, Fast, KernelSet, Scalar};
use edgevae_firmware::frame::{encode_frame, frame_buffer_len, frame_scratch_len};
use edgevae_firmware::stripe::{self, SliceRows};
use edgevae_shared::build::{synthetic, synthetic_frame, FrameSpec, SyntheticSpec, XorShift};
use edgevae_shared::entropy::Encoder;
use edgevae_shared::format::{Model, Section};
use edgevae_shared::wire::{
    decode_frame, encode_frame_vec, frame_capacity, frame_payload, Request, Response,
    WireErrorCode, MESSAGE_OVERHEAD,
};
use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{ErrorType, Read, Write};
use proptest::prelude::*;

#[derive(Default)]
struct MockSerial {
    rx: VecDeque<u8>,
    tx: Vec<u8>,
}

/// The mock's input ran dry: a device waiting for more (mid-frame) fails the test instead of
/// spinning for ever.
#[derive(Debug)]
struct Drained;

impl embedded_hal_nb::serial::Error for Drained {
    fn kind(&self) -> embedded_hal_nb::serial::ErrorKind {
        embedded_hal_nb::serial::ErrorKind::Other
    }
}

impl ErrorType for MockSerial {
    type Error = Drained;
}
impl Read<u8> for MockSerial {
    fn read(&mut self) -> nb::Result<u8, Drained> {
        self.rx.pop_front().ok_or(nb::Error::Other(Drained))
    }
}
impl Write<u8> for MockSerial {
    fn write(&mut self, b: u8) -> nb::Result<(), Drained> {
        self.tx.push(b);
        Ok(())
    }
    fn flush(&mut self) -> nb::Result<(), Drained> {
        Ok(())
    }
}

const N: usize = frame_capacity(784);

fn model_bytes() -> Vec<u8> {
    let mut m = synthetic(&SyntheticSpec::seed_architecture(5), 0).unwrap();
    m.header.arena_bytes = u32::MAX;
    let probe = m.to_bytes().unwrap();
    let parsed = Model::from_bytes(&probe).unwrap();
    m.header.arena_bytes =
        required_arena::<Fast>(&parsed).max(required_arena::<Scalar>(&parsed)) as u32;
    m.to_bytes().unwrap()
}

/// Sends raw bytes, polls until the input is consumed, returns every response frame.
fn exchange(app: &mut App<'_, '_, MockSerial, N>, bytes: &[u8]) -> Vec<(u16, String, Vec<u8>)> {
    app.serial().rx.extend(bytes);
    while !app.serial().rx.is_empty() {
        app.poll().unwrap();
    }
    let tx = std::mem::take(&mut app.serial().tx);
    tx.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut f = f.to_vec();
            let (seq, r): (u16, Response) =
                decode_frame(&mut f).expect("the device sends valid frames");
            let payload = match &r {
                Response::Latent { code } => code.to_vec(),
                Response::Image { pixels } => pixels.to_vec(),
                Response::Bitstream { bytes, .. } => bytes.to_vec(),
                _ => vec![],
            };
            (seq, format!("{r:?}").chars().take(40).collect(), payload)
        })
        .collect()
}

#[test]
fn serves_requests_and_survives_garbage() {
    let bytes = model_bytes();
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena = vec![0u8; model.header().arena_bytes as usize];
    let mut ref_arena = arena.clone();
    let mut reference = Engine::<Scalar>::new(&model, &mut ref_arena).unwrap();
    let mut app: App<'_, '_, MockSerial, N> =
        App::new(&model, &mut arena, MockSerial::default()).unwrap();
    let mut rng = XorShift(9);

    let r = exchange(&mut app, &encode_frame_vec(1, &Request::Info).unwrap());
    assert_eq!(r.len(), 1);
    assert!(r[0].1.starts_with("Info"), "{:?}", r[0].1);

    for round in 0..20u16 {
        let image: Vec<u8> = (0..784).map(|_| rng.range(0, 255) as u8).collect();
        let mut want = [0i8; 16];
        reference.encode(&image, &mut want).unwrap();
        let r = exchange(
            &mut app,
            &encode_frame_vec(round, &Request::Encode { frame: &image }).unwrap(),
        );
        assert_eq!(
            r,
            vec![(
                round,
                r[0].1.clone(),
                bytemuck::cast_slice::<i8, u8>(&want).to_vec()
            )]
        );
        let mut px = vec![0u8; 784];
        reference.decode(&want, &mut px).unwrap();
        let latent: &[u8] = bytemuck::cast_slice(&want);
        let r = exchange(
            &mut app,
            &encode_frame_vec(round, &Request::Decode { latent }).unwrap(),
        );
        assert_eq!(r[0].2, px);

        // Damage: garbage, a flipped byte, a truncated frame, a wrong length, an oversized frame.
        let garbage: Vec<u8> = (0..rng.range(1, 3000))
            .map(|_| rng.range(0, 255) as u8)
            .collect();
        let mut stream = garbage;
        stream.push(0);
        let mut flipped = encode_frame_vec(7, &Request::Encode { frame: &image }).unwrap();
        let at = rng.range(0, flipped.len() as i32 - 2) as usize;
        flipped[at] = flipped[at].wrapping_add(1).max(1);
        stream.extend(&flipped);
        let cut = encode_frame_vec(8, &Request::Encode { frame: &image }).unwrap();
        stream.extend(&cut[..cut.len() / 2]);
        stream.push(0);
        stream.extend(encode_frame_vec(9, &Request::Decode { latent: &[1, 2, 3] }).unwrap());
        stream.extend(std::iter::repeat_n(1u8, 2 * N));
        stream.push(0);
        let replies = exchange(&mut app, &stream);
        assert!(
            replies.iter().all(|r| r.1.starts_with("Error")),
            "{replies:?}"
        );
        assert!(replies
            .iter()
            .any(|r| r.0 == 9 && r.1.contains("WrongLength")));
        assert!(replies
            .iter()
            .any(|r| r.1.contains(&format!("{:?}", WireErrorCode::Oversized))));
    }
    // Still serving.
    let r = exchange(&mut app, &encode_frame_vec(77, &Request::Info).unwrap());
    assert_eq!(r[0].0, 77);
    assert!(app.stats().errors >= 60);
}

#[test]
fn compresses_and_decompresses_like_the_reference() {
    let bytes = model_bytes();
    let model = Model::from_bytes(&bytes).unwrap();
    let levels = model.entropy().unwrap().levels.len() as u8;
    let mut arena = vec![0u8; model.header().arena_bytes as usize];
    let mut ref_arena = arena.clone();
    let mut reference = Engine::<Scalar>::new(&model, &mut ref_arena).unwrap();
    let mut app: App<'_, '_, MockSerial, N> =
        App::new(&model, &mut arena, MockSerial::default()).unwrap();
    let mut rng = XorShift(3);
    let zp = model.header().latent_q.zero_point;
    for round in 0..10u16 {
        let image: Vec<u8> = (0..784).map(|_| rng.range(0, 255) as u8).collect();
        let level = (round % levels as u16) as u8;
        let mut latent = [0i8; 16];
        reference.encode(&image, &mut latent).unwrap();
        let mut want = [0u8; 64];
        let bits = model
            .level(level)
            .unwrap()
            .encode(zp, &latent, &mut want)
            .unwrap();
        let want = &want[..bits.div_ceil(8)];
        let r = exchange(
            &mut app,
            &encode_frame_vec(
                round,
                &Request::Compress {
                    level,
                    frame: &image,
                },
            )
            .unwrap(),
        );
        assert_eq!(r.len(), 1);
        assert!(
            r[0].1.starts_with(&format!("Bitstream {{ bits: {bits},")),
            "{}",
            r[0].1
        );
        assert_eq!(r[0].2, want);

        let mut dequantised = [0i8; 16];
        model
            .level(level)
            .unwrap()
            .decode(zp, want, &mut dequantised)
            .unwrap();
        let mut px = vec![0u8; 784];
        reference.decode(&dequantised, &mut px).unwrap();
        let r = exchange(
            &mut app,
            &encode_frame_vec(
                round,
                &Request::Decompress {
                    level,
                    bitstream: want,
                },
            )
            .unwrap(),
        );
        assert_eq!(r[0].2, px);

        // Any bytes decode to an image; a missing level is refused.
        let garbage: Vec<u8> = (0..rng.range(0, 40))
            .map(|_| rng.range(0, 255) as u8)
            .collect();
        let r = exchange(
            &mut app,
            &encode_frame_vec(
                1,
                &Request::Decompress {
                    level,
                    bitstream: &garbage,
                },
            )
            .unwrap(),
        );
        assert!(r[0].1.starts_with("Image"), "{}", r[0].1);
        let r = exchange(
            &mut app,
            &encode_frame_vec(
                2,
                &Request::Compress {
                    level: levels,
                    frame: &image,
                },
            )
            .unwrap(),
        );
        assert!(r[0].1.contains("NoSuchLevel"), "{}", r[0].1);
    }
}

// ---------------------------------------------------------------------------------------------
// Frames over the link.

/// A receive buffer for several RGB rows of the 96-wide test models a message.
const NF: usize = 2048;

type FrameApp<'m, 'a, const M: usize> = App<'m, 'a, MockSerial, M>;

/// A photo-structured model (4 stride-2 layers, S = 16) whose declared arena the engine takes.
fn frame_model(channels: u16, max_width: u16, photo: bool, seed: u64) -> Vec<u8> {
    let spec = if photo {
        FrameSpec::photo(channels, seed)
    } else {
        FrameSpec {
            channels,
            encoder: vec![6, 8, 10, 12],
            decoder: vec![6, 5, 4],
            max_width,
            seed,
        }
    };
    let mut m = synthetic_frame(&spec).unwrap();
    m.header.arena_bytes = u32::MAX;
    let probe = m.to_bytes().unwrap();
    let parsed = Model::from_bytes(&probe).unwrap();
    m.header.arena_bytes =
        required_arena::<Fast>(&parsed).max(required_arena::<Scalar>(&parsed)) as u32;
    m.to_bytes().unwrap()
}

/// The app's arena for frames up to the model's maximum width: the stripe arena and a
/// bitstream budget of `budget` bytes, at least the declared arena.
fn frame_arena(model: &Model<'_>, budget: usize) -> Vec<u8> {
    let w = model.frame().unwrap().max_width as usize;
    let stripe = stripe::required_arena::<Fast>(model, w).unwrap();
    vec![0u8; (stripe + budget).max(model.header().arena_bytes as usize)]
}

fn pixels(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed | 1);
    (0..n).map(|_| rng.range(0, 255) as u8).collect()
}

/// Raw bytes in, every response frame out (decoded and owned).
fn frames_out<const M: usize>(app: &mut FrameApp<'_, '_, M>, bytes: &[u8]) -> Vec<(u16, Reply)> {
    app.serial().rx.extend(bytes);
    while !app.serial().rx.is_empty() {
        app.poll()
            .expect("the device waits for no byte the test did not send");
    }
    let tx = std::mem::take(&mut app.serial().tx);
    tx.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut f = f.to_vec();
            let (seq, r): (u16, Response) = decode_frame(&mut f).expect("valid frames");
            (seq, Reply::from(r))
        })
        .collect()
}

/// A response, owned.
#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Info,
    Ready(u16),
    Accepted(u16, u16),
    Chunk(u32, u32, bool, Vec<u8>),
    Error(WireErrorCode),
    Other(String),
}

impl From<Response<'_>> for Reply {
    fn from(r: Response<'_>) -> Self {
        match r {
            Response::Info(_) => Reply::Info,
            Response::FrameReady { credit } => Reply::Ready(credit),
            Response::RowsAccepted { next_row, credit } => Reply::Accepted(next_row, credit),
            Response::BitstreamChunk {
                offset,
                total_bits,
                last,
                bytes,
            } => Reply::Chunk(offset, total_bits, last, bytes.to_vec()),
            Response::Error(e) => Reply::Error(e),
            other => Reply::Other(format!("{other:?}")),
        }
    }
}

fn begin(seq: u16, w: usize, h: usize, c: usize, level: u8) -> Vec<u8> {
    let req = Request::FrameBegin {
        width: w as u16,
        height: h as u16,
        channels: c as u8,
        level,
    };
    encode_frame_vec(seq, &req).unwrap()
}

fn rows_msg(seq: u16, first_row: usize, rows: &[u8]) -> Vec<u8> {
    let req = Request::FrameRows {
        first_row: first_row as u16,
        rows,
    };
    encode_frame_vec(seq, &req).unwrap()
}

/// Row chunk sizes 1 ..= credit, covering `h` rows.
fn chunking(h: usize, credit: usize, rng: &mut XorShift) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = h;
    while left > 0 {
        let k = (rng.range(1, credit as i32) as usize).min(left);
        out.push(k);
        left -= k;
    }
    out
}

/// Streams a `h × w` frame through the app in `chunks`, checks the flow control (`FrameReady`,
/// `RowsAccepted` with the device's credit, contiguous chunks) and returns the stream.
fn stream_frame<const M: usize>(
    app: &mut FrameApp<'_, '_, M>,
    seq: u16,
    (w, h, c, level): (usize, usize, usize, u8),
    px: &[u8],
    chunks: &[usize],
) -> (usize, Vec<u8>, usize) {
    let credit = frame_payload(M, MESSAGE_OVERHEAD) / (w * c);
    let mut bytes = begin(seq, w, h, c, level);
    let mut row = 0;
    for (i, &k) in chunks.iter().enumerate() {
        assert!(k <= credit);
        bytes.extend(rows_msg(
            seq + 1 + i as u16,
            row,
            &px[row * w * c..(row + k) * w * c],
        ));
        row += k;
    }
    assert_eq!(row, h);
    let replies = frames_out(app, &bytes);
    assert_eq!(replies[0], (seq, Reply::Ready(credit.min(h) as u16)));
    let mut row = 0;
    for (i, &k) in chunks[..chunks.len() - 1].iter().enumerate() {
        row += k;
        let want = Reply::Accepted(row as u16, credit.min(h - row) as u16);
        assert_eq!(replies[1 + i], (seq + 1 + i as u16, want), "{replies:?}");
    }
    let last_seq = seq + chunks.len() as u16;
    let mut stream = Vec::new();
    let mut total = None;
    let tail = &replies[chunks.len()..];
    for (i, (s, r)) in tail.iter().enumerate() {
        assert_eq!(*s, last_seq);
        let Reply::Chunk(offset, bits, last, b) = r else {
            panic!("expected a bitstream chunk, got {r:?} ({replies:?})");
        };
        assert_eq!(*offset as usize, stream.len());
        assert_eq!(*last, i + 1 == tail.len());
        assert_eq!(*total.get_or_insert(*bits), *bits);
        stream.extend_from_slice(b);
    }
    let bits = total.expect("at least one chunk") as usize;
    assert_eq!(stream.len(), bits.div_ceil(8));
    (bits, stream, tail.len())
}

/// The stripe engine on the frame in memory (the device's engine without the link).
fn stripe_stream<K: KernelSet>(
    model: &Model<'_>,
    level: u8,
    px: &[u8],
    h: usize,
    w: usize,
) -> (usize, Vec<u8>) {
    let c = model.header().input.c as usize;
    let mut arena = vec![0u8; stripe::required_arena::<K>(model, w).unwrap()];
    let mut out = vec![0u8; px.len() * 4 + 4096];
    let bits = stripe::compress::<K, _>(
        model,
        level,
        h,
        w,
        &mut SliceRows::new(px, w, c),
        &mut arena,
        &mut out,
    )
    .unwrap();
    out.truncate(bits.div_ceil(8));
    (bits, out)
}

/// The definition: the whole padded frame through `frame::encode_frame`, coded as the host
/// codes its latent map.
fn whole_frame_stream(
    model: &Model<'_>,
    level: u8,
    px: &[u8],
    rows: usize,
    cols: usize,
) -> (usize, Vec<u8>) {
    let hd = model.header();
    let (c, m) = (hd.input.c as usize, hd.latent as usize);
    let s = model.frame().unwrap().total_stride as usize;
    let (pr, pc) = (rows.div_ceil(s) * s, cols.div_ceil(s) * s);
    let mut padded = Vec::with_capacity(pr * pc * c);
    for y in 0..pr {
        for x in 0..pc {
            let (y, x) = (y.min(rows - 1), x.min(cols - 1));
            padded.extend_from_slice(&px[(y * cols + x) * c..][..c]);
        }
    }
    let n = frame_buffer_len(model, Section::Encoder, pr, pc).unwrap();
    let sc = frame_scratch_len::<Scalar>(model, Section::Encoder, pr, pc).unwrap();
    let (mut a, mut b, mut scratch) = (vec![0i8; n], vec![0i8; n], vec![0u8; sc]);
    let mut z = vec![0i8; (pr / s) * (pc / s) * m];
    encode_frame::<Scalar>(model, &padded, pr, pc, &mut z, &mut a, &mut b, &mut scratch).unwrap();
    let coder = model.level(level).unwrap();
    let mut stream = vec![0u8; z.len() * 3 + 16];
    let mut enc = Encoder::new(&mut stream);
    for pos in z.chunks_exact(m) {
        coder
            .encode_into(&mut enc, hd.latent_q.zero_point, pos)
            .unwrap();
    }
    let bits = enc.finish().unwrap();
    stream.truncate(bits.div_ceil(8));
    (bits, stream)
}

fn assert_info<const M: usize>(app: &mut FrameApp<'_, '_, M>, seq: u16) {
    let r = frames_out(app, &encode_frame_vec(seq, &Request::Info).unwrap());
    assert_eq!(r, vec![(seq, Reply::Info)]);
}

/// One frame streamed in random chunks equals the stripe engine and the whole-frame reference;
/// the number of bitstream chunks.
fn check_frame<const M: usize>(
    app: &mut FrameApp<'_, '_, M>,
    model: &Model<'_>,
    (w, h, level): (usize, usize, u8),
    seed: u64,
    whole: bool,
) -> usize {
    let c = model.header().input.c as usize;
    let px = pixels(w * h * c, seed);
    let mut rng = XorShift(seed ^ 0x9E37_79B9);
    let credit = frame_payload(M, MESSAGE_OVERHEAD) / (w * c);
    let chunks = chunking(h, credit, &mut rng);
    let (bits, stream, n) = stream_frame(app, 100, (w, h, c, level), &px, &chunks);
    let got = (bits, stream);
    assert_eq!(
        got,
        stripe_stream::<Scalar>(model, level, &px, h, w),
        "{w}x{h}"
    );
    if whole {
        assert_eq!(got, whole_frame_stream(model, level, &px, h, w), "{w}x{h}");
    }
    n
}

#[test]
fn frames_stream_through_the_app() {
    for channels in [1u16, 3] {
        let bytes = frame_model(channels, 96, false, 11 + channels as u64);
        let model = Model::from_bytes(&bytes).unwrap();
        let mut arena = frame_arena(&model, 96 * 80 * 3 * 4);
        let mut app: FrameApp<'_, '_, NF> =
            App::new(&model, &mut arena, MockSerial::default()).unwrap();
        let sizes = [
            (1, 1),
            (37, 23),
            (17, 1),
            (1, 40),
            (16, 16),
            (95, 33),
            (96, 7),
            (50, 64),
        ];
        for (i, &(w, h)) in sizes.iter().enumerate() {
            check_frame(&mut app, &model, (w, h, (i % 3) as u8), i as u64, true);
            assert_info(&mut app, 5);
        }
        assert_eq!(app.stats().errors, 0);
    }
}

/// One row a message (the smallest receive buffer that takes a row), the photo structure at
/// its maximum width (640), and a frame whose bitstream spans several chunks.
#[test]
fn frames_one_row_a_message_at_the_maximum_width() {
    let bytes = frame_model(1, 640, true, 3);
    let model = Model::from_bytes(&bytes).unwrap();
    const ROW: usize = frame_capacity(640);
    let mut arena = frame_arena(&model, 640 * 40 * 4);
    let mut app: FrameApp<'_, '_, ROW> =
        App::new(&model, &mut arena, MockSerial::default()).unwrap();
    assert_eq!(frame_payload(ROW, MESSAGE_OVERHEAD) / 640, 1);
    let chunks = check_frame(&mut app, &model, (640, 21, 2), 1, true);
    assert!(chunks > 1, "{chunks} chunk(s)");
    check_frame(&mut app, &model, (333, 5, 0), 2, false);
    // Too wide for the model.
    let r = frames_out(&mut app, &begin(3, 641, 4, 1, 0));
    assert_eq!(r, vec![(3, Reply::Error(WireErrorCode::BadFrameHeader))]);
    assert_info(&mut app, 4);
}

/// With the fast kernels' scratch (`App::with_frame_scratch`) frames give the same bits as
/// without, the bitstream keeping the rest of the arena; the scratch never takes more than half
/// of what the stripe engine's minimum leaves.
#[test]
fn frames_with_kernel_scratch_stream_the_same_bits() {
    use edgevae_firmware::kernels::{dsp_scratch, neon_scratch};
    let bytes = frame_model(1, 640, true, 5);
    let model = Model::from_bytes(&bytes).unwrap();
    let need = stripe::required_arena::<Fast>(&model, 640).unwrap();
    let fastest = stripe::required_arena_with(&model, 640, |i, o, g| {
        dsp_scratch::conv2d_scratch_size(i, o, g).max(neon_scratch::conv2d_scratch_size(i, o, g))
    })
    .unwrap();
    let scratch = fastest - need;
    assert!(scratch > 0);
    let budget = 640 * 40 * 4;
    let mut arena = frame_arena(&model, 2 * scratch + budget);
    let len = arena.len();
    let mut app: FrameApp<'_, '_, NF> = App::new(&model, &mut arena, MockSerial::default())
        .unwrap()
        .with_frame_scratch(scratch);
    for (i, &(w, h)) in [(640, 21), (320, 40), (173, 97), (1, 1)].iter().enumerate() {
        check_frame(
            &mut app,
            &model,
            (w, h, (i % 3) as u8),
            40 + i as u64,
            i < 2,
        );
    }
    assert_info(&mut app, 6);
    assert_eq!(app.stats().errors, 0);
    // The split: the whole scratch when half of what is left covers it, else that half.
    let at = |w, s, l| frame_stripe_len::<Fast>(&model, w, s, l);
    assert_eq!(at(640, scratch, len), Some(need + scratch));
    assert_eq!(at(640, scratch, need + scratch), Some(need + scratch / 2));
    assert_eq!(at(640, usize::MAX, need + 10), Some(need + 5));
    assert_eq!(at(640, scratch, need - 1), None);
    assert_eq!(at(641, 0, len), None);
}

/// The encoder-only cut of a photo model (what the board app embeds) streams the same bits as
/// the full model, names the full model, and answers decode requests with `NoDecoder`.
#[test]
fn encoder_only_models_stream_the_same_bits_and_refuse_to_decode() {
    for channels in [1u16, 3] {
        let bytes = frame_model(channels, 96, true, 70 + channels as u64);
        let full = Model::from_bytes(&bytes).unwrap();
        let cut_bytes = full.to_encoder_only_bytes().unwrap();
        let cut = Model::from_bytes(&cut_bytes).unwrap();
        assert!(cut.encoder_only() && cut.crc() == full.crc());
        let mut arena = frame_arena(&cut, 96 * 80 * 3 * 4);
        let mut app: FrameApp<'_, '_, NF> =
            App::new(&cut, &mut arena, MockSerial::default()).unwrap();
        for (i, &(w, h)) in [(96, 17), (37, 23), (1, 1)].iter().enumerate() {
            // Checked against the full model's stripe stream and whole-frame reference.
            check_frame(&mut app, &full, (w, h, i as u8), 90 + i as u64, true);
        }
        let latent = vec![0u8; cut.header().latent as usize];
        let r = frames_out(
            &mut app,
            &encode_frame_vec(7, &Request::Decode { latent: &latent }).unwrap(),
        );
        assert_eq!(r, vec![(7, Reply::Error(WireErrorCode::NoDecoder))]);
        let r = frames_out(
            &mut app,
            &encode_frame_vec(
                8,
                &Request::Decompress {
                    level: 0,
                    bitstream: &[1, 2, 3],
                },
            )
            .unwrap(),
        );
        assert_eq!(r, vec![(8, Reply::Error(WireErrorCode::NoDecoder))]);
        assert_info(&mut app, 9);
        let mut px = vec![0u8; cut.header().input.len() as usize];
        let mut z = vec![0i8; cut.header().latent as usize];
        let mut a = vec![0u8; cut.header().arena_bytes as usize];
        let mut engine = Engine::<Scalar>::new(&cut, &mut a).unwrap();
        assert!(engine.encode(&px, &mut z).is_ok());
        assert_eq!(
            engine.decode(&z, &mut px),
            Err(edgevae_firmware::engine::EngineError::NoDecoder)
        );
    }
}

/// Proptest: random sizes and chunkings, grey and RGB, equal the stripe engine.
fn run_random(w: usize, h: usize, channels: u16, level: u8, seed: u64) {
    let bytes = frame_model(channels, 96, false, seed);
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena = frame_arena(&model, 96 * 48 * 3 * 4);
    let mut app: FrameApp<'_, '_, NF> =
        App::new(&model, &mut arena, MockSerial::default()).unwrap();
    check_frame(&mut app, &model, (w, h, level), seed, false);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_frames_and_chunkings(w in 1usize..=96, h in 1usize..=48,
                                   channels in prop::sample::select(vec![1u16, 3]),
                                   level in 0u8..3, seed in any::<u64>()) {
        run_random(w, h, channels, level, seed);
    }
}

/// A minimal COBS codec, to build frames with a wrong CRC.
fn cobs_encode(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    let mut code_at = 0;
    for &b in raw {
        if b == 0 {
            out[code_at] = (out.len() - code_at) as u8;
            code_at = out.len();
            out.push(0);
        } else {
            out.push(b);
            if out.len() - code_at == 255 {
                out[code_at] = 255;
                code_at = out.len();
                out.push(0);
            }
        }
    }
    out[code_at] = (out.len() - code_at) as u8;
    out.push(0);
    out
}

fn cobs_decode(enc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < enc.len() {
        let code = enc[i] as usize;
        out.extend_from_slice(&enc[i + 1..i + code]);
        i += code;
        if code != 255 && i < enc.len() {
            out.push(0);
        }
    }
    out
}

#[test]
fn cobs_helpers_match_the_wire() {
    let frame = rows_msg(7, 3, &[0u8; 600]);
    let raw = cobs_decode(&frame[..frame.len() - 1]);
    assert_eq!(cobs_encode(&raw), frame);
}

/// Every way a frame goes wrong: its error code, and then Info and a whole frame still work.
#[test]
fn frame_errors_then_still_serving() {
    let bytes = frame_model(3, 96, false, 5);
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena = frame_arena(&model, 96 * 80 * 3 * 4);
    let mut app: FrameApp<'_, '_, NF> =
        App::new(&model, &mut arena, MockSerial::default()).unwrap();
    let (w, h, c) = (37usize, 23usize, 3usize);
    let px = pixels(w * h * c, 8);
    let row = w * c;
    let credit = (frame_payload(NF, MESSAGE_OVERHEAD) / row) as u16;
    let rows = |a: usize, b: usize| &px[a * row..b * row];
    let ready = (1, Reply::Ready(credit));
    let err = |seq: u16, e: WireErrorCode| (seq, Reply::Error(e));
    let mut round = 0u64;
    let mut still_serving = |app: &mut FrameApp<'_, '_, NF>| {
        assert_info(app, 9);
        round += 1;
        check_frame(app, &model, (w, h, 1), round, false);
    };
    use WireErrorCode::*;

    // Bad headers.
    for (bw, bh, bc, level, code) in [
        (0, 5, 3, 0, BadFrameHeader),
        (5, 0, 3, 0, BadFrameHeader),
        (97, 5, 3, 0, BadFrameHeader),
        (5, 5, 1, 0, BadFrameHeader),
        (5, 5, 4, 0, BadFrameHeader),
        (5, 5, 3, 3, NoSuchLevel),
    ] {
        let r = frames_out(&mut app, &begin(1, bw, bh, bc, level));
        assert_eq!(r, vec![err(1, code)], "{bw}x{bh}x{bc} level {level}");
        still_serving(&mut app);
    }

    // Rows with no frame begun, and after a frame ended.
    let r = frames_out(&mut app, &rows_msg(2, 0, rows(0, 1)));
    assert_eq!(r, vec![err(2, NoFrame)]);
    still_serving(&mut app);
    let r = frames_out(&mut app, &rows_msg(2, h, rows(0, 1)));
    assert_eq!(r, vec![err(2, NoFrame)]);

    // A short frame: some rows, then a new begin (refused, not served).
    let mut s = begin(1, w, h, c, 0);
    s.extend(rows_msg(2, 0, rows(0, 3)));
    s.extend(begin(3, w, h, c, 0));
    let r = frames_out(&mut app, &s);
    assert_eq!(
        r,
        vec![
            ready.clone(),
            (2, Reply::Accepted(3, credit)),
            err(3, FrameAborted)
        ]
    );
    still_serving(&mut app);

    // Another request mid-frame.
    let mut s = begin(1, w, h, c, 0);
    s.extend(encode_frame_vec(4, &Request::Info).unwrap());
    let r = frames_out(&mut app, &s);
    assert_eq!(r, vec![ready.clone(), err(4, FrameAborted)]);
    still_serving(&mut app);

    // A skipped row, a duplicated chunk, a partial row, no rows.
    let bad_chunks: [(usize, &[u8]); 4] = [
        (3, rows(3, 4)),
        (0, rows(0, 2)),
        (2, &px[2 * row..3 * row - 1]),
        (2, &[]),
    ];
    for (i, (first, bytes)) in bad_chunks.into_iter().enumerate() {
        let mut s = begin(1, w, h, c, 0);
        s.extend(rows_msg(2, 0, rows(0, 2)));
        s.extend(rows_msg(5, first, bytes));
        let r = frames_out(&mut app, &s);
        let want = vec![
            ready.clone(),
            (2, Reply::Accepted(2, credit)),
            err(5, RowOutOfOrder),
        ];
        assert_eq!(r, want, "bad chunk {i}");
        still_serving(&mut app);
    }
    // An extra row: in the last chunk, or in a frame of one chunk.
    let mut s = begin(1, w, h, c, 0);
    let mut want = vec![ready.clone()];
    let mut r0 = 0;
    let mut seq = 2;
    while h - r0 > 2 {
        let k = (credit as usize).min(h - 2 - r0);
        s.extend(rows_msg(seq, r0, rows(r0, r0 + k)));
        r0 += k;
        want.push((seq, Reply::Accepted(r0 as u16, credit.min((h - r0) as u16))));
        seq += 1;
    }
    s.extend(rows_msg(seq, r0, &[rows(r0, h), rows(0, 1)].concat()));
    want.push(err(seq, RowOutOfOrder));
    assert_eq!(frames_out(&mut app, &s), want);
    still_serving(&mut app);
    let (w1, h1) = (5, 3);
    let mut s = begin(1, w1, h1, c, 0);
    s.extend(rows_msg(2, 0, &px[..(h1 + 1) * w1 * c]));
    let r = frames_out(&mut app, &s);
    assert_eq!(r, vec![(1, Reply::Ready(h1 as u16)), err(2, RowOutOfOrder)]);
    still_serving(&mut app);

    // Garbage, a corrupted CRC, an oversized frame, mid-frame.
    let garbage: Vec<u8> = vec![9, 1, 2, 0];
    let good = rows_msg(2, 0, rows(0, 2));
    let mut raw = cobs_decode(&good[..good.len() - 1]);
    let n = raw.len();
    raw[n - 2] ^= 0x40;
    let bad_crc = cobs_encode(&raw);
    let mut oversized = vec![1u8; 2 * NF];
    oversized.push(0);
    for (what, junk, code) in [
        ("garbage", garbage, BadFrame),
        ("bad CRC", bad_crc, BadChecksum),
        ("oversized", oversized, Oversized),
    ] {
        let mut s = begin(1, w, h, c, 0);
        s.extend(rows_msg(2, 0, rows(0, 2)));
        s.extend(&junk);
        let r = frames_out(&mut app, &s);
        assert_eq!(
            r,
            vec![ready.clone(), (2, Reply::Accepted(2, credit)), err(0, code)],
            "{what}"
        );
        still_serving(&mut app);
    }
    // Random garbage mid-frame: some error, then still serving.
    let mut rng = XorShift(77);
    for _ in 0..20 {
        let mut s = begin(1, w, h, c, 0);
        s.extend((0..rng.range(1, 500)).map(|_| rng.range(1, 255) as u8));
        s.push(0);
        let r = frames_out(&mut app, &s);
        assert_eq!(r[0], ready);
        assert!(matches!(r[1..], [(0, Reply::Error(_))]), "{r:?}");
        still_serving(&mut app);
    }
}

/// A bitstream larger than the app's output buffer, and a model with no frame section.
#[test]
fn frames_that_do_not_fit_and_models_without_frames() {
    let bytes = frame_model(1, 96, false, 6);
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena = frame_arena(&model, 8);
    let mut app: FrameApp<'_, '_, NF> =
        App::new(&model, &mut arena, MockSerial::default()).unwrap();
    let (w, h) = (96, 48);
    let px = pixels(w * h, 2);
    let mut s = begin(1, w, h, 1, 2);
    let credit = frame_payload(NF, MESSAGE_OVERHEAD) / w;
    let mut r0 = 0;
    let mut seq = 2;
    while r0 < h {
        let k = credit.min(h - r0);
        s.extend(rows_msg(seq, r0, &px[r0 * w..(r0 + k) * w]));
        r0 += k;
        seq += 1;
    }
    let r = frames_out(&mut app, &s);
    // The stream outgrows 8 bytes somewhere; the rest of the rows are then refused as not
    // belonging to a frame.
    let full = r
        .iter()
        .position(|x| x.1 == Reply::Error(WireErrorCode::BitstreamFull))
        .expect("BitstreamFull");
    assert!(r[full + 1..]
        .iter()
        .all(|x| x.1 == Reply::Error(WireErrorCode::NoFrame)));
    assert_info(&mut app, 3);

    // The 28×28 model: no frames.
    let bytes = model_bytes();
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena = vec![0u8; model.header().arena_bytes as usize];
    let mut app: App<'_, '_, MockSerial, N> =
        App::new(&model, &mut arena, MockSerial::default()).unwrap();
    let r = exchange(&mut app, &begin(4, 28, 28, 1, 0));
    assert!(r[0].1.contains("BadFrameHeader"), "{r:?}");
    let r = exchange(&mut app, &encode_frame_vec(5, &Request::Info).unwrap());
    assert!(r[0].1.starts_with("Info"));
}

/// The RAM the frame path needs for the shipped grey photo model (printed with
/// `--nocapture`): the stripe arena at 320 and 640 pixels, the app's four `N` buffers for
/// one row a message, and the stripe decoder's arena.
#[test]
fn frame_ram_of_the_shipped_photo_model() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/photo-gray/model.evae"
    );
    let Ok(bytes) = std::fs::read(path) else {
        eprintln!("no {path}; skipped");
        return;
    };
    let model = Model::from_bytes(&bytes).unwrap();
    let frame = model.frame().unwrap();
    println!(
        "photo-gray: max_width {}, declared arena {} B",
        frame.max_width,
        model.header().arena_bytes
    );
    for w in [320usize, 640] {
        let scalar = stripe::required_arena::<Scalar>(&model, w).unwrap();
        let fast = stripe::required_arena::<Fast>(&model, w).unwrap();
        let n = frame_capacity(w);
        println!(
            "{w} wide: stripe arena {scalar} B (scalar), {fast} B (this build's Fast); N = {n}, 4 N = {} B",
            4 * n
        );
        let decode = edgevae_firmware::stripe_decode::required_arena::<Scalar>(&model, w);
        println!("{w} wide: stripe decoder arena {decode:?} B (scalar)");
    }
}
