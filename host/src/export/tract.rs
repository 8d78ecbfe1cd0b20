//! Running exported ONNX graphs in tract, the independent check of the exporter.

use std::path::Path;

use tract_onnx::prelude::{tvec, Datum, Framework, InferenceModelExt, IntoRunnable, Tensor};

use crate::error::Error;

fn tract_err(path: &Path) -> impl Fn(tract_onnx::prelude::TractError) -> Error + '_ {
    move |e| Error::data(path, format!("tract: {e:#}"))
}

/// Runs the ONNX graph at `path` in tract on one input of `shape` (element type `I`) and returns
/// its first output (element type `O`): `f32 → f32` for the float graphs, `u8 → i8` and
/// `i8 → u8` for the quantized encoder and decoder.
pub fn run<I: Datum + Copy, O: Datum + Copy>(
    path: &Path,
    input: &[I],
    shape: &[usize],
) -> Result<Vec<O>, Error> {
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(tract_err(path))?;
    let t = Tensor::from_shape(shape, input).map_err(tract_err(path))?;
    let out = plan.run(tvec!(t.into())).map_err(tract_err(path))?;
    let view = out[0].try_as_plain_ram().map_err(tract_err(path))?;
    let v = view.as_slice::<O>().map_err(tract_err(path))?.to_vec();
    Ok(v)
}
