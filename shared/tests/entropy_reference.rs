//! The coder as it was first written (one loop iteration per output bit, one bit written at a
//! time), kept as the definition of the bitstream: the fast coder of `entropy.rs` and the
//! latent wrappers (`EntropyLevel::encode_into`, `LatentCoder`) must write the same bytes, the
//! same bit counts and the same errors, and read the same symbols from any bytes.

use edgevae_shared::build::{cdf_from_weights, synthetic_frame, FrameSpec, XorShift};
use edgevae_shared::entropy::{
    dequantize_latent, quantize_latent, symbol_range, Cdf, CodingError, Decoder, Encoder,
    LatentCoder, CACHED_DIMS,
};
use edgevae_shared::format::{EntropyLevel, Model};
use proptest::prelude::*;

/// The reference coder, unchanged but for its names.
mod reference {
    use edgevae_shared::entropy::{Cdf, CodingError, PRECISION};

    const HALF: u32 = 1 << 31;
    const QUARTER: u32 = 1 << 30;

    #[inline]
    fn narrow(low: u32, high: u32, lo_c: u32, hi_c: u32) -> (u32, u32) {
        let r = high.wrapping_sub(low) as u64 + 1;
        let new_low = low as u64 + ((r * lo_c.min(0xFFFF) as u64) >> PRECISION);
        let new_high = (low as u64 + ((r * hi_c.min(1 << PRECISION) as u64) >> PRECISION))
            .saturating_sub(1)
            .max(new_low);
        (new_low as u32, new_high as u32)
    }

