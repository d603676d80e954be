//! stampline's compiled parts, loaded by Python as `stampline._native`.
//!
//! Everything here is safe Rust (every module but `python` forbids `unsafe`); only the binding layer
//! (`python`, built with the `python` feature) may use it, to take Arrow data from CPython.
#![deny(unsafe_code)]

pub mod digest;
// Event time per provider (watermarks, lateness), shared by the gate's two routes.
pub mod eventtime;

// The record checker and typed decoder (issue 22): the gate's fast path in evaluate_records.
pub mod check;
pub mod decode;
// JSON Schema contracts checked on clean records (the gate's `kind: schema` and contracts).
pub mod schema;
// librdkafka's log lines from the compiled clients, kept for Python's logging.
#[cfg(feature = "kafka")]
pub mod clientlog;
// The gate's consumer on the compiled route.
#[cfg(feature = "kafka")]
pub mod source;
// The compiled loop's Kafka side (issue 22): built with the `kafka` feature only.
#[cfg(feature = "kafka")]
pub mod kafka;
// The gate's producer on the compiled path.
#[cfg(feature = "kafka")]
pub mod producer;
#[cfg(feature = "python")]
mod python;
// The gate's compiled route: stamp headers, lateness and trail rows of accepted records.
pub mod route;
pub mod stamps;
// The tap's compiled loop (issue 22): its rows (Kafka-free) and its consumer.
#[cfg(feature = "kafka")]
pub mod tap;
pub mod taprows;
