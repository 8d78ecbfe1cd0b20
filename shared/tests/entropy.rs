//! The entropy coder: round trips, the rate against the ideal code length, termination, and
//! garbage input.

use edgevae_shared::entropy::{
    dequantize_latent, quantize_latent, symbol_range, Cdf, CodingError, Decoder, Encoder,
};
use proptest::prelude::*;

/// A table from frequencies summing to 2^16.
fn table(freqs: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut c = 0u32;
    for f in freqs {
        out.extend_from_slice(&(c as u16).to_le_bytes());
        c += f;
    }
    assert_eq!(c, 1 << 16);
    out
}

/// Frequencies >= 1 summing to 2^16 from arbitrary weights.
fn normalise(weights: &[u32]) -> Vec<u32> {
    let n = weights.len() as u64;
    let sum: u64 = weights.iter().map(|&w| w as u64).sum::<u64>().max(1);
    let spare = (1u64 << 16) - n;
    let mut f: Vec<u32> = weights
        .iter()
        .map(|&w| 1 + (w as u64 * spare / sum) as u32)
        .collect();
    let short = (1u32 << 16) - f.iter().sum::<u32>();
    f[0] += short;
    f
}

fn cost(cdf: &Cdf<'_>, s: usize) -> f64 {
    16.0 - ((cdf.at(s + 1) - cdf.at(s)) as f64).log2()
}

fn code(tables: &[Vec<u8>], symbols: &[usize]) -> (Vec<u8>, usize, f64) {
    let mut buf = vec![0xAAu8; 4 + symbols.len() * 2 + 8];
    let mut enc = Encoder::new(&mut buf);
    let mut ideal = 0.0;
    for (i, &s) in symbols.iter().enumerate() {
        let cdf = Cdf::new(&tables[i % tables.len()]).unwrap();
        enc.encode(&cdf, s).unwrap();
        ideal += cost(&cdf, s);
    }
    let bits = enc.finish().unwrap();
    buf.truncate(bits.div_ceil(8));
    (buf, bits, ideal)
}

#[test]
fn round_trip_costs_at_most_one_bit_over_ideal() {
    let t = table(&[30000, 20000, 10000, 5536]);
    let symbols = [0usize, 1, 2, 3, 0, 0, 1, 3, 2, 2, 0];
    let (buf, bits, ideal) = code(std::slice::from_ref(&t), &symbols);
    assert!(
        (bits as f64) <= ideal + 1.01,
        "{bits} bits for {ideal:.2} ideal"
    );
    let cdf = Cdf::new(&t).unwrap();
    let mut dec = Decoder::new(&buf);
    for &s in &symbols {
        assert_eq!(dec.decode(&cdf), s);
    }
}

#[test]
fn certain_symbols_cost_nothing() {
    let t = table(&[65535, 1]);
    let (buf, bits, _) = code(std::slice::from_ref(&t), &[0; 16]);
    assert_eq!((bits, buf.len()), (0, 0));
    let cdf = Cdf::new(&t).unwrap();
    let mut dec = Decoder::new(&[]);
    for _ in 0..16 {
        assert_eq!(dec.decode(&cdf), 0);
    }
}

#[test]
fn the_unused_tail_of_the_last_byte_is_zero() {
    let t = table(&[1 << 15, 1 << 14, 1 << 14]);
    for s in 0..3 {
        let (buf, bits, _) = code(std::slice::from_ref(&t), &[s, 2, 1, s]);
        if bits % 8 != 0 {
            let last = buf[buf.len() - 1];
            assert_eq!(
                last & (0xFF >> (bits % 8)),
                0,
                "bits {bits} last {last:#04x}"
            );
        }
    }
}

