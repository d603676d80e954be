//! stampline's compiled parts, loaded by Python as `stampline._native`.
//!
//! Everything here is safe Rust (every module but `python` forbids `unsafe`); only the binding layer
//! (`python`, built with the `python` feature) may use it, to take Arrow data from CPython.
#![deny(unsafe_code)]

pub mod digest;

// The record checker and typed decoder (issue 22): the gate's fast path in evaluate_records.
pub mod check;
pub mod decode;
// JSON Schema contracts checked on clean records (the gate's `kind: schema` and contracts).
pub mod schema;
// The compiled loop's Kafka side (issue 22): built with the `kafka` feature only.
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "python")]
mod python;
pub mod stamps;
// The tap's compiled loop (issue 22): its rows (Kafka-free) and its consumer.
#[cfg(feature = "kafka")]
pub mod tap;
pub mod taprows;
