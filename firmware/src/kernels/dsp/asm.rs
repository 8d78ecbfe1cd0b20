//! The Armv7E-M DSP instructions used by the fast path, one inline `asm!` each (the
//! `core::arch::arm` intrinsics are unstable).

use core::arch::asm;

/// Sign-extends bytes 0 and 2 to the two halfwords.
#[inline(always)]
pub(super) fn sxtb16(x: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only arithmetic.
    unsafe { asm!("sxtb16 {0}, {1}", out(reg) r, in(reg) x, options(pure, nomem, nostack)) };
    r
}

/// Sign-extends bytes 1 and 3 to the two halfwords.
#[inline(always)]
pub(super) fn sxtb16_ror8(x: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only arithmetic.
    unsafe {
        asm!("sxtb16 {0}, {1}, ror #8", out(reg) r, in(reg) x, options(pure, nomem, nostack))
    };
    r
}

/// `acc` plus the dot product of the halfword pairs of `a` and `b` (wrapping).
#[inline(always)]
pub(super) fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r: i32;
    // SAFETY: register-only arithmetic (sets the Q flag on overflow, which nothing reads).
    unsafe {
        asm!("smlad {0}, {1}, {2}, {3}", out(reg) r, in(reg) a, in(reg) b, in(reg) acc, options(pure, nomem, nostack))
    };
    r
}

/// Halfword-wise signed subtraction.
#[inline(always)]
pub(super) fn ssub16(a: u32, b: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only arithmetic (sets the GE flags, which nothing reads).
    unsafe {
        asm!("ssub16 {0}, {1}, {2}", out(reg) r, in(reg) a, in(reg) b, options(pure, nomem, nostack))
    };
    r
}

/// Two output channels × two pixels over widened, interleaved rows: `w` holds
/// `[oc0 word t, oc1 word t]` and `x` `[px0 word t, px1 word t]` for t in 0..words. Returns
/// `acc` plus the dot products, as `[oc0·px0, oc0·px1, oc1·px0, oc1·px1]`.
///
/// Both slices must hold `2 * words` words and `words` must be a multiple of 4 (checked by the
/// caller, and again here; a short slice computes nothing).
#[inline(always)]
pub(super) fn block_2x2(w: &[u32], x: &[u32], words: usize, acc: [i32; 4]) -> [i32; 4] {
    let [mut a00, mut a01, mut a10, mut a11] = acc;
    let n = words / 4;
    if n == 0 || !words.is_multiple_of(4) || w.len() < 2 * words || x.len() < 2 * words {
        return acc;
    }
    // SAFETY: the loop reads 4·n LDRD pairs = 2·words words from each pointer, which the check
    // above keeps inside `w` and `x`; both come from `&[u32]`, so LDRD's word alignment holds.
    unsafe {
        asm!(
            "2:",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a00}, {w0}, {x0}, {a00}",
            "smlad {a01}, {w0}, {x1}, {a01}",
            "smlad {a10}, {w1}, {x0}, {a10}",
            "smlad {a11}, {w1}, {x1}, {a11}",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a00}, {w0}, {x0}, {a00}",
            "smlad {a01}, {w0}, {x1}, {a01}",
            "smlad {a10}, {w1}, {x0}, {a10}",
            "smlad {a11}, {w1}, {x1}, {a11}",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a00}, {w0}, {x0}, {a00}",
            "smlad {a01}, {w0}, {x1}, {a01}",
            "smlad {a10}, {w1}, {x0}, {a10}",
            "smlad {a11}, {w1}, {x1}, {a11}",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a00}, {w0}, {x0}, {a00}",
            "smlad {a01}, {w0}, {x1}, {a01}",
            "smlad {a10}, {w1}, {x0}, {a10}",
            "smlad {a11}, {w1}, {x1}, {a11}",
            "subs {n}, {n}, #1",
            "bne 2b",
            wp = inout(reg) w.as_ptr() => _,
            xp = inout(reg) x.as_ptr() => _,
            n = inout(reg) n => _,
            a00 = inout(reg) a00,
            a01 = inout(reg) a01,
            a10 = inout(reg) a10,
            a11 = inout(reg) a11,
            w0 = out(reg) _,
            w1 = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            options(nostack, readonly),
        )
    };
    [a00, a01, a10, a11]
}

/// Two output channels of a dense layer: `w0`, `w1` are int8 weight rows (any alignment; LDR
/// handles unaligned words on Armv7-M), `x` the widened input (`[A, B]` per group of four).
/// Returns `acc` plus the dot products over `groups` groups of four.
#[inline(always)]
pub(super) fn dense_2(w0: &[i8], w1: &[i8], x: &[u32], groups: usize, acc: [i32; 2]) -> [i32; 2] {
    let [mut a0, mut a1] = acc;
    if groups == 0 || w0.len() < 4 * groups || w1.len() < 4 * groups || x.len() < 2 * groups {
        return acc;
    }
    // SAFETY: the loop reads `groups` words from each weight row and 2·groups words from `x`,
    // inside the slices by the check above; `x` is word-aligned for LDRD, the weight rows are read
    // with LDR, which allows unaligned addresses on Armv7-M (UNALIGN_TRP is off after reset).
    unsafe {
        asm!(
            "2:",
            "ldr {w0}, [{wp0}], #4",
            "ldr {w1}, [{wp1}], #4",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "sxtb16 {t}, {w0}",
            "smlad {a0}, {t}, {x0}, {a0}",
            "sxtb16 {t}, {w0}, ror #8",
            "smlad {a0}, {t}, {x1}, {a0}",
            "sxtb16 {t}, {w1}",
            "smlad {a1}, {t}, {x0}, {a1}",
            "sxtb16 {t}, {w1}, ror #8",
            "smlad {a1}, {t}, {x1}, {a1}",
            "subs {n}, {n}, #1",
            "bne 2b",
            wp0 = inout(reg) w0.as_ptr() => _,
            wp1 = inout(reg) w1.as_ptr() => _,
            xp = inout(reg) x.as_ptr() => _,
            n = inout(reg) groups => _,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            w0 = out(reg) _,
            w1 = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        )
    };
    [a0, a1]
}

