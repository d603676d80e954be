"""The tap, first cut: reads topics as its own consumer group and records the stamps it finds.

It never produces, so it adds nothing to the audited pipeline's latency. Each stage stamp
in a record's headers becomes an observation at tap authority: where the stamping
collector wrote its own row (the gate does), that richer row is kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Message

from audit import AUTHORITY_TAP, PREV_ORIGIN, Observation
from collectors._gate import TrailSink
from collectors._kafka import consumer_config, take, where
from collectors._stamps import StageStamp, headers_of, read_stamps
from collectors.exceptions import StampError

log = logging.getLogger("stampline.tap")


@dataclass(frozen=True, slots=True)
class TapSettings:
    bootstrap_servers: str
    topics: tuple[str, ...]
    group_id: str = "stampline-tap"
    consume_batch: int = 1000
    poll_timeout_s: float = 0.1
    consumer: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TapStats:
    records: int = 0
    observations: int = 0
    unstamped: int = 0
    bad_stamps: int = 0


class Tap:
    """Records observations from stamped records until ``stop`` is set."""

    def __init__(self, settings: TapSettings, trail: TrailSink) -> None:
        self.settings = settings
        self.trail = trail
        self.stats = TapStats()
        self.ready = threading.Event()  # set once partitions are assigned

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        consumer = Consumer(consumer_config(s.bootstrap_servers, s.group_id, s.consumer))
        consumer.subscribe(list(s.topics), on_assign=lambda _c, _p: self.ready.set())
        try:
            while not stop.is_set():
                messages = take(consumer, s.consume_batch, s.poll_timeout_s)
                rows = self.observe(messages)
                if messages:
                    self.trail.write_observations(rows)
                    consumer.commit(asynchronous=False)
        finally:
            consumer.close()

    def observe(self, messages: Sequence[Message]) -> list[Observation]:
        """The observations for ``messages`` (counted in ``stats``)."""
        rows: list[Observation] = []
        for m in messages:
            if m.error() is not None:
                log.warning(
                    "consume error %s: %s", where(m.topic(), m.partition(), m.offset()), m.error()
                )
                continue
            self.stats.records += 1
            try:
                stamps = read_stamps(headers_of(m))
            except StampError as exc:
                self.stats.bad_stamps += 1
                log.warning("bad stamps %s: %s", where(m.topic(), m.partition(), m.offset()), exc)
                continue
            if stamps is None:
                self.stats.unstamped += 1
                continue
            ts_type, broker_ms = m.timestamp()
            # Each stamp's hop starts at the stamp before it; the first one's at the origin,
            # unless the event was derived (born at that stage: no hop into it).
            first = None if stamps.parents else StageStamp(PREV_ORIGIN, 0, stamps.origin_ns, 0)
            before = [first, *stamps.stages[:-1]]
            rows.extend(
                Observation(
                    event_id=stamps.event_id,
                    stage=st.stage,
                    received_ns=st.received_ns,
                    emitted_ns=st.emitted_ns,
                    origin_ns=stamps.origin_ns,
                    ingested_ns=stamps.ingest_ns,
                    clock_err_ns=st.clock_err_ns,
                    host=st.host,
                    topic=m.topic() or "",
                    partition=m.partition() or 0,
                    offset=m.offset() or 0,
                    broker_time_ms=broker_ms if ts_type else 0,
                    parents=stamps.parents,
                    authority=AUTHORITY_TAP,
                    prev_stage=prev.stage if prev else "",
                    prev_emitted_ns=prev.emitted_ns if prev else 0,
                    prev_clock_err_ns=prev.clock_err_ns if prev else 0,
                )
                for st, prev in zip(stamps.stages, before, strict=True)
            )
        self.stats.observations += len(rows)
        return rows
