"""The observation row: one sighting of one event by one stage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["forwarded", "dead_lettered", "observed"]

PREV_ORIGIN = "origin"  # prev_stage of a first stamp: the hop starts at the origin time

# Which of two rows for the same (event, stage) the store keeps: the stamper's own record
# beats a tap's reading of the same stamp from headers.
AUTHORITY_STAMPER = 2
AUTHORITY_TAP = 1
# SQL: a tap's own sighting, stage "<prefix>:<topic>" at tap authority (its readings of stamps
# in headers carry the stamping stage's name instead). Its `received` is the broker time.
TAP_SIGHTING = f"(authority = {AUTHORITY_TAP} AND endsWith(stage, concat(':', topic)))"

# Where one parent of a derived event last left a stage: (stage, emitted ns, that stamp's
# clock-error bound ns). ("", 0, 0): not known. A lineage hop runs from there to the derived
# event's `received`.
ParentStamp = tuple[str, int, int]
UNKNOWN_PARENT: ParentStamp = ("", 0, 0)

# Whose clock a row's ``broker_time`` is: the Kafka record timestamp's type, as the consumer
# gives it (confluent-kafka ``Message.timestamp()[0]``: 0 none, 1 CreateTime, 2
# LogAppendTime). CreateTime is the producer's clock when it made the record (what the
# producer says, or the producer library's clock); LogAppendTime is the broker's clock when
# it appended the record (the topic's ``message.timestamp.type``). "" where the record
# carried none, and on rows written before migration 032 (not recorded).
BrokerTimeType = Literal["", "CreateTime", "LogAppendTime"]
BROKER_TIME_TYPES: tuple[BrokerTimeType, ...] = ("", "CreateTime", "LogAppendTime")


def broker_time_type(code: int) -> BrokerTimeType:
    """The trail's name of a Kafka timestamp type code ("" for 0 or a code Kafka lacks)."""
    return BROKER_TIME_TYPES[code] if 0 < code < len(BROKER_TIME_TYPES) else ""


def broker_clock(time_type: str) -> str:
    """A broker time's type and whose clock it is, as reports print it."""
    if time_type == "LogAppendTime":
        return "LogAppendTime: the broker's clock"
    if time_type == "CreateTime":
        return "CreateTime: the producer's clock"
    if time_type.startswith("mixed: "):  # audit.providers_compare's name for several
        return f"{time_type}: not every record's time is on the same clock"
    return "timestamp type not recorded"


def encode_parent_stamps(stamps: Sequence[ParentStamp]) -> str:
    """The text form (the ``stampline.parent_stamps`` header's, and the trail's canonical
    column): ``stage/emitted_ns/err_ns`` per parent, ``-`` where not known, joined by commas."""
    return ",".join(f"{s}/{t}/{e}" if s else "-" for s, t, e in stamps)


def decode_parent_stamps(text: str) -> tuple[ParentStamp, ...]:
    """The inverse of ``encode_parent_stamps`` for text a stampline writer made (trusted:
    headers are read by ``stampline.collectors._stamps``, which validates)."""
    out: list[ParentStamp] = []
    for part in text.split(",") if text else ():
        if part == "-":
            out.append(UNKNOWN_PARENT)
        else:
            stage, emitted, err = part.rsplit("/", 2)
            out.append((stage, int(emitted), int(err)))
    return tuple(out)


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
    # The stamp before this one, so hop latency (received - prev_emitted) needs no join:
    # "origin" with the origin time for the first stage, "" when there is none (a derived
    # event is born at its stage), else the upstream stage's stamp and its host's bound.
    prev_stage: str = ""
    prev_emitted_ns: int = 0
    prev_clock_err_ns: int = 0
    price: float = math.nan  # the record's price where it has one (cross-provider divergence)
    # Where clock_err_ns came from (stampline.audit._clock.ClockBound.label()); "" when not said.
    clock_source: str = ""
    warnings: tuple[str, ...] = ()  # warn rules a forwarded record broke, "rule@vN"
    # The SHA-256 of the rule file each named rule (rule_id, warnings) was loaded from when
    # the verdict was made, "rule@vN=HEX"; built-in rules have no file and are left out.
    rule_sha256: tuple[str, ...] = ()
    # A derived event's birth row: where each of its parents last left a stage, aligned with
    # ``parents`` (its lineage hops); () on every other row.
    parent_stamps: tuple[ParentStamp, ...] = ()
    # Whose clock ``broker_time_ms`` is (``BROKER_TIME_TYPES``); "" with no broker time.
    broker_time_type: BrokerTimeType = ""


Severity = Literal["reject", "warn"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rule verdict the trail keeps with its reason.

    ``severity="reject"``: a rejected record (the DLQ topic keeps the bytes), stored in
    ``dead_letters``. ``severity="warn"``: a forwarded record broke a warn rule; stored in
    ``warnings``, one row per broken rule, without the payload (``value`` is ignored).
    """

    event_id: str
    received_ns: int
    topic: str
    partition: int
    offset: int
    provider: str
    rule_id: str
    rule_version: int
    reason: str
    value: bytes  # the value, or its head: the store keeps only the first bytes
    severity: Severity = "reject"
    value_size: int | None = None  # the whole value's size, when ``value`` is only its head