    #[derive(Debug)]
    pub struct Encoder<'a> {
        out: &'a mut [u8],
        bits: usize,
        low: u32,
        high: u32,
        pending: u32,
        overflow: bool,
    }

    impl<'a> Encoder<'a> {
        pub fn new(out: &'a mut [u8]) -> Self {
            Encoder {
                out,
                bits: 0,
                low: 0,
                high: u32::MAX,
                pending: 0,
                overflow: false,
            }
        }

        fn put(&mut self, bit: bool) {
            let byte = self.bits / 8;
            match self.out.get_mut(byte) {
                Some(b) => {
                    if self.bits.is_multiple_of(8) {
                        *b = 0;
                    }
                    if bit {
                        *b |= 0x80 >> (self.bits % 8);
                    }
                    self.bits += 1;
                }
                None => self.overflow = true,
            }
        }

        fn put_with_pending(&mut self, bit: bool) {
            self.put(bit);
            while self.pending > 0 && !self.overflow {
                self.put(!bit);
                self.pending -= 1;
            }
        }

        pub fn encode(&mut self, cdf: &Cdf<'_>, index: usize) -> Result<(), CodingError> {
            if index >= cdf.len() {
                return Err(CodingError::SymbolOutOfRange);
            }
            let (low, high) = narrow(self.low, self.high, cdf.at(index), cdf.at(index + 1));
            self.low = low;
            self.high = high;
            loop {
                if self.high < HALF {
                    self.put_with_pending(false);
                } else if self.low >= HALF {
                    self.put_with_pending(true);
                    self.low -= HALF;
                    self.high -= HALF;
                } else if self.low >= QUARTER && self.high < HALF + QUARTER {
                    self.pending += 1;
                    self.low -= QUARTER;
                    self.high -= QUARTER;
                } else {
                    break;
                }
                self.low <<= 1;
                self.high = (self.high << 1) | 1;
            }
            if self.overflow {
                Err(CodingError::OutputFull)
            } else {
                Ok(())
            }
        }

        /// Whether `finish` will drop pending bits with `low == 0`: the one case the first
        /// coder got wrong (no bit written, so the decoder reads the value 0, outside the
        /// final interval `[2^30·…, …]` the pending bits stand for, and decodes the last
        /// symbols wrong). The coder now writes its `1` bit there too.
        pub fn ends_wrong(&self) -> bool {
            self.low == 0 && self.pending != 0
        }

        /// The first coder's termination with that one fix.
        pub fn finish_fixed(mut self) -> Result<usize, CodingError> {
            if self.ends_wrong() {
                self.low = 1;
            }
            self.finish()
        }

        pub fn finish(mut self) -> Result<usize, CodingError> {
            if self.low != 0 {
                self.pending = 0;
                self.put(true);
            }
            if self.overflow {
                return Err(CodingError::OutputFull);
            }
            while self.bits > 0 {
                let last = self.bits - 1;
                let set = self
                    .out
                    .get(last / 8)
                    .is_some_and(|b| b & (0x80 >> (last % 8)) != 0);
                if set {
                    break;
                }
                self.bits = last;
            }
            if let Some(b) = self.out.get_mut(self.bits / 8) {
                if !self.bits.is_multiple_of(8) {
                    *b &= 0xFFu8 << (8 - self.bits % 8);
                }
            }
            Ok(self.bits)
        }
    }

    #[derive(Debug)]
    pub struct Decoder<'a> {
        input: &'a [u8],
        pos: usize,
        low: u32,
        high: u32,
        value: u32,
    }

    impl<'a> Decoder<'a> {
        pub fn new(input: &'a [u8]) -> Self {
            let mut d = Decoder {
                input,
                pos: 0,
                low: 0,
                high: u32::MAX,
                value: 0,
            };
            for _ in 0..32 {
                d.value = (d.value << 1) | d.next_bit();
            }
            d
        }

        fn next_bit(&mut self) -> u32 {
            let bit = match self.input.get(self.pos / 8) {
                Some(b) => ((b >> (7 - self.pos % 8)) & 1) as u32,
                None => 0,
            };
            self.pos = self.pos.saturating_add(1);
            bit
        }

        pub fn bits_read(&self) -> usize {
            self.pos
        }

        pub fn decode(&mut self, cdf: &Cdf<'_>) -> usize {
            let r = self.high.wrapping_sub(self.low) as u64 + 1;
            let offset = self.value.wrapping_sub(self.low) as u64;
            let target = (((offset + 1) << PRECISION) - 1) / r;
            let (mut lo, mut hi) = (0usize, cdf.len());
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if cdf.at(mid) as u64 <= target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let (low, high) = narrow(self.low, self.high, cdf.at(lo), cdf.at(lo + 1));
            self.low = low;
            self.high = high;
            loop {
                if self.high < HALF {
                } else if self.low >= HALF {
                    self.low -= HALF;
                    self.high -= HALF;
                    self.value = self.value.wrapping_sub(HALF);
                } else if self.low >= QUARTER && self.high < HALF + QUARTER {
                    self.low -= QUARTER;
                    self.high -= QUARTER;
                    self.value = self.value.wrapping_sub(QUARTER);
                } else {
                    break;
                }
                self.low <<= 1;
                self.high = (self.high << 1) | 1;
                self.value = (self.value << 1) | self.next_bit();
            }
            lo
        }
    }

    /// `EntropyLevel::encode_into` as first written (`tables()`, one symbol at a time).
    pub fn encode_into(
        level: &super::EntropyLevel<'_>,
        enc: &mut Encoder<'_>,
        zero_point: i8,
        latent: &[i8],
    ) -> Result<(), CodingError> {
        if latent.len() != level.steps.len() {
            return Err(CodingError::SymbolOutOfRange);
        }
        let mut coded = 0;
        for (dim, &q) in level.tables(zero_point).zip(latent) {
            let symbol = super::quantize_latent(q, zero_point, dim.step);
            enc.encode(&dim.cdf, (symbol - dim.lo) as usize)?;
            coded += 1;
        }
        if coded != latent.len() {
            return Err(CodingError::BadTable);
        }
        Ok(())
    }

    /// `EntropyLevel::decode_from` as first written.
    pub fn decode_from(
        level: &super::EntropyLevel<'_>,
        dec: &mut Decoder<'_>,
        zero_point: i8,
        latent: &mut [i8],
    ) -> Result<(), CodingError> {
        if latent.len() != level.steps.len() {
            return Err(CodingError::SymbolOutOfRange);
        }
        // an encoder-only file's level: it codes, but has nothing to decode to
        if level.values.is_empty() && !latent.is_empty() {
            return Err(CodingError::NoValues);
        }
        let mut decoded = 0;
        for (dim, q) in level.tables(zero_point).zip(latent.iter_mut()) {
            let index = dec.decode(&dim.cdf);
            *q = dim.values.get(index).map_or(0, |&v| v as i8);
            decoded += 1;
        }
        if decoded != level.steps.len() {
            return Err(CodingError::BadTable);
        }
        Ok(())
    }
}

