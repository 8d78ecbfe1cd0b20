//! gemmlowp/TFLite requantisation.

/// `MultiplyByQuantizedMultiplier` of TFLite: shift left by `shift` when positive, then
/// `SaturatingRoundingDoublingHighMul(x, multiplier)`, then `RoundingDivideByPOT(_, -shift)` when
/// `shift` is negative (round half away from zero).
///
/// Defined for every input, where TFLite has undefined behaviour: the left shift saturates to the
/// i32 range instead of overflowing, and shifts are clamped to [-31, 31]. Never panics.
#[inline(always)]
pub fn requantize(acc: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, 31) as u32;
    let right = shift.saturating_neg().clamp(0, 31) as u32;
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(saturating_shl(acc, left), multiplier),
        right,
    )
}

/// `x · 2^n` (n ≤ 31) saturated to the i32 range, in 32-bit operations (cheap on Cortex-M).
#[inline(always)]
fn saturating_shl(x: i32, n: u32) -> i32 {
    let shifted = x.wrapping_shl(n);
    if shifted >> n == x {
        shifted
    } else if x < 0 {
        i32::MIN
    } else {
        i32::MAX
    }
}

/// `(a·b·2 + 2^31) >> 32` rounded as gemmlowp does (its nudge-and-truncate equals adding 2^30 and
/// an arithmetic shift by 31), saturating the single overflow case `MIN · MIN`.
#[inline(always)]
fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    ((a as i64 * b as i64 + (1 << 30)) >> 31) as i32
}

/// Division by 2^exponent (exponent ≤ 31), rounding half away from zero.
#[inline(always)]
fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    let mask = ((1u32 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}
