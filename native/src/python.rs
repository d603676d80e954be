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

    /// librdkafka's log lines from the compiled clients since the last call, oldest first, as
    /// (Python logging level, text), and how many were dropped for want of room
    /// (`crate::clientlog`).
    #[pyfunction]
    fn client_log() -> (Vec<(u8, String)>, u64) {
        crate::clientlog::take()
    }

    pub fn add(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add_function(wrap_pyfunction!(client_log, module)?)?;
        module.add_function(wrap_pyfunction!(kafka_stamp_loop, module)?)
    }
}

/// Record batches handed to Python (`ArrowBatch`). No `unsafe`: `to_ffi` makes the structs.
mod arrow_batch {
    use arrow_array::ffi::to_ffi;
    use arrow_array::{Array, RecordBatch, StructArray};
    use pyo3::exceptions::PyRuntimeError;
    use pyo3::prelude::*;
    use pyo3::types::PyCapsule;

    pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add_class::<ArrowBatch>()
    }

    /// A record batch built in Rust (trail rows, typed columns), exported through the Arrow
    /// C data interface: `pa.record_batch(it)` takes it without a copy.
    #[pyclass(module = "stampline._native", frozen)]
    pub(super) struct ArrowBatch {
        pub(super) batch: RecordBatch,
    }

    #[pymethods]
    impl ArrowBatch {
        fn __len__(&self) -> usize {
            self.batch.num_rows()
        }

        /// The PyCapsule protocol: (schema capsule, array capsule) of the batch as a struct
        /// array. The capsules own the exported structs; the importer moves them out and
        /// releases them, and a capsule dropped unread releases its own.
        #[pyo3(signature = (requested_schema=None))]
        fn __arrow_c_array__<'py>(
            &self,
            py: Python<'py>,
            requested_schema: Option<Bound<'py, PyAny>>,
        ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
            let _ = requested_schema; // the rows come in their one schema
            let data = StructArray::from(self.batch.clone()).into_data();
            let (array, schema) =
                to_ffi(&data).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            Ok((
                PyCapsule::new(py, schema, Some(c"arrow_schema".to_owned()))?,
                PyCapsule::new(py, array, Some(c"arrow_array".to_owned()))?,
            ))
        }
    }
}

// The gate's compiled route (its own file: it needs no `unsafe`).
#[cfg(feature = "kafka")]
mod gate;
// The gate's consumer (its own file: it reads what the rdkafka crate hides, with `unsafe`).
#[cfg(feature = "kafka")]
mod source;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    arrow_batch::register(module)?;
    stamp_reader::register(module)?;
    record_checker::register(module)?;
    #[cfg(feature = "kafka")]
    kafka_loop::add(module)?;
    #[cfg(feature = "kafka")]
    tap_loop::register(module)?;
    #[cfg(feature = "kafka")]
    gate::register(module)?;
    #[cfg(feature = "kafka")]
    source::register(module)?;
    module.add_function(wrap_pyfunction!(digest_table, module)?)
}

/// The record checker's binding (`crate::check`, `crate::decode`, `crate::schema`;
/// rules/_checker.py): `check_records` and `Schema`. A block of its own, with no `unsafe`.
mod record_checker {
    use std::collections::HashMap;

    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

    use crate::{check, decode, schema};

    pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add_class::<Schema>()?;
        module.add_function(wrap_pyfunction!(check_records, module)?)
    }

    /// The batch's columns for the gate's fast path: `(clean, providers, instruments, seqs,
    /// origins)`. `clean` is one byte per value (1: certainly clean, its fields decoded; 0: the
    /// Python path judges it); `seqs` a list of ints and `origins` little-endian int64 bytes, both
    /// holding `decode::FROM_PYTHON` where Python must compute the field of a clean record.
    /// `values`: a sequence of bytes (anything else in it is judged by Python); `fields`: the
    /// provider, instrument and seq keys and the dotted origin path; `origin_factor`: ns per
    /// origin unit, 0 to leave every origin to Python. The checking runs with the GIL released.
    ///
    /// `schemas` (compiled `Schema`s) and `wants` (per value, a bit mask over `schemas`): the
    /// sixth column, `passed`, is little-endian uint64 bytes holding per value the bits of its
    /// `wants` whose schema the clean record certainly passes (`crate::schema`), checked in
    /// the same call without the GIL; empty when `schemas` is.
    #[pyfunction]
    ///
    /// `typed`: distinct top-level fields the rules read. The seventh item is a list with
    /// one `typed_field` tuple per field, in order (`decode::Typed`).
    #[pyo3(signature = (
        values, fields, origin_factor, max_bytes, max_name_chars, schemas = Vec::new(),
        wants = Vec::new(), typed = Vec::new()
    ))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn check_records<'py>(
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        fields: (String, String, String, String),
        origin_factor: i64,
        max_bytes: usize,
        max_name_chars: usize,
        schemas: Vec<Bound<'py, Schema>>,
        wants: Vec<u64>,
        typed: Vec<String>,
    ) -> PyResult<(
        Bound<'py, PyBytes>,
        Bound<'py, PyList>,
        Bound<'py, PyList>,
        Vec<i64>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyList>,
    )> {
        let mut distinct = typed.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != typed.len() {
            return Err(PyValueError::new_err("typed fields must be distinct"));
        }
        let spec = decode::Spec {
            wanted: check::Wanted::new(&fields.0, &fields.1, &fields.2, &fields.3)
                .with_fields(&typed),
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
        if !schemas.is_empty() && wants.len() != slices.len() {
            return Err(PyValueError::new_err("wants must hold one mask per value"));
        }
        let compiled: Vec<&schema::Schema> = schemas.iter().map(|s| &s.get().0).collect();
        let (cols, passed) = py.detach(|| {
            let cols = decode::decode_batch(&slices, &spec);
            let passed = if compiled.is_empty() {
                Vec::new()
            } else {
                schema::passed_batch(&compiled, &slices, &cols.clean, &wants)
            };
            (cols, passed)
        });
        let mut texts = HashMap::new();
        let typed: Vec<Bound<'py, PyTuple>> = cols
            .typed
            .iter()
            .map(|t| typed_field(py, t, &mut texts))
            .collect::<PyResult<_>>()?;
        let typed = PyList::new(py, typed)?;
        let passed: Vec<u8> = passed.iter().flat_map(|p| p.to_le_bytes()).collect();
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
            PyBytes::new(py, &passed),
            typed,
        ))
    }

    /// One typed field for Python: `(kinds, numbers, integers, texts)`, the first three
    /// little-endian bytes (uint8, float64, int64: NumPy reads them without a copy), `texts`
    /// a list of str or None, or None when no row holds a string. Plain bytes, not an Arrow
    /// batch: importing one costs tens of microseconds a batch, which small batches (the
    /// latency-bound gate's) cannot afford.
    fn typed_field<'py, 'c>(
        py: Python<'py>,
        t: &'c decode::Typed,
        interned: &mut HashMap<&'c str, Bound<'py, PyString>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let numbers: Vec<u8> = t.numbers.iter().flat_map(|v| v.to_le_bytes()).collect();
        let integers: Vec<u8> = t.integers.iter().flat_map(|v| v.to_le_bytes()).collect();
        let texts = if t.texts.iter().any(Option::is_some) {
            let items: Vec<Option<Bound<'py, PyString>>> = t
                .texts
                .iter()
                .map(|s| {
                    s.as_deref().map(|s| {
                        interned
                            .entry(s)
                            .or_insert_with(|| PyString::new(py, s))
                            .clone()
                    })
                })
                .collect();
            Some(PyList::new(py, items)?)
        } else {
            None
        };
        (
            PyBytes::new(py, &t.kinds),
            PyBytes::new(py, &numbers),
            PyBytes::new(py, &integers),
            texts,
        )
            .into_pyobject(py)
    }

    /// A JSON Schema compiled for clean records (`crate::schema`): `Schema(text)` raises
    /// ValueError, saying why, for a schema outside the subset.
    #[pyclass(frozen, module = "stampline._native")]
    pub(super) struct Schema(schema::Schema);

    #[pymethods]
    impl Schema {
        #[new]
        fn new(text: &str) -> PyResult<Self> {
            schema::Schema::compile(text)
                .map(Schema)
                .map_err(|e| PyValueError::new_err(e.0))
        }
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
}

/// The stamp reader's binding (`crate::stamps`): `read_stamps_batch`. A block of its own;
/// its one `unsafe` call sets the fields of the objects it has just made (see `Maker`).
mod stamp_reader {
    use std::collections::HashMap;
    use std::ops::Range;

    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

    use crate::stamps::{self, Name, Picked, Read};

    pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add_function(wrap_pyfunction!(read_stamps_batch, module)?)
    }

    /// The records to read with the reference: (index in the batch, why).
    type Unsure = Vec<(usize, &'static str)>;

    /// One record's stamp headers as picked under the GIL: indices into the batch's values.
    enum Gathered {
        /// None or no headers: the reference returns None.
        Empty,
        Unsure(&'static str),
        Picked {
            stages: Range<usize>,
            single: [Option<usize>; 8],
        },
    }

    /// `read_stamps` of each record's headers in `batch` (a list of header lists or None):
    /// `(results, unsure)`, where results holds a `stamps_type` (built with `stage_type`s) or
    /// None per record, and unsure the `(index, why)` of the records this reader is not
    /// certain it reads as the reference does (their result is None here): the caller reads
    /// those with the reference. The headers are picked under the GIL, parsed without it.
    #[pyfunction]
    fn read_stamps_batch<'py>(
        py: Python<'py>,
        batch: &Bound<'py, PyList>,
        stamps_type: &Bound<'py, PyAny>,
        stage_type: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Unsure)> {
        let mut pool: Vec<Bound<'py, PyBytes>> = Vec::new();
        let mut stage_values: Vec<usize> = Vec::new();
        let gathered: Vec<Gathered> = batch
            .iter()
            .map(|headers| gather(&headers, &mut pool, &mut stage_values))
            .collect();
        // Bytes objects are immutable, and `pool` keeps them alive until we return.
        let values: Vec<&[u8]> = pool.iter().map(|b| b.as_bytes()).collect();
        let reads: Vec<Read<'_>> = py.detach(|| {
            gathered
                .iter()
                .map(|g| match g {
                    Gathered::Empty => Read::NoStamps,
                    Gathered::Unsure(why) => Read::Unsure(why),
                    Gathered::Picked { stages, single } => stamps::read(&Picked {
                        stages: stage_values[stages.clone()]
                            .iter()
                            .map(|&i| values[i])
                            .collect(),
                        single: single.map(|v| v.map(|i| values[i])),
                    }),
                })
                .collect()
        });
        let make = Maker::new(py, &[stamps_type, stage_type])?;
        let mut texts = Texts::new(py);
        let mut out = Vec::with_capacity(reads.len());
        let mut unsure = Vec::new();
        for (i, read) in reads.iter().enumerate() {
            out.push(match read {
                Read::NoStamps => py.None().into_bound(py),
                Read::Unsure(why) => {
                    unsure.push((i, *why));
                    py.None().into_bound(py)
                }
                Read::Stamps(s) => {
                    let stages = s
                        .stages
                        .iter()
                        .map(|st| {
                            make.instance(
                                stage_type,
                                &make.stage_fields,
                                [
                                    texts.get(st.stage).into_any(),
                                    st.received_ns.into_pyobject(py)?.into_any(),
                                    st.emitted_ns.into_pyobject(py)?.into_any(),
                                    st.clock_err_ns.into_pyobject(py)?.into_any(),
                                    texts.get(st.host).into_any(),
                                    texts.get(st.source).into_any(),
                                ],
                            )
                        })
                        .collect::<PyResult<Vec<_>>>()?;
                    let parent_stamps = s
                        .parent_stamps
                        .iter()
                        .map(|p| {
                            let (stage, emitted, err) = p.unwrap_or(("", 0, 0));
                            (texts.get(stage), emitted, err)
                        })
                        .collect::<Vec<_>>();
                    make.instance(
                        stamps_type,
                        &make.stamps_fields,
                        [
                            PyString::new(py, &s.event_id).into_any(),
                            s.origin_ns.into_pyobject(py)?.into_any(),
                            s.ingest_ns.into_pyobject(py)?.into_any(),
                            s.clock_err_ns.into_pyobject(py)?.into_any(),
                            PyTuple::new(py, stages)?.into_any(),
                            PyTuple::new(py, &s.parents)?.into_any(),
                            PyString::new(py, s.traceparent).into_any(),
                            PyTuple::new(py, parent_stamps)?.into_any(),
                        ],
                    )?
                }
            });
        }
        Ok((PyList::new(py, out)?, unsure))
    }

    /// Picks one record's stamp headers as `read_stamps`'s loop does; anything but a list of
    /// `(str, bytes | None)` tuples where it matters is unsure.
    fn gather<'py>(
        headers: &Bound<'py, PyAny>,
        pool: &mut Vec<Bound<'py, PyBytes>>,
        stage_values: &mut Vec<usize>,
    ) -> Gathered {
        if headers.is_none() {
            return Gathered::Empty;
        }
        let Ok(list) = headers.cast_exact::<PyList>() else {
            return Gathered::Unsure("headers that are not a list");
        };
        if list.is_empty() {
            return Gathered::Empty;
        }
        let start = stage_values.len();
        let mut single = [None; 8];
        for item in list.iter() {
            let Ok(pair) = item.cast_exact::<PyTuple>() else {
                return Gathered::Unsure("a header that is not a tuple");
            };
            let (Ok(key), Ok(value), 2) = (pair.get_item(0), pair.get_item(1), pair.len()) else {
                return Gathered::Unsure("a header that is not a (name, value) pair");
            };
            if value.is_none() {
                continue; // skipped before its name is looked at, as the reference does
            }
            let Ok(key) = key.cast_exact::<PyString>() else {
                return Gathered::Unsure("a header name that is not a str");
            };
            let Ok(key) = key.to_str() else {
                return Gathered::Unsure("a header name that is not UTF-8");
            };
            let name = stamps::name_of(key.as_bytes());
            if name == Name::Other {
                continue;
            }
            let Ok(value) = value.cast_exact::<PyBytes>() else {
                return Gathered::Unsure("a stamp header value that is not bytes");
            };
            match name {
                Name::Stamp => {
                    stage_values.push(pool.len());
                    pool.push(value.clone());
                }
                Name::Single(i) if single[i].is_none() => {
                    single[i] = Some(pool.len());
                    pool.push(value.clone());
                }
                _ => {}
            }
        }
        Gathered::Picked {
            stages: start..stage_values.len(),
            single,
        }
    }

    /// `StageStamp`'s fields, in its order (collectors/_stamps.py).
    const STAGE_FIELDS: [&str; 6] = [
        "stage",
        "received_ns",
        "emitted_ns",
        "clock_err_ns",
        "host",
        "source",
    ];
    /// `Stamps`'s fields, in its order.
    const STAMPS_FIELDS: [&str; 8] = [
        "event_id",
        "origin_ns",
        "ingest_ns",
        "clock_err_ns",
        "stages",
        "parents",
        "traceparent",
        "parent_stamps",
    ];

    /// Makes instances of frozen, slotted dataclasses as their generated `__init__` does —
    /// `object.__new__(cls)`, then `object.__setattr__` per field — without running Python
    /// code: that `__init__` cost ~0.7-0.9 µs an object, more than reading the headers.
    /// The differential test (tests/collectors/test_stamps_native.py) holds the objects to
    /// the reference's, field by field.
    struct Maker<'py> {
        new: Bound<'py, PyAny>,
        stage_fields: [Bound<'py, PyString>; 6],
        stamps_fields: [Bound<'py, PyString>; 8],
    }

    impl<'py> Maker<'py> {
        /// Refuses (ValueError: the caller reads with the reference) a class whose
        /// `__init__` would do more than set its fields.
        fn new(py: Python<'py>, types: &[&Bound<'py, PyAny>]) -> PyResult<Self> {
            for t in types {
                if t.hasattr("__post_init__")? || !t.hasattr("__slots__")? {
                    return Err(PyValueError::new_err(format!(
                        "{t} is not a slotted dataclass without __post_init__"
                    )));
                }
            }
            Ok(Self {
                new: py.get_type::<PyAny>().getattr("__new__")?,
                stage_fields: STAGE_FIELDS.map(|f| PyString::intern(py, f)),
                stamps_fields: STAMPS_FIELDS.map(|f| PyString::intern(py, f)),
            })
        }

        fn instance<const N: usize>(
            &self,
            cls: &Bound<'py, PyAny>,
            names: &[Bound<'py, PyString>; N],
            values: [Bound<'py, PyAny>; N],
        ) -> PyResult<Bound<'py, PyAny>> {
            let py = cls.py();
            let object = self.new.call1((cls,))?;
            for (name, value) in names.iter().zip(values) {
                // SAFETY: the GIL is held (`py`), and `object`, `name` and `value` are live
                // objects owned by Bounds that outlive the call, which borrows them (it
                // steals no reference). PyObject_GenericSetAttr is `object.__setattr__`,
                // what a frozen dataclass's `__init__` calls for each field.
                let status = unsafe {
                    pyo3::ffi::PyObject_GenericSetAttr(
                        object.as_ptr(),
                        name.as_ptr(),
                        value.as_ptr(),
                    )
                };
                if status != 0 {
                    return Err(PyErr::fetch(py));
                }
            }
            Ok(object)
        }
    }

    /// Python strings for the short texts that repeat across a batch (stage names, hosts,
    /// sources), each made once.
    struct Texts<'py> {
        py: Python<'py>,
        made: HashMap<String, Bound<'py, PyString>>,
    }

    impl<'py> Texts<'py> {
        fn new(py: Python<'py>) -> Self {
            Self {
                py,
                made: HashMap::new(),
            }
        }

        fn get(&mut self, text: &str) -> Bound<'py, PyString> {
            if let Some(s) = self.made.get(text) {
                return s.clone();
            }
            let s = PyString::new(self.py, text);
            self.made.insert(text.to_owned(), s.clone());
            s
        }
    }
}