/// `acc` plus the dot product of two widened rows (same layout) of `words` words; `words` must
/// be even (checked; an odd count or short slice computes nothing). Eight words per iteration,
/// then pairs.
#[inline(always)]
pub(super) fn dot(w: &[u32], x: &[u32], words: usize, acc: i32) -> i32 {
    let mut a = acc;
    if words == 0 || !words.is_multiple_of(2) || w.len() < words || x.len() < words {
        return acc;
    }
    // SAFETY: the loops read exactly `words` words from each pointer (8 per first-loop
    // iteration, 2 per second), inside the slices by the check above; both come from `&[u32]`,
    // so LDRD's word alignment holds.
    unsafe {
        asm!(
            "lsrs {n}, {words}, #3",
            "beq 3f",
            "2:",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a}, {w0}, {x0}, {a}",
            "smlad {a}, {w1}, {x1}, {a}",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a}, {w0}, {x0}, {a}",
            "smlad {a}, {w1}, {x1}, {a}",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a}, {w0}, {x0}, {a}",
            "smlad {a}, {w1}, {x1}, {a}",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a}, {w0}, {x0}, {a}",
            "smlad {a}, {w1}, {x1}, {a}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "3:",
            "ands {n}, {words}, #6",
            "beq 5f",
            "4:",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "smlad {a}, {w0}, {x0}, {a}",
            "smlad {a}, {w1}, {x1}, {a}",
            "subs {n}, {n}, #2",
            "bne 4b",
            "5:",
            wp = inout(reg) w.as_ptr() => _,
            xp = inout(reg) x.as_ptr() => _,
            words = in(reg) words,
            n = out(reg) _,
            a = inout(reg) a,
            w0 = out(reg) _,
            w1 = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            options(nostack, readonly),
        )
    };
    a
}

/// `acc` plus the dot product of six words of int16 pairs: `w` from memory (at least 6 words,
/// checked; a short slice computes nothing), `x` in registers.
#[inline(always)]
pub(super) fn dot6(w: &[u32], x: &[u32; 6], acc: i32) -> i32 {
    let mut a = acc;
    if w.len() < 6 {
        return acc;
    }
    // SAFETY: reads words 0..6 of `w`, in bounds by the check above and word-aligned (`&[u32]`).
    unsafe {
        asm!(
            "ldrd {w0}, {w1}, [{wp}]",
            "smlad {a}, {w0}, {x0}, {a}",
            "smlad {a}, {w1}, {x1}, {a}",
            "ldrd {w0}, {w1}, [{wp}, #8]",
            "smlad {a}, {w0}, {x2}, {a}",
            "smlad {a}, {w1}, {x3}, {a}",
            "ldrd {w0}, {w1}, [{wp}, #16]",
            "smlad {a}, {w0}, {x4}, {a}",
            "smlad {a}, {w1}, {x5}, {a}",
            wp = in(reg) w.as_ptr(),
            x0 = in(reg) x[0],
            x1 = in(reg) x[1],
            x2 = in(reg) x[2],
            x3 = in(reg) x[3],
            x4 = in(reg) x[4],
            x5 = in(reg) x[5],
            a = inout(reg) a,
            w0 = out(reg) _,
            w1 = out(reg) _,
            options(nostack, readonly, pure),
        )
    };
    a
}

/// Work of [`dense16_pairs`]: the widened input (the `put_row` layout, words 0..8), then the
/// pointers of the remaining output pairs. `#[repr(C)]`: the assembly reads fixed offsets.
#[repr(C)]
pub(super) struct Dense16 {
    /// Input `x - zp` as int16 pairs, `[(x0, x2), (x1, x3), (x4, x6), …]`.
    pub x: [u32; 8],
    /// Weight rows of 16 int8 each (any alignment).
    pub w: *const i8,
    /// int32 bias per channel, little-endian (any alignment).
    pub bias: *const u8,
    /// Q31 multiplier per channel, little-endian (any alignment).
    pub mult: *const u8,
    pub shift: *const i8,
    pub out: *mut i8,
    /// Output pairs to compute (≥ 1).
    pub pairs: u32,
    pub zp: i32,
}

