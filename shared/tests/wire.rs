//! Wire protocol: round trips, stream resynchronisation, and one test per FrameError.

use edgevae_shared::format::{QParams, Shape};
use edgevae_shared::wire::{
    decode_frame, encode_frame, encode_frame_vec, frame_capacity, frame_payload, DeviceInfo, Feed,
    FrameError, FrameReader, KernelPath, Request, Response, WireErrorCode, CHUNK_OVERHEAD,
    MESSAGE_OVERHEAD,
};
use proptest::prelude::*;

fn strip(frame: &[u8]) -> Vec<u8> {
    assert_eq!(frame.last(), Some(&0), "frames end in a zero delimiter");
    assert!(
        !frame[..frame.len() - 1].contains(&0),
        "COBS removes zeros inside the frame"
    );
    frame[..frame.len() - 1].to_vec()
}

fn info() -> Response<'static> {
    Response::Info(DeviceInfo {
        format_version: 1,
        model_name: heapless::String::try_from("seed-z16-int8-xxxxxxxxxxxxxxxxxx").unwrap(),
        model_crc: 0xDEAD_BEEF,
        input: Shape::new(28, 28, 1),
        latent: 16,
        latent_q: QParams {
            scale: 0.0123,
            zero_point: -3,
        },
        arena_bytes: 12_345,
        kernels: KernelPath::CortexMDsp,
        levels: 255,
    })
}

#[test]
fn info_fits_its_bound() {
    let frame = encode_frame_vec(65535, &info()).unwrap();
    assert!(
        frame.len() <= frame_capacity(0),
        "{} > {}",
        frame.len(),
        frame_capacity(0)
    );
    let mut raw = strip(&frame);
    let (seq, back): (u16, Response) = decode_frame(&mut raw).unwrap();
    assert_eq!((seq, back), (65535, info()));
}

#[test]
fn frame_errors() {
    assert_eq!(decode_frame::<Request>(&mut []), Err(FrameError::Empty));
    // A COBS code byte promising more bytes than follow.
    assert_eq!(
        decode_frame::<Request>(&mut [9, 1, 2]),
        Err(FrameError::Cobs)
    );
    assert_eq!(
        decode_frame::<Request>(&mut [3, 1, 2]),
        Err(FrameError::TooShort)
    );
    let mut raw = strip(&encode_frame_vec(7, &Request::Info).unwrap());
    let n = raw.len();
    raw[n - 1] ^= 0x01;
    if raw[n - 1] == 0 {
        raw[n - 1] = 0x80;
    }
    assert!(matches!(
        decode_frame::<Request>(&mut raw),
        Err(FrameError::Checksum { .. })
    ));
    // A response frame read as a request: valid CRC, unknown variant.
    let mut raw = strip(&encode_frame_vec(7, &Response::Error(WireErrorCode::Engine)).unwrap());
    assert_eq!(decode_frame::<Request>(&mut raw), Err(FrameError::Decode));
    // A valid message with an extra byte before the CRC.
    let mut body = postcard::to_allocvec(&(7u16, Request::Info)).unwrap();
    body.push(0x55);
    body.extend_from_slice(&edgevae_shared::crc::crc32(&body).to_le_bytes());
    let mut raw = cobs::encode_vec(&body);
    assert_eq!(
        decode_frame::<Request>(&mut raw),
        Err(FrameError::TrailingBytes { extra: 1 })
    );
    // Encoding into buffers that are too small.
    let payload = [1u8; 100];
    let (mut work, mut out) = ([0u8; 50], [0u8; 200]);
    assert_eq!(
        encode_frame(1, &Request::Encode { frame: &payload }, &mut work, &mut out),
        Err(FrameError::BufferTooSmall)
    );
    let (mut work, mut out) = ([0u8; 200], [0u8; 50]);
    assert_eq!(
        encode_frame(1, &Request::Encode { frame: &payload }, &mut work, &mut out),
        Err(FrameError::BufferTooSmall)
    );
    // Oversized frames are dropped whole, reported once, and the next frame is read.
    let mut reader = FrameReader::<16>::new();
    for _ in 0..40 {
        assert_eq!(reader.push(7), Feed::Pending);
    }
    assert_eq!(reader.push(0), Feed::Overflow);
    let good = encode_frame_vec(3, &Request::Info).unwrap();
    let mut got = None;
    for &b in &good {
        if let Feed::Frame(f) = reader.push(b) {
            got = Some(decode_frame::<Request>(f).map(|(s, r)| (s, format!("{r:?}"))));
        }
    }
    assert_eq!(got, Some(Ok((3, "Info".to_string()))));
    assert_eq!(
        WireErrorCode::from(FrameError::Oversized),
        WireErrorCode::Oversized
    );
    assert_eq!(
        FrameError::Checksum {
            stored: 1,
            computed: 2
        }
        .to_string(),
        "frame CRC mismatch: stored 0x00000001, computed 0x00000002"
    );
}

