//! The Kafka side of the compiled gate loop (issue 22): consume a batch, stamp each record
//! with the stamping contract v1 (collectors/_stamps.py), produce it, and commit the
//! consumed offsets only once every record of the batch, and of every batch before it, was
//! delivered. One thread; librdkafka's handles are this module's own (the `rdkafka` crate),
//! never confluent-kafka's.
//!
//! It judges nothing: it is the floor a compiled gate stands on (bench/native_loop.py), and
//! the plumbing the integrated loop will keep. What it writes on each record is what the
//! gate writes on a record it stamps first (collectors/_gate.py, `_route`): the record's own
//! headers, then `stampline.v`, `stampline.event_id`, `stampline.origin_ns`,
//! `stampline.ingest_ns`, `stampline.clock_err_ns`, `traceparent` and `stampline.stamp`,
//! byte for byte in the gate's format. The event id is derived exactly as the gate derives
//! an unstamped record's (`source_event_id` in collectors/_ids.py). Where this loop has no
//! decoder yet, the origin is the broker's timestamp (the gate reads it from the payload).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::clientlog;

pub use crate::route::{
    H_CLOCK_ERR, H_EVENT_ID, H_INGEST, H_ORIGIN, H_STAMP, H_TRACEPARENT, H_VERSION,
};

/// What the loop runs on, and when it ends.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub source: String,
    pub sink: String,
    pub stage: String,
    pub host: String,
    pub clock_err_ns: u64,
    /// records taken per batch at most (the gate's `batch_size`)
    pub batch_size: usize,
    /// stop once this many records were consumed (0: no limit)
    pub max_events: u64,
    /// stop when no record came for this long, once one came; before the first, `start_wait`
    pub idle: Duration,
    pub start_wait: Duration,
    /// librdkafka settings, after this loop's own defaults (`bootstrap.servers`, `group.id`…)
    pub consumer: Vec<(String, String)>,
    pub producer: Vec<(String, String)>,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoopStats {
    pub consumed: u64,
    pub produced: u64,
    pub delivered: u64,
    pub batches: u64,
    /// times the producer's queue was full (the loop then waits for deliveries, 10 ms at most)
    pub queue_full: u64,
    /// waits for a batch's first record that ended with none
    pub empty_polls: u64,
    /// the offsets committed last, per (topic, partition): the next offset to read
    pub committed: BTreeMap<(String, i32), i64>,
    /// from the first record taken to the last commit
    pub elapsed: Duration,
    /// from the first record taken to the last one produced (before the final flush)
    pub producing: Duration,
}

#[derive(Debug)]
pub enum LoopError {
    /// a setting this loop refuses before it starts (a stage or host name out of contract)
    Config(String),
    Kafka(String),
    /// building the trail rows' record batch failed (a bug: the columns are built together)
    Arrow(String),
    /// a record was not delivered: nothing from its batch on is committed
    Delivery(String),
}

impl std::fmt::Display for LoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoopError::Config(s) => write!(f, "{s}"),
            LoopError::Kafka(s) => write!(f, "Kafka: {s}"),
            LoopError::Arrow(s) => write!(f, "Arrow: {s}"),
            LoopError::Delivery(s) => write!(f, "delivery failed: {s}"),
        }
    }
}

impl std::error::Error for LoopError {}

impl From<arrow_schema::ArrowError> for LoopError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        LoopError::Arrow(e.to_string())
    }
}

impl From<KafkaError> for LoopError {
    fn from(e: KafkaError) -> Self {
        LoopError::Kafka(e.to_string())
    }
}

/// A client librdkafka would not make from its settings: the caller's to handle as any refused
/// setting (the gate and the tap take their reference). rdkafka's own text ends with the
/// refused value, which may be a password or a client secret, so this names the setting only.
pub fn refused(e: KafkaError) -> LoopError {
    LoopError::Config(match e {
        KafkaError::ClientConfig(_, why, key, _) => format!("setting {key:?} refused: {why}"),
        other => other.to_string(),
    })
}

