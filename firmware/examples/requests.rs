//! Writes `N` request frames to stdout, for counting the instructions of one encode or decode of
//! `stdio_app` (run it with N requests and with none, subtract, divide by N; see `boards/BENCH.md`):
//!
//!     cargo run -p edgevae-firmware --example requests -- encode 50 > /tmp/enc50.bin
//!
//! `encode`: a 28×28 test pattern (`Request::Encode`); `decode`: a 16-byte latent
//! (`Request::Decode`). Responses are not read: the app answers on stdout, which the caller drops.
use std::io::Write as _;

use edgevae_shared::wire::{encode_frame_vec, Request};

fn main() {
    let mut args = std::env::args().skip(1);
    let (kind, n) = match (args.next(), args.next().and_then(|s| s.parse::<u16>().ok())) {
        (Some(k), Some(n)) if k == "encode" || k == "decode" => (k, n),
        _ => {
            eprintln!("usage: requests encode|decode N");
            std::process::exit(2);
        }
    };
    let image: Vec<u8> = (0..784u32).map(|i| (i * 37 % 251) as u8).collect();
    let latent: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(29)).collect();
    let mut out = Vec::new();
    for seq in 0..n {
        let req = if kind == "encode" {
            Request::Encode { frame: &image }
        } else {
            Request::Decode { latent: &latent }
        };
        match encode_frame_vec(seq, &req) {
            Ok(f) => out.extend_from_slice(&f),
            Err(e) => {
                eprintln!("requests: {e:?}");
                std::process::exit(1);
            }
        }
    }
    if let Err(e) = std::io::stdout().write_all(&out) {
        eprintln!("requests: {e}");
        std::process::exit(1);
    }
}