fn request() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (0u8..7, prop::collection::vec(any::<u8>(), 0..900))
}

fn make(kind: u8, data: &[u8]) -> Request<'_> {
    match kind {
        0 => Request::Info,
        1 => Request::Encode { frame: data },
        2 => Request::Decode { latent: data },
        3 => Request::Compress {
            level: 255,
            frame: data,
        },
        4 => Request::Decompress {
            level: 7,
            bitstream: data,
        },
        5 => Request::FrameBegin {
            width: data.len() as u16,
            height: u16::MAX,
            channels: 3,
            level: 255,
        },
        _ => Request::FrameRows {
            first_row: u16::MAX,
            rows: data,
        },
    }
}

/// The existing messages keep their postcard tags (new variants are appended): the byte after
/// the sequence number (one byte for seq < 128).
#[test]
fn message_tags_are_stable() {
    let tag = |frame: Vec<u8>| {
        let mut raw = frame[..frame.len() - 1].to_vec();
        let n = cobs::decode_in_place(&mut raw).unwrap();
        raw.truncate(n);
        raw[1]
    };
    let d: &[u8] = &[1, 2];
    for (k, want) in (0..7).zip(0u8..) {
        assert_eq!(tag(encode_frame_vec(5, &make(k, d)).unwrap()), want);
    }
    let responses = [
        Response::Latent { code: d },
        Response::Bitstream { bits: 3, bytes: d },
        Response::Image { pixels: d },
        Response::Error(WireErrorCode::NoSuchLevel),
        Response::FrameReady { credit: 1 },
        Response::RowsAccepted {
            next_row: 1,
            credit: 1,
        },
        Response::BitstreamChunk {
            offset: 0,
            total_bits: 9,
            last: true,
            bytes: d,
        },
    ];
    let tags: Vec<u8> = responses
        .iter()
        .map(|r| tag(encode_frame_vec(5, r).unwrap()))
        .collect();
    assert_eq!(tags, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(tag(encode_frame_vec(5, &info()).unwrap()), 0);
    // WireErrorCode's existing codes keep their numbers too.
    let code = |c| {
        let mut raw = encode_frame_vec(5, &Response::Error(c)).unwrap();
        raw.pop();
        let n = cobs::decode_in_place(&mut raw).unwrap();
        raw[2..n - 4].to_vec()
    };
    assert_eq!(code(WireErrorCode::NoSuchLevel), [6]);
    assert_eq!(code(WireErrorCode::BitstreamFull), [11]);
    assert_eq!(code(WireErrorCode::NoDecoder), [12]);
}

/// A frame of the most payload `frame_payload` allows, with the largest varints and no zero
/// bytes to help COBS, fits its capacity, delimiter included, and one byte more may not.
#[test]
fn frame_payload_fits_its_capacity() {
    for cap in (0..40).chain([270, 337, 658, 1024, 2048, 4096, 16_384]) {
        let rows = frame_payload(cap, MESSAGE_OVERHEAD);
        let data = vec![0xFFu8; rows];
        let f = encode_frame_vec(
            u16::MAX,
            &Request::FrameRows {
                first_row: u16::MAX,
                rows: &data,
            },
        )
        .unwrap();
        assert!(rows == 0 || f.len() <= cap, "{cap}: {} > {cap}", f.len());
        let chunk = frame_payload(cap, CHUNK_OVERHEAD);
        let data = vec![0xFFu8; chunk];
        let resp = Response::BitstreamChunk {
            offset: u32::MAX,
            total_bits: u32::MAX,
            last: true,
            bytes: &data,
        };
        let f = encode_frame_vec(u16::MAX, &resp).unwrap();
        assert!(chunk == 0 || f.len() <= cap, "{cap}: {} > {cap}", f.len());
        // Through the fixed buffers the device uses.
        if chunk > 0 {
            let (mut work, mut out) = (vec![0u8; cap], vec![0u8; cap]);
            assert!(encode_frame(u16::MAX, &resp, &mut work, &mut out).is_ok());
        }
        // Not far from the most: a payload 2 % + 3 bytes larger would not fit the overhead.
        assert!(
            rows + MESSAGE_OVERHEAD + 2 + cap / 50 + 3 >= cap,
            "{cap}: {rows}"
        );
    }
}

proptest! {
    #[test]
    fn requests_round_trip(seq in any::<u16>(), (kind, data) in request()) {
        let req = make(kind, &data);
        let mut work = vec![0u8; frame_capacity(data.len())];
        let mut out = vec![0u8; frame_capacity(data.len())];
        let n = encode_frame(seq, &req, &mut work, &mut out).unwrap();
        prop_assert_eq!(&encode_frame_vec(seq, &req).unwrap()[..], &out[..n]);
        let mut raw = strip(&out[..n]);
        let (s, back): (u16, Request) = decode_frame(&mut raw).unwrap();
        prop_assert_eq!(s, seq);
        prop_assert_eq!(back, make(kind, &data));
    }

    #[test]
    fn responses_round_trip(seq in any::<u16>(), data in prop::collection::vec(any::<u8>(), 0..900), kind in 0u8..8, n in any::<u32>()) {
        let resp = match kind {
            0 => Response::Latent { code: &data },
            1 => Response::Image { pixels: &data },
            2 => Response::Bitstream { bits: u16::MAX, bytes: &data },
            3 => Response::FrameReady { credit: n as u16 },
            4 => Response::RowsAccepted { next_row: (n >> 16) as u16, credit: n as u16 },
            5 => Response::BitstreamChunk { offset: n, total_bits: n ^ 0xFFFF_FFFF, last: n % 2 == 0, bytes: &data },
            6 => Response::Error(WireErrorCode::RowOutOfOrder),
            _ => Response::Error(WireErrorCode::WrongLength),
        };
        let frame = encode_frame_vec(seq, &resp).unwrap();
        let overhead = if kind == 5 { CHUNK_OVERHEAD - MESSAGE_OVERHEAD } else { 0 };
        prop_assert!(frame.len() <= frame_capacity(data.len() + overhead));
        let mut raw = strip(&frame);
        let (s, back): (u16, Response) = decode_frame(&mut raw).unwrap();
        prop_assert_eq!((s, back), (seq, resp));
    }

    /// Garbage between frames costs at most the frame it runs into; the stream resynchronises.
    #[test]
    fn stream_resynchronises(chunks in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..64), any::<u16>(), request()), 1..12)) {
        let mut reader = FrameReader::<1024>::new();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for (garbage, seq, (kind, data)) in &chunks {
            let mut stream = garbage.clone();
            stream.push(0);
            stream.extend(encode_frame_vec(*seq, &make(*kind, data)).unwrap());
            expected.push(*seq);
            for b in stream {
                match reader.push(b) {
                    Feed::Frame(f) => {
                        if let Ok((s, r)) = decode_frame::<Request>(f) {
                            got.push((s, format!("{r:?}")));
                        }
                    }
                    Feed::Pending | Feed::Overflow => {}
                }
            }
        }
        // Every real frame arrives (garbage could, rarely, itself decode: allow extra frames).
        let seqs: Vec<u16> = got.iter().map(|g| g.0).collect();
        let mut it = seqs.iter();
        for s in expected {
            prop_assert!(it.any(|&x| x == s), "frame {} lost", s);
        }
    }

    #[test]
    fn arbitrary_frames_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut copy = bytes.clone();
        let _ = decode_frame::<Request>(&mut bytes);
        let _ = decode_frame::<Response>(&mut copy);
    }
}
