//! The gate's consumer on the compiled route (issue 22): librdkafka handles of this module's
//! own (the `rdkafka` crate), never confluent-kafka's.
//!
//! Python keeps the control (collectors/_gate.py): it asks for a batch ([`GateSource::poll`],
//! whose records the binding turns into the gate's columns in one call), commits the offsets
//! it names once their records are written ([`GateSource::commit`]), pauses and resumes the
//! assignment under backpressure, and handles rebalances through [`SourceHooks`], which run on
//! the polling thread, inside `poll`, as confluent-kafka's `on_assign` and `on_revoke` do: a
//! revoke may commit (through this same source) before the partitions go.
#![forbid(unsafe_code)]

use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::clientlog;
use crate::kafka::{self, LoopError};

/// What the source asks of its caller.
pub trait SourceHooks: Send + Sync + 'static {
    /// These partitions were assigned (the assignment is in place: a pause now holds them).
    fn assigned(&self, partitions: Vec<(String, i32)>);
    /// These partitions are about to be revoked: whatever their records' commit needs is
    /// done now.
    fn revoking(&self, partitions: Vec<(String, i32)>);
    /// librdkafka's statistics, as JSON (only with `statistics.interval.ms` set).
    fn statistics(&self, json: &str);
}

/// The consumer's context: rebalances and statistics go to the hooks.
pub struct SourceContext<H> {
    hooks: H,
}

impl<H: SourceHooks> ClientContext for SourceContext<H> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        clientlog::keep("gate consumer", level, fac, log_message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.hooks.statistics(&String::from_utf8_lossy(statistics));
    }
}

impl<H: SourceHooks> ConsumerContext for SourceContext<H> {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.hooks.revoking(partitions(list));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.hooks.assigned(partitions(list));
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// A consumer of the gate's raw topics.
pub struct GateSource<H: SourceHooks> {
    consumer: BaseConsumer<SourceContext<H>>,
}

impl<H: SourceHooks> GateSource<H> {
    /// A consumer with stampline's settings, then `settings` (the gate's and the user's, in
    /// that order), subscribed to `topics`.
    pub fn new(
        bootstrap: &str,
        group_id: &str,
        settings: &[(String, String)],
        topics: &[String],
        hooks: H,
    ) -> Result<Self, LoopError> {
        let consumer: BaseConsumer<SourceContext<H>> =
            kafka::consumer_config(bootstrap, group_id, settings)
                .create_with_context(SourceContext { hooks })
                // a setting this librdkafka build refuses: the gate takes the reference route
                .map_err(kafka::refused)?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Self { consumer })
    }

    /// Up to `max` records and consume errors (their text), and no more once their values
    /// and keys reach `max_bytes`: wait up to `timeout` for the first, then take only what is
    /// already fetched (collectors/_kafka.py `take`). Returns the records, the errors, and
    /// the bytes of the values and keys taken.
    pub fn poll(
        &self,
        max: usize,
        max_bytes: usize,
        timeout: Duration,
    ) -> (Vec<BorrowedMessage<'_>>, Vec<String>, usize) {
        let mut messages = Vec::with_capacity(max.clamp(1, 10_000));
        let mut errors = Vec::new();
        let mut size = 0;
        let mut wait = timeout;
        while messages.len() + errors.len() < max.max(1) && size < max_bytes {
            let Some(polled) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match polled {
                Ok(m) => {
                    size += m.payload_len() + m.key_len();
                    messages.push(m);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        (messages, errors, size)
    }

    /// Commit `offsets` (topic, partition, next offset), synchronously, as given.
    pub fn commit(&self, offsets: &[(String, i32, i64)]) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        if list.count() > 0 {
            self.consumer.commit(&list, CommitMode::Sync)?;
        }
        Ok(())
    }

    /// Pause (or resume) every partition assigned now; how many there are.
    pub fn pause(&self, paused: bool) -> KafkaResult<usize> {
        let assigned = self.consumer.assignment()?;
        if paused {
            self.consumer.pause(&assigned)?;
        } else {
            self.consumer.resume(&assigned)?;
        }
        Ok(assigned.count())
    }

    /// Pause these partitions (newly assigned while the gate is paused).
    pub fn pause_these(&self, partitions: &[(String, i32)]) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        self.consumer.pause(&list)
    }

    /// The partition's high watermark, asked of the broker.
    pub fn high_watermark(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> KafkaResult<i64> {
        Ok(self.consumer.fetch_watermarks(topic, partition, timeout)?.1)
    }
}

impl<H: SourceHooks> Drop for GateSource<H> {
    /// Leaves the group (a revoke first, as confluent-kafka's close): [`kafka::leave`].
    fn drop(&mut self) {
        kafka::leave(&self.consumer);
    }
}
