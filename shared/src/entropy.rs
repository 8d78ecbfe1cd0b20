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
//! Speed (the bits are those of the textbook loop, one iteration per output bit, which
//! `shared/tests/entropy_reference.rs` keeps as the reference): renormalisation takes whole
//! runs at once, the bits `low` and `high` share (`leading_zeros(low ^ high)`) and the run of
//! underflow steps after them; the bits go into a 32-bit accumulator written a byte at a time,
//! pending bits joining the next decided bit as a carry; the interval split is one 32×32→64
//! multiply-add per bound. Coding a latent ([`LatentCoder`]) quantizes each
//! value to its table index with one unsigned division, from per-dimension constants computed
//! once per level.
//!
//! A table ([`Cdf`]) holds `n ≥ 1` little-endian u16 values `c_0 = 0 < c_1 < … < c_{n−1}`; the
//! total `c_n = 2^16` is implicit, so symbol `i` has frequency `c_{i+1} − c_i ≥ 1`.
//!
//! Decoding never panics and never reads past its input: any bytes decode to *some* symbols
//! (every target value belongs to a symbol), so garbage yields an image, not a fault.

use core::fmt;
use core::num::{NonZeroU32, NonZeroU8};

use crate::format::EntropyLevel;

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
    /// Decoding with a level that has no decoded values (an encoder-only file's).
    NoValues,
}

impl fmt::Display for CodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodingError::OutputFull => "bitstream does not fit the output buffer",
            CodingError::SymbolOutOfRange => "symbol outside its table",
            CodingError::BadTable => "CDF table is not strictly increasing from 0",
            CodingError::NoValues => {
                "the level has no decoded values (an encoder-only model file: decode with the full model)"
            }
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
/// `hi_c <= 2^16` (callers read both from u16 entries or the implicit total): with
/// `r = high − low + 1`, `low + ⌊r·lo_c / 2^16⌋` and `max(low + ⌊r·hi_c / 2^16⌋ − 1, new_low)`.
/// `r·c` is computed as `(high − low)·c + c`, a 32×32→64 multiply (UMULL/UMLAL on Cortex-M).
/// Both results lie in `[low, high]`; for a table that is not increasing the interval collapses
/// to one value instead of inverting, so nothing can overflow.
#[inline(always)]
fn narrow(low: u32, high: u32, lo_c: u32, hi_c: u32) -> (u32, u32) {
    let d = high.wrapping_sub(low) as u64;
    let tl = ((d * lo_c as u64 + lo_c as u64) >> PRECISION) as u32;
    let th = (d * hi_c as u64 + hi_c as u64) >> PRECISION;
    let new_low = low.wrapping_add(tl);
    // th − 1 ≤ high − low (saturating: th = 0 only for a zero upper bound, which collapses).
    let new_high = low.wrapping_add(th.saturating_sub(1) as u32).max(new_low);
    (new_low, new_high)
}

/// [`narrow`] for a strictly increasing table (`lo_c < hi_c`), which is all the latent coder
/// meets in a parsed model: then `⌊r·hi_c / 2^16⌋ ≥ 1` and the upper bound is above the lower
/// one (`r > 2^30`: their difference is at least `2^14`), so neither the saturation nor the
/// maximum of [`narrow`] can change a result. Another table gives some interval (wrapping
/// arithmetic, no panic), not necessarily [`narrow`]'s.
#[inline(always)]
fn narrow_valid(low: u32, high: u32, lo_c: u32, hi_c: u32) -> (u32, u32) {
    let r = high.wrapping_sub(low) as u64 + 1;
    let tl = ((r * lo_c as u64) >> PRECISION) as u32;
    let th = ((r * hi_c as u64) >> PRECISION) as u32;
    (low.wrapping_add(tl), low.wrapping_add(th).wrapping_sub(1))
}

