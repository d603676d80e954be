"""Exactly-once output without broker transactions: output checkpoints and a recovery scan.

After each commit of an input partition ``t[p]`` the gate records, in a consumer group of
its own (``<group>.out.<t>.<p>``), how far each output partition had been written *before
it produced anything the commit does not cover*. When a gate takes ``t[p]`` over (after a
crash or a rebalance) it reads the output topics from those positions to their end and
collects the event ids already written there: a re-read record whose id is among them was
forwarded or dead-lettered before the crash, so it is not produced again (its trail row is
rewritten from the stamp found, which keeps the trail idempotent).

The positions are written after the input commit, so a crash between the two leaves older,
smaller positions: the scan reads more, never less. On a broker whose high watermark is
wrong (Tansu reports batch counts, smaller than offsets) the initial positions are smaller
too, which is again safe. What this cannot do is fence a zombie: it relies on the crashed
process being gone. Kafka transactions fence; use them where the broker implements them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from stampline.collectors._dlq import H_OFFSET, H_PARTITION, H_RULE_ID, H_RULE_VERSION, H_TOPIC
from stampline.collectors._kafka import CONSUMER_DEFAULTS, admin_config
from stampline.collectors._stamps import (
    H_EVENT_ID,
    H_STAMP,
    Headers,
    StageStamp,
    canonical_uuid,
    headers_of,
)
from stampline.collectors.exceptions import StampError

log = logging.getLogger("stampline.gate.recovery")

OutPositions = dict[tuple[str, int], int]  # (output topic, partition) -> next offset


@dataclass(frozen=True, slots=True)
class Written:
    """What a scan found for one event already written to an output topic."""

    topic: str
    stamp: StageStamp | None  # this gate stage's stamp on the written record
    rule_id: str | None = None  # a dead letter's rule (None: forwarded)
    rule_version: int = 0


Source = tuple[str, int, int]  # topic, partition, offset a record was read from


@dataclass(slots=True)
class Found:
    """What a scan found: forwarded records by event id, dead letters by their source."""

    by_id: dict[str, Written] = field(default_factory=dict)
    by_source: dict[Source, Written] = field(default_factory=dict)

    def update(self, other: Found) -> None:
        self.by_id.update(other.by_id)
        self.by_source.update(other.by_source)

    def __len__(self) -> int:
        return len(self.by_id) + len(self.by_source)


def checkpoint_group(group_id: str, topic: str, partition: int) -> str:
    return f"{group_id}.out.{topic}.{partition}"


class OutputLedger:
    """Writes and reads output checkpoints; scans outputs for already written events."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        outputs: tuple[str, ...],
        stage: str,
        client: Mapping[str, Any] | None = None,
        idle_s: float = 0.5,
        first_fetch_s: float = 3.0,
        clock_margin_ms: int = 2000,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.outputs = outputs
        self.stage = stage
        self.client = dict(client or {})
        self.idle_s = idle_s
        # A new consumer's first fetch can take longer than idle_s (metadata, connections):
        # "nothing came yet" is not "nothing is there" until this much time has passed.
        self.first_fetch_s = first_fetch_s
        self.clock_margin_ms = clock_margin_ms
        self._admin = AdminClient(admin_config(bootstrap, self.client))
        self._partitions: dict[str, list[int]] = {}

    def output_partitions(self) -> list[tuple[str, int]]:
        if not self._partitions:
            meta = self._admin.list_topics(timeout=10)
            for t in self.outputs:
                self._partitions[t] = sorted(meta.topics[t].partitions) if t in meta.topics else []
        return [(t, p) for t in self.outputs for p in self._partitions[t]]

    def save(self, inputs: Iterable[tuple[str, int]], positions: OutPositions) -> None:
        """Record ``positions`` for each input partition (fire and forget: stale is safe)."""
        tps = [TopicPartition(t, p, o) for (t, p), o in positions.items() if o >= 0]
        if not tps:
            return
        requests = [
            ConsumerGroupTopicPartitions(checkpoint_group(self.group_id, t, p), tps)
            for t, p in inputs
        ]
        # The admin API takes one group per call.
        for req in requests:
            for fut in self._admin.alter_consumer_group_offsets([req]).values():
                fut.add_done_callback(_log_failure)

    def load(self, topic: str, partition: int) -> OutPositions | None:
        """The positions saved for an input partition, or None when there are none."""
        group = checkpoint_group(self.group_id, topic, partition)
        req = ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p) for t, p in self.output_partitions()]
        )
        try:
            (fut,) = self._admin.list_consumer_group_offsets([req]).values()
            result = fut.result(10)
        except Exception as exc:  # a missing group is "no checkpoint", not a failure
            log.info("no output checkpoint group=%s: %s", group, exc)
            return None
        found = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}
        if not any(o >= 0 for o in found.values()):
            return None
        return found

    def scan(self, start: OutPositions, inputs: set[tuple[str, int]]) -> Found:
        """Event ids written to the outputs from ``start`` on, for records read from
        ``inputs``; a partition missing from ``start`` is read from its beginning."""
        consumer = Consumer(
            {
                **{k: v for k, v in CONSUMER_DEFAULTS.items() if k != "enable.auto.commit"},
                **self.client,
                "bootstrap.servers": self.bootstrap,
                "group.id": f"{self.group_id}.scan",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        found = Found()
        began = time.monotonic()
        read = 0
        try:
            tps = []
            for t, p in self.output_partitions():
                o = start.get((t, p), -1)
                tps.append(TopicPartition(t, p, o if o >= 0 else OFFSET_BEGINNING))
            consumer.assign(tps)
            # The end: a partition is done at its first record written after the scan began
            # (plus a margin for clock differences between gate hosts): live gates keep
            # writing, so "until idle" alone might never come. Quiet partitions end on idle.
            horizon_ms = int(time.time() * 1000) + self.clock_margin_ms
            open_parts = {(tp.topic, tp.partition) for tp in tps}
            last = time.monotonic() + self.first_fetch_s - self.idle_s
            while open_parts and time.monotonic() - last < self.idle_s:
                for m in consumer.consume(1000, 0.1):
                    where = (m.topic() or "", m.partition() or 0)
                    if m.error() is not None or where not in open_parts:
                        continue
                    if m.timestamp()[1] >= horizon_ms:
                        open_parts.discard(where)
                        continue
                    last = time.monotonic()  # only what can matter keeps the scan going
                    read += 1
                    self._note(found, m.topic() or "", headers_of(m), inputs)
        finally:
            consumer.close()
        log.info(
            "recovery scan read=%d already_written=%d seconds=%.2f",
            read,
            len(found),
            time.monotonic() - began,
        )
        return found

    def _note(
        self, found: Found, topic: str, headers: Headers, inputs: set[tuple[str, int]]
    ) -> None:
        """Add what one output record says about itself to ``found``.

        Only the headers this gate writes are read, and only where it writes them: the
        headers a record arrived with are kept on the output and are anybody's (a re-driven
        dead letter carries an earlier ``__connect.errors.*`` set; a hostile provider any
        value at all). The gate appends its own after them, so the last one is the gate's;
        and a forwarded record has no dead-letter headers of the gate's at all.
        """
        first_id: bytes | None = None
        last: dict[str, bytes] = {}
        for k, v in headers:
            if v is None:
                continue
            if k == H_EVENT_ID:
                if first_id is None:
                    first_id = v
            elif k == H_STAMP:
                if v.startswith(self._own_stamp):
                    last[k] = v
            elif k in _DEAD_LETTER_HEADERS:
                last[k] = v
        stamp = None
        if H_STAMP in last:
            try:
                stamp = StageStamp.decode(last[H_STAMP])
            except StampError:
                stamp = None
        if topic == self.outputs[-1] and topic != self.outputs[0]:  # the dead-letter topic
            source = _source(last)
            if source is None or (source[0], source[1]) not in inputs:
                return
            rule = last.get(H_RULE_ID, b"").decode("utf-8", "replace")
            found.by_source[source] = Written(
                topic, stamp, rule or "unknown", _int(last.get(H_RULE_VERSION)) or 0
            )
            return
        if first_id is None:
            return
        try:
            event_id = canonical_uuid(H_EVENT_ID, first_id)
        except StampError:
            return  # not written by this gate: it refuses records whose id is not a UUID
        found.by_id[event_id] = Written(topic, stamp)

    @property
    def _own_stamp(self) -> bytes:
        return b"stage=" + self.stage.encode() + b";"


_DEAD_LETTER_HEADERS = frozenset({H_TOPIC, H_PARTITION, H_OFFSET, H_RULE_ID, H_RULE_VERSION})


def _int(raw: bytes | None) -> int | None:
    if raw is None or not 0 < len(raw) <= 20 or not raw.isdigit():
        return None
    return int(raw)


def _source(last: dict[str, bytes]) -> Source | None:
    """A dead letter's source position, from the gate's own headers; None if unreadable."""
    partition, offset = _int(last.get(H_PARTITION)), _int(last.get(H_OFFSET))
    topic = last.get(H_TOPIC)
    if topic is None or partition is None or offset is None:
        return None
    return topic.decode("utf-8", "replace"), partition, offset


def _log_failure(fut: object) -> None:
    try:
        fut.result()  # type: ignore[attr-defined]
    except Exception as exc:
        log.warning("output checkpoint not saved (the next recovery scan reads more): %s", exc)
