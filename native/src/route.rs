//! The gate's compiled route (issue 22): for a record the gate judged with certainty, what
//! `Gate._route` (collectors/_gate.py, the reference) does — its stamp headers, byte for byte
//! in the stamping contract v1, its lateness against its provider's watermark, the
//! dead-letter headers of a record a rule refused (collectors/_dlq.py), and its trail row,
//! built column-wise in Arrow in the store's canonical columns.
//!
//! Kafka-free, so `cargo test` checks it on known inputs; the binding produces the record
//! (`crate::producer`). Which records come here is the binding's and the gate's call: those
//! no rule warned about and the gate itself refused nothing of, with readable stamps or none,
//! that a recovery scan did not find written — forwarded, or, refused by a rule and new (no
//! stamps), dead-lettered whole; everything else takes the reference.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::ArrowError;

use crate::eventtime::EventTime;
use crate::taprows::{PREV_ORIGIN, Position, schema};

// The stamping contract v1's header names (collectors/_stamps.py).
pub const H_VERSION: &str = "stampline.v";
pub const H_EVENT_ID: &str = "stampline.event_id";
pub const H_ORIGIN: &str = "stampline.origin_ns";
pub const H_INGEST: &str = "stampline.ingest_ns";
pub const H_CLOCK_ERR: &str = "stampline.clock_err_ns";
pub const H_TRACEPARENT: &str = "traceparent";
pub const H_STAMP: &str = "stampline.stamp";
pub const H_LATE: &str = "stampline.late_ns";

// The dead-letter headers (collectors/_dlq.py): Kafka Connect's, then stampline's.
pub const H_DLQ_TOPIC: &str = "__connect.errors.topic";
pub const H_DLQ_PARTITION: &str = "__connect.errors.partition";
pub const H_DLQ_OFFSET: &str = "__connect.errors.offset";
pub const H_DLQ_CLASS: &str = "__connect.errors.exception.class.name";
pub const H_DLQ_MESSAGE: &str = "__connect.errors.exception.message";
pub const H_DLQ_STAGE: &str = "__connect.errors.stage";
pub const H_DLQ_CONNECTOR: &str = "__connect.errors.connector.name";
pub const H_RULE_ID: &str = "stampline.rule.id";
pub const H_RULE_VERSION: &str = "stampline.rule.version";
pub const H_REASON: &str = "stampline.reason";
/// `_dlq.MAX_REASON`: the characters of a reason a dead letter and its row keep.
pub const MAX_REASON: usize = 1000;
/// `_dlq._CONVERTER_RULES`: failures to read the bytes are Connect's converter stage.
const CONVERTER_RULES: [&str; 3] = ["record.size", "record.decode", "record.non_finite"];

/// `audit.AUTHORITY_STAMPER`: the row of the collector that stamped the record.
pub const AUTHORITY_STAMPER: i64 = 2;
/// `_preflight.HEADER_OVERHEAD`: the framing of one header, as the gate counts it.
pub const HEADER_OVERHEAD: usize = 16;
/// `_preflight.RECORD_OVERHEAD`.
pub const RECORD_OVERHEAD: usize = 512;
/// `CONTRACT_VERSION`, as its header carries it.
const VERSION: &[u8] = b"1";

/// What every record of one batch shares (the gate's `_Batch`, `_Clock` and settings).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub stage: &'a str,
    pub host: &'a str,
    /// when the gate took the batch in (ns), and its text (the ingest header's value)
    pub received: i64,
    pub received_text: &'a [u8],
    /// "stage=STAGE;in=RECEIVED;out=" and ";err=ERR;host=HOST": the stamp around its out time
    pub stamp_head: &'a [u8],
    pub stamp_tail: &'a [u8],
    /// the clock-error bound and its text (the clock-error header's value)
    pub err_ns: i64,
    pub err_text: &'a [u8],
    pub clock_source: &'a str,
}

