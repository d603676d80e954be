//! The gate's producer on the compiled path (issue 22): one librdkafka producer (the `rdkafka`
//! crate's, never confluent-kafka's) that every record of the gate goes out on — the compiled
//! route's forwards, and the dead letters, reference-routed records and trail messages Python
//! produces — so a key's records keep their order on the clean topic whichever path judged
//! them.
//!
//! Delivery reports: a record the route produced is accounted here (the next offset per
//! output partition, and every failure); a record Python produced carries a number under which
//! its caller's callback waits in [`Outcomes`], and its report waits there too until the
//! binding calls it back, after the poll or flush that served it, with the GIL held.
//!
//! Epochs: every record is counted under the epoch current when it was sent until its report
//! comes, so the gate's writer can wait for what a segment sent ([`GateProducer::wait`])
//! without waiting for what the evaluator sends meanwhile, as a flush would.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use crate::clientlog;
use crate::kafka::{self, LoopError};

/// Whose record it is: the route's, or Python's with the callback its caller gave.
pub enum Tag<C> {
    Route,
    Callback(C),
}

/// Where a delivered record went, or why it did not.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// librdkafka's words, None when delivered
    pub error: Option<String>,
}

/// The producer's context: what its delivery reports said.
pub struct Outcomes<C> {
    /// topic -> partition -> the next offset after every route record delivered there
    /// (keyed by topic first, so a report finds its entry without making a String; ahash,
    /// since it is looked up for every record delivered and SipHash showed in profiles)
    positions: Mutex<AHashMap<String, AHashMap<i32, i64>>>,
    /// route records that were not delivered
    failures: Mutex<Vec<Report>>,
    /// Python's records' callbacks (and epochs) until their reports come, by the number
    /// each record carries in its opaque ([`opaque`])
    waiting: Mutex<HashMap<usize, (C, u64)>>,
    next: AtomicUsize,
    /// epoch -> records sent in it whose reports have not come (no entry: none); the current
    /// epoch is read and counted under this lock, so a closed epoch gains no record
    outstanding: Mutex<BTreeMap<u64, usize>>,
    epoch: AtomicU64,
    /// Python's records' reports, with their callbacks, in the order served
    callbacks: Mutex<Vec<(C, Report)>>,
}

impl<C> Default for Outcomes<C> {
    fn default() -> Self {
        Self {
            positions: Mutex::default(),
            failures: Mutex::default(),
            waiting: Mutex::default(),
            next: AtomicUsize::new(0),
            outstanding: Mutex::default(),
            epoch: AtomicU64::new(0),
            callbacks: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a record carries as its opaque (a number, not a Box: the route's records, nearly all,
/// allocate nothing for it): a route record its epoch, shifted; a record with a callback the
/// number its callback waits under, shifted, with the low bit set.
fn opaque(route: bool, n: usize) -> usize {
    n << 1 | usize::from(!route)
}

/// An opaque's parts: (a route record's?, its epoch or its callback's number).
fn unpack(tag: usize) -> (bool, usize) {
    (tag & 1 == 0, tag >> 1)
}

impl<C> Outcomes<C> {
    /// Count one record in the current epoch; returns that epoch.
    fn count(&self) -> u64 {
        let mut outstanding = lock(&self.outstanding);
        let epoch = self.epoch.load(Ordering::Relaxed);
        *outstanding.entry(epoch).or_insert(0) += 1;
        epoch
    }

    /// A record of `epoch` was reported (or never taken).
    fn settle(&self, epoch: u64) {
        let mut outstanding = lock(&self.outstanding);
        if let Some(n) = outstanding.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                outstanding.remove(&epoch);
            }
        }
    }

    /// End the current epoch; returns it.
    fn close_epoch(&self) -> u64 {
        let _counting = lock(&self.outstanding);
        self.epoch.fetch_add(1, Ordering::Relaxed)
    }

    /// Records counted in `epoch` or before and not settled.
    fn unsettled(&self, epoch: u64) -> usize {
        lock(&self.outstanding)
            .range(..=epoch)
            .map(|(_, n)| n)
            .sum()
    }
}

impl<C: Send + Sync + 'static> ClientContext for Outcomes<C> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        clientlog::keep("gate producer", level, fac, log_message);
    }
}

