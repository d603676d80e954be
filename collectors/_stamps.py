"""The stamping contract, version 1: what stampline writes into Kafka headers.

Stamps travel in headers; the payload is never touched. Values are ASCII so that any
Kafka tool (kcat, the console consumer) shows them as they are.

    stampline.v             "1"                    contract version
    stampline.event_id      UUID                   the event's identity, kept by every stage
    stampline.origin_ns     decimal ns since epoch when the event was born at its source
    stampline.ingest_ns     decimal ns             when stampline first took custody of it
    stampline.clock_err_ns  decimal ns             clock-error bound of the host that ingested it
    stampline.stamp         stage=…;in=…;out=…;err=…;host=…[;src=…]
                                                   one per stage, appended in order, never replaced;
                                                   src= (optional): where err= came from,
                                                   configured | chrony | fallback
    stampline.parents       UUID,UUID,…            lineage: the events a derived event was made from
    stampline.parent_stamps stage/out/err,…        optional, aligned with parents: where each
                                                   parent last left a stage (its latest stamp's
                                                   stage, out= and err=; "origin/origin_ns/0"
                                                   for a parent with no stage stamp, "-" when
                                                   not known), so a lineage hop needs no join
    traceparent             W3C trace context      trace id = the event id's hex digits
    stampline.late_ns       decimal ns             only on late events: how far behind its
                                                   provider's event-time watermark it was born

Whatever comes in these headers came from outside: ``read_stamps`` is the boundary, and what it
returns can be trusted by the rest of the code (times inside ``PLAUSIBLE_NS``, which the
trail's Int64 and DateTime64(9) columns hold; ids and parents canonical UUIDs; stage names and
hosts short ASCII). Anything else is a ``StampError``, which the gate turns into a
``record.stamps`` dead letter.
"""

from __future__ import annotations

import logging
import operator
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stampline.audit import PREV_ORIGIN, UNKNOWN_PARENT, ParentStamp, encode_parent_stamps
from stampline.collectors._ids import trace_id_of
from stampline.collectors.exceptions import StampError

try:
    from stampline import _native
except ImportError:  # built without cargo (docs/native.md): the Python reference reads
    _native = None  # type: ignore[assignment]
else:
    if not hasattr(_native, "read_stamps_batch"):  # built before the reader (`./dev setup`)
        _native = None  # type: ignore[assignment]

log = logging.getLogger("stampline.collectors.stamps")

CONTRACT_VERSION = 1

H_VERSION = "stampline.v"
H_EVENT_ID = "stampline.event_id"
H_ORIGIN = "stampline.origin_ns"
H_INGEST = "stampline.ingest_ns"
H_CLOCK_ERR = "stampline.clock_err_ns"
H_STAMP = "stampline.stamp"
H_PARENTS = "stampline.parents"
H_PARENT_STAMPS = "stampline.parent_stamps"
H_TRACEPARENT = "traceparent"
H_LATE = "stampline.late_ns"

STAMP_HEADERS = frozenset(
    {H_VERSION, H_EVENT_ID, H_ORIGIN, H_INGEST, H_CLOCK_ERR, H_STAMP, H_PARENTS, H_PARENT_STAMPS}
)

# Kafka headers as confluent-kafka gives them; a header value may be null.
Headers = list[tuple[str, bytes | None]]

_READ = STAMP_HEADERS | {H_TRACEPARENT}  # the headers read_stamps takes (first one wins)

_STAGE_NAME = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")  # \Z: `$` would let a trailing newline in
_HOST = re.compile(r"\A[\x21-\x3a\x3c-\x7e]{0,255}\Z")  # printable ASCII without ';' or space

# Times a stamp may hold: 2000-01-01 to 2100-01-01 UTC, in ns. Far inside Int64 and the
# trail's DateTime64(9) (1900-2262), and wide enough for any clock that is merely wrong.
PLAUSIBLE_NS = (946_684_800 * 10**9, 4_102_444_800 * 10**9)
MAX_CLOCK_ERR_NS = 86_400 * 10**9  # a bound over a day is no bound
MAX_STAGES = 64  # stage stamps on one record
MAX_PARENTS = 1024  # lineage ids on one record
# Where a stage stamp's bound came from (``src=``; audit.ClockBound's kinds a stamper can
# know). Optional: a stamp without it (written before it existed) says nothing.
BOUND_SOURCES = frozenset({"configured", "chrony", "fallback"})
# What the trail records for a stamp's ``fallback``: the stamp names the kind, not the reason.
STAMPED_FALLBACK = "fallback: said by the stage's stamp, which carries no reason"


def check_stage_name(name: str) -> str:
    """Return ``name`` if usable as a stage name, else raise ValueError naming the rule."""
    if not _STAGE_NAME.match(name):
        raise ValueError(f"stage name {name!r} must be 1-64 characters of letters, digits and _.:-")
    return name


