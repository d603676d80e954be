"""The gate: the inline sidecar between a provider's raw feed and the clean topic.

For each record: stamp ingestion, read the origin time, run the rules, then forward it with
stamps to the clean topic or dead-letter it with the reason, and record one observation.

Three threads joined by bounded queues, so a slow store never makes memory grow:

    consumer (run's thread) ──q_in──► evaluator ──q_out──► writer
    poll, pause/resume, commit        rules, produce        producer flush, trail, commit

When ``q_in`` is full the consumer grows the batch it holds up to ``consume_batch`` records,
then pauses its partitions (and keeps polling, so it stays in the group) until there is room
again; the evaluator joins whatever batches are waiting into one. Offsets are committed only
after the records they cover are acknowledged by the broker and their trail rows are written:

- ``delivery="exactly_once"``: forwards, dead letters and the consumer offsets commit in
  one Kafka transaction (consume-transform-produce); the trail is written before it commits.
- ``delivery="at_least_once"``: an idempotent producer and a synchronous offset commit.
  With ``recovery_scan`` (the default) a restarted gate finds the records it had already
  written and does not write them again (see ``_recovery``), so the topics see each input
  once unless a zombie of the crashed process is still writing.

Either way the trail is exactly-once per (event, stage): event ids are deterministic and
rows are replaced, not added.

Two routes do the per-record work after the rules (docs/gate.md, "The compiled route"): the
compiled one (``stampline._native.route_batch`` on the gate's own librdkafka producer,
``GateProducer``) stamps, produces and builds the trail rows of every record the gate accepts
with certainty; every other record goes, in its place, to ``_route``, the reference, which is
also the whole route where the module lacks it, with ``exactly_once``, when
``GateSettings.compiled`` is False or the environment sets ``STAMPLINE_GATE_REFERENCE`` (to
anything but ``0``). Both move one event-time state. Each record's path is counted in
``GATE_PATHS``. On the compiled route the gate also consumes with its own librdkafka handle,
which hands over each batch as columns (``collectors/_source.py``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import repeat
from math import nan
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from stampline._common import UNNAMED_PROVIDER, where
from stampline.audit import (
    AUTHORITY_STAMPER,
    PREV_ORIGIN,
    DeadLetter,
    TrailRow,
    broker_time_type,
    trail_fields,
    trail_row,
)
from stampline.collectors._dlq import MAX_REASON, dead_letter_headers, fit_dead_letter
from stampline.collectors._eventtime import EventTime
from stampline.collectors._ids import traced_source_ids
from stampline.collectors._kafka import consumer_config, native_settings, producer_config
from stampline.collectors._metrics import SidecarMetrics
from stampline.collectors._preflight import (
    Limits,
    check_limits,
    header_bytes,
    probe_transactions,
    record_bytes,
    topic_limits,
)
from stampline.collectors._recovery import Found, OutPositions, OutputLedger, Written
from stampline.collectors._source import Partitions, Source, Taken, open_source
from stampline.collectors._stamps import (
    CONTRACT_VERSION,
    H_CLOCK_ERR,
    H_EVENT_ID,
    H_INGEST,
    H_LATE,
    H_ORIGIN,
    H_STAMP,
    H_TRACEPARENT,
    H_VERSION,
    UNREADABLE_HEADERS,
    Headers,
    Stamps,
    read_stamps_batch,
)
from stampline.collectors._trailrows import TrailRows, TrailSink, write_table
from stampline.collectors._trailtopic import TrailTopic
from stampline.collectors.exceptions import DeliveryError, StampError
from stampline.rules import SIZE_RULE, BatchResult, Failure, RuleSet, RulesHolder

try:
    from stampline._native import DeliveryReport, GateProducer, event_ids, route_batch
    from stampline._native import EventTime as CompiledEventTime
    from stampline._native import GateRows as CompiledRows
except ImportError:  # built without cargo, or before the route (`./dev setup`): the reference
    GateProducer = None  # type: ignore[assignment,misc]


def _on_compiled_route(producer: object) -> TypeGuard[GateProducer]:
    """Whether ``producer`` is the compiled route's (false wherever there is no module)."""
    return GateProducer is not None and isinstance(producer, GateProducer)


if TYPE_CHECKING:
    from stampline.alerting import BatchObserver

log = logging.getLogger("stampline.gate")

STAMP_CONTRACT_RULE = ("record.stamps", 1)
# A record whose processing raised (a defect the boundary checks did not foresee): it is
# dead-lettered with the error as its reason, and the gate goes on.
UNPROCESSABLE_RULE = ("record.unprocessable", 1)
_PRODUCE_RULE = SIZE_RULE  # librdkafka refuses a record on its own account for its size
# The only refusals that are the record's own fault; any other (an unknown or invalid topic,
# a fenced or fatal producer) is the output's, and dead-lettering good records for it would
# commit them past a broker that never took them.
_RECORD_FAULTS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE})
_RECOVERED = "written to the dead-letter topic before a restart"
# A header name that is not UTF-8: no client reads such headers (confluent-kafka raises), so
# the record is dead-lettered without them, whole otherwise (collectors/_source.py).
_UNREADABLE_HEADERS = Failure(*UNPROCESSABLE_RULE, UNREADABLE_HEADERS)
_STOP_GRACE_S = 3.0  # how long a stopping gate still waits on the broker before it gives up
# The payload field whose number the trail keeps as the record's price (NaN for none: a
# record with no price, not a JSON number there, or a payload that did not pass).
_PRICE = "price"
_FORWARDED = "forwarded"
_OUTCOMES = (_FORWARDED, "dead_lettered")  # by "was it dead-lettered"
_DEAD_VALUE_HEAD = 1024  # bytes of a dead letter's value held for the store
# Kafka's timestamp type code -> the trail's name of it (a dict lookup per record, the hot path)
_TIME_TYPES = {code: broker_time_type(code) for code in range(3)}
# What a batch's metrics read of each trail row (see _counted).
_COUNTED_TEXTS = ("provider", "outcome", "rule_id", "instrument")
_COUNTED_INTS = ("received", "emitted", "origin", "ingested", "broker_time")
_COUNTED_NAMES = (*_COUNTED_TEXTS, *_COUNTED_INTS)
_COUNTED = trail_fields(*_COUNTED_NAMES)
H_WARN = "stampline.warn"  # on a forwarded record: the warn rules it broke, id@vN, comma-separated

Delivery = Literal["at_least_once", "exactly_once"]

