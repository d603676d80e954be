"""The tap: reads any topics as its own consumer group and records what it sees.

It never produces, so it adds nothing to the audited pipeline's latency. For every record
it writes one sighting of its own, stage ``<stage>:<topic>``, received at the broker
timestamp (when the record reached the topic) and emitted when the tap read it (so its hold
time is the tap's own lag, never part of a hop), with the event id: the one in the stamp
headers, or, when no producer stamped the record, one derived from configured payload key
fields (so two taps on two topics derive the same id for the same event), or else one
derived from where the record was read. Hop latency between two topics is then the
difference of the two sightings' broker times (:func:`hop_latencies`).

Each stage stamp found in the headers also becomes an observation at tap authority; where
the stamping collector wrote its own row (the gate does), that richer row is kept.

The tap is one thread, and a writer thread for its trail: the trail write is pipelined with
taking. Each flush's rows go to the writer, which encodes and produces them to the trail
topic as a segment, and the offsets they cover are committed once the broker has
acknowledged it and every segment before it (``Tap._settle``); meanwhile the loop takes and
observes more, up to ``TapSettings.trail_in_flight`` unacknowledged segments, beyond which it
waits (so while the trail is slow it does not poll, and librdkafka's bounded prefetch queue
and those segments are all it holds).

Two loops do the same work (docs/native.md, "The tap's compiled loop"): the compiled one
(``stampline._native.TapLoop``: its own consumer, trail rows built in Rust as Arrow record
batches), used where the module has it; and the reference, in Python (a confluent-kafka
consumer, rows built by ``_observe``), used where it has not, when ``TapSettings.compiled``
is False or the environment sets ``STAMPLINE_TAP_REFERENCE`` (to anything but ``0``). The
compiled loop hands back the records it is not certain to observe as ``_observe`` does, and
``_observe`` observes them. Each record's path is counted in ``TAP_PATHS``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from itertools import groupby
from math import nan
from typing import Any, Protocol

import orjson
import pyarrow as pa
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from stampline._common import where
from stampline.audit import (
    AUTHORITY_TAP,
    PREV_ORIGIN,
    Observation,
    TrailRow,
    broker_time_type,
    encode_parent_stamps,
    message_rows,
    trail_row,
)
from stampline.collectors._ids import key_event_id, source_event_id
from stampline.collectors._kafka import (
    consumer_config,
    forward_native_log,
    native_settings,
    producer_config,
    take,
)
from stampline.collectors._metrics import SidecarMetrics
from stampline.collectors._stamps import (
    UNREADABLE_HEADERS,
    Headers,
    check_stage_name,
    message_headers,
    read_stamps_batch,
)
from stampline.collectors._trailrows import (
    CANONICAL_SCHEMA,
    TrailRows,
    TrailSink,
    observations_of,
    write_table,
)
from stampline.collectors._trailtopic import TrailTopic
from stampline.collectors.exceptions import DeliveryError, StampError

try:
    from stampline._native import TapLoop
except ImportError:  # built without cargo, or before the loop (`./dev setup`): the reference
    TapLoop = None  # type: ignore[assignment,misc]

log = logging.getLogger("stampline.tap")

# Set (to anything but "0") to run every tap on the reference loop.
FORCE_REFERENCE_ENV = "STAMPLINE_TAP_REFERENCE"
# Records observed per path: "native", or "python: <why>" (the reference loop, or a record the
# compiled loop handed back); each new reason is logged once at INFO.
TAP_PATHS: Counter[str] = Counter()

_MISSING = object()
_MS = 1_000_000

# How long the loop waits for the broker to acknowledge a trail segment it cannot go on
# without (backpressure, the last ones on a stop or a revoke) before it gives up.
ACK_TIMEOUT_S = 30.0

# The next offset to read per (topic, partition), of the records a segment's rows cover.
Offsets = dict[tuple[str, int], int]

# Pending rows go to the writer in parts of at least this many (about three trail messages of
# gate-stamped rows), before their segment is flushed: the writer encodes and produces whole
# messages while the loop goes on taking, so a flush leaves only the segment's last part to
# write. Without parts the writer began a segment only at its flush, and at a stop or a
# revoke the tap waited for the whole of it (0.1-0.2 s of every 100,000 rows, measured).
PART_ROWS = 8192


@dataclass(frozen=True, slots=True)
class TapSettings:
    bootstrap_servers: str
    topics: tuple[str, ...]
    group_id: str = "stampline-tap"
    stage: str = "tap"
    key_fields: tuple[str, ...] = ()  # payload fields identifying an unstamped event
    consume_batch: int = 5000
    poll_timeout_s: float = 0.1
    flush_rows: int = 50_000
    flush_interval_s: float = 0.5
    clock_err_ns: int = 1_000_000
    clock_source: str = "configured"  # where clock_err_ns came from (audit.ClockBound.label())
    host: str = field(default_factory=socket.gethostname)
    consumer: dict[str, Any] = field(default_factory=dict)
    compiled: bool = True  # the compiled loop where stampline._native has it (module doc)
    # Trail segments (a flush each) left unacknowledged while the tap takes more records:
    # beyond them it waits for the oldest. 0: each written before the next take.
    trail_in_flight: int = 4


# A tap may start before the topics it observes exist: librdkafka notices a topic created
# later only at its next metadata refresh, every 5 minutes by default (it looked like never).
_TAP_CONSUMER = {"topic.metadata.refresh.interval.ms": 5000}


@dataclass(slots=True)
class TapStats:
    records: int = 0
    observations: int = 0
    unstamped: int = 0  # no stamp headers: id from key fields or position
    keyed: int = 0  # of those, identified by key fields
    bad_stamps: int = 0


class Tap:
    """Records observations from the records of its topics until ``stop`` is set."""

    def __init__(
        self,
        settings: TapSettings,
        trail: TrailSink | TrailTopic,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        """``trail`` is the trail topic (its own producer; never the observed topics) or, for
        embedding and tests, a sink written directly (the store)."""
        self.settings = settings
        self.trail = trail
        self.metrics = metrics
        self.stats = TapStats()
        self.ready = threading.Event()  # set once partitions are assigned
        self._stage_of: dict[str, str] = {}
        self._producer: Producer | None = None
        self.path = ""  # the loop `run` took: "compiled" or "reference"
        self._reference_why = "the reference loop"
        self._pending = TrailRows()  # rows not yet sent to the trail
        self._offsets: Offsets = {}  # the offsets those rows cover
        self._in_flight: deque[_Segment] = deque()  # sent, oldest first; none committed
        # the segment being filled: its parts given to the writer so far, and their rows
        self._open: _Segment | None = None
        self._open_rows = 0
        # on the writer thread: rows of the open segment short of a whole message, kept for
        # the next part (so parts make no more messages than one flush of the same rows)
        self._carry: pa.Table | None = None
        self._failed: DeliveryError | None = None  # a segment the trail did not take
        # encodes and produces the trail segments (a trail topic's), apart from the loop
        self._writer: futures.ThreadPoolExecutor | None = None

    def stage_for(self, topic: str) -> str:
        """The stage name of this tap's own sightings on ``topic``."""
        stage = self._stage_of.get(topic)
        if stage is None:
            stage = self._stage_of[topic] = check_stage_name(f"{self.settings.stage}:{topic}"[:64])
        return stage

    def run(self, stop: threading.Event) -> None:
        """Take, observe and send the rows to the trail until ``stop`` is set; raises
        ``DeliveryError`` when the trail does not take a segment (its offsets uncommitted)."""
        s = self.settings
        if isinstance(self.trail, TrailTopic):
            self._producer = Producer(producer_config(s.bootstrap_servers, s.consumer))
            self._writer = futures.ThreadPoolExecutor(1, "stampline-tap-trail")
        pending = self._pending = TrailRows()
        self._offsets, self._in_flight, self._failed = {}, deque(), None  # a run of its own
        self._open, self._open_rows, self._carry = None, 0, None
        source = self._compiled(stop) or _Reference(
            s, self._observe, self.ready.set, self._revoking, self._reference_why
        )
        self.path = "compiled" if isinstance(source, _Compiled) else "reference"
        oldest = time.monotonic()
        try:
            while not stop.is_set():
                empty = not (pending or self._open_rows)
                taken = source.take(pending)
                if self._failed is not None:  # on a revoke, inside the take
                    raise self._failed
                if taken is not None:
                    # after the take: a revoke inside it sent the segment before this batch
                    self._offsets.update(taken)
                    if empty:
                        oldest = time.monotonic()
                rows = len(pending) + self._open_rows  # the segment's, given to the writer or not
                if rows and (
                    rows >= s.flush_rows or time.monotonic() - oldest >= s.flush_interval_s
                ):
                    self._send()
                elif len(pending) >= PART_ROWS and self._writer is not None:
                    self._send_part()
                self._settle(source.commit, s.trail_in_flight)
            self._send()
            self._settle(source.commit, 0)
        finally:
            source.close()
            if self._writer is not None:
                self._writer.shutdown(cancel_futures=True)
            if self._producer is not None:
                self._producer.flush(10)

    @property
    def in_flight(self) -> int:
        """Trail segments sent and not yet acknowledged by the broker (nor committed)."""
        return len(self._in_flight)

    def _compiled(self, stop: threading.Event) -> _Compiled | None:
        """The compiled loop, unless it is absent, forced off, or cannot take the settings;
        its takes stop waiting for records once ``stop`` is set."""
        s = self.settings
        if TapLoop is None or not s.compiled or os.environ.get(FORCE_REFERENCE_ENV, "0") != "0":
            why = "no compiled loop" if TapLoop is None else "forced"
            self._reference_why = f"the reference loop ({why})"
            return None
        config = consumer_config(s.bootstrap_servers, s.group_id, {**_TAP_CONSUMER, **s.consumer})
        settings, refused = native_settings(config)
        if refused is not None:  # a callback only confluent-kafka takes
            self._reference_why = f"the reference loop (consumer setting {refused!r})"
            return None
        try:
            loop = TapLoop(
                s.bootstrap_servers,
                s.group_id,
                settings,
                list(s.topics),
                stage=s.stage,
                host=s.host,
                clock_err_ns=s.clock_err_ns,
                clock_source=s.clock_source,
                keyed=bool(s.key_fields),
                consume_batch=s.consume_batch,
                poll_timeout_s=s.poll_timeout_s,
                columns=CANONICAL_SCHEMA.names,
                on_assign=self.ready.set,
                on_revoke=lambda: [(t, p, o) for (t, p), o in self._revoking().items()],
                stop=stop,
            )
        except ValueError as exc:  # settings it refuses before it starts
            self._reference_why = f"the reference loop ({exc})"
            return None
        return _Compiled(loop, self._observe, self.stats, self.metrics)

    def _send_part(self) -> None:
        """Give the pending rows to the writer as a part of the open segment (made here if
        none is open): it produces the whole messages they fill, the segment not yet sent."""
        assert self._writer is not None
        segment = self._open
        if segment is None:
            segment = self._open = _Segment({})
        pending = self._pending
        segment.parts.append(self._writer.submit(self._produce, pending.table(), segment, False))
        self._open_rows += len(pending)
        pending.clear()

    def _send(self) -> None:
        """Send the pending rows to the trail as one segment with the offsets they cover (and
        the parts of it already given to the writer): to the writer thread, which encodes and
        produces them to the trail topic (``_settle`` commits the segment once the broker has
        acknowledged it), or to a store sink, written here and so acknowledged at once."""
        pending = self._pending
        if not pending and not self._offsets and self._open is None:
            return
        segment = self._open or _Segment({})
        segment.offsets, segment.sent_at = self._offsets, time.monotonic()
        self._offsets, self._open, self._open_rows = {}, None, 0
        if pending or segment.parts:
            if isinstance(self.trail, TrailTopic):
                assert self._writer is not None
                segment.parts.append(
                    self._writer.submit(self._produce, pending.table(), segment, True)
                )
            else:
                t0 = time.perf_counter()
                write_table(self.trail, pending.table())
                if self.metrics is not None:
                    self.metrics.store_write.observe(time.perf_counter() - t0)
            pending.clear()
        self._in_flight.append(segment)

    def _produce(self, table: pa.Table, segment: _Segment, last: bool) -> int:
        """On the writer thread: encode ``table`` (after the rows carried from the segment's
        part before) and produce it (the encoding releases the GIL, and so does the compiled
        loop's take: the two run at once); how many messages. Unless ``last`` (the segment's
        end), the rows short of a whole message are carried to the next part."""
        assert self._producer is not None
        assert isinstance(self.trail, TrailTopic)
        t0 = time.perf_counter()
        if self._carry is not None:
            table = pa.concat_tables([self._carry, table])
            self._carry = None
        if not last:
            whole = table.num_rows - table.num_rows % message_rows(
                table, self.trail.max_message_bytes
            )
            table, self._carry = table.slice(0, whole), table.slice(whole)
        sent = self.trail.produce(self._producer, table, (), segment.delivered)
        if self.metrics is not None:
            self.metrics.store_write.observe(time.perf_counter() - t0)
        return sent

    def _settle(self, commit: Callable[[Offsets], None], keep: int) -> None:
        """Commit the offsets of the segments the broker has acknowledged, oldest first (never
        past one it has not), waiting until at most ``keep`` remain in flight; a segment the
        trail refused, or that is still unacknowledged after ``ACK_TIMEOUT_S`` while the tap
        waits for it, raises ``DeliveryError``: its offsets and every later one's stay
        uncommitted, and the tap's next revoke commits nothing more."""
        in_flight, producer = self._in_flight, self._producer
        if producer is not None and (in_flight or self._open is not None):
            producer.poll(0)  # the delivery reports come in here
        done: Offsets = {}
        try:
            while in_flight:
                head = in_flight[0]
                late = time.monotonic() - head.sent_at > ACK_TIMEOUT_S
                while head.parts and head.parts[0].done():
                    failure = head.parts[0].exception()
                    if failure is not None:
                        head.errors.append(f"not produced: {failure}")
                    else:
                        head.messages += head.parts[0].result()
                    head.parts.popleft()
                if head.errors or (late and len(in_flight) > keep):
                    why = "; ".join(head.errors[:5])
                    why = why or (
                        "not yet encoded and produced"
                        if head.parts
                        else f"{head.messages - head.reports} messages unacknowledged"
                    )
                    self._failed = DeliveryError(
                        f"trail not acknowledged, offsets not committed: {why}"
                    )
                    raise self._failed
                if not head.parts and head.reports >= head.messages:
                    done.update(in_flight.popleft().offsets)
                elif len(in_flight) <= keep:
                    break
                elif head.parts:  # backpressure: no take meanwhile
                    futures.wait([head.parts[0]], 0.05)
                else:
                    assert producer is not None  # a store sink's segment is acknowledged
                    producer.poll(0.05)
        finally:
            if done:
                commit(done)

    def _revoking(self) -> Offsets:
        """On a revoke (and on close): send the pending rows, wait until the broker has
        acknowledged every segment in flight, and return their offsets, which are committed
        before the partitions go. After a failure, only what was acknowledged before it; the
        failure is raised once the take returns."""
        acknowledged: Offsets = {}
        if self._failed is not None:
            return acknowledged
        try:
            self._send()
            self._settle(acknowledged.update, 0)
        except DeliveryError:
            pass  # kept in self._failed, raised by run
        return acknowledged

    def observe(self, messages: Sequence[Message | RawRecord]) -> list[Observation]:
        """The observations for ``messages`` (counted in ``stats``)."""
        rows = TrailRows()
        self._observe(messages, rows.rows)
        return observations_of(rows.table())

    def _observe(self, messages: Sequence[Message | RawRecord], rows: list[TrailRow]) -> None:
        """Add the trail rows of ``messages`` to ``rows``: the reference, which the compiled
        loop's rows are held to (tests/collectors/test_tap_native.py).

        A record gives its own sighting's row and one per stamp it carries, each built by
        position (``audit.trail_row`` says why) with its unjudged columns written out (provider,
        instrument, seq, price, outcome, rule_id, rule_version: the tap reads no payload): a
        call with a ``*tuple`` among its arguments cost ~30% more.
        """
        s = self.settings
        now = time.time_ns()
        host, clock_err = s.host, s.clock_err_ns
        added = len(rows)
        per_topic: dict[str, int] = {}
        # Every record's stamps in one call: compiled where the reader is sure, else by
        # read_stamps record by record (collectors/_stamps.py, read_stamps_batch).
        headers, unreadable = _headers(messages)
        read = read_stamps_batch(headers)
        for i in unreadable:  # no client reads them: its stamps cannot be read either
            read[i] = StampError(UNREADABLE_HEADERS)
        for m, got in zip(messages, read, strict=True):
            if m.error() is not None:
                log.warning(
                    "consume error %s: %s", where(m.topic(), m.partition(), m.offset()), m.error()
                )
                continue
            self.stats.records += 1
            topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
            ts_type, broker_ms = m.timestamp()
            broker_ms = broker_ms if ts_type else 0
            time_type = broker_time_type(ts_type)  # whose clock broker_ms is
            stamps = None
            broken = False
            if isinstance(got, StampError):
                broken = True
                self.stats.bad_stamps += 1
                log.warning("bad stamps %s: %s", where(topic, partition, offset), got)
            else:
                stamps = got
            # The stage before: (name, emitted, clock error) of the stamp a hop starts at.
            prev: tuple[str, int, int] = ("", 0, 0)
            if stamps is not None:
                event_id = stamps.event_id.lower()
                origin, ingested = stamps.origin_ns, stamps.ingest_ns
                parents = ",".join(p.lower() for p in stamps.parents)
                # Each stamp's hop starts at the stamp before it; the first one's at the
                # origin, unless the event was derived (born at that stage): then its hops
                # start where each parent last left a stage, kept on that first row.
                if not stamps.parents:
                    prev = (PREV_ORIGIN, origin, 0)
                lineage = encode_parent_stamps(stamps.parent_stamps)
                for st in stamps.stages:
                    rows.append(
                        trail_row(
                            event_id,
                            st.stage,
                            prev[0],
                            st.received_ns,
                            st.emitted_ns,
                            prev[1],
                            origin,
                            ingested,
                            st.clock_err_ns,
                            prev[2],
                            st.host,
                            topic,
                            partition,
                            offset,
                            broker_ms,
                            "", "", -1, nan, "observed", "", 0,  # judged by none: _observe says
                            parents,
                            AUTHORITY_TAP,
                            # where the stamping host's bound came from, as its stamp says
                            # ("" for a stamp that does not say: written before src=)
                            st.bound_label(),
                            "",
                            "",
                            lineage,
                            time_type,
                        )
                    )  # fmt: skip
                    prev = (st.stage, st.emitted_ns, st.clock_err_ns)
                    lineage = ""
                # Its own sighting's hop starts where the last stage let the record go.
                if not stamps.stages:
                    prev = ("", 0, 0)
            else:  # still sighted: a broken stamp is itself worth finding in the trail
                self.stats.unstamped += not broken
                keyed = self._key_id(m.value()) if s.key_fields else None
                if keyed is not None:
                    self.stats.keyed += 1
                event_id = keyed or source_event_id(topic, partition, offset, broker_ms)
                origin = ingested = broker_ms * 1_000_000
                parents = ""
            # Its own sighting starts when the record reached the topic (the broker time, to
            # the millisecond: hence the extra bound), so a hop into it is pipeline latency;
            # the tap's own delay in reading it is kept apart as its hold time (its lag).
            rows.append(
                trail_row(
                    event_id,
                    self.stage_for(topic),
                    prev[0],
                    broker_ms * 1_000_000 if broker_ms else now,
                    now,
                    prev[1],
                    origin,
                    ingested,
                    clock_err + _MS if broker_ms else clock_err,
                    prev[2],
                    host,
                    topic,
                    partition,
                    offset,
                    broker_ms,
                    "", "", -1, nan, "observed", "", 0,  # judged by none: _observe says
                    parents,
                    AUTHORITY_TAP,
                    s.clock_source,
                    "",
                    "",
                    "",
                    time_type,
                )
            )  # fmt: skip
            per_topic[topic] = per_topic.get(topic, 0) + 1
        self.stats.observations += len(rows) - added
        if self.metrics is not None:
            for topic, n in per_topic.items():
                self.metrics.tap_observations.labels(topic).inc(n)

    def _key_id(self, value: bytes | None) -> str | None:
        """The id from the key fields, or None when the payload lacks one of them."""
        try:
            payload = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        values = []
        for name in self.settings.key_fields:
            v = payload.get(name, _MISSING)
            if v is _MISSING:
                return None
            values.append(v)
        return key_event_id(values)


