"""The trail topic's message format: one Arrow IPC stream per message, versioned.

A sidecar (gate, tap) sends its trail rows to the trail topic instead of writing the store;
the recorder decodes them and writes the store. One message carries one table of one kind:

- value: an Arrow IPC *stream* (schema, then one or more record batches), LZ4-compressed
  buffers. The schema's metadata repeats the header fields, so a message saved to a file
  is still self-describing.
- headers: ``stampline.trail.version`` (``TRAIL_FORMAT_VERSION``, decimal), ``…kind``
  (``observations`` or ``dead_letters``), ``…rows`` (decimal row count) and ``…source``
  (the producing collector, e.g. ``gate@host``; informational).
- key: the producing collector's source name (so one collector's messages keep their order
  on one partition; nothing depends on it).

A reader refuses (as a dead letter of the trail, never by crashing) a message whose
version it does not know, whose kind is unknown, whose row count differs from the header's,
or whose columns do not match the kind's schema.

The columns are those of ``CANONICAL_SCHEMA`` (observations) and ``DEAD_LETTER_TRAIL_SCHEMA``.
Any change to the columns -- one added, removed, renamed, retyped or meaning something else --
is a new version: a reader compares a message's columns with its version's exactly, so a
message with a column its version lacks would be refused, and the version number is what
tells a reader whether it can read a message. A writer writes the newest version; a reader
reads every version it knows (``READABLE_VERSIONS``), filling a column an older version lacks
with its "not recorded" value. So recorders are upgraded before the sidecars that write to
them.

- Version 1: the observations' columns up to ``warnings``.
- Version 2: observations add ``rule_sha256`` (the rule files' hashes at verdict time; ``''``
  in a version 1 message: not recorded). Dead letters are unchanged.
- Version 3: observations add ``parent_stamps`` (a derived event's birth row: where each
  parent last left a stage, ``audit.encode_parent_stamps``; ``''`` in an older message: not
  recorded, and ``hotspots`` falls back to joining the parents' rows). Dead letters are
  unchanged.
- Version 4: observations add ``broker_time_type`` (whose clock ``broker_time`` is:
  ``CreateTime``, the producer's, or ``LogAppendTime``, the broker's; ``''`` where the record
  had no timestamp, and in an older message: not recorded). Dead letters are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

import pyarrow as pa

from stampline.audit._ledger import CANONICAL
from stampline.audit._model import DeadLetter
from stampline.audit.exceptions import AuditError

TRAIL_FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
H_TRAIL_VERSION = "stampline.trail.version"
H_TRAIL_KIND = "stampline.trail.kind"
H_TRAIL_ROWS = "stampline.trail.rows"
H_TRAIL_SOURCE = "stampline.trail.source"

TrailKind = Literal["observations", "dead_letters"]
KINDS: tuple[TrailKind, ...] = ("observations", "dead_letters")

VALUE_HEAD_BYTES = 256  # the store keeps this much of a dead letter's payload

# The observations' columns (the store's canonical table; see ``audit.canonical_table``).
CANONICAL_SCHEMA = pa.schema(
    [(name, pa.int64() if kind == "int" else pa.string()) for name, _, kind in CANONICAL]
)
# One observation as a sidecar builds it (``trail_row``): the values of CANONICAL_SCHEMA's
# columns in its order, the price as a float (the table keeps its bits).
TrailRow = tuple[
    str, str, str, int, int, int, int, int, int, int, str, str, int, int, int, str, str, int,
    float, str, str, int, str, int, str, str, str, str, str,
]  # fmt: skip


def trail_row(
    event_id: str,
    stage: str,
    prev_stage: str,  # the stamp before this one: "origin" for a first stamp, "" for none
    received: int,  # ns
    emitted: int,  # ns
    prev_emitted: int,  # ns
    origin: int,  # ns
    ingested: int,  # ns
    clock_err_ns: int,
    prev_clock_err_ns: int,
    host: str,
    topic: str,
    partition: int,
    offset: int,
    broker_time: int,  # ms
    provider: str,
    instrument: str,
    seq: int,
    price: float,  # NaN where the record has none
    outcome: str,  # "forwarded", "dead_lettered" or "observed"
    rule_id: str,  # the rule the record broke ("" for none)
    rule_version: int,
    parents: str,  # lowercase ids joined by commas
    authority: int,  # AUTHORITY_STAMPER or AUTHORITY_TAP
    clock_source: str,  # where clock_err_ns came from ("" when not said)
    warnings: str,  # the warn rules a forwarded record broke, "rule@vN" joined by commas
    rule_sha256: str,  # "rule@vN=HEX" joined by commas: the rule files' hashes at verdict time
    parent_stamps: str,  # a derived event's birth row: encode_parent_stamps; else ""
    broker_time_type: str,  # whose clock broker_time is: audit.broker_time_type(code)
) -> TrailRow:
    """The one way to make a trail row: its parameters are the canonical columns, in order.

    A plain tuple, and called by position where rows are made per record (gate, tap): over
    100k gate rows that costs ~0.56 µs CPU a row, less than the tuple the gate used to build
    by hand (~0.67), where a NamedTuple row costs ~1.3 (its ``__new__`` copies the values
    into a tuple subclass, which the garbage collector then keeps tracking) and a call by
    keyword 2-3.5. Call it by keyword where a row is rare. ``trail_fields`` reads a row's
    columns by name.
    """
    return (
        event_id, stage, prev_stage, received, emitted, prev_emitted, origin, ingested,
        clock_err_ns, prev_clock_err_ns, host, topic, partition, offset, broker_time, provider,
        instrument, seq, price, outcome, rule_id, rule_version, parents, authority,
        clock_source, warnings, rule_sha256, parent_stamps, broker_time_type,
    )  # fmt: skip


def trail_fields(*names: str) -> Callable[[TrailRow], Any]:
    """A getter of the named columns of a ``trail_row`` (a tuple of them for two or more);
    an unknown name raises ValueError when the getter is made, not when it is used."""
    return itemgetter(*(CANONICAL_SCHEMA.names.index(name) for name in names))


# Columns each older version lacks, with the value a reader fills in (all: "not recorded").
_ADDED_SINCE: dict[int, dict[str, str]] = {
    1: {"rule_sha256": "", "parent_stamps": "", "broker_time_type": ""},
    2: {"parent_stamps": "", "broker_time_type": ""},
    3: {"broker_time_type": ""},
}
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("received", pa.int64()),
        ("topic", pa.string()),
        ("partition", pa.int64()),
        ("offset", pa.int64()),
        ("provider", pa.string()),
        ("rule_id", pa.string()),
        ("rule_version", pa.int64()),
        ("reason", pa.string()),
        ("value_size", pa.int64()),
        ("value_head", pa.binary()),
    ]
)
# On the trail topic a dead-letter message also carries each row's severity: "reject" for a
# dead letter, "warn" for a forwarded record's broken warn rule (the store keeps those in
# ``warnings``, outside the dead letters' chain).
DEAD_LETTER_TRAIL_SCHEMA = DEAD_LETTER_SCHEMA.append(pa.field("severity", pa.string()))

# Each message stays well under a broker's default 1 MiB message limit, before compression.
TRAIL_MESSAGE_BYTES = 768 * 1024
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


class TrailFormatError(AuditError):
    """A trail message cannot be read: unknown version or kind, or its contents disagree."""


def dead_letter_table(rows: Sequence[DeadLetter]) -> pa.Table:
    """Dead letters as the table the trail topic carries and the store writes."""
    return pa.table(
        {
            "event_id": [r.event_id.lower() for r in rows],
            "received": pa.array([r.received_ns for r in rows], pa.int64()),
            "topic": [r.topic for r in rows],
            "partition": pa.array([r.partition for r in rows], pa.int64()),
            "offset": pa.array([r.offset for r in rows], pa.int64()),
            "provider": [r.provider for r in rows],
            "rule_id": [r.rule_id for r in rows],
            "rule_version": pa.array([r.rule_version for r in rows], pa.int64()),
            "reason": [r.reason for r in rows],
            "value_size": pa.array(
                [len(r.value) if r.value_size is None else r.value_size for r in rows], pa.int64()
            ),
            "value_head": pa.array([r.value[:VALUE_HEAD_BYTES] for r in rows], pa.binary()),
            "severity": [r.severity for r in rows],
        },
        schema=DEAD_LETTER_TRAIL_SCHEMA,
    )


@dataclass(frozen=True, slots=True)
class TrailMessage:
    """One encoded trail message, ready to produce."""

    kind: TrailKind
    rows: int
    value: bytes
    headers: list[tuple[str, str | bytes | None]]


def schema_for(kind: str, version: int = TRAIL_FORMAT_VERSION) -> pa.Schema:
    """The columns of a ``kind`` message of format ``version``."""
    if kind == "observations":
        missing = _ADDED_SINCE.get(version, {})
        return pa.schema([f for f in CANONICAL_SCHEMA if f.name not in missing])
    if kind == "dead_letters":
        return DEAD_LETTER_TRAIL_SCHEMA
    raise TrailFormatError(f"unknown trail kind {kind!r} (known: {', '.join(KINDS)})")


def message_rows(table: pa.Table, max_bytes: int = TRAIL_MESSAGE_BYTES) -> int:
    """The rows ``encode_trail_messages`` puts in each message of ``table``: as many as fit
    ``max_bytes`` (uncompressed) at the table's mean row size."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    return max(1, max_bytes // int(per_row))