/// What one coder did with a symbol sequence: each call's result, the bit count (or error)
/// of `finish`, and the whole output buffer (filled with 0xA5 before).
type Run = (
    Vec<Result<(), CodingError>>,
    Result<usize, CodingError>,
    Vec<u8>,
);

fn run_new(tables: &[Vec<u8>], symbols: &[usize], cap: usize) -> Run {
    let mut buf = vec![0xA5u8; cap];
    let mut enc = Encoder::new(&mut buf);
    let rs = symbols
        .iter()
        .enumerate()
        .map(|(i, &s)| enc.encode(&Cdf::from_validated(&tables[i % tables.len()]).unwrap(), s))
        .collect();
    let bits = enc.finish();
    (rs, bits, buf)
}

/// The reference with the termination fix (`finish_fixed`); also whether the first coder's
/// `finish` would have ended the stream wrong (the only case where they differ).
fn run_ref(tables: &[Vec<u8>], symbols: &[usize], cap: usize) -> (Run, bool) {
    let mut buf = vec![0xA5u8; cap];
    let mut enc = reference::Encoder::new(&mut buf);
    let rs = symbols
        .iter()
        .enumerate()
        .map(|(i, &s)| enc.encode(&Cdf::from_validated(&tables[i % tables.len()]).unwrap(), s))
        .collect();
    let wrong = enc.ends_wrong();
    let bits = enc.finish_fixed();
    ((rs, bits, buf), wrong)
}

/// Both decoders on `bytes`: symbols and bits read after each.
fn decode_both(tables: &[Vec<u8>], bytes: &[u8], n: usize) {
    let mut a = Decoder::new(bytes);
    let mut b = reference::Decoder::new(bytes);
    assert_eq!(a.bits_read(), b.bits_read());
    for i in 0..n {
        let cdf = Cdf::from_validated(&tables[i % tables.len()]).unwrap();
        let (x, y) = (a.decode(&cdf), b.decode(&cdf));
        assert_eq!(x, y, "symbol {i}");
        assert_eq!(a.bits_read(), b.bits_read(), "bits read after symbol {i}");
    }
}

/// Encodes with both coders into buffers of every interesting size and compares everything;
/// then decodes the stream with both and checks the symbols come back.
fn check(tables: &[Vec<u8>], symbols: &[usize], valid: bool) {
    let big = 64 + symbols.len() * 4;
    let (rs, bits, buf) = run_new(tables, symbols, big);
    let (reference, _) = run_ref(tables, symbols, big);
    assert_eq!((&rs, &bits), (&reference.0, &reference.1));
    assert_eq!(buf, reference.2, "bytes");
    let bits = bits.expect("fits");
    let bytes = &buf[..bits.div_ceil(8)];
    decode_both(tables, bytes, symbols.len() + 8);
    if valid {
        let mut dec = Decoder::new(bytes);
        for (i, &s) in symbols.iter().enumerate() {
            let cdf = Cdf::from_validated(&tables[i % tables.len()]).unwrap();
            assert_eq!(dec.decode(&cdf), s, "symbol {i}");
        }
    }
    // Every output size around the stream's (and a few small ones): same results, same bytes.
    let need = bits.div_ceil(8);
    for cap in [
        0,
        1,
        2,
        3,
        need.saturating_sub(2),
        need.saturating_sub(1),
        need,
        need + 1,
    ] {
        let (a, (b, _)) = (run_new(tables, symbols, cap), run_ref(tables, symbols, cap));
        assert_eq!((&a.0, &a.1), (&b.0, &b.1), "cap {cap}");
        assert_eq!(a.2, b.2, "bytes, cap {cap}");
    }
}

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