def _headers(
    messages: Sequence[Message | RawRecord],
) -> tuple[list[Headers | None], list[int]]:
    """The records' headers, and which records' headers cannot be read (a name that is not
    UTF-8: None in their place)."""
    out: list[Headers | None] = []
    unreadable: list[int] = []
    for i, m in enumerate(messages):
        if isinstance(m, RawRecord):
            headers, readable = m.headers(), not m.unreadable
        else:
            headers, readable = message_headers(m)
        if not readable:
            unreadable.append(i)
        out.append(headers)
    return out, unreadable


class RawRecord:
    """A record the compiled loop hands back for the reference: what ``_observe`` reads of a
    ``Message``, as confluent-kafka gives it (``error()`` is None: errors come apart)."""

    __slots__ = (
        "_headers", "_key", "_offset", "_partition", "_timestamp", "_topic", "_value",
        "unreadable",
    )  # fmt: skip

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp: tuple[int, int],
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None,
        unreadable: bool = False,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._timestamp, self._key, self._value, self._headers = timestamp, key, value, headers
        # a header name is not UTF-8: ``headers`` is None (confluent-kafka's would fail)
        self.unreadable = unreadable

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers


def _count_path(path: str, n: int) -> None:
    TAP_PATHS[path] += n
    if path != "native" and TAP_PATHS[path] == n:
        log.info("tap records observed on the Python path: %s", path.removeprefix("python: "))


