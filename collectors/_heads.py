"""Reading the chain heads the recorders published (``audit verify --published-heads``)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from stampline._common import where
from stampline.audit import PublishedHead

log = logging.getLogger("stampline.recorder")


def read_heads(
    bootstrap: str, topic: str, timeout_s: float = 5.0, extra: dict[str, Any] | None = None
) -> list[PublishedHead]:
    """Every head published on ``topic``, each partition in the order it was published (a
    chain's heads share a partition: they are keyed by the chain id). An unreadable message
    is logged with where it is and left out."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"stampline-heads-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **(extra or {}),
        }
    )
    found: list[PublishedHead] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or not meta.partitions:
            return found
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        last = time.monotonic()
        while time.monotonic() - last < timeout_s:
            for m in consumer.consume(500, 0.2):
                if m.error() is not None:
                    continue
                last = time.monotonic()
                at = where(m.topic(), m.partition(), m.offset())
                try:
                    found.append(PublishedHead.from_message(m.value() or b"", at))
                except ValueError as exc:  # orjson's decode error is a ValueError too
                    log.warning("unreadable head %s reason=%s", at, exc)
    finally:
        consumer.close()
    return found