/// Delivery reports, counted per batch. librdkafka calls `delivery` on this thread, from
/// `producer.poll`, so the mutex is never contended; it is there because a context must be
/// `Sync`.
#[derive(Default)]
struct Deliveries {
    /// batch number -> (delivered, first failure)
    done: Mutex<HashMap<usize, (u64, Option<String>)>>,
    failed: AtomicBool,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        clientlog::keep("stamp loop", level, fac, log_message);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize; // the batch number

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let entry = done.entry(batch).or_default();
        match result {
            Ok(_) => entry.0 += 1,
            Err((err, _)) => {
                self.failed.store(true, Ordering::Relaxed);
                entry.1.get_or_insert_with(|| err.to_string());
            }
        }
    }
}

/// A batch whose records are produced but not yet all delivered.
struct InFlight {
    number: usize,
    produced: u64,
    /// the next offset to read, per (topic, partition), once this batch is through
    offsets: BTreeMap<(String, i32), i64>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `[A-Za-z0-9_.:-]{1,64}`, the contract's stage names (`check_stage_name`).
pub fn is_stage_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// Printable ASCII without ';' or space, at most 255 bytes (the contract's hosts).
pub fn is_host(s: &str) -> bool {
    s.len() <= 255 && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b';')
}

/// The 16 bytes of the event id the gate gives an unstamped record read at (topic,
/// partition, offset) with broker time `timestamp_ms` (-1 when the broker gave none):
/// `source_event_id` in collectors/_ids.py, a UUIDv8 of the time in ms and a BLAKE2b-80 of
/// the position.
pub fn source_event_id(topic: &str, partition: i32, offset: i64, timestamp_ms: i64) -> [u8; 16] {
    let mut hasher = Blake2bVar::new(10).expect("10 is a valid BLAKE2b output size");
    let mut text = Vec::with_capacity(topic.len() + 48);
    text.extend_from_slice(topic.as_bytes());
    // The decimal text Python's f-string gives, NUL between the fields.
    let _ = write!(
        ByteWriter(&mut text),
        "\0{partition}\0{offset}\0{timestamp_ms}"
    );
    hasher.update(&text);
    let mut raw = [0u8; 16];
    let ms = (timestamp_ms.max(0) as u64) & ((1 << 48) - 1);
    raw[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    hasher
        .finalize_variable(&mut raw[6..])
        .expect("the buffer is the output size");
    raw[6] = (raw[6] & 0x0F) | 0x80; // version 8: custom (RFC 9562)
    raw[8] = (raw[8] & 0x3F) | 0x80; // RFC 4122 variant
    raw
}

/// `fmt::Write` into a byte vector, so numbers are formatted without a String between.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// The id's canonical text: lower-case hex, hyphens after 4, 6, 8 and 10 bytes.
pub fn uuid_text(raw: &[u8; 16], out: &mut Vec<u8>) {
    for (i, part) in [&raw[..4], &raw[4..6], &raw[6..8], &raw[8..10], &raw[10..]]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        push_hex(out, part);
    }
}

/// `00-<the id's 32 hex digits>-<16 hex digits of span>-01`: the gate's traceparent.
pub fn traceparent(raw: &[u8; 16], span: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"00-");
    push_hex(out, raw);
    out.push(b'-');
    push_hex(out, &span.to_be_bytes());
    out.extend_from_slice(b"-01");
}

/// Span ids: splitmix64, seeded from the OS's per-process random hasher keys. A span id
/// must differ between spans, not be secret (the gate draws them from NumPy's generator).
struct SpanIds(u64);

