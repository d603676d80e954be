//! The gate's compiled route, bound (`crate::route`, `crate::producer`, `crate::eventtime`;
//! collectors/_gate.py): `EventTime`, `GateProducer` and `route_batch`. No `unsafe` here.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use rdkafka::message::{Header, OwnedHeaders};

use super::arrow_batch::ArrowBatch;
use crate::producer::{self, Out, Refused, Report, Tag};
use crate::route::{self, Batch, HEADER_OVERHEAD, Prior, RECORD_OVERHEAD, Record};
use crate::taprows::Position;
use crate::{eventtime, kafka};

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<EventTime>()?;
    module.add_class::<GateProducer>()?;
    module.add_class::<DeliveryReport>()?;
    module.add_class::<GateRows>()?;
    module.add_function(wrap_pyfunction!(route_batch, module)?)?;
    module.add_function(wrap_pyfunction!(event_ids, module)?)
}

/// The batch's event ids and traceparents (collectors/_ids.py's `source_event_ids`, and
/// the gate's `00-<id>-<span>-01`): `(ids, trace_text)`, one id string per record and 55
/// bytes of traceparent per record. `spans`: 8 bytes of span id per record, drawn by the
/// caller. One call per batch instead of a hash call and a string per record in Python.
#[pyfunction]
fn event_ids<'py>(
    py: Python<'py>,
    topics: Vec<Bound<'py, PyString>>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps_ms: Vec<i64>,
    spans: &[u8],
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyBytes>)> {
    let n = topics.len();
    if partitions.len() != n || offsets.len() != n || timestamps_ms.len() != n {
        return Err(PyValueError::new_err(
            "topics, partitions, offsets and timestamps_ms must have one item per record",
        ));
    }
    if spans.len() != n * 8 {
        return Err(PyValueError::new_err("spans must hold 8 bytes per record"));
    }
    let mut trace = Vec::with_capacity(n * 55);
    let mut text = Vec::with_capacity(36);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let raw = kafka::source_event_id(
            topics[i].to_str()?,
            partitions[i],
            offsets[i],
            timestamps_ms[i],
        );
        let span = u64::from_be_bytes(spans[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        kafka::traceparent(&raw, span, &mut trace);
        text.clear();
        kafka::uuid_text(&raw, &mut text);
        // ASCII by construction
        ids.push(PyString::new(
            py,
            std::str::from_utf8(&text).expect("hex digits and hyphens"),
        ));
    }
    Ok((PyList::new(py, ids)?, PyBytes::new(py, &trace)))
}

/// Event time per provider (collectors/_eventtime.py's `EventTime`, same calls): one
/// instance shared by the compiled route and the records it leaves to Python.
#[pyclass(module = "stampline._native")]
pub(super) struct EventTime(eventtime::EventTime);

#[pymethods]
impl EventTime {
    #[new]
    #[pyo3(signature = (allowed_lateness_ns=5_000_000_000, skew_window_ns=60_000_000_000,
        buckets=12, max_providers=10_000))]
    fn new(
        allowed_lateness_ns: i64,
        skew_window_ns: i64,
        buckets: i64,
        max_providers: usize,
    ) -> PyResult<Self> {
        if buckets < 1 {
            return Err(PyValueError::new_err("buckets must be at least 1"));
        }
        Ok(Self(eventtime::EventTime::new(
            allowed_lateness_ns,
            skew_window_ns,
            buckets,
            max_providers,
        )))
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    fn watermark_ns(&self, provider: &str) -> Option<i128> {
        self.0.watermark_ns(provider)
    }

    fn late_ns(&self, provider: &str, origin_ns: i64) -> i128 {
        self.0.late_ns(provider, origin_ns)
    }

    fn observe(&mut self, provider: &str, origin_ns: i64, ingested_ns: i64) -> i128 {
        self.0.observe(provider, origin_ns, ingested_ns)
    }

    fn clock_offset_ns(&self, provider: &str) -> Option<i128> {
        self.0.clock_offset_ns(provider)
    }
}

