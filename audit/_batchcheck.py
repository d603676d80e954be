"""What the store would refuse or silently convert in a batch, found before it is written.

The store converts the canonical table as it inserts it (``_store._OBS_COLUMN_SELECT``):
text to UUIDs, text to an enum, 64-bit integers to narrower columns. Some conversions fail
(an unknown outcome), others succeed and change the value (a non-UUID event id becomes the
nil UUID, a partition of 2**31 wraps, an empty parent in ``a,,b`` is dropped); the ledger
would then chain a digest the stored rows no longer match, and ``audit verify`` would call
untouched data tampered. So a batch is checked first, and a batch that holds such a value
is refused whole (``check_batch`` names the column, row and value); what is stored is what
was chained. Dead letters also may not repeat a source position within a batch: the table
is a ReplacingMergeTree keyed by it, whose merges would fold the two rows into one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stampline.audit._model import BROKER_TIME_TYPES

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_OUTCOMES = pa.array(["forwarded", "dead_lettered", "observed"])
_BROKER_TIME_TYPES = pa.array(BROKER_TIME_TYPES)
# column -> (lowest, highest) value its store column holds unchanged
_OBS_RANGES = {
    "partition": (-(2**31), 2**31 - 1),
    "rule_version": (0, 2**32 - 1),
    "authority": (0, 2**8 - 1),
    # UInt64 in the store, Int64 in the table: a negative bound would read back as 2**64 - n
    "clock_err_ns": (0, 2**63 - 1),
    "prev_clock_err_ns": (0, 2**63 - 1),
}
_DEAD_RANGES = {
    "partition": (-(2**31), 2**31 - 1),
    "rule_version": (0, 2**32 - 1),
    "value_size": (0, 2**63 - 1),
}
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)


def check_batch(kind: str, table: pa.Table) -> str | None:
    """Why the store cannot keep ``table`` (a canonical ``kind`` table, or a trail message's
    dead letters with their ``severity``) exactly as it is, or None when it can."""
    for name in table.column_names:
        column = table.column(name)
        if column.null_count:
            return f"column {name}: null at row {_first(column.is_null())}"
    if not table.num_rows:
        return None
    event_ids = table.column("event_id")
    bad = _not_uuids(event_ids)
    if pc.any(bad).as_py():
        row = _first(bad)
        value = _shown(event_ids[row].as_py())
        return f"column event_id: {value} at row {row} is not a lowercase UUID"
    ranges = _OBS_RANGES if kind == "observations" else _DEAD_RANGES
    for name, (low, high) in ranges.items():
        column = table.column(name)
        bad = pc.or_(pc.less(column, low), pc.greater(column, high))
        if pc.any(bad).as_py():
            row = _first(bad)
            value = _shown(column[row].as_py())
            return f"column {name}: {value} at row {row} is outside {low}..{high}"
    if kind == "observations":
        return _check_observations(table)
    return _check_dead_letters(table)


def _check_observations(table: pa.Table) -> str | None:
    for name, allowed in (("outcome", _OUTCOMES), ("broker_time_type", _BROKER_TIME_TYPES)):
        column = table.column(name)  # both are enums in the store: another name fails there
        bad = pc.invert(pc.is_in(column, allowed))
        if pc.any(bad).as_py():
            row = _first(bad)
            return f"column {name}: {_shown(column[row].as_py())} at row {row} is not one of " + (
                ", ".join(v or repr(v) for v in allowed.to_pylist())
            )
    if pc.any(pc.not_equal(table.column("parents"), "")).as_py():  # most rows have none
        problem = _matches(table, "parents", f"^({_UUID}(,{_UUID})*)?$", "is not lowercase UUIDs")
        if problem is not None:
            return problem
    stamps = table.column("parent_stamps")
    given = pc.not_equal(stamps, "")
    if not pc.any(given).as_py():
        return None
    rows = pc.indices_nonzero(given.combine_chunks()).to_pylist()
    for row, text in zip(rows, stamps.take(rows).to_pylist(), strict=True):
        for entry in text.split(","):
            if not _parent_stamp_ok(entry):
                return (
                    f"column parent_stamps: {_shown(entry)} at row {row} is not '-' or stage/ns/err"
                )
    return None


def _parent_stamp_ok(entry: str) -> bool:
    """Whether one ``stage/emitted_ns/err_ns`` entry (or ``-``) reads back as written."""
    if entry == "-":
        return True
    parts = entry.split("/")
    return (
        len(parts) == 3
        and parts[0] != ""
        and _canonical_int(parts[1], _INT64)
        and _canonical_int(parts[2], _UINT64)
    )


def _canonical_int(text: str, bounds: tuple[int, int]) -> bool:
    try:
        value = int(text)
    except ValueError:
        return False
    return str(value) == text and bounds[0] <= value <= bounds[1]


def _check_dead_letters(table: pa.Table) -> str | None:
    if "severity" in table.column_names:  # warn verdicts are kept apart, in ``warnings``
        table = table.filter(pc.not_equal(table.column("severity"), "warn"))
    keys = table.group_by(["topic", "partition", "offset"]).aggregate([([], "count_all")])
    repeated = keys.filter(pc.greater(keys.column("count_all"), 1))
    if repeated.num_rows:
        r = repeated.slice(0, 1).to_pylist()[0]
        return (
            f"dead letter of {r['topic']}[{r['partition']}]@{r['offset']} appears "
            f"{r['count_all']} times (the store would keep one)"
        )
    return None


_HEX = np.zeros(256, dtype=bool)
_HEX[list(b"0123456789abcdef")] = True
_DASHES = [8, 13, 18, 23]
_DIGITS = [i for i in range(36) if i not in _DASHES]


def _not_uuids(column: pa.ChunkedArray) -> pa.Array:
    """Which values are not lowercase canonical UUIDs: a byte-table lookup over the values'
    bytes (a regular expression took most of the check's time)."""
    values = column.combine_chunks()
    lengths = pc.binary_length(values)
    if not pc.all(pc.equal(lengths, 36)).as_py():
        return pc.not_equal(lengths, 36)
    _, offsets_buf, data = values.buffers()
    wide = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    start = int(np.frombuffer(offsets_buf, dtype="<i8" if wide else "<i4")[values.offset])
    chars = np.frombuffer(data, dtype=np.uint8)[start : start + 36 * len(values)].reshape(-1, 36)
    ok = _HEX[chars[:, _DIGITS]].all(axis=1) & (chars[:, _DASHES] == ord("-")).all(axis=1)
    return pa.array(~ok)


def _matches(table: pa.Table, name: str, pattern: str, what: str) -> str | None:
    column = table.column(name)
    bad = pc.invert(pc.match_substring_regex(column, pattern))
    if pc.any(bad).as_py():
        row = _first(bad)
        return f"column {name}: {_shown(column[row].as_py())} at row {row} {what}"
    return None


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return int(pc.indices_nonzero(mask)[0].as_py())


def _shown(value: object) -> str:
    """A value for a reason: escaped (``repr``) and cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