def encode_trail_messages(
    kind: TrailKind, table: pa.Table, source: str, max_bytes: int = TRAIL_MESSAGE_BYTES
) -> list[TrailMessage]:
    """``table`` as trail messages of at most about ``max_bytes`` (uncompressed) each."""
    schema = schema_for(kind)
    table = table.select(schema.names).cast(schema)
    if table.num_rows == 0:
        return []
    step = message_rows(table, max_bytes)
    out = []
    for start in range(0, table.num_rows, step):
        part = table.slice(start, step)
        meta = {
            H_TRAIL_VERSION: str(TRAIL_FORMAT_VERSION),
            H_TRAIL_KIND: kind,
            H_TRAIL_ROWS: str(part.num_rows),
            H_TRAIL_SOURCE: source,
        }
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema.with_metadata(meta), options=_IPC) as writer:
            writer.write_table(part)
        out.append(
            TrailMessage(
                kind,
                part.num_rows,
                sink.getvalue().to_pybytes(),
                [(k, v.encode("utf-8", "replace")) for k, v in meta.items()],
            )
        )
    return out


def decode_trail_message(
    value: bytes | None,
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
    max_rows: int | None = None,
) -> tuple[TrailKind, pa.Table]:
    """A trail message's kind and table.

    ``max_rows`` refuses a bigger message before its rows are read (by its row header, and
    batch by batch should the header understate them), so a reader's memory stays bounded.

    Raises:
        TrailFormatError: the message is not a trail message this version can read.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    head = {k: _text(v) for k, v in pairs}
    text = head.get(H_TRAIL_VERSION)
    if text is None:
        raise TrailFormatError(f"not a trail message: no {H_TRAIL_VERSION} header")
    version = int(text) if text.isascii() and text.isdigit() else -1
    if version not in READABLE_VERSIONS:
        raise TrailFormatError(
            f"trail format version {text!r} is not supported (this recorder reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    kind = head.get(H_TRAIL_KIND, "")
    schema = schema_for(kind, version)
    try:
        rows = int(head.get(H_TRAIL_ROWS, ""))
    except ValueError:
        raise TrailFormatError(
            f"header {H_TRAIL_ROWS} is not a row count: {head.get(H_TRAIL_ROWS)!r}"
        ) from None
    if max_rows is not None and rows > max_rows:
        raise TrailFormatError(f"{rows:,} rows: more than the {max_rows:,} a message may hold")
    batches = []
    read = 0
    try:
        with pa.ipc.open_stream(value or b"") as reader:
            for batch in reader:
                read += batch.num_rows
                if read > rows:
                    raise TrailFormatError(f"header says {rows} rows, the table holds more")
                batches.append(batch)
            table = pa.Table.from_batches(batches, reader.schema)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TrailFormatError(f"value is not an Arrow IPC stream: {exc}") from None
    if table.num_rows != rows:
        raise TrailFormatError(f"header says {rows} rows, the table holds {table.num_rows}")
    if not table.schema.remove_metadata().equals(schema):
        raise TrailFormatError(
            f"columns do not match the {kind} schema of version {version}: got {table.schema.names}"
        )
    table = table.replace_schema_metadata(None)
    if kind == "observations" and version != TRAIL_FORMAT_VERSION:
        for name, fill in _ADDED_SINCE.get(version, {}).items():
            table = table.append_column(name, pa.array([fill] * table.num_rows, pa.string()))
        table = table.select(CANONICAL_SCHEMA.names)
    return kind, table  # type: ignore[return-value]


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