# Set (to anything but "0") to run every gate on the reference route.
FORCE_REFERENCE_ENV = "STAMPLINE_GATE_REFERENCE"
# Records routed per path: "compiled", or "python: <why>" (the reference route, for a whole
# gate or for a record the compiled route left to it); each new reason is logged once at INFO.
GATE_PATHS: Counter[str] = Counter()


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
    # Where clock_err_ns came from, recorded on every trail row (audit.ClockBound.label()).
    clock_source: str = "configured"
    host: str = field(default_factory=socket.gethostname)
    consume_batch: int = 1000
    # ...and a batch grows no further once its values and keys reach this many bytes: what
    # the gate holds in its queues stays bounded when records are large (docs/gate.md)
    batch_bytes: int = 16 * 2**20
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
    limits: Limits = field(default_factory=Limits)  # input sizes (output ones found at start)
    # exactly_once: check first that the broker hides aborted transactions (see _preflight)
    transaction_probe: bool = True
    probe_topic: str = "stampline.transaction-probe"
    compiled: bool = True  # the compiled route where stampline._native has it (module doc)


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
class _Batch:
    """One batch's columns, made once for the batch and read per record."""

    received: int
    values: list[bytes | None]
    topics: list[str]
    partitions: list[int]
    offsets: list[int]
    broker_ms: list[int]  # 0 where the broker gave no timestamp
    broker_types: list[str]  # whose clock broker_ms is: "", "CreateTime", "LogAppendTime"
    keys: list[bytes | None]
    headers: list[Headers | None]
    providers: list[str]
    instruments: list[str]
    seqs: list[int]
    origins: list[int]
    prices: list[float]  # the trail's price: a JSON number's float, else NaN (_price)
    ids: list[str]
    trace_text: bytes  # the batch's traceparents, 55 bytes each
    stamp_head: bytes  # this gate's stamp up to "out="
    ingest_header: tuple[str, bytes]
    rejects: dict[int, tuple[Failure, ...]]
    warnings: dict[int, tuple[Failure, ...]]
    sized: dict[int, Failure]  # rows over the key or header limits (record.size)
    # each row's stamps as read_stamps reads them (None where there are none, or where the
    # headers are over their limit: those are not read)
    priors: list[Stamps | StampError | None]
    # rows refused by the gate itself (size, stamps, the clean topic, unprocessable)
    refused: dict[int, tuple[Failure, ...]]
    # (rule id, version) -> SHA-256 of its rule file, of the rule set judging this batch
    rule_files: Mapping[tuple[str, int], str]
    clock: _Clock  # the clock-error bound when the batch was taken in