@dataclass(frozen=True, slots=True)
class StageStamp:
    """One stage's pass over an event: when it took the event in and when it let it go."""

    stage: str
    received_ns: int
    emitted_ns: int
    clock_err_ns: int
    host: str = ""
    source: str = ""  # where clock_err_ns came from (BOUND_SOURCES); "" when not said

    def encode(self) -> bytes:
        text = (
            f"stage={self.stage};in={self.received_ns};out={self.emitted_ns};"
            f"err={self.clock_err_ns};host={self.host}"
        )
        if self.source:
            text += f";src={self.source}"
        return text.encode("ascii", "replace")

    def bound_label(self) -> str:
        """The trail's ``clock_source`` for this stamp (``audit.ClockBound.label()``): the
        kind the stamp names, ``""`` when it names none."""
        if self.source == "fallback":
            return STAMPED_FALLBACK
        return self.source

    @classmethod
    def decode(cls, raw: bytes) -> StageStamp:
        """Raises: StampError if ``raw`` is not a stage stamp."""
        try:
            text = raw.decode("ascii")
            parts = text.split(";")
            # The shapes every stampline stage writes, read by position; anything else (other
            # order, missing or repeated fields) by name below. Both give the same result.
            src: str | None = None
            if (
                5 <= len(parts) <= 6
                and parts[0].startswith("stage=")
                and parts[1].startswith("in=")
                and parts[2].startswith("out=")
                and parts[3].startswith("err=")
                and parts[4].startswith("host=")
                and (len(parts) == 5 or parts[5].startswith("src="))
            ):
                src = parts[5][4:] if len(parts) == 6 else None
                stamp = cls(
                    parts[0][6:],
                    int(parts[1][3:]),
                    int(parts[2][4:]),
                    int(parts[3][4:]),
                    parts[4][5:],
                    src or "",
                )
            else:
                fields = dict(part.split("=", 1) for part in parts)
                src = fields.get("src")
                stamp = cls(
                    stage=fields["stage"],
                    received_ns=int(fields["in"]),
                    emitted_ns=int(fields["out"]),
                    clock_err_ns=int(fields.get("err", "0")),
                    host=fields.get("host", ""),
                    source=src or "",
                )
        except (UnicodeDecodeError, ValueError, KeyError) as exc:
            raise StampError(f"{H_STAMP} header {raw[:120]!r} is not a stage stamp") from exc
        if src is not None and src not in BOUND_SOURCES:  # present, so it must say something
            raise StampError(
                f"{H_STAMP} of stage {stamp.stage[:64]!r} src= {src[:80]!r} is not a bound "
                f"source ({', '.join(sorted(BOUND_SOURCES))})"
            )
        stamp.check()
        return stamp

    def check(self) -> None:
        """Raises: StampError naming the field that is out of its range."""
        what = f"{H_STAMP} of stage {self.stage[:64]!r}"
        if not _STAGE_NAME.match(self.stage):
            raise StampError(f"{H_STAMP} stage name {self.stage[:80]!r} is not a stage name")
        _check_time(f"{what} in=", self.received_ns)
        _check_time(f"{what} out=", self.emitted_ns)
        if self.emitted_ns < self.received_ns:
            raise StampError(f"{what} has out= before in=")
        _check_err(f"{what} err=", self.clock_err_ns)
        if not _HOST.match(self.host):
            raise StampError(f"{what} host= {self.host[:80]!r} is not a host name")
        if self.source and self.source not in BOUND_SOURCES:
            raise StampError(
                f"{what} src= {self.source[:80]!r} is not a bound source "
                f"({', '.join(sorted(BOUND_SOURCES))})"
            )


@dataclass(frozen=True, slots=True)
class Stamps:
    """Everything the stamping contract carries for one record."""

    event_id: str
    origin_ns: int
    ingest_ns: int
    clock_err_ns: int
    stages: tuple[StageStamp, ...] = ()
    parents: tuple[str, ...] = ()
    traceparent: str = ""
    # aligned with ``parents`` when given: where each parent last left a stage
    # (``audit.ParentStamp``; ``audit.UNKNOWN_PARENT`` where not known)
    parent_stamps: tuple[ParentStamp, ...] = ()

    def headers(self) -> Headers:
        """The contract headers for these stamps, in contract order."""
        out: Headers = [
            (H_VERSION, str(CONTRACT_VERSION).encode()),
            (H_EVENT_ID, self.event_id.encode()),
            (H_ORIGIN, str(self.origin_ns).encode()),
            (H_INGEST, str(self.ingest_ns).encode()),
            (H_CLOCK_ERR, str(self.clock_err_ns).encode()),
        ]
        if self.parents:
            out.append((H_PARENTS, ",".join(self.parents).encode()))
        if self.parent_stamps:
            out.append((H_PARENT_STAMPS, encode_parent_stamps(self.parent_stamps).encode()))
        out.append((H_TRACEPARENT, (self.traceparent or new_traceparent(self.event_id)).encode()))
        out.extend((H_STAMP, s.encode()) for s in self.stages)
        return out


