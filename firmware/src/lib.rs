//! edgevae firmware library: fixed-point kernels, the static-arena engine, whole frames
//! (`frame`) and the stripe engine that codes a frame row by row in a few rows per layer
//! (`stripe`), and its way back, row by row (`stripe_decode`).
//!
//! no_std, no alloc, no floating point in kernels, no panics on any input path.
#![warn(missing_docs)]
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod app;
pub mod engine;
pub mod frame;
pub mod kernels;
pub mod stripe;
pub mod stripe_decode;