/// Frequencies >= 1 summing to 2^16 from arbitrary weights (at most 2^16 of them).
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

/// Weights of 1..=256 symbols: mostly tiny (frequency 1) with a few heavy ones, or uniform.
fn weights() -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        prop::collection::vec(prop_oneof![Just(0u32), 0..4u32, 0..100_000u32], 1..=256),
        (1usize..=256).prop_map(|n| vec![1; n]),
        prop::collection::vec(0..1000u32, 1..8),
    ]
}

fn tables_and_symbols(max_symbols: usize) -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<usize>)> {
    prop::collection::vec(weights(), 1..5).prop_flat_map(move |ws| {
        let tables: Vec<Vec<u8>> = ws.iter().map(|w| table(&normalise(w))).collect();
        let lens: Vec<usize> = ws.iter().map(Vec::len).collect();
        let n = lens.len();
        let symbols = prop::collection::vec(
            (any::<prop::sample::Index>(), any::<bool>()),
            0..max_symbols,
        )
        .prop_map(move |idx| {
            idx.iter()
                .enumerate()
                // Half of the symbols at the table's ends, where frequencies of 1 sit.
                .map(|(i, (x, edge))| {
                    let len = lens[i % n];
                    match (edge, x.index(4)) {
                        (true, 0) => 0,
                        (true, 1) => len - 1,
                        _ => x.index(len),
                    }
                })
                .collect::<Vec<_>>()
        });
        (Just(tables), symbols)
    })
}

#[test]
fn empty_streams_and_certain_symbols() {
    let certain = table(&[65536]);
    check(std::slice::from_ref(&certain), &[], true);
    check(std::slice::from_ref(&certain), &[0; 100], true);
    let t = table(&[65535, 1]);
    check(std::slice::from_ref(&t), &[0; 300], true);
    check(std::slice::from_ref(&t), &[1; 40], true);
}

/// The first coder's one bug, fixed: a stream ending on pending bits with `low == 0` got no
/// termination bit, so the decoder read zeros, a value outside the final interval, and
/// decoded the last symbols wrong. Now it gets its `1` bit; every other stream is unchanged.
#[test]
fn streams_ending_on_pending_bits_with_low_zero_decode() {
    let t = table(&[1 << 14, 1 << 15, 1 << 14]);
    let cdf = Cdf::new(&t).unwrap();
    for n in [1usize, 3, 40] {
        let symbols = vec![1usize; n];
        let mut old = vec![0u8; 16];
        let mut enc = reference::Encoder::new(&mut old);
        for &s in &symbols {
            enc.encode(&cdf, s).unwrap();
        }
        assert!(enc.ends_wrong());
        assert_eq!(enc.finish(), Ok(0));
        let mut dec = reference::Decoder::new(&[]);
        assert_ne!(dec.decode(&cdf), 1, "the first coder lost this stream");
        let (_, bits, buf) = run_new(std::slice::from_ref(&t), &symbols, 16);
        assert_eq!(bits, Ok(1));
        assert_eq!(buf[0], 0x80);
        let mut dec = Decoder::new(&buf[..1]);
        for _ in 0..n {
            assert_eq!(dec.decode(&cdf), 1);
        }
    }
}

#[test]
fn long_pending_runs() {
    // The middle symbol covers [1/4, 3/4): from the full interval, every one is an underflow
    // step, so n of them leave n pending bits, resolved by the last symbol (either end).
    let t = table(&[1 << 14, 1 << 15, 1 << 14]);
    for n in [
        1usize, 2, 23, 24, 25, 26, 31, 32, 33, 47, 48, 49, 100, 1000, 5000,
    ] {
        for last in [0usize, 2] {
            let mut symbols = vec![1; n];
            symbols.push(last);
            symbols.extend([1, 1, 0, 2]);
            check(std::slice::from_ref(&t), &symbols, true);
            // Ending on the pending bits (finish drops them).
            check(std::slice::from_ref(&t), &symbols[..n], true);
        }
    }
    // Narrow middle symbols: several underflow steps each, then rare symbols with long E1/E2
    // runs after the pending bits.
    let narrow = table(&[32767, 2, 32767]);
    let mut symbols = vec![];
    for i in 0..200 {
        symbols.push(1);
        if i % 7 == 0 {
            symbols.push(i % 3);
        }
    }
    check(std::slice::from_ref(&narrow), &symbols, true);
}