// Dense layer with 16 inputs, two outputs per iteration, in one hand-scheduled loop (all 14
// registers; inline `asm!` cannot name r6, r7 and r11 on Thumb). Per pair: 2 bias loads, 4 × (LDRD of
// two input words, 2 weight words, 4 SXTB16, 4 SMLAD), then per output the requantisation
//   t = SMMLAR(a, 2m, (a & c) - [a < 0])   (c = all ones when m ≥ 2^30; t = y - [a < 0] with
//                                           y = (a·m + 2^30) >> 31, exact: see `Rq` and BENCH.md)
//   q = (t >> e) + carry (bit e-1 of t)    (ASRS sets the carry, ADC adds it with the zero point)
// then SSAT #8 (no ReLU) or USAT #8, + zp, SSAT #8 (ReLU: clamp to [zp, 127]).
// A channel with shift ≥ 0 or a negative multiplier stops the loop before anything of its pair is
// stored; the function returns the pairs left (0 when done) and Rust finishes that pair.
// r0 job/x, r1 weights, r2 bias, r3 mult, r4 shift, r5 out, r6 pairs, r7 zp,
// r8 r9 accumulators, r10 weight word / ra, r11 widened weight, r12 lr input words / m e.
core::arch::global_asm!(
    ".macro EDGEVAE_DENSE16 name, relu",
    ".section .text.\\name,\"ax\",%progbits",
    ".global \\name",
    ".type \\name,%function",
    ".p2align 2",
    ".thumb_func",
    "\\name:",
    "push {{r4-r11, lr}}",
    "ldr r1, [r0, #32]",
    "ldr r2, [r0, #36]",
    "ldr r3, [r0, #40]",
    "ldr r4, [r0, #44]",
    "ldr r5, [r0, #48]",
    "ldr r6, [r0, #52]",
    "ldr r7, [r0, #56]",
    "cmp r6, #0",
    "beq 9f",
    "1:",
    "ldr r8, [r2], #4",
    "ldr r9, [r2], #4",
    ".irp k, 0, 8, 16, 24",
    "ldrd r12, lr, [r0, #\\k]",
    "ldr r10, [r1, #(\\k / 2)]",
    "sxtb16 r11, r10",
    "smlad r8, r11, r12, r8",
    "sxtb16 r11, r10, ror #8",
    "smlad r8, r11, lr, r8",
    "ldr r10, [r1, #(16 + \\k / 2)]",
    "sxtb16 r11, r10",
    "smlad r9, r11, r12, r9",
    "sxtb16 r11, r10, ror #8",
    "smlad r9, r11, lr, r9",
    ".endr",
    ".irp acc, r8, r9",
    "ldr r12, [r3], #4",
    "ldrsb lr, [r4], #1",
    "bics r10, lr, r12",
    "bpl 9f",
    "rsb lr, lr, #0",
    "lsl r12, r12, #1",
    "and r10, \\acc, r12, asr #31",
    "add r10, r10, \\acc, asr #31",
    "smmlar \\acc, \\acc, r12, r10",
    "asrs \\acc, \\acc, lr",
    ".if \\relu",
    "adc \\acc, \\acc, #0",
    "usat \\acc, #8, \\acc",
    "add \\acc, \\acc, r7",
    ".else",
    "adc \\acc, \\acc, r7",
    ".endif",
    "ssat \\acc, #8, \\acc",
    ".endr",
    "add r1, r1, #32",
    "strb r8, [r5], #1",
    "strb r9, [r5], #1",
    "subs r6, r6, #1",
    "bne 1b",
    "9:",
    "mov r0, r6",
    "pop {{r4-r11, pc}}",
    ".size \\name, . - \\name",
    ".endm",
    "EDGEVAE_DENSE16 edgevae_dsp_dense16_pairs, 0",
    "EDGEVAE_DENSE16 edgevae_dsp_dense16_pairs_relu, 1",
);

extern "C" {
    fn edgevae_dsp_dense16_pairs(job: *const Dense16) -> u32;
    fn edgevae_dsp_dense16_pairs_relu(job: *const Dense16) -> u32;
}

/// Runs the pairs of `job`; returns the pairs left when a channel needs the general
/// requantisation (0 when all are done).
///
/// # Safety
/// `w` must be readable for `16 · 2 · pairs` bytes, `bias` and `mult` for `4 · 2 · pairs`, `shift`
/// for `2 · pairs`, and `out` writable for `2 · pairs` bytes.
#[inline(always)]
pub(super) unsafe fn dense16_pairs(job: &Dense16, relu: bool) -> u32 {
    // SAFETY: the caller's contract; the functions follow the AAPCS and save what they use.
    unsafe {
        if relu {
            edgevae_dsp_dense16_pairs_relu(job)
        } else {
            edgevae_dsp_dense16_pairs(job)
        }
    }
}

/// Work of [`dense16_prelaid`]: the widened input (the `put_row` layout, words 0..8), then the
/// pre-laid blocks of the output pairs (`edgevae_shared::layout`, word-aligned). `#[repr(C)]`:
/// the assembly reads fixed offsets.
#[repr(C)]
pub(super) struct Dense16Prelaid {
    /// Input `x - zp` as int16 pairs, `[(x0, x2), (x1, x3), (x4, x6), …]`.
    pub x: [u32; 8],
    /// First word of the first pair's block (4-byte aligned).
    pub blocks: *const u32,
    /// One past the last pair's block (`blocks` + 22 words a pair, at least one pair).
    pub end: *const u32,
    pub out: *mut i8,
    pub zp: i32,
}

