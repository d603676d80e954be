//! The gate's consumer, bound (`crate::source`; collectors/_gate.py): `GateSource` hands each
//! batch over as the gate's columns, made in one call, instead of a confluent-kafka `Message`
//! per record read field by field from Python. Its `unsafe` reads what the rdkafka crate hides
//! or would panic on: a record's timestamp type, and a header name that is not UTF-8.

use std::ffi::CStr;
use std::ptr;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use rdkafka::bindings as rdsys;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};

use super::gate::{kafka_exception, seconds};
use crate::kafka::LoopError;
use crate::source::{GateSource as Source, SourceHooks};

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<GateSource>()
}

/// The first exception a Python callback raised inside librdkafka's poll, kept for the call
/// that polled (confluent-kafka raises it from `poll` and `close` the same way); the tap's
/// loop keeps its callbacks' the same way.
pub(super) type Raised = Arc<Mutex<Option<PyErr>>>;

pub(super) fn keep(raised: &Raised, err: PyErr) {
    raised
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(err);
}

pub(super) fn raised(raised: &Raised) -> Option<PyErr> {
    raised.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The gate's callbacks, called with the GIL taken again from the poll on the gate's thread.
struct Hooks {
    on_assign: Py<PyAny>,
    on_revoke: Py<PyAny>,
    on_stats: Option<Py<PyAny>>,
    raised: Raised,
}

impl Hooks {
    fn call(&self, callback: &Py<PyAny>, argument: impl for<'py> IntoPyObject<'py>) {
        Python::attach(|py| {
            if let Err(e) = callback.call1(py, (argument,)) {
                keep(&self.raised, e);
            }
        });
    }
}

impl SourceHooks for Hooks {
    fn assigned(&self, partitions: Vec<(String, i32)>) {
        self.call(&self.on_assign, partitions);
    }

    fn revoking(&self, partitions: Vec<(String, i32)>) {
        self.call(&self.on_revoke, partitions);
    }

    fn statistics(&self, json: &str) {
        if let Some(on_stats) = &self.on_stats {
            self.call(on_stats, json.to_owned());
        }
    }
}

fn kafka_error(py: Python<'_>, e: &KafkaError) -> PyErr {
    let code = e.rdkafka_error_code().map_or(-1, |c| c as i32);
    kafka_exception(py, code, &e.to_string())
}

/// A consumer of the gate's raw topics (`crate::source`), with the calls the gate makes of
/// confluent-kafka's `Consumer`, batch-wise: `take(max_records, max_bytes, timeout_s)`
/// returns `(values, keys, topics, partitions, offsets, timestamp_types, timestamps_ms,
/// headers, size, errors, unreadable)`: a list per column with one item per record, as
/// `Message` gives them (`headers`: a list of `(name, bytes | None)` or None), the bytes of
/// the values and keys (it takes no more records once they reach `max_bytes`), the consume
/// errors' texts, and the records whose headers cannot be read (a name that is not UTF-8:
/// their `headers` is None). `on_assign(partitions)` and
/// `on_revoke(partitions)` get `[(topic, partition)]` and run inside `take` (and `close`), and
/// may call `commit`; an exception they raise comes out of that `take` or `close`.
#[pyclass(module = "stampline._native", frozen)]
struct GateSource {
    /// None once closed; an `Arc` so a callback's `commit` reaches it while `take` polls
    inner: Mutex<Option<Arc<Source<Hooks>>>>,
    raised: Raised,
}

impl GateSource {
    fn source(&self) -> PyResult<Arc<Source<Hooks>>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("the gate's consumer is closed"))
    }
}

#[pymethods]
impl GateSource {
    /// `settings`: librdkafka settings after stampline's (the gate's, then the user's).
    #[new]
    #[pyo3(signature = (bootstrap, group_id, settings, topics, *, on_assign, on_revoke,
        on_stats=None))]
    fn new(
        bootstrap: &str,
        group_id: &str,
        settings: Vec<(String, String)>,
        topics: Vec<String>,
        on_assign: Py<PyAny>,
        on_revoke: Py<PyAny>,
        on_stats: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let raised = Raised::default();
        let hooks = Hooks {
            on_assign,
            on_revoke,
            on_stats,
            raised: raised.clone(),
        };
        let source =
            Source::new(bootstrap, group_id, &settings, &topics, hooks).map_err(|e| match e {
                LoopError::Config(s) => PyValueError::new_err(s),
                other => PyRuntimeError::new_err(other.to_string()),
            })?;
        Ok(Self {
            inner: Mutex::new(Some(Arc::new(source))),
            raised,
        })
    }

    fn take<'py>(
        &self,
        py: Python<'py>,
        max_records: usize,
        max_bytes: usize,
        timeout_s: f64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let source = self.source()?;
        let wait = seconds(timeout_s)?;
        let (messages, errors, size) = py.detach(|| source.poll(max_records, max_bytes, wait));
        if let Some(e) = raised(&self.raised) {
            return Err(e);
        }
        columns(py, messages, errors, size)
    }

    /// Commit `offsets`, `[(topic, partition, next offset)]`, synchronously.
    fn commit(&self, py: Python<'_>, offsets: Vec<(String, i32, i64)>) -> PyResult<()> {
        let source = self.source()?;
        py.detach(|| source.commit(&offsets))
            .map_err(|e| kafka_error(py, &e))
    }

    /// Pause (`True`) or resume every partition assigned now; how many there are.
    fn pause(&self, py: Python<'_>, paused: bool) -> PyResult<usize> {
        let source = self.source()?;
        py.detach(|| source.pause(paused))
            .map_err(|e| kafka_error(py, &e))
    }

    /// Pause these partitions, `[(topic, partition)]`.
    fn pause_these(&self, py: Python<'_>, partitions: Vec<(String, i32)>) -> PyResult<()> {
        let source = self.source()?;
        py.detach(|| source.pause_these(&partitions))
            .map_err(|e| kafka_error(py, &e))
    }

    /// The partition's high watermark, asked of the broker.
    fn high_watermark(
        &self,
        py: Python<'_>,
        topic: &str,
        partition: i32,
        timeout_s: f64,
    ) -> PyResult<i64> {
        let source = self.source()?;
        let wait = seconds(timeout_s)?;
        py.detach(|| source.high_watermark(topic, partition, wait))
            .map_err(|e| kafka_error(py, &e))
    }

    /// Leave the group (its revoke runs `on_revoke` first, as confluent-kafka's `close` does).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(source) = taken {
            py.detach(move || drop(source));
        }
        raised(&self.raised).map_or(Ok(()), Err)
    }
}