@dataclass(frozen=True, slots=True)
class _Clock:
    """The stamping host's clock-error bound, its source, and the stamp parts made of it:
    replaced whole (one assignment) when the bound is read again, read once per batch."""

    err_ns: int
    source: str
    stamp_tail: bytes  # ";err=NS;host=HOST"
    err_header: tuple[str, bytes]

    @classmethod
    def of(cls, err_ns: int, source: str, host: str) -> _Clock:
        tail = f";err={err_ns};host={host}".encode("ascii", "replace")
        return cls(err_ns, source, tail, (H_CLOCK_ERR, str(err_ns).encode()))


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
        trail: TrailSink | TrailTopic,
        metrics: SidecarMetrics | None = None,
        detectors: BatchObserver | None = None,
    ) -> None:
        """``trail`` is the trail topic (deployments: the gate never waits on the store) or,
        for embedding and tests, a sink written directly (the store)."""
        self.settings = settings
        self.detectors = detectors  # alerting: called once per batch, see _process
        self.rules = rules
        self.trail = trail
        self.metrics = metrics
        self.stats = GateStats()
        self.ready = threading.Event()  # set once partitions are assigned (and recovered)
        # The route `run` takes: "compiled" or "reference" (module doc), and why the reference.
        self._reference_why = self._refuse_compiled()
        self.path = "reference" if self._reference_why else "compiled"
        # The consumer `run` took: "compiled", or "reference (why)" (collectors/_source.py).
        self.consumer_path = ""
        # One event-time state for both routes: the compiled route's where it runs, so the
        # records it leaves to the reference move the same watermarks.
        self.event_time: EventTime | CompiledEventTime = (
            EventTime if self._reference_why else CompiledEventTime
        )(settings.allowed_lateness_ns, settings.skew_window_ns)
        self.paused = False
        self._rows = TrailRows()
        # The compiled route's rows, gathered in Rust until a segment is cut (_cut).
        self._fast_rows: CompiledRows | None = None
        # The constant parts of the stamp headers, encoded once.
        self._stamp_head = f"stage={settings.stage};in=".encode("ascii", "replace")
        self._clock = _Clock.of(settings.clock_err_ns, settings.clock_source, settings.host)
        self._version_header = (H_VERSION, str(CONTRACT_VERSION).encode())
        # Span ids of new traceparents: random, and drawn per batch without a system call per
        # record (one that releases the GIL waits for it again behind the other threads).
        # (Mersenne Twister's randbytes: a tenth of NumPy's integers(0, 256, ...)'s cost on a
        # batch of ten; span ids need to be unique, not secret)
        self._span_rng = random.Random(int.from_bytes(os.urandom(16), "big"))
        self._dead: list[DeadLetter] = []
        self._offsets: dict[tuple[str, int], int] = {}
        self._oldest_pending = 0.0
        self._delivery_errors: list[str] = []
        self._positions: OutPositions = {}  # highest output offset delivered + 1
        self._already = Found()  # what a recovery scan found already written
        self._limits = settings.limits  # with the output topics' limits once run() found them
        self._clean_limit = self._limits.out_limit(dead_letter=False)
        self._stop = threading.Event()  # the caller's stop, seen by every thread
        self._consumer: Source | None = None
        self._producer: Producer | GateProducer | None = None
        self._ledger: OutputLedger | None = None
        self._group_metadata: Any = None
        self._q_in: queue.Queue[Taken | _Flush | None] = queue.Queue(settings.queue_batches)
        self._q_out: queue.Queue[_Segment | None] = queue.Queue(settings.queue_batches)
        self._commits: queue.SimpleQueue[tuple[dict[tuple[str, int], int] | None, _Segment]] = (
            queue.SimpleQueue()
        )
        self._carry: Taken | None = None  # records taken, not yet offered to the evaluator
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
        self._stop = stop
        self._preflight()
        extra: dict[str, Any] = {"message.max.bytes": self._limits.producer_bytes}
        if self.transactional:
            tid = s.transactional_id or f"{s.group_id}.{s.host}.{os.getpid()}"
            extra["transactional.id"] = tid
        self._producer = self._new_producer(
            producer_config(s.bootstrap_servers, {**s.producer, **extra})
        )
        if self.transactional:
            self._transactions().init_transactions(30)
            self._transactions().begin_transaction()
        consumer_extra: dict[str, Any] = {"isolation.level": "read_committed", **s.consumer}
        if self.metrics is not None:
            consumer_extra.setdefault("statistics.interval.ms", 5000)
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
        self._consumer, why = open_source(
            s.bootstrap_servers,
            s.group_id,
            consumer_config(s.bootstrap_servers, s.group_id, consumer_extra),
            s.raw_topics,
            self._on_assign,
            self._on_revoke,
            # the compiled consumer on the compiled route; transactions need the reference's
            compiled=not self._reference_why,
            on_stats=self._on_stats if self.metrics is not None else None,
        )
        self.consumer_path = f"reference ({why})" if why else "compiled"
        log.info(
            "gate started topics=%s group=%s delivery=%s route=%s consumer=%s",
            ",".join(s.raw_topics),
            s.group_id,
            s.delivery,
            self._reference_why or "compiled",
            self.consumer_path,
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

    def _refuse_compiled(self) -> str:
        """Why this gate cannot take the compiled route ("" when it can)."""
        s = self.settings
        if GateProducer is None:
            return "the reference route (no compiled route)"
        if not s.compiled or os.environ.get(FORCE_REFERENCE_ENV, "0") != "0":
            return "the reference route (forced)"
        if self.transactional:
            return "the reference route (exactly_once: transactions are the reference's)"
        _, refused = native_settings(producer_config(s.bootstrap_servers, s.producer))
        if refused is not None:
            return f"the reference route (producer setting {refused!r})"
        return ""

    def _new_producer(self, config: dict[str, Any]) -> Producer | GateProducer:
        """The compiled route's producer, else confluent-kafka's."""
        if not self._reference_why:
            settings, _ = native_settings(config)
            try:
                return GateProducer(settings)
            except ValueError as exc:  # a setting librdkafka refused: confluent-kafka says it
                log.info("compiled route refused the producer settings: %s", exc)
                self._reference_why = "the reference route (producer settings)"
                self.path = "reference"
        return Producer(config)

    def _transactions(self) -> Producer:
        """The producer of an exactly_once gate: always confluent-kafka's (the reference)."""
        assert isinstance(self._producer, Producer)
        return self._producer

    def _preflight(self) -> None:
        """Learn what the output topics accept; with exactly_once, that transactions hold.

        Raises:
            BrokerCheckError: the broker cannot give what the settings ask.
        """
        s = self.settings
        found = topic_limits(s.bootstrap_servers, (s.clean_topic, s.dead_letter_topic), s.producer)
        self._limits = replace(
            s.limits,
            clean_bytes=found.get(s.clean_topic),
            dead_letter_bytes=found.get(s.dead_letter_topic),
        )
        check_limits(self._limits, s.clean_topic, s.dead_letter_topic)
        self._clean_limit = self._limits.out_limit(dead_letter=False)
        if self.transactional and s.transaction_probe:
            probe_transactions(s.bootstrap_servers, s.probe_topic, s.producer)

    def _consume_once(self) -> None:
        assert self._consumer is not None
        s = self.settings
        carry = self._carry
        if carry is not None:
            if self._offer_carry():
                self._set_paused(False)
                return
            if len(carry) < s.consume_batch and carry.size < s.batch_bytes:
                # The evaluator is busy: grow the waiting batch rather than stop fetching. A
                # pause makes the client drop what it has fetched and fetch it again on resume,
                # so pausing for a few small fetches costs more than it saves.
                more = self._consumer.take(
                    s.consume_batch - len(carry), s.batch_bytes - carry.size, 0.005
                )
                self._hold(more)
                return
            # Full: stop fetching, but keep polling so the group and rebalances go on.
            self._set_paused(True)
            self._hold(self._consumer.take(s.consume_batch, s.batch_bytes, 0.05))
            return
        self._hold(self._consumer.take(s.consume_batch, s.batch_bytes, s.poll_timeout_s))
        if self._carry is not None:
            self._offer_carry()

    def _hold(self, taken: Taken) -> None:
        if not len(taken):
            return
        if self._carry is None:
            self._carry = taken
        else:
            self._carry.extend(taken)

    def _offer_carry(self, timeout_s: float = 0.02) -> bool:
        """Hand the records held to the evaluator; whether it took them."""
        try:
            self._q_in.put(self._carry, timeout=timeout_s)
        except queue.Full:
            return False
        self._carry = None
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
        assigned = self._consumer.pause(paused)
        if paused:
            self.stats.pauses += 1
            log.warning("backpressure: paused partitions=%d", assigned)
        else:
            log.info("backpressure released: resumed partitions=%d", assigned)
        self.paused = paused
        if self.metrics is not None:
            self.metrics.backpressure.set(1 if paused else 0)

    def _drain(self) -> None:
        """Push everything taken in through the pipeline and wait until it is committed."""
        if self._failed.is_set() or not any(t.is_alive() for t in self._threads):
            return
        while self._carry is not None and not self._failed.is_set():
            self._offer_carry(0.1)
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
                self._consumer.commit(offsets)
            if self._ledger is not None:
                self._ledger.save(segment.offsets, segment.positions)
            if segment.done is not None:
                segment.done.set()
            committed = True
        if committed and on_flush is not None:
            on_flush(self.stats)

    def _on_assign(self, partitions: Partitions) -> None:
        assert self._consumer is not None
        if self.transactional:
            self._group_metadata = self._consumer.group_metadata()
        if self._ledger is not None:
            self._recover(partitions)
        if self.paused:
            self._consumer.pause_these(partitions)
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
                (t, p): self._consumer.high_watermark(t, p, 10)
                for t, p in self._ledger.output_partitions()
            }
            self._ledger.save(fresh, now)
        if starts:
            start = {
                tp: min(s.get(tp, -1) for s in starts) for tp in self._ledger.output_partitions()
            }
            self._already.update(self._ledger.scan(start, set(inputs)))

    def _on_revoke(self, _partitions: Partitions) -> None:
        # Commit what was processed before the partitions move to another gate.
        self._drain()
        self._commit_done(None)
        self._already = Found()

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
            batch, control = self._next_batch()
            if batch:
                self._process(batch)
            if control is None:
                self._cut(None)
                self._put_stop(self._q_out)
                return
            if isinstance(control, _Flush):
                self._cut(control.done)
            if self._due():
                self._cut(None)

    def _next_batch(self) -> tuple[Taken | None, _Flush | Literal[False] | None]:
        """Every batch waiting in ``q_in``, joined until ``consume_batch`` records or
        ``batch_bytes``, and the flush or stop (None) that came after them, else False.

        A batch costs about a millisecond whatever its size (ids, trace ids, each rule's
        columns, one poll), so a busy evaluator that took small fetches one at a time would
        fall further behind the more it fell behind; joined, it catches up.
        """
        chunks: list[Taken] = []
        n = size = 0
        control: _Flush | Literal[False] | None = False
        while n < self.settings.consume_batch and size < self.settings.batch_bytes:
            try:
                item = self._q_in.get_nowait() if n else self._q_in.get(timeout=self._wait_s())
            except queue.Empty:
                break
            if item is None or isinstance(item, _Flush):
                control = item
                break
            chunks.append(item)
            n += len(item)
            size += item.size
        return (Taken.joined(chunks) if chunks else None), control

    def _pending(self) -> int:
        """Trail rows not yet in a segment, on both routes."""
        return len(self._rows) + (len(self._fast_rows) if self._fast_rows is not None else 0)

    def _wait_s(self) -> float:
        if not self._pending():
            return 0.1
        return max(0.0, self.settings.flush_interval_s - (time.monotonic() - self._oldest_pending))

    def _due(self) -> bool:
        pending = self._pending()
        if not pending:
            return False
        if pending >= self.settings.flush_rows:
            return True
        return time.monotonic() - self._oldest_pending >= self.settings.flush_interval_s

    def _cut(self, done: threading.Event | None) -> None:
        """Hand what is pending to the writer (blocking while its queue is full)."""
        if self._fast_rows is not None and len(self._fast_rows):
            s = self.settings
            fast = pa.record_batch(self._fast_rows.take(s.stage, s.host))
            self._rows.add_batch(fast, ordered=False)
        segment = _Segment(self._rows, self._dead, self._offsets, self._out_positions(), done)
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

    def _out_positions(self) -> OutPositions:
        """The next offset per output partition after everything delivered so far: what the
        delivery callbacks saw, and what the compiled route's producer saw of its records."""
        positions = dict(self._positions)
        if _on_compiled_route(self._producer):
            for tp, nxt in self._producer.positions().items():
                if nxt > positions.get(tp, -1):
                    positions[tp] = nxt
        return positions

    def _process(self, taken: Taken | list[Message]) -> None:
        """Judge, stamp, forward or dead-letter one batch, and add its trail rows.

        The per-record work is what cannot be done for a whole batch at once (a header
        list and a ``produce`` call per record); ids, trace ids, identity fields and
        verdicts are made column-wise for the batch.
        """
        assert self._producer is not None
        received = time.time_ns()
        if isinstance(taken, list):  # confluent-kafka's records (benchmarks, tests)
            taken = Taken.of(taken)
        n = len(taken)
        if not n:
            return
        if not self._pending():
            self._oldest_pending = time.monotonic()
        values, topics, partitions, offsets = (
            taken.values, taken.topics, taken.partitions, taken.offsets
        )  # fmt: skip
        raw_headers = taken.headers
        # One rule set per batch: a reload takes effect from the next batch on.
        rules = self.rules.current
        sized, priors = self._screen(taken.keys, raw_headers, taken.unreadable)
        # Refused whatever the rules say (oversized key or headers, broken stamps): the rules
        # judge them, but they move no stateful rule's state.
        broken = (
            [i for i, p in enumerate(priors) if isinstance(p, StampError)] if any(priors) else []
        )
        early = sorted({*sized, *broken})
        try:
            result = rules.evaluate_records(
                values, received, topics, raw_headers, early, numbers=(_PRICE,)
            )
        except Exception as exc:  # the rules engine should not raise; if it does, find who
            if n > 1:
                log.error("rules raised on a batch of %d, judging one by one: %r", n, exc)
                for i in range(n):
                    self._process(taken.one(i))
                return
            result = _unjudgeable(exc)
        rejects, warnings = _judged(result)
        spans = self._span_rng.randbytes(8 * n)
        compiled = _on_compiled_route(self._producer)
        if compiled:  # the same ids and traceparents, made in Rust (test_gate_native.py)
            ids, trace_text = event_ids(topics, partitions, offsets, taken.times_ms, spans)
        else:
            rows = np.frombuffer(spans, np.uint8).reshape(n, 8)
            ids, trace_text = traced_source_ids(topics, partitions, offsets, taken.times_ms, rows)
        received_text = str(received).encode()
        batch = _Batch(
            received=received,
            values=values,
            topics=topics,
            partitions=partitions,
            offsets=offsets,
            broker_ms=_broker_ms(taken),
            broker_types=_broker_types(taken.time_types),
            keys=taken.keys,
            headers=raw_headers,
            # evaluate_records gives the identity fields as Python lists
            providers=result.identity[0],
            instruments=result.identity[1],
            seqs=result.identity[2],
            origins=result.origin_ns.tolist(),
            prices=result.numbers(_PRICE).tolist(),
            ids=ids,
            trace_text=trace_text,
            stamp_head=self._stamp_head + received_text + b";out=",
            ingest_header=(H_INGEST, received_text),
            rejects=rejects,
            warnings=warnings,
            sized=sized,
            priors=priors,
            refused={},
            rule_files=rules.rule_files,
            clock=self._clock,
        )
        first = len(self._rows.rows)  # this batch's reference rows are the tuples from here
        # what the compiled route routed: (index, emitted, origin, ingested), and the rule of
        # each record it dead-lettered
        fast: tuple[npt.NDArray[np.int64], dict[int, str]] | None = None
        if compiled and not (self._already.by_id or self._already.by_source):
            fast = self._route_compiled(batch, early)
        else:  # the reference route; also while a recovery scan's findings are being met
            why = self._reference_why or "the reference route (a recovery scan's findings)"
            _count_path(f"python: {why}", n)
            for i in range(n):
                self._route_one(batch, i)
        self.stats.events_in += n
        # each partition's next offset: its last record's (a partition's records come in order)
        positions = zip(topics, partitions, strict=True)
        self._offsets.update(zip(positions, map((1).__add__, offsets), strict=True))
        self._producer.poll(0)
        # Gap events pile up in the rule set until drained: drain them every batch.
        events = rules.drain_events()
        if self.detectors is not None:
            # Every refusal, the rules' and the gate's own: only accepted records move the
            # detectors' clocks (docs/alerting.md, "which records move which clock").
            refused = {**rejects, **batch.refused} if batch.refused else rejects
            try:
                # The broker times too: a provider's latency ends on the broker, so the
                # time a record then waited for this gate is never the provider's.
                self.detectors.observe_batch(
                    received, batch.providers, batch.instruments, batch.seqs, batch.origins,
                    refused, warnings, events, batch.broker_ms,
                )  # fmt: skip
            except Exception as exc:  # alerting must never take down the gate it watches
                log.error("alert detectors failed on a batch: %r", exc)
        if self.metrics is not None:
            self._count(n, _counted(self._rows.rows[first:], batch, fast))

    def _route_compiled(
        self, b: _Batch, early: list[int]
    ) -> tuple[npt.NDArray[np.int64], dict[int, str]]:
        """Route the batch on the compiled route (``route_batch``): the records no rule
        warned about, the gate refused nothing of and that have readable stamps or none —
        forwarded, or dead-lettered whole when a rule refused a new (unstamped) one — produced
        and given their rows in Rust (gathered there until the segment is cut); every other
        record, and any the compiled route is not sure of, goes to ``_route`` in its place.
        Returns (index, emitted, origin, ingested) per record it routed, and the rule of each
        it dead-lettered, for the metrics."""
        assert _on_compiled_route(self._producer)
        assert isinstance(self.event_time, CompiledEventTime)
        if self._fast_rows is None:
            self._fast_rows = CompiledRows()
        s = self.settings
        n = len(b.values)
        slow = [False] * n
        for i in (*b.warnings, *early):
            slow[i] = True
        times, forwarded, late, dead = route_batch(
            self._producer,
            self.event_time,
            self._fast_rows,
            b,
            b.keys,
            slow,
            lambda i: self._route_one(b, i),
            b.rejects,
            b.rule_files,
            clean_topic=s.clean_topic,
            clean_limit=(
                self._clean_limit if self._clean_limit < self._limits.producer_bytes else None
            ),
            dead_topic=s.dead_letter_topic,
            dead_limit=self._limits.out_limit(dead_letter=True),
            stage=s.stage,
            host=s.host,
        )
        self.stats.forwarded += forwarded
        for i, ns in late:
            self.stats.late += 1
            self._count_late(b.providers[i], ns)
        rules: dict[int, str] = {}
        for i in dead:  # what _dead_letter does besides the record
            failure = b.rejects[i][0]
            rules[i] = failure.rule_id
            self._log_dead_letter(b, i, failure)
            self.stats.dead_lettered[failure.rule_id] += 1
            self._dead_row(b, i, failure, b.ids[i], b.providers[i])
        judged = sum(slow)
        _count_path("compiled", forwarded)
        _count_path("compiled, dead-lettered", len(dead))
        _count_path("python: warned about, or refused by the gate (size, stamps)", judged)
        # (a stamped record a rule refused, an over-long one, one librdkafka refused at once)
        _count_path("python: left by the compiled route", n - forwarded - len(dead) - judged)
        return np.frombuffer(times, "<i8").reshape(-1, 4), rules

    def _route_one(self, b: _Batch, i: int) -> None:
        """``_route``, dead-lettering a record whose processing raised."""
        try:
            self._route(b, i)
        except DeliveryError:
            raise  # the broker, not the record: stop without committing, resume here
        except Exception as exc:  # whatever one record makes fail is that record's
            self._unprocessable(b, i, exc)

    def _route(self, b: _Batch, i: int) -> None:
        """Stamp one record, then forward or dead-letter it, and add its trail row.

        Everything that can fail on a record's account happens before anything is produced,
        so a record that raises here has produced nothing and can be dead-lettered whole.
        """
        s = self.settings
        failures = b.rejects.get(i, ())
        headers = b.headers[i]
        key = b.keys[i]
        value = b.values[i]
        refused = b.sized.get(i)
        prior: Stamps | None = None
        if refused is not None:
            failures = (refused,)
        else:
            read = b.priors[i]
            if isinstance(read, StampError):
                if not failures:  # a broken stamp is a broken contract: dead-letter it
                    failures = (Failure(*STAMP_CONTRACT_RULE, str(read)),)
            else:
                prior = read
        origin = b.origins[i]
        topic, partition, offset = b.topics[i], b.partitions[i], b.offsets[i]
        if prior is None:
            event_id, ingested, upstream = b.ids[i], b.received, None
        else:
            event_id = prior.event_id
            origin = prior.origin_ns or origin
            ingested = prior.ingest_ns or b.received
            upstream = prior.stages[-1] if prior.stages else None
        written = self._found(event_id, topic, partition, offset)
        row_received, row_emitted = b.received, time.time_ns()
        if written is not None and written.stamp is not None:
            # Written before a crash: the trail keeps the times that were sent.
            row_received, row_emitted = written.stamp.received_ns, written.stamp.emitted_ns
            if prior is None:
                ingested = row_received
        stamp_text = b.stamp_head + str(row_emitted).encode() + b.clock.stamp_tail
        if prior is not None:
            stamp_headers: list[tuple[str, Any]] = [(H_STAMP, stamp_text)]
        else:  # a new event gets the whole contract, in contract order
            stamp_headers = [
                self._version_header,
                (H_EVENT_ID, event_id.encode()),
                (H_ORIGIN, str(origin).encode()),
                b.ingest_header,
                b.clock.err_header,
                (H_TRACEPARENT, b.trace_text[i * 55 : i * 55 + 55]),
                (H_STAMP, stamp_text),
            ]
        provider = b.providers[i]
        # Lateness against what accepted records made the watermark; the record moves it
        # only once accepted (below), whoever refuses it (a rule, or this gate: size, stamps).
        late = self.event_time.late_ns(provider, origin) if origin and provider else 0
        if late and not failures:
            stamp_headers.append((H_LATE, str(late).encode()))
        price = b.prices[i]
        parents = ",".join(prior.parents) if prior else ""
        # The hop into this gate starts at the last upstream stamp, else at the origin;
        # no origin time (an unparseable record): no hop into the gate to measure.
        if upstream is not None:
            prev = (upstream.stage, upstream.emitted_ns, upstream.clock_err_ns)
        else:
            prev = (PREV_ORIGIN if origin else "", origin, 0)
        # The row's verdict: forwarded (naming the first broken warn rule, if any) unless
        # the record turns out dead-lettered below.
        outcome, rule_id, rule_version = "forwarded", "", 0
        warned = () if failures else b.warnings.get(i, ())
        if warned:
            rule_id, rule_version = warned[0].rule_id, warned[0].rule_version
        if written is not None:
            self._recovered(written)
            if written.rule_id is not None:  # the store's dead-letter row is idempotent
                outcome = "dead_lettered"
                rule_id, rule_version = written.rule_id, written.rule_version
                failure = failures[0] if failures else Failure(written.rule_id, 0, _RECOVERED)
                self._dead_row(b, i, failure, event_id, provider)
            elif warned:
                self._warned(b, i, warned, event_id, provider, new=False)
        elif not failures:
            if warned:
                flags = ",".join(f"{f.rule_id}@v{f.rule_version}" for f in warned)
                stamp_headers[:0] = [(H_WARN, flags.encode())]
            out = [*headers, *stamp_headers] if headers else stamp_headers
            refused = self._refuse_clean(key, value, out)
            if refused is None:
                try:
                    self._produce(s.clean_topic, value, key, out)
                except KafkaException as exc:
                    why = _kafka_words(exc)
                    refused = Failure(*_PRODUCE_RULE, f"the producer refused the record: {why}")
            if refused is None:
                self.stats.forwarded += 1
                if warned:
                    self._warned(b, i, warned, event_id, provider, new=True)
            else:
                failures = (refused,)
        if failures and written is None:
            failure = failures[0]
            outcome, rule_id, rule_version = "dead_lettered", failure.rule_id, failure.rule_version
            self._dead_letter(b, i, failure, event_id, provider, stamp_headers)
        # The warn rules a forwarded record broke ("rule@vN,..."), then the hash of the rule
        # file of every rule the row names, as loaded now.
        dead = outcome == "dead_lettered"
        if dead:
            if i not in b.rejects:  # refused here, not by a rule: the detectors must know
                b.refused[i] = (Failure(rule_id, rule_version, ""),)
        elif origin and provider:  # accepted: it moves its provider's event time
            self.event_time.observe(provider, origin, ingested)
            if late:
                self.stats.late += 1
                self._count_late(provider, late)
        flags = ",".join(f"{f.rule_id}@v{f.rule_version}" for f in warned)
        hashes = ""
        if rule_id:  # only rows that broke a rule name one
            named: list[tuple[str, int]] = [(rule_id, rule_version)]
            if not dead:
                named += [(f.rule_id, f.rule_version) for f in warned]
            hashes = ",".join(
                f"{rid}@v{ver}={b.rule_files[(rid, ver)]}"
                for rid, ver in dict.fromkeys(named)
                if (rid, ver) in b.rule_files
            )
        # By position, not keyword: one row per event, and so it costs what a tuple does.
        self._rows.rows.append(
            trail_row(
                event_id, s.stage, prev[0], row_received, row_emitted, prev[1], origin, ingested,
                b.clock.err_ns, prev[2], s.host, topic, partition, offset, b.broker_ms[i],
                provider, b.instruments[i], b.seqs[i], price, outcome, rule_id, rule_version,
                parents, AUTHORITY_STAMPER, b.clock.source, "" if dead else flags, hashes,
                "",  # no parent stamps: the gate's row is never a derived event's birth row
                b.broker_types[i],
            )
        )  # fmt: skip

    def _screen(
        self, keys: list[bytes | None], headers: list[Headers | None], unreadable: list[int]
    ) -> tuple[dict[int, Failure], list[Stamps | StampError | None]]:
        """The rows over the key or header limits, or whose headers cannot be read, with
        their failure, and every row's stamps, read for the batch in one call
        (``read_stamps_batch``: compiled where the reader is certain, else ``read_stamps``),
        except where the headers are over their limit."""
        sized: dict[int, Failure] = dict.fromkeys(unreadable, _UNREADABLE_HEADERS)
        # The common batch, told in C: no record with headers, and keys that all fit in one
        # key's limit together (so each does).
        if not any(headers) and len(b"".join(filter(None, keys))) <= self._limits.max_key_bytes:
            return sized, [None] * len(keys)
        readable: list[Headers | None] = [None] * len(keys)
        for i, h in enumerate(headers):
            if h is None and len(keys[i] or b"") <= self._limits.max_key_bytes:
                continue  # the common case: a raw record without headers
            failure = self._refuse_size(keys[i], h)
            if failure is not None:
                sized[i] = failure
            else:
                readable[i] = h
        if not any(readable):
            return sized, [None] * len(keys)
        return sized, read_stamps_batch(readable)

    def _refuse_size(self, key: bytes | None, headers: Headers | None) -> Failure | None:
        """A ``record.size`` failure when the key or the headers are over their limits."""
        limits = self._limits
        if key is not None and len(key) > limits.max_key_bytes:
            why = f"key is {len(key):,} bytes, over the limit of {limits.max_key_bytes:,}"
            return Failure(*SIZE_RULE, why)
        if headers:
            size = header_bytes(headers)
            if size > limits.max_header_bytes:
                why = (
                    f"{len(headers):,} headers take {size:,} bytes, over the limit of "
                    f"{limits.max_header_bytes:,}"
                )
                return Failure(*SIZE_RULE, why)
        return None

    def _refuse_clean(
        self, key: bytes | None, value: bytes | None, headers: Headers
    ) -> Failure | None:
        """A ``record.size`` failure when the clean topic would not take the stamped record."""
        if self._clean_limit >= self._limits.producer_bytes:
            return None  # everything that passed the input limits fits
        size = record_bytes(key, value, headers)
        if size <= self._clean_limit:
            return None
        why = (
            f"the stamped record is {size:,} bytes, over topic {self.settings.clean_topic!r}'s "
            f"max.message.bytes of {self._clean_limit:,}"
        )
        return Failure(*SIZE_RULE, why)

    def _found(self, event_id: str, topic: str, partition: int, offset: int) -> Written | None:
        """What a recovery scan found already written for this record, if anything."""
        found = self._already
        if not found.by_id and not found.by_source:
            return None
        written = found.by_id.pop(event_id, None)
        if written is None and found.by_source:
            written = found.by_source.pop((topic, partition, offset), None)
        return written

    def _recovered(self, written: Written) -> None:
        """Count a record a crashed predecessor had already written, as it was written."""
        self.stats.recovered += 1
        if self.metrics is not None:
            self.metrics.duplicates_suppressed.inc()
        if written.rule_id is None:
            self.stats.forwarded += 1
        else:
            self.stats.dead_lettered[written.rule_id] += 1

    def _unprocessable(self, b: _Batch, i: int, exc: Exception) -> None:
        """Dead-letter a record whose processing raised, with the error as its reason."""
        topic, partition, offset = b.topics[i], b.partitions[i], b.offsets[i]
        log.error("record could not be processed %s: %r", where(topic, partition, offset), exc)
        failure = Failure(*UNPROCESSABLE_RULE, f"{type(exc).__name__}: {exc}"[:MAX_REASON])
        b.refused[i] = (failure,)
        event_id = b.ids[i]
        self._dead_letter(b, i, failure, event_id, "", [(H_EVENT_ID, event_id.encode())])
        s = self.settings
        provider = b.providers[i] if isinstance(b.providers[i], str) else ""
        self._rows.rows.append(
            trail_row(
                event_id=event_id,
                stage=s.stage,
                prev_stage="",
                received=b.received,
                emitted=time.time_ns(),
                prev_emitted=0,
                origin=0,
                ingested=b.received,
                clock_err_ns=b.clock.err_ns,
                prev_clock_err_ns=0,
                host=s.host,
                topic=topic,
                partition=partition,
                offset=offset,
                broker_time=b.broker_ms[i],
                provider=provider,
                instrument="",
                seq=-1,
                price=nan,
                outcome="dead_lettered",
                rule_id=failure.rule_id,
                rule_version=failure.rule_version,
                parents="",
                authority=AUTHORITY_STAMPER,
                clock_source=b.clock.source,
                warnings="",
                rule_sha256="",
                parent_stamps="",
                broker_time_type=b.broker_types[i],
            )
        )

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Any) -> None:
        """Produce one record, waiting while librdkafka's local queue is full.

        Raises:
            KafkaException: librdkafka refused the record for its own fault (its size).
            DeliveryError: librdkafka refused it for its topic's or the producer's state
                (an unknown or invalid topic, say), or the queue stayed full after a stop
                was asked for.
        """
        assert self._producer is not None
        waited_since = 0.0
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=headers, on_delivery=self._delivered
                )
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() in _RECORD_FAULTS:
                    raise
                raise DeliveryError(
                    "broker did not take every record, offsets not committed: "
                    f"{topic}: {_kafka_words(exc)}"
                ) from exc
            except BufferError:
                # Delivery reports free the queue; a stopped gate does not wait for ever.
                self._producer.poll(0.05)
                if self._stop.is_set():
                    waited_since = waited_since or time.monotonic()
                    if time.monotonic() - waited_since > _STOP_GRACE_S:
                        raise DeliveryError("stopping: the producer's queue stayed full") from None

    def _dead_letter(
        self,
        b: _Batch,
        i: int,
        failure: Failure,
        event_id: str,
        provider: str,
        stamp_headers: list[tuple[str, Any]],
    ) -> None:
        s = self.settings
        topic, partition, offset = b.topics[i], b.partitions[i], b.offsets[i]
        self._log_dead_letter(b, i, failure)
        added = dead_letter_headers(
            [],
            topic=topic,
            partition=partition,
            offset=offset,
            rule_id=failure.rule_id,
            rule_version=failure.rule_version,
            reason=failure.reason,
            collector=f"stampline-{s.stage}",
        )
        key, value, headers = fit_dead_letter(
            b.keys[i],
            b.values[i],
            list(b.headers[i] or ()),
            [*added, *stamp_headers],
            self._limits.out_limit(dead_letter=True),
            record_bytes,
        )
        try:
            self._produce(s.dead_letter_topic, value, key, headers)
        except KafkaException as exc:
            # Still refused: the record is not lost (it stays at its source offset, and the
            # store's dead-letter row below keeps its reason), but it is not in the topic.
            log.error(
                "dead letter not produced %s rule=%s: %s",
                where(topic, partition, offset),
                failure.rule_id,
                exc,
            )
            if self.metrics is not None:
                self.metrics.store_errors.inc()
        self.stats.dead_lettered[failure.rule_id] += 1
        self._dead_row(b, i, failure, event_id, provider)

    @staticmethod
    def _log_dead_letter(b: _Batch, i: int, failure: Failure) -> None:
        if log.isEnabledFor(logging.INFO):  # (a bad feed refuses thousands a second)
            log.info(
                "dead-letter %s rule=%s v%d reason=%s",
                where(b.topics[i], b.partitions[i], b.offsets[i]),
                failure.rule_id,
                failure.rule_version,
                failure.reason[:MAX_REASON],
            )

    def set_clock_bound(self, err_ns: int, source: str) -> None:
        """Stamp with this clock-error bound from the next batch on (the bound was read again,
        e.g. from chrony; see stampline/_clockwatch.py). Safe from another thread."""
        if (err_ns, source) != (self._clock.err_ns, self._clock.source):
            self._clock = _Clock.of(err_ns, source, self.settings.host)

    def _dead_row(
        self,
        b: _Batch,
        i: int,
        failure: Failure,
        event_id: str,
        provider: str,
        severity: Literal["reject", "warn"] = "reject",
    ) -> None:
        """The trail's row for a dead letter, or (``severity="warn"``) for a broken warn rule
        of a forwarded record, which carries no value."""
        topic, partition, offset = b.topics[i], b.partitions[i], b.offsets[i]
        value = (b.values[i] or b"") if severity == "reject" else b""
        self._dead.append(
            DeadLetter(
                event_id=event_id,
                received_ns=b.received,
                topic=topic,
                partition=partition,
                offset=offset,
                provider=provider,
                rule_id=failure.rule_id,
                rule_version=failure.rule_version,
                reason=failure.reason[:MAX_REASON],
                # The store keeps only the value's head; a 10 MB record's whole value must
                # not wait in memory for the next flush.
                value=value[:_DEAD_VALUE_HEAD],
                value_size=len(value),
                severity=severity,
            )
        )

    def _warned(
        self,
        b: _Batch,
        i: int,
        warned: tuple[Failure, ...],
        event_id: str,
        provider: str,
        new: bool,
    ) -> None:
        """Keep each broken warn rule's verdict, with its reason, for the trail's warnings;
        count it (once: not again for a record re-read after a crash)."""
        for f in warned:
            self._dead_row(b, i, f, event_id, provider, severity="warn")
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

    def _count(self, n: int, rows: _Routed) -> None:
        """Update metrics once per batch and label, not once per record: the latencies are
        computed as columns and fed to each histogram per label set (``BatchHistogram``)."""
        m = self.metrics
        assert m is not None
        m.batch_size.observe(n)
        if not rows.providers:
            return
        stage = self.settings.stage
        names, outcomes, rule_ids, instruments = (
            rows.providers,
            rows.outcomes,
            rows.rule_ids,
            rows.instruments,
        )
        received, emitted, origin, ingested, broker = rows.times
        # Labels in order of first appearance (past the label cap, the later providers are
        # "other"), then each record's label as a number: the counts per label are NumPy's,
        # not a Python pass per record each.
        names_seen = dict.fromkeys(names)
        label_of = m.provider.many(
            [p or UNNAMED_PROVIDER for p in names_seen] if "" in names_seen else names_seen
        )
        labels = list(dict.fromkeys(label_of))
        which = _numbered(label_of, labels)[_numbered(names, names_seen)]
        forwarded = np.fromiter(map(_FORWARDED.__eq__, outcomes), np.bool_, len(outcomes))
        dead_rows = (~forwarded).nonzero()[0]
        dead = Counter(
            (labels[k], m.rule(rule_ids[i]))
            for i, k in zip(dead_rows.tolist(), which[dead_rows].tolist(), strict=True)
        )
        held = (emitted - received) / 1e9
        origins = origin
        intake = ingested
        on_broker = broker * 1_000_000
        # An origin time: how long the record took to reach the gate. A provider clock ahead
        # of ours reads as no delay: the skew itself is stampline_provider_clock_offset_seconds.
        timed = forwarded & (origins != 0)
        reached = np.maximum(intake - origins, 0) / 1e9
        # The provider's own part ends on the broker (provider_latency's definition): the
        # time the record then waited for a gate is never its.
        took = np.maximum(np.where(on_broker != 0, on_broker, intake) - origins, 0) / 1e9
        m.stage_latency.observe_many([(stage, p) for p in labels], which, held)
        named = [(p,) for p in labels]
        m.origin_latency.observe_many(named, which[timed], reached[timed])
        m.provider_latency.observe_many(named, which[timed], took[timed])
        if m.instrument_latency is not None:
            symbols = [m.instrument(i) for i in instruments]
            kinds = dict.fromkeys(symbols)
            sets = [(stage, symbol) for symbol in kinds]
            m.instrument_latency.observe_many(sets, _numbered(symbols, kinds), held)
        et = self.event_time
        m.providers.update(
            labels,
            np.bincount(which, minlength=len(labels)),
            np.bincount(which[forwarded], minlength=len(labels)),
            [nan if (w := et.watermark_ns(p)) is None else w / 1e9 for p in labels],
            [nan if (o := et.clock_offset_ns(p)) is None else o / 1e9 for p in labels],
            time.time(),
        )
        for (provider, rule), count in dead.items():
            m.child(m.dead_lettered, provider, rule).inc(count)

    def _delivered(self, err: KafkaError | str | None, msg: Message | DeliveryReport) -> None:
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
        if isinstance(self.trail, TrailTopic):
            # Produced like the forwards, before the flush or inside the transaction, so the
            # offsets commit only once the trail is on the broker too.
            self.trail.produce(
                self._producer, segment.rows.table(), segment.dead, self._trail_delivered
            )
        if not self.transactional:
            remaining = self._flush(30)
            if _on_compiled_route(self._producer):  # the compiled route's records
                self._delivery_errors.extend(
                    f"{where(t, p, o)}: {err}" for t, p, o, err in self._producer.take_failures()
                )
            if remaining or self._delivery_errors:
                errors = (
                    "; ".join(self._delivery_errors[:5]) or f"{remaining} records unacknowledged"
                )
                raise DeliveryError(
                    f"broker did not take every record, offsets not committed: {errors}"
                )
        if not isinstance(self.trail, TrailTopic):
            self._write_trail(segment)
        if self.transactional:
            try:
                self._transactions().send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in segment.offsets.items()],
                    self._group_metadata,
                    30,
                )
                self._transactions().commit_transaction(30)
            except Exception as exc:
                raise DeliveryError(f"transaction not committed: {exc}") from exc
            if self._delivery_errors:
                raise DeliveryError("; ".join(self._delivery_errors[:5]))
            self._transactions().begin_transaction()
            self._commits.put((None, segment))  # for the output checkpoint
            if segment.done is not None:
                segment.done.set()  # the evaluator may produce again
        else:
            self._commits.put((segment.offsets, segment))
        self.stats.flushes += 1

    def _trail_delivered(self, err: KafkaError | str | None, msg: Message | DeliveryReport) -> None:
        if err is not None:
            self._delivery_errors.append(
                f"trail {where(msg.topic(), msg.partition(), msg.offset())}: {err}"
            )

    def _flush(self, timeout_s: float) -> int:
        """Wait for the broker's acknowledgements of every record produced so far; a stop cuts
        the wait to a few seconds. Returns how many records are still unacknowledged.

        The compiled route's producer waits for those alone (``close_epoch``, ``wait``), not
        for the records the evaluator produces meanwhile: under a steady load a flush, which
        waits until nothing is in flight, returned only when the evaluator had stopped (its
        queue to this writer full) or between its batches."""
        producer = self._producer
        assert producer is not None
        wait: Callable[[float], int] = producer.flush
        if _on_compiled_route(producer):
            wait = partial(producer.wait, producer.close_epoch())
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = wait(0.5)
            if not remaining or time.monotonic() > deadline:
                return remaining
            if self._stop.is_set():
                deadline = min(deadline, time.monotonic() + _STOP_GRACE_S)

    def _write_trail(self, segment: _Segment) -> None:
        """Write the segment's rows, retrying while the store fails (the queues fill and the
        consumer pauses meanwhile: that is the backpressure). A stop ends the retries: the
        offsets are then not committed and a restart reads the records again."""
        assert not isinstance(self.trail, TrailTopic)
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
                if self._stop.is_set():
                    raise DeliveryError(
                        f"stopped while the trail could not be written ({exc}); "
                        "offsets not committed, a restart resumes before this segment"
                    ) from exc
                log.warning("trail write failed, retrying in %.2fs: %s", delay, exc)
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
                continue
            if self.metrics is not None:
                self.metrics.store_write.observe(time.perf_counter() - t0)
            return


