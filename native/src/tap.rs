//! The tap's compiled loop (issue 22): a consumer of the tap's topics whose batches come back
//! as trail rows built column-wise in Arrow ([`crate::taprows`]), with each record's stamps
//! read by [`crate::stamps::read`] straight from the header bytes librdkafka holds.
//!
//! Python keeps the control: it asks for a batch ([`TapLoop::take`]), which comes with the
//! offsets it covers; it writes the rows to the trail, and commits ([`TapLoop::commit`]) the
//! offsets it names once the trail has them (collectors/_tap.py pipelines that write).
//! Records this loop is not certain to observe exactly as `Tap._observe` (collectors/_tap.py)
//! does come back raw ([`Raw`]), in their place among the rows, and Python observes them with
//! the reference: stamps the reader is unsure of (every broken one among them), an unstamped
//! record where key fields identify events (the payload is read by orjson there), a stage name
//! the contract refuses, a broker time beyond int64 in ns. A consume error comes back as its
//! text. One thread; librdkafka's handles are this module's own (the `rdkafka` crate).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::RecordBatch;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};

use crate::clientlog;
use crate::kafka::{self, LoopError, is_stage_name, source_event_id, uuid_text};
use crate::stamps::{self, Picked, Read};
use crate::taprows::{Position, Sighting, TapRows};

/// What the loop asks of its caller: its side of a rebalance, and the one thing the rdkafka
/// crate does not tell.
pub trait TapHooks: Send + Sync + 'static {
    /// Partitions were assigned.
    fn assigned(&self);
    /// Partitions are about to be revoked: write the rows of every record handed over so far,
    /// and name the offsets (topic, partition, next offset) whose rows the trail now holds;
    /// those are committed before the partitions go.
    fn revoking(&self) -> Vec<(String, i32, i64)>;
    /// Whether the caller has asked the loop to stop: a take waiting for its first record
    /// asks every [`STOP_CHECK`] and returns at once when so.
    fn stopping(&self) -> bool {
        false
    }
    /// A record's timestamp (type code, ms) as librdkafka gives it (confluent-kafka's
    /// `Message.timestamp()`). The rdkafka crate reports any timestamp of -1 as not
    /// available, whatever its type; the binding reads the type where that matters.
    fn timestamp(&self, m: &BorrowedMessage<'_>) -> (i32, i64) {
        match m.timestamp() {
            Timestamp::NotAvailable => (0, -1),
            Timestamp::CreateTime(t) => (1, t),
            Timestamp::LogAppendTime(t) => (2, t),
        }
    }
    /// Each of a record's headers, in order: its name's bytes and its value. The rdkafka
    /// crate's reader panics on a name that is not UTF-8, which a hostile producer can send,
    /// so the binding reads them.
    fn headers<'m>(
        &self,
        m: &'m BorrowedMessage<'_>,
        visit: &mut dyn FnMut(&'m [u8], Option<&'m [u8]>),
    );
}

/// The consumer's context: rebalances go to the hooks, which say what a revoke commits.
pub struct TapContext<H> {
    hooks: H,
    /// a commit made during a revoke that failed; `take` reports it
    failure: Mutex<Option<String>>,
}

impl<H: TapHooks> ClientContext for TapContext<H> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        clientlog::keep("tap consumer", level, fac, log_message);
    }
}

impl<H: TapHooks> ConsumerContext for TapContext<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // As the reference's on_revoke: the rows written first, then their offsets committed.
        if let Rebalance::Revoke(_) = rebalance
            && let Err(e) = commit_offsets(consumer, &self.hooks.revoking(), None)
        {
            *lock(&self.failure) = Some(e.to_string());
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.hooks.assigned();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Commit `offsets` (those of `assigned` partitions only, when given: a partition revoked
/// since is another consumer's to commit), synchronously.
fn commit_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &[(String, i32, i64)],
    assigned: Option<&TopicPartitionList>,
) -> Result<(), LoopError> {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        if assigned.is_none_or(|a| a.find_partition(topic, *partition).is_some()) {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
    }
    if list.count() > 0 {
        consumer.commit(&list, CommitMode::Sync)?;
    }
    Ok(())
}

/// The tap's settings that shape its rows and batches (`TapSettings`).
#[derive(Debug, Clone)]
pub struct TapConfig {
    pub topics: Vec<String>,
    /// the tap's stage prefix: its sightings are `<stage>:<topic>`, cut to 64 characters
    pub stage: String,
    pub host: String,
    pub clock_err_ns: i64,
    pub clock_source: String,
    /// key fields are set: an unstamped record is left to the reference
    pub keyed: bool,
    pub consume_batch: usize,
    pub poll_timeout: Duration,
}

/// A record handed back for the reference to observe, as confluent-kafka gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: (i32, i64),
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Option<Vec<(String, Option<Vec<u8>>)>>,
    /// a header name is not UTF-8: `headers` is None, and the reference cannot read them
    pub unreadable: bool,
    /// why this loop left it to the reference
    pub why: &'static str,
}

