"""How every report names a Kafka record's origin (STYLE.md: ``topic[partition]@offset``)."""

from __future__ import annotations


def where(topic: str | None, partition: int | None, offset: int | None) -> str:
    """``topic[partition]@offset``: how every report names a record's origin."""
    return f"{topic}[{partition}]@{offset}"