/// Where a record Python produced went: what the gate's delivery callbacks read of a
/// confluent-kafka `Message`.
#[pyclass(module = "stampline._native", frozen)]
struct DeliveryReport(Report);

#[pymethods]
impl DeliveryReport {
    fn topic(&self) -> &str {
        &self.0.topic
    }

    fn partition(&self) -> i32 {
        self.0.partition
    }

    fn offset(&self) -> i64 {
        self.0.offset
    }
}

/// The gate's producer on the compiled path, with the calls of confluent-kafka's `Producer`
/// the gate makes: `produce` (raising BufferError when librdkafka's queue is full, and
/// confluent-kafka's KafkaException when it refuses the record), `poll`, `flush`, `len()`;
/// and `close_epoch` and `wait`, which wait for a part of what was produced.
/// A delivery callback is called `callback(error text or None, DeliveryReport)` from the
/// `poll` or `flush` that served it. `positions()` and `take_failures()` tell what became of
/// the records `route_batch` produced.
#[pyclass(module = "stampline._native", frozen)]
pub(super) struct GateProducer(producer::GateProducer<Py<PyAny>>);

#[pymethods]
impl GateProducer {
    /// `settings`: librdkafka settings, in order (stampline's defaults, then the user's).
    #[new]
    fn new(settings: Vec<(String, String)>) -> PyResult<Self> {
        producer::GateProducer::new(&settings)
            .map(Self)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    #[pyo3(signature = (topic, value=None, key=None, *, headers=None, on_delivery=None))]
    fn produce(
        &self,
        py: Python<'_>,
        topic: &str,
        value: Option<&Bound<'_, PyBytes>>,
        key: Option<&Bound<'_, PyBytes>>,
        headers: Option<&Bound<'_, PyAny>>,
        on_delivery: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let headers = match headers {
            None => None,
            Some(h) => Some(owned_headers(h)?.0),
        };
        let out = Out {
            topic,
            value: value.map(|v| v.as_bytes()),
            key: key.map(|k| k.as_bytes()),
            headers,
        };
        let tag = match on_delivery {
            Some(c) => Tag::Callback(c),
            None => Tag::Route,
        };
        match self.0.send(out, tag) {
            Ok(()) => Ok(()),
            Err(Refused::QueueFull) => Err(PyBufferError::new_err("Local: Queue full")),
            Err(Refused::Other { code, why }) => Err(kafka_exception(py, code, &why)),
        }
    }

    /// Serve delivery reports for up to `timeout` seconds; returns the callbacks called.
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&self, py: Python<'_>, timeout: f64) -> PyResult<usize> {
        let wait = seconds(timeout)?;
        py.detach(|| self.0.poll(wait));
        self.call_back(py)
    }

    /// Wait up to `timeout` seconds for every record's delivery; returns how many are left.
    #[pyo3(signature = (timeout=-1.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<usize> {
        let wait = if timeout < 0.0 {
            Duration::from_secs(86_400 * 365)
        } else {
            seconds(timeout)?
        };
        let left = py.detach(|| self.0.flush(wait));
        self.call_back(py)?;
        Ok(left)
    }

    /// End the current epoch and return it: what is produced from now on is counted in the
    /// next (see `wait`).
    fn close_epoch(&self) -> u64 {
        self.0.close_epoch()
    }

    /// Wait up to `timeout` seconds for the delivery of every record produced in `epoch` (a
    /// number `close_epoch` returned) or before; records produced since may stay in flight, as
    /// with `flush` they may not. Returns how many of those are not delivered.
    fn wait(&self, py: Python<'_>, epoch: u64, timeout: f64) -> PyResult<usize> {
        let wait = seconds(timeout)?;
        let left = py.detach(|| self.0.wait(epoch, wait));
        self.call_back(py)?;
        Ok(left)
    }

    fn __len__(&self) -> usize {
        self.0.in_flight()
    }

    /// `{(topic, partition): next offset}` after every record `route_batch` had delivered.
    fn positions(&self) -> std::collections::HashMap<(String, i32), i64> {
        self.0.positions()
    }

    /// `(topic, partition, offset, error)` of the `route_batch` records not delivered since
    /// the last call.
    fn take_failures(&self) -> Vec<(String, i32, i64, String)> {
        self.0
            .take_failures()
            .into_iter()
            .map(|r| (r.topic, r.partition, r.offset, r.error.unwrap_or_default()))
            .collect()
    }
}