/// One batch's worth.
pub struct Taken {
    pub rows: RecordBatch,
    /// the records for the reference, each with the number of `rows` that come before its
    pub raw: Vec<(usize, Raw)>,
    /// consume errors, as librdkafka words them
    pub errors: Vec<String>,
    /// records observed here (not counting `raw`), and of those the unstamped
    pub records: u64,
    pub unstamped: u64,
    /// records observed here per topic, in first-seen order
    pub per_topic: Vec<(String, u64)>,
    /// the next offset per (topic, partition) after this batch's records (raw ones too): what
    /// a commit covers once their rows are written
    pub handed: Vec<(String, i32, i64)>,
}

pub struct TapLoop<H: TapHooks> {
    consumer: BaseConsumer<TapContext<H>>,
    config: TapConfig,
    /// `Tap.stage_for`: None where the contract refuses the name (the reference raises)
    stage_of: HashMap<String, Option<String>>,
    rows: TapRows,
}

impl<H: TapHooks> TapLoop<H> {
    /// A consumer with stampline's settings, then `settings` (the tap's and the user's, in
    /// that order), subscribed to the tap's topics.
    pub fn new(
        bootstrap: &str,
        group_id: &str,
        settings: &[(String, String)],
        config: TapConfig,
        hooks: H,
    ) -> Result<Self, LoopError> {
        let context = TapContext {
            hooks,
            failure: Mutex::default(),
        };
        let consumer: BaseConsumer<TapContext<H>> =
            kafka::consumer_config(bootstrap, group_id, settings)
                .create_with_context(context)
                // A setting this librdkafka build refuses (OIDC: it has no libcurl): the tap
                // takes its reference loop.
                .map_err(kafka::refused)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Self {
            consumer,
            config,
            stage_of: HashMap::new(),
            rows: TapRows::default(),
        })
    }

    pub fn hooks(&self) -> &H {
        &self.consumer.context().hooks
    }

    /// Up to `consume_batch` records, waiting up to `poll_timeout` for the first (less if the
    /// caller stops meanwhile: [`TapHooks::stopping`]) and then taking only what is already
    /// fetched (collectors/_kafka.py `take`), observed.
    pub fn take(&mut self) -> Result<Taken, LoopError> {
        let mut messages = Vec::new();
        let mut errors = Vec::new();
        let deadline = Instant::now() + self.config.poll_timeout;
        while messages.len() + errors.len() < self.config.consume_batch.max(1) {
            let polled = if messages.is_empty() && errors.is_empty() {
                first(&self.consumer, deadline)
            } else {
                self.consumer.poll(Duration::ZERO)
            };
            let Some(polled) = polled else {
                break;
            };
            match polled {
                Ok(m) => messages.push(m),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some(failure) = lock(&self.consumer.context().failure).take() {
            return Err(LoopError::Kafka(format!("commit on revoke: {failure}")));
        }
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let hooks = &self.consumer.context().hooks;
        let mut taken = Taken {
            rows: RecordBatch::new_empty(crate::taprows::schema()),
            raw: Vec::new(),
            errors,
            records: 0,
            unstamped: 0,
            per_topic: Vec::new(),
            handed: Vec::new(),
        };
        // Keys borrowed from the records (no allocation per record); owned once at the end.
        let mut handed: HashMap<(&str, i32), i64> = HashMap::new();
        // A batch comes in runs of one partition's records: the run at hand is kept here and
        // goes into `handed` when it ends, so a record costs no hashing of its topic (the
        // stage name likewise: looked up once per run).
        let mut run: Option<((&str, i32), i64)> = None;
        let mut stage_of_run: Option<Option<String>> = None;
        let mut id = Vec::with_capacity(36);
        for m in &messages {
            let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
            match &mut run {
                Some((key, next)) if *key == (topic, partition) => *next = offset + 1,
                _ => {
                    if let Some((key, next)) = run.replace(((topic, partition), offset + 1)) {
                        handed.insert(key, next);
                    }
                    stage_of_run = None;
                }
            }
            let timestamp = hooks.timestamp(m);
            let stage = stage_of_run.get_or_insert_with(|| {
                self.stage_of
                    .entry(topic.to_owned())
                    .or_insert_with(|| stage_name(&self.config.stage, topic))
                    .clone()
            });
            let Some(stage) = stage.as_deref() else {
                taken.raw.push((
                    self.rows.len(),
                    raw(hooks, m, timestamp, "a stage name the contract refuses"),
                ));
                continue;
            };
            let at = Position {
                topic,
                partition,
                offset,
                broker_ms: if timestamp.0 != 0 { timestamp.1 } else { 0 },
                time_type: time_type(timestamp.0),
            };
            let me = Sighting {
                stage,
                host: &self.config.host,
                clock_err_ns: self.config.clock_err_ns,
                clock_source: &self.config.clock_source,
                now_ns,
            };
            let mut picked = Picked::default();
            let mut readable = true;
            hooks.headers(m, &mut |name, value| {
                readable &= std::str::from_utf8(name).is_ok();
                picked.take(name, value);
            });
            if !readable {
                taken
                    .raw
                    .push((self.rows.len(), raw(hooks, m, timestamp, UNREADABLE)));
                continue;
            }
            let added = match stamps::read(&picked) {
                Read::Stamps(s) => self.rows.stamped(&at, &me, &s).ok_or(TOO_LATE),
                Read::NoStamps if self.config.keyed => Err("an unstamped record with key fields"),
                Read::NoStamps => {
                    id.clear();
                    uuid_text(
                        &source_event_id(topic, partition, offset, at.broker_ms),
                        &mut id,
                    );
                    let id = std::str::from_utf8(&id).expect("hex and hyphens");
                    taken.unstamped += 1;
                    self.rows.unstamped(&at, &me, id).ok_or(TOO_LATE)
                }
                Read::Unsure(why) => Err(why),
            };
            match added {
                Ok(_) => {
                    taken.records += 1;
                    match taken.per_topic.iter_mut().find(|(t, _)| t == topic) {
                        Some((_, n)) => *n += 1,
                        None => taken.per_topic.push((topic.to_owned(), 1)),
                    }
                }
                Err(why) => taken
                    .raw
                    .push((self.rows.len(), raw(hooks, m, timestamp, why))),
            }
        }
        taken.rows = self.rows.finish()?;
        if let Some((key, next)) = run {
            handed.insert(key, next);
        }
        taken.handed = handed
            .into_iter()
            .map(|((t, p), o)| (t.to_owned(), p, o))
            .collect();
        Ok(taken)
    }

    /// Commit `offsets` (their records' rows are written: the caller's word), for the
    /// partitions still assigned.
    pub fn commit(&self, offsets: &[(String, i32, i64)]) -> Result<(), LoopError> {
        let assigned = self.consumer.assignment()?;
        commit_offsets(&self.consumer, offsets, Some(&assigned))
    }
}

impl<H: TapHooks> Drop for TapLoop<H> {
    /// Leaves the group (a revoke first, as the reference's close): [`kafka::leave`].
    fn drop(&mut self) {
        kafka::leave(&self.consumer);
    }
}

/// The first record of a take, waiting until `deadline` in polls of at most [`STOP_CHECK`],
/// between which the caller may stop the wait: an idle tap told to stop used to wait out the
/// whole `poll_timeout` first (0.1 s by default, every stop).
fn first<H: TapHooks>(
    consumer: &BaseConsumer<TapContext<H>>,
    deadline: Instant,
) -> Option<rdkafka::error::KafkaResult<BorrowedMessage<'_>>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let polled = consumer.poll(left.min(STOP_CHECK));
        if polled.is_some() || left <= STOP_CHECK || consumer.context().hooks.stopping() {
            return polled;
        }
    }
}

