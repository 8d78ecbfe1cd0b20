//! Reference fully connected layer.

use super::super::{validate_dense, KernelError, OutputStage};

/// The reference needs no scratch.
pub fn dense_scratch_size(_n_in: usize, _n_out: usize) -> usize {
    0
}

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
    _scratch: &mut [u8],
) -> Result<(), KernelError> {
    dense_with(
        input,
        input_zp,
        weights,
        n_in,
        n_out,
        stage,
        output,
        super::conv::dot_tap,
    )
}

/// The reference loop with a pluggable dot product (the NEON path reuses it).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn dense_with(
    input: &[i8],
    input_zp: i32,
    weights: &[i8],
    n_in: usize,
    n_out: usize,
    stage: &OutputStage,
    output: &mut [i8],
    dot: impl Fn(i32, &[i8], &[i8], i32) -> i32,
) -> Result<(), KernelError> {
    validate_dense(input, input_zp, weights, n_in, n_out, stage, output)?;
    if n_out == 0 {
        return Ok(());
    }
    let input = &input[..n_in];
    if n_in == 0 {
        for (oc, o) in output[..n_out].iter_mut().enumerate() {
            *o = stage.apply(stage.bias.get(oc), oc);
        }
        return Ok(());
    }
    for (oc, (o, row)) in output[..n_out]
        .iter_mut()
        .zip(weights.chunks_exact(n_in))
        .enumerate()
    {
        let acc = dot(stage.bias.get(oc), row, input, input_zp);
        *o = stage.apply(acc, oc);
    }
    Ok(())
}