impl GateProducer {
    /// Call every waiting delivery callback; the first exception one raised is raised after
    /// all were called.
    fn call_back(&self, py: Python<'_>) -> PyResult<usize> {
        let waiting = self.0.take_callbacks();
        let n = waiting.len();
        let mut first: Option<PyErr> = None;
        for (callback, report) in waiting {
            let error = report.error.clone();
            if let Err(e) = callback.call1(py, (error, DeliveryReport(report))) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(n), Err)
    }
}

pub(super) fn seconds(timeout: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(timeout)
        .map_err(|_| PyValueError::new_err("timeout must be a finite number of seconds >= 0"))
}

/// confluent-kafka's `KafkaException(KafkaError(code, text))`, as the gate catches it from its
/// producer: the code tells the record's own fault (its size) from the output's.
pub(super) fn kafka_exception(py: Python<'_>, code: i32, why: &str) -> PyErr {
    let made = py.import("confluent_kafka").and_then(|m| {
        let error = m.getattr("KafkaError")?.call1((code, why))?;
        m.getattr("KafkaException")?.call1((error,))
    });
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// librdkafka headers from a list of `(str, bytes | str | None)` pairs, and the bytes they take as
/// `header_bytes` counts them (a name's length in characters, as Python's `len`).
fn owned_headers(headers: &Bound<'_, PyAny>) -> PyResult<(OwnedHeaders, usize)> {
    let pairs = headers
        .try_iter()
        .map_err(|_| PyTypeError::new_err("headers must be a list of (str, bytes) pairs"))?;
    let mut out = OwnedHeaders::new_with_capacity(headers.len().unwrap_or(0) + 8);
    let mut size = 0;
    for item in pairs {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("a header must be a (str, bytes) pair"))?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err("a header must be a (str, bytes) pair"));
        }
        let name_item = pair.get_item(0)?;
        // confluent-kafka hands librdkafka the name as a C string: it ends at a NUL
        let whole = name_item.cast::<PyString>()?.to_str()?;
        let name = whole.split('\0').next().unwrap_or_default();
        let value_item = pair.get_item(1)?;
        // bytes, or text sent as UTF-8 (as confluent-kafka does)
        let value = if value_item.is_none() {
            None
        } else if let Ok(text) = value_item.cast::<PyString>() {
            Some(text.to_str()?.as_bytes())
        } else {
            Some(value_item.cast::<PyBytes>()?.as_bytes())
        };
        // counted whole, as `header_bytes` counts it
        size += whole.chars().count() + value.map_or(0, <[u8]>::len) + HEADER_OVERHEAD;
        out = out.insert(Header { key: name, value });
    }
    Ok((out, size))
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A list attribute of the gate's `_Batch`.
fn list<'py>(batch: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyList>> {
    Ok(batch.getattr(name)?.cast_into::<PyList>()?)
}

fn bytes_attr<'py>(of: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyBytes>> {
    Ok(of.getattr(name)?.cast_into::<PyBytes>()?)
}

/// The gate's batch columns, read once per batch.
struct Columns<'py> {
    values: Bound<'py, PyList>,
    keys: Bound<'py, PyList>,
    headers: Bound<'py, PyList>,
    topics: Bound<'py, PyList>,
    partitions: Bound<'py, PyList>,
    offsets: Bound<'py, PyList>,
    broker_ms: Bound<'py, PyList>,
    broker_types: Bound<'py, PyList>,
    ids: Bound<'py, PyList>,
    priors: Bound<'py, PyList>,
    origins: Bound<'py, PyList>,
    providers: Bound<'py, PyList>,
    instruments: Bound<'py, PyList>,
    seqs: Bound<'py, PyList>,
    /// `_Batch.prices`: each record's trail price (NaN for none)
    prices: Vec<f64>,
}

