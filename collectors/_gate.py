"""The gate: the inline sidecar between a provider's raw feed and the clean topic.

For each record: stamp ingestion, read the origin time, run the rules, then forward it with
stamps to the clean topic or dead-letter it with the reason, and record one observation.

Three threads joined by bounded queues, so a slow store never makes memory grow:

    consumer (run's thread) ──q_in──► evaluator ──q_out──► writer
    poll, pause/resume, commit        rules, produce        producer flush, trail, commit

When ``q_in`` is full the consumer pauses its partitions (and keeps polling, so it stays in
the group) until there is room again. Offsets are committed only after the records they
cover are acknowledged by the broker and their trail rows are written:

- ``delivery="exactly_once"``: forwards, dead letters and the consumer offsets commit in
  one Kafka transaction (consume-transform-produce); the trail is written before it commits.
- ``delivery="at_least_once"``: an idempotent producer and a synchronous offset commit.
  With ``recovery_scan`` (the default) a restarted gate finds the records it had already
  written and does not write them again (see ``_recovery``), so the topics see each input
  once unless a zombie of the crashed process is still writing.

Either way the trail is exactly-once per (event, stage): event ids are deterministic and
rows are replaced, not added.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from math import nan
from typing import Any, Literal, cast

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from audit import AUTHORITY_STAMPER, PREV_ORIGIN, DeadLetter
from collectors._dlq import dead_letter_headers
from collectors._eventtime import EventTime
from collectors._ids import hex_digits, source_event_ids
from collectors._kafka import consumer_config, producer_config, take, where
from collectors._metrics import SidecarMetrics
from collectors._recovery import OutPositions, OutputLedger, Written
from collectors._stamps import (
    CONTRACT_VERSION,
    H_CLOCK_ERR,
    H_EVENT_ID,
    H_INGEST,
    H_LATE,
    H_ORIGIN,
    H_STAMP,
    H_TRACEPARENT,
    H_VERSION,
    Headers,
    Stamps,
    headers_of,
    read_stamps,
)
from collectors._trailrows import TrailRows, TrailSink, write_table
from collectors.exceptions import DeliveryError, StampError
from rules import BatchResult, Failure, RuleSet, RulesHolder

log = logging.getLogger("stampline.gate")

STAMP_CONTRACT_RULE = ("record.stamps", 1)
_FORWARDED = ("forwarded", "", 0)  # outcome, rule id, rule version of a forwarded record
H_WARN = "stampline.warn"  # on a forwarded record: the warn rules it broke, id@vN, comma-separated

Delivery = Literal["at_least_once", "exactly_once"]


@dataclass(frozen=True, slots=True)
class GateSettings:
    """What a gate needs to know about its deployment."""

    bootstrap_servers: str
    raw_topics: tuple[str, ...]
    clean_topic: str
    dead_letter_topic: str
    group_id: str = "stampline-gate"
    stage: str = "gate"
    clock_err_ns: int = 1_000_000
    host: str = field(default_factory=socket.gethostname)
    consume_batch: int = 1000
    poll_timeout_s: float = 0.1
    flush_rows: int = 10_000  # write the trail and commit when this many rows are pending...
    flush_interval_s: float = 0.5  # ...or when the oldest pending row is this old
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)
    delivery: Delivery = "at_least_once"
    transactional_id: str | None = None  # default: <group_id>.<host>.<pid>
    recovery_scan: bool = True
    queue_batches: int = 4  # bound of each internal queue, in batches / flush segments
    store_retry_s: float = 300.0  # keep retrying a failing trail write this long, paused
    allowed_lateness_ns: int = 5_000_000_000
    skew_window_ns: int = 60_000_000_000


@dataclass(slots=True)
class GateStats:
    """Running counts. Other threads read them for progress; a read may be a batch behind."""

    events_in: int = 0
    forwarded: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    warned: Counter[str] = field(default_factory=Counter)
    flushes: int = 0
    recovered: int = 0  # re-read records found already written before a crash
    late: int = 0
    pauses: int = 0
    max_queue_depth: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())


@dataclass(slots=True)
class _Segment:
    """Everything processed between two commits."""

    rows: TrailRows
    dead: list[DeadLetter]
    offsets: dict[tuple[str, int], int]
    positions: OutPositions  # output positions before anything this segment does not cover
    done: threading.Event | None = None


@dataclass(slots=True)
class _Flush:
    """Asks the evaluator to cut a segment now; ``done`` is set once it is committed."""

    done: threading.Event = field(default_factory=threading.Event)


class Gate:
    """Runs until ``stop`` is set, then flushes, commits and closes its clients."""

    def __init__(
        self,
        settings: GateSettings,
        rules: RuleSet | RulesHolder,
        trail: TrailSink,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.trail = trail
        self.metrics = metrics
        self.stats = GateStats()
        self.event_time = EventTime(settings.allowed_lateness_ns, settings.skew_window_ns)
        self.ready = threading.Event()  # set once partitions are assigned (and recovered)
        self.paused = False
        self._rows = TrailRows()
        # The constant parts of the stamp headers, encoded once.
        self._stamp_head = f"stage={settings.stage};in=".encode("ascii", "replace")
        self._stamp_tail = f";err={settings.clock_err_ns};host={settings.host}".encode(
            "ascii", "replace"
        )
        self._version_header = (H_VERSION, str(CONTRACT_VERSION).encode())
        self._err_header = (H_CLOCK_ERR, str(settings.clock_err_ns).encode())
        # Span ids of new traceparents: random, and drawn per batch without a system call per
        # record (one that releases the GIL waits for it again behind the other threads).
        self._span_rng = np.random.default_rng(int.from_bytes(os.urandom(16), "big"))
        self._dead: list[DeadLetter] = []
        self._offsets: dict[tuple[str, int], int] = {}
        self._oldest_pending = 0.0
        self._delivery_errors: list[str] = []
        self._positions: OutPositions = {}  # highest output offset delivered + 1
        self._already: dict[str, Written] = {}  # found by a recovery scan
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._ledger: OutputLedger | None = None
        self._group_metadata: Any = None
        self._q_in: queue.Queue[list[Message] | _Flush | None] = queue.Queue(settings.queue_batches)
        self._q_out: queue.Queue[_Segment | None] = queue.Queue(settings.queue_batches)
        self._commits: queue.SimpleQueue[tuple[dict[tuple[str, int], int] | None, _Segment]] = (
            queue.SimpleQueue()
        )
        self._carry: list[Message] = []
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._failed = threading.Event()

    @property
    def transactional(self) -> bool:
        return self.settings.delivery == "exactly_once"

    # ---------------------------------------------------------------- consumer (caller)

    def run(
        self, stop: threading.Event, on_flush: Callable[[GateStats], None] | None = None
    ) -> None:
        """Consume until ``stop`` is set.

        Raises:
            DeliveryError: the broker refused a record; nothing past the last good flush
                was committed, so a restart resumes there.
            StoreError: the trail could not be written for ``store_retry_s``.
        """
        s = self.settings
        extra: dict[str, Any] = {}
        if self.transactional:
            tid = s.transactional_id or f"{s.group_id}.{s.host}.{os.getpid()}"
            extra["transactional.id"] = tid
        self._producer = Producer(producer_config(s.bootstrap_servers, {**s.producer, **extra}))
        if self.transactional:
            self._producer.init_transactions(30)
            self._producer.begin_transaction()
        consumer_extra: dict[str, Any] = {"isolation.level": "read_committed", **s.consumer}
        if self.metrics is not None:
            consumer_extra.setdefault("statistics.interval.ms", 5000)
            consumer_extra["stats_cb"] = self._on_stats
        self._consumer = Consumer(consumer_config(s.bootstrap_servers, s.group_id, consumer_extra))
        if s.recovery_scan:
            self._ledger = OutputLedger(
                s.bootstrap_servers,
                s.group_id,
                (s.clean_topic, s.dead_letter_topic),
                s.stage,
                s.consumer,
            )
        self._threads = [
            threading.Thread(target=self._guard(self._evaluate_loop), name="gate-eval"),
            threading.Thread(target=self._guard(self._write_loop), name="gate-write"),
        ]
        for t in self._threads:
            t.start()
        self._consumer.subscribe(
            list(s.raw_topics), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        log.info(
            "gate started topics=%s group=%s delivery=%s",
            ",".join(s.raw_topics),
            s.group_id,
            s.delivery,
        )
        try:
            while not stop.is_set() and not self._failed.is_set():
                self._commit_done(on_flush)
                self._consume_once()
            if not self._failed.is_set():
                self._drain()
                self._commit_done(on_flush)
        finally:
            self._stop_threads()
            self._consumer.close()
            if not self.transactional:
                self._producer.flush(10)
            log.info(
                "gate stopped in=%d forwarded=%d dead_lettered=%d recovered=%d",
                self.stats.events_in,
                self.stats.forwarded,
                self.stats.dead_lettered_total,
                self.stats.recovered,
            )
        if self._error is not None:
            raise self._error

    def _consume_once(self) -> None:
        assert self._consumer is not None
        s = self.settings
        if self._carry:
            if self._offer(self._carry):
                self._carry = []
                self._set_paused(False)
                return
            # Full: stop fetching, but keep polling so the group and rebalances go on.
            self._set_paused(True)
            self._carry.extend(take(self._consumer, s.consume_batch, 0.05))
            return
        messages = take(self._consumer, s.consume_batch, s.poll_timeout_s)
        if messages:
            self._carry = messages
            if self._offer(self._carry):
                self._carry = []

    def _offer(self, batch: list[Message], timeout_s: float = 0.02) -> bool:
        try:
            self._q_in.put(batch, timeout=timeout_s)
        except queue.Full:
            return False
        self._note_depth("in", self._q_in)
        return True

    def _note_depth(self, name: str, q: queue.Queue[Any]) -> None:
        depth = q.qsize()
        if depth > self.stats.max_queue_depth[name]:
            self.stats.max_queue_depth[name] = depth
        if self.metrics is not None:
            self.metrics.queue_depth.labels(name).set(depth)

    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        """Put ``item``, waiting as long as the queue is full, unless the gate fails first."""
        while not self._failed.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        assert self._consumer is not None
        assignment = self._consumer.assignment()
        if paused:
            self._consumer.pause(assignment)
            self.stats.pauses += 1
            log.warning("backpressure: paused partitions=%d", len(assignment))
        else:
            self._consumer.resume(assignment)
            log.info("backpressure released: resumed partitions=%d", len(assignment))
        self.paused = paused
        if self.metrics is not None:
            self.metrics.backpressure.set(1 if paused else 0)

    def _drain(self) -> None:
        """Push everything taken in through the pipeline and wait until it is committed."""
        if self._failed.is_set() or not any(t.is_alive() for t in self._threads):
            return
        while self._carry and not self._failed.is_set():
            if self._offer(self._carry, 0.1):
                self._carry = []
        marker = _Flush()
        self._put(self._q_in, marker)
        # The writer hands finished segments back to this thread to commit: keep committing.
        while not marker.done.wait(0.01):
            self._commit_done(None)
            if self._failed.is_set():
                return

    def _commit_done(self, on_flush: Callable[[GateStats], None] | None) -> None:
        """Commit the offsets of every segment the writer made durable (consumer thread)."""
        assert self._consumer is not None
        committed = False
        while True:
            try:
                offsets, segment = self._commits.get_nowait()
            except queue.Empty:
                break
            if offsets:
                self._consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )
            if self._ledger is not None:
                self._ledger.save(segment.offsets, segment.positions)
            if segment.done is not None:
                segment.done.set()
            committed = True
        if committed and on_flush is not None:
            on_flush(self.stats)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.transactional:
            self._group_metadata = consumer.consumer_group_metadata()
        if self._ledger is not None:
            self._recover([(tp.topic, tp.partition) for tp in partitions])
        if self.paused:
            consumer.pause(partitions)
        self.ready.set()

    def _recover(self, inputs: list[tuple[str, int]]) -> None:
        """Find what a crashed predecessor wrote past its last commit (see ``_recovery``)."""
        assert self._ledger is not None
        assert self._consumer is not None
        starts: list[OutPositions] = []
        fresh: list[tuple[str, int]] = []
        for t, p in inputs:
            saved = self._ledger.load(t, p)
            if saved is None:
                fresh.append((t, p))
            else:
                starts.append(saved)
        if fresh:
            # Nothing was written for these yet; mark where the outputs stand now so a crash
            # before the first commit scans only what comes after.
            now = {
                (t, p): self._consumer.get_watermark_offsets(
                    TopicPartition(t, p), timeout=10, cached=False
                )[1]
                for t, p in self._ledger.output_partitions()
            }
            self._ledger.save(fresh, now)
        if starts:
            start = {
                tp: min(s.get(tp, -1) for s in starts) for tp in self._ledger.output_partitions()
            }
            self._already.update(self._ledger.scan(start, set(inputs)))

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # Commit what was processed before the partitions move to another gate.
        self._drain()
        self._commit_done(None)
        self._already.clear()

    def _on_stats(self, raw: str) -> None:
        assert self.metrics is not None
        try:
            stats = json.loads(raw)
            for topic, t in stats.get("topics", {}).items():
                for pid, p in t.get("partitions", {}).items():
                    lag = p.get("consumer_lag", -1)
                    if int(pid) >= 0 and lag >= 0:
                        self.metrics.consumer_lag.labels(topic, pid).set(lag)
        except (ValueError, AttributeError, TypeError) as exc:
            log.debug("unreadable client statistics: %s", exc)

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as exc:
                log.error("gate thread %s failed: %r", threading.current_thread().name, exc)
                if self._error is None:
                    self._error = exc
                self._failed.set()

        return run

    def _stop_threads(self) -> None:
        # A failed pipeline may be blocked on a full queue; it exits on _failed instead.
        self._put_stop(self._q_in)
        for t in self._threads:
            t.join(60)

    def _put_stop(self, q: queue.Queue[Any]) -> None:
        while True:
            try:
                q.put(None, timeout=0.1)
                return
            except queue.Full:
                if self._failed.is_set() or not any(t.is_alive() for t in self._threads):
                    return

    # ---------------------------------------------------------------- evaluator

    def _evaluate_loop(self) -> None:
        while not self._failed.is_set():
            try:
                item = self._q_in.get(timeout=self._wait_s())
            except queue.Empty:
                item = []
            if item is None:
                self._cut(None)
                self._put_stop(self._q_out)
                return
            if isinstance(item, _Flush):
                self._cut(item.done)
            elif item:
                self._process(item)
            if self._due():
                self._cut(None)

    def _wait_s(self) -> float:
        if not self._rows:
            return 0.1
        return max(0.0, self.settings.flush_interval_s - (time.monotonic() - self._oldest_pending))

    def _due(self) -> bool:
        if not self._rows:
            return False
        if len(self._rows) >= self.settings.flush_rows:
            return True
        return time.monotonic() - self._oldest_pending >= self.settings.flush_interval_s

    def _cut(self, done: threading.Event | None) -> None:
        """Hand what is pending to the writer (blocking while its queue is full)."""
        segment = _Segment(self._rows, self._dead, self._offsets, dict(self._positions), done)
        self._rows, self._dead, self._offsets = TrailRows(), [], {}
        if not segment.offsets and done is None:
            return
        # In a transaction nothing may be produced until this segment is committed.
        if self.transactional and segment.done is None and segment.offsets:
            segment.done = threading.Event()
        self._put(self._q_out, segment)
        self._note_depth("out", self._q_out)
        if self.transactional and segment.done is not None:
            while not segment.done.wait(0.1):
                if self._failed.is_set():
                    return

    def _process(self, messages: list[Message]) -> None:
        """Judge, stamp, forward or dead-letter one batch, and add its trail rows.

        The per-record work is what cannot be done for a whole batch at once (a header
        list and a ``produce`` call per record); ids, trace ids, identity fields and
        verdicts are made column-wise for the batch.
        """
        assert self._producer is not None
        s = self.settings
        received = time.time_ns()
        good: list[Message] = []
        for m in messages:
            err = m.error()
            if err is None:
                good.append(m)
            else:  # partition EOF events are off, so every error here is worth a line
                log.warning(
                    "consume error %s: %s", where(m.topic(), m.partition(), m.offset()), err
                )
        if not good:
            return
        n = len(good)
        if not self._rows:
            self._oldest_pending = time.monotonic()
        values = [m.value() for m in good]
        topics = [m.topic() or "" for m in good]
        partitions = [m.partition() or 0 for m in good]
        offsets = [m.offset() or 0 for m in good]
        stamps = [m.timestamp() for m in good]
        broker_ms = [ts for _t, ts in stamps]
        # confluent-kafka gives a list of (name, bytes) or None
        raw_headers = cast(list[Headers | None], [m.headers() for m in good])
        # One rule set per batch: a reload takes effect from the next batch on.
        rules = self.rules.current
        result = rules.evaluate_records(values, received, topics, raw_headers)
        rejects, warnings = _judged(result)
        # evaluate_records gives the identity fields as Python lists
        providers: list[str] = result.identity[0]
        instruments: list[str] = result.identity[1]
        seqs: list[int] = result.identity[2]
        origins: list[int] = result.origin_ns.tolist()
        payloads = result.payloads
        ids, id_bytes = source_event_ids(topics, partitions, offsets, broker_ms)
        # "00-<32 hex digits of the id>-<16 random hex digits>-01", made for the batch at once
        trace = np.empty((n, 55), np.uint8)
        trace[:, :3] = np.frombuffer(b"00-", np.uint8)
        trace[:, 3:35] = hex_digits(id_bytes)
        trace[:, 35] = ord("-")
        trace[:, 36:52] = hex_digits(self._span_rng.integers(0, 256, (n, 8), np.uint8))
        trace[:, 52:] = np.frombuffer(b"-01", np.uint8)
        trace_text = trace.tobytes()
        received_text = str(received).encode()
        stamp_head = self._stamp_head + received_text + b";out="
        stamp_tail = self._stamp_tail
        ingest_header = (H_INGEST, received_text)
        version_header, err_header = self._version_header, self._err_header
        produce, delivered, clock = self._producer.produce, self._delivered, time.time_ns
        clean, observe = s.clean_topic, self.event_time.observe
        already = self._already
        rows = self._rows.rows
        first = len(rows)
        stage, host, clock_err = s.stage, s.host, s.clock_err_ns
        forwarded = late_count = 0
        for i, m in enumerate(good):
            failures = rejects.get(i, ())
            headers = raw_headers[i]
            prior: Stamps | None = None
            if headers:
                try:
                    prior = read_stamps(headers)
                except StampError as exc:
                    if not failures:  # a broken stamp is a broken contract: dead-letter it
                        failures = (Failure(*STAMP_CONTRACT_RULE, str(exc)),)
            origin = origins[i]
            if prior is None:
                event_id, ingested, upstream = ids[i], received, None
            else:
                event_id = prior.event_id
                origin = prior.origin_ns or origin
                ingested = prior.ingest_ns or received
                upstream = prior.stages[-1] if prior.stages else None
            written = already.pop(event_id, None) if already else None
            emitted = clock()
            stamp_text = stamp_head + str(emitted).encode() + stamp_tail
            if prior is not None:
                stamp_headers: list[tuple[str, Any]] = [(H_STAMP, stamp_text)]
            else:  # a new event gets the whole contract, in contract order
                stamp_headers = [
                    version_header,
                    (H_EVENT_ID, event_id.encode()),
                    (H_ORIGIN, str(origin).encode()),
                    ingest_header,
                    err_header,
                    (H_TRACEPARENT, trace_text[i * 55 : i * 55 + 55]),
                    (H_STAMP, stamp_text),
                ]
            provider = providers[i]
            if origin and provider:
                late = observe(provider, origin, ingested)
                if late:
                    stamp_headers.append((H_LATE, str(late).encode()))
                    late_count += 1
                    self._count_late(provider, late)
            row_received, row_emitted = received, emitted
            if written is not None:
                self.stats.recovered += 1
                if self.metrics is not None:
                    self.metrics.duplicates_suppressed.inc()
                if written.stamp is not None:
                    # Already written before a crash: the trail keeps the times that were sent.
                    row_received, row_emitted = written.stamp.received_ns, written.stamp.emitted_ns
            payload = payloads[i] if payloads is not None else None
            price = payload.get("price", nan) if payload is not None else nan
            # The hop into this gate starts at the last upstream stamp, else at the origin;
            # no origin time (an unparseable record): no hop into the gate to measure.
            if upstream is not None:
                prev = (upstream.stage, upstream.emitted_ns, upstream.clock_err_ns)
            else:
                prev = (PREV_ORIGIN if origin else "", origin, 0)
            warned = () if failures else warnings.get(i, ())
            if failures:
                outcome = ("dead_lettered", failures[0].rule_id, failures[0].rule_version)
            elif warned:  # forwarded, and the trail row names the (first) broken warn rule
                outcome = ("forwarded", warned[0].rule_id, warned[0].rule_version)
            else:
                outcome = _FORWARDED
            rows.append(
                (
                    event_id.lower() if prior is not None else event_id,
                    stage,
                    prev[0],
                    row_received,
                    row_emitted,
                    prev[1],
                    origin,
                    ingested,
                    clock_err,
                    prev[2],
                    host,
                    topics[i],
                    partitions[i],
                    offsets[i],
                    broker_ms[i] if stamps[i][0] else 0,
                    provider,
                    instruments[i],
                    seqs[i],
                    price if type(price) is float else _price(price),
                    *outcome,
                    ",".join(p.lower() for p in prior.parents) if prior else "",
                    AUTHORITY_STAMPER,
                )
            )
            if not failures:
                if warned:
                    self._warned(m, warned, event_id, received, provider, written is None)
                if written is None:
                    if warned:
                        flags = ",".join(f"{f.rule_id}@v{f.rule_version}" for f in warned)
                        stamp_headers[:0] = [(H_WARN, flags.encode())]
                    if headers:
                        stamp_headers[:0] = headers
                    produce(clean, values[i], m.key(), headers=stamp_headers, on_delivery=delivered)
                    forwarded += 1
                continue
            failure = failures[0]
            self._dead_letter(m, failure, event_id, received, provider, written, stamp_headers)
        self.stats.forwarded += forwarded
        self.stats.late += late_count
        self.stats.events_in += n
        for i in range(n):
            self._offsets[(topics[i], partitions[i])] = offsets[i] + 1
        self._producer.poll(0)
        if self.metrics is not None:
            self._count(n, first)

    def _dead_letter(
        self,
        m: Message,
        failure: Failure,
        event_id: str,
        received: int,
        provider: str,
        written: Written | None,
        stamp_headers: list[tuple[str, Any]],
    ) -> None:
        s = self.settings
        assert self._producer is not None
        topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
        if written is None:
            log.info(
                "dead-letter %s rule=%s v%d reason=%s",
                where(topic, partition, offset),
                failure.rule_id,
                failure.rule_version,
                failure.reason,
            )
            dl_headers = dead_letter_headers(
                headers_of(m),
                topic=topic,
                partition=partition,
                offset=offset,
                rule_id=failure.rule_id,
                rule_version=failure.rule_version,
                reason=failure.reason,
                collector=f"stampline-{s.stage}",
            )
            self._producer.produce(
                s.dead_letter_topic,
                m.value(),
                m.key(),
                headers=[*dl_headers, *stamp_headers],
                on_delivery=self._delivered,
            )
            self.stats.dead_lettered[failure.rule_id] += 1
        self._dead.append(
            DeadLetter(
                event_id=event_id,
                received_ns=received,
                topic=topic,
                partition=partition,
                offset=offset,
                provider=provider,
                rule_id=failure.rule_id,
                rule_version=failure.rule_version,
                reason=failure.reason,
                value=m.value() or b"",
            )
        )

    def _warned(
        self,
        m: Message,
        warned: tuple[Failure, ...],
        event_id: str,
        received: int,
        provider: str,
        new: bool,
    ) -> None:
        """Keep each broken warn rule's verdict, with its reason, for the trail's warnings;
        count it (once: not again for a record re-read after a crash)."""
        topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
        for f in warned:
            self._dead.append(
                DeadLetter(
                    event_id=event_id,
                    received_ns=received,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    provider=provider,
                    rule_id=f.rule_id,
                    rule_version=f.rule_version,
                    reason=f.reason,
                    value=b"",
                    severity="warn",
                )
            )
            if new:
                self.stats.warned[f.rule_id] += 1
                if self.metrics is not None:
                    label = self.metrics.provider(provider)
                    self.metrics.warned.labels(label, self.metrics.rule(f.rule_id)).inc()

    def _count_late(self, provider: str, late: int) -> None:
        if self.metrics is not None:
            label = self.metrics.provider(provider)
            self.metrics.late.labels(label).inc()
            self.metrics.lateness.labels(label).observe(late / 1e9)

    def _count(self, n: int, first: int) -> None:
        """Update metrics once per batch and label, not once per record."""
        m = self.metrics
        assert m is not None
        m.batch_size.observe(n)
        stage = self.settings.stage
        by_provider: Counter[str] = Counter()
        out: Counter[str] = Counter()
        dead: Counter[tuple[str, str]] = Counter()
        for row in self._rows.rows[first:]:
            provider = m.provider(row[15])
            by_provider[provider] += 1
            if row[19] == "forwarded":
                out[provider] += 1
            else:
                dead[(provider, m.rule(row[20]))] += 1
            held = (row[4] - row[3]) / 1e9
            m.stage_latency.labels(stage, provider).observe(held)
            if m.instrument_latency is not None:
                m.instrument_latency.labels(stage, m.instrument(row[16])).observe(held)
        now = time.time()
        for provider, count in by_provider.items():
            m.events_in.labels(provider).inc(count)
            m.last_event.labels(provider).set(now)
            watermark = self.event_time.watermark_ns(provider)
            if watermark is not None:
                m.watermark.labels(provider).set(watermark / 1e9)
            offset = self.event_time.clock_offset_ns(provider)
            if offset is not None:
                m.clock_offset.labels(provider).set(offset / 1e9)
        for provider, count in out.items():
            m.events_out.labels(provider).inc(count)
        for (provider, rule), count in dead.items():
            m.dead_lettered.labels(provider, rule).inc(count)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(
                f"{where(msg.topic(), msg.partition(), msg.offset())}: {err}"
            )
            return
        key = (msg.topic() or "", msg.partition() or 0)
        nxt = (msg.offset() or 0) + 1
        if nxt > self._positions.get(key, -1):
            self._positions[key] = nxt

    # ---------------------------------------------------------------- writer

    def _write_loop(self) -> None:
        while True:
            try:
                segment = self._q_out.get(timeout=0.1)
            except queue.Empty:
                if self._failed.is_set():
                    return
                continue
            if segment is None:
                return
            self._make_durable(segment)

    def _make_durable(self, segment: _Segment) -> None:
        """Make one segment durable, then hand its offsets to the consumer to commit."""
        assert self._producer is not None
        if not segment.offsets:
            self._commits.put((None, segment))
            return
        if not self.transactional:
            remaining = self._producer.flush(30)
            if remaining or self._delivery_errors:
                errors = (
                    "; ".join(self._delivery_errors[:5]) or f"{remaining} records unacknowledged"
                )
                raise DeliveryError(
                    f"broker did not take every record, offsets not committed: {errors}"
                )
        self._write_trail(segment)
        if self.transactional:
            try:
                self._producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in segment.offsets.items()],
                    self._group_metadata,
                    30,
                )
                self._producer.commit_transaction(30)
            except Exception as exc:
                raise DeliveryError(f"transaction not committed: {exc}") from exc
            if self._delivery_errors:
                raise DeliveryError("; ".join(self._delivery_errors[:5]))
            self._producer.begin_transaction()
            self._commits.put((None, segment))  # for the output checkpoint
            if segment.done is not None:
                segment.done.set()  # the evaluator may produce again
        else:
            self._commits.put((segment.offsets, segment))
        self.stats.flushes += 1

    def _write_trail(self, segment: _Segment) -> None:
        """Write the segment's rows, retrying while the store fails (the queues fill and the
        consumer pauses meanwhile: that is the backpressure)."""
        began = time.monotonic()
        delay = 0.05
        table = segment.rows.table()
        while True:
            t0 = time.perf_counter()
            try:
                write_table(self.trail, table)
                self.trail.write_dead_letters(segment.dead)
            except Exception as exc:
                if time.monotonic() - began > self.settings.store_retry_s:
                    raise
                log.warning("trail write failed, retrying in %.2fs: %s", delay, exc)
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if self.metrics is not None:
                self.metrics.store_write.observe(time.perf_counter() - t0)
            return


def _judged(
    result: BatchResult,
) -> tuple[dict[int, tuple[Failure, ...]], dict[int, tuple[Failure, ...]]]:
    """The broken reject rules and the broken warn rules of each row that broke any rule
    (as ``BatchResult.verdicts`` has them), without a verdict object for every row."""
    flagged = np.zeros(result.n, np.bool_)
    for _rule, mask, _reasons in result.outcomes:
        flagged |= mask
    rejects: dict[int, tuple[Failure, ...]] = {}
    warnings: dict[int, tuple[Failure, ...]] = {}
    for row in sorted({*np.flatnonzero(flagged).tolist(), *result.early}):
        failures = result.failing(row)
        bad = tuple(f for f in failures if f.severity == "reject" and not f.shadow)
        warned = tuple(f for f in failures if f.severity == "warn" and not f.shadow)
        if bad:
            rejects[row] = bad
        if warned:
            warnings[row] = warned
    return rejects, warnings


def _price(value: object) -> float:
    """The trail's price: a JSON number as a float, anything else (booleans too) NaN."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return nan