/// What a record's stamps said (`Stamps`), where it had any.
#[derive(Clone, Copy, Debug)]
pub struct Prior<'a> {
    pub event_id: &'a str,
    pub origin_ns: i64,
    pub ingest_ns: i64,
    /// the last stage stamp's (stage, emitted ns, clock error ns)
    pub upstream: Option<(&'a str, i64, i64)>,
    /// the parents, joined by ","
    pub parents: &'a str,
}

/// One record's inputs, as the gate's batch columns hold them.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// where it was read, and its broker time (0 where the broker gave none)
    pub at: Position<'a>,
    /// the id derived from where the record was read (`source_event_id`)
    pub source_id: &'a str,
    /// its traceparent, 55 bytes
    pub trace: &'a [u8],
    pub prior: Option<Prior<'a>>,
    /// the origin the rules read from the payload (0: none)
    pub origin: i64,
    pub provider: &'a str,
    pub instrument: &'a str,
    pub seq: i64,
    /// the payload's price (NaN: none)
    pub price: f64,
}

/// A record's stamp, decided before anything is produced: `Gate._route` up to its headers.
#[derive(Clone, Copy, Debug)]
pub struct Stamp<'a> {
    pub event_id: &'a str,
    pub origin: i64,
    pub ingested: i64,
    /// where the hop into this gate starts: (stage, emitted ns, clock error ns)
    pub prev: (&'a str, i64, i64),
    /// how late against its provider's watermark, 0 when on time or unjudged
    pub late: i128,
}

