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

pub mod backend;

pub use backend::{compute_device, train_device, Backend};
