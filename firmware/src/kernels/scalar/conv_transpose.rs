//! Reference transposed 2-D convolution, computed per output pixel as the phase convolution that
//! produces it (gather form; no zero insertion).

use super::super::{Conv, ConvGeom, ConvTCall, KernelError, Scratch, Shape};
use super::conv::dot_tap;

/// The reference needs no scratch.
pub fn conv_transpose2d_scratch_size(
    _in_shape: Shape,
    _out_shape: Shape,
    _geom: ConvGeom,
) -> usize {
    0
}

/// See [`crate::kernels::conv_transpose2d`].
pub fn conv_transpose2d(call: ConvTCall<'_>, _scratch: Scratch<'_>) -> Result<(), KernelError> {
    conv_transpose2d_with(call, dot_tap);
    Ok(())
}

/// The reference loop nest with a pluggable per-tap dot product (the NEON path reuses it).
#[inline(always)]
pub(crate) fn conv_transpose2d_with(
    call: ConvTCall<'_>,
    dot: impl Fn(i32, &[i8], &[i8], i32) -> i32,
) {
    let (Conv(p), input, weights, stage, output) = call.into_parts();
    let (in_shape, out_shape, geom, input_zp) = p.parts();
    let (ic, oc_n) = (in_shape.c, out_shape.c);
    if oc_n == 0 {
        return;
    }
    let ConvGeom {
        kh,
        kw,
        stride,
        pad,
    } = geom;
    // Validated ≥ 1; `max` keeps division by zero out of the code (no panic path).
    let stride = stride.max(1);
    let mut out = output.chunks_exact_mut(oc_n);
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            let Some(px) = out.next() else { return };
            // oy = iy*s - pad + ky: only ky ≡ oy + pad (mod s) reach this row (its phase).
            let (ty, tx) = (oy + pad, ox + pad);
            for (oc, o) in px.iter_mut().enumerate() {
                let mut acc = stage.bias.get(oc);
                for ky in (ty % stride..kh.min(ty + 1)).step_by(stride) {
                    let iy = (ty - ky) / stride;
                    if iy >= in_shape.h {
                        continue;
                    }
                    for kx in (tx % stride..kw.min(tx + 1)).step_by(stride) {
                        let ix = (tx - kx) / stride;
                        if ix >= in_shape.w {
                            continue;
                        }
                        let xo = (iy * in_shape.w + ix) * ic;
                        let wo = ((oc * kh + ky) * kw + kx) * ic;
                        if let (Some(x), Some(w)) =
                            (input.get(xo..xo + ic), weights.get(wo..wo + ic))
                        {
                            acc = dot(acc, w, x, input_zp);
                        }
                    }
                }
                *o = stage.apply(acc, oc);
            }
        }
    }
}