// Dense layer with 16 inputs from pre-laid blocks (`edgevae_shared::layout::dense16_word`), two
// outputs an iteration: LDM of the two biases into the accumulators, 4 × (LDRD of two input words,
// LDM of four int16 weight words, 4 SMLAD), LDM of [2m_a, e_a, 2m_b, e_b], then per output
//   t = SMMLAR(a, 2m, (a & (2m >> 31)) - [a < 0])   (the sign of 2m is the m ≥ 2^30 mask, see `Rq`)
//   q = (t >> e) + carry                            (ASRS by the low byte of e, ADC with the zp)
// then SSAT #8 (no ReLU) or USAT #8, + zp, SSAT #8 (ReLU: clamp to [zp, 127]), two STRB.
// 42 instructions a pair (46 with ReLU) for 32 MACs. The blocks were checked against the canonical
// layer when the model was parsed (every e in 1..=31), so there is no per-channel fallback.
// r0 job/x, r1 blocks, r2 end, r3 r4 r6 r10 weights / requantisation words, r5 out, r7 zp,
// r8 r9 accumulators, r11 SMMLAR addend, r12 lr input words.
core::arch::global_asm!(
    ".macro EDGEVAE_DENSE16P name, relu",
    ".section .text.\\name,\"ax\",%progbits",
    ".global \\name",
    ".type \\name,%function",
    ".p2align 2",
    ".thumb_func",
    "\\name:",
    "push {{r4-r11, lr}}",
    "ldr r1, [r0, #32]",
    "ldr r2, [r0, #36]",
    "ldr r5, [r0, #40]",
    "ldr r7, [r0, #44]",
    "1:",
    "ldm r1!, {{r8, r9}}",
    ".irp k, 0, 8, 16, 24",
    "ldrd r12, lr, [r0, #\\k]",
    "ldm r1!, {{r3, r4, r6, r10}}",
    "smlad r8, r3, r12, r8",
    "smlad r8, r4, lr, r8",
    "smlad r9, r6, r12, r9",
    "smlad r9, r10, lr, r9",
    ".endr",
    "ldm r1!, {{r3, r4, r6, r10}}",
    ".irp acc, r8, r9",
    ".ifc \\acc, r8",
    "and r11, \\acc, r3, asr #31",
    "add r11, r11, \\acc, asr #31",
    "smmlar \\acc, \\acc, r3, r11",
    "asrs \\acc, \\acc, r4",
    ".else",
    "and r11, \\acc, r6, asr #31",
    "add r11, r11, \\acc, asr #31",
    "smmlar \\acc, \\acc, r6, r11",
    "asrs \\acc, \\acc, r10",
    ".endif",
    ".if \\relu",
    "adc \\acc, \\acc, #0",
    "usat \\acc, #8, \\acc",
    "add \\acc, \\acc, r7",
    ".else",
    "adc \\acc, \\acc, r7",
    ".endif",
    "ssat \\acc, #8, \\acc",
    ".endr",
    "strb r8, [r5], #1",
    "strb r9, [r5], #1",
    "cmp r1, r2",
    "bne 1b",
    "pop {{r4-r11, pc}}",
    ".size \\name, . - \\name",
    ".endm",
    "EDGEVAE_DENSE16P edgevae_dsp_dense16_prelaid, 0",
    "EDGEVAE_DENSE16P edgevae_dsp_dense16_prelaid_relu, 1",
);

extern "C" {
    fn edgevae_dsp_dense16_prelaid(job: *const Dense16Prelaid);
    fn edgevae_dsp_dense16_prelaid_relu(job: *const Dense16Prelaid);
}

/// Runs every pair of `job`.
///
/// # Safety
/// `blocks` must be 4-byte aligned, `end - blocks` a non-zero multiple of 22 words, all of them
/// readable, and `out` writable for 2 bytes per 22 words.
#[inline(always)]
pub(super) unsafe fn dense16_prelaid(job: &Dense16Prelaid, relu: bool) {
    // SAFETY: the caller's contract; the functions follow the AAPCS and save what they use.
    unsafe {
        if relu {
            edgevae_dsp_dense16_prelaid_relu(job)
        } else {
            edgevae_dsp_dense16_prelaid(job)
        }
    }
}

