#![no_main]
//! Arbitrary bytes into the model parser, raw and with a fixed-up preamble so that mutations reach
//! the validator past the CRC check.
use edgevae_shared::format::{Model, FLAG_DSP_LAYOUT, FLAG_ENCODER_ONLY, FORMAT_VERSION, MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Model::from_bytes(data);
    let mut file = Vec::with_capacity(data.len() + 16);
    file.extend_from_slice(&MAGIC);
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&0u16.to_le_bytes());
    file.extend_from_slice(&(data.len() as u32).to_le_bytes());
    file.extend_from_slice(&edgevae_shared::crc::crc32(data).to_le_bytes());
    file.extend_from_slice(data);
    // The same bytes as a file with the pre-laid DSP section flag, the encoder-only flag, or
    // both: whatever follows the declared payload is parsed as the full model's CRC and the
    // section (its framing, CRC and blocks).
    if data.len() >= 4 {
        let payload = &data[..data.len() / 2];
        for flags in [FLAG_DSP_LAYOUT, FLAG_ENCODER_ONLY, FLAG_DSP_LAYOUT | FLAG_ENCODER_ONLY] {
            let mut flagged = file[..4].to_vec();
            flagged.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            flagged.extend_from_slice(&flags.to_le_bytes());
            flagged.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            flagged.extend_from_slice(&edgevae_shared::crc::crc32(payload).to_le_bytes());
            flagged.extend_from_slice(data);
            let _ = Model::from_bytes(&flagged);
        }
    }
    if let Ok(m) = Model::from_bytes(&file) {
        // A model that parses re-serialises to a file that parses to the same model.
        let owned = edgevae_shared::build::OwnedModel::from_model(&m);
        let again = owned.to_bytes().expect("a valid model re-serialises");
        let back = Model::from_bytes(&again).expect("and parses again");
        assert_eq!(edgevae_shared::build::OwnedModel::from_model(&back), owned);
    };
});
