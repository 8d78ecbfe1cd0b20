//! Dense layer: the input is widened once; two output channels share each input load. Sixteen
//! inputs (the decoder's first layer) run one assembly loop with the input on the stack
//! ([`asm::dense16_pairs`]) and need no scratch; with the model file's pre-laid block
//! (`edgevae_shared::layout`: int16 weights in the loop's order, bias and requantisation words
//! beside them) the loop is [`asm::dense16_prelaid`], with no widening of weights.

use super::super::{DenseCall, DenseParams, KernelError, OutputStage, Scratch};
use super::{asm, dot2_tail, put_row, store_pair, Rq};
use crate::kernels::dsp_scratch::dense_scratch_for;
use edgevae_shared::layout::{dense16_block_len, DENSE16_INPUTS, DENSE16_PAIR_WORDS};

/// See [`crate::kernels::dense`].
pub fn dense(call: DenseCall<'_>, scratch: Scratch<'_>) -> Result<(), KernelError> {
    let (p, input, weights, stage, output) = call.into_parts();
    let (n_in, n_out, input_zp) = p.parts();
    if n_out == 0 {
        return Ok(());
    }
    if n_in == 16 && dense16(input, input_zp, weights, n_out, stage, output) {
        return Ok(());
    }
    if n_in / 4 > 0 && dense_scratch_for(n_in, n_out, scratch.len()) == 0 {
        // No room to widen the input: widen it in registers, per pair of outputs.
        dense_direct(input, input_zp, weights, n_in, n_out, stage, output);
        return Ok(());
    }
    let groups = n_in / 4;
    let main = groups * 4;
    let x = scratch
        .into_words()
        .get_mut(..2 * groups)
        .ok_or(KernelError::ScratchTooSmall)?;
    // Validated lengths; `get` keeps the checks out of the code (no panic path).
    let (head, tail) = input
        .get(..n_in)
        .and_then(|x| x.split_at_checked(main))
        .unwrap_or((&[], &[]));
    put_row::<1>(x, 0, 0, head, input_zp);
    let x = &*x;
    let row = |oc: usize| weights.get(oc * n_in..(oc + 1) * n_in).unwrap_or(&[]);
    let tail_dot = |w: &[i8], acc: i32| {
        w.get(main..)
            .unwrap_or(&[])
            .iter()
            .zip(tail)
            .fold(acc, |acc, (&w, &v)| {
                acc.wrapping_add((w as i32).wrapping_mul(v as i32 - input_zp))
            })
    };
    let mut outs = output.get_mut(..n_out).unwrap_or(&mut []).chunks_mut(2);
    for oc0 in (0..n_out).step_by(2) {
        let oc1 = (oc0 + 1).min(n_out - 1);
        let (w0, w1) = (row(oc0), row(oc1));
        let [a0, a1] = asm::dense_2(
            w0,
            w1,
            x,
            groups,
            [stage.bias.get(oc0), stage.bias.get(oc1)],
        );
        let Some(o) = outs.next() else { break };
        if let Some(o0) = o.get_mut(0) {
            *o0 = Rq::new(stage, oc0).apply(tail_dot(w0, a0), stage);
        }
        if let Some(o1) = o.get_mut(1) {
            *o1 = Rq::new(stage, oc1).apply(tail_dot(w1, a1), stage);
        }
    }
    Ok(())
}

/// See [`crate::kernels::dense_prelaid`]: the pre-laid loop ([`asm::dense16_prelaid`]) where
/// `prelaid` is a word-aligned dense 16-input block for `n_out` outputs and the clamp is plain
/// int8 or a fused ReLU; [`crate::kernels::dense`] (the front door's full validation) otherwise.
///
/// The one kernel that takes the call unchecked: the block carries the blocked channels' bias and
/// requantisation, so it checks only what the rest of the call reads (see below).
pub fn dense_prelaid(
    p: &DenseParams,
    input: &[i8],
    weights: &[i8],
    prelaid: &[u8],
    stage: &OutputStage,
    output: &mut [i8],
    scratch: Scratch<'_>,
) -> Result<(), KernelError> {
    let DenseParams {
        n_in,
        n_out,
        input_zp,
    } = *p;
    let relu = stage.act_min == stage.output_zp && stage.act_min != -128;
    let clamp_ok = stage.act_max == 127 && (relu || stage.act_min == -128);
    let pairs = n_out / 2;
    let block_ok = n_in == DENSE16_INPUTS
        && pairs > 0
        && prelaid.len() == dense16_block_len(n_out)
        && (prelaid.as_ptr() as usize).is_multiple_of(4);
    let (true, true, Some(x), Some(out)) = (
        clamp_ok,
        block_ok,
        input.get(..DENSE16_INPUTS),
        output.get_mut(..n_out),
    ) else {
        return crate::kernels::dense(p, input, weights, stage, output, scratch);
    };
    // The block carries the blocked channels' bias and requantisation (checked against the
    // canonical arrays when the model was parsed), so only what the rest of the call reads is
    // validated here: zero points, clamp, lengths, and the odd last channel's shift; a call that
    // fails goes to the front door's `dense`, whose full validation names the error. (A full `validate_dense`
    // costs ≈ 4 instructions a channel, 0.25/MAC of this layer.)
    let last_shift_ok = n_out % 2 == 0
        || stage
            .shift
            .get(n_out - 1)
            .is_some_and(|s| (-31..=30).contains(s));
    if !(-128..=127).contains(&input_zp)
        || weights.len() < DENSE16_INPUTS * n_out
        || stage.bias.len() < n_out
        || stage.multiplier.len() < n_out
        || stage.shift.len() < n_out
        || !last_shift_ok
        || stage.validate(0).is_err()
    {
        // The full validation names the error.
        return crate::kernels::dense(p, input, weights, stage, output, scratch);
    }
    let blocks = prelaid.as_ptr() as *const u32;
    let mut job = asm::Dense16Prelaid {
        x: [0; 8],
        blocks,
        // SAFETY: `prelaid` is `pairs` blocks of DENSE16_PAIR_WORDS words; one past its end.
        end: unsafe { blocks.add(pairs * DENSE16_PAIR_WORDS) },
        out: out.as_mut_ptr(),
        zp: stage.output_zp,
    };
    put_row::<1>(&mut job.x, 0, 0, x, input_zp);
    // SAFETY: `prelaid` is 4-byte aligned and exactly `pairs ≥ 1` blocks long (checked above),
    // and `out` holds `n_out ≥ 2 · pairs` bytes.
    unsafe { asm::dense16_prelaid(&job, relu) };
    if n_out % 2 == 1 {
        let oc = n_out - 1;
        let v = one_output(x, input_zp, weights, DENSE16_INPUTS, stage, oc);
        if let Some(o) = out.get_mut(oc) {
            *o = v;
        }
    }
    Ok(())
}