def new_traceparent(event_id: str, parent_trace: str | None = None) -> str:
    """A W3C ``traceparent``: the given trace, or the event's own, with a new span id."""
    trace = parent_trace or trace_id_of(event_id)
    return f"00-{trace}-{os.urandom(8).hex()}-01"


# ``Message.headers()``, called so that Python checks what it returns. confluent-kafka decodes
# every header name as UTF-8, and on one that is not it returns a value with the
# UnicodeDecodeError still set: a plain call, once the interpreter has specialised it, lets
# that error surface later, anywhere; a call made from C is checked, and raises SystemError
# from the UnicodeDecodeError there.
_headers_of = operator.methodcaller("headers")

# Why a record whose header names are not all UTF-8 is refused (the gate) or its stamps
# unreadable (the tap): no client reads such headers.
UNREADABLE_HEADERS = "a header name is not UTF-8: the record's headers cannot be read"


def message_headers(m: Any) -> tuple[Headers | None, bool]:
    """A record's headers (None when it has none; a confluent-kafka ``Message`` or anything
    with ``headers()``), and whether they could be read: not when a name is not UTF-8 (then
    None)."""
    try:
        return _headers_of(m), True
    except SystemError as exc:
        if not isinstance(exc.__cause__, UnicodeDecodeError):
            raise
        return None, False


def headers_of(record: Any) -> Headers:
    """A record's headers as a list (confluent-kafka gives None when there are none; a record
    with a header name that is not UTF-8 has none that can be read: none either)."""
    headers, _readable = message_headers(record)
    return list(headers or [])