impl SpanIds {
    fn new() -> Self {
        SpanIds(RandomState::new().hash_one(now_ns()))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The header values of a first stamp, built into one reused buffer: (name, range) pairs.
pub struct FirstStamp {
    pub buf: Vec<u8>,
    pub parts: [(&'static str, std::ops::Range<usize>); 7],
}

impl FirstStamp {
    fn new() -> Self {
        FirstStamp {
            buf: Vec::with_capacity(512),
            parts: [
                (H_VERSION, 0..0),
                (H_EVENT_ID, 0..0),
                (H_ORIGIN, 0..0),
                (H_INGEST, 0..0),
                (H_CLOCK_ERR, 0..0),
                (H_TRACEPARENT, 0..0),
                (H_STAMP, 0..0),
            ],
        }
    }

    /// Fill in the seven headers, in the gate's order. `stamp_head` is
    /// `stage=S;in=RECEIVED;out=` and `stamp_tail` `;err=E;host=H` (the gate's `_Clock`).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &mut self,
        id: &[u8; 16],
        origin_ns: u64,
        ingest: &[u8],
        clock_err: &[u8],
        span: u64,
        stamp_head: &[u8],
        emitted_ns: u64,
        stamp_tail: &[u8],
    ) {
        let b = &mut self.buf;
        b.clear();
        let mark = |b: &Vec<u8>, start: usize| start..b.len();
        let s = b.len();
        b.push(b'1');
        self.parts[0].1 = mark(b, s);
        let s = b.len();
        uuid_text(id, b);
        self.parts[1].1 = mark(b, s);
        let s = b.len();
        let _ = write!(ByteWriter(b), "{origin_ns}");
        self.parts[2].1 = mark(b, s);
        let s = b.len();
        b.extend_from_slice(ingest);
        self.parts[3].1 = mark(b, s);
        let s = b.len();
        b.extend_from_slice(clock_err);
        self.parts[4].1 = mark(b, s);
        let s = b.len();
        traceparent(id, span, b);
        self.parts[5].1 = mark(b, s);
        let s = b.len();
        b.extend_from_slice(stamp_head);
        let _ = write!(ByteWriter(b), "{emitted_ns}");
        b.extend_from_slice(stamp_tail);
        self.parts[6].1 = mark(b, s);
    }
}

/// Run the loop until `max_events` records were consumed or the topic stayed idle.
///
/// Offsets: the consumer is assigned every partition of `source` at the group's committed
/// offset (the earliest where none). A batch's offsets are committed (asynchronously, so
/// consuming goes on) once all its records and all earlier batches' were delivered; at the
/// end the producer is flushed and the last offsets committed synchronously. A failed
/// delivery stops the loop with an error, and nothing from that batch on is committed:
/// those records are read again by the next run (at-least-once, as the gate).
pub fn run(bootstrap: &str, group_id: &str, config: &LoopConfig) -> Result<LoopStats, LoopError> {
    if !is_stage_name(&config.stage) {
        return Err(LoopError::Config(format!(
            "stage name {:?} must be 1-64 characters of letters, digits and _.:-",
            config.stage
        )));
    }
    if !is_host(&config.host) {
        return Err(LoopError::Config(format!(
            "host {:?} must be printable ASCII without ';' or space",
            config.host
        )));
    }
    let consumer: BaseConsumer = consumer_config(bootstrap, group_id, &config.consumer)
        .create()
        .map_err(refused)?;
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", bootstrap)
        // stampline's producer defaults (PRODUCER_DEFAULTS)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    for (k, v) in &config.producer {
        pc.set(k, v);
    }
    let producer: BaseProducer<Deliveries> = clientlog::leveled(pc)
        .create_with_context(Deliveries::default())
        .map_err(refused)?;
    // Connect the producer and learn the sink's partitions before the first record is
    // taken, so the first batch does not wait for that. (It may still wait for the
    // idempotent producer's id: 0-1 s on the embedded broker, docs/native.md.)
    producer
        .client()
        .fetch_metadata(Some(&config.sink), Duration::from_secs(10))?;

    let metadata = consumer.fetch_metadata(Some(&config.source), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        if let Some(err) = topic.error() {
            return Err(LoopError::Kafka(format!(
                "topic {}: {:?}",
                config.source,
                RDKafkaErrorCode::from(err)
            )));
        }
        for p in topic.partitions() {
            assignment.add_partition_offset(&config.source, p.id(), Offset::Stored)?;
        }
    }
    consumer.assign(&assignment)?;

    let host_tail = format!(";err={};host={}", config.clock_err_ns, config.host);
    let clock_err = config.clock_err_ns.to_string();
    let mut stamp = FirstStamp::new();
    let mut spans = SpanIds::new();
    let mut stats = LoopStats::default();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut started: Option<Instant> = None;
    let mut last_record = Instant::now();
    let mut number = 0usize;
    let mut head = Vec::with_capacity(128);

    'run: loop {
        if config.max_events > 0 && stats.consumed >= config.max_events {
            break;
        }
        // Wait for the first record of a batch, then take only what is already fetched
        // (collectors/_kafka.py `take`: a full batch's wait would be latency).
        let wait = if started.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(200)
        };
        let mut batch = InFlight {
            number,
            produced: 0,
            offsets: BTreeMap::new(),
        };
        let mut received = 0u64;
        let mut received_text = Vec::new();
        let mut timeout = wait;
        while batch.produced < config.batch_size as u64 {
            if config.max_events > 0 && stats.consumed >= config.max_events {
                break;
            }
            let Some(polled) = consumer.poll(timeout) else {
                stats.empty_polls += u64::from(batch.produced == 0);
                break;
            };
            timeout = Duration::ZERO;
            let m = match polled {
                Ok(m) => m,
                // A partition's end and the like: librdkafka reports, the loop goes on.
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if received == 0 {
                // The batch's in=, as the gate takes one receive time per batch.
                received = now_ns();
                received_text = received.to_string().into_bytes();
                head.clear();
                head.extend_from_slice(b"stage=");
                head.extend_from_slice(config.stage.as_bytes());
                head.extend_from_slice(b";in=");
                head.extend_from_slice(&received_text);
                head.extend_from_slice(b";out=");
                started.get_or_insert_with(Instant::now);
            }
            stats.consumed += 1;
            let ts = m.timestamp().to_millis().unwrap_or(-1);
            let id = source_event_id(m.topic(), m.partition(), m.offset(), ts);
            let origin = if ts > 0 { ts as u64 * 1_000_000 } else { 0 };
            stamp.build(
                &id,
                origin,
                &received_text,
                clock_err.as_bytes(),
                spans.next(),
                &head,
                now_ns(),
                host_tail.as_bytes(),
            );
            // The record's own headers first, then the stamps (the gate's order).
            let mut headers = match m.headers() {
                Some(h) => h.detach(),
                None => OwnedHeaders::new_with_capacity(7),
            };
            for (name, range) in &stamp.parts {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(&stamp.buf[range.clone()]),
                });
            }
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&config.sink, number).headers(headers);
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        stats.queue_full += 1;
                        producer.poll(Duration::from_millis(10));
                        if producer.context().failed.load(Ordering::Relaxed) {
                            break 'run;
                        }
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            batch.produced += 1;
            stats.produced += 1;
            batch
                .offsets
                .insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
        }
        if batch.produced > 0 {
            stats.batches += 1;
            last_record = Instant::now();
            in_flight.push_back(batch);
            number += 1;
        } else if started.map_or(last_record.elapsed() >= config.start_wait, |_| {
            last_record.elapsed() >= config.idle
        }) {
            break;
        }
        producer.poll(Duration::ZERO);
        if commit_delivered(&consumer, &producer, &mut in_flight, &mut stats, false)? {
            break;
        }
    }
    // The end: every record out, then the last offsets, synchronously.
    stats.producing = started.map_or(Duration::ZERO, |s| s.elapsed());
    let flushed = producer.flush(Duration::from_secs(30));
    producer.poll(Duration::ZERO);
    commit_delivered(&consumer, &producer, &mut in_flight, &mut stats, true)?;
    if let Some(failure) = first_failure(&producer) {
        return Err(LoopError::Delivery(failure));
    }
    flushed?;
    if !in_flight.is_empty() {
        return Err(LoopError::Delivery(format!(
            "{} batch(es) not delivered in 30 s",
            in_flight.len()
        )));
    }
    stats.elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(stats)
}