impl<C: Send + Sync + 'static> ProducerContext for Outcomes<C> {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Self::DeliveryOpaque) {
        let (m, error) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e.to_string())),
        };
        let (route, n) = unpack(tag);
        let waited = if route {
            self.settle(n as u64);
            None
        } else {
            let waited = lock(&self.waiting).remove(&n);
            if let Some((_, epoch)) = &waited {
                self.settle(*epoch);
            }
            waited
        };
        if route && error.is_none() {
            let mut positions = lock(&self.positions);
            let next = m.offset() + 1;
            match positions.get_mut(m.topic()) {
                Some(partitions) => {
                    let at = partitions.entry(m.partition()).or_insert(-1);
                    *at = (*at).max(next);
                }
                None => {
                    positions.insert(
                        m.topic().to_owned(),
                        AHashMap::from([(m.partition(), next)]),
                    );
                }
            }
            return;
        }
        let report = Report {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            error,
        };
        if route {
            lock(&self.failures).push(report);
        } else if let Some((c, _)) = waited {
            lock(&self.callbacks).push((c, report));
        }
    }
}

/// Why a record was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// librdkafka's queue is full: serve delivery reports and try again
    QueueFull,
    /// refused now, with librdkafka's error code (-1 where it gave none) and words: the
    /// reference route decides whether that is the record's fault (its size) or the output's
    Other { code: i32, why: String },
}

/// A record to produce: value, key and headers as the gate has them.
pub struct Out<'a> {
    pub topic: &'a str,
    pub value: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
}

pub struct GateProducer<C: Send + Sync + 'static> {
    producer: BaseProducer<Outcomes<C>>,
}

