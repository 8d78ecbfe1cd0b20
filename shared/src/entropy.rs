//! The entropy coder of the learned codec: a bit-granular binary arithmetic coder over static
//! 16-bit integer CDF tables, shared by host and device so both write the same bits.
//!
//! Why this coder: a latent costs tens of bits, so termination overhead is as large as modelling
//! error. A byte-wise range coder flushes whole bytes and a 32-bit rANS state costs 32 bits;
//! this coder (32-bit `low`/`high` registers with the classic underflow counter, Witten, Neal &
//! Cleary 1987) emits single bits, and its decoder reads zeros past the end of the input, so the
//! encoder ends the stream with **one** bit and drops trailing zero bits: the termination costs
//! 1 bit, and the output is `ceil(bits / 8)` bytes with the rest of the last byte zero.
//!
//! Arithmetic (what makes host and device agree): after renormalisation `high - low ≥ 2^30`, and
//! a symbol `s` with cumulative range `[c_s, c_{s+1})` of `2^16` maps to
//! `low + ⌊r·c_s / 2^16⌋ ..= low + ⌊r·c_{s+1} / 2^16⌋ − 1` with `r = high − low + 1`, in u64.
//! Every symbol has a non-zero frequency, so every sub-interval is non-empty (≥ 2^14 values).
//!
//! A table ([`Cdf`]) holds `n ≥ 1` little-endian u16 values `c_0 = 0 < c_1 < … < c_{n−1}`; the
//! total `c_n = 2^16` is implicit, so symbol `i` has frequency `c_{i+1} − c_i ≥ 1`.
//!
//! Decoding never panics and never reads past its input: any bytes decode to *some* symbols
//! (every target value belongs to a symbol), so garbage yields an image, not a fault.

use core::fmt;

/// Bits of precision of the CDF tables: frequencies sum to `2^PRECISION`.
pub const PRECISION: u32 = 16;
/// Sum of the frequencies of a table.
pub const TOTAL: u64 = 1 << PRECISION;
/// Most symbols in one table (int8 latents with step 1).
pub const MAX_SYMBOLS: usize = 256;

const HALF: u32 = 1 << 31;
const QUARTER: u32 = 1 << 30;

/// What went wrong while coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CodingError {
    /// The output slice is too small for the bitstream.
    OutputFull,
    /// A symbol index is not in its table.
    SymbolOutOfRange,
    /// A table is empty, longer than [`MAX_SYMBOLS`], odd-length, not starting at 0 or not
    /// strictly increasing.
    BadTable,
}

impl fmt::Display for CodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodingError::OutputFull => "bitstream does not fit the output buffer",
            CodingError::SymbolOutOfRange => "symbol outside its table",
            CodingError::BadTable => "CDF table is not strictly increasing from 0",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CodingError {}

/// A borrowed, validated CDF table (u16 LE values, implicit total `2^16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cdf<'a> {
    bytes: &'a [u8],
}

impl<'a> Cdf<'a> {
    /// Checks the table: 1..=256 entries, starts at 0, strictly increasing.
    pub fn new(bytes: &'a [u8]) -> Result<Self, CodingError> {
        let n = bytes.len() / 2;
        if !bytes.len().is_multiple_of(2) || n == 0 || n > MAX_SYMBOLS {
            return Err(CodingError::BadTable);
        }
        let cdf = Cdf { bytes };
        if cdf.at(0) != 0 {
            return Err(CodingError::BadTable);
        }
        for i in 1..n {
            if cdf.at(i) <= cdf.at(i - 1) {
                return Err(CodingError::BadTable);
            }
        }
        Ok(cdf)
    }

    /// A table that was validated before (a parsed [`crate::Model`] checked every table on
    /// load): only its length is checked, so coding costs no scan of the table. A table that is
    /// not strictly increasing codes wrong symbols but cannot make the coder panic.
    pub fn from_validated(bytes: &'a [u8]) -> Result<Self, CodingError> {
        let n = bytes.len() / 2;
        if !bytes.len().is_multiple_of(2) || n == 0 || n > MAX_SYMBOLS {
            return Err(CodingError::BadTable);
        }
        Ok(Cdf { bytes })
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.bytes.len() / 2
    }

    /// Never true for a validated table.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() < 2
    }

    /// `c_i`, with `c_n = 2^16` (and 2^16 past the end).
    #[inline]
    pub fn at(&self, i: usize) -> u32 {
        match self.bytes.get(2 * i..2 * i + 2) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]) as u32,
            _ => TOTAL as u32,
        }
    }

    /// Ideal cost of symbol `i` in bits, `-log2(freq / 2^16)` (host-side statistics).
    #[cfg(feature = "std")]
    pub fn cost_bits(&self, i: usize) -> f64 {
        let f = self.at(i + 1).saturating_sub(self.at(i)).max(1);
        PRECISION as f64 - (f as f64).log2()
    }
}