def read_stamps(headers: Sequence[tuple[str, bytes | None]] | None) -> Stamps | None:
    """The stamps in ``headers``, or None when the record carries no event id.

    Raises:
        StampError: a stamp header is present but malformed.
    """
    if not headers:
        return None
    single: dict[str, bytes] = {}
    stages: list[StageStamp] = []
    for key, value in headers:
        if value is None:
            continue
        if key == H_STAMP:
            stages.append(StageStamp.decode(value))
        elif key in _READ and key not in single:
            single[key] = value
    if H_EVENT_ID not in single:
        return None
    if len(stages) > MAX_STAGES:
        raise StampError(f"{len(stages)} {H_STAMP} headers, over the limit of {MAX_STAGES}")
    try:
        version = int(single.get(H_VERSION, b"1"))
        if version != CONTRACT_VERSION:
            raise StampError(f"stamp contract version {version} is not supported (want 1)")
        parents = _parents(single.get(H_PARENTS, b"").decode("ascii"))
        left = single.get(H_PARENT_STAMPS)
        stamps = Stamps(
            event_id=canonical_uuid(H_EVENT_ID, single[H_EVENT_ID]),
            origin_ns=int(single.get(H_ORIGIN, b"0")),
            ingest_ns=int(single.get(H_INGEST, b"0")),
            clock_err_ns=int(single.get(H_CLOCK_ERR, b"0")),
            stages=tuple(stages),
            parents=parents,
            traceparent=single.get(H_TRACEPARENT, b"").decode("ascii")[:128],
            parent_stamps=() if left is None else _parent_stamps(left, len(parents)),
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise StampError(f"stamp headers are malformed: {str(exc)[:200]}") from exc
    # 0 means "not stamped" (a stage that only forwards); anything else must be a time.
    if stamps.origin_ns:
        _check_time(H_ORIGIN, stamps.origin_ns)
    if stamps.ingest_ns:
        _check_time(H_INGEST, stamps.ingest_ns)
    _check_err(H_CLOCK_ERR, stamps.clock_err_ns)
    return stamps


# Which path read each record's stamps in ``read_stamps_batch``: "native" (Rust,
# native/src/stamps.rs) or "python: <why the compiled reader was not sure>". ``read_stamps``
# is the reference the compiled reader is tested against (tests/collectors/
# test_stamps_native.py); a new reason is logged once.
STAMP_PATHS: Counter[str] = Counter()


def read_stamps_batch(
    batch: Sequence[Sequence[tuple[str, bytes | None]] | None],
) -> list[Stamps | StampError | None]:
    """``read_stamps`` of each record's headers in ``batch``: its ``Stamps``, None, or the
    ``StampError`` it raises (returned, so that one broken record does not stop the rest).

    The compiled reader reads the batch in one call; a record it is not certain to read
    exactly as ``read_stamps`` does (every broken one among them) is read by ``read_stamps``.
    """
    read: list[Stamps | StampError | None] = [None] * len(batch)
    if _native is None:
        unsure = [(i, "no compiled module") for i in range(len(batch))]
    else:
        try:
            read, unsure = _native.read_stamps_batch(
                batch if type(batch) is list else list(batch), Stamps, StageStamp
            )
        except ValueError as exc:  # it cannot build these classes as their __init__ does
            unsure = [(i, str(exc)) for i in range(len(batch))]
        STAMP_PATHS["native"] += len(batch) - len(unsure)
    for i, why in unsure:
        path = f"python: {why}"
        STAMP_PATHS[path] += 1
        if STAMP_PATHS[path] == 1:
            log.info("stamps read on the Python path: %s", why)
        try:
            read[i] = read_stamps(batch[i])
        except StampError as exc:
            read[i] = exc
    return read


def canonical_uuid(name: str, raw: bytes | str) -> str:
    """``raw`` as a lower-case hyphenated UUID.

    Raises:
        StampError: it is not a UUID (two events must never share a trail row because
            their ids were both unreadable).
    """
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    if len(text) > 45:  # the longest spelling uuid.UUID accepts is 45 characters
        raise StampError(f"{name} of {len(text):,} characters is not a UUID")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise StampError(f"{name} {text!r} is not a UUID") from None


def _parents(text: str) -> tuple[str, ...]:
    ids = [p for p in text.split(",") if p]
    if len(ids) > MAX_PARENTS:
        raise StampError(f"{H_PARENTS} holds {len(ids):,} ids, over the limit of {MAX_PARENTS}")
    return tuple(canonical_uuid(H_PARENTS, p.strip()) for p in ids)


def _parent_stamps(raw: bytes, parents: int) -> tuple[ParentStamp, ...]:
    """The ``stampline.parent_stamps`` header: one ``stage/out/err`` (or ``-``) per parent.

    Raises:
        StampError: naming the entry that is not one, or the count that does not match.
    """
    # Each entry is at most ~100 characters; a longer header cannot be valid, and is not
    # split into a list first.
    if len(raw) > 128 * max(parents, 1):
        raise StampError(
            f"{H_PARENT_STAMPS} of {len(raw):,} bytes is too long for {parents} parent(s)"
        )
    entries = raw.decode("ascii").split(",")
    if len(entries) != parents:
        raise StampError(
            f"{H_PARENT_STAMPS} holds {len(entries):,} entries for {parents} "
            f"{H_PARENTS} id(s): they must be aligned"
        )
    out: list[ParentStamp] = []
    for n, entry in enumerate(entries, 1):
        if entry == "-":
            out.append(UNKNOWN_PARENT)
            continue
        what = f"{H_PARENT_STAMPS} entry {n} {entry[:80]!r}"
        parts = entry.split("/")
        if len(entry) > 128 or len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise StampError(f"{what} is not stage/out_ns/err_ns")
        stage, emitted, err = parts[0], int(parts[1]), int(parts[2])
        if not _STAGE_NAME.match(stage):
            raise StampError(f"{what}: {stage[:80]!r} is not a stage name")
        _check_time(f"{what} out", emitted)
        _check_err(f"{what} err", err)
        out.append((stage, emitted, err))
    return tuple(out)


def parent_stamp_of(stamps: Stamps) -> ParentStamp:
    """Where the event of ``stamps`` last left a stage: its latest stage stamp, else its
    origin (born at the source, no stage in between), else not known."""
    if stamps.stages:
        last = max(stamps.stages, key=lambda s: s.emitted_ns)
        return (last.stage, last.emitted_ns, last.clock_err_ns)
    if stamps.origin_ns:
        return (PREV_ORIGIN, stamps.origin_ns, 0)
    return UNKNOWN_PARENT


def _check_time(name: str, value: int) -> None:
    low, high = PLAUSIBLE_NS
    if not low <= value < high:
        raise StampError(f"{name} {str(value)[:40]} is not a time between 2000 and 2100 in ns")


def _check_err(name: str, value: int) -> None:
    if not 0 <= value <= MAX_CLOCK_ERR_NS:
        raise StampError(f"{name} {str(value)[:40]} is not a clock-error bound (0 to 1 day in ns)")


def append_stamp(headers: Iterable[tuple[str, bytes | None]], stamp: StageStamp) -> Headers:
    """``headers`` with one more stage stamp after the existing ones; nothing is replaced."""
    out: Headers = list(headers)
    out.append((H_STAMP, stamp.encode()))
    return out


def trace_of(traceparent: str) -> str | None:
    """The trace id inside a W3C ``traceparent``, or None if it is not one."""
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return None