/// Leave the group before `consumer` is dropped (its revoke runs first, as the reference's
/// close): the rdkafka crate's own drop waits for the close in polls of 100 ms, and as nothing
/// wakes its last poll once the close is done, every close would take 100 ms more. Here the
/// polls are short; the crate's drop then finds the consumer closed. Records still fetched
/// are dropped, as there.
pub fn leave<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
    if consumer.close_queue().is_ok() {
        while !consumer.closed() {
            let _ = consumer.poll(CLOSE_POLL);
        }
    }
}

/// How long each poll waits while a consumer closes.
const CLOSE_POLL: Duration = Duration::from_millis(2);

/// stampline's consumer settings (collectors/_kafka.py, `CONSUMER_DEFAULTS`: offsets are
/// committed by the caller, never automatically), then `extra`, which wins.
pub fn consumer_config(
    bootstrap: &str,
    group_id: &str,
    extra: &[(String, String)],
) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", bootstrap)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "5");
    for (k, v) in extra {
        cc.set(k, v);
    }
    clientlog::leveled(cc)
}

fn first_failure(producer: &BaseProducer<Deliveries>) -> Option<String> {
    let ctx = producer.context();
    if !ctx.failed.load(Ordering::Relaxed) {
        return None;
    }
    let done = ctx.done.lock().unwrap_or_else(|e| e.into_inner());
    done.values().find_map(|(_, f)| f.clone())
}