/// One record's fields, as Python objects where they are text, kept alive while its
/// `Record` borrows from them.
struct Held<'py> {
    value: Option<Bound<'py, PyBytes>>,
    key: Option<Bound<'py, PyBytes>>,
    headers: Bound<'py, PyAny>,
    topic: Bound<'py, PyString>,
    partition: i32,
    offset: i64,
    broker_ms: i64,
    broker_type: Bound<'py, PyString>,
    id: Bound<'py, PyString>,
    origin: i64,
    provider: Bound<'py, PyString>,
    instrument: Bound<'py, PyString>,
    seq: i64,
    price: f64,
    prior: Option<HeldPrior<'py>>,
}

struct HeldPrior<'py> {
    event_id: Bound<'py, PyString>,
    origin_ns: i64,
    ingest_ns: i64,
    upstream: Option<(Bound<'py, PyString>, i64, i64)>,
}

impl<'py> Held<'py> {
    /// Record `i`'s fields; `parents` gets its stamps' parents, joined by ",".
    fn read(c: &Columns<'py>, i: usize, parents: &mut String) -> PyResult<Self> {
        let prior = c.priors.get_item(i)?;
        parents.clear();
        let prior = if prior.is_none() {
            None
        } else {
            for (k, p) in prior
                .getattr("parents")?
                .cast_into::<PyTuple>()?
                .iter()
                .enumerate()
            {
                if k > 0 {
                    parents.push(',');
                }
                parents.push_str(p.cast::<PyString>()?.to_str()?);
            }
            let stages = prior.getattr("stages")?.cast_into::<PyTuple>()?;
            let upstream = match stages.len() {
                0 => None,
                k => {
                    let last = stages.get_item(k - 1)?;
                    Some((
                        last.getattr("stage")?.cast_into::<PyString>()?,
                        last.getattr("emitted_ns")?.extract()?,
                        last.getattr("clock_err_ns")?.extract()?,
                    ))
                }
            };
            Some(HeldPrior {
                event_id: prior.getattr("event_id")?.cast_into::<PyString>()?,
                origin_ns: prior.getattr("origin_ns")?.extract()?,
                ingest_ns: prior.getattr("ingest_ns")?.extract()?,
                upstream,
            })
        };
        Ok(Self {
            value: optional_bytes(c.values.get_item(i)?)?,
            key: optional_bytes(c.keys.get_item(i)?)?,
            headers: c.headers.get_item(i)?,
            topic: c.topics.get_item(i)?.cast_into::<PyString>()?,
            partition: c.partitions.get_item(i)?.extract()?,
            offset: c.offsets.get_item(i)?.extract()?,
            broker_ms: c.broker_ms.get_item(i)?.extract()?,
            broker_type: c.broker_types.get_item(i)?.cast_into::<PyString>()?,
            id: c.ids.get_item(i)?.cast_into::<PyString>()?,
            origin: c.origins.get_item(i)?.extract()?,
            provider: c.providers.get_item(i)?.cast_into::<PyString>()?,
            instrument: c.instruments.get_item(i)?.cast_into::<PyString>()?,
            seq: c.seqs.get_item(i)?.extract()?,
            price: c.prices[i],
            prior,
        })
    }

    fn record<'a>(&'a self, trace: &'a [u8], parents: &'a str) -> PyResult<Record<'a>> {
        let prior = match &self.prior {
            None => None,
            Some(p) => Some(Prior {
                event_id: p.event_id.to_str()?,
                origin_ns: p.origin_ns,
                ingest_ns: p.ingest_ns,
                upstream: match &p.upstream {
                    None => None,
                    Some((stage, emitted, err)) => Some((stage.to_str()?, *emitted, *err)),
                },
                parents,
            }),
        };
        Ok(Record {
            at: Position {
                topic: self.topic.to_str()?,
                partition: self.partition,
                offset: self.offset,
                broker_ms: self.broker_ms,
                time_type: self.broker_type.to_str()?,
            },
            source_id: self.id.to_str()?,
            trace,
            prior,
            origin: self.origin,
            provider: self.provider.to_str()?,
            instrument: self.instrument.to_str()?,
            seq: self.seq,
            price: self.price,
        })
    }
}

