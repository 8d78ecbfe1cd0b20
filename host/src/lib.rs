//! edgevae host side: load images, train the convolutional VAE with Burn, evaluate it, and hand
//! its float weights to the quantiser.
//!
//! Entry points: [`data::load`] (pixels and labels), [`train::train`], [`eval::evaluate`],
//! [`load_model`], [`weights::layers`] and the float reference forward
//! [`weights::encode_mu_batch`] / [`weights::decode_batch`].

pub mod classical;
pub mod codec;
pub mod data;
pub mod error;
pub mod eval;
pub mod model;
pub mod train;
pub mod weights;

pub mod hil;
pub mod modelfile;
pub mod onnx;
pub mod pipeline;
pub mod quantize;
pub mod rd;
pub mod recover;

pub use error::Error;
pub use model::{Vae, VaeConfig};
pub use train::{load_model, TrainConfig};

use burn::tensor::Device;

/// The CPU device this build computes on, without autodiff: `flex` when that feature is on,
/// otherwise `ndarray`.
pub fn device() -> Device {
    #[cfg(feature = "flex")]
    {
        Device::flex()
    }
    #[cfg(all(feature = "ndarray", not(feature = "flex")))]
    {
        #[allow(deprecated)] // ndarray is kept as an alternative backend on purpose
        Device::ndarray()
    }
    #[cfg(not(any(feature = "flex", feature = "ndarray")))]
    compile_error!("enable the `flex` or the `ndarray` feature of edgevae")
}

/// [`device`] with autodiff, for training.
pub fn train_device() -> Device {
    device().autodiff()
}