impl<C: Send + Sync + 'static> GateProducer<C> {
    /// A producer with `settings` (the gate's, stampline's defaults first; no transactions).
    pub fn new(settings: &[(String, String)]) -> Result<Self, LoopError> {
        let mut config = ClientConfig::new();
        for (k, v) in settings {
            config.set(k, v);
        }
        Ok(Self {
            producer: clientlog::leveled(config)
                .create_with_context(Outcomes::default())
                .map_err(kafka::refused)?,
        })
    }

    /// Hand one record to librdkafka.
    pub fn send(&self, out: Out<'_>, tag: Tag<C>) -> Result<(), Refused> {
        let outcomes = self.producer.context();
        let epoch = outcomes.count();
        let (opaque, waiting) = match tag {
            // (2^63 epochs, or records with a callback, would have to come first to overflow)
            Tag::Route => (opaque(true, epoch as usize), None),
            Tag::Callback(c) => {
                let k = outcomes.next.fetch_add(1, Ordering::Relaxed);
                lock(&outcomes.waiting).insert(k, (c, epoch));
                (opaque(false, k), Some(k))
            }
        };
        let mut record = BaseRecord::with_opaque_to(out.topic, opaque);
        if let Some(v) = out.value {
            record = record.payload(v);
        }
        if let Some(k) = out.key {
            record = record.key(k);
        }
        if let Some(h) = out.headers {
            record = record.headers(h);
        }
        self.producer.send(record).map_err(|(e, _)| {
            // not taken: no report will come
            if let Some(k) = waiting {
                lock(&outcomes.waiting).remove(&k);
            }
            outcomes.settle(epoch);
            match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => Refused::QueueFull,
                other => Refused::Other {
                    code: other.rdkafka_error_code().map_or(-1, |c| c as i32),
                    why: other.to_string(),
                },
            }
        })
    }

    /// Serve delivery reports for up to `timeout`.
    pub fn poll(&self, timeout: Duration) {
        self.producer.poll(timeout);
    }

    /// Wait up to `timeout` for every record to be delivered; returns how many are not.
    ///
    /// Not rdkafka's `flush(timeout)`: between its checks it polls for up to 100 ms, and its
    /// poll returns only at that deadline, however soon the last report came (measured at
    /// 10,000 events/s: a segment's flush took 200-300 ms at the median with it, 12-26 ms
    /// now; docs/native.md).
    /// Here librdkafka's own flush is asked with no wait (it sends what lingers at once), and
    /// reports are served a millisecond at a time until every record sent has had its report,
    /// as confluent-kafka's `flush` returns as soon as its count is 0.
    ///
    /// The records are those counted in [`Outcomes`], as [`wait`](Self::wait) counts them, not
    /// librdkafka's in-flight count: that one also counts the events queued for the next poll,
    /// the log lines and errors of a broker that is away among them, so it could stand above
    /// the records left and name a number no record answers to.
    pub fn flush(&self, timeout: Duration) -> usize {
        self.serve_until(timeout, || self.producer.context().unsettled(u64::MAX))
    }

    /// Send what lingers and serve reports a millisecond at a time, until `left()` is 0 or
    /// `timeout` has passed; returns `left()`.
    fn serve_until(&self, timeout: Duration, left: impl Fn() -> usize) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let _ = self.producer.flush(Duration::ZERO); // a timeout shows in the count
            let count = left();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if count == 0 || remaining.is_zero() {
                return count;
            }
            self.producer.poll(Duration::from_millis(1).min(remaining));
        }
    }

    /// End the current epoch; returns it. What is sent from now on counts in the next.
    pub fn close_epoch(&self) -> u64 {
        self.producer.context().close_epoch()
    }

    /// Wait up to `timeout` for the reports of every record sent in `epoch` or before, as
    /// [`flush`](Self::flush) waits for every record: records sent later may stay in flight.
    /// Returns how many of those are not reported.
    pub fn wait(&self, epoch: u64, timeout: Duration) -> usize {
        self.serve_until(timeout, || self.producer.context().unsettled(epoch))
    }

    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    /// The next offset per output partition after every route record delivered so far.
    pub fn positions(&self) -> HashMap<(String, i32), i64> {
        let positions = lock(&self.producer.context().positions);
        let mut out = HashMap::new();
        for (topic, partitions) in positions.iter() {
            for (&partition, &next) in partitions {
                out.insert((topic.clone(), partition), next);
            }
        }
        out
    }

    /// The route's records that failed since the last call.
    pub fn take_failures(&self) -> Vec<Report> {
        std::mem::take(&mut *lock(&self.producer.context().failures))
    }

    /// Python's records' reports since the last call, with their callbacks.
    pub fn take_callbacks(&self) -> Vec<(C, Report)> {
        std::mem::take(&mut *lock(&self.producer.context().callbacks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_settled_whatever_later_epochs_hold() {
        let o: Outcomes<()> = Outcomes::default();
        let (a, b) = (o.count(), o.count());
        assert_eq!((a, b), (0, 0));
        assert_eq!(o.close_epoch(), 0);
        let later = o.count();
        assert_eq!(later, 1);
        assert_eq!((o.unsettled(0), o.unsettled(1)), (2, 3));
        o.settle(a);
        o.settle(b);
        assert_eq!(o.unsettled(0), 0); // the later record still out does not count
        assert_eq!(o.unsettled(1), 1);
        o.settle(later);
        assert_eq!(o.unsettled(1), 0);
        assert!(lock(&o.outstanding).is_empty()); // settled epochs leave no entry
    }

    #[test]
    fn an_opaque_tells_a_route_record_from_a_callback() {
        for n in [0, 1, 7, usize::MAX >> 1] {
            assert_eq!(unpack(opaque(true, n)), (true, n));
            assert_eq!(unpack(opaque(false, n)), (false, n));
        }
    }
}