/// The encoder's registers and its output position (kept apart from the output slice so the
/// batch loops of [`LatentCoder`] hold them in registers).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncState {
    low: u32,
    high: u32,
    /// Underflow (E3) bits waiting for the next decided bit, which they follow inverted
    /// (saturating at 2^32 − 1, where the first coder's counter wrapped).
    pending: u32,
    /// The last `nacc` bits emitted (its low bits; the bits above them are stale).
    acc: u32,
    /// Bits in `acc` not yet written: 0..=7 between symbols.
    nacc: u32,
    /// Bytes written.
    pos: usize,
    /// A whole byte did not fit.
    overflow: bool,
}

impl EncState {
    const START: EncState = EncState {
        low: 0,
        high: u32::MAX,
        pending: 0,
        acc: 0,
        nacc: 0,
        pos: 0,
        overflow: false,
    };

    /// Appends the `n` low bits of `bits` (`n <= 25`, `bits < 2^n`), writing each byte as it
    /// completes.
    #[inline(always)]
    fn put(&mut self, out: &mut [u8], bits: u32, n: u32) {
        self.acc = (self.acc << n) | bits;
        self.nacc += n;
        while self.nacc >= 8 {
            self.nacc -= 8;
            let byte = (self.acc >> self.nacc) as u8;
            match out.get_mut(self.pos) {
                Some(b) => {
                    *b = byte;
                    self.pos += 1;
                }
                None => self.overflow = true,
            }
        }
    }

    /// Appends `n` copies of `bit` (0 or 1), stopping once the output is full.
    fn put_run(&mut self, out: &mut [u8], bit: u32, mut n: u32) {
        let ones = 0u32.wrapping_sub(bit);
        while n > 0 && !self.overflow {
            let k = n.min(24);
            self.put(out, ones >> (32 - k), k);
            n -= k;
        }
    }

    /// [`EncState::renorm`]'s output of more than 25 bits: the top `k` bits of `low`
    /// (`1 <= k <= 32`), the pending bits (the first bit's complement) after the first one. By
    /// value, so the callers' registers need not live in memory for the call.
    #[cold]
    #[inline(never)]
    fn emit_slow(mut self, out: &mut [u8], low: u32, k: u32) -> EncState {
        let b = low >> 31;
        self.put(out, b, 1);
        let pending = core::mem::take(&mut self.pending);
        self.put_run(out, b ^ 1, pending);
        let rest = k - 1;
        if rest > 0 {
            let bits = (low << 1) >> (32 - rest);
            if rest > 24 {
                self.put(out, bits >> 16, rest - 16);
                self.put(out, bits & 0xFFFF, 16);
            } else {
                self.put(out, bits, rest);
            }
        }
        self
    }

    /// Renormalises the interval `[low, high]` just narrowed: the bits `low` and `high` share
    /// at the top are emitted at once (E1/E2, `leading_zeros(low ^ high)` of them), then the
    /// run of underflow steps (E3: `low` is `01…`, `high` is `10…`) becomes pending bits at
    /// once. Exactly the bits of the classic one-bit-per-iteration loop (the test reference),
    /// in the same order.
    #[inline(always)]
    fn renorm(&mut self, out: &mut [u8], mut low: u32, mut high: u32) {
        let x = low ^ high;
        if x < HALF {
            let k = x.leading_zeros(); // 1..=32 (32 when the interval collapsed)
            if self.pending == 0 && k <= 25 {
                self.put(out, low >> (32 - k), k);
                low <<= k;
                high = !(!high << k);
            } else if self.pending < 25 && self.pending + k <= 25 {
                // b, then `pending` × !b, then the other k − 1 bits: adding (2^pending − 1)
                // just below the first bit turns `b x…` into `b !b… x…` (pending bits are a
                // carry).
                let bits = (low >> (32 - k)) + (((1u32 << self.pending) - 1) << (k - 1));
                self.put(out, bits, self.pending + k);
                self.pending = 0;
                low <<= k;
                high = !(!high << k);
            } else {
                *self = self.emit_slow(out, low, k);
                low = (low << (k - 1)) << 1;
                high = !((!high << (k - 1)) << 1);
            }
        }
        // Now low < 2^31 <= high; E3 while low's next bit is 1 and high's is 0.
        let y = low & !high;
        if y & QUARTER != 0 {
            let m = (!(y << 1)).leading_zeros(); // 1..=31
            self.pending = self.pending.saturating_add(m);
            // m times (x − 2^30)·2: x·2^m − 2^31 (mod 2^32); high shifts in ones.
            low = (low << m) ^ HALF;
            high = !(!high << m) ^ HALF;
        }
        self.low = low;
        self.high = high;
    }

