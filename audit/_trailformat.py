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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from stampline.audit._ledger import CANONICAL
from stampline.audit._model import DeadLetter
from stampline.audit.exceptions import AuditError

TRAIL_FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
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
# Columns each older version lacks, with the value a reader fills in (all: "not recorded").
_ADDED_SINCE: dict[int, dict[str, str]] = {
    1: {"rule_sha256": "", "parent_stamps": ""},
    2: {"parent_stamps": ""},
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


def encode_trail_messages(
    kind: TrailKind, table: pa.Table, source: str, max_bytes: int = TRAIL_MESSAGE_BYTES
) -> list[TrailMessage]:
    """``table`` as trail messages of at most about ``max_bytes`` (uncompressed) each."""
    schema = schema_for(kind)
    table = table.select(schema.names).cast(schema)
    if table.num_rows == 0:
        return []
    per_row = max(1, table.nbytes // table.num_rows)
    step = max(1, max_bytes // per_row)
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