/// Output `oc` of a dense layer the general way (reference dot, prepared requantisation).
#[inline(never)]
fn one_output(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    stage: &OutputStage,
    oc: usize,
) -> i8 {
    let row = weights
        .get(oc * n_in..(oc + 1) * n_in)
        .unwrap_or(&[])
        .iter();
    let acc = row.zip(input).fold(stage.bias.get(oc), |acc, (&w, &x)| {
        acc.wrapping_add((w as i32).wrapping_mul(x as i32 - input_zp))
    });
    Rq::new(stage, oc).apply(acc, stage)
}

/// Sixteen inputs: the assembly loop over output pairs where the clamp is plain int8 or a fused
/// ReLU (`act_min` = zero point, `act_max` = 127); false (nothing written) otherwise. The
/// caller has validated the call.
fn dense16(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
) -> bool {
    let relu = stage.act_min == stage.output_zp && stage.act_min != -128;
    if stage.act_max != 127 || !(relu || stage.act_min == -128) {
        return false;
    }
    let (Some(x), Some(w), Some(bias), Some(mult), Some(shift), Some(out)) = (
        input.get(..16),
        weights.get(..16 * n_out),
        stage.bias.0.get(..4 * n_out),
        stage.multiplier.0.get(..4 * n_out),
        stage.shift.get(..n_out),
        output.get_mut(..n_out),
    ) else {
        return false;
    };
    let mut job = asm::Dense16 {
        x: [0; 8],
        w: w.as_ptr(),
        bias: bias.as_ptr(),
        mult: mult.as_ptr(),
        shift: shift.as_ptr(),
        out: out.as_mut_ptr(),
        pairs: 0,
        zp: stage.output_zp,
    };
    put_row::<1>(&mut job.x, 0, 0, x, input_zp);
    let pairs = n_out / 2;
    let mut p = 0;
    while p < pairs {
        let oc = 2 * p;
        // SAFETY: `oc < n_out`, so the offsets stay inside (or one past) the slices above.
        unsafe {
            job.w = w.as_ptr().add(16 * oc);
            job.bias = bias.as_ptr().add(4 * oc);
            job.mult = mult.as_ptr().add(4 * oc);
            job.shift = shift.as_ptr().add(oc);
            job.out = out.as_mut_ptr().add(oc);
        }
        job.pairs = (pairs - p) as u32;
        // SAFETY: pairs p.. cover channels oc..2·pairs ≤ n_out, whose weights (16 each), bias and
        // multipliers (4 bytes each), shifts and outputs lie inside the slices above.
        let left = unsafe { asm::dense16_pairs(&job, relu) } as usize;
        if left == 0 {
            break;
        }
        // Pair `stop` has a channel the loop does not handle: finish it here, go on after it.
        let stop = pairs - left.min(pairs - p);
        for oc in [2 * stop, 2 * stop + 1] {
            let v = one_output(x, input_zp, w, 16, stage, oc);
            if let Some(o) = out.get_mut(oc) {
                *o = v;
            }
        }
        p = stop + 1;
    }
    if n_out % 2 == 1 {
        let oc = n_out - 1;
        let v = one_output(x, input_zp, w, 16, stage, oc);
        if let Some(o) = out.get_mut(oc) {
            *o = v;
        }
    }
    true
}

/// Without scratch: each pair of outputs is one SMLAD dot over the int8 input and weight rows,
/// both widened in registers ([`asm::dot2_i8`]). The caller has validated the call.
fn dense_direct(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
) {
    let zz = (input_zp as u16 as u32).wrapping_mul(0x0001_0001);
    let x = input.get(..n_in).unwrap_or(&[]);
    let main = n_in / 4;
    let row = |oc: usize| weights.get(oc * n_in..(oc + 1) * n_in).unwrap_or(&[]);
    for oc0 in (0..n_out).step_by(2) {
        // An odd last output runs as a pair with itself; the duplicate is discarded.
        let oc1 = (oc0 + 1).min(n_out - 1);
        let (w0, w1) = (row(oc0), row(oc1));
        let mut acc = [stage.bias.get(oc0), stage.bias.get(oc1)];
        acc = asm::dot2_i8(x, w0, w1, main, zz, acc);
        acc = dot2_tail(x, w0, w1, 4 * main, input_zp, acc);
        store_pair(output, 0, [oc0, oc1], acc, stage);
    }
}
