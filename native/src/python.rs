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

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    stamp_reader::register(module)?;
    module.add_function(wrap_pyfunction!(digest_table, module)?)
}

/// The stamp reader's binding (`crate::stamps`): `read_stamps_batch`. A block of its own,
/// needing no `unsafe`.
mod stamp_reader {
    use std::collections::HashMap;
    use std::ops::Range;

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
                            stage_type.call1((
                                texts.get(st.stage),
                                st.received_ns,
                                st.emitted_ns,
                                st.clock_err_ns,
                                texts.get(st.host),
                                texts.get(st.source),
                            ))
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
                    stamps_type.call1((
                        s.event_id.as_str(),
                        s.origin_ns,
                        s.ingest_ns,
                        s.clock_err_ns,
                        PyTuple::new(py, stages)?,
                        PyTuple::new(py, &s.parents)?,
                        s.traceparent,
                        PyTuple::new(py, parent_stamps)?,
                    ))?
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
