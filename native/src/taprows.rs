//! The tap's trail rows, built column-wise in Arrow (issue 22): for a record whose stamps
//! [`crate::stamps::read`] is sure of, exactly the rows `Tap._observe` (collectors/_tap.py)
//! builds, in its order — one per stage stamp, then the tap's own sighting — and in the
//! columns of the store's canonical table (`CANONICAL_SCHEMA` in collectors/_trailrows.py:
//! the price as the float's bits in an int64).
//!
//! Kafka-free, so `cargo test` checks it on known inputs; `crate::tap` feeds it records.
#![forbid(unsafe_code)]

use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema};

use crate::stamps::{Stage, Stamps};

/// The canonical table's columns, in its order (`audit.CANONICAL`): true for int64, false
/// for string. The binding checks the names against Python's schema before it builds rows.
pub const COLUMNS: [(&str, bool); 29] = [
    ("event_id", false),
    ("stage", false),
    ("prev_stage", false),
    ("received", true),
    ("emitted", true),
    ("prev_emitted", true),
    ("origin", true),
    ("ingested", true),
    ("clock_err_ns", true),
    ("prev_clock_err_ns", true),
    ("host", false),
    ("topic", false),
    ("partition", true),
    ("offset", true),
    ("broker_time", true),
    ("provider", false),
    ("instrument", false),
    ("seq", true),
    ("price", true),
    ("outcome", false),
    ("rule_id", false),
    ("rule_version", true),
    ("parents", false),
    ("authority", true),
    ("clock_source", false),
    ("warnings", false),
    ("rule_sha256", false),
    ("parent_stamps", false),
    ("broker_time_type", false),
];

/// `audit.AUTHORITY_TAP`.
pub const AUTHORITY_TAP: i64 = 1;
/// `audit.PREV_ORIGIN`: the prev_stage of a first stamp, whose hop starts at the origin.
pub const PREV_ORIGIN: &str = "origin";
/// `STAMPED_FALLBACK` (collectors/_stamps.py): `StageStamp.bound_label()` of `src=fallback`.
pub const STAMPED_FALLBACK: &str = "fallback: said by the stage's stamp, which carries no reason";
/// The bits of Python's `math.nan`, the price of a row that has none.
pub const NAN_BITS: i64 = 0x7FF8_0000_0000_0000;
const MS: i64 = 1_000_000;

/// Where and when a record was read: the columns every row of the record shares.
#[derive(Clone, Copy, Debug)]
pub struct Position<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The broker time in ms, 0 where the record has no timestamp type (as `_observe` has it).
    pub broker_ms: i64,
    /// `audit.broker_time_type` of the timestamp type.
    pub time_type: &'a str,
}

/// The tap's own sighting's settings, and the time it read the batch.
#[derive(Clone, Copy, Debug)]
pub struct Sighting<'a> {
    /// `Tap.stage_for(topic)`.
    pub stage: &'a str,
    pub host: &'a str,
    pub clock_err_ns: i64,
    pub clock_source: &'a str,
    pub now_ns: i64,
}

/// A hop's start: (stage, emitted ns, clock error ns) of the stamp before.
type Prev<'a> = (&'a str, i64, i64);

/// The varying columns of one row; the rest are the record's [`Position`] or constants.
struct Row<'a> {
    event_id: &'a str,
    stage: &'a str,
    prev: Prev<'a>,
    received: i64,
    emitted: i64,
    origin: i64,
    ingested: i64,
    clock_err_ns: i64,
    host: &'a str,
    parents: &'a str,
    clock_source: &'a str,
    parent_stamps: &'a str,
}

/// The rows of one batch, column by column. Columns a tap never fills (provider, instrument,
/// seq, price, outcome, rule_id, rule_version, authority, warnings, rule_sha256) are made
/// whole at [`TapRows::finish`].
#[derive(Default)]
pub struct TapRows {
    rows: usize,
    event_id: StringBuilder,
    stage: StringBuilder,
    prev_stage: StringBuilder,
    received: Int64Builder,
    emitted: Int64Builder,
    prev_emitted: Int64Builder,
    origin: Int64Builder,
    ingested: Int64Builder,
    clock_err_ns: Int64Builder,
    prev_clock_err_ns: Int64Builder,
    host: StringBuilder,
    topic: StringBuilder,
    partition: Int64Builder,
    offset: Int64Builder,
    broker_time: Int64Builder,
    parents: StringBuilder,
    clock_source: StringBuilder,
    parent_stamps: StringBuilder,
    broker_time_type: StringBuilder,
    /// reused text: the parents and the lineage of the record at hand
    scratch: (String, String),
}

