//! edgevae shared definitions: the model file format, the host<->device wire protocol and the
//! entropy coder of the learned codec.
//!
//! `no_std` and allocation-free by default so that the firmware can parse a model straight out
//! of flash. Features: `alloc` (serialisation with `Vec`), `std` (std::error::Error impls),
//! `defmt` (defmt::Format for errors).
//!
//! **Invariant:** parsing untrusted bytes never panics; every failure is a typed error.
#![warn(missing_docs)]
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "std")]
pub mod build;
pub mod crc;
pub mod entropy;
pub mod format;
pub mod layout;
pub mod wire;

pub use format::{
    Activation, FormatError, Header, Layer, Model, ModelBody, Op, QParams, Section, Shape,
    FORMAT_VERSION, MAGIC,
};
pub use wire::{
    DeviceInfo, Feed, FrameError, FrameReader, KernelPath, Request, Response, WireErrorCode,
};