    /// Codes the cumulative range `[lo_c, hi_c)` (`lo_c < 2^16`, `hi_c <= 2^16`).
    #[inline(always)]
    pub(crate) fn code(&mut self, out: &mut [u8], lo_c: u32, hi_c: u32) {
        let (low, high) = narrow(self.low, self.high, lo_c, hi_c);
        self.renorm(out, low, high);
    }

    /// [`EncState::code`] for a strictly increasing table ([`narrow_valid`]).
    #[inline(always)]
    pub(crate) fn code_valid(&mut self, out: &mut [u8], lo_c: u32, hi_c: u32) {
        let (low, high) = narrow_valid(self.low, self.high, lo_c, hi_c);
        self.renorm(out, low, high);
    }

    /// Whether some bit did not fit `len` bytes (a whole byte, or the partial last one).
    #[inline(always)]
    pub(crate) fn full(&self, len: usize) -> bool {
        self.overflow || (self.nacc != 0 && self.pos >= len)
    }
}

/// Writes a bitstream, most significant bit first, into a caller's slice.
#[derive(Debug)]
pub struct Encoder<'a> {
    out: &'a mut [u8],
    st: EncState,
}

impl<'a> Encoder<'a> {
    /// Starts a stream; `out` is written (not or'ed) as the stream grows.
    pub fn new(out: &'a mut [u8]) -> Self {
        Encoder {
            out,
            st: EncState::START,
        }
    }

    /// The output and the registers, for the batch loops.
    #[inline(always)]
    pub(crate) fn parts(&mut self) -> (&mut [u8], &mut EncState) {
        (self.out, &mut self.st)
    }

    /// Codes symbol `index` of `cdf`.
    pub fn encode(&mut self, cdf: &Cdf<'_>, index: usize) -> Result<(), CodingError> {
        if index >= cdf.len() {
            return Err(CodingError::SymbolOutOfRange);
        }
        self.st.code(self.out, cdf.at(index), cdf.at(index + 1));
        if self.st.full(self.out.len()) {
            Err(CodingError::OutputFull)
        } else {
            Ok(())
        }
    }

    /// Ends the stream; returns its length in **bits** (the bytes used are `ceil(bits / 8)`).
    ///
    /// After renormalisation `low < 2^31 ≤ high`, so the value `2^31` (one `1` bit, then the
    /// pending bits, all zeros, then zeros) identifies the interval; zeros need not be written
    /// because the decoder reads zeros past the end. Where `low` is 0 and no bit is pending no
    /// bit is needed at all, and trailing zero bits already written are dropped for the same
    /// reason. (The first version of this coder also skipped the `1` with pending bits and
    /// `low` 0: the zeros the decoder then reads lie below the interval, so the last symbols
    /// decoded wrong; those streams, and only those, now end in the `1` bit.) The bytes
    /// written are the stream's bits, the rest of the last byte zero (a dropped zero byte at
    /// the end is still written as 0); bytes past them are untouched.
    pub fn finish(self) -> Result<usize, CodingError> {
        let Encoder { out, mut st } = self;
        if st.low != 0 || st.pending != 0 {
            st.pending = 0;
            st.put(out, 1, 1);
        }
        if st.full(out.len()) {
            return Err(CodingError::OutputFull);
        }
        if st.nacc != 0 {
            if let Some(b) = out.get_mut(st.pos) {
                *b = (st.acc << (8 - st.nacc)) as u8;
                st.pos += 1;
            }
        }
        let mut bytes = st.pos.min(out.len());
        while let Some(&b) = bytes.checked_sub(1).and_then(|i| out.get(i)) {
            if b != 0 {
                return Ok(8 * bytes - b.trailing_zeros() as usize);
            }
            bytes -= 1;
        }
        Ok(0)
    }
}

