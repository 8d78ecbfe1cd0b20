#![no_main]
//! Arbitrary bytes into the codec's bitstream decoder (every level of a synthetic model), and
//! arbitrary latents through encode → decode, which must give back the same symbols.
use edgevae_shared::build::{synthetic, SyntheticSpec};
use edgevae_shared::entropy::quantize_latent;
use edgevae_shared::format::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let owned = synthetic(&SyntheticSpec::seed_architecture(3), 0).expect("synthetic model");
    let bytes = owned.to_bytes().expect("valid");
    let model = Model::from_bytes(&bytes).expect("parses");
    let zp = model.header().latent_q.zero_point;
    let n = model.header().latent as usize;
    for level in &model.entropy().expect("synthetic models carry tables").levels {
        let mut latent = vec![0i8; n];
        level.decode(zp, data, &mut latent).expect("any bytes decode");
        let input: Vec<i8> = (0..n).map(|i| *data.get(i).unwrap_or(&0) as i8).collect();
        let mut out = vec![0u8; 4 * n + 8];
        let bits = level.encode(zp, &input, &mut out).expect("fits");
        level.decode(zp, &out[..bits.div_ceil(8)], &mut latent).expect("decodes");
        for d in 0..n {
            let step = level.steps[d];
            assert_eq!(quantize_latent(latent[d], zp, step), quantize_latent(input[d], zp, step));
        }
    }
});