/// Splits `[low, high]` (`low <= high`) for the cumulative range `[lo_c, hi_c)`, `lo_c < 2^16`,
/// `hi_c <= 2^16`. Both results lie in `[low, high]`; for a table that is not increasing the
/// interval collapses to one value instead of inverting, so nothing can overflow.
#[inline]
fn narrow(low: u32, high: u32, lo_c: u32, hi_c: u32) -> (u32, u32) {
    let r = high.wrapping_sub(low) as u64 + 1;
    let new_low = low as u64 + ((r * lo_c.min(0xFFFF) as u64) >> PRECISION);
    let new_high = (low as u64 + ((r * hi_c.min(1 << PRECISION) as u64) >> PRECISION))
        .saturating_sub(1)
        .max(new_low);
    (new_low as u32, new_high as u32)
}

/// Writes a bitstream, most significant bit first, into a caller's slice.
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
    /// Starts a stream; `out` is zeroed as it is written.
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

    #[inline]
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

    #[inline]
    fn put_with_pending(&mut self, bit: bool) {
        self.put(bit);
        while self.pending > 0 && !self.overflow {
            self.put(!bit);
            self.pending -= 1;
        }
    }

    /// Codes symbol `index` of `cdf`.
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

    /// Ends the stream; returns its length in **bits** (the bytes used are `ceil(bits / 8)`).
    ///
    /// After renormalisation `low < 2^31 ≤ high`, so the value `2^31` (one `1` bit, then the
    /// pending bits, all zeros, then zeros) identifies the interval; zeros need not be written
    /// because the decoder reads zeros past the end. Where `low` is 0 no bit is needed at all,
    /// and trailing zero bits already written are dropped for the same reason.
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
        // Bytes past the last one holding a bit were never touched; clear the partial tail.
        if let Some(b) = self.out.get_mut(self.bits / 8) {
            if !self.bits.is_multiple_of(8) {
                *b &= 0xFFu8 << (8 - self.bits % 8);
            }
        }
        Ok(self.bits)
    }
}

/// Reads a bitstream written by [`Encoder`]; bits past the end of the input read as zero.
#[derive(Debug)]
pub struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    low: u32,
    high: u32,
    value: u32,
}

impl<'a> Decoder<'a> {
    /// Starts decoding `input` (any bytes).
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

    #[inline]
    fn next_bit(&mut self) -> u32 {
        let bit = match self.input.get(self.pos / 8) {
            Some(b) => ((b >> (7 - self.pos % 8)) & 1) as u32,
            None => 0,
        };
        self.pos = self.pos.saturating_add(1);
        bit
    }

    /// Bits read so far, the 32-bit look-ahead included.
    pub fn bits_read(&self) -> usize {
        self.pos
    }

    /// Decodes one symbol index of `cdf`. Cannot fail: `low ≤ value ≤ high` holds for any
    /// input and a valid table, so every target lands in some symbol of the table (and with an
    /// invalid one the arithmetic wraps instead of panicking).
    pub fn decode(&mut self, cdf: &Cdf<'_>) -> usize {
        let r = self.high.wrapping_sub(self.low) as u64 + 1;
        let offset = self.value.wrapping_sub(self.low) as u64;
        let target = (((offset + 1) << PRECISION) - 1) / r;
        // Largest i with c_i <= target (c_0 = 0 <= target, target < 2^16 = c_n).
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

/// Rounded division, half away from zero (`d > 0`).
#[inline]
pub const fn div_round(n: i32, d: i32) -> i32 {
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

/// Symbol range `[min, max]` of an int8 latent with zero point `zp` quantized with `step`:
/// symbol `round((q − zp) / step)` for `q` in `[−128, 127]`.
pub const fn symbol_range(zero_point: i8, step: u8) -> (i32, i32) {
    let d = if step == 0 { 1 } else { step as i32 };
    (
        div_round(-128 - zero_point as i32, d),
        div_round(127 - zero_point as i32, d),
    )
}

/// The symbol of latent value `q`.
#[inline]
pub const fn quantize_latent(q: i8, zero_point: i8, step: u8) -> i32 {
    let d = if step == 0 { 1 } else { step as i32 };
    div_round(q as i32 - zero_point as i32, d)
}

/// The latent value a symbol stands for: `clamp(zp + symbol · step, −128, 127)`.
#[inline]
pub const fn dequantize_latent(symbol: i32, zero_point: i8, step: u8) -> i8 {
    let v = zero_point as i32 + symbol * step as i32;
    if v < -128 {
        -128
    } else if v > 127 {
        127
    } else {
        v as i8
    }
}