/// Reads a bitstream written by [`Encoder`]; bits past the end of the input read as zero.
#[derive(Debug)]
pub struct Decoder<'a> {
    input: &'a [u8],
    /// Next input byte to load into `buf`.
    next: usize,
    /// Look-ahead bits, most significant first (zeros past the end of the input).
    buf: u64,
    /// Valid bits at the top of `buf`.
    nbuf: u32,
    /// Bits consumed (saturating).
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
            next: 0,
            buf: 0,
            nbuf: 0,
            pos: 0,
            low: 0,
            high: u32::MAX,
            value: 0,
        };
        d.value = d.take(32);
        d
    }

    /// The next `k` bits (`1 <= k <= 32`), as a number.
    #[inline]
    fn take(&mut self, k: u32) -> u32 {
        if self.nbuf < k {
            while self.nbuf <= 56 {
                if let Some(&b) = self.input.get(self.next) {
                    self.buf |= (b as u64) << (56 - self.nbuf);
                    self.next += 1;
                }
                self.nbuf += 8;
            }
        }
        let v = (self.buf >> (64 - k)) as u32;
        self.buf <<= k;
        self.nbuf -= k;
        self.pos = self.pos.saturating_add(k as usize);
        v
    }

    /// Bits read so far, the 32-bit look-ahead included.
    pub fn bits_read(&self) -> usize {
        self.pos
    }

    /// Decodes one symbol index of `cdf`. Cannot fail: `low ≤ value ≤ high` holds for any
    /// input and a valid table, so every target lands in some symbol of the table (and with an
    /// invalid one the arithmetic wraps instead of panicking).
    pub fn decode(&mut self, cdf: &Cdf<'_>) -> usize {
        self.decode_table(cdf.bytes)
    }

    /// [`Decoder::decode`] on a table's bytes (`c_i` little-endian u16s, 2^16 past the end).
    #[inline]
    pub(crate) fn decode_table(&mut self, table: &[u8]) -> usize {
        let at = |i: usize| match table.get(2 * i..2 * i + 2) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]) as u32,
            _ => TOTAL as u32,
        };
        let r = self.high.wrapping_sub(self.low) as u64 + 1;
        let offset = self.value.wrapping_sub(self.low) as u64;
        let target = (((offset + 1) << PRECISION) - 1) / r;
        // Largest i with c_i <= target (c_0 = 0 <= target, target < 2^16 = c_n).
        let (mut lo, mut hi) = (0usize, table.len() / 2);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if at(mid) as u64 <= target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (mut low, mut high) = narrow(self.low, self.high, at(lo), at(lo + 1));
        let mut value = self.value;
        // The encoder's renormalisation in bulk (see `EncState::code`); value follows low and
        // high: E1/E2 shift it, E3 is x·2^m − 2^31 (mod 2^32) for any value.
        let x = low ^ high;
        if x < HALF {
            let k = x.leading_zeros();
            low = (low << (k - 1)) << 1;
            high = !((!high << (k - 1)) << 1);
            value = ((value << (k - 1)) << 1) | self.take(k);
        }
        let y = (low & !high) << 1;
        if y >= HALF {
            let m = (!y).leading_zeros();
            low = (low << m) ^ HALF;
            high = !(!high << m) ^ HALF;
            value = ((value << m) ^ HALF) | self.take(m);
        }
        self.low = low;
        self.high = high;
        self.value = value;
        lo
    }
}