/// Two output channels over `words` words of int8 pixels and weights, all widened on the fly:
/// returns `acc` plus `[Σ w0·(x - zp), Σ w1·(x - zp)]`, with `zz` = `zp` in both halfwords.
/// Used where no scratch is left for widened copies. Slices shorter than `4 · words` bytes
/// compute nothing.
#[inline(always)]
pub(super) fn dot2_i8(
    x: &[i8],
    w0: &[i8],
    w1: &[i8],
    words: usize,
    zz: u32,
    acc: [i32; 2],
) -> [i32; 2] {
    let [mut a0, mut a1] = acc;
    let bytes = words.saturating_mul(4);
    if words == 0 || x.len() < bytes || w0.len() < bytes || w1.len() < bytes {
        return acc;
    }
    // SAFETY: the loop reads `words` words from each of the three pointers, inside the slices by
    // the check above; LDR allows unaligned addresses on Armv7-M (UNALIGN_TRP is off after reset).
    unsafe {
        asm!(
            "2:",
            "ldr {xa}, [{xp}], #4",
            "sxtb16 {xb}, {xa}, ror #8",
            "sxtb16 {xa}, {xa}",
            "ssub16 {xa}, {xa}, {zz}",
            "ssub16 {xb}, {xb}, {zz}",
            "ldr {w}, [{wp0}], #4",
            "sxtb16 {t}, {w}",
            "smlad {a0}, {t}, {xa}, {a0}",
            "sxtb16 {t}, {w}, ror #8",
            "smlad {a0}, {t}, {xb}, {a0}",
            "ldr {w}, [{wp1}], #4",
            "sxtb16 {t}, {w}",
            "smlad {a1}, {t}, {xa}, {a1}",
            "sxtb16 {t}, {w}, ror #8",
            "smlad {a1}, {t}, {xb}, {a1}",
            "subs {n}, {n}, #1",
            "bne 2b",
            xp = inout(reg) x.as_ptr() => _,
            wp0 = inout(reg) w0.as_ptr() => _,
            wp1 = inout(reg) w1.as_ptr() => _,
            n = inout(reg) words => _,
            zz = in(reg) zz,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            xa = out(reg) _,
            xb = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        )
    };
    [a0, a1]
}

/// The fast requantisation of [`super::Rq`]: `t = SMMLAR(a, m2, (a & c) + (a >> 31))`, then
/// `(t >> e) + bit (e-1) of t` (ASRS sets the carry to the last bit shifted out, ADC adds it).
/// `e` must be in 1..=31 (with 0, ASRS would leave the carry as it was).
#[inline(always)]
pub(super) fn requant(a: i32, m2: i32, c: i32, e: u32) -> i32 {
    let q: i32;
    // SAFETY: register-only arithmetic (sets the flags, which the asm reads itself).
    unsafe {
        asm!(
            "and {ra}, {a}, {c}",
            "add {ra}, {ra}, {a}, asr #31",
            "smmlar {q}, {a}, {m2}, {ra}",
            "asrs {q}, {q}, {e}",
            "adc {q}, {q}, #0",
            a = in(reg) a,
            c = in(reg) c,
            m2 = in(reg) m2,
            e = in(reg) e,
            ra = out(reg) _,
            q = out(reg) q,
            options(pure, nomem, nostack),
        )
    };
    q
}

/// Work of [`ic1_pixel`]: one output pixel's taps of a one-input-channel convolution with at most
/// ten taps, as five int16 pairs, and the channel blocks to run them against. `#[repr(C)]`: the
/// assembly reads fixed offsets.
#[repr(C)]
pub(super) struct Ic1Pixel {
    /// Taps `x - zp` as pairs `(t0, t1), (t2, t3), …`, zero past the last tap.
    pub x: [u32; 5],
    /// Channel blocks of [`IC1_BLOCK_WORDS`] words: five weight pairs (same layout as `x`), bias,
    /// `2m`, `c`, `e`, output zero point (the fast requantisation of `Rq`).
    pub w: *const u32,
    pub out: *mut i8,
    /// Channels (≥ 1).
    pub n: u32,
}

/// Words of one channel block of [`Ic1Pixel::w`].
pub(super) const IC1_BLOCK_WORDS: usize = crate::kernels::dsp_scratch::IC1_ASM_WORDS;

// One pixel of a one-input-channel convolution with ≤ 10 taps: the taps stay in r1-r5, each
// channel is LDM of its weights and bias, five SMLAD, LDM of its requantisation, then the
// requantisation of `Rq` (see `requant`) and the clamp (as in the 16-input dense loop).
// r0 blocks, r1-r5 taps, r6 out, r7 count, r8-r12 weights / parameters, lr accumulator.
core::arch::global_asm!(
    ".macro EDGEVAE_IC1 name, relu",
    ".section .text.\\name,\"ax\",%progbits",
    ".global \\name",
    ".type \\name,%function",
    ".p2align 2",
    ".thumb_func",
    "\\name:",
    "push {{r4-r11, lr}}",
    "ldr r6, [r0, #24]",
    "ldr r7, [r0, #28]",
    "ldm r0, {{r1-r5}}",
    "ldr r0, [r0, #20]",
    "1:",
    "ldm r0!, {{r8-r12, lr}}",
    "smlad lr, r8, r1, lr",
    "smlad lr, r9, r2, lr",
    "smlad lr, r10, r3, lr",
    "smlad lr, r11, r4, lr",
    "smlad lr, r12, r5, lr",
    "ldm r0!, {{r8-r11}}",
    "and r12, lr, r9",
    "add r12, r12, lr, asr #31",
    "smmlar lr, lr, r8, r12",
    "asrs lr, lr, r10",
    ".if \\relu",
    "adc lr, lr, #0",
    "usat lr, #8, lr",
    "add lr, lr, r11",
    ".else",
    "adc lr, lr, r11",
    ".endif",
    "ssat lr, #8, lr",
    "strb lr, [r6], #1",
    "subs r7, r7, #1",
    "bne 1b",
    "pop {{r4-r11, pc}}",
    ".size \\name, . - \\name",
    ".endm",
    "EDGEVAE_IC1 edgevae_dsp_ic1_pixel, 0",
    "EDGEVAE_IC1 edgevae_dsp_ic1_pixel_relu, 1",
);

