"""Where the gate's records come from: a consumer of its raw topics, handing each batch over as
columns (``Taken``).

Two consumers give the same columns (docs/gate.md, "The compiled consumer"):

- ``CompiledSource``: stampline's own librdkafka handle (``stampline._native.GateSource``,
  native/src/source.rs), which makes a batch's columns in one call: no ``Message`` object per
  record, no method call per field. The gate's consumer on the compiled route.
- ``ConfluentSource``: confluent-kafka's ``Consumer``, the reference: the reference route's,
  an ``exactly_once`` gate's (its transactions need the consumer's group metadata), and any
  gate given a consumer setting only confluent-kafka takes (a callback).

Both call the gate back on a rebalance, on the consuming thread, inside ``take`` (and
``close``), with the partitions as ``(topic, partition)`` pairs; a revoke may commit through
the same source before the partitions go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import Consumer, Message, TopicPartition

from stampline._common import where
from stampline.collectors._kafka import forward_native_log, native_settings, take
from stampline.collectors._stamps import message_headers

if TYPE_CHECKING:
    from stampline.collectors._stamps import Headers

try:
    from stampline._native import GateSource
except ImportError:  # built without cargo: confluent-kafka's consumer only
    GateSource = None  # type: ignore[assignment,misc]

log = logging.getLogger("stampline.gate")

Partitions = list[tuple[str, int]]
OnRebalance = Callable[[Partitions], None]


@dataclass(slots=True)
class Taken:
    """Consumed records as columns, one item per record, as confluent-kafka's ``Message``
    gives each field (``timestamp()`` split in its type and its milliseconds), the bytes of
    their values and keys (``size``: what bounds a batch's memory), and the records whose
    headers cannot be read (``unreadable``, their indexes: a header name that is not UTF-8,
    which a hostile producer can send; their ``headers`` is None)."""

    values: list[bytes | None]
    keys: list[bytes | None]
    topics: list[str]
    partitions: list[int]
    offsets: list[int]
    time_types: list[int]
    times_ms: list[int]
    headers: list[Headers | None]
    size: int = 0
    unreadable: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, messages: Iterable[Message]) -> Taken:
        """The columns of confluent-kafka records; a consume error is logged, not taken."""
        taken = cls([], [], [], [], [], [], [], [])
        for m in messages:
            err = m.error()
            if err is not None:  # partition EOF events are off: every error is worth a line
                log.warning(
                    "consume error %s: %s", where(m.topic(), m.partition(), m.offset()), err
                )
                continue
            kind, ms = m.timestamp()
            headers, readable = message_headers(m)
            if not readable:
                taken.unreadable.append(len(taken.values))
            taken.values.append(m.value())
            taken.keys.append(m.key())
            taken.topics.append(m.topic() or "")
            taken.partitions.append(m.partition() or 0)
            taken.offsets.append(m.offset() or 0)
            taken.time_types.append(kind)
            taken.times_ms.append(ms)
            taken.headers.append(headers)
        taken.size = sum(len(v) for v in taken.values if v) + sum(len(k) for k in taken.keys if k)
        return taken

    @classmethod
    def joined(cls, chunks: Sequence[Taken]) -> Taken:
        """One batch of ``chunks``' records, in order."""
        if len(chunks) == 1:
            return chunks[0]
        taken = cls([], [], [], [], [], [], [], [])
        for c in chunks:
            taken.extend(c)
        return taken

    def extend(self, other: Taken) -> None:
        at = len(self.values)
        self.unreadable += [at + i for i in other.unreadable]
        self.values += other.values
        self.keys += other.keys
        self.topics += other.topics
        self.partitions += other.partitions
        self.offsets += other.offsets
        self.time_types += other.time_types
        self.times_ms += other.times_ms
        self.headers += other.headers
        self.size += other.size

    def one(self, i: int) -> Taken:
        """A batch of the ``i``th record alone."""
        return Taken(
            self.values[i : i + 1],
            self.keys[i : i + 1],
            self.topics[i : i + 1],
            self.partitions[i : i + 1],
            self.offsets[i : i + 1],
            self.time_types[i : i + 1],
            self.times_ms[i : i + 1],
            self.headers[i : i + 1],
            len(self.values[i] or b"") + len(self.keys[i] or b""),
            [0] if i in self.unreadable else [],
        )


class Source(Protocol):
    """What the gate asks of its consumer."""

    def take(self, max_records: int, max_bytes: int, timeout_s: float) -> Taken:
        """Up to ``max_records`` records: wait up to ``timeout_s`` for the first, then take
        only what is already fetched; the compiled consumer stops early once their values
        and keys reach ``max_bytes``."""
        ...

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit these next offsets, synchronously."""
        ...

    def pause(self, paused: bool) -> int:
        """Pause or resume every partition assigned now; how many there are."""
        ...

    def pause_these(self, partitions: Partitions) -> None: ...

    def high_watermark(self, topic: str, partition: int, timeout_s: float) -> int: ...

    def group_metadata(self) -> Any:
        """The consumer's group metadata, for a transaction's offsets (the reference's)."""
        ...

    def close(self) -> None: ...


class ConfluentSource:
    """confluent-kafka's consumer, the reference."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        on_assign: OnRebalance,
        on_revoke: OnRebalance,
    ) -> None:
        self._consumer = Consumer(config)
        self._consumer.subscribe(
            list(topics),
            on_assign=lambda _c, parts: on_assign(_pairs(parts)),
            on_revoke=lambda _c, parts: on_revoke(_pairs(parts)),
        )

    def take(self, max_records: int, max_bytes: int, timeout_s: float) -> Taken:
        # confluent-kafka takes a batch whole; the caller bounds the batches it joins
        taken = Taken.of(take(self._consumer, max_records, timeout_s))
        forward_native_log()  # the gate's producer may be compiled where its consumer is not
        return taken

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=False,
        )

    def pause(self, paused: bool) -> int:
        assignment = self._consumer.assignment()
        if paused:
            self._consumer.pause(assignment)
        else:
            self._consumer.resume(assignment)
        return len(assignment)

    def pause_these(self, partitions: Partitions) -> None:
        self._consumer.pause([TopicPartition(t, p) for t, p in partitions])

    def high_watermark(self, topic: str, partition: int, timeout_s: float) -> int:
        _low, high = self._consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
        return int(high)

    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        self._consumer.close()


class CompiledSource:
    """stampline's own librdkafka consumer (``GateSource``), batch-wise."""

    def __init__(self, source: GateSource) -> None:
        self._source = source

    def take(self, max_records: int, max_bytes: int, timeout_s: float) -> Taken:
        (values, keys, topics, partitions, offsets, types, times, headers, size, errors,
         unreadable) = self._source.take(max_records, max_bytes, timeout_s)  # fmt: skip
        forward_native_log()  # the gate's compiled producer's too: one queue for the process
        for error in errors:
            log.warning("consume error: %s", error)
        return Taken(
            values, keys, topics, partitions, offsets, types, times, headers, size, unreadable
        )

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self._source.commit([(t, p, o) for (t, p), o in offsets.items()])

    def pause(self, paused: bool) -> int:
        return self._source.pause(paused)

    def pause_these(self, partitions: Partitions) -> None:
        self._source.pause_these(partitions)

    def high_watermark(self, topic: str, partition: int, timeout_s: float) -> int:
        return self._source.high_watermark(topic, partition, timeout_s)

    def group_metadata(self) -> Any:
        raise NotImplementedError("transactions take confluent-kafka's consumer")

    def close(self) -> None:
        self._source.close()
        forward_native_log()


def open_source(
    bootstrap: str,
    group_id: str,
    config: dict[str, Any],
    topics: Sequence[str],
    on_assign: OnRebalance,
    on_revoke: OnRebalance,
    *,
    compiled: bool,
    on_stats: Callable[[str], None] | None = None,
) -> tuple[Source, str]:
    """A consumer subscribed to ``topics``, and why it is confluent-kafka's ("" when it is
    compiled): ``compiled`` asks for stampline's own where the module has it and librdkafka
    takes every setting of ``config`` (stampline's consumer settings and the user's)."""
    why = "not asked for" if not compiled else ""
    if not why and GateSource is None:
        why = "no compiled consumer"
    settings, refused = native_settings(config)
    if not why and refused is not None:
        why = f"consumer setting {refused!r}"
    if not why:
        try:
            native = GateSource(
                bootstrap,
                group_id,
                settings,
                list(topics),
                on_assign=on_assign,
                on_revoke=on_revoke,
                on_stats=on_stats,
            )
            return CompiledSource(native), ""
        except ValueError as exc:  # a setting librdkafka refused: confluent-kafka says it
            why = f"consumer settings: {exc}"
    if on_stats is not None:
        config = {**config, "stats_cb": on_stats}
    return ConfluentSource(config, topics, on_assign, on_revoke), why


def _pairs(partitions: list[TopicPartition]) -> Partitions:
    return [(tp.topic, tp.partition) for tp in partitions]