/// The longest a take waits for its first record before it asks whether to stop.
pub const STOP_CHECK: Duration = Duration::from_millis(10);

const TOO_LATE: &str = "a broker time beyond int64 in ns";

/// `Tap.stage_for`: `<stage>:<topic>` cut to 64 characters, if the contract takes it.
fn stage_name(stage: &str, topic: &str) -> Option<String> {
    let name: String = format!("{stage}:{topic}").chars().take(64).collect();
    is_stage_name(&name).then_some(name)
}

/// `audit.broker_time_type`.
fn time_type(code: i32) -> &'static str {
    match code {
        1 => "CreateTime",
        2 => "LogAppendTime",
        _ => "",
    }
}

/// Why a record whose header names are not all UTF-8 is left to the reference, which cannot
/// read its headers either (confluent-kafka's `headers()` fails): it comes back with none.
const UNREADABLE: &str = "a header name that is not UTF-8";

fn raw<H: TapHooks>(
    hooks: &H,
    m: &BorrowedMessage<'_>,
    timestamp: (i32, i64),
    why: &'static str,
) -> Raw {
    let mut headers = m.headers().map(|_| Vec::new());
    let mut readable = true;
    hooks.headers(m, &mut |name, value| match std::str::from_utf8(name) {
        Ok(name) => {
            if let Some(hs) = headers.as_mut() {
                hs.push((name.to_owned(), value.map(<[u8]>::to_vec)));
            }
        }
        Err(_) => readable = false,
    });
    Raw {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp,
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: if readable { headers } else { None },
        unreadable: !readable,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_the_taps() {
        assert_eq!(
            stage_name("tap", "md.clean").as_deref(),
            Some("tap:md.clean")
        );
        let long = "t".repeat(100);
        assert_eq!(stage_name("tap", &long).unwrap().len(), 64);
        assert_eq!(stage_name("my tap", "md"), None);
        assert_eq!(stage_name("tap", "é"), None);
    }

    #[test]
    fn time_types_are_the_trails() {
        assert_eq!(
            [0, 1, 2, 3].map(time_type),
            ["", "CreateTime", "LogAppendTime", ""]
        );
    }
}