/// Commit the offsets of the leading batches whose records were all delivered. Returns
/// true when a delivery failed (the loop stops; nothing from the failed batch on is
/// committed).
fn commit_delivered(
    consumer: &BaseConsumer,
    producer: &BaseProducer<Deliveries>,
    in_flight: &mut VecDeque<InFlight>,
    stats: &mut LoopStats,
    sync: bool,
) -> Result<bool, LoopError> {
    let mut ready: BTreeMap<(String, i32), i64> = BTreeMap::new();
    {
        let mut done = producer
            .context()
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some(front) = in_flight.front() {
            let delivered = match done.get(&front.number) {
                Some((n, None)) => *n,
                _ => 0,
            };
            if delivered < front.produced {
                break;
            }
            done.remove(&front.number);
            stats.delivered += delivered;
            let front = in_flight.pop_front().expect("front exists");
            ready.extend(front.offsets);
        }
    }
    if !ready.is_empty() {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &ready {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        consumer.commit(&list, mode)?;
        stats.committed.extend(ready);
    }
    Ok(producer.context().failed.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &[u8; 16]) -> String {
        let mut out = Vec::new();
        uuid_text(raw, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn event_ids_are_the_gates() {
        // collectors._ids.source_event_id's values for these positions
        assert_eq!(
            text(&source_event_id("raw", 2, 12345, 1_765_000_000_123)),
            PY_ID_1
        );
        assert_eq!(text(&source_event_id("t.é", 0, 0, -1)), PY_ID_2);
    }

    #[test]
    fn a_first_stamp_is_the_gates_format() {
        let id = source_event_id("raw", 2, 12345, 1_765_000_000_123);
        let mut s = FirstStamp::new();
        s.build(
            &id,
            1_765_000_000_123_000_000,
            b"1765000000200000000",
            b"1000000",
            0x0123_4567_89ab_cdef,
            b"stage=gate;in=1765000000200000000;out=",
            1_765_000_000_200_000_500,
            b";err=1000000;host=h1",
        );
        let got: Vec<(&str, &[u8])> = s
            .parts
            .iter()
            .map(|(n, r)| (*n, &s.buf[r.clone()]))
            .collect();
        let hex = PY_ID_1.replace('-', "");
        let trace = format!("00-{hex}-0123456789abcdef-01");
        let want: Vec<(&str, &[u8])> = vec![
            ("stampline.v", b"1"),
            ("stampline.event_id", PY_ID_1.as_bytes()),
            ("stampline.origin_ns", b"1765000000123000000"),
            ("stampline.ingest_ns", b"1765000000200000000"),
            ("stampline.clock_err_ns", b"1000000"),
            ("traceparent", trace.as_bytes()),
            (
                "stampline.stamp",
                b"stage=gate;in=1765000000200000000;out=1765000000200000500;err=1000000;host=h1",
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn stage_and_host_names_follow_the_contract() {
        assert!(is_stage_name("gate.v1:a-b_c"));
        assert!(!is_stage_name(""));
        assert!(!is_stage_name("a b"));
        assert!(!is_stage_name(&"x".repeat(65)));
        assert!(is_host("") && is_host("host-1.example"));
        assert!(!is_host("a;b") && !is_host("a b") && !is_host("hôte"));
    }

    #[test]
    fn span_ids_differ() {
        let mut s = SpanIds::new();
        let ids: std::collections::HashSet<u64> = (0..10_000).map(|_| s.next()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    const PY_ID_1: &str = "019af232-b27b-8b1d-9265-c1fe5c2fbe6e";
    const PY_ID_2: &str = "00000000-0000-8f1d-b957-bc111bdbe3d3";
}
