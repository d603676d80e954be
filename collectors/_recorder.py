"""The recorder: consumes the trail topic as a consumer group and writes the audit store.

- **Exactly once per trail message, under any kill.** Each trail partition is one hash
  chain in the store's ledger (``<topic>/<partition>``), and each ledger entry names the
  trail offset it came from. A message at or before its chain's last written offset was
  written before (a re-read after a crash) and is skipped. A writer stopped between a
  batch's rows and its ledger entry leaves orphan rows; the chain's next writer completes
  that batch before anything else (``_complete_orphan``): the same messages, read again,
  make the same deduplication token, so the store drops the repeat and the entry is
  written. The consumer group gives each partition one recorder, so each chain has exactly
  one writer and N recorders can write one database.
- **Commits after the write**, synchronously, per consumed batch.
- **No message stops a partition; only an outage waits.** A message that is not a readable
  trail message, or holds more than ``max_message_rows`` rows, is set aside as a dead letter
  of the trail (rule ``trail.format``); one holding a value the store would refuse or
  change (``audit.check_batch``, or the store's own refusal) as ``trail.value``; both in
  the store, chained like any other batch, naming the message's position. A store outage is
  retried with exponential back-off (capped) for as long as it takes; meanwhile every
  partition this recorder holds is paused (one store: its outage is every partition's) and
  the consumer keeps polling, so it stays in its group and follows rebalances. The recorder
  lags, and says so: ``stampline_trail_lag_seconds`` and ``stampline_trail_lag_records``.
- **Chain heads leave the database**: every ``heads_interval_s`` the head of each chain it
  owns goes to the log and to ``heads_topic`` (JSON), so ``audit verify --expect-head`` has
  something outside the database to check against.
- **The alerts topic too** (``alerts_topic``, with an ``alerts`` writer): alert transitions
  and people's actions reach the store through the same consumer, commits and retries,
  exactly once per alerts message (the writer skips what a partition already wrote). An
  unreadable alerts message becomes a dead letter (rule ``alerts.format``) chained per alerts
  partition. The writer and the trail observers are handed in by the caller (the shell wires
  ``alerting``'s), so this module imports nothing of alerting.
- **Trail observers** (``observers``) see every observations table once it is written (the
  recorder sees every stage's rows: the completeness detector runs there), and ``tick``
  when the trail is quiet. An observer that fails is logged and counted, never fatal. They
  keep their state in memory, so each is first ``seed``-ed from the store (the rows this
  recorder's trail wrote there before), once, when the first trail partition is assigned:
  after any wait to join the group, before the first trail message is read.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from stampline._common import where
from stampline.audit import (
    BatchRefusedError,
    ChainHead,
    DeadLetter,
    PublishedHead,
    Store,
    StoreError,
    TrailFormatError,
    check_batch,
    dead_letter_table,
    decode_trail_message,
    load_private_key,
)
from stampline.collectors._kafka import consumer_config, producer_config, take
from stampline.collectors._metrics import serve_metrics
from stampline.collectors._stamps import UNREADABLE_HEADERS, message_headers
from stampline.collectors._trailtopic import DEFAULT_TRAIL_TOPIC

log = logging.getLogger("stampline.recorder")

TRAIL_FORMAT_RULE = ("trail.format", 1)
TRAIL_VALUE_RULE = ("trail.value", 1)  # readable, but holds a value the store cannot keep
ALERTS_FORMAT_RULE = ("alerts.format", 1)

TopicPartition_ = tuple[str, int]  # (topic, partition): the trail's and the alerts topic's


class AlertsWriterLike(Protocol):
    """Writes alerts-topic messages to the store (``alerting.AlertIntake``)."""

    def forget(self, src: str) -> None: ...

    def write(self, src: str, messages: Sequence[tuple[int, bytes | None]]) -> Any:
        """Returns an object with ``history``, ``actions``, ``skipped`` (ints) and
        ``unreadable`` (a list of (offset, reason))."""
        ...


class TrailObserver(Protocol):
    """Sees the observations the recorder wrote (``alerting.CompletenessDetector``)."""

    def observe_table(self, table: pa.Table) -> None: ...

    def tick(self) -> None: ...

    def seed(self, store: Store, chains: str) -> object:
        """Rebuild the state from the trail rows ``store`` holds in chains whose id starts
        with ``chains``; never raises."""
        ...


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    bootstrap_servers: str
    trail_topic: str = DEFAULT_TRAIL_TOPIC
    group_id: str = "stampline-recorder"
    heads_topic: str | None = "stampline.trail.heads"
    heads_interval_s: float = 10.0
    signing_key: Path | None = None  # Ed25519 key signing the heads (0600, outside the store)
    consume_batch: int = 200  # trail messages per poll (each up to ~768 KiB of rows)
    max_batch_rows: int = 200_000  # rows per store insert: consecutive messages combined
    max_message_rows: int = 100_000  # a bigger trail message is refused (a dead letter)
    recovery_timeout_s: float = 60.0  # reading back a batch a killed recorder left unledgered
    poll_timeout_s: float = 0.2
    retry_initial_s: float = 0.1
    retry_max_s: float = 5.0
    alerts_topic: str | None = None  # also write this topic's alert history (with ``alerts``)
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Decoded:
    """One trail message, read."""

    kind: str
    table: pa.Table
    offset: int
    rejected: bool  # unreadable: ``table`` is its trail dead letter
    broker_ms: int  # the message's timestamp: how old the trail is while it waits
    message: Message

    @property
    def kept_rows(self) -> int:
        """The rows of ``table`` its kind's store table keeps (warn verdicts go elsewhere)."""
        t = self.table
        if self.kind != "dead_letters" or "severity" not in t.column_names:
            return int(t.num_rows)
        return int(t.num_rows - pc.sum(pc.equal(t.column("severity"), "warn")).as_py() or 0)