extern "C" {
    fn edgevae_dsp_ic1_pixel(job: *const Ic1Pixel);
    fn edgevae_dsp_ic1_pixel_relu(job: *const Ic1Pixel);
}

/// Runs the `n` channel blocks of `job` against its taps.
///
/// # Safety
/// `w` must be word-aligned and readable for `n · IC1_BLOCK_WORDS` words, `out` writable for
/// `n` bytes, `n ≥ 1`, and every block's `e` in 1..=31.
#[inline(always)]
pub(super) unsafe fn ic1_pixel(job: &Ic1Pixel, relu: bool) {
    // SAFETY: the caller's contract; the functions follow the AAPCS and save what they use.
    unsafe {
        if relu {
            edgevae_dsp_ic1_pixel_relu(job)
        } else {
            edgevae_dsp_ic1_pixel(job)
        }
    }
}

/// Work of [`ic1_pair`]: two output pixels' taps of a one-input-channel convolution, word-
/// interleaved (`[px0 word 0, px1 word 0, px0 word 1, …]`, int16 pairs in the order of
/// `narrow::pair_taps`), and the channel-triple blocks to run them against. `#[repr(C)]`: the
/// assembly reads fixed offsets.
#[repr(C)]
pub(super) struct Ic1Pair {
    /// `2 · words` words (word-aligned).
    pub x: *const u32,
    /// Tap words per pixel (1..=[`IC1_PAIR_MAX_WORDS`]).
    pub words: u32,
    /// The first triple's block ([`crate::kernels::dsp_scratch::ic1_pair_block_words`] words
    /// each: the three channels' biases, each twice, the weights with the three channels' word
    /// `t` side by side, then per channel `2m`, `c`, `e | zp << 8` and its output offset).
    pub blocks: *const u32,
    /// One past the last triple's block (at least one triple).
    pub end: *const u32,
    /// Pixel 0's and pixel 1's output channels (the same pixel twice is allowed).
    pub out: [*mut i8; 2],
}

/// Steps of the unrolled SMLAD sequence of [`ic1_pair`].
pub(super) const IC1_PAIR_MAX_WORDS: usize = crate::kernels::dsp_scratch::IC1_PAIR_MAX_WORDS;

// Two pixels × three channels of a one-input-channel convolution, per triple: LDM of the six
// accumulators' initial values (each channel's bias twice), then `words` steps of [LDM of the three channels' weight
// words, LDRD of the two pixels' tap words, six SMLAD] (8 instructions for 12 MACs; entered
// part-way into a 32-step unrolled sequence, 32 bytes a step, so no loop counter), then per
// channel LDM of [2m, c, e | zp << 8, offset] and the requantisation of `Rq` (see `requant`;
// ASRS shifts by the low byte, e, and the zero point is `ew asr #8`) and the clamp of the
// 16-input dense loop, STRB at the offset: 52 + 8·words instructions a triple (64 with ReLU).
// r0 blocks, r1 taps, r2-r4 weights, r5 r6 taps, r7-r12 accumulators (channel-major, pixel
// minor), lr the entry / requantisation addend; the stack holds [taps, entry, out0, out1, end].
core::arch::global_asm!(
    ".macro EDGEVAE_IC1PAIR_REQ acc, out, relu",
    "and lr, \\acc, r4",
    "add lr, lr, \\acc, asr #31",
    "smmlar \\acc, \\acc, r3, lr",
    "asrs \\acc, \\acc, r5",
    ".if \\relu",
    "adc \\acc, \\acc, #0",
    "usat \\acc, #8, \\acc",
    "add \\acc, \\acc, r5, asr #8",
    ".else",
    "adc \\acc, \\acc, r5, asr #8",
    ".endif",
    "ssat \\acc, #8, \\acc",
    "strb \\acc, [\\out, r6]",
    ".endm",
    ".macro EDGEVAE_IC1PAIR name, relu",
    ".section .text.\\name,\"ax\",%progbits",
    ".global \\name",
    ".type \\name,%function",
    ".p2align 2",
    ".thumb_func",
    "\\name:",
    "push {{r4-r11, lr}}",
    "sub sp, sp, #28",
    "ldr r1, [r0, #4]",
    "adr.w r2, 8f",
    "sub r2, r2, r1, lsl #5",
    "orr r2, r2, #1",
    "ldr r3, [r0, #0]",
    "strd r3, r2, [sp, #0]",
    "ldrd r3, r4, [r0, #16]",
    "strd r3, r4, [sp, #8]",
    "ldr r3, [r0, #12]",
    "str r3, [sp, #16]",
    "ldr r0, [r0, #8]",
    "1:",
    "ldm r0!, {{r7-r12}}",
    "ldrd r1, lr, [sp, #0]",
    "bx lr",
    ".rept {steps}",
    "ldm.w r0!, {{r2, r3, r4}}",
    "ldrd r5, r6, [r1], #8",
    "smlad r7, r2, r5, r7",
    "smlad r8, r2, r6, r8",
    "smlad r9, r3, r5, r9",
    "smlad r10, r3, r6, r10",
    "smlad r11, r4, r5, r11",
    "smlad r12, r4, r6, r12",
    ".endr",
    "8:",
    "ldrd r1, r2, [sp, #8]",
    "ldm r0!, {{r3, r4, r5, r6}}",
    "EDGEVAE_IC1PAIR_REQ r7, r1, \\relu",
    "EDGEVAE_IC1PAIR_REQ r8, r2, \\relu",
    "ldm r0!, {{r3, r4, r5, r6}}",
    "EDGEVAE_IC1PAIR_REQ r9, r1, \\relu",
    "EDGEVAE_IC1PAIR_REQ r10, r2, \\relu",
    "ldm r0!, {{r3, r4, r5, r6}}",
    "EDGEVAE_IC1PAIR_REQ r11, r1, \\relu",
    "EDGEVAE_IC1PAIR_REQ r12, r2, \\relu",
    "ldr lr, [sp, #16]",
    "cmp r0, lr",
    "bne 1b",
    "add sp, sp, #28",
    "pop {{r4-r11, pc}}",
    ".size \\name, . - \\name",
    ".endm",
    "EDGEVAE_IC1PAIR edgevae_dsp_ic1_pair, 0",
    "EDGEVAE_IC1PAIR edgevae_dsp_ic1_pair_relu, 1",
    steps = const IC1_PAIR_MAX_WORDS,
);