impl<'a> Record<'a> {
    /// The record's stamp; `times` is asked, not moved (see [`accept`]).
    pub fn stamp(&self, b: &Batch<'_>, times: &EventTime) -> Stamp<'a> {
        let (event_id, origin, ingested, upstream) = match &self.prior {
            None => (self.source_id, self.origin, b.received, None),
            Some(p) => (
                p.event_id,
                if p.origin_ns != 0 {
                    p.origin_ns
                } else {
                    self.origin
                },
                if p.ingest_ns != 0 {
                    p.ingest_ns
                } else {
                    b.received
                },
                p.upstream,
            ),
        };
        // The hop into this gate starts at the last upstream stamp, else at the origin; no
        // origin time: no hop to measure.
        let prev = upstream.unwrap_or(if origin != 0 {
            (PREV_ORIGIN, origin, 0)
        } else {
            ("", origin, 0)
        });
        let late = if origin != 0 && !self.provider.is_empty() {
            times.late_ns(self.provider, origin)
        } else {
            0
        };
        Stamp {
            event_id,
            origin,
            ingested,
            prev,
            late,
        }
    }
}

/// The stamp headers `Gate._route` writes on a forwarded record, in its order, given to `add`
/// one by one: the whole contract for a new event, only the stage stamp for a stamped one;
/// then the lateness, if late. `text` is scratch space. Returns the bytes they take as
/// `header_bytes` counts them.
pub fn stamp_headers(
    b: &Batch<'_>,
    r: &Record<'_>,
    s: &Stamp<'_>,
    emitted: i64,
    text: &mut Vec<u8>,
    add: impl FnMut(&'static str, &[u8]),
) -> usize {
    let mut out = Counted { size: 0, add };
    let mut put = |name: &'static str, value: &[u8]| out.put(name, value);
    text.clear();
    text.extend_from_slice(b.stamp_head);
    let _ = write!(Text(text), "{emitted}");
    text.extend_from_slice(b.stamp_tail);
    if r.prior.is_none() {
        let mut number = Vec::with_capacity(20);
        let _ = write!(Text(&mut number), "{}", s.origin);
        put(H_VERSION, VERSION);
        put(H_EVENT_ID, s.event_id.as_bytes());
        put(H_ORIGIN, &number);
        put(H_INGEST, b.received_text);
        put(H_CLOCK_ERR, b.err_text);
        put(H_TRACEPARENT, r.trace);
    }
    put(H_STAMP, text);
    if s.late != 0 {
        text.clear();
        let _ = write!(Text(text), "{}", s.late);
        put(H_LATE, text);
    }
    out.size
}

/// Headers handed on to `add`, with the bytes they take as `header_bytes` counts them.
struct Counted<F> {
    size: usize,
    add: F,
}

impl<F: FnMut(&'static str, &[u8])> Counted<F> {
    fn put(&mut self, name: &'static str, value: &[u8]) {
        self.size += name.len() + value.len() + HEADER_OVERHEAD;
        (self.add)(name, value);
    }
}

/// The rule a record broke that files it as a dead letter (the first of its `Failure`s), and
/// the hash of that rule's file as the trail row names it ("rule@vN=sha256", or "").
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a> {
    pub rule_id: &'a str,
    pub rule_version: i64,
    /// the whole reason: [`MAX_REASON`] characters of it are kept
    pub reason: &'a str,
    pub rule_sha256: &'a str,
}

impl<'a> Refusal<'a> {
    /// The reason as the dead letter and its row keep it: its first [`MAX_REASON`]
    /// characters (Python's `reason[:MAX_REASON]`, which counts code points).
    pub fn kept_reason(&self) -> &'a str {
        match self.reason.char_indices().nth(MAX_REASON) {
            Some((at, _)) => &self.reason[..at],
            None => self.reason,
        }
    }
}

/// The headers `_dlq.dead_letter_headers` adds to a dead letter after the record's own, in
/// its order, given to `add` one by one: where the record was read, and why it failed.
/// `collector` names the gate ("stampline-<stage>"). Returns the bytes they take as
/// `header_bytes` counts them.
pub fn dead_letter_headers(
    r: &Record<'_>,
    f: &Refusal<'_>,
    collector: &str,
    add: impl FnMut(&'static str, &[u8]),
) -> usize {
    let mut out = Counted { size: 0, add };
    let mut put = |name: &'static str, value: &[u8]| out.put(name, value);
    let reason = f.kept_reason().as_bytes();
    let stage: &[u8] = if CONVERTER_RULES.contains(&f.rule_id) {
        b"VALUE_CONVERTER"
    } else {
        b"TRANSFORMATION"
    };
    let mut text = Vec::with_capacity(64);
    put(H_DLQ_TOPIC, r.at.topic.as_bytes());
    let _ = write!(Text(&mut text), "{}", r.at.partition);
    put(H_DLQ_PARTITION, &text);
    text.clear();
    let _ = write!(Text(&mut text), "{}", r.at.offset);
    put(H_DLQ_OFFSET, &text);
    text.clear();
    let _ = write!(Text(&mut text), "stampline.RuleViolation[{}]", f.rule_id);
    put(H_DLQ_CLASS, &text);
    put(H_DLQ_MESSAGE, reason);
    put(H_DLQ_STAGE, stage);
    put(H_DLQ_CONNECTOR, collector.as_bytes());
    put(H_RULE_ID, f.rule_id.as_bytes());
    text.clear();
    let _ = write!(Text(&mut text), "{}", f.rule_version);
    put(H_RULE_VERSION, &text);
    put(H_REASON, reason);
    out.size
}

/// Account a forwarded record in its provider's event time (`Gate._route` once accepted).
pub fn accept(times: &mut EventTime, r: &Record<'_>, s: &Stamp<'_>) {
    if s.origin != 0 && !r.provider.is_empty() {
        times.observe(r.provider, s.origin, s.ingested);
    }
}

/// `fmt::Write` into bytes.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The trail rows of the records routed here, column by column, as `Gate._route` builds each
/// (`audit.trail_row`): forwarded (no rule named) or dead-lettered (naming the rule, its
/// version and its file's hash), never with warnings. Rows of many
/// batches gather here until the gate cuts a segment: the gate's constants (stage, host,
/// authority) are made whole at [`GateRows::finish`]; the clock's bound and source, which
/// may change between batches, are kept per row.
#[derive(Default)]
pub struct GateRows {
    rows: usize,
    event_id: StringBuilder,
    prev_stage: StringBuilder,
    received: Int64Builder,
    emitted: Int64Builder,
    prev_emitted: Int64Builder,
    origin: Int64Builder,
    ingested: Int64Builder,
    prev_clock_err_ns: Int64Builder,
    topic: StringBuilder,
    partition: Int64Builder,
    offset: Int64Builder,
    broker_time: Int64Builder,
    provider: StringBuilder,
    instrument: StringBuilder,
    seq: Int64Builder,
    price: Int64Builder,
    parents: StringBuilder,
    broker_time_type: StringBuilder,
    clock_err_ns: Int64Builder,
    clock_source: StringBuilder,
    outcome: StringBuilder,
    rule_id: StringBuilder,
    rule_version: Int64Builder,
    rule_sha256: StringBuilder,
}

impl GateRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The row of a forwarded record.
    pub fn forwarded(&mut self, b: &Batch<'_>, r: &Record<'_>, s: &Stamp<'_>, emitted: i64) {
        self.push(b, r, s, emitted);
        self.outcome.append_value("forwarded");
        self.rule_id.append_value("");
        self.rule_version.append_value(0);
        self.rule_sha256.append_value("");
    }

    /// The row of a record dead-lettered under `f`.
    pub fn dead_lettered(
        &mut self,
        b: &Batch<'_>,
        r: &Record<'_>,
        s: &Stamp<'_>,
        emitted: i64,
        f: &Refusal<'_>,
    ) {
        self.push(b, r, s, emitted);
        self.outcome.append_value("dead_lettered");
        self.rule_id.append_value(f.rule_id);
        self.rule_version.append_value(f.rule_version);
        self.rule_sha256.append_value(f.rule_sha256);
    }

    /// Every column but the verdict's.
    fn push(&mut self, b: &Batch<'_>, r: &Record<'_>, s: &Stamp<'_>, emitted: i64) {
        self.rows += 1;
        self.event_id.append_value(s.event_id);
        self.prev_stage.append_value(s.prev.0);
        self.received.append_value(b.received);
        self.emitted.append_value(emitted);
        self.prev_emitted.append_value(s.prev.1);
        self.origin.append_value(s.origin);
        self.ingested.append_value(s.ingested);
        self.prev_clock_err_ns.append_value(s.prev.2);
        self.topic.append_value(r.at.topic);
        self.partition.append_value(i64::from(r.at.partition));
        self.offset.append_value(r.at.offset);
        self.broker_time.append_value(r.at.broker_ms);
        self.provider.append_value(r.provider);
        self.instrument.append_value(r.instrument);
        self.seq.append_value(r.seq);
        // the canonical table keeps the float's bits (NaN: Python's, as f64::NAN has them)
        self.price.append_value(r.price.to_bits() as i64);
        self.parents
            .append_value(r.prior.as_ref().map_or("", |p| p.parents));
        self.broker_time_type.append_value(r.at.time_type);
        self.clock_err_ns.append_value(b.err_ns);
        self.clock_source.append_value(b.clock_source);
    }

    /// The rows as one record batch in the canonical columns, with the gate's `stage` and
    /// `host`; the builders start afresh.
    pub fn finish(&mut self, stage: &str, host: &str) -> Result<RecordBatch, ArrowError> {
        let n = std::mem::take(&mut self.rows);
        if n == 0 {
            return Ok(RecordBatch::new_empty(schema()));
        }
        let text = |v: &str| Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n)));
        let int = |v: i64| Arc::new(Int64Array::from_value(v, n));
        let texts = |b: &mut StringBuilder| -> ArrayRef { Arc::new(b.finish()) };
        let ints = |b: &mut Int64Builder| -> ArrayRef { Arc::new(b.finish()) };
        let columns: Vec<ArrayRef> = vec![
            texts(&mut self.event_id),
            text(stage),
            texts(&mut self.prev_stage),
            ints(&mut self.received),
            ints(&mut self.emitted),
            ints(&mut self.prev_emitted),
            ints(&mut self.origin),
            ints(&mut self.ingested),
            ints(&mut self.clock_err_ns),
            ints(&mut self.prev_clock_err_ns),
            text(host),
            texts(&mut self.topic),
            ints(&mut self.partition),
            ints(&mut self.offset),
            ints(&mut self.broker_time),
            texts(&mut self.provider),
            texts(&mut self.instrument),
            ints(&mut self.seq),
            ints(&mut self.price),
            texts(&mut self.outcome),
            texts(&mut self.rule_id),
            ints(&mut self.rule_version),
            texts(&mut self.parents),
            int(AUTHORITY_STAMPER),
            texts(&mut self.clock_source),
            text(""), // warnings: a record that broke a warn rule takes the reference
            texts(&mut self.rule_sha256),
            text(""), // parent_stamps: the gate's row is never a derived event's birth row
            texts(&mut self.broker_time_type),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;

    use super::*;

    const B: Batch<'static> = Batch {
        stage: "gate",
        host: "h1",
        received: 1_765_000_000_000_000_000,
        received_text: b"1765000000000000000",
        stamp_head: b"stage=gate;in=1765000000000000000;out=",
        stamp_tail: b";err=1000000;host=h1",
        err_ns: 1_000_000,
        err_text: b"1000000",
        clock_source: "configured",
    };

    fn record(prior: Option<Prior<'static>>) -> Record<'static> {
        Record {
            at: Position {
                topic: "md.raw",
                partition: 2,
                offset: 7,
                broker_ms: 1_764_999_999_999,
                time_type: "CreateTime",
            },
            source_id: "0b6f5bd6-1e0f-5a8b-8a57-7a0ea6cbbf00",
            trace: b"00-0b6f5bd61e0f5a8b8a577a0ea6cbbf00-0123456789abcdef-01",
            prior,
            origin: 1_764_999_999_990_000_000,
            provider: "alpha",
            instrument: "EURUSD",
            seq: 41,
            price: 1.25,
        }
    }

    fn headers(r: &Record<'_>, s: &Stamp<'_>) -> (Vec<(&'static str, Vec<u8>)>, usize) {
        let mut out = Vec::new();
        let size = stamp_headers(
            &B,
            r,
            s,
            1_765_000_000_000_500_000,
            &mut Vec::new(),
            |k, v| out.push((k, v.to_vec())),
        );
        (out, size)
    }

    #[test]
    fn a_new_event_gets_the_whole_contract_in_order() {
        let times = EventTime::new(5_000_000_000, 60_000_000_000, 12, 10);
        let r = record(None);
        let s = r.stamp(&B, &times);
        assert_eq!(s.prev, ("origin", r.origin, 0));
        let (out, size) = headers(&r, &s);
        let names: Vec<_> = out.iter().map(|h| h.0).collect();
        assert_eq!(
            names,
            [
                H_VERSION,
                H_EVENT_ID,
                H_ORIGIN,
                H_INGEST,
                H_CLOCK_ERR,
                H_TRACEPARENT,
                H_STAMP
            ]
        );
        assert_eq!(out[2].1, b"1764999999990000000");
        assert_eq!(
            out[6].1,
            b"stage=gate;in=1765000000000000000;out=1765000000000500000;err=1000000;host=h1"
        );
        let want: usize = out.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
        assert_eq!(size, want);
    }

    #[test]
    fn a_stamped_event_keeps_its_identity_and_gets_one_stamp_and_its_lateness() {
        let mut times = EventTime::new(5, 60_000_000_000, 12, 10);
        let prior = Prior {
            event_id: "e-1",
            origin_ns: 0, // no origin in the stamps: the payload's
            ingest_ns: 11,
            upstream: Some(("feed", 12, 3)),
            parents: "p1,p2",
        };
        let r = record(Some(prior));
        times.observe("alpha", r.origin + 100, 1);
        let s = r.stamp(&B, &times);
        assert_eq!(
            (s.event_id, s.origin, s.ingested, s.prev, s.late),
            ("e-1", r.origin, 11, ("feed", 12, 3), 95)
        );
        let (out, _) = headers(&r, &s);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], (H_LATE, b"95".to_vec()));
        accept(&mut times, &r, &s);
        assert_eq!(times.watermark_ns("alpha"), Some(i128::from(r.origin) + 95));
    }

    #[test]
    fn rows_hold_the_record_and_the_batch_constants() {
        let times = EventTime::new(5, 60_000_000_000, 12, 10);
        let mut rows = GateRows::default();
        let r = record(None);
        rows.forwarded(&B, &r, &r.stamp(&B, &times), 99);
        let batch = rows.finish("gate", "h1").unwrap();
        assert_eq!(batch.num_rows(), 1);
        let int = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0)
        };
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .value(0)
                .to_owned()
        };
        assert_eq!(int("price"), 1.25f64.to_bits() as i64);
        assert_eq!(int("authority"), AUTHORITY_STAMPER);
        assert_eq!(int("emitted"), 99);
        assert_eq!(text("outcome"), "forwarded");
        assert_eq!(text("stage"), "gate");
        assert_eq!(int("clock_err_ns"), 1_000_000);
        assert_eq!(text("prev_stage"), "origin");
        assert_eq!((text("rule_id"), int("rule_version")), (String::new(), 0));
        assert!(rows.is_empty());
    }

    const REFUSED: Refusal<'static> = Refusal {
        rule_id: "record.decode",
        rule_version: 3,
        reason: "value is not JSON",
        rule_sha256: "record.decode@v3=ab12",
    };

    #[test]
    fn a_dead_letter_says_where_it_was_read_and_why_in_connects_words() {
        let mut out = Vec::new();
        let size = dead_letter_headers(&record(None), &REFUSED, "stampline-gate", |k, v| {
            out.push((k, String::from_utf8(v.to_vec()).unwrap()))
        });
        let want = [
            (H_DLQ_TOPIC, "md.raw"),
            (H_DLQ_PARTITION, "2"),
            (H_DLQ_OFFSET, "7"),
            (H_DLQ_CLASS, "stampline.RuleViolation[record.decode]"),
            (H_DLQ_MESSAGE, "value is not JSON"),
            (H_DLQ_STAGE, "VALUE_CONVERTER"), // a failure to read the bytes
            (H_DLQ_CONNECTOR, "stampline-gate"),
            (H_RULE_ID, "record.decode"),
            (H_RULE_VERSION, "3"),
            (H_REASON, "value is not JSON"),
        ];
        let got: Vec<_> = out.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(got, want);
        let counted: usize = out.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
        assert_eq!(size, counted);
        let rule = Refusal {
            rule_id: "price.band",
            ..REFUSED
        };
        let mut stage = String::new();
        dead_letter_headers(&record(None), &rule, "g", |k, v| {
            if k == H_DLQ_STAGE {
                stage = String::from_utf8(v.to_vec()).unwrap();
            }
        });
        assert_eq!(stage, "TRANSFORMATION");
    }

    #[test]
    fn a_reason_is_kept_to_its_first_thousand_characters_not_bytes() {
        let long = "é".repeat(MAX_REASON + 5);
        let f = Refusal {
            reason: &long,
            ..REFUSED
        };
        assert_eq!(f.kept_reason().chars().count(), MAX_REASON);
        assert_eq!(f.kept_reason().len(), 2 * MAX_REASON);
        assert_eq!(REFUSED.kept_reason(), REFUSED.reason);
    }

    #[test]
    fn a_dead_lettered_row_names_its_rule_and_the_rules_file() {
        let times = EventTime::new(5, 60_000_000_000, 12, 10);
        let mut rows = GateRows::default();
        let r = record(None);
        let s = r.stamp(&B, &times);
        rows.forwarded(&B, &r, &s, 98);
        rows.dead_lettered(&B, &r, &s, 99, &REFUSED);
        let batch = rows.finish("gate", "h1").unwrap();
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let texts = |name: &str| {
            let c = column(name);
            let c = c.as_string::<i32>();
            (c.value(0).to_owned(), c.value(1).to_owned())
        };
        assert_eq!(
            texts("outcome"),
            ("forwarded".into(), "dead_lettered".into())
        );
        assert_eq!(texts("rule_id"), (String::new(), "record.decode".into()));
        assert_eq!(
            texts("rule_sha256"),
            (String::new(), "record.decode@v3=ab12".into())
        );
        let versions = column("rule_version");
        assert_eq!(versions.as_primitive::<Int64Type>().values(), &[0, 3]);
    }
}