#[test]
fn extreme_tables() {
    // 256 symbols of frequency 1 but one; every symbol.
    let mut f = vec![1u32; 256];
    f[0] = 65536 - 255;
    let t = table(&f);
    check(
        std::slice::from_ref(&t),
        &(0..256).collect::<Vec<_>>(),
        true,
    );
    check(
        std::slice::from_ref(&t),
        &(0..256).rev().collect::<Vec<_>>(),
        true,
    );
    // A heavy last symbol.
    let mut f = vec![1u32; 256];
    f[255] = 65536 - 255;
    let t = table(&f);
    check(
        std::slice::from_ref(&t),
        &[255, 0, 255, 1, 254, 255, 255, 128],
        true,
    );
    // Uniform 256.
    let t = table(&[256; 256]);
    check(
        std::slice::from_ref(&t),
        &(0..256).map(|i| i * 37 % 256).collect::<Vec<_>>(),
        true,
    );
}

#[test]
fn collapsed_intervals_of_unvalidated_tables() {
    // Tables taken on trust that are not increasing: intervals collapse to one value (32 bits
    // shared by low and high), zero upper bounds; the same bits either way.
    let tables = vec![
        vec![0, 0, 0, 0],
        vec![0xFF, 0xFF, 0, 0],
        vec![0, 0x80, 0, 0x80, 0, 0],
        vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
    ];
    for t in &tables {
        for s in 0..t.len() / 2 {
            check(std::slice::from_ref(t), &[s; 20], false);
        }
    }
    check(&tables, &[0, 1, 1, 2, 0, 0, 1], false);
}

/// A level's bytes (steps, tables, values) for `latent` dimensions with steps in
/// `1..=max_step` and peaked pseudo-random tables, as a model file holds them.
struct LevelBytes {
    steps: Vec<u8>,
    cdfs: Vec<u8>,
    values: Vec<u8>,
}

impl LevelBytes {
    fn new(rng: &mut XorShift, latent: usize, zero_point: i8, max_step: u8) -> Self {
        let mut l = LevelBytes {
            steps: vec![],
            cdfs: vec![],
            values: vec![],
        };
        for _ in 0..latent {
            let step = match rng.next_u32() % 8 {
                0 => 1,
                1 => max_step,
                _ => 1 + (rng.next_u32() % max_step as u32) as u8,
            };
            let (lo, hi) = symbol_range(zero_point, step);
            let sharp = 1 + rng.next_u32() as u64 % 64;
            let weights: Vec<u64> = (lo..=hi)
                .map(|s| 1 + (rng.next_u32() as u64 % 64) * 4096 * sharp / (1 + (s * s) as u64))
                .collect();
            l.steps.push(step);
            l.cdfs.extend(
                cdf_from_weights(&weights)
                    .iter()
                    .flat_map(|c| c.to_le_bytes()),
            );
            l.values
                .extend((lo..=hi).map(|s| dequantize_latent(s, zero_point, step) as u8));
        }
        l
    }

    fn level(&self) -> EntropyLevel<'_> {
        EntropyLevel {
            steps: &self.steps,
            cdfs: &self.cdfs,
            values: &self.values,
        }
    }
}