impl TapRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn push(&mut self, at: &Position<'_>, r: Row<'_>) {
        self.rows += 1;
        self.event_id.append_value(r.event_id);
        self.stage.append_value(r.stage);
        self.prev_stage.append_value(r.prev.0);
        self.received.append_value(r.received);
        self.emitted.append_value(r.emitted);
        self.prev_emitted.append_value(r.prev.1);
        self.origin.append_value(r.origin);
        self.ingested.append_value(r.ingested);
        self.clock_err_ns.append_value(r.clock_err_ns);
        self.prev_clock_err_ns.append_value(r.prev.2);
        self.host.append_value(r.host);
        self.topic.append_value(at.topic);
        self.partition.append_value(i64::from(at.partition));
        self.offset.append_value(at.offset);
        self.broker_time.append_value(at.broker_ms);
        self.parents.append_value(r.parents);
        self.clock_source.append_value(r.clock_source);
        self.parent_stamps.append_value(r.parent_stamps);
        self.broker_time_type.append_value(at.time_type);
    }

    /// The tap's own sighting: received at the broker time (the record reached the topic),
    /// emitted when the tap read it, its bound widened by the broker time's millisecond.
    #[allow(clippy::too_many_arguments)]
    fn sighting(
        &mut self,
        at: &Position<'_>,
        me: &Sighting<'_>,
        event_id: &str,
        prev: Prev<'_>,
        origin: i64,
        ingested: i64,
        parents: &str,
        broker_ns: i64,
    ) {
        let known = at.broker_ms != 0;
        self.push(
            at,
            Row {
                event_id,
                stage: me.stage,
                prev,
                received: if known { broker_ns } else { me.now_ns },
                emitted: me.now_ns,
                origin,
                ingested,
                clock_err_ns: if known {
                    me.clock_err_ns.saturating_add(MS)
                } else {
                    me.clock_err_ns
                },
                host: me.host,
                parents,
                clock_source: me.clock_source,
                parent_stamps: "",
            },
        );
    }

    /// The rows of a record no producer stamped, identified by where it was read
    /// (`event_id`: `source_event_id`). Returns the rows added. None when its broker time in
    /// ns does not fit an int64 (the reference then fails where it writes the row).
    pub fn unstamped(
        &mut self,
        at: &Position<'_>,
        me: &Sighting<'_>,
        event_id: &str,
    ) -> Option<usize> {
        let broker_ns = at.broker_ms.checked_mul(MS)?;
        self.sighting(
            at,
            me,
            event_id,
            ("", 0, 0),
            broker_ns,
            broker_ns,
            "",
            broker_ns,
        );
        Some(1)
    }

    /// The rows of a stamped record: one per stage stamp, then its sighting. Returns the
    /// rows added, or None (nothing added) as for [`TapRows::unstamped`].
    pub fn stamped(
        &mut self,
        at: &Position<'_>,
        me: &Sighting<'_>,
        s: &Stamps<'_>,
    ) -> Option<usize> {
        let broker_ns = at.broker_ms.checked_mul(MS)?;
        // The reader keeps every time within 2000-2100 and bound within a day: all fit int64.
        let (origin, ingested) = (s.origin_ns as i64, s.ingest_ns as i64);
        let (mut parents, mut lineage) = std::mem::take(&mut self.scratch);
        parents.clear();
        lineage.clear();
        for (i, p) in s.parents.iter().enumerate() {
            if i > 0 {
                parents.push(',');
            }
            parents.push_str(p);
        }
        encode_parent_stamps(s, &mut lineage);
        // Each stamp's hop starts at the stamp before it; the first one's at the origin,
        // unless the event was derived: then where each parent last left a stage (lineage).
        let mut prev: Prev<'_> = if s.parents.is_empty() {
            (PREV_ORIGIN, origin, 0)
        } else {
            ("", 0, 0)
        };
        for (i, st) in s.stages.iter().enumerate() {
            self.push(
                at,
                Row {
                    event_id: &s.event_id,
                    stage: st.stage,
                    prev,
                    received: st.received_ns as i64,
                    emitted: st.emitted_ns as i64,
                    origin,
                    ingested,
                    clock_err_ns: st.clock_err_ns as i64,
                    host: st.host,
                    parents: &parents,
                    clock_source: bound_label(st),
                    parent_stamps: if i == 0 { &lineage } else { "" },
                },
            );
            prev = (st.stage, st.emitted_ns as i64, st.clock_err_ns as i64);
        }
        if s.stages.is_empty() {
            prev = ("", 0, 0);
        }
        self.sighting(
            at,
            me,
            &s.event_id,
            prev,
            origin,
            ingested,
            &parents,
            broker_ns,
        );
        self.scratch = (parents, lineage);
        Some(s.stages.len() + 1)
    }

    /// The rows as one record batch in the canonical columns; the builders start afresh,
    /// sized for a batch like this one (so the next one grows no buffer).
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let n = self.rows;
        if n == 0 {
            return Ok(RecordBatch::new_empty(schema()));
        }
        self.rows = 0;
        let text = |v: &str| Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n)));
        let int = |v: i64| Arc::new(Int64Array::from_value(v, n));
        let columns: Vec<ArrayRef> = vec![
            texts(&mut self.event_id),
            texts(&mut self.stage),
            texts(&mut self.prev_stage),
            ints(&mut self.received),
            ints(&mut self.emitted),
            ints(&mut self.prev_emitted),
            ints(&mut self.origin),
            ints(&mut self.ingested),
            ints(&mut self.clock_err_ns),
            ints(&mut self.prev_clock_err_ns),
            texts(&mut self.host),
            texts(&mut self.topic),
            ints(&mut self.partition),
            ints(&mut self.offset),
            ints(&mut self.broker_time),
            text(""),         // provider: the tap reads no payload
            text(""),         // instrument
            int(-1),          // seq
            int(NAN_BITS),    // price
            text("observed"), // outcome: judged by none
            text(""),         // rule_id
            int(0),           // rule_version
            texts(&mut self.parents),
            int(AUTHORITY_TAP),
            texts(&mut self.clock_source),
            text(""), // warnings
            text(""), // rule_sha256
            texts(&mut self.parent_stamps),
            texts(&mut self.broker_time_type),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// The column built so far, its builder replaced by one of the same size.
fn texts(b: &mut StringBuilder) -> ArrayRef {
    let (rows, bytes) = (b.len(), b.values_slice().len());
    let done = b.finish();
    *b = StringBuilder::with_capacity(rows, bytes);
    Arc::new(done)
}

fn ints(b: &mut Int64Builder) -> ArrayRef {
    let rows = b.len();
    let done = b.finish();
    *b = Int64Builder::with_capacity(rows);
    Arc::new(done)
}

/// The canonical table's Arrow schema (every column nullable, as pyarrow's default).
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(name, int)| {
                let kind = if *int {
                    DataType::Int64
                } else {
                    DataType::Utf8
                };
                Field::new(*name, kind, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// `StageStamp.bound_label()`: the trail's clock_source of a stage's stamp.
fn bound_label(st: &Stage<'_>) -> &'static str {
    if st.source == "fallback" {
        STAMPED_FALLBACK
    } else {
        st.source
    }
}

/// `audit.encode_parent_stamps`: `stage/emitted/err` per parent, `-` where not known.
fn encode_parent_stamps(s: &Stamps<'_>, out: &mut String) {
    use std::fmt::Write as _;
    for (i, p) in s.parent_stamps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match p {
            Some((stage, emitted, err)) => {
                let _ = write!(out, "{stage}/{emitted}/{err}");
            }
            None => out.push('-'),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;

    use super::*;

    const AT: Position<'static> = Position {
        topic: "md.clean",
        partition: 3,
        offset: 42,
        broker_ms: 1_765_000_000_123,
        time_type: "CreateTime",
    };
    const ME: Sighting<'static> = Sighting {
        stage: "tap:md.clean",
        host: "tap-1",
        clock_err_ns: 2_000_000,
        clock_source: "configured",
        now_ns: 1_765_000_000_500_000_000,
    };

    fn strings(b: &RecordBatch, name: &str) -> Vec<String> {
        b.column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_owned())
            .collect()
    }

    fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    fn stage(name: &'static str, received: u64, source: &'static str) -> Stage<'static> {
        Stage {
            stage: name,
            received_ns: received,
            emitted_ns: received + 500,
            clock_err_ns: 1_000_000,
            host: "h1",
            source,
        }
    }

    #[test]
    fn a_gate_stamped_record_gives_its_stamps_row_then_the_sighting() {
        let s = Stamps {
            event_id: "019af232-b27b-8b1d-9265-c1fe5c2fbe6e".into(),
            origin_ns: 1_765_000_000_000_000_000,
            ingest_ns: 1_765_000_000_100_000_000,
            clock_err_ns: 1_000_000,
            stages: vec![stage("gate", 1_765_000_000_100_000_000, "fallback")],
            parents: vec![],
            traceparent: "",
            parent_stamps: vec![],
        };
        let mut rows = TapRows::default();
        assert_eq!(rows.stamped(&AT, &ME, &s), Some(2));
        let b = rows.finish().unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(strings(&b, "stage"), ["gate", "tap:md.clean"]);
        assert_eq!(strings(&b, "prev_stage"), ["origin", "gate"]);
        assert_eq!(
            ints(&b, "received"),
            [1_765_000_000_100_000_000, 1_765_000_000_123_000_000]
        );
        assert_eq!(ints(&b, "emitted"), [1_765_000_000_100_000_500, ME.now_ns]);
        assert_eq!(
            ints(&b, "prev_emitted"),
            [1_765_000_000_000_000_000, 1_765_000_000_100_000_500]
        );
        assert_eq!(ints(&b, "clock_err_ns"), [1_000_000, 3_000_000]);
        assert_eq!(ints(&b, "prev_clock_err_ns"), [0, 1_000_000]);
        assert_eq!(
            strings(&b, "clock_source"),
            [STAMPED_FALLBACK, "configured"]
        );
        assert_eq!(strings(&b, "host"), ["h1", "tap-1"]);
        assert_eq!(ints(&b, "partition"), [3, 3]);
        assert_eq!(ints(&b, "offset"), [42, 42]);
        assert_eq!(ints(&b, "price"), [NAN_BITS, NAN_BITS]);
        assert!(f64::from_bits(NAN_BITS as u64).is_nan());
        assert_eq!(ints(&b, "seq"), [-1, -1]);
        assert_eq!(ints(&b, "authority"), [1, 1]);
        assert_eq!(strings(&b, "outcome"), ["observed", "observed"]);
        assert_eq!(
            strings(&b, "broker_time_type"),
            ["CreateTime", "CreateTime"]
        );
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        let got: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(got, names);
    }

    #[test]
    fn a_derived_record_keeps_its_lineage_on_its_first_row_only() {
        let s = Stamps {
            event_id: "019af232-b27b-8b1d-9265-c1fe5c2fbe6e".into(),
            origin_ns: 0,
            ingest_ns: 0,
            clock_err_ns: 0,
            stages: vec![
                stage("sdk.a", 1_765_000_000_100_000_000, ""),
                stage("sdk.b", 1_765_000_000_200_000_000, "chrony"),
            ],
            parents: vec![
                "00000000-0000-8f1d-b957-bc111bdbe3d3".into(),
                "019af232-b27b-8b1d-9265-c1fe5c2fbe6e".into(),
            ],
            traceparent: "",
            parent_stamps: vec![Some(("gate", 1_765_000_000_000_000_001, 7)), None],
        };
        let mut rows = TapRows::default();
        assert_eq!(rows.stamped(&AT, &ME, &s), Some(3));
        let b = rows.finish().unwrap();
        assert_eq!(strings(&b, "prev_stage"), ["", "sdk.a", "sdk.b"]);
        assert_eq!(
            strings(&b, "parent_stamps"),
            ["gate/1765000000000000001/7,-", "", ""]
        );
        let parents = "00000000-0000-8f1d-b957-bc111bdbe3d3,019af232-b27b-8b1d-9265-c1fe5c2fbe6e";
        assert_eq!(strings(&b, "parents"), [parents, parents, parents]);
        assert_eq!(strings(&b, "clock_source"), ["", "chrony", "configured"]);
    }

    #[test]
    fn an_unstamped_record_without_broker_time_is_received_when_read() {
        let at = Position {
            broker_ms: 0,
            time_type: "",
            ..AT
        };
        let mut rows = TapRows::default();
        assert_eq!(rows.unstamped(&at, &ME, "id"), Some(1));
        assert_eq!(rows.unstamped(&AT, &ME, "id2"), Some(1));
        let b = rows.finish().unwrap();
        assert_eq!(ints(&b, "received"), [ME.now_ns, 1_765_000_000_123_000_000]);
        assert_eq!(ints(&b, "origin"), [0, 1_765_000_000_123_000_000]);
        assert_eq!(ints(&b, "clock_err_ns"), [2_000_000, 3_000_000]);
        assert_eq!(strings(&b, "prev_stage"), ["", ""]);
        assert_eq!(strings(&b, "event_id"), ["id", "id2"]);
        assert!(rows.is_empty());
    }

    #[test]
    fn a_broker_time_beyond_int64_in_ns_is_left_to_the_reference() {
        let at = Position {
            broker_ms: i64::MAX / 1000,
            ..AT
        };
        let mut rows = TapRows::default();
        assert_eq!(rows.unstamped(&at, &ME, "id"), None);
        assert!(rows.is_empty());
    }
}
