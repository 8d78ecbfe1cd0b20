//! edgevae host side, one folder per stage of the data path:
//!
//! ```text
//! data → model → inference → train → quantize → export
//!                                        ↓
//!                                      codec → eval → device
//! ```
//!
//! - [`data`]: images and labels (Fashion-MNIST idx files, PNG/JPEG folders).
//! - [`model`]: the convolutional VAE in Burn, its losses, and its float layers for the quantizer.
//! - [`inference`]: load a trained run; encode, decode and sample on plain buffers.
//! - [`train`]: the trainer (Adam, checkpoints, resume) and its throughput benchmark.
//! - [`quantize`]: float layers → int8 model file with its entropy tables; the fixed-point
//!   [`quantize::Reference`] that computes what the device computes.
//! - [`export`]: ONNX graphs checked with tract, and model-file descriptions.
//! - [`codec`]: the `.evz` container, `compress`/`decompress` of users' images.
//! - [`eval`]: metrics over a test set, figures, rate–distortion, classical codecs, recovery.
//! - [`device`]: the emulated boards (QEMU), the UART link, firmware builds and ELF sizes.
//!
//! Shared helpers: [`metrics`] (PSNR, SSIM, pixel rounding), [`files`] (atomic writes, PNG),
//! [`rng`] (seeded draws), [`error`] (the crate's one error type). Modules only import from
//! stages to their left.

pub mod error;
pub mod files;
pub mod metrics;
pub mod rng;

pub mod data;
pub mod model;

pub mod inference;
pub mod train;

pub mod quantize;

pub mod export;

pub mod codec;

pub mod eval;

pub mod device;

pub use error::Error;
pub use inference::load_model;
pub use model::{Vae, VaeConfig};
pub use train::TrainConfig;

use burn::tensor::Device;

/// The CPU device this build computes on, without autodiff: `flex` when that feature is on,
/// otherwise `ndarray`.
pub fn compute_device() -> Device {
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

/// [`compute_device`] with autodiff, for training.
pub fn train_device() -> Device {
    compute_device().autodiff()
}