/// All the ways to code `positions` with `level`: the reference symbol by symbol,
/// `encode_into`, `LatentCoder`; the same bytes and results, and both decoders read them back.
fn check_latents(level: &EntropyLevel<'_>, zp: i8, positions: &[Vec<i8>], cap: usize) {
    let m = level.steps.len();
    let mut a = vec![0x5Au8; cap];
    let mut b = vec![0x5Au8; cap];
    let mut c = vec![0x5Au8; cap];
    let mut all_ok = true;
    let (ra, rb, rc) = {
        let mut ea = reference::Encoder::new(&mut a);
        let mut eb = Encoder::new(&mut b);
        let mut ec = Encoder::new(&mut c);
        let coder = LatentCoder::new(level, zp);
        for pos in positions {
            let x = reference::encode_into(level, &mut ea, zp, pos);
            assert_eq!(level.encode_into(&mut eb, zp, pos), x);
            assert_eq!(coder.encode_into(&mut ec, pos), x);
            all_ok &= x.is_ok();
        }
        (ea.finish_fixed(), eb.finish(), ec.finish())
    };
    assert_eq!(ra, rb);
    assert_eq!(ra, rc);
    assert_eq!(a, b);
    assert_eq!(a, c);
    let stream = match ra {
        Ok(bits) => &a[..bits.div_ceil(8)],
        Err(_) => &a[..],
    };
    let mut da = reference::Decoder::new(stream);
    let mut db = Decoder::new(stream);
    let mut dc = Decoder::new(stream);
    let coder = LatentCoder::new(level, zp);
    for pos in positions {
        let (mut x, mut y, mut z) = (vec![0i8; m], vec![0i8; m], vec![0i8; m]);
        let r = reference::decode_from(level, &mut da, zp, &mut x);
        assert_eq!(level.decode_from(&mut db, zp, &mut y), r);
        assert_eq!(coder.decode_from(&mut dc, &mut z), r);
        assert_eq!(x, y);
        assert_eq!(x, z);
        if all_ok && ra.is_ok() && level.values.is_empty() && m > 0 {
            assert_eq!(r, Err(CodingError::NoValues));
        } else if all_ok && ra.is_ok() {
            for d in 0..m {
                let s = level.steps[d];
                assert_eq!(quantize_latent(x[d], zp, s), quantize_latent(pos[d], zp, s));
            }
        }
    }
    assert_eq!(da.bits_read(), db.bits_read());
    assert_eq!(da.bits_read(), dc.bits_read());
}

fn positions(rng: &mut XorShift, n: usize, m: usize, zp: i8) -> Vec<Vec<i8>> {
    (0..n)
        .map(|p| {
            (0..m)
                .map(|_| match p % 4 {
                    0 => rng.next_u32() as i8,
                    1 => zp.wrapping_add((rng.next_u32() % 5) as i8 - 2),
                    2 => [-128i8, 127][(rng.next_u32() % 2) as usize],
                    _ => zp,
                })
                .collect()
        })
        .collect()
}

#[test]
fn latents_with_more_dimensions_than_cached() {
    let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
    for m in [1usize, 5, CACHED_DIMS, CACHED_DIMS + 7, 150] {
        for zp in [-128i8, -3, 0, 77, 127] {
            for max_step in [1u8, 16, 255] {
                let bytes = LevelBytes::new(&mut rng, m, zp, max_step);
                let level = bytes.level();
                let pos = positions(&mut rng, 20, m, zp);
                check_latents(&level, zp, &pos, 64 + 20 * m * 3);
                check_latents(&level, zp, &pos, 7);
                check_latents(&level, zp, &[], 4);
                // A latent of the wrong length is an error on every path.
                check_latents(&level, zp, &[vec![0; m + 1]], 64);
            }
        }
    }
}

#[test]
fn latents_of_a_model_file() {
    let bytes = synthetic_frame(&FrameSpec::photo(1, 1))
        .unwrap()
        .to_bytes()
        .unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let zp = model.header().latent_q.zero_point;
    let m = model.header().latent as usize;
    let mut rng = XorShift(99);
    for level in &model.entropy().unwrap().levels {
        check_latents(level, zp, &positions(&mut rng, 40, m, zp), 40 * m * 2);
    }
}