/// One latent dimension's coding constants: where its table starts and how an int8 value
/// becomes a table index, `quantize_latent(q, zp, step) − lo` as one unsigned division:
/// with `qo = q + 128`, `zpo = zp + 128` and `h = ⌊step/2⌋`, the index is
/// `⌊(qo + k) / step⌋` with `k = below·step + h − zpo` for `qo ≥ zpo` and one less for
/// `qo < zpo` with an even step (ties round away from zero), `below = −lo = ⌊(zpo + h)/step⌋`.
/// Both constants lie in `0..=255`, the division is exact for every int8 (exhaustive test).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DimParams {
    /// Byte offset of the table in the level's concatenated tables (also twice the offset of
    /// its values).
    off: u32,
    step: NonZeroU8,
    /// Symbols − 1.
    last: u8,
    /// `[k for qo < zpo, k for qo ≥ zpo]`.
    k: [u8; 2],
}

impl DimParams {
    const ZERO: DimParams = DimParams {
        off: 0,
        step: NonZeroU8::MIN,
        last: 0,
        k: [0; 2],
    };

    /// The constants of a dimension quantized with `step` (0 reads as 1, as in
    /// [`quantize_latent`]) whose table starts at entry `at`; `None` if `2·at` overflows u32.
    /// Also returns the table's symbol count, `symbol_range`'s `hi − lo + 1`.
    #[inline]
    fn new(zpo: u32, step: u8, at: usize) -> Option<(DimParams, usize)> {
        let step = NonZeroU8::new(step).unwrap_or(NonZeroU8::MIN);
        let d = step.get() as u32;
        let h = d / 2;
        let below = (zpo + h) / d;
        let above = (255 - zpo + h) / d;
        let n = below + above + 1; // 1..=256
        let k_pos = below * d + h - zpo; // ≥ 2h + 1 − d ≥ 0, ≤ 2h ≤ 255
        let k_neg = k_pos - (1 - d % 2); // k_pos ≥ 1 for even d
        let p = DimParams {
            off: u32::try_from(at.checked_mul(2)?).ok()?,
            step,
            last: (n - 1) as u8,
            k: [k_neg as u8, k_pos as u8],
        };
        Some((p, n as usize))
    }

    /// The table index of latent value `q`.
    #[inline(always)]
    fn index(&self, q: i8, zpo: u32) -> u32 {
        let qo = (q as i32 + 128) as u32;
        let k = self.k[(qo >= zpo) as usize];
        (qo + k as u32) / NonZeroU32::from(self.step)
    }
}

/// The dimensions of a level from `steps`, computed one after another (a table that does not
/// fit `limit` entries ends the iteration).
#[derive(Clone, Debug)]
pub(crate) struct DimIter<'a> {
    steps: core::slice::Iter<'a, u8>,
    at: usize,
    limit: usize,
    zpo: u32,
}

impl<'a> DimIter<'a> {
    /// Dimensions `steps` whose first table starts at entry `at`; `limit`: entries in both the
    /// tables and the values.
    pub(crate) fn new(zero_point: i8, steps: &'a [u8], at: usize, limit: usize) -> Self {
        DimIter {
            steps: steps.iter(),
            at,
            limit,
            zpo: (zero_point as i32 + 128) as u32,
        }
    }
}

impl Iterator for DimIter<'_> {
    type Item = DimParams;

    #[inline(always)]
    fn next(&mut self) -> Option<DimParams> {
        let &step = self.steps.next()?;
        let (p, n) = DimParams::new(self.zpo, step, self.at)?;
        let end = self.at.checked_add(n)?;
        if end > self.limit {
            self.steps = [].iter();
            return None;
        }
        self.at = end;
        Some(p)
    }
}