fn optional_bytes<'py>(item: Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if item.is_none() {
        Ok(None)
    } else {
        Ok(Some(item.cast_into::<PyBytes>()?))
    }
}

/// What `route_batch` returns: per record routed here `(index, emitted, origin, ingested)`
/// as little-endian int64s, the records forwarded, `(index, ns)` of the late ones, and the
/// indexes of the records dead-lettered here.
type Routed<'py> = (Bound<'py, PyBytes>, u64, Vec<(usize, i128)>, Vec<usize>);

/// The compiled route's trail rows, gathered in Rust over every batch until the gate cuts a
/// segment: one export a segment instead of one a batch (an Arrow import costs ~100 µs,
/// which a small batch cannot afford).
#[pyclass(module = "stampline._native")]
#[derive(Default)]
pub(super) struct GateRows(route::GateRows);

#[pymethods]
impl GateRows {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    /// The rows gathered so far, in the canonical columns with the gate's `stage` and
    /// `host`; the buffer starts afresh.
    fn take(&mut self, stage: &str, host: &str) -> PyResult<ArrowBatch> {
        let batch = self
            .0
            .finish(stage, host)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(ArrowBatch { batch })
    }
}

/// Route the records of one gate batch that the gate judged with certainty, in order, and
/// hand each other record to `on_slow(i)` (the reference, `Gate._route`) in its place:
/// those marked in `slow`, and those this route finds it cannot judge as the reference
/// would (a field of an unexpected type, an over-long stamped record, a refused record with
/// stamps, a record librdkafka does not take at once). A record in `rejects` (index: the
/// `Failure`s of the reject rules it broke) is dead-lettered under its first, the others
/// forwarded. The trail rows of the records routed here go to `rows`.
///
/// `batch` is the gate's `_Batch`; `keys` each record's key; `clean_limit` the clean topic's
/// limit where a stamped record may exceed it (None: every record fits); `dead_limit` the
/// dead-letter topic's (a dead letter over it takes the reference, which cuts it down);
/// `rule_files` the hash of each `(rule id, version)`'s file.
#[pyfunction]
#[pyo3(signature = (producer, event_time, rows, batch, keys, slow, on_slow, rejects,
    rule_files, *, clean_topic, clean_limit, dead_topic, dead_limit, stage, host))]
