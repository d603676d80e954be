"""What the gate checks about the broker before it takes a record: how big a record each
output topic accepts, and whether the broker honours transaction markers.

Both are facts a gate cannot learn safely at run time: a record refused for its size after
it was judged would stop the gate on every restart, and ``exactly_once`` on a broker whose
``read_committed`` readers see aborted records is a promise the gate cannot keep.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from stampline.collectors._kafka import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, admin_config
from stampline.collectors._stamps import Headers
from stampline.collectors.exceptions import BrokerCheckError

log = logging.getLogger("stampline.gate.preflight")

# What librdkafka counts against message.max.bytes beyond key, value and header bytes: the
# record batch header (61 bytes) and one record's framing, with room to spare.
RECORD_OVERHEAD = 512
HEADER_OVERHEAD = 16  # framing of one header (varints for the lengths, rounded up)
# The headers the gate itself adds to a record (stamps, warn flags, a dead letter's reasons
# and source): bounded because every part of them is (see _dlq.MAX_REASON).
GATE_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Bytes a record may have coming in, and what each output topic takes going out."""

    max_value_bytes: int = 1_048_576
    max_key_bytes: int = 64 * 1024
    max_header_bytes: int = 64 * 1024
    clean_bytes: int | None = None  # the clean topic's max.message.bytes (None: not known)
    dead_letter_bytes: int | None = None

    @property
    def producer_bytes(self) -> int:
        """librdkafka's message.max.bytes for the gate's producer: the largest record the gate
        accepts, with its key, its headers and the gate's own."""
        return (
            self.max_value_bytes
            + self.max_key_bytes
            + self.max_header_bytes
            + GATE_HEADER_BYTES
            + RECORD_OVERHEAD
        )

    def out_limit(self, dead_letter: bool) -> int:
        topic = self.dead_letter_bytes if dead_letter else self.clean_bytes
        return min(self.producer_bytes, topic) if topic else self.producer_bytes


def header_bytes(headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """Bytes ``headers`` take in a record, framing included."""
    if not headers:
        return 0
    return sum(len(k) + len(v or b"") + HEADER_OVERHEAD for k, v in headers)


def record_bytes(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    """What librdkafka counts of a record against message.max.bytes (an upper estimate)."""
    return len(key or b"") + len(value or b"") + header_bytes(headers) + RECORD_OVERHEAD


def topic_limits(
    bootstrap: str,
    topics: Iterable[str],
    client: Mapping[str, Any] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, int | None]:
    """Each topic's ``max.message.bytes``, or None where the broker does not say (or does not
    answer within ``timeout_s``: the gate then starts on the input limits alone)."""
    admin = AdminClient(admin_config(bootstrap, client))
    out: dict[str, int | None] = {}
    for topic in topics:
        try:
            (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
            entry = future.result(timeout_s).get("max.message.bytes")
            out[topic] = int(entry.value) if entry is not None and entry.value else None
        except (KafkaException, ValueError, TypeError, TimeoutError) as exc:
            log.info("max.message.bytes of topic=%s not known: %r", topic, exc)
            out[topic] = None
    return out


def check_limits(limits: Limits, clean_topic: str, dead_letter_topic: str) -> None:
    """Say clearly what the output topics will not take; refuse what cannot work.

    Raises:
        BrokerCheckError: the dead-letter topic cannot take even a truncated dead letter.
    """
    if limits.dead_letter_bytes is not None and limits.dead_letter_bytes < 2 * GATE_HEADER_BYTES:
        raise BrokerCheckError(
            f"topic {dead_letter_topic!r} accepts records of at most "
            f"{limits.dead_letter_bytes:,} bytes (max.message.bytes): a dead letter needs "
            f"{2 * GATE_HEADER_BYTES:,}; raise the topic's max.message.bytes"
        )
    want = limits.max_value_bytes + GATE_HEADER_BYTES + RECORD_OVERHEAD
    if limits.clean_bytes is not None and limits.clean_bytes < want:
        log.warning(
            "topic=%s max.message.bytes=%d is below what gate.max_message_bytes=%d needs "
            "(%d with stamps): larger records will be dead-lettered as record.size",
            clean_topic,
            limits.clean_bytes,
            limits.max_value_bytes,
            want,
        )
    if limits.dead_letter_bytes is not None and limits.dead_letter_bytes < limits.producer_bytes:
        log.warning(
            "topic=%s max.message.bytes=%d: dead letters larger than that are written "
            "truncated (the original stays at its source offset)",
            dead_letter_topic,
            limits.dead_letter_bytes,
        )


def probe_transactions(
    bootstrap: str,
    topic: str,
    client: Mapping[str, Any] | None = None,
    timeout_s: float = 20.0,
) -> None:
    """Check that the broker hides an aborted transaction from ``read_committed`` readers.

    Writes one record in a transaction that it aborts, then one in a transaction that it
    commits, to ``topic`` (created with one partition when missing), and reads the
    partition back as a ``read_committed`` consumer: the committed record must come, the
    aborted one must not.

    Raises:
        BrokerCheckError: the broker showed the aborted record, or the probe could not run.
    """
    extra = dict(client or {})
    admin = AdminClient(admin_config(bootstrap, extra))
    try:
        futures = admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=10)
        for future in futures.values():
            try:
                future.result(15)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    except KafkaException as exc:
        raise BrokerCheckError(
            f"the transaction probe could not create topic {topic!r}: {exc}"
        ) from None
    run = uuid.uuid4().hex.encode()
    producer = Producer(
        {
            **PRODUCER_DEFAULTS,
            **extra,
            "bootstrap.servers": bootstrap,
            "transactional.id": f"stampline-probe-{run.decode()}",
        }
    )
    try:
        producer.init_transactions(timeout_s)
        producer.begin_transaction()
        producer.produce(topic, b"aborted", run, partition=0)
        producer.flush(timeout_s)
        producer.abort_transaction(timeout_s)
        producer.begin_transaction()
        producer.produce(topic, b"committed", run, partition=0)
        producer.commit_transaction(timeout_s)
    except KafkaException as exc:
        raise BrokerCheckError(f"the broker refused a probe transaction: {exc}") from None
    seen = _read_run(bootstrap, topic, run, extra, timeout_s)
    if b"aborted" in seen:
        raise BrokerCheckError(
            "the broker shows records of aborted transactions to read_committed readers "
            "(it does not honour transaction markers): delivery exactly_once cannot be kept "
            "on it; use gate.delivery: at_least_once (idempotent producer and recovery scan)"
        )
    if b"committed" not in seen:
        raise BrokerCheckError(
            f"a committed probe record did not arrive within {timeout_s:.0f} s: "
            "the broker's transactions cannot be verified"
        )


def _read_run(
    bootstrap: str, topic: str, run: bytes, client: Mapping[str, Any], timeout_s: float
) -> list[bytes]:
    consumer = Consumer(
        {
            **{k: v for k, v in CONSUMER_DEFAULTS.items() if k != "enable.auto.commit"},
            **client,
            "bootstrap.servers": bootstrap,
            "group.id": f"stampline-probe-{run.decode()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    seen: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while b"committed" not in seen and time.monotonic() < deadline:
            seen.extend(
                m.value() or b""
                for m in consumer.consume(1000, 0.2)
                if m.error() is None and m.key() == run
            )
    finally:
        consumer.close()
    return seen
