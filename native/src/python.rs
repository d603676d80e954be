//! The binding layer: the only module that may use `unsafe`, to take Arrow data that
//! CPython hands over through the Arrow C stream interface (PyCapsule protocol).
#![allow(unsafe_code)]

use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{Array, RecordBatch};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::digest::{self, Kind};

/// `(batch hex, [column hex, ...])` of `table`'s `columns` ((name, "int" | "str") pairs),
/// rows in `order` (a table whose one column holds uint64 row numbers). Any object with
/// `__arrow_c_stream__` will do (a pyarrow Table). Raises ValueError for a table it cannot
/// read the way the reference does (the caller then uses the reference).
#[pyfunction]
fn digest_table(
    py: Python<'_>,
    table: &Bound<'_, PyAny>,
    order: &Bound<'_, PyAny>,
    columns: Vec<(String, String)>,
    threads: usize,
) -> PyResult<(String, Vec<String>)> {
    let columns = columns
        .into_iter()
        .map(|(name, kind)| match kind.as_str() {
            "int" => Ok((name, Kind::Int)),
            "str" => Ok((name, Kind::Str)),
            _ => Err(PyValueError::new_err(format!(
                "column {name:?}: unknown kind {kind:?}"
            ))),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let batches = import(table)?;
    let order = row_numbers(&import(order)?)?;
    let got = py
        .detach(|| digest::digest_table(&batches, &columns, &order, threads))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((
        digest::hex(&got.batch),
        got.columns.iter().map(|d| digest::hex(d)).collect(),
    ))
}

/// The row numbers of a one-column uint64 table.
fn row_numbers(batches: &[RecordBatch]) -> PyResult<Vec<u64>> {
    let mut rows = Vec::new();
    for b in batches {
        let column = (b.num_columns() == 1).then(|| b.column(0));
        let Some(values) =
            column.and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt64Array>())
        else {
            return Err(PyTypeError::new_err("the order must be one uint64 column"));
        };
        if values.null_count() > 0 {
            return Err(PyValueError::new_err("the order has nulls"));
        }
        rows.extend_from_slice(values.values());
    }
    Ok(rows)
}

/// Every record batch of an object exporting `__arrow_c_stream__`.
fn import(source: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    let capsule = source.call_method0("__arrow_c_stream__")?;
    let capsule = capsule.cast::<PyCapsule>()?;
    // Checks the name: only a capsule named so holds an FFI_ArrowArrayStream.
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    let pointer = pointer.as_ptr().cast::<FFI_ArrowArrayStream>();
    // SAFETY: the capsule is named arrow_array_stream, so by the PyCapsule protocol it holds
    // a valid FFI_ArrowArrayStream; from_raw moves it out and marks the capsule's copy
    // released, so the capsule's destructor does not release it a second time.
    let stream = unsafe { FFI_ArrowArrayStream::from_raw(pointer) };
    let reader = RecordBatchStreamReader::try_new(stream)
        .map_err(|e| PyValueError::new_err(format!("Arrow stream: {e}")))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PyValueError::new_err(format!("Arrow stream: {e}")))
}

// The compiled loop's Kafka side (issue 22), built with the `kafka` feature only.
#[cfg(feature = "kafka")]
mod kafka_loop {
    use std::collections::HashMap;
    use std::time::Duration;

    use pyo3::exceptions::{PyRuntimeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::PyDict;

    use crate::kafka::{self, LoopConfig, LoopError};

    /// Consume `source`, stamp each record as the gate stamps a new event, produce it to
    /// `sink`, and commit the consumed offsets once delivered, on this thread with the GIL
    /// released, until `max_events` records were taken (0: no limit) or the topic stayed idle
    /// for `idle_ms` (`start_ms` before the first record). Returns what it did as a dict.
    /// Raises ValueError for a stage or host out of contract, RuntimeError for Kafka and
    /// delivery failures (nothing undelivered is committed).
    #[pyfunction]
    #[pyo3(signature = (bootstrap, group_id, source, sink, *, stage, host, clock_err_ns,
        batch_size=1000, max_events=0, idle_ms=2000, start_ms=30000, consumer=None,
        producer=None))]
    #[allow(clippy::too_many_arguments)]
    fn kafka_stamp_loop<'py>(
        py: Python<'py>,
        bootstrap: String,
        group_id: String,
        source: String,
        sink: String,
        stage: String,
        host: String,
        clock_err_ns: u64,
        batch_size: usize,
        max_events: u64,
        idle_ms: u64,
        start_ms: u64,
        consumer: Option<HashMap<String, String>>,
        producer: Option<HashMap<String, String>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let config = LoopConfig {
            source,
            sink,
            stage,
            host,
            clock_err_ns,
            batch_size: batch_size.max(1),
            max_events,
            idle: Duration::from_millis(idle_ms),
            start_wait: Duration::from_millis(start_ms),
            consumer: consumer.unwrap_or_default().into_iter().collect(),
            producer: producer.unwrap_or_default().into_iter().collect(),
        };
        let stats = py
            .detach(|| kafka::run(&bootstrap, &group_id, &config))
            .map_err(|e| match e {
                LoopError::Config(s) => PyValueError::new_err(s),
                other => PyRuntimeError::new_err(other.to_string()),
            })?;
        let out = PyDict::new(py);
        out.set_item("consumed", stats.consumed)?;
        out.set_item("produced", stats.produced)?;
        out.set_item("delivered", stats.delivered)?;
        out.set_item("batches", stats.batches)?;
        out.set_item("queue_full", stats.queue_full)?;
        out.set_item("empty_polls", stats.empty_polls)?;
        out.set_item("elapsed_s", stats.elapsed.as_secs_f64())?;
        out.set_item("producing_s", stats.producing.as_secs_f64())?;
        let committed: Vec<(String, i32, i64)> = stats
            .committed
            .into_iter()
            .map(|((t, p), o)| (t, p, o))
            .collect();
        out.set_item("committed", committed)?;
        Ok(out)
    }

    pub fn add(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add_function(wrap_pyfunction!(kafka_stamp_loop, module)?)
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "kafka")]
    kafka_loop::add(module)?;
    module.add_function(wrap_pyfunction!(digest_table, module)?)
}
