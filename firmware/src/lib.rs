//! edgevae firmware library: fixed-point kernels and the static-arena engine.
//!
//! no_std, no alloc, no floating point in kernels, no panics on any input path.
#![warn(missing_docs)]
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod app;
pub mod engine;
pub mod frame;
pub mod kernels;
