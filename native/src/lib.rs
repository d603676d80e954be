//! stampline's compiled parts, loaded by Python as `stampline._native`.
//!
//! Everything here is safe Rust (`digest` and `kafka` forbid `unsafe`); only the binding layer
//! (`python`, built with the `python` feature) may use it, to take Arrow data from CPython.
#![deny(unsafe_code)]

pub mod digest;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "python")]
mod python;
