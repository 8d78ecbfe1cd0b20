//! Model file: round trips, robustness against arbitrary bytes, and one test per FormatError.

use edgevae_shared::build::{synthetic, OwnedActivation, OwnedModel, SyntheticSpec};
use edgevae_shared::format::{
    FormatError, Model, Op, Section, Shape, FLAG_DSP_LAYOUT, PREAMBLE_LEN,
};
use edgevae_shared::layout;
use proptest::prelude::*;

fn small() -> OwnedModel {
    let spec = SyntheticSpec {
        input: Shape::new(8, 8, 1),
        widths: vec![4, 8],
        latent: 3,
        seed: 7,
    };
    synthetic(&spec, 0).expect("synthetic model")
}

fn parse(m: &OwnedModel) -> Result<(), FormatError> {
    let bytes = m.to_bytes_unchecked().expect("serialises");
    Model::from_bytes(&bytes).map(|_| ())
}

fn mutated(f: impl FnOnce(&mut OwnedModel)) -> Result<(), FormatError> {
    let mut m = small();
    f(&mut m);
    parse(&m)
}

/// Replace the payload of a valid file and fix the preamble's length and CRC.
fn with_payload(payload: &[u8]) -> Vec<u8> {
    let mut bytes = small().to_bytes_canonical().unwrap()[..PREAMBLE_LEN].to_vec();
    bytes[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes[12..16].copy_from_slice(&edgevae_shared::crc::crc32(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A small model whose decoder starts with a dense 16 → 32 layer (a pre-laid block).
fn with_dense16(seed: u64) -> OwnedModel {
    let spec = SyntheticSpec {
        input: Shape::new(8, 8, 1),
        widths: vec![4, 8],
        latent: 16,
        seed,
    };
    synthetic(&spec, 0).expect("synthetic model")
}

/// Offset of the pre-laid section's data (after its 8-byte header) in a file.
fn section_data(bytes: &[u8]) -> usize {
    let end = PREAMBLE_LEN + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    end.next_multiple_of(8) + 8
}

/// Recomputes the section's CRC after an edit, so that the edit reaches the block checks.
fn fix_section_crc(bytes: &mut [u8]) {
    let d = section_data(bytes);
    let crc = edgevae_shared::crc::crc32(&bytes[d..]);
    bytes[d - 4..d].copy_from_slice(&crc.to_le_bytes());
}

const ENC: Section = Section::Encoder;
const DEC: Section = Section::Decoder;

#[test]
fn valid_model_parses_and_reports_its_arena() {
    let m = small();
    let bytes = m.to_bytes().unwrap();
    let parsed = Model::from_bytes(&bytes).unwrap();
    assert_eq!(parsed.encoder().len(), 3);
    assert_eq!(parsed.decoder().len(), 4);
    // 8x8x1 -> 4x4x4 -> 2x2x8 -> 3 ; 3 -> 32 -> (2,2,8) -> 4x4x4 -> 8x8x1: largest pair is 64 + 64.
    assert_eq!(parsed.activation_bytes(), 128);
    assert_eq!(parsed.header().arena_bytes, 128);
    assert_eq!(OwnedModel::from_model(&parsed), m);
}

#[test]
fn default_architecture_is_valid() {
    let m = synthetic(&SyntheticSpec::seed_architecture(1), 0).unwrap();
    let bytes = m.to_bytes().unwrap();
    let parsed = Model::from_bytes(&bytes).unwrap();
    // conv2 (14x14x32 -> 7x7x64) and the first transposed conv hold the largest pair.
    assert_eq!(parsed.activation_bytes(), 6272 + 3136);
}

#[test]
fn preamble_errors() {
    let good = small().to_bytes_canonical().unwrap();
    assert_eq!(
        Model::from_bytes(&good[..10]),
        Err(FormatError::TooShort { len: 10 })
    );
    let mut b = good.clone();
    b[0] ^= 1;
    assert_eq!(Model::from_bytes(&b), Err(FormatError::BadMagic));
    let mut b = good.clone();
    b[4] = 4;
    assert_eq!(
        Model::from_bytes(&b),
        Err(FormatError::UnsupportedVersion { found: 4 })
    );
    // A version 2 payload announced as version 3 lacks its frame.
    let mut b = good.clone();
    b[4] = 3;
    assert_eq!(Model::from_bytes(&b), Err(FormatError::Decode));
    let mut b = good.clone();
    b[6] = 4;
    assert_eq!(
        Model::from_bytes(&b),
        Err(FormatError::UnsupportedFlags { found: 4 })
    );
    // The encoder-only flag on a file without the full model's CRC after its payload.
    let mut b = good.clone();
    b[6] = 2;
    assert_eq!(Model::from_bytes(&b), Err(FormatError::MissingCodecCrc));
    // The DSP flag on a file without the section.
    let mut b = good.clone();
    b[6] = 1;
    assert_eq!(Model::from_bytes(&b), Err(FormatError::DspLayoutFraming));
    let b = &good[..good.len() - 1];
    assert!(matches!(
        Model::from_bytes(b),
        Err(FormatError::Truncated { .. })
    ));
    let mut b = good.clone();
    b.push(0);
    assert_eq!(
        Model::from_bytes(&b),
        Err(FormatError::TrailingBytes { extra: 1 })
    );
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert!(matches!(
        Model::from_bytes(&b),
        Err(FormatError::ChecksumMismatch { .. })
    ));
}

#[test]
fn payload_errors() {
    assert_eq!(
        Model::from_bytes(&with_payload(&[0xFF; 12])),
        Err(FormatError::Decode)
    );
    let good = small().to_bytes_canonical().unwrap();
    let mut payload = good[PREAMBLE_LEN..].to_vec();
    payload.push(0);
    assert_eq!(
        Model::from_bytes(&with_payload(&payload)),
        Err(FormatError::TrailingBytes { extra: 1 })
    );
    // Seventeen layers do not fit the section's capacity (postcard encodes Vec and heapless::Vec alike).
    #[derive(serde::Serialize)]
    struct Body<'a> {
        header: edgevae_shared::Header,
        encoder: Vec<edgevae_shared::Layer<'a>>,
        decoder: Vec<edgevae_shared::Layer<'a>>,
    }
    let parsed = Model::from_bytes(&good).unwrap();
    let mut decoder = parsed.decoder().to_vec();
    let reshape = decoder[1];
    decoder.splice(1..1, std::iter::repeat_n(reshape, 14));
    let body = Body {
        header: parsed.header().clone(),
        encoder: parsed.encoder().to_vec(),
        decoder,
    };
    let bytes = with_payload(&postcard::to_allocvec(&body).unwrap());
    assert_eq!(Model::from_bytes(&bytes), Err(FormatError::Decode));
}

#[test]
fn version_1_files_still_load_without_entropy() {
    let mut m = small();
    m.entropy = None;
    let v2 = m.to_bytes_canonical().unwrap();
    // A v1 payload is the v2 payload without the trailing `None` of the entropy section.
    assert_eq!(v2.last(), Some(&0));
    let mut v1 = with_payload(&v2[PREAMBLE_LEN..v2.len() - 1]);
    v1[4] = 1;
    let parsed = Model::from_bytes(&v1).unwrap();
    assert!(parsed.entropy().is_none());
    assert_eq!(OwnedModel::from_model(&parsed), m);
    // The same bytes labelled v2 lack the entropy tag.
    let mut wrong = v1.clone();
    wrong[4] = 2;
    assert_eq!(Model::from_bytes(&wrong), Err(FormatError::Decode));
}

#[test]
fn entropy_section_round_trips_and_codes_latents() {
    let m = small();
    let bytes = m.to_bytes().unwrap();
    let parsed = Model::from_bytes(&bytes).unwrap();
    assert_eq!(OwnedModel::from_model(&parsed), m);
    let zp = parsed.header().latent_q.zero_point;
    let level = parsed.level(1).unwrap();
    assert!(parsed.level(2).is_none());
    let latent: Vec<i8> = vec![-128, 3, 127];
    let mut buf = [0u8; 16];
    let bits = level.encode(zp, &latent, &mut buf).unwrap();
    let mut back = [0i8; 3];
    level
        .decode(zp, &buf[..bits.div_ceil(8)], &mut back)
        .unwrap();
    for (d, (&q, &r)) in latent.iter().zip(&back).enumerate() {
        let step = level.steps[d] as i32;
        assert!(
            (q as i32 - r as i32).abs() <= step / 2 + 1,
            "dim {d}: {q} -> {r}"
        );
        let again = edgevae_shared::entropy::quantize_latent(r, zp, level.steps[d]);
        assert_eq!(
            again,
            edgevae_shared::entropy::quantize_latent(q, zp, level.steps[d])
        );
    }
    assert!(level.encode(zp, &latent[..2], &mut buf).is_err());
    assert!(level.decode(zp, &buf, &mut back[..2]).is_err());
}

/// Symbols of all dimensions of a level of [`small`].
fn m_symbols(level: usize) -> usize {
    small().entropy.unwrap().levels[level]
        .cdfs
        .iter()
        .map(Vec::len)
        .sum()
}

#[test]
fn entropy_errors() {
    assert_eq!(
        mutated(|m| m.entropy.as_mut().unwrap().levels.clear()),
        Err(FormatError::NoEntropyLevels)
    );
    assert_eq!(
        mutated(|m| {
            m.entropy.as_mut().unwrap().levels[1].steps.pop();
        }),
        Err(FormatError::EntropyStepsLength { level: 1 })
    );
    assert_eq!(
        mutated(|m| m.entropy.as_mut().unwrap().levels[0].steps[2] = 0),
        Err(FormatError::EntropyStep { level: 0, dim: 2 })
    );
    assert!(matches!(
        mutated(|m| {
            m.entropy.as_mut().unwrap().levels[0].cdfs[1].pop();
        }),
        Err(FormatError::EntropyTablesLength { level: 0, .. })
    ));
    assert_eq!(
        mutated(|m| {
            m.entropy.as_mut().unwrap().levels[1].values[2].push(0);
        }),
        Err(FormatError::EntropyValuesLength {
            level: 1,
            expected: m_symbols(1),
            found: m_symbols(1) + 1
        })
    );
    // A full model needs its values (only an encoder-only file may leave them out).
    assert_eq!(
        mutated(|m| {
            for v in m.entropy.as_mut().unwrap().levels[0].values.iter_mut() {
                v.clear();
            }
        }),
        Err(FormatError::EntropyValuesLength {
            level: 0,
            expected: m_symbols(0),
            found: 0
        })
    );
    assert_eq!(
        mutated(|m| m.entropy.as_mut().unwrap().levels[1].cdfs[1][0] = 5),
        Err(FormatError::EntropyTable { level: 1, dim: 1 })
    );
    assert_eq!(
        mutated(|m| {
            let t = &mut m.entropy.as_mut().unwrap().levels[0].cdfs[2];
            t[2] = t[1];
        }),
        Err(FormatError::EntropyTable { level: 0, dim: 2 })
    );
}

#[test]
fn header_errors() {
    assert_eq!(
        mutated(|m| m.header.latent = 0),
        Err(FormatError::BadHeader)
    );
    assert_eq!(
        mutated(|m| m.header.input = Shape::new(0, 8, 1)),
        Err(FormatError::BadHeader)
    );
    assert_eq!(
        mutated(|m| m.header.input_q.scale = f32::NAN),
        Err(FormatError::BadQuantParams {
            section: Section::Header,
            index: 0
        })
    );
    assert_eq!(
        mutated(|m| m.header.latent_q.zero_point ^= 1),
        Err(FormatError::LatentMismatch)
    );
    assert_eq!(
        mutated(|m| m.header.arena_bytes = 100),
        Err(FormatError::ArenaTooSmall {
            declared: 100,
            needed: 128
        })
    );
}

#[test]
fn section_and_layer_errors() {
    assert_eq!(
        mutated(|m| m.encoder.clear()),
        Err(FormatError::EmptySection { section: ENC })
    );
    assert_eq!(
        mutated(|m| m.encoder[0].output = Shape::new(4, 0, 4)),
        Err(FormatError::ZeroDimension {
            section: ENC,
            index: 0
        })
    );
    assert_eq!(
        mutated(|m| m.encoder[0].op = Op::Conv2d {
            kh: 3,
            kw: 3,
            stride: 0,
            pad: 1
        }),
        Err(FormatError::BadGeometry {
            section: ENC,
            index: 0
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[2].op = Op::ConvTranspose2d {
            kh: 4,
            kw: 4,
            stride: 2,
            pad: 4
        }),
        Err(FormatError::BadGeometry {
            section: DEC,
            index: 2
        })
    );
    assert_eq!(
        mutated(|m| m.encoder[1].input = Shape::new(4, 4, 5)),
        Err(FormatError::ShapeChain {
            section: ENC,
            index: 1
        })
    );
    assert_eq!(
        mutated(|m| m.encoder[1].input_q.zero_point = 3),
        Err(FormatError::ShapeChain {
            section: ENC,
            index: 1
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[1].output_q.zero_point = 3),
        Err(FormatError::ShapeChain {
            section: DEC,
            index: 1
        })
    );
    assert_eq!(
        mutated(|m| m.encoder[0].output.h = 5),
        Err(FormatError::OutputShape {
            section: ENC,
            index: 0
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[2].output.w = 5),
        Err(FormatError::OutputShape {
            section: DEC,
            index: 2
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[0].output = Shape::new(2, 16, 1)),
        Err(FormatError::OutputShape {
            section: DEC,
            index: 0
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[1].output = Shape::new(2, 2, 7)),
        Err(FormatError::OutputShape {
            section: DEC,
            index: 1
        })
    );
    assert_eq!(
        mutated(|m| {
            m.encoder[0].weights.pop();
        }),
        Err(FormatError::WeightsLength {
            section: ENC,
            index: 0,
            expected: 36,
            found: 35
        })
    );
    assert_eq!(
        mutated(|m| {
            m.encoder[2].bias.pop();
        }),
        Err(FormatError::ChannelParamsLength {
            section: ENC,
            index: 2
        })
    );
    assert_eq!(
        mutated(|m| m.encoder[0].output_q.scale = 0.0),
        Err(FormatError::BadQuantParams {
            section: ENC,
            index: 0
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[0].multiplier[5] = -1),
        Err(FormatError::BadRequant {
            section: DEC,
            index: 0,
            channel: 5
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[0].shift[2] = 31),
        Err(FormatError::BadRequant {
            section: DEC,
            index: 0,
            channel: 2
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[1].activation = OwnedActivation::Relu),
        Err(FormatError::BadActivation {
            section: DEC,
            index: 1
        })
    );
    assert_eq!(
        mutated(|m| {
            if let OwnedActivation::Lut { table, .. } = &mut m.decoder[3].activation {
                table.pop();
            }
        }),
        Err(FormatError::BadActivation {
            section: DEC,
            index: 3
        })
    );
    assert_eq!(
        mutated(|m| m.encoder[1].bias[3] = i32::MAX - 10),
        Err(FormatError::AccumulatorOverflow {
            section: ENC,
            index: 1,
            channel: 3
        })
    );
    assert_eq!(
        mutated(|m| m.decoder[3].activation = OwnedActivation::None),
        Err(FormatError::OutputMismatch)
    );
    assert_eq!(
        mutated(|m| {
            m.decoder[0].input = Shape::new(1, 1, 4);
            m.decoder[0].weights.extend([0; 32]);
        }),
        Err(FormatError::ShapeChain {
            section: DEC,
            index: 0
        })
    );
}

#[test]
fn errors_have_messages() {
    let e = FormatError::WeightsLength {
        section: ENC,
        index: 2,
        expected: 10,
        found: 9,
    };
    assert_eq!(
        e.to_string(),
        "encoder layer 2: 9 weight bytes, expected 10"
    );
}

#[test]
fn dsp_section_round_trips_and_matches_the_canonical_layer() {
    let m = with_dense16(3);
    let bytes = m.to_bytes().unwrap();
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), FLAG_DSP_LAYOUT);
    let parsed = Model::from_bytes(&bytes).unwrap();
    assert_eq!(OwnedModel::from_model(&parsed), m);
    // Every layer with a pre-laid layout has its block (`to_bytes` keeps them all), 8-aligned:
    // the decoder's dense 16 → 32 (16 pairs of 22 words), the 4 → 8 convolution and the
    // 8 → 4 transposed convolution (GEMM blocks); not the one-input-channel convolution, the
    // one-output-channel transposed convolution, the 32 → 16 dense or the reshapes.
    let block = parsed.dsp_block(DEC, 0).expect("a block");
    assert_eq!(block.len(), layout::dense16_block_len(32));
    let mut with_block = 0;
    for (section, layers) in [(ENC, parsed.encoder()), (DEC, parsed.decoder())] {
        for (i, l) in layers.iter().enumerate() {
            let b = parsed.dsp_block(section, i);
            assert_eq!(b.map_or(0, <[u8]>::len), layout::block_len(l));
            if let Some(b) = b {
                assert_eq!((b.as_ptr() as usize - bytes.as_ptr() as usize) % 8, 0);
                with_block += 1;
            }
        }
        assert_eq!(parsed.dsp_block(section, layers.len()), None);
    }
    assert_eq!(with_block, 3);
    // GEMM block of the 4 → 8 convolution (3×3, k = 36, padded to 40): pair 0, word 5 is
    // channel 1's elements 4 and 6.
    let conv = &m.encoder[1];
    assert!(matches!(conv.op, Op::Conv2d { .. }) && conv.input.c == 4 && conv.output.c == 8);
    let cb = parsed.dsp_block(ENC, 1).expect("a GEMM block");
    assert_eq!(cb.len(), 4 * 40 * 4);
    let cw = |j: usize| u32::from_le_bytes(cb[4 * j..4 * j + 4].try_into().unwrap());
    let wc = |i: usize| conv.weights[i] as i16 as u16 as u32;
    assert_eq!(cw(5), wc(36 + 4) | wc(36 + 6) << 16);
    assert_eq!(cw(2 * 40 - 1), 0, "padding past k");
    assert_eq!(parsed.dsp_block(DEC, 1), None);
    assert_eq!(parsed.dsp_block(Section::Header, 0), None);
    // Word by word: pair 1 (channels 2, 3), group 1, channel 3's odd inputs.
    let l = &m.decoder[0];
    let word = |j: usize| u32::from_le_bytes(block[4 * j..4 * j + 4].try_into().unwrap());
    assert_eq!(word(22) as i32, l.bias[2]);
    assert_eq!(word(23) as i32, l.bias[3]);
    let w = |c: usize, i: usize| l.weights[16 * c + i] as i16 as u16 as u32;
    assert_eq!(word(22 + 2 + 4 + 3), w(3, 5) | w(3, 7) << 16);
    assert_eq!(word(22 + 18) as i32, l.multiplier[2].wrapping_shl(1));
    assert_eq!(word(22 + 19) as i32, -(l.shift[2] as i32));
    // The canonical file (flags 0) has the same model and no blocks.
    let canonical = m.to_bytes_canonical().unwrap();
    assert!(canonical.len() < bytes.len());
    let c = Model::from_bytes(&canonical).unwrap();
    assert_eq!(c.body(), parsed.body());
    assert_eq!(c.dsp_block(DEC, 0), None);
    // A dense layer whose shifts leave the fast requantisation's domain gets no block.
    let mut m2 = m.clone();
    m2.decoder[0].shift[5] = 0;
    let b2 = m2.to_bytes().unwrap();
    let p2 = Model::from_bytes(&b2).unwrap();
    assert_eq!(p2.dsp_block(DEC, 0), None);
    assert!(p2.dsp_block(ENC, 1).is_some());
    // The writer keeps only the blocks it is asked to.
    let only_dense = m
        .to_bytes_with(|s, _, l| s == DEC && matches!(l.op, Op::Dense))
        .unwrap();
    let p3 = Model::from_bytes(&only_dense).unwrap();
    assert!(p3.dsp_block(DEC, 0).is_some() && p3.dsp_block(ENC, 1).is_none());
    assert_eq!(
        m.to_bytes_with(|_, _, _| false).unwrap(),
        m.to_bytes_canonical().unwrap()
    );
}

#[test]
fn dsp_section_errors() {
    let good = with_dense16(4).to_bytes().unwrap();
    let d = section_data(&good);
    let n_layers = {
        let m = Model::from_bytes(&good).unwrap();
        m.encoder().len() + m.decoder().len()
    };
    let enc_layers = Model::from_bytes(&good).unwrap().encoder().len();
    let table_end = (4 * n_layers).next_multiple_of(8);
    // Cut anywhere in the section, or append a byte.
    for cut in [1, 8, 9, good.len() - d] {
        let b = &good[..good.len() - cut];
        assert!(
            matches!(
                Model::from_bytes(b),
                Err(FormatError::DspLayoutFraming | FormatError::DspLayoutChecksum { .. })
            ),
            "cut {cut}"
        );
    }
    let mut b = good.clone();
    b.push(0);
    assert_eq!(
        Model::from_bytes(&b),
        Err(FormatError::TrailingBytes { extra: 1 })
    );
    // Non-zero alignment padding before the section header.
    let end = section_data(&good) - 8;
    let payload_end = PREAMBLE_LEN + u32::from_le_bytes(good[8..12].try_into().unwrap()) as usize;
    if end > payload_end {
        let mut b = good.clone();
        b[payload_end] = 1;
        assert_eq!(Model::from_bytes(&b), Err(FormatError::DspLayoutFraming));
    }
    // A flipped bit in the first block (the encoder's 4 → 8 convolution): the section CRC,
    // then (CRC fixed up) the block check; the same in the dense layer's block.
    let mut b = good.clone();
    b[d + table_end + 4 * 5] ^= 1;
    assert!(matches!(
        Model::from_bytes(&b),
        Err(FormatError::DspLayoutChecksum { .. })
    ));
    fix_section_crc(&mut b);
    assert_eq!(
        Model::from_bytes(&b),
        Err(FormatError::DspLayoutMismatch {
            section: ENC,
            index: 1
        })
    );
    let conv_block = u32::from_le_bytes(good[d + 4..d + 8].try_into().unwrap()) as usize;
    let mut b = good.clone();
    let at = d + table_end + conv_block + 4 * 5;
    b[at] ^= 1;
    assert!(matches!(
        Model::from_bytes(&b),
        Err(FormatError::DspLayoutChecksum { .. })
    ));
    fix_section_crc(&mut b);
    assert_eq!(
        Model::from_bytes(&b),
        Err(FormatError::DspLayoutMismatch {
            section: DEC,
            index: 0
        })
    );
    // A block length the layer does not call for (an encoder layer that has none).
    let mut b = good.clone();
    b[d..d + 4].copy_from_slice(&88u32.to_le_bytes());
    fix_section_crc(&mut b);
    assert_eq!(
        Model::from_bytes(&b),
        Err(FormatError::DspLayoutLength {
            section: ENC,
            index: 0,
            expected: 0,
            found: 88
        })
    );
    // The dense layer's block with a wrong length.
    let mut b = good.clone();
    let k = d + 4 * enc_layers;
    b[k..k + 4].copy_from_slice(&8u32.to_le_bytes());
    fix_section_crc(&mut b);
    assert!(matches!(
        Model::from_bytes(&b),
        Err(FormatError::DspLayoutLength {
            section: DEC,
            index: 0,
            found: 8,
            ..
        })
    ));
    // Non-zero padding after the length table (there is some: 8 layers would need none).
    if table_end > 4 * n_layers {
        let mut b = good.clone();
        b[d + 4 * n_layers] = 7;
        fix_section_crc(&mut b);
        assert_eq!(Model::from_bytes(&b), Err(FormatError::DspLayoutFraming));
    }
    // A zero block length for an eligible layer is allowed (the writer may leave it out), but
    // then the next block is read from the dense one's bytes, or the section does not add up.
    let mut b = good.clone();
    b[k..k + 4].copy_from_slice(&0u32.to_le_bytes());
    fix_section_crc(&mut b);
    assert!(matches!(
        Model::from_bytes(&b),
        Err(FormatError::DspLayoutFraming | FormatError::DspLayoutMismatch { .. })
    ));
    for e in [
        FormatError::DspLayoutFraming,
        FormatError::DspLayoutChecksum {
            stored: 1,
            computed: 2,
        },
        FormatError::DspLayoutLength {
            section: DEC,
            index: 0,
            expected: 88,
            found: 8,
        },
        FormatError::DspLayoutMismatch {
            section: DEC,
            index: 0,
        },
    ] {
        assert!(!e.to_string().is_empty());
    }
}

fn spec_strategy() -> impl Strategy<Value = SyntheticSpec> {
    (
        1usize..=3,
        1u16..=4,
        prop::collection::vec(1u16..=12, 1..=2),
        1u16..=20,
        1u16..=3,
        any::<u64>(),
    )
        .prop_map(|(mult, k, widths, latent, c, seed)| {
            let side = k * (1 << widths.len()) * mult as u16;
            SyntheticSpec {
                input: Shape::new(side, side, c),
                widths,
                latent,
                seed,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(spec in spec_strategy(), scratch in 0u32..1000) {
        let m = synthetic(&spec, scratch).unwrap();
        let bytes = m.to_bytes().unwrap();
        let parsed = Model::from_bytes(&bytes).unwrap();
        prop_assert_eq!(OwnedModel::from_model(&parsed), m.clone());
        prop_assert_eq!(parsed.header().arena_bytes as u64, parsed.activation_bytes() + scratch as u64);
        // Re-serialising the parsed model reproduces the file byte for byte.
        prop_assert_eq!(OwnedModel::from_model(&parsed).to_bytes().unwrap(), bytes.clone());
    }

    #[test]
    fn corrupted_files_never_panic(seed in any::<u64>(), edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let spec = SyntheticSpec { input: Shape::new(8, 8, 1), widths: vec![4, 8], latent: 3, seed };
        let mut bytes = synthetic(&spec, 0).unwrap().to_bytes().unwrap();
        for (at, v) in edits {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        let _ = Model::from_bytes(&bytes);
        let _ = Model::from_bytes(&bytes[..cut % bytes.len()]);
        // With a fixed-up CRC the edits reach the validator.
        let payload = bytes[PREAMBLE_LEN..].to_vec();
        let _ = Model::from_bytes(&with_payload(&payload));
    }

    #[test]
    fn corrupted_dsp_sections_never_panic_and_never_pass_unless_unchanged(seed in any::<u64>(), edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let good = with_dense16(seed).to_bytes().unwrap();
        let d = section_data(&good);
        let mut bytes = good.clone();
        for (at, v) in edits {
            let i = d + at % (bytes.len() - d);
            bytes[i] = v;
        }
        let _ = Model::from_bytes(&bytes[..d + cut % (bytes.len() - d)]);
        // With the section's CRC fixed up the edits reach the framing and block checks: a file
        // that still parses has the blocks of its canonical layers.
        fix_section_crc(&mut bytes);
        let original = Model::from_bytes(&good).unwrap();
        let parsed = Model::from_bytes(&bytes);
        if let Ok(m) = &parsed {
            for (i, l) in m.decoder().iter().enumerate() {
                if let Some(b) = m.dsp_block(DEC, i) {
                    prop_assert!(layout::block_matches(l, b));
                }
            }
            prop_assert_eq!(m.body(), original.body());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Model::from_bytes(&bytes);
        let _ = Model::from_bytes(&with_payload(&bytes));
    }
}

/// Seeds for the fuzzers: `cargo test -p edgevae-shared --features std --test format -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/model_from_bytes");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in 0..4 {
        let spec = SyntheticSpec {
            input: Shape::new(8, 8, 1),
            widths: vec![2, 3],
            latent: 2,
            seed,
        };
        let bytes = synthetic(&spec, 0).unwrap().to_bytes().unwrap();
        std::fs::write(dir.join(format!("file{seed}")), &bytes).unwrap();
        let canonical = synthetic(&spec, 0).unwrap().to_bytes_canonical().unwrap();
        std::fs::write(
            dir.join(format!("payload{seed}")),
            &canonical[PREAMBLE_LEN..],
        )
        .unwrap();
    }
    let frames =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decode");
    std::fs::create_dir_all(&frames).unwrap();
    use edgevae_shared::wire::{encode_frame_vec, Request};
    let mut stream = encode_frame_vec(1, &Request::Info).unwrap();
    stream.extend(encode_frame_vec(2, &Request::Encode { frame: &[7; 40] }).unwrap());
    stream.extend(encode_frame_vec(3, &Request::Decode { latent: &[1, 2, 3] }).unwrap());
    std::fs::write(frames.join("stream"), stream).unwrap();
}

// ---- Format version 3: fully convolutional models ----

use edgevae_shared::build::{synthetic_frame, FrameSpec};
use edgevae_shared::format::Frame;

#[test]
fn frame_models_are_version_3_and_others_stay_version_2() {
    let m = synthetic_frame(&FrameSpec::photo(3, 1)).unwrap();
    let bytes = m.to_bytes().unwrap();
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 3);
    let parsed = Model::from_bytes(&bytes).unwrap();
    assert_eq!(
        parsed.frame(),
        Some(&Frame {
            total_stride: 16,
            max_width: 640
        })
    );
    assert_eq!(OwnedModel::from_model(&parsed).to_bytes().unwrap(), bytes);
    let plain = small().to_bytes().unwrap();
    assert_eq!(u16::from_le_bytes([plain[4], plain[5]]), 2);
    assert_eq!(Model::from_bytes(&plain).unwrap().frame(), None);
    // Truncating the frame off a version 3 payload is a decode error, trailing bytes too.
    let mut m2 = m.clone();
    m2.frame = None;
    let v2 = m2.to_bytes_canonical().unwrap();
    let mut b = v2.clone();
    b[4] = 3;
    assert_eq!(Model::from_bytes(&b), Err(FormatError::Decode));
}

#[test]
fn frame_header_errors() {
    for f in [
        Frame {
            total_stride: 8,
            max_width: 640,
        },
        Frame {
            total_stride: 16,
            max_width: 600,
        },
        Frame {
            total_stride: 16,
            max_width: 0,
        },
        Frame {
            total_stride: 0,
            max_width: 640,
        },
    ] {
        let mut m = synthetic_frame(&FrameSpec::photo(1, 2)).unwrap();
        m.frame = Some(f);
        assert_eq!(parse(&m), Err(FormatError::FrameHeader), "{f:?}");
    }
}

#[test]
fn frame_layer_errors() {
    // A model with a dense layer cannot scale with the frame.
    let mut m = small();
    m.frame = Some(Frame {
        total_stride: 8,
        max_width: 64,
    });
    assert_eq!(
        parse(&m),
        Err(FormatError::FrameLayer {
            section: Section::Encoder,
            index: 2
        })
    );
    assert_eq!(
        Frame::halo(Op::Conv2d {
            kh: 5,
            kw: 5,
            stride: 2,
            pad: 2
        }),
        (2, 2)
    );
}

// ---- Encoder-only files (FLAG_ENCODER_ONLY) ----

use edgevae_shared::format::FLAG_ENCODER_ONLY;

#[test]
fn encoder_only_files_keep_the_encoder_and_name_the_full_model() {
    for spec in [FrameSpec::photo(1, 3), FrameSpec::photo(3, 4)] {
        let full = synthetic_frame(&spec).unwrap().to_bytes().unwrap();
        let model = Model::from_bytes(&full).unwrap();
        let cut = model.to_encoder_only_bytes().unwrap();
        assert!(
            cut.len() < full.len() / 2,
            "{} of {}",
            cut.len(),
            full.len()
        );
        let flags = u16::from_le_bytes([cut[6], cut[7]]);
        assert_eq!(flags & FLAG_ENCODER_ONLY, FLAG_ENCODER_ONLY);
        let c = Model::from_bytes(&cut).unwrap();
        assert!(c.encoder_only() && !model.encoder_only());
        assert_eq!(c.crc(), model.crc());
        assert_ne!(c.payload_crc(), model.payload_crc());
        assert!(c.decoder().is_empty());
        assert_eq!(c.encoder(), model.encoder());
        // The same steps and tables, without the decoded values: it codes the same bits and
        // refuses to decode.
        let (ce, me) = (c.entropy().unwrap(), model.entropy().unwrap());
        assert_eq!(ce.levels.len(), me.levels.len());
        let zp = model.header().latent_q.zero_point;
        for (cl, ml) in ce.levels.iter().zip(&me.levels) {
            assert_eq!((cl.steps, cl.cdfs), (ml.steps, ml.cdfs));
            assert!(cl.values.is_empty() && !ml.values.is_empty());
            let latent: Vec<i8> = (0..ml.steps.len()).map(|d| (d * 37 % 256) as i8).collect();
            let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
            let bits = ml.encode(zp, &latent, &mut a).unwrap();
            assert_eq!(cl.encode(zp, &latent, &mut b).unwrap(), bits);
            assert_eq!(a[..bits.div_ceil(8)], b[..bits.div_ceil(8)]);
            let mut back = vec![0i8; latent.len()];
            assert_eq!(
                cl.decode(zp, &a, &mut back),
                Err(edgevae_shared::entropy::CodingError::NoValues)
            );
            ml.decode(zp, &a, &mut back).unwrap();
        }
        assert_eq!(c.frame(), model.frame());
        assert_eq!(c.header(), model.header());
        for i in 0..c.encoder().len() {
            assert_eq!(
                c.dsp_block(Section::Encoder, i),
                model.dsp_block(Section::Encoder, i)
            );
        }
        // Cutting again gives the same file.
        assert_eq!(c.to_encoder_only_bytes().unwrap(), cut);
    }
}

#[test]
fn encoder_only_framing_errors() {
    let full = synthetic_frame(&FrameSpec::photo(1, 5)).unwrap();
    let cut = Model::from_bytes(&full.to_bytes().unwrap())
        .unwrap()
        .to_encoder_only_bytes()
        .unwrap();
    // Without its DSP section, the codec CRC is the file's last four bytes.
    let body_len = u32::from_le_bytes([cut[8], cut[9], cut[10], cut[11]]) as usize;
    let plain: Vec<u8> = {
        let mut b = cut[..16 + body_len + 4].to_vec();
        let flags = u16::from_le_bytes([b[6], b[7]]) & !FLAG_DSP_LAYOUT;
        b[6..8].copy_from_slice(&flags.to_le_bytes());
        b
    };
    assert!(Model::from_bytes(&plain).unwrap().encoder_only());
    for short in 1..=4 {
        assert_eq!(
            Model::from_bytes(&plain[..plain.len() - short]),
            Err(FormatError::MissingCodecCrc)
        );
    }
    let mut longer = plain.clone();
    longer.push(0);
    assert_eq!(
        Model::from_bytes(&longer),
        Err(FormatError::TrailingBytes { extra: 1 })
    );
    // The flag cleared: a full model without a decoder does not validate.
    let mut unflagged = plain[..plain.len() - 4].to_vec();
    unflagged[6..8].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(
        Model::from_bytes(&unflagged),
        Err(FormatError::EmptySection {
            section: Section::Decoder
        })
    );
    // The flag set on a full model: decoder layers are refused.
    let mut flagged = full.to_bytes_canonical().unwrap();
    flagged[6..8].copy_from_slice(&FLAG_ENCODER_ONLY.to_le_bytes());
    flagged.extend_from_slice(&[0; 4]);
    assert_eq!(
        Model::from_bytes(&flagged),
        Err(FormatError::EncoderOnlyWithDecoder)
    );
    // Unknown flags are still refused.
    let mut unknown = plain.clone();
    unknown[6..8].copy_from_slice(&(FLAG_ENCODER_ONLY | 4).to_le_bytes());
    assert_eq!(
        Model::from_bytes(&unknown),
        Err(FormatError::UnsupportedFlags {
            found: FLAG_ENCODER_ONLY | 4
        })
    );
}
