"""The gate: the inline sidecar between a provider's raw feed and the clean topic.

For each record: stamp ingestion, read the origin time, run the rules, then forward it with
stamps to the clean topic or dead-letter it with the reason, and record one observation.
Offsets are committed only after the forwarded records are acknowledged by the broker and
the trail rows are written, so a crash replays the uncommitted tail: at-least-once to the
topics, exactly-once in the trail (deterministic event ids, idempotent rows).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from math import nan
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from audit import PREV_ORIGIN, DeadLetter, Observation
from collectors._dlq import dead_letter_headers
from collectors._ids import source_event_id
from collectors._kafka import consumer_config, producer_config, take, where
from collectors._stamps import StageStamp, Stamps, append_stamp, headers_of, read_stamps
from collectors.exceptions import DeliveryError, StampError
from rules import Failure, RuleSet, RulesHolder, Verdict

log = logging.getLogger("stampline.gate")

STAMP_CONTRACT_RULE = ("record.stamps", 1)
H_WARN = "stampline.warn"  # on a forwarded record: the warn rules it broke, id@vN, comma-separated


class TrailSink(Protocol):
    """Where the gate writes its trail: the audit store, or anything with the same calls."""

    def write_observations(self, rows: Sequence[Observation]) -> None: ...

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None: ...


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


@dataclass(slots=True)
class GateStats:
    """Running counts. Other threads read them for progress; a read may be a batch behind."""

    events_in: int = 0
    forwarded: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    warned: Counter[str] = field(default_factory=Counter)
    flushes: int = 0

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())


class Gate:
    """Runs until ``stop`` is set, then flushes, commits and closes its clients."""

    def __init__(
        self, settings: GateSettings, rules: RuleSet | RulesHolder, trail: TrailSink
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.trail = trail
        self.stats = GateStats()
        self._observations: list[Observation] = []
        self._dead: list[DeadLetter] = []
        self._offsets: dict[tuple[str, int], int] = {}
        self._oldest_pending = 0.0
        self._delivery_errors: list[str] = []
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self.ready = threading.Event()  # set once partitions are assigned

    def run(
        self, stop: threading.Event, on_flush: Callable[[GateStats], None] | None = None
    ) -> None:
        """Consume until ``stop`` is set.

        Raises:
            DeliveryError: the broker refused a record; nothing past the last good flush
                was committed, so a restart resumes there.
        """
        s = self.settings
        self._producer = Producer(producer_config(s.bootstrap_servers, s.producer))
        self._consumer = Consumer(consumer_config(s.bootstrap_servers, s.group_id, s.consumer))
        self._consumer.subscribe(
            list(s.raw_topics), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        log.info("gate started topics=%s group=%s", ",".join(s.raw_topics), s.group_id)
        try:
            while not stop.is_set():
                messages = take(self._consumer, s.consume_batch, s.poll_timeout_s)
                if messages:
                    self._process(messages)
                if self._due():
                    self._flush()
                    if on_flush is not None:
                        on_flush(self.stats)
            self._flush()
        finally:
            self._consumer.close()
            self._producer.flush(10)
            log.info(
                "gate stopped in=%d forwarded=%d dead_lettered=%d",
                self.stats.events_in,
                self.stats.forwarded,
                self.stats.dead_lettered_total,
            )

    def _due(self) -> bool:
        if not self._observations:
            return False
        if len(self._observations) >= self.settings.flush_rows:
            return True
        return time.monotonic() - self._oldest_pending >= self.settings.flush_interval_s

    def _process(self, messages: list[Message]) -> None:
        assert self._producer is not None
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
        if not self._observations:
            self._oldest_pending = time.monotonic()
        # One rule set per batch: a reload takes effect from the next batch on.
        rules = self.rules.current
        verdicts = rules.evaluate_batch(
            [m.value() for m in good],
            received,
            [m.topic() or "" for m in good],
            [headers_of(m) for m in good],
        )
        for m, verdict in zip(good, verdicts, strict=True):
            self._handle(m, verdict, received)
            self._offsets[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
        self.stats.events_in += len(good)
        self._producer.poll(0)

    def _handle(self, m: Message, verdict: Verdict, received: int) -> None:
        s = self.settings
        assert self._producer is not None
        topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
        ts_type, broker_ms = m.timestamp()
        headers = headers_of(m)
        try:
            prior = read_stamps(headers)
        except StampError as exc:
            prior = None
            if verdict.ok:  # a broken stamp is a broken contract: dead-letter it, say why
                verdict = replace(verdict, failures=(Failure(*STAMP_CONTRACT_RULE, str(exc)),))
        event_id = prior.event_id if prior else source_event_id(topic, partition, offset, broker_ms)
        origin = prior.origin_ns if prior and prior.origin_ns else verdict.origin_ns
        ingested = prior.ingest_ns if prior and prior.ingest_ns else received
        emitted = time.time_ns()
        stamp = StageStamp(s.stage, received, emitted, s.clock_err_ns, s.host)
        # The hop into this gate starts at the last upstream stamp, else at the origin.
        upstream = prior.stages[-1] if prior and prior.stages else None
        price = (verdict.payload or {}).get("price")
        # A record stamped upstream keeps its stamps and gains one; a new one gets them all.
        stamp_headers = (
            append_stamp([], stamp)
            if prior
            else Stamps(event_id, origin, ingested, s.clock_err_ns, stages=(stamp,)).headers()
        )
        row = Observation(
            event_id=event_id,
            stage=s.stage,
            received_ns=received,
            emitted_ns=emitted,
            origin_ns=origin,
            ingested_ns=ingested,
            clock_err_ns=s.clock_err_ns,
            host=s.host,
            topic=topic,
            partition=partition,
            offset=offset,
            broker_time_ms=broker_ms if ts_type else 0,
            provider=verdict.provider,
            instrument=verdict.instrument,
            seq=verdict.seq,
            outcome="forwarded",
            parents=prior.parents if prior else (),
            # no origin time (an unparseable record): no hop into the gate to measure
            prev_stage=upstream.stage if upstream else PREV_ORIGIN if origin else "",
            prev_emitted_ns=upstream.emitted_ns if upstream else origin,
            prev_clock_err_ns=upstream.clock_err_ns if upstream else 0,
            price=float(price) if isinstance(price, int | float) and price is not True else nan,
        )
        if verdict.ok:
            warn: list[tuple[str, bytes]] = []
            if verdict.warnings:
                flags = ",".join(f"{f.rule_id}@v{f.rule_version}" for f in verdict.warnings)
                warn = [(H_WARN, flags.encode())]
                for f in verdict.warnings:
                    self.stats.warned[f.rule_id] += 1
            self._producer.produce(
                s.clean_topic,
                m.value(),
                m.key(),
                headers=[*headers, *warn, *stamp_headers],
                on_delivery=self._delivered,
            )
            self.stats.forwarded += 1
            self._observations.append(row)
            return
        failure = verdict.first
        log.info(
            "dead-letter %s rule=%s v%d reason=%s",
            where(topic, partition, offset),
            failure.rule_id,
            failure.rule_version,
            failure.reason,
        )
        dl_headers = dead_letter_headers(
            headers,
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
        self._observations.append(
            replace(
                row,
                outcome="dead_lettered",
                rule_id=failure.rule_id,
                rule_version=failure.rule_version,
            )
        )
        self._dead.append(
            DeadLetter(
                event_id=event_id,
                received_ns=received,
                topic=topic,
                partition=partition,
                offset=offset,
                provider=verdict.provider,
                rule_id=failure.rule_id,
                rule_version=failure.rule_version,
                reason=failure.reason,
                value=m.value() or b"",
            )
        )

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(
                f"{where(msg.topic(), msg.partition(), msg.offset())}: {err}"
            )

    def _flush(self) -> None:
        """Make everything processed so far durable, then commit its offsets."""
        if not self._offsets:
            return
        assert self._producer is not None
        assert self._consumer is not None
        remaining = self._producer.flush(30)
        if remaining or self._delivery_errors:
            errors = "; ".join(self._delivery_errors[:5]) or f"{remaining} records unacknowledged"
            raise DeliveryError(
                f"broker did not take every record, offsets not committed: {errors}"
            )
        self.trail.write_observations(self._observations)
        self.trail.write_dead_letters(self._dead)
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in self._offsets.items()],
            asynchronous=False,
        )
        self._observations = []
        self._dead = []
        self._offsets = {}
        self.stats.flushes += 1

    def _on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self.ready.set()

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # Commit what was processed before the partitions move to another gate.
        self._flush()