#[test]
fn bad_tables_and_symbols_are_errors() {
    assert_eq!(Cdf::new(&[]), Err(CodingError::BadTable));
    assert_eq!(Cdf::new(&[1, 0]), Err(CodingError::BadTable));
    assert_eq!(Cdf::new(&[0, 0, 0, 0]), Err(CodingError::BadTable));
    assert_eq!(Cdf::new(&[0, 0, 5]), Err(CodingError::BadTable));
    assert_eq!(Cdf::new(&vec![0; 514]), Err(CodingError::BadTable));
    let t = table(&[1 << 15, 1 << 15]);
    let cdf = Cdf::new(&t).unwrap();
    let mut buf = [0u8; 1];
    let mut enc = Encoder::new(&mut buf);
    assert_eq!(enc.encode(&cdf, 2), Err(CodingError::SymbolOutOfRange));
    let mut tiny = [0u8; 1];
    let mut enc = Encoder::new(&mut tiny);
    let mut r = Ok(());
    for _ in 0..16 {
        r = r.and(enc.encode(&cdf, 1));
    }
    assert_eq!(r, Err(CodingError::OutputFull));
}

#[test]
fn latent_quantization_covers_every_int8_value() {
    assert_eq!(symbol_range(0, 1), (-128, 127));
    for zp in [-128i8, -7, 0, 5, 127] {
        for step in [1u8, 2, 3, 7, 64, 255] {
            let (lo, hi) = symbol_range(zp, step);
            for q in -128i8..=127 {
                let s = quantize_latent(q, zp, step);
                assert!(lo <= s && s <= hi, "zp {zp} step {step} q {q}");
                let back = dequantize_latent(s, zp, step);
                assert!((back as i32 - q as i32).abs() <= step as i32 / 2 + 1);
            }
            assert_eq!(quantize_latent(-128, zp, step), lo);
            assert_eq!(quantize_latent(127, zp, step), hi);
        }
    }
}

fn tables_and_symbols() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<usize>)> {
    prop::collection::vec(prop::collection::vec(0u32..1000, 1..40), 1..5).prop_flat_map(|ws| {
        let tables: Vec<Vec<u8>> = ws.iter().map(|w| table(&normalise(w))).collect();
        let lens: Vec<usize> = ws.iter().map(Vec::len).collect();
        let n = lens.len();
        let symbols =
            prop::collection::vec(any::<prop::sample::Index>(), 0..80).prop_map(move |idx| {
                idx.iter()
                    .enumerate()
                    .map(|(i, x)| x.index(lens[i % n]))
                    .collect::<Vec<_>>()
            });
        (Just(tables), symbols)
    })
}

proptest! {
    #[test]
    fn any_symbols_round_trip_within_one_bit((tables, symbols) in tables_and_symbols()) {
        let (buf, bits, ideal) = code(&tables, &symbols);
        prop_assert!((bits as f64) <= ideal + 1.01, "{} bits, ideal {:.3}", bits, ideal);
        let mut dec = Decoder::new(&buf);
        for (i, &s) in symbols.iter().enumerate() {
            let cdf = Cdf::new(&tables[i % tables.len()]).unwrap();
            prop_assert_eq!(dec.decode(&cdf), s);
        }
    }

    #[test]
    fn garbage_decodes_to_symbols_in_range(bytes in prop::collection::vec(any::<u8>(), 0..40),
                                           (tables, _) in tables_and_symbols()) {
        let mut dec = Decoder::new(&bytes);
        for i in 0..100 {
            let cdf = Cdf::new(&tables[i % tables.len()]).unwrap();
            prop_assert!(dec.decode(&cdf) < cdf.len());
        }
    }

    /// Tables taken on trust (`from_validated`) that are not increasing give wrong symbols,
    /// never a panic, on either side.
    #[test]
    fn unvalidated_tables_never_panic(table in prop::collection::vec(any::<u8>(), 2..64),
                                      symbols in prop::collection::vec(any::<usize>(), 0..40),
                                      bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let table = &table[..table.len() / 2 * 2];
        let cdf = Cdf::from_validated(table).unwrap();
        let mut out = [0u8; 256];
        let mut enc = Encoder::new(&mut out);
        for s in symbols {
            let _ = enc.encode(&cdf, s % cdf.len());
        }
        let _ = enc.finish();
        let mut dec = Decoder::new(&bytes);
        for _ in 0..40 {
            prop_assert!(dec.decode(&cdf) < cdf.len());
        }
    }
}
