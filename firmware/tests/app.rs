//! The device app over a mock serial port: every request is answered exactly as the engine
//! computes, and garbage, corrupted and oversized frames are answered with errors while the app
//! keeps serving.

use std::collections::VecDeque;
use std::convert::Infallible;

use edgevae_firmware::app::App;
use edgevae_firmware::engine::{required_arena, Engine, Fast, Scalar};
use edgevae_shared::build::{synthetic, SyntheticSpec, XorShift};
use edgevae_shared::format::Model;
use edgevae_shared::wire::{
    decode_frame, encode_frame_vec, frame_capacity, Request, Response, WireErrorCode,
};
use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{ErrorType, Read, Write};

#[derive(Default)]
struct MockSerial {
    rx: VecDeque<u8>,
    tx: Vec<u8>,
}

impl ErrorType for MockSerial {
    type Error = Infallible;
}
impl Read<u8> for MockSerial {
    fn read(&mut self) -> nb::Result<u8, Infallible> {
        self.rx.pop_front().ok_or(nb::Error::WouldBlock)
    }
}
impl Write<u8> for MockSerial {
    fn write(&mut self, b: u8) -> nb::Result<(), Infallible> {
        self.tx.push(b);
        Ok(())
    }
    fn flush(&mut self) -> nb::Result<(), Infallible> {
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