/// The batch's columns (see `GateSource`). Each record is let go once copied: librdkafka frees
/// a fetch's buffer when its last record goes, so a batch of large records is not held twice.
fn columns<'py>(
    py: Python<'py>,
    messages: Vec<BorrowedMessage<'_>>,
    errors: Vec<String>,
    size: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let n = messages.len();
    let bytes = |b: Option<&[u8]>| b.map(|b| PyBytes::new(py, b));
    let mut values = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut topics: Vec<Bound<'py, PyString>> = Vec::with_capacity(n);
    let mut partitions = Vec::with_capacity(n);
    let mut offsets = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut headers = Vec::with_capacity(n);
    let mut unreadable = Vec::new();
    // one str per topic, shared by its records
    let mut names: Vec<(String, Bound<'py, PyString>)> = Vec::new();
    for m in messages {
        values.push(bytes(m.payload()));
        keys.push(bytes(m.key()));
        let topic = m.topic();
        let name = match names.iter().find(|(t, _)| t == topic) {
            Some((_, s)) => s.clone(),
            None => {
                let s = PyString::new(py, topic);
                names.push((topic.to_owned(), s.clone()));
                s
            }
        };
        topics.push(name);
        partitions.push(m.partition());
        offsets.push(m.offset());
        let (kind, ms) = timestamp(&m);
        types.push(kind);
        times.push(ms);
        let at = headers.len();
        headers.push(header_list(py, &m)?.unwrap_or_else(|| {
            unreadable.push(at);
            None
        }));
    }
    (
        PyList::new(py, values)?,
        PyList::new(py, keys)?,
        PyList::new(py, topics)?,
        PyList::new(py, partitions)?,
        PyList::new(py, offsets)?,
        PyList::new(py, types)?,
        PyList::new(py, times)?,
        PyList::new(py, headers)?,
        size,
        errors,
        unreadable,
    )
        .into_pyobject(py)
}

/// A record's timestamp as confluent-kafka's `Message.timestamp()` gives it: (type code, ms).
/// The rdkafka crate reports any timestamp of -1 as not available, whatever its type.
pub(super) fn timestamp(m: &BorrowedMessage<'_>) -> (i32, i64) {
    let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: `m.ptr()` is the live rd_kafka_message_t `m` borrows (the consumer keeps it
    // until `m` is dropped); librdkafka reads it and writes one of the enum's three values
    // into `kind`, a valid place for it.
    let ms = unsafe { rdsys::rd_kafka_message_timestamp(m.ptr(), &mut kind) };
    (kind as i32, ms)
}

/// Each of a record's headers, in order: its name's bytes (up to its NUL) and its value.
/// The rdkafka crate's own reader panics on a name that is not UTF-8, which a hostile producer
/// can send; this one leaves the names as bytes.
pub(super) fn each_header<'m>(
    m: &'m BorrowedMessage<'_>,
    visit: &mut dyn FnMut(&'m [u8], Option<&'m [u8]>),
) {
    let mut hdrs: *mut rdsys::rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: `m.ptr()` is the live rd_kafka_message_t `m` borrows; librdkafka writes a
    // pointer to the headers it owns with the message into `hdrs`, or leaves it null and says
    // so in the result.
    let err = unsafe { rdsys::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return;
    }
    for idx in 0.. {
        let mut name: *const std::os::raw::c_char = ptr::null();
        let mut value: *const std::os::raw::c_void = ptr::null();
        let mut size: usize = 0;
        // SAFETY: `hdrs` lives as long as `m`; librdkafka writes the `idx`th header's
        // NUL-terminated name, its value (or null) and the value's size, or returns an error
        // past the last header.
        let err =
            unsafe { rdsys::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            break;
        }
        // SAFETY: librdkafka's header names are NUL-terminated and, like the values, live
        // with `hdrs`, that is with `m` ('m).
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null()).then(|| {
            // SAFETY: `value` points at `size` bytes librdkafka holds with `hdrs`.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
        });
        visit(name, value);
    }
}

/// A record's headers as confluent-kafka's `Message.headers()` gives them: `Some(None)` when
/// it has none, else `Some([(name, bytes | None)])` in order; None when a name is not UTF-8
/// (confluent-kafka's `headers()` fails then).
fn header_list<'py>(
    py: Python<'py>,
    m: &BorrowedMessage<'_>,
) -> PyResult<Option<Option<Bound<'py, PyList>>>> {
    if m.headers().is_none() {
        return Ok(Some(None));
    }
    let list = PyList::empty(py);
    let mut failed = None;
    let mut readable = true;
    each_header(m, &mut |name, value| {
        let Ok(name) = std::str::from_utf8(name) else {
            readable = false;
            return;
        };
        if readable
            && failed.is_none()
            && let Err(e) = list.append((name, value.map(|v| PyBytes::new(py, v))))
        {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(readable.then_some(Some(list)))
}
