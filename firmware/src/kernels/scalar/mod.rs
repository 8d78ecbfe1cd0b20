//! Portable reference kernels: the one definition of the integer arithmetic. Always compiled;
//! every fast path is tested bit for bit against these.

mod conv;
mod conv_transpose;
mod dense;
mod lut;
mod requant;

pub use conv::{conv2d, conv2d_scratch_size};
pub use conv_transpose::{conv_transpose2d, conv_transpose2d_scratch_size};
pub use dense::{dense, dense_scratch_size};
pub use lut::{apply_lut, quantize_pixels};
pub use requant::requantize;

#[allow(unused_imports)]
pub(crate) use conv::conv2d_with;
#[allow(unused_imports)]
pub(crate) use conv_transpose::conv_transpose2d_with;
#[allow(unused_imports)]
pub(crate) use dense::dense_with;