/// Codes `q` with dimension `p` whose table is in `cdfs` (strictly increasing, as validated
/// in a parsed model: [`narrow_valid`]). The index is at most the last one for every int8
/// (exhaustive test), so one 4-byte read gives `c_i` and `c_{i+1}`; only the last symbol of
/// the last table needs a 2-byte read.
#[inline(always)]
fn encode_dim(
    st: &mut EncState,
    out: &mut [u8],
    cdfs: &[u8],
    p: &DimParams,
    zpo: u32,
    q: i8,
) -> Result<(), CodingError> {
    let idx = p.index(q, zpo);
    let at = p.off as usize + 2 * idx as usize;
    // Inside a strictly increasing table c_{i+1} ≥ 1, so a 0 is the next table's c_0: the
    // symbol is its table's last, and its upper bound the total (0 − 1 sets bit 16).
    let (lo_c, hi_c) = match cdfs.get(at..at + 4) {
        Some(&[a, b, c, d]) => {
            let next = u16::from_le_bytes([c, d]) as u32;
            (
                u16::from_le_bytes([a, b]) as u32,
                next | (next.wrapping_sub(1) & TOTAL as u32),
            )
        }
        _ => match cdfs.get(at..at + 2) {
            Some(&[a, b]) => (u16::from_le_bytes([a, b]) as u32, TOTAL as u32),
            _ => return Err(CodingError::BadTable),
        },
    };
    st.code_valid(out, lo_c, hi_c);
    Ok(())
}

/// Codes `latent` (already checked to be one value per step) with the cached dimensions
/// `head` then `tail`, into `enc`; the errors of the symbol-by-symbol loop
/// ([`EntropyLevel::encode_into`]'s definition): `OutputFull` if the stream outgrew the output
/// by the end (or by an error), `BadTable` if a table was missing.
#[inline(always)]
pub(crate) fn encode_latent(
    enc: &mut Encoder<'_>,
    cdfs: &[u8],
    zero_point: i8,
    head: &[DimParams],
    tail: DimIter<'_>,
    latent: &[i8],
) -> Result<(), CodingError> {
    let zpo = (zero_point as i32 + 128) as u32;
    let (out, state) = enc.parts();
    let mut st = *state;
    let (lh, lt) = latent.split_at(head.len().min(latent.len()));
    let run = || {
        for (p, &q) in head.iter().zip(lh) {
            encode_dim(&mut st, out, cdfs, p, zpo, q)?;
        }
        let mut coded = 0;
        for (p, &q) in tail.zip(lt) {
            encode_dim(&mut st, out, cdfs, &p, zpo, q)?;
            coded += 1;
        }
        if head.len() + coded < latent.len() {
            return Err(CodingError::BadTable);
        }
        Ok(())
    };
    let r = run();
    *state = st;
    if st.full(out.len()) {
        return Err(CodingError::OutputFull);
    }
    r
}

/// Decodes one latent with the cached dimensions `head` then `tail` (the values are laid out
/// like the tables, one byte an entry).
#[inline]
pub(crate) fn decode_latent(
    dec: &mut Decoder<'_>,
    cdfs: &[u8],
    values: &[u8],
    head: &[DimParams],
    tail: DimIter<'_>,
    latent: &mut [i8],
) -> Result<(), CodingError> {
    if values.is_empty() && !latent.is_empty() {
        return Err(CodingError::NoValues);
    }
    let mut one = |p: &DimParams, q: &mut i8| -> Result<(), CodingError> {
        let off = p.off as usize;
        let table = cdfs
            .get(off..off + 2 * (p.last as usize + 1))
            .ok_or(CodingError::BadTable)?;
        let index = dec.decode_table(table);
        *q = values.get(off / 2 + index).map_or(0, |&v| v as i8);
        Ok(())
    };
    let (lh, lt) = latent.split_at_mut(head.len().min(latent.len()));
    for (p, q) in head.iter().zip(lh) {
        one(p, q)?;
    }
    let n = lt.len();
    let mut decoded = 0;
    for (p, q) in tail.zip(lt) {
        one(&p, q)?;
        decoded += 1;
    }
    if decoded != n {
        return Err(CodingError::BadTable);
    }
    Ok(())
}