/// Tables or values cut short (a level that was never validated): `BadTable` at the same
/// dimension, after the same symbols, or `OutputFull` first, on every path.
#[test]
fn truncated_levels() {
    let mut rng = XorShift(7);
    for m in [3usize, CACHED_DIMS + 5] {
        let bytes = LevelBytes::new(&mut rng, m, 5, 9);
        let pos = positions(&mut rng, 4, m, 5);
        for cut in [
            0usize,
            1,
            2,
            3,
            17,
            bytes.cdfs.len() / 2,
            bytes.cdfs.len() - 1,
        ] {
            let cdfs = &bytes.cdfs[..cut];
            let level = EntropyLevel {
                steps: &bytes.steps,
                cdfs,
                values: &bytes.values,
            };
            check_latents(&level, 5, &pos, 4096);
            check_latents(&level, 5, &pos, 2);
            let values = &bytes.values[..cut / 2];
            let level = EntropyLevel {
                steps: &bytes.steps,
                cdfs: &bytes.cdfs,
                values,
            };
            check_latents(&level, 5, &pos, 4096);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn same_bits_as_the_reference((tables, symbols) in tables_and_symbols(300)) {
        check(&tables, &symbols, true);
    }

    #[test]
    fn same_symbols_from_garbage(bytes in prop::collection::vec(any::<u8>(), 0..64),
                                 (tables, _) in tables_and_symbols(1)) {
        decode_both(&tables, &bytes, 200);
    }

    /// Tables taken on trust (any bytes): the same bits, errors and symbols as the reference.
    #[test]
    fn unvalidated_tables_same_as_reference(
        tables in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..4),
        symbols in prop::collection::vec(any::<usize>(), 0..60),
        bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let tables: Vec<Vec<u8>> = tables
            .into_iter()
            .map(|mut t| { t.truncate(t.len() / 2 * 2); if t.is_empty() { t = vec![0, 0]; } t })
            .collect();
        let symbols: Vec<usize> = symbols
            .iter()
            .enumerate()
            .map(|(i, s)| s % (tables[i % tables.len()].len() / 2 + 1))
            .collect();
        check(&tables, &symbols, false);
        decode_both(&tables, &bytes, 60);
    }

    /// A level of arbitrary bytes (never validated): coding and decoding latents give some
    /// result, never a panic (overflow checks are on in tests), on every path.
    #[test]
    fn garbage_levels_never_panic(
        steps in prop::collection::vec(any::<u8>(), 0..80),
        cdfs in prop::collection::vec(any::<u8>(), 0..600),
        values in prop::collection::vec(any::<u8>(), 0..300),
        zp in any::<i8>(),
        latents in prop::collection::vec(any::<i8>(), 0..200),
        cap in 0usize..64) {
        let level = EntropyLevel { steps: &steps, cdfs: &cdfs, values: &values };
        let m = steps.len();
        let coder = LatentCoder::new(&level, zp);
        let mut buf = vec![0u8; cap];
        let mut enc = Encoder::new(&mut buf);
        for pos in latents.chunks(m.max(1)) {
            let _ = level.encode_into(&mut enc, zp, pos);
            let _ = coder.encode_into(&mut enc, pos);
        }
        let _ = enc.finish();
        let mut dec = Decoder::new(&buf);
        let mut out = vec![0i8; m];
        for _ in 0..4 {
            let _ = level.decode_from(&mut dec, zp, &mut out);
            let _ = coder.decode_from(&mut dec, &mut out);
        }
    }

    #[test]
    fn latent_maps_same_as_reference(
        m in prop_oneof![1usize..8, 60usize..70],
        zp in any::<i8>(),
        max_step in prop_oneof![Just(1u8), 1u8..=255],
        seed in any::<u64>(),
        n in 0usize..12,
        cap in prop_oneof![0usize..16, Just(4096)]) {
        let mut rng = XorShift(seed | 1);
        let bytes = LevelBytes::new(&mut rng, m, zp, max_step);
        check_latents(&bytes.level(), zp, &positions(&mut rng, n, m, zp), cap);
    }
}