@dataclass(frozen=True, slots=True)
class _Routed:
    """What a batch's metrics read of its trail rows, as columns."""

    providers: list[str]
    outcomes: list[str]
    rule_ids: list[str]
    instruments: list[str]
    # received, emitted, origin, ingested (ns) and broker time (ms)
    times: tuple[npt.NDArray[np.int64], ...]


def _kafka_words(exc: KafkaException) -> str:
    """librdkafka's words for a refusal: its ``KafkaError``'s text, without the code dump
    ``str(exc)`` adds around it."""
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _counted(
    rows: list[TrailRow], b: _Batch, fast: tuple[npt.NDArray[np.int64], dict[int, str]] | None
) -> _Routed:
    """The columns ``_count`` reads: of the reference's row tuples, then of the records the
    compiled route routed (``fast``: index, emitted, origin, ingested per record, and the
    rule of each it dead-lettered)."""
    texts: list[list[str]] = [[] for _ in _COUNTED_TEXTS]
    ints: list[list[npt.NDArray[np.int64]]] = [[] for _ in _COUNTED_INTS]
    if rows:  # the getter gives each row's values in _COUNTED_NAMES' order
        columns = list(zip(*map(_COUNTED, rows), strict=True))
        for text, column in zip(texts, columns, strict=False):
            text.extend(column)
        for part, column in zip(ints, columns[len(texts) :], strict=True):
            part.append(np.array(column, np.int64))
    if fast is not None and len(fast[0]):
        routed, dead = fast
        at = routed[:, 0].tolist()
        providers, outcomes, rule_ids, instruments = texts
        # (map over bound methods: C-level, where a generator is a Python step per record)
        providers.extend(map(b.providers.__getitem__, at))
        if dead:
            outcomes.extend(map(_OUTCOMES.__getitem__, map(dead.__contains__, at)))
            rule_ids.extend(map(dead.get, at, repeat("")))
        else:
            outcomes.extend([_FORWARDED] * len(at))
            rule_ids.extend([""] * len(at))
        instruments.extend(map(b.instruments.__getitem__, at))
        received, emitted, origin, ingested, broker = ints
        received.append(np.full(len(at), b.received, np.int64))
        emitted.append(routed[:, 1])
        origin.append(routed[:, 2])
        ingested.append(routed[:, 3])
        broker.append(np.asarray(b.broker_ms, np.int64)[at])
    times = tuple(np.concatenate(part) if part else np.zeros(0, np.int64) for part in ints)
    return _Routed(texts[0], texts[1], texts[2], texts[3], times)