class _Segment:
    """One flush's rows on their way to the trail topic: how many messages carry them, the
    delivery reports come back so far, and the offsets committed once all are acknowledged
    (and every segment before it)."""

    __slots__ = ("errors", "lock", "messages", "offsets", "parts", "reports", "sent_at")

    def __init__(self, offsets: Offsets) -> None:
        self.offsets = offsets
        # the writer's, oldest first, until each is done: how many messages each part made
        self.parts: deque[futures.Future[int]] = deque()
        self.messages = 0  # of the parts done; none for a store sink (written at the flush)
        self.reports = 0
        self.errors: list[str] = []
        self.sent_at = time.monotonic()
        # reports come to whichever thread polls: the loop's, or the writer's when it waits
        # for room in the producer's queue
        self.lock = threading.Lock()

    def delivered(self, err: Any, msg: Message) -> None:
        with self.lock:
            self.reports += 1
        if err is not None:
            self.errors.append(f"{where(msg.topic(), msg.partition(), msg.offset())}: {err}")


class _Source(Protocol):
    """Where a tap's records come from: one of its two loops."""

    def take(self, pending: TrailRows) -> Offsets | None:
        """Observe a batch into ``pending``; the offsets it covers, or None when none came."""
        ...

    def commit(self, offsets: Offsets) -> None:
        """Commit ``offsets`` (their records' rows are on the trail)."""
        ...

    def close(self) -> None: ...


