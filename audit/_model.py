"""The observation row: one sighting of one event by one stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["forwarded", "dead_lettered", "observed"]

# Which of two rows for the same (event, stage) the store keeps: the stamper's own record
# beats a tap's reading of the same stamp from headers.
AUTHORITY_STAMPER = 2
AUTHORITY_TAP = 1


@dataclass(frozen=True, slots=True)
class Observation:
    """One (event, stage) sighting. Times are integer nanoseconds since the Unix epoch."""

    event_id: str
    stage: str
    received_ns: int
    emitted_ns: int
    origin_ns: int
    ingested_ns: int
    clock_err_ns: int
    host: str = ""
    topic: str = ""
    partition: int = -1
    offset: int = -1
    broker_time_ms: int = 0
    provider: str = ""
    instrument: str = ""
    seq: int = -1
    outcome: Outcome = "observed"
    rule_id: str = ""
    rule_version: int = 0
    parents: tuple[str, ...] = field(default_factory=tuple)
    authority: int = AUTHORITY_STAMPER


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected record, as the trail keeps it (the DLQ topic keeps the bytes)."""

    event_id: str
    received_ns: int
    topic: str
    partition: int
    offset: int
    provider: str
    rule_id: str
    rule_version: int
    reason: str
    value: bytes