#[allow(clippy::too_many_arguments)]
fn route_batch<'py>(
    py: Python<'py>,
    producer: &Bound<'py, GateProducer>,
    event_time: &Bound<'py, EventTime>,
    rows: &Bound<'py, GateRows>,
    batch: &Bound<'py, PyAny>,
    keys: Bound<'py, PyList>,
    slow: Vec<bool>,
    on_slow: &Bound<'py, PyAny>,
    rejects: &Bound<'py, PyDict>,
    rule_files: &Bound<'py, PyDict>,
    clean_topic: &str,
    clean_limit: Option<usize>,
    dead_topic: &str,
    dead_limit: usize,
    stage: &str,
    host: &str,
) -> PyResult<Routed<'py>> {
    let c = Columns {
        values: list(batch, "values")?,
        keys,
        headers: list(batch, "headers")?,
        topics: list(batch, "topics")?,
        partitions: list(batch, "partitions")?,
        offsets: list(batch, "offsets")?,
        broker_ms: list(batch, "broker_ms")?,
        broker_types: list(batch, "broker_types")?,
        ids: list(batch, "ids")?,
        priors: list(batch, "priors")?,
        origins: list(batch, "origins")?,
        providers: list(batch, "providers")?,
        instruments: list(batch, "instruments")?,
        seqs: list(batch, "seqs")?,
        prices: batch.getattr("prices")?.extract()?,
    };
    let n = c.values.len();
    if slow.len() != n || c.keys.len() != n || c.prices.len() != n {
        return Err(PyValueError::new_err(
            "slow, keys and prices must have one item per record",
        ));
    }
    let clock = batch.getattr("clock")?;
    let trace = bytes_attr(batch, "trace_text")?;
    let stamp_head = bytes_attr(batch, "stamp_head")?;
    let stamp_tail = bytes_attr(&clock, "stamp_tail")?;
    let ingest = batch
        .getattr("ingest_header")?
        .get_item(1)?
        .cast_into::<PyBytes>()?;
    let err_text = clock
        .getattr("err_header")?
        .get_item(1)?
        .cast_into::<PyBytes>()?;
    let source = clock.getattr("source")?.cast_into::<PyString>()?;
    let b = Batch {
        stage,
        host,
        received: batch.getattr("received")?.extract()?,
        received_text: ingest.as_bytes(),
        stamp_head: stamp_head.as_bytes(),
        stamp_tail: stamp_tail.as_bytes(),
        err_ns: clock.getattr("err_ns")?.extract()?,
        err_text: err_text.as_bytes(),
        clock_source: source.to_str()?,
    };
    let trace = trace.as_bytes();
    if trace.len() != n * 55 {
        return Err(PyValueError::new_err(
            "trace_text must hold 55 bytes per record",
        ));
    }
    let gate = producer.get();
    let collector = format!("stampline-{stage}");
    let (mut forwarded, mut late, mut times, mut dead) = (0u64, Vec::new(), Vec::new(), Vec::new());
    let mut text = Vec::with_capacity(256);
    let mut parents = String::new();
    let mut sha = String::new();
    // Each refused record's failures at its index: read from the dict once, not looked up
    // (with an int object made) for every record.
    let mut refused: Vec<Option<Bound<'py, PyAny>>> = Vec::new();
    if !rejects.is_empty() {
        refused.resize(n, None);
        for (at, failures) in rejects.iter() {
            let at: usize = at.extract()?;
            let Some(slot) = refused.get_mut(at) else {
                return Err(PyValueError::new_err(format!(
                    "rejects names record {at} of a batch of {n}"
                )));
            };
            *slot = Some(failures);
        }
    }
    for (i, &is_slow) in slow.iter().enumerate() {
        // Any field this route cannot read as the reference does: the reference reads it.
        let held = if is_slow {
            None
        } else {
            Held::read(&c, i, &mut parents).ok()
        };
        let record = held
            .as_ref()
            .and_then(|h| h.record(&trace[i * 55..i * 55 + 55], &parents).ok());
        let Some(r) = record else {
            on_slow.call1((i,))?;
            continue;
        };
        // A refused record's first failure, read as the reference reads it. A stamped one (its
        // dead letter carries only its stage stamp) or one whose failure this route cannot
        // read (a reason that is not UTF-8, say): the reference takes it.
        let failure = match refused.get(i).and_then(Option::as_ref) {
            None => None,
            Some(fs) => match refusal(fs, rule_files, &mut sha) {
                Ok(read) if r.prior.is_none() => Some(read),
                _ => {
                    on_slow.call1((i,))?;
                    continue;
                }
            },
        };
        let f = match &failure {
            None => None,
            Some((rule_id, rule_version, reason)) => match (rule_id.to_str(), reason.to_str()) {
                (Ok(rule_id), Ok(reason)) => Some(route::Refusal {
                    rule_id,
                    rule_version: *rule_version,
                    reason,
                    rule_sha256: &sha,
                }),
                _ => {
                    on_slow.call1((i,))?;
                    continue;
                }
            },
        };
        let mut s = r.stamp(&b, &event_time.borrow().0);
        let (topic, limit) = match &f {
            None => (clean_topic, clean_limit),
            Some(_) => {
                s.late = 0; // a refused record says nothing of its lateness
                (dead_topic, Some(dead_limit))
            }
        };
        let emitted = now_ns();
        let dead_letter = f.as_ref().map(|f| (f, collector.as_str()));
        let sent = send(
            gate,
            &b,
            &r,
            &s,
            emitted,
            held.as_ref(),
            &mut text,
            topic,
            limit,
            dead_letter,
        );
        if !matches!(sent, Ok(Some(()))) {
            on_slow.call1((i,))?;
            continue;
        }
        for v in [i as i64, emitted, s.origin, s.ingested] {
            times.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(f) = &f {
            rows.borrow_mut().0.dead_lettered(&b, &r, &s, emitted, f);
            dead.push(i);
            continue;
        }
        route::accept(&mut event_time.borrow_mut().0, &r, &s);
        rows.borrow_mut().0.forwarded(&b, &r, &s, emitted);
        forwarded += 1;
        if s.late != 0 {
            late.push((i, s.late));
        }
    }
    Ok((PyBytes::new(py, &times), forwarded, late, dead))
}

