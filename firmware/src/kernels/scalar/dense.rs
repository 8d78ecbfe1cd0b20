//! Reference fully connected layer.

use super::super::{DenseCall, KernelError, Scratch};

/// The reference needs no scratch.
pub fn dense_scratch_size(_n_in: usize, _n_out: usize) -> usize {
    0
}

/// See [`crate::kernels::dense`].
pub fn dense(call: DenseCall<'_>, _scratch: Scratch<'_>) -> Result<(), KernelError> {
    dense_with(call, super::conv::dot_tap);
    Ok(())
}

/// The reference loop with a pluggable dot product (the NEON path reuses it).
#[inline(always)]
pub(crate) fn dense_with(call: DenseCall<'_>, dot: impl Fn(i32, &[i8], &[i8], i32) -> i32) {
    let (p, input, weights, stage, output) = call.into_parts();
    let (n_in, n_out, input_zp) = p.parts();
    if n_out == 0 {
        return;
    }
    // Validated lengths; `get` keeps the checks out of the code (no panic path).
    let input = input.get(..n_in).unwrap_or(&[]);
    let output = output.get_mut(..n_out).unwrap_or(&mut []);
    if n_in == 0 {
        for (oc, o) in output.iter_mut().enumerate() {
            *o = stage.apply(stage.bias.get(oc), oc);
        }
        return;
    }
    for (oc, (o, row)) in output
        .iter_mut()
        .zip(weights.chunks_exact(n_in))
        .enumerate()
    {
        let acc = dot(stage.bias.get(oc), row, input, input_zp);
        *o = stage.apply(acc, oc);
    }
}