/// The tap's compiled loop's binding (`crate::tap`; collectors/_tap.py): the class `TapLoop`
/// handing over its rows as `ArrowBatch`es (a record's timestamp type read by `source`'s).
#[cfg(feature = "kafka")]
mod tap_loop {
    use std::time::Duration;

    use pyo3::exceptions::{PyRuntimeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyList, PyTuple};
    use rdkafka::message::BorrowedMessage;

    use super::arrow_batch::ArrowBatch;
    use super::source::{Raised, each_header, keep, raised, timestamp};
    use crate::kafka::LoopError;
    use crate::tap::{Raw, TapConfig, TapHooks, TapLoop as Loop};
    use crate::taprows::COLUMNS;

    pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add_class::<TapLoop>()
    }

    /// The tap's rebalance callbacks, called (with the GIL taken again) from librdkafka's
    /// poll on the loop's thread.
    struct Hooks {
        on_assign: Py<PyAny>,
        on_revoke: Py<PyAny>,
        /// an object whose `is_set()` says the caller stops (a `threading.Event`), or None
        stop: Option<Py<PyAny>>,
        raised: Raised,
    }

    impl TapHooks for Hooks {
        fn assigned(&self) {
            Python::attach(|py| {
                if let Err(e) = self.on_assign.call0(py) {
                    keep(&self.raised, e);
                }
            });
        }

        fn revoking(&self) -> Vec<(String, i32, i64)> {
            Python::attach(|py| {
                match self
                    .on_revoke
                    .call0(py)
                    .and_then(|offsets| offsets.extract(py))
                {
                    Ok(offsets) => offsets,
                    Err(e) => {
                        keep(&self.raised, e);
                        Vec::new()
                    }
                }
            })
        }

        fn stopping(&self) -> bool {
            let Some(stop) = &self.stop else {
                return false;
            };
            Python::attach(|py| {
                match stop
                    .call_method0(py, "is_set")
                    .and_then(|set| set.is_truthy(py))
                {
                    Ok(set) => set,
                    Err(e) => {
                        keep(&self.raised, e);
                        true // the take returns, and raises it
                    }
                }
            })
        }

        fn timestamp(&self, m: &BorrowedMessage<'_>) -> (i32, i64) {
            timestamp(m)
        }

        fn headers<'m>(
            &self,
            m: &'m BorrowedMessage<'_>,
            visit: &mut dyn FnMut(&'m [u8], Option<&'m [u8]>),
        ) {
            each_header(m, visit);
        }
    }

    fn error(e: LoopError) -> PyErr {
        match e {
            LoopError::Config(s) => PyValueError::new_err(s),
            other => PyRuntimeError::new_err(other.to_string()),
        }
    }

    /// A consumer of the tap's topics that hands over each batch as trail rows.
    /// `take()` returns `(rows, raw, errors, records, unstamped, per_topic, handed)`: `rows` a
    /// `ArrowBatch`; `raw` the records for the reference, `(rows before it, topic, partition,
    /// offset, (timestamp type, ms), key, value, headers, why)`; `errors` consume errors'
    /// texts; `records` and `unstamped` the records observed here; `per_topic` `(topic, n)`;
    /// `handed` `(topic, partition, next offset)` after the batch's records. `commit(offsets)`
    /// commits such offsets (of the partitions still assigned); `on_revoke` returns the ones
    /// a revoke commits; `close()` leaves the group (calling `on_revoke` first, as a revoke
    /// does). `stop`, if given, is asked `is_set()` while a take waits for its first record,
    /// which ends the wait.
    #[pyclass(module = "stampline._native")]
    struct TapLoop {
        inner: Option<Loop<Hooks>>,
        raised: Raised,
    }

    #[pymethods]
    impl TapLoop {
        /// `settings`: librdkafka settings after stampline's (the tap's, then the user's);
        /// `columns`: the canonical table's column names, which must be this loop's.
        #[new]
        #[pyo3(signature = (bootstrap, group_id, settings, topics, *, stage, host,
            clock_err_ns, clock_source, keyed, consume_batch, poll_timeout_s, columns,
            on_assign, on_revoke, stop=None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            bootstrap: &str,
            group_id: &str,
            settings: Vec<(String, String)>,
            topics: Vec<String>,
            stage: String,
            host: String,
            clock_err_ns: i64,
            clock_source: String,
            keyed: bool,
            consume_batch: usize,
            poll_timeout_s: f64,
            columns: Vec<String>,
            on_assign: Py<PyAny>,
            on_revoke: Py<PyAny>,
            stop: Option<Py<PyAny>>,
        ) -> PyResult<Self> {
            if !columns
                .iter()
                .map(String::as_str)
                .eq(COLUMNS.iter().map(|c| c.0))
            {
                return Err(PyValueError::new_err(
                    "the canonical columns are not the ones this loop builds",
                ));
            }
            if !(0..=i64::MAX - 1_000_000).contains(&clock_err_ns) {
                return Err(PyValueError::new_err("clock_err_ns out of range"));
            }
            if !(poll_timeout_s.is_finite() && poll_timeout_s >= 0.0) {
                return Err(PyValueError::new_err("poll_timeout_s must be finite, >= 0"));
            }
            let raised = Raised::default();
            let hooks = Hooks {
                on_assign,
                on_revoke,
                stop,
                raised: raised.clone(),
            };
            let config = TapConfig {
                topics,
                stage,
                host,
                clock_err_ns,
                clock_source,
                keyed,
                consume_batch,
                poll_timeout: Duration::from_secs_f64(poll_timeout_s),
            };
            let inner = Loop::new(bootstrap, group_id, &settings, config, hooks).map_err(error)?;
            Ok(Self {
                inner: Some(inner),
                raised,
            })
        }

        #[allow(clippy::type_complexity)]
        fn take<'py>(
            &mut self,
            py: Python<'py>,
        ) -> PyResult<(
            ArrowBatch,
            Bound<'py, PyList>,
            Vec<String>,
            u64,
            u64,
            Vec<(String, u64)>,
            Vec<(String, i32, i64)>,
        )> {
            let tap = self
                .inner
                .as_mut()
                .ok_or_else(|| PyRuntimeError::new_err("the tap loop is closed"))?;
            let got = py.detach(|| tap.take());
            if let Some(e) = raised(&self.raised) {
                return Err(e);
            }
            let taken = got.map_err(error)?;
            let raw = PyList::empty(py);
            for (at, r) in &taken.raw {
                raw.append(raw_record(py, *at, r)?)?;
            }
            Ok((
                ArrowBatch { batch: taken.rows },
                raw,
                taken.errors,
                taken.records,
                taken.unstamped,
                taken.per_topic,
                taken.handed,
            ))
        }

        fn commit(&self, py: Python<'_>, offsets: Vec<(String, i32, i64)>) -> PyResult<()> {
            let tap = self
                .inner
                .as_ref()
                .ok_or_else(|| PyRuntimeError::new_err("the tap loop is closed"))?;
            py.detach(|| tap.commit(&offsets)).map_err(error)
        }

        fn close(&mut self, py: Python<'_>) -> PyResult<()> {
            if let Some(tap) = self.inner.take() {
                py.detach(move || drop(tap));
            }
            raised(&self.raised).map_or(Ok(()), Err)
        }
    }

    fn raw_record<'py>(py: Python<'py>, at: usize, r: &Raw) -> PyResult<Bound<'py, PyTuple>> {
        let bytes = |v: &Option<Vec<u8>>| v.as_ref().map(|b| PyBytes::new(py, b));
        let headers = match &r.headers {
            None => None,
            Some(hs) => Some(PyList::new(
                py,
                hs.iter().map(|(k, v)| (k.as_str(), bytes(v))),
            )?),
        };
        (
            at,
            r.topic.as_str(),
            r.partition,
            r.offset,
            r.timestamp,
            bytes(&r.key),
            bytes(&r.value),
            headers,
            r.why,
            r.unreadable,
        )
            .into_pyobject(py)
    }
}