/// Dimensions whose constants a [`LatentCoder`] keeps (512 bytes); further dimensions are
/// computed as each latent is coded, as [`EntropyLevel::encode_into`] does for all of them.
pub const CACHED_DIMS: usize = 64;

/// One quality level prepared for coding many latents of one model (the positions of a latent
/// map): the per-dimension constants (table offset, symbol count, quantization) of the first
/// [`CACHED_DIMS`] dimensions computed once. Codes exactly what [`EntropyLevel::encode_into`]
/// and [`EntropyLevel::decode_from`] code, with the same errors.
#[derive(Clone, Debug)]
pub struct LatentCoder<'a> {
    level: EntropyLevel<'a>,
    zero_point: i8,
    dims: [DimParams; CACHED_DIMS],
    cached: usize,
    /// Table entry where dimension `cached` starts.
    rest: usize,
}

impl<'a> LatentCoder<'a> {
    /// Prepares `level` for latents with zero point `zero_point`.
    pub fn new(level: &EntropyLevel<'a>, zero_point: i8) -> Self {
        let mut c = LatentCoder {
            level: *level,
            zero_point,
            dims: [DimParams::ZERO; CACHED_DIMS],
            cached: 0,
            rest: 0,
        };
        let mut it = level.dims(zero_point, 0, 0);
        for slot in c.dims.iter_mut() {
            match it.next() {
                Some(p) => {
                    *slot = p;
                    c.cached += 1;
                }
                None => break,
            }
        }
        c.rest = it.at;
        c
    }

    /// Dimensions coded (one step each).
    pub fn dims(&self) -> usize {
        self.level.steps.len()
    }

    /// The cached dimensions' constants (`cached ≤ CACHED_DIMS` by construction; checked, so
    /// that no panic path is left for the device's link-time proof).
    fn cached_dims(&self) -> &[DimParams] {
        self.dims.get(..self.cached).unwrap_or(&self.dims)
    }

    fn tail(&self) -> DimIter<'a> {
        self.level.dims(self.zero_point, self.cached, self.rest)
    }

    /// Appends one latent's symbols to a running stream: [`EntropyLevel::encode_into`].
    pub fn encode_into(&self, enc: &mut Encoder<'_>, latent: &[i8]) -> Result<(), CodingError> {
        if latent.len() != self.level.steps.len() {
            return Err(CodingError::SymbolOutOfRange);
        }
        encode_latent(
            enc,
            self.level.cdfs,
            self.zero_point,
            self.cached_dims(),
            self.tail(),
            latent,
        )
    }

    /// Reads one latent from a running stream: [`EntropyLevel::decode_from`].
    pub fn decode_from(&self, dec: &mut Decoder<'_>, latent: &mut [i8]) -> Result<(), CodingError> {
        if latent.len() != self.level.steps.len() {
            return Err(CodingError::SymbolOutOfRange);
        }
        decode_latent(
            dec,
            self.level.cdfs,
            self.level.values,
            self.cached_dims(),
            self.tail(),
            latent,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-division table index equals `quantize_latent − lo` for every zero point, step
    /// (0 reading as 1) and int8 value, and the symbol count is `symbol_range`'s.
    #[test]
    fn dim_params_index_is_div_round_for_every_int8() {
        for zp in -128i8..=127 {
            let zpo = (zp as i32 + 128) as u32;
            for step in 0u8..=255 {
                let (p, n) = DimParams::new(zpo, step, 7).unwrap();
                let (lo, hi) = symbol_range(zp, step);
                assert_eq!(n as i32, hi - lo + 1, "zp {zp} step {step}");
                assert_eq!(p.last as usize + 1, n);
                assert_eq!(p.off, 14);
                for q in -128i8..=127 {
                    let want = quantize_latent(q, zp, step) - lo;
                    assert_eq!(p.index(q, zpo) as i32, want, "zp {zp} step {step} q {q}");
                }
            }
        }
    }
}
