#![no_main]
//! Arbitrary bytes as a serial stream: the frame reader splits them, every frame is decoded as a
//! request and as a response, and a decoded message must survive re-encoding.
use edgevae_shared::wire::{decode_frame, encode_frame_vec, Feed, FrameReader, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = FrameReader::<1100>::new();
    for &b in data {
        if let Feed::Frame(f) = reader.push(b) {
            let mut copy = f.to_vec();
            if let Ok((seq, req)) = decode_frame::<Request>(f) {
                let mut again = encode_frame_vec(seq, &req).expect("re-encodes");
                again.pop();
                let back = decode_frame::<Request>(&mut again).expect("decodes again");
                assert_eq!(back, (seq, req));
            }
            let _ = decode_frame::<Response>(&mut copy);
        }
    }
});
