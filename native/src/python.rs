//! The binding layer: the only module that may use `unsafe`, to take Arrow data that
//! CPython hands over through the Arrow C stream interface (PyCapsule protocol).
#![allow(unsafe_code)]

use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{Array, RecordBatch};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::digest::{self, Kind};
use crate::{check, decode};
use pyo3::types::{PyBytes, PyList, PyString};
use std::collections::HashMap;

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

// ---- The record checker and typed decoder (check.rs, decode.rs; rules/_checker.py) ----

/// The batch's columns for the gate's fast path: `(clean, providers, instruments, seqs,
/// origins)`. `clean` is one byte per value (1: certainly clean, its fields decoded; 0: the
/// Python path judges it); `seqs` a list of ints and `origins` little-endian int64 bytes, both
/// holding `decode::FROM_PYTHON` where Python must compute the field of a clean record.
/// `values`: a sequence of bytes (anything else in it is judged by Python); `fields`: the
/// provider, instrument and seq keys and the dotted origin path; `origin_factor`: ns per
/// origin unit, 0 to leave every origin to Python. The checking runs with the GIL released.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn check_records<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    fields: (String, String, String, String),
    origin_factor: i64,
    max_bytes: usize,
    max_name_chars: usize,
) -> PyResult<(
    Bound<'py, PyBytes>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Vec<i64>,
    Bound<'py, PyBytes>,
)> {
    let spec = decode::Spec {
        wanted: check::Wanted::new(&fields.0, &fields.1, &fields.2, &fields.3),
        origin_factor: (origin_factor > 0).then_some(i128::from(origin_factor)),
        max_bytes,
        max_name_chars,
    };
    // The bytes objects stay referenced (and bytes are immutable) while Rust reads them
    // without the GIL.
    let held: Vec<Option<Bound<'py, PyBytes>>> = values
        .try_iter()?
        .map(|item| item.map(|v| v.cast_into::<PyBytes>().ok()))
        .collect::<PyResult<_>>()?;
    let slices: Vec<Option<&[u8]>> = held
        .iter()
        .map(|v| v.as_ref().map(|b| b.as_bytes()))
        .collect();
    let cols = py.detach(|| decode::decode_batch(&slices, &spec));
    let clean: Vec<u8> = cols.clean.iter().map(|&c| u8::from(c)).collect();
    let origins: Vec<u8> = cols.origins.iter().flat_map(|o| o.to_le_bytes()).collect();
    // Names repeat across a batch: one Python string per distinct name.
    let mut interned: HashMap<&str, Bound<'py, PyString>> = HashMap::new();
    let providers = PyList::new(py, intern(py, &cols.providers, &mut interned))?;
    let instruments = PyList::new(py, intern(py, &cols.instruments, &mut interned))?;
    Ok((
        PyBytes::new(py, &clean),
        providers,
        instruments,
        cols.seqs,
        PyBytes::new(py, &origins),
    ))
}

fn intern<'py, 'c>(
    py: Python<'py>,
    column: &'c [String],
    interned: &mut HashMap<&'c str, Bound<'py, PyString>>,
) -> Vec<Bound<'py, PyString>> {
    column
        .iter()
        .map(|s| {
            interned
                .entry(s.as_str())
                .or_insert_with(|| PyString::new(py, s))
                .clone()
        })
        .collect()
}

// ---- end of the record checker's bindings ----

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(digest_table, module)?)?;
    module.add_function(wrap_pyfunction!(check_records, module)?)
}