def _broker_ms(taken: Taken) -> list[int]:
    """The broker times, 0 where the broker gave none (timestamp type 0): the consumer's own
    list when every record has one, the common case."""
    kinds = taken.time_types
    if 0 not in kinds:
        return taken.times_ms
    return [ms if kind else 0 for kind, ms in zip(kinds, taken.times_ms, strict=True)]


def _broker_types(kinds: list[int]) -> list[str]:
    """The trail's names of the timestamp types ("" for a code Kafka lacks)."""
    if _TIME_TYPES.keys() >= set(kinds):  # the common case, mapped in C
        return list(map(_TIME_TYPES.__getitem__, kinds))
    return [_TIME_TYPES.get(kind, "") for kind in kinds]


def _count_path(path: str, n: int) -> None:
    if not n:
        return
    GATE_PATHS[path] += n
    if not path.startswith("compiled") and GATE_PATHS[path] == n:
        log.info("gate records routed on the Python path: %s", path.removeprefix("python: "))


def _numbered(values: list[str], order: Iterable[str]) -> npt.NDArray[np.intp]:
    """Each value's place in ``order`` (which holds every value once)."""
    place = {v: k for k, v in enumerate(order)}
    return np.fromiter(map(place.__getitem__, values), np.intp, len(values))


def _judged(
    result: BatchResult,
) -> tuple[dict[int, tuple[Failure, ...]], dict[int, tuple[Failure, ...]]]:
    """The broken reject rules and the broken warn rules of each row that broke any rule
    (as ``BatchResult.verdicts`` has them), without a verdict object for every row."""
    rejects: dict[int, tuple[Failure, ...]] = {}
    warnings: dict[int, tuple[Failure, ...]] = {}
    for row, failures in result.failures().items():
        bad = tuple(f for f in failures if f.severity == "reject" and not f.shadow)
        warned = tuple(f for f in failures if f.severity == "warn" and not f.shadow)
        if bad:
            rejects[row] = bad
        if warned:
            warnings[row] = warned
    return rejects, warnings


def _unjudgeable(exc: Exception) -> BatchResult:
    """The result for one record the rules engine raised on: a failure naming the error."""
    reason = f"the rules raised {type(exc).__name__}: {exc}"[:MAX_REASON]
    return BatchResult(
        1, {0: Failure(*UNPROCESSABLE_RULE, reason)}, [], ([""], [""], [-1]), np.zeros(1, np.int64)
    )
