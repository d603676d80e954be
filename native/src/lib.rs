//! stampline's compiled parts, loaded by Python as `stampline._native`.
//!
//! Everything here is safe Rust (`digest` forbids `unsafe`); only the binding layer
//! (`python`, built with the `python` feature) may use it, to take Arrow data from CPython.
#![deny(unsafe_code)]

pub mod digest;

// The record checker and typed decoder (issue 22): the gate's fast path in evaluate_records.
pub mod check;
pub mod decode;
#[cfg(feature = "python")]
mod python;
pub mod stamps;