Observe = Callable[[Sequence[Message | RawRecord], list[TrailRow]], None]


class _Reference:
    """The reference loop: a confluent-kafka consumer, rows built by ``Tap._observe``."""

    def __init__(
        self,
        settings: TapSettings,
        observe: Observe,
        on_assign: Callable[[], None],
        on_revoke: Callable[[], Offsets],
        why: str,
    ) -> None:
        s = self.settings = settings
        self.observe, self.path = observe, f"python: {why}"
        self.consumer = Consumer(
            consumer_config(s.bootstrap_servers, s.group_id, {**_TAP_CONSUMER, **s.consumer})
        )
        self.consumer.subscribe(
            list(s.topics),
            on_assign=lambda _c, _p: on_assign(),
            on_revoke=lambda _c, _p: self.commit(on_revoke()),
        )

    def take(self, pending: TrailRows) -> Offsets | None:
        s = self.settings
        messages = take(self.consumer, s.consume_batch, s.poll_timeout_s)
        if not messages:
            return None
        _count_path(self.path, len(messages))
        self.observe(messages, pending.rows)
        return {
            (m.topic() or "", m.partition() or 0): (m.offset() or 0) + 1
            for m in messages
            if m.error() is None
        }

    def commit(self, offsets: Offsets) -> None:
        """Commit the offsets given, never the consumer's position: a revoke runs inside the
        consumer's poll, after it may have taken records that are not observed yet."""
        if offsets:
            listed = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            self.consumer.commit(offsets=listed, asynchronous=False)

    def close(self) -> None:
        self.consumer.close()