/// The first of a refused record's `Failure`s: its rule id, version and reason, with
/// `sha` set to the hash of its rule file as the trail row names it.
fn refusal<'py>(
    failures: &Bound<'py, PyAny>,
    rule_files: &Bound<'py, PyDict>,
    sha: &mut String,
) -> PyResult<(Bound<'py, PyString>, i64, Bound<'py, PyString>)> {
    let first = failures.get_item(0)?;
    let rule_id = first.getattr("rule_id")?.cast_into::<PyString>()?;
    let version: i64 = first.getattr("rule_version")?.extract()?;
    let reason = first.getattr("reason")?.cast_into::<PyString>()?;
    sha.clear();
    if let Some(file) = rule_files.get_item((&rule_id, version))? {
        let _ = write!(
            sha,
            "{}@v{version}={}",
            rule_id.to_str()?,
            file.cast::<PyString>()?.to_str()?
        );
    }
    Ok((rule_id, version, reason))
}

/// Produce one stamped record to `topic`: forwarded, or (`dead`: the rule it broke and the
/// collector's name) dead-lettered, with the dead-letter headers before its stamps.
/// Ok(None): not produced, and nothing done — the reference takes it (over `limit`, or
/// refused by librdkafka now, whose refusal the reference then meets and handles).
#[allow(clippy::too_many_arguments)]
fn send(
    gate: &GateProducer,
    b: &Batch<'_>,
    r: &Record<'_>,
    s: &route::Stamp<'_>,
    emitted: i64,
    held: Option<&Held<'_>>,
    text: &mut Vec<u8>,
    topic: &str,
    limit: Option<usize>,
    dead: Option<(&route::Refusal<'_>, &str)>,
) -> PyResult<Option<()>> {
    let Some(h) = held else { return Ok(None) };
    let (headers, input_size) = if h.headers.is_none() {
        (OwnedHeaders::new_with_capacity(18), 0)
    } else {
        owned_headers(&h.headers)?
    };
    let mut headers = Some(headers);
    let mut add = |name: &str, value: &[u8]| {
        headers = headers.take().map(|hs| {
            hs.insert(Header {
                key: name,
                value: Some(value),
            })
        });
    };
    let dead_size = dead.map_or(0, |(f, collector)| {
        route::dead_letter_headers(r, f, collector, &mut add)
    });
    let stamp_size = route::stamp_headers(b, r, s, emitted, text, &mut add);
    let value = h.value.as_ref().map(|v| v.as_bytes());
    let key = h.key.as_ref().map(|k| k.as_bytes());
    if let Some(limit) = limit {
        let size = key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + input_size
            + dead_size
            + stamp_size
            + RECORD_OVERHEAD;
        if size > limit {
            return Ok(None);
        }
    }
    let out = Out {
        topic,
        value,
        key,
        headers,
    };
    Ok(gate.0.send(out, Tag::Route).ok())
}
