//! Wire protocol: round trips, stream resynchronisation, and one test per FrameError.

use edgevae_shared::format::{QParams, Shape};
use edgevae_shared::wire::{
    decode_frame, encode_frame, encode_frame_vec, frame_capacity, DeviceInfo, Feed, FrameError,
    FrameReader, KernelPath, Request, Response, WireErrorCode,
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
    (0u8..5, prop::collection::vec(any::<u8>(), 0..900))
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
        _ => Request::Decompress {
            level: 7,
            bitstream: data,
        },
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
    fn responses_round_trip(seq in any::<u16>(), data in prop::collection::vec(any::<u8>(), 0..900), kind in 0u8..4) {
        let resp = match kind {
            0 => Response::Latent { code: &data },
            1 => Response::Image { pixels: &data },
            2 => Response::Bitstream { bits: u16::MAX, bytes: &data },
            _ => Response::Error(WireErrorCode::WrongLength),
        };
        let frame = encode_frame_vec(seq, &resp).unwrap();
        prop_assert!(frame.len() <= frame_capacity(data.len()));
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