extern "C" {
    fn edgevae_dsp_ic1_pair(job: *const Ic1Pair);
    fn edgevae_dsp_ic1_pair_relu(job: *const Ic1Pair);
}

/// Runs every channel triple of `job` against its two pixels' taps.
///
/// # Safety
/// `x` word-aligned and readable for `2 · words` words, `words` in 1..=[`IC1_PAIR_MAX_WORDS`];
/// `blocks` word-aligned, `end - blocks` a non-zero multiple of the block words, all readable;
/// every block's `e` in 1..=31 and each `out[p] + offset` writable.
#[inline(always)]
pub(super) unsafe fn ic1_pair(job: &Ic1Pair, relu: bool) {
    // SAFETY: the caller's contract; the functions follow the AAPCS and save what they use.
    unsafe {
        if relu {
            edgevae_dsp_ic1_pair_relu(job)
        } else {
            edgevae_dsp_ic1_pair(job)
        }
    }
}

/// Work of [`dot4_i8`]: four output channels (weight rows `stride` bytes apart) against one run
/// of int8 pixels, all widened in registers. `#[repr(C)]`: the assembly reads fixed offsets and
/// writes `acc` back.
#[repr(C)]
pub(super) struct Dot4 {
    pub x: *const i8,
    /// Channel 0's weights of the run; channel j's are `j · stride` bytes on.
    pub w: *const i8,
    pub stride: usize,
    /// Words (four elements) of the run (≥ 1).
    pub words: u32,
    /// The input zero point in both halfwords.
    pub zz: u32,
    pub acc: [i32; 4],
}

// Four channels × one run: per word of pixels, LDR, two SXTB16 and two SSUB16 (x - zp), then per
// channel LDR of its weights, two SXTB16 and two SMLAD (27 instructions for 16 MACs). All 14
// registers: r0 pixels, r1 channel 0/1 weights, r2 channel 2/3 weights, r3 stride, r4 count,
// r5 zero points, r6-r9 sums, r10 r11 widened pixels, r12 weight word, lr widened weights.
core::arch::global_asm!(
    // The weights half of both four-channel loops: channel j's word at r1 (j = 0, 1) or r2
    // (j = 2, 3), plus r3 for odd j; its two halves against the pixel pairs in r10 and r11.
    ".macro EDGEVAE_DOT4_WEIGHTS",
    "ldr r12, [r1, r3]",
    "sxtb16 lr, r12",
    "smlad r7, lr, r10, r7",
    "sxtb16 lr, r12, ror #8",
    "smlad r7, lr, r11, r7",
    "ldr r12, [r1], #4",
    "sxtb16 lr, r12",
    "smlad r6, lr, r10, r6",
    "sxtb16 lr, r12, ror #8",
    "smlad r6, lr, r11, r6",
    "ldr r12, [r2, r3]",
    "sxtb16 lr, r12",
    "smlad r9, lr, r10, r9",
    "sxtb16 lr, r12, ror #8",
    "smlad r9, lr, r11, r9",
    "ldr r12, [r2], #4",
    "sxtb16 lr, r12",
    "smlad r8, lr, r10, r8",
    "sxtb16 lr, r12, ror #8",
    "smlad r8, lr, r11, r8",
    ".endm",
    ".section .text.edgevae_dsp_dot4_i8,\"ax\",%progbits",
    ".global edgevae_dsp_dot4_i8",
    ".type edgevae_dsp_dot4_i8,%function",
    ".p2align 2",
    ".thumb_func",
    "edgevae_dsp_dot4_i8:",
    "push {{r4-r11, lr}}",
    "str r0, [sp, #-8]!",
    "ldr r1, [r0, #4]",
    "ldr r3, [r0, #8]",
    "ldr r4, [r0, #12]",
    "ldr r5, [r0, #16]",
    "add r6, r0, #20",
    "ldm r6, {{r6-r9}}",
    "add r2, r1, r3, lsl #1",
    "ldr r0, [r0]",
    "1:",
    "ldr r10, [r0], #4",
    "sxtb16 r11, r10, ror #8",
    "sxtb16 r10, r10",
    "ssub16 r10, r10, r5",
    "ssub16 r11, r11, r5",
    "EDGEVAE_DOT4_WEIGHTS",
    "subs r4, r4, #1",
    "bne 1b",
    "ldr r0, [sp], #8",
    "add r0, r0, #20",
    "stm r0, {{r6-r9}}",
    "pop {{r4-r11, pc}}",
    ".size edgevae_dsp_dot4_i8, . - edgevae_dsp_dot4_i8",
    ".section .text.edgevae_dsp_dot4_w16,\"ax\",%progbits",
    ".global edgevae_dsp_dot4_w16",
    ".type edgevae_dsp_dot4_w16,%function",
    ".p2align 2",
    ".thumb_func",
    "edgevae_dsp_dot4_w16:",
    "push {{r4-r11, lr}}",
    "ldr r1, [r0, #4]",
    "ldr r3, [r0, #8]",
    "ldr r4, [r0, #12]",
    "ldr r5, [r0, #16]",
    "ldm r5, {{r6-r9}}",
    "add r2, r1, r3, lsl #1",
    "ldr r0, [r0]",
    "1:",
    "ldrd r10, r11, [r0], #8",
    "EDGEVAE_DOT4_WEIGHTS",
    "subs r4, r4, #1",
    "bne 1b",
    "stm r5, {{r6-r9}}",
    "pop {{r4-r11, pc}}",
    ".size edgevae_dsp_dot4_w16, . - edgevae_dsp_dot4_w16",
);