@dataclass(slots=True)
class RecorderStats:
    messages: int = 0  # trail messages written
    skipped: int = 0  # re-read messages found already written
    rows: int = 0
    dead_letters: int = 0  # rejected records' verdicts
    warnings: int = 0  # forwarded records' warn verdicts (they travel as dead-letter rows)
    rejected: int = 0  # unreadable trail messages, kept as trail dead letters
    retries: int = 0
    heads_published: int = 0
    lag_s: float = 0.0
    alerts_history: int = 0  # alert transitions written from the alerts topic
    alerts_actions: int = 0  # people's actions written from the alerts topic
    alerts_skipped: int = 0  # alerts messages found already written (a re-read)
    alerts_rejected: int = 0  # unreadable alerts messages, kept as dead letters
    observer_errors: int = 0


class RecorderMetrics:
    """The recorder's instruments, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.lag_seconds = Gauge(
            "stampline_trail_lag_seconds",
            "Age of the oldest trail message not yet written (0 when caught up).",
            ["partition"],
            registry=r,
        )
        self.lag_records = Gauge(
            "stampline_trail_lag_records",
            "Trail messages behind the partition's end (from the client's statistics).",
            ["partition"],
            registry=r,
        )
        self.rows = Counter(
            "stampline_recorder_rows", "Rows written to the store.", ["kind"], registry=r
        )
        self.messages = Counter(
            "stampline_recorder_messages", "Trail messages written.", registry=r
        )
        self.store_errors = Counter(
            "stampline_recorder_store_errors",
            "Store writes that failed and were retried.",
            registry=r,
        )
        self.rejected = Counter(
            "stampline_recorder_rejected_messages",
            "Unreadable trail messages, kept as dead letters of the trail.",
            registry=r,
        )

    def serve(self, port: int, address: str = "127.0.0.1") -> object:
        """Serve ``/metrics`` on ``address:port`` (a bind failure names it, see
        ``serve_metrics``)."""
        return serve_metrics(self.registry, address, port)


class Recorder:
    """Writes trail messages to ``store`` until ``stop`` is set."""

    def __init__(
        self,
        settings: RecorderSettings,
        store: Store,
        metrics: RecorderMetrics | None = None,
        *,
        alerts: AlertsWriterLike | None = None,
        observers: Sequence[TrailObserver] = (),
    ) -> None:
        if settings.alerts_topic and alerts is None:
            raise ValueError("alerts_topic needs an alerts writer (alerting.AlertIntake)")
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.alerts = alerts if settings.alerts_topic else None
        self.observers = list(observers)
        self.stats = RecorderStats()
        self.ready = threading.Event()  # set once partitions are assigned
        self.heads: dict[str, ChainHead] = {}  # chains this recorder owns, as last written
        self._assigned: set[TopicPartition_] = set()
        self._written: dict[TopicPartition_, int] = {}  # -> next offset to commit
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._paused = False
        self._last_heads = 0.0
        self._seeded = False
        folder = getattr(store, "path", None)
        folder = folder if isinstance(folder, Path) else None  # a chDB folder, not a URL
        self._key = load_private_key(settings.signing_key, folder) if settings.signing_key else None

    def chain_id(self, partition: int, topic: str | None = None) -> str:
        return f"{topic or self.settings.trail_topic}/{partition}"

    def _topics(self) -> list[str]:
        s = self.settings
        return [s.trail_topic, *([s.alerts_topic] if s.alerts_topic else [])]

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        extra: dict[str, Any] = {"isolation.level": "read_committed", **s.consumer}
        if self.metrics is not None:
            extra.setdefault("statistics.interval.ms", 5000)
            extra["stats_cb"] = self._on_stats
        self._consumer = consumer = Consumer(
            consumer_config(s.bootstrap_servers, s.group_id, extra)
        )
        if s.heads_topic:
            self._producer = Producer(producer_config(s.bootstrap_servers, s.producer))
        consumer.subscribe(self._topics(), on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("recorder started topics=%s group=%s", ",".join(self._topics()), s.group_id)
        pending: list[Message] = []
        try:
            while not stop.is_set():
                if not pending:
                    pending = take(consumer, s.consume_batch, s.poll_timeout_s)
                    if not pending:
                        self._caught_up()
                        self._tick_observers()
                        self._maybe_publish_heads()
                        continue
                pending = self._write_all(pending, stop)
                self._commit()
                self._maybe_publish_heads()
            self._commit()
            self._publish_heads()
        finally:
            consumer.close()
            if self._producer is not None:
                self._producer.flush(10)
            log.info(
                "recorder stopped messages=%d rows=%d dead_letters=%d warnings=%d skipped=%d "
                "rejected=%d",
                self.stats.messages,
                self.stats.rows,
                self.stats.dead_letters,
                self.stats.warnings,
                self.stats.skipped,
                self.stats.rejected,
            )

    # ------------------------------------------------------------------ writing

    def _write_all(self, messages: list[Message], stop: threading.Event) -> list[Message]:
        """Write ``messages``: per partition, in order, in groups of consecutive messages (one
        ledger entry per kind and group, so a store insert carries many messages' rows).
        A partition revoked meanwhile, or ``stop`` while retrying, leaves the rest
        uncommitted: its owner (or this recorder after a restart) reads it again."""
        by_partition: dict[TopicPartition_, list[Message]] = {}
        for m in messages:
            if m.error() is not None:
                at = where(m.topic(), m.partition(), m.offset())
                log.warning("consume error %s: %s", at, m.error())
                continue
            by_partition.setdefault((m.topic() or "", m.partition() or 0), []).append(m)
        cap = self.settings.max_batch_rows
        for tp, msgs in by_partition.items():
            if tp[0] != self.settings.trail_topic:
                if tp in self._assigned and self._write_alerts_retrying(tp, msgs, stop):
                    self._written[tp] = (msgs[-1].offset() or 0) + 1
                continue
            partition = tp[1]
            i = 0
            carried: _Decoded | None = None  # read, but left for the next group by the cap
            while i < len(msgs) and tp in self._assigned and not stop.is_set():
                group: list[_Decoded] = []
                rows = 0
                while i < len(msgs):
                    d = carried or self._decode(msgs[i])
                    carried = None
                    if group and rows + d.table.num_rows > cap:
                        carried = d
                        break
                    group.append(d)
                    rows += d.table.num_rows
                    i += 1
                if not self._write_retrying(partition, group, stop):
                    break
                self._written[tp] = group[-1].offset + 1
        self._set_paused(False)
        return []

    def _decode(self, m: Message) -> _Decoded:
        ts_type, ms = m.timestamp()
        ms = ms if ts_type else 0
        self._note_lag(m.partition() or 0, ms)
        headers, readable = message_headers(m)
        if not readable:  # a producer other than stampline's: no client reads these headers
            rejected = self._rejected(m, UNREADABLE_HEADERS)
            return _Decoded("dead_letters", rejected, m.offset() or 0, True, ms, m)
        try:
            kind, table = decode_trail_message(m.value(), headers, self.settings.max_message_rows)
        except TrailFormatError as exc:
            rejected = self._rejected(m, str(exc))
            return _Decoded("dead_letters", rejected, m.offset() or 0, True, ms, m)
        problem = check_batch(kind, table)
        if problem is not None:  # the store would refuse it or change it: set it aside
            rejected = self._rejected(m, problem, TRAIL_VALUE_RULE)
            return _Decoded("dead_letters", rejected, m.offset() or 0, True, ms, m)
        return _Decoded(kind, table, m.offset() or 0, False, ms, m)

    def _write_retrying(self, partition: int, group: list[_Decoded], stop: threading.Event) -> bool:
        delay = self.settings.retry_initial_s
        while True:
            try:
                self._write(partition, group)
                return True
            except Exception as exc:  # a store error: retry, never drop
                # What was written before the failure is in the chain: read its head again.
                self.heads.pop(self.chain_id(partition), None)
                self.stats.retries += 1
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                log.warning(
                    "store write failed for %s[%d]@%d..%d, retrying in %.2fs: %s",
                    self.settings.trail_topic,
                    partition,
                    group[0].offset,
                    group[-1].offset,
                    delay,
                    exc,
                )
                self._note_lag(partition, group[0].broker_ms)
                self._wait_polling(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
                if stop.is_set() or (self.settings.trail_topic, partition) not in self._assigned:
                    return False

    def _write(self, partition: int, group: list[_Decoded]) -> None:
        """Write a group's messages not yet in the chain: one entry per kind, the dead letters
        last.

        A message's own kind's offsets say whether it is written; a message the store refused
        is set aside as a dead letter at its offset, so the dead letters' offsets must never
        pass a message of the group not yet written or set aside. Hence the order: when the
        store refuses a kind's batch, nothing of the dead letters that follow it is written
        yet, and the rest of the group is written one message at a time in offset order. A
        message whose kind's offsets do not reach it while the dead letters' do was set aside.
        """
        chain_id = self.chain_id(partition)
        head = self._head(partition)
        todo: dict[str, list[_Decoded]] = {}
        for d in group:
            if head.written(d.kind, d.offset):
                self.stats.skipped += 1
            else:
                todo.setdefault(d.kind, []).append(d)
        kinds = sorted(todo, key=lambda k: k == "dead_letters")
        for i, kind in enumerate(kinds):
            try:
                head = self._write_batch(chain_id, kind, todo[kind], head)
            except BatchRefusedError:
                # One message holds what the store refuses: write the rest one by one, and
                # set aside the one it refuses; the others are written.
                rest = sorted((d for k in kinds[i:] for d in todo[k]), key=lambda d: d.offset)
                for d in rest:
                    head = self._write_or_set_aside(chain_id, d, head)
                break
        self.heads[chain_id] = head

    def _write_batch(
        self, chain_id: str, kind: str, items: list[_Decoded], head: ChainHead
    ) -> ChainHead:
        table = pa.concat_tables([d.table for d in items])
        seq = self.store.write_batch(
            kind,
            table,
            chain_id=chain_id,
            source_offset=items[-1].offset,
            head=head,
            # Its observations came through _decode, which checked each message (the store
            # checks dead letters itself: a set-aside is built here, not read).
            checked=True,
        )
        written = self.store.written_head(chain_id) if seq else None
        head = written if written is not None else self.store.chain_head(chain_id)
        self.heads[chain_id] = head
        self._count(kind, items, table.num_rows)
        if kind == "observations":
            self._observe(table)
        return head

    def _write_or_set_aside(self, chain_id: str, d: _Decoded, head: ChainHead) -> ChainHead:
        """Write one message; if the store refuses its content, its dead letter instead
        (``trail.value``, with the store's reason): the message stays on the trail topic,
        where the dead letter names it."""
        try:
            return self._write_batch(chain_id, d.kind, [d], head)
        except BatchRefusedError as exc:
            if head.written("dead_letters", d.offset):  # set aside before a restart
                return head
            table = self._rejected(d.message, str(exc), TRAIL_VALUE_RULE)
            dead = _Decoded("dead_letters", table, d.offset, True, d.broker_ms, d.message)
            return self._write_batch(chain_id, "dead_letters", [dead], head)

    # ------------------------------------------------------------------ after a kill

    def _head(self, partition: int) -> ChainHead:
        """The chain's head: as this recorder last wrote it, else read from the store, where
        a batch a killed writer left without its ledger entry is completed first."""
        chain_id = self.chain_id(partition)
        head = self.heads.get(chain_id)
        if head is None:
            head = self._complete_orphan(partition, self.store.chain_head(chain_id))
            self.heads[chain_id] = head
        return head

    def _complete_orphan(self, partition: int, head: ChainHead) -> ChainHead:
        """Finish the batch a writer stopped between its rows and its ledger entry.

        Its rows carry the next sequence number; they came from the first messages of one
        kind the chain does not hold yet, which are still on the trail topic (offsets are
        committed after the ledger entry). Those same messages, read again in order until
        their rows add up to the orphan rows, make the same table, digest and deduplication
        token: the store drops the repeated insert (and its rollups) and the ledger entry is
        written. So whatever moment a kill chose, each trail message is written once.
        """
        chain_id = self.chain_id(partition)
        orphans = self.store.orphan_rows(chain_id, head.seq)
        if not orphans:
            return head
        if len(orphans) > 1:
            raise StoreError(f"{chain_id}: rows of two kinds after batch {head.seq}: {orphans}")
        ((kind, rows),) = orphans.items()
        items = self._read_orphan(partition, kind, rows, head)
        self._write_batch(chain_id, kind, items, head)
        log.warning(
            "completed batch %d of %s: %d %s rows from %s a stopped writer left unledgered",
            head.seq + 1,
            chain_id,
            rows,
            kind,
            where(self.settings.trail_topic, partition, items[0].offset),
        )
        return self.store.written_head(chain_id) or self.store.chain_head(chain_id)

    def _read_orphan(self, partition: int, kind: str, rows: int, head: ChainHead) -> list[_Decoded]:
        """The messages whose ``kind`` rows make the orphan batch: read from the committed
        offset by a consumer of its own (the group's position stays where it is)."""
        s = self.settings
        assert self._consumer is not None
        (at,) = self._consumer.committed([TopicPartition(s.trail_topic, partition)], timeout=10)
        start = at.offset if at.offset >= 0 else OFFSET_BEGINNING
        reader = Consumer(
            consumer_config(
                s.bootstrap_servers,
                f"{s.group_id}-recovery",
                {"isolation.level": "read_committed", **s.consumer, "enable.auto.commit": False},
            )
        )
        items: list[_Decoded] = []
        found = 0
        deadline = time.monotonic() + s.recovery_timeout_s
        try:
            reader.assign([TopicPartition(s.trail_topic, partition, start)])
            while found < rows:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"{self.chain_id(partition)}: found {found} of the {rows} {kind} rows "
                        f"written after batch {head.seq} on the trail topic"
                    )
                for m in reader.consume(100, 0.5):
                    if m.error() is not None or found >= rows:
                        continue
                    d = self._decode(m)
                    if _done(head, d):
                        continue
                    if d.kind == kind:
                        items.append(d)
                        found += d.kept_rows
                    elif kind == "dead_letters" and not items:
                        # The first message not in the chain is of another kind: the orphan
                        # is its set-aside (everything before it was written, see _write).
                        items.append(self._set_aside_again(d, head))
                        found += 1
        finally:
            reader.close()
        if found != rows:
            raise StoreError(
                f"{self.chain_id(partition)}: the {rows} {kind} rows written after batch "
                f"{head.seq} match no run of trail messages"
            )
        return items

    def _set_aside_again(self, d: _Decoded, head: ChainHead) -> _Decoded:
        """The dead letter a stopped writer set ``d`` aside as, the store having refused it:
        rebuilt with the orphan row's rule and reason (the store's, not asked again), it makes
        the same table, digest and deduplication token."""
        s = self.settings
        found = self.store.query(
            "SELECT rule_id, rule_version, reason FROM {db}.dead_letters "
            "WHERE chain_id = {c:String} AND batch > {s:UInt64} AND topic = {t:String} "
            "AND partition = {p:Int32} AND offset = {o:Int64}",
            {"c": head.chain_id, "s": head.seq, "t": s.trail_topic, "p": d.message.partition(),
             "o": d.offset},
        )  # fmt: skip
        if len(found) != 1:
            at = where(s.trail_topic, d.message.partition(), d.offset)
            raise StoreError(f"{head.chain_id}: no set-aside of {at} after batch {head.seq}")
        r = found[0]
        table = self._rejected(d.message, r["reason"], (r["rule_id"], int(r["rule_version"])))
        return _Decoded("dead_letters", table, d.offset, True, d.broker_ms, d.message)

    # ------------------------------------------------------------------ alerts topic

    def _write_alerts_retrying(
        self, tp: TopicPartition_, msgs: list[Message], stop: threading.Event
    ) -> bool:
        """Write one alerts partition's messages; retried like the trail, never dropped."""
        delay = self.settings.retry_initial_s
        while True:
            try:
                self._write_alerts(tp, msgs)
                return True
            except Exception as exc:  # a store error: retry, never drop
                self.heads.pop(self.chain_id(tp[1], tp[0]), None)
                self.stats.retries += 1
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                log.warning(
                    "store write failed for %s[%d]@%d..%d, retrying in %.2fs: %s",
                    tp[0], tp[1], msgs[0].offset(), msgs[-1].offset(), delay, exc,
                )  # fmt: skip
                self._wait_polling(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
                if stop.is_set() or tp not in self._assigned:
                    return False

    def _write_alerts(self, tp: TopicPartition_, msgs: list[Message]) -> None:
        assert self.alerts is not None
        src = self.chain_id(tp[1], tp[0])
        got = self.alerts.write(src, [(m.offset() or 0, m.value()) for m in msgs])
        self.stats.alerts_history += got.history
        self.stats.alerts_actions += got.actions
        self.stats.alerts_skipped += got.skipped
        if not got.unreadable:
            return
        # Unreadable: kept as dead letters of the alerts topic, chained per alerts partition
        # (the chain's own offsets make a re-read skip them).
        by_offset = {m.offset() or 0: m for m in msgs}
        head = self.heads.get(src) or self.store.chain_head(src)
        for offset, reason in got.unreadable:
            if head.written("dead_letters", offset):
                continue
            table = self._rejected(by_offset[offset], reason, ALERTS_FORMAT_RULE)
            self.store.write_batch(
                "dead_letters", table, chain_id=src, source_offset=offset, head=head
            )
            head = self.store.written_head(src) or self.store.chain_head(src)
            self.heads[src] = head
            self.stats.alerts_rejected += 1
            if self.metrics is not None:
                self.metrics.rejected.inc()

    # ------------------------------------------------------------------ observers

    def _observe(self, table: pa.Table) -> None:
        for o in self.observers:
            try:
                o.observe_table(table)
            except Exception:  # detection must never stop the store's writer
                self.stats.observer_errors += 1
                log.exception("trail observer failed on a batch")

    def _tick_observers(self) -> None:
        for o in self.observers:
            try:
                o.tick()
            except Exception:
                self.stats.observer_errors += 1
                log.exception("trail observer failed on a tick")

    def _count(self, kind: str, items: list[_Decoded], rows: int) -> None:
        self.stats.messages += len(items)
        rejected = sum(d.rejected for d in items)
        self.stats.rejected += rejected
        if kind == "observations":
            self.stats.rows += rows
        else:
            warned = sum(_warn_rows(d.table) for d in items)
            self.stats.warnings += warned
            self.stats.dead_letters += rows - warned
        if self.metrics is not None:
            self.metrics.rejected.inc(rejected)
            self.metrics.messages.inc(len(items))
            self.metrics.rows.labels(kind).inc(rows)

    def _rejected(self, m: Message, reason: str, rule: tuple[str, int] = TRAIL_FORMAT_RULE) -> Any:
        log.error(
            "%s message %s set aside (%s): %s",
            "alerts" if rule == ALERTS_FORMAT_RULE else "trail",
            where(m.topic(), m.partition(), m.offset()),
            rule[0],
            reason,
        )
        topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
        return dead_letter_table(
            [
                DeadLetter(
                    event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{topic}/{partition}/{offset}")),
                    # the message's own time: read again, it makes the same dead letter
                    received_ns=max(0, m.timestamp()[1]) * 1_000_000,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    provider="",
                    rule_id=rule[0],
                    rule_version=rule[1],
                    reason=reason,
                    value=m.value() or b"",
                )
            ]
        )

    def _wait_polling(self, seconds: float) -> None:
        """Wait, paused but polling: the consumer stays in its group and sees rebalances.
        Anything a poll returns meanwhile is put back by seeking (paused partitions return
        nothing new; this only guards a fetch that was already under way)."""
        assert self._consumer is not None
        self._set_paused(True)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            m = self._consumer.poll(min(0.1, max(0.0, until - time.monotonic())))
            if m is not None and m.error() is None and (m.topic(), m.partition()) in self._assigned:
                # Not ours to keep yet: rewind so it comes again after the write in hand.
                self._consumer.seek(
                    TopicPartition(m.topic() or "", m.partition() or 0, m.offset() or 0)
                )

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused or self._consumer is None:
            return
        assignment = self._consumer.assignment()
        if paused:
            self._consumer.pause(assignment)
            log.warning("store unavailable: trail partitions paused, lagging")
        else:
            self._consumer.resume(assignment)
            log.info("store back: trail partitions resumed")
        self._paused = paused

    def _commit(self) -> None:
        if not self._written or self._consumer is None:
            return
        written = self._written.items()
        offsets = [TopicPartition(*tp, o) for tp, o in written if tp in self._assigned]
        self._written.clear()
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=False)

    # ------------------------------------------------------------------ group

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._assigned.add((tp.topic, tp.partition))
            # Another recorder may have written this chain meanwhile: read its head afresh.
            self._forget(tp)
        if self._paused:
            _consumer.pause(partitions)
        log.info(
            "recorder assigned partitions=%s",
            ",".join(f"{t}[{p}]" for t, p in sorted(self._assigned)),
        )
        if not self._seeded and any(t == self.settings.trail_topic for t, _p in self._assigned):
            self._seed_observers()
        self.ready.set()

    def _seed_observers(self) -> None:
        """Rebuild the observers' state from the store, before the first trail message is
        read: here, not at start, so that time spent joining the group does not count as
        the trail's sources being idle."""
        self._seeded = True
        for o in self.observers:
            try:
                o.seed(self.store, f"{self.settings.trail_topic}/")
            except Exception:
                self.stats.observer_errors += 1
                log.exception("trail observer failed to seed")

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
            self._forget(tp)

    def _forget(self, tp: TopicPartition) -> None:
        chain = self.chain_id(tp.partition, tp.topic)
        self.heads.pop(chain, None)
        if self.alerts is not None and tp.topic == self.settings.alerts_topic:
            self.alerts.forget(chain)

    # ------------------------------------------------------------------ lag and heads

    def _note_lag(self, partition: int, broker_ms: int) -> None:
        """The trail of ``partition`` is as old as the message at ``broker_ms`` waiting."""
        lag = max(0.0, time.time() - broker_ms / 1000) if broker_ms > 0 else 0.0
        self.stats.lag_s = lag
        if self.metrics is not None:
            self.metrics.lag_seconds.labels(str(partition)).set(lag)

    def _caught_up(self) -> None:
        self.stats.lag_s = 0.0
        if self.metrics is not None:
            for t, p in self._assigned:
                if t == self.settings.trail_topic:
                    self.metrics.lag_seconds.labels(str(p)).set(0)

    def _on_stats(self, raw: str) -> None:
        assert self.metrics is not None
        try:
            stats = json.loads(raw)
            t = stats.get("topics", {}).get(self.settings.trail_topic, {})
            for pid, p in t.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if int(pid) >= 0 and lag >= 0:
                    self.metrics.lag_records.labels(pid).set(lag)
        except (ValueError, AttributeError, TypeError) as exc:
            log.debug("unreadable client statistics: %s", exc)

    def _maybe_publish_heads(self) -> None:
        if time.monotonic() - self._last_heads >= self.settings.heads_interval_s:
            self._publish_heads()

    def _publish_heads(self) -> None:
        """Send the head of every chain this recorder owns to the log and the heads topic."""
        self._last_heads = time.monotonic()
        owned = {c: h.seq for c, h in self.heads.items() if h.seq}
        for chain_id, head in sorted(self.heads.items()):
            if head.seq == 0:
                continue
            log.info(
                "chain head chain=%s seq=%d offset=%d head=%s",
                chain_id,
                head.seq,
                head.source_offset,
                head.chain,
            )
            if self._producer is not None and self.settings.heads_topic:
                body = PublishedHead(
                    chain_id, head.seq, head.chain, head.source_offset, time.time_ns(), owned
                ).message(self._key)
                self._producer.produce(self.settings.heads_topic, body, chain_id.encode())
                self.stats.heads_published += 1
        if self._producer is not None:
            self._producer.poll(0)


def _done(head: ChainHead, d: _Decoded) -> bool:
    """Whether the chain holds message ``d``: written as its kind, or set aside (a dead letter
    at its offset; see ``Recorder._write`` for why the dead letters' offsets tell)."""
    return head.written(d.kind, d.offset) or head.written("dead_letters", d.offset)


def _warn_rows(table: pa.Table) -> int:
    """The warn verdicts among a dead-letter message's rows (the store keeps them apart)."""
    if "severity" not in table.column_names:
        return 0
    return int(pc.sum(pc.equal(table.column("severity"), "warn")).as_py() or 0)
