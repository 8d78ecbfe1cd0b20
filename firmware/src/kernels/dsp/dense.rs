//! Dense layer: the input is widened once; two output channels share each input load.

use super::super::{validate_dense, KernelError, OutputStage};
use super::{asm, put_row, scratch_words, Rq};
use crate::kernels::dsp_scratch::dense_scratch_size;

/// See [`crate::kernels::dense`].
#[allow(clippy::too_many_arguments)]
pub fn dense(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
    scratch: &mut [u8],
) -> Result<(), KernelError> {
    validate_dense(input, input_zp, weights, n_in, n_out, stage, output)?;
    if scratch.len() < dense_scratch_size(n_in, n_out) {
        return Err(KernelError::ScratchTooSmall);
    }
    if n_out == 0 {
        return Ok(());
    }
    let groups = n_in / 4;
    let main = groups * 4;
    let x = scratch_words(scratch)
        .get_mut(..2 * groups)
        .ok_or(KernelError::ScratchTooSmall)?;
    let (head, tail) = input[..n_in].split_at(main);
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
    let mut outs = output[..n_out].chunks_mut(2);
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