extern "C" {
    fn edgevae_dsp_dot4_i8(job: *mut Dot4);
}

/// Adds the four channels' dot products over the run of `job` to `job.acc`.
///
/// # Safety
/// `x` must be readable for `4 · words` bytes, and so must `w + j · stride` for j in 0..4;
/// `words ≥ 1`.
#[inline(always)]
pub(super) unsafe fn dot4_i8(job: &mut Dot4) {
    // SAFETY: the caller's contract; the function follows the AAPCS and saves what it uses.
    unsafe { edgevae_dsp_dot4_i8(job) }
}

/// One output channel over `words` words of int8 pixels and weights, both widened on the fly:
/// `acc + Σ w·(x - zp)`, with `zz` = `zp` in both halfwords. Slices shorter than `4 · words` bytes
/// compute nothing.
#[inline(always)]
pub(super) fn dot1_i8(x: &[i8], w: &[i8], words: usize, zz: u32, acc: i32) -> i32 {
    let mut a = acc;
    let bytes = words.saturating_mul(4);
    if words == 0 || x.len() < bytes || w.len() < bytes {
        return acc;
    }
    // SAFETY: the loop reads `words` words from both pointers, inside the slices by the check
    // above; LDR allows unaligned addresses on Armv7-M (UNALIGN_TRP is off after reset).
    unsafe {
        asm!(
            "2:",
            "ldr {xa}, [{xp}], #4",
            "ldr {w}, [{wp}], #4",
            "sxtb16 {xb}, {xa}, ror #8",
            "sxtb16 {xa}, {xa}",
            "ssub16 {xa}, {xa}, {zz}",
            "ssub16 {xb}, {xb}, {zz}",
            "sxtb16 {t}, {w}",
            "smlad {a}, {t}, {xa}, {a}",
            "sxtb16 {t}, {w}, ror #8",
            "smlad {a}, {t}, {xb}, {a}",
            "subs {n}, {n}, #1",
            "bne 2b",
            xp = inout(reg) x.as_ptr() => _,
            wp = inout(reg) w.as_ptr() => _,
            n = inout(reg) words => _,
            zz = in(reg) zz,
            a = inout(reg) a,
            xa = out(reg) _,
            xb = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        )
    };
    a
}

/// Work of [`dot4_w16`]: four output channels (int8 weight rows `stride` bytes apart) against one
/// run of pixels already widened (`put_row` layout, `groups` groups of four), adding to four sums
/// in memory. `#[repr(C)]`: the assembly reads fixed offsets.
#[repr(C)]
pub(super) struct Dot4W16 {
    pub x: *const u32,
    pub w: *const i8,
    pub stride: usize,
    /// Groups of four elements (≥ 1).
    pub groups: u32,
    /// Four word-aligned sums, read and written back.
    pub acc: *mut i32,
}

// `edgevae_dsp_dot4_w16` (in the `global_asm!` of `dot4_i8`, sharing its weights macro): four
// channels × one widened run, per group of four LDRD of the two pixel words, then per channel LDR
// of its weights, two SXTB16 and two SMLAD (23 instructions for 16 MACs). r5 holds the sums'
// address; otherwise the registers of `dot4_i8`.

extern "C" {
    fn edgevae_dsp_dot4_w16(job: *const Dot4W16);
}

/// Adds the four channels' dot products over the widened run of `job` to its four sums.
///
/// # Safety
/// `x` must be word-aligned and readable for `2 · groups` words, `w + j · stride` readable for
/// `4 · groups` bytes for j in 0..4, `acc` word-aligned and writable for four words; `groups ≥ 1`.
#[inline(always)]
pub(super) unsafe fn dot4_w16(job: &Dot4W16) {
    // SAFETY: the caller's contract; the function follows the AAPCS and saves what it uses.
    unsafe { edgevae_dsp_dot4_w16(job) }
}