class _Compiled:
    """The compiled loop (``stampline._native.TapLoop``): rows come as Arrow record batches;
    the records it hands back go through ``Tap._observe``, in their place among the rows."""

    def __init__(
        self, loop: TapLoop, observe: Observe, stats: TapStats, metrics: SidecarMetrics | None
    ) -> None:
        self.loop, self.observe, self.stats, self.metrics = loop, observe, stats, metrics

    def take(self, pending: TrailRows) -> Offsets | None:
        rows, raw, errors, records, unstamped, per_topic, handed = self.loop.take()
        forward_native_log()
        for error in errors:
            log.warning("consume error: %s", error)
        batch = pa.record_batch(rows)
        self.stats.records += records
        self.stats.observations += batch.num_rows
        self.stats.unstamped += unstamped
        if records:
            _count_path("native", records)
        if self.metrics is not None:
            for topic, n in per_topic:
                self.metrics.tap_observations.labels(topic).inc(n)
        # Each record handed back is observed where it was read: after the rows before it.
        at = 0
        for before, group in groupby(raw, key=lambda r: r[0]):
            records_here = []
            for _, topic, partition, offset, timestamp, key, value, headers, why, bad in group:
                _count_path(f"python: {why}", 1)
                records_here.append(
                    RawRecord(topic, partition, offset, timestamp, key, value, headers, bad)
                )
            if before > at:
                pending.add_batch(batch.slice(at, before - at))
                at = before
            self.observe(records_here, pending.rows)
        pending.add_batch(batch.slice(at))
        if not (batch.num_rows or raw or errors):
            return None
        return {(topic, partition): offset for topic, partition, offset in handed}

    def commit(self, offsets: Offsets) -> None:
        if offsets:
            self.loop.commit([(t, p, o) for (t, p), o in offsets.items()])

    def close(self) -> None:
        self.loop.close()
        forward_native_log()


class _Queryable(Protocol):
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


def hop_latencies(store: _Queryable, from_stage: str, to_stage: str) -> dict[str, int]:
    """Per event id seen at both stages: ``to`` broker time minus ``from`` broker time, in ms.

    Two taps' sightings (stages ``tap:<topic>``) of one event give the hop between topics
    without either tap adding anything to the pipeline.
    """
    rows = store.query(
        "SELECT toString(a.event_id) AS id, "
        "toUnixTimestamp64Milli(b.broker_time) - toUnixTimestamp64Milli(a.broker_time) AS ms "
        "FROM (SELECT event_id, broker_time FROM {db}.trail "
        "      WHERE stage = {a:String}) AS a "
        "INNER JOIN (SELECT event_id, broker_time FROM {db}.trail "
        "      WHERE stage = {b:String}) AS b USING (event_id)",
        {"a": from_stage, "b": to_stage},
    )
    return {r["id"]: int(r["ms"]) for r in rows}
