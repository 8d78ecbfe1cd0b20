//! Reference 2-D convolution.

use super::super::{Conv, ConvCall, ConvGeom, KernelError, Scratch, Shape};

/// The reference needs no scratch.
pub fn conv2d_scratch_size(_in_shape: Shape, _out_shape: Shape, _geom: ConvGeom) -> usize {
    0
}

/// `acc + Σ w·(x - zp)` over one tap's input channels, wrapping like every fast path.
#[inline(always)]
pub(crate) fn dot_tap(acc: i32, w: &[i8], x: &[i8], zp: i32) -> i32 {
    w.iter().zip(x).fold(acc, |acc, (&w, &x)| {
        acc.wrapping_add((w as i32).wrapping_mul(x as i32 - zp))
    })
}

/// See [`crate::kernels::conv2d`].
pub fn conv2d(call: ConvCall<'_>, _scratch: Scratch<'_>) -> Result<(), KernelError> {
    conv2d_with(call, dot_tap);
    Ok(())
}

/// The reference loop nest with a pluggable per-tap dot product (the NEON path reuses it).
#[inline(always)]
pub(crate) fn conv2d_with(call: ConvCall<'_>, dot: impl Fn(i32, &[i8], &[i8], i32) -> i32) {
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
    let mut out = output.chunks_exact_mut(oc_n);
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            let Some(px) = out.next() else { return };
            for (oc, o) in px.iter_mut().enumerate() {
                let mut acc = stage.bias.get(oc);
                for ky in 0..kh {
                    // Input row oy*s - pad + ky; taps in the padding contribute nothing.
                    let Some(iy) = (oy * stride + ky)
                        .checked_sub(pad)
                        .filter(|&y| y < in_shape.h)
                    else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = (ox * stride + kx)
                            .checked_sub(pad)
                            .filter(|&x| x < in_shape.w)
                        else {
                            continue;
                        };
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
