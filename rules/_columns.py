"""A micro-batch as columns: built once per field from decoded records or an Arrow table.

Compiled rules read fields through here, so each field is turned into a NumPy or Arrow
column once per batch however many rules use it. A field the compiled checker typed
(:class:`Typed`) is read from its columns for the clean records, and from the payload dicts
for every other record (the reference); a clean record's payload is then read only if a rule
asks for a field that was not typed (:class:`Payloads`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MISSING: Any = object()  # a field absent from the record, told apart from an explicit null

# The kinds of a typed field's value per row (native/src/decode.rs, `kind`).
T_MISSING, T_NULL, T_TRUE, T_FALSE, T_INT, T_FLOAT, T_BIG_INT, T_STR, T_CONTAINER, T_UNREAD = range(
    10
)


def _kinds(*kinds: int) -> npt.NDArray[np.bool_]:
    """A lookup table over the kinds: ``table.take(kinds)`` marks the rows of one of ``kinds``
    (``take``: about half of ``table[kinds]``'s cost on a small batch)."""
    table = np.zeros(256, np.bool_)
    table[list(kinds)] = True
    return table


_NUMBER = _kinds(T_INT, T_FLOAT, T_BIG_INT)
_PRESENT = ~_kinds(T_MISSING, T_NULL)
_NOT_TEXT = ~_kinds(T_STR, T_MISSING, T_NULL)  # present, and not a string
# Kinds whose Python value the columns hold exactly (a container's, or an integer's beyond
# int64, is read from the payload).
_HELD = (T_MISSING, T_NULL, T_TRUE, T_FALSE, T_INT, T_FLOAT, T_STR)

UNREAD: Any = object()  # a clean record's payload not read yet (Payloads)


@dataclass(slots=True)
class Typed:
    """One top-level field of a batch as the compiled checker decoded it: per row its kind
    (``T_*``; ``T_UNREAD`` for a record it did not call clean), its number (NaN unless a
    number), its integer (``Columns.integers``' value) and its text (None unless a string;
    ``texts`` is None when no row holds one)."""

    kinds: npt.NDArray[np.uint8]
    numbers: FloatArray
    integers: IntArray
    texts: list[str | None] | None
    _unread: list[int] | None = None

    def unread(self) -> list[int]:
        """The rows the checker did not type: their values come from their payloads."""
        if self._unread is None:
            self._unread = (self.kinds == T_UNREAD).nonzero()[0].tolist()
        return self._unread

    def arrow_texts(self) -> pa.Array:
        """The texts as Arrow strings, null where not a string."""
        if self.texts is None:
            return pa.nulls(len(self.kinds), pa.string())
        return pa.array(self.texts, pa.string())

    def python(self, row: int) -> Any:
        """Row ``row``'s value as the payload dict holds it (a held kind only)."""
        kind = self.kinds[row]
        if kind == T_MISSING:
            return MISSING
        if kind == T_INT:
            return int(self.integers[row])
        if kind == T_FLOAT:
            return float(self.numbers[row])
        if kind == T_STR:
            assert self.texts is not None
            return self.texts[row]
        return {T_NULL: None, T_TRUE: True, T_FALSE: False}[int(kind)]


class Payloads(Sequence[dict[str, Any] | None]):
    """Payload dicts by row, where a clean record's may be :data:`UNREAD`: it is read with
    orjson when first asked for (the checker vouched that orjson reads it as one object)."""

    __slots__ = ("_payloads", "_values")

    def __init__(self, payloads: list[Any], values: Sequence[bytes | None]) -> None:
        self._payloads = payloads
        self._values = values

    def __len__(self) -> int:
        return len(self._payloads)

    def __getitem__(self, row: int) -> dict[str, Any] | None:  # type: ignore[override]
        payload = self._payloads[row]
        if payload is UNREAD:
            payload = self._payloads[row] = orjson.loads(self._values[row] or b"")
        return payload  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        return (self[row] for row in range(len(self._payloads)))

    def absent(self) -> list[int]:
        """The rows that have no payload (read without reading any payload)."""
        return [row for row, payload in enumerate(self._payloads) if payload is None]


def get_field(payload: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path, or :data:`MISSING`."""
    value: Any = payload
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


class Columns:
    """The fields of ``n`` records. Rows whose payload is None read as missing everywhere."""

    def __init__(
        self,
        n: int,
        *,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        table: pa.Table | None = None,
        topics: Sequence[str] | None = None,
        origin_ns: IntArray | None = None,
        keys: tuple[Sequence[str] | pa.Array, Sequence[str] | pa.Array] | None = None,
        typed: dict[str, Typed] | None = None,
    ) -> None:
        self.n = n
        self._payloads = payloads
        self._typed = typed or {}
        self._table = table
        self.topics = topics if topics is not None else [""] * n
        self.origin_ns: IntArray = origin_ns if origin_ns is not None else np.zeros(n, np.int64)
        self._keys = keys
        self._identity: tuple[Sequence[str], Sequence[str]] | None = None
        self._raw: dict[str, list[Any]] = {}
        self._num: dict[str, tuple[FloatArray, BoolArray, BoolArray]] = {}
        self._str: dict[str, tuple[pa.Array, BoolArray]] = {}
        self._present: dict[str, BoolArray] = {}
        self._picked: dict[str, dict[int, Any]] = {}
        self._chunks: dict[str, pa.Array] = {}

    def raw(self, field: str) -> list[Any]:
        """Python values, :data:`MISSING` where absent (None for an explicit null)."""
        if field not in self._raw:
            typed = self._typed.get(field)
            if typed is not None and self._payloads is not None:
                self._raw[field] = [self.value(field, row) for row in range(self.n)]
            elif self._payloads is not None and "." not in field:
                # a top-level field, the common case: what get_field gives, without its walk
                # (every payload is a dict: a record is exactly one JSON object)
                self._raw[field] = [
                    MISSING if p is None else p.get(field, MISSING) for p in self._payloads
                ]
            elif self._payloads is not None:
                self._raw[field] = [
                    MISSING if p is None else get_field(p, field) for p in self._payloads
                ]
            elif self._table is not None and field in self._table.column_names:
                self._raw[field] = self._table.column(field).to_pylist()
            else:
                self._raw[field] = [MISSING] * self.n
        return self._raw[field]

    def value(self, field: str, row: int) -> Any:
        """One row's value; from a table, without turning the whole column into Python."""
        picked = self._picked.get(field)
        if picked is not None and row in picked:
            return picked[row]
        typed = self._typed.get(field)
        if typed is not None and field not in self._raw:
            if typed.kinds[row] in _HELD:
                return typed.python(row)
            payload = self._payloads[row] if self._payloads is not None else None
            return MISSING if payload is None else payload.get(field, MISSING)
        if field not in self._raw and self._payloads is None and self._table is not None:
            if field not in self._table.column_names:
                return MISSING
            return self._table.column(field)[row].as_py()
        return self.raw(field)[row]

    def prefetch(self, fields: Sequence[str], rows: Sequence[int]) -> None:
        """Read ``rows`` of ``fields`` from a table in one go (reasons for failing rows)."""
        if self._table is None or self._payloads is not None or not len(rows):
            return
        for field in fields:
            arrow = self._arrow(field)
            if arrow is not None and field not in self._raw:
                values = arrow.take(pa.array(rows, pa.int64())).to_pylist()
                self._picked.setdefault(field, {}).update(zip(rows, values, strict=True))

    def present(self, field: str) -> BoolArray:
        """Rows where the field exists and is not null."""
        if field not in self._present:
            arrow = self._arrow(field)
            typed = self._typed.get(field)
            if typed is not None:
                present = _PRESENT.take(typed.kinds)
                for row in typed.unread():
                    v = self.value(field, row)
                    present[row] = v is not None and v is not MISSING
                self._present[field] = present
            elif arrow is not None:
                self._present[field] = np.asarray(pc.is_valid(arrow), dtype=np.bool_)
            else:
                self._present[field] = np.fromiter(
                    (v is not None and v is not MISSING for v in self.raw(field)),
                    np.bool_,
                    self.n,
                )
        return self._present[field]

    def numeric(self, field: str) -> tuple[FloatArray, BoolArray, BoolArray]:
        """(values, is a number, present but not a number). Booleans are not numbers."""
        if field not in self._num:
            self._num[field] = self._numeric(field)
        return self._num[field]

    def _numeric(self, field: str) -> tuple[FloatArray, BoolArray, BoolArray]:
        typed = self._typed.get(field)
        if typed is not None:
            values = typed.numbers.copy()
            ok = _NUMBER.take(typed.kinds)
            bad = ~ok & _PRESENT.take(typed.kinds)
            for row in typed.unread():
                values[row], ok[row], bad[row] = _number(self.value(field, row))
            return values, ok, bad
        arrow = self._arrow(field)
        if arrow is not None and (
            pa.types.is_integer(arrow.type) or pa.types.is_floating(arrow.type)
        ):
            valid = np.asarray(pc.is_valid(arrow), dtype=np.bool_)
            values = np.asarray(pc.fill_null(pc.cast(arrow, pa.float64()), np.nan))
            return values, valid, np.zeros(self.n, np.bool_)
        raw = self.raw(field)
        kinds = set(map(type, raw))
        if kinds <= {int, float}:  # the common case: one C-level conversion
            values = np.array(raw, dtype=np.float64) if raw else np.zeros(0)
            return values, np.ones(self.n, np.bool_), np.zeros(self.n, np.bool_)
        values = np.full(self.n, np.nan)
        ok = np.zeros(self.n, np.bool_)
        bad = np.zeros(self.n, np.bool_)
        for i, v in enumerate(raw):
            values[i], ok[i], bad[i] = _number(v)
        return values, ok, bad

    def integers(self, field: str) -> IntArray:
        """Exact whole numbers (no float rounding past 2**53); -1 where not one in int64."""
        typed = self._typed.get(field)
        if typed is not None:
            out = typed.integers.copy()
            for row in typed.unread():
                out[row] = _integer(self.value(field, row))
            return out
        arrow = self._arrow(field)
        if arrow is not None and pa.types.is_integer(arrow.type):
            return np.asarray(pc.fill_null(pc.cast(arrow, pa.int64()), -1), dtype=np.int64)
        raw = self.raw(field)
        if set(map(type, raw)) <= {int}:
            try:
                return np.array(raw, dtype=np.int64) if raw else np.zeros(0, np.int64)
            except OverflowError:
                pass
        out = np.full(self.n, -1, np.int64)
        for i, v in enumerate(raw):
            out[i] = _integer(v)
        return out

    def strings(self, field: str) -> tuple[pa.Array, BoolArray]:
        """(Arrow strings, null where not a string; present but not a string)."""
        if field not in self._str:
            arrow = self._arrow(field)
            typed = self._typed.get(field)
            if typed is not None:
                texts, bad = typed.arrow_texts(), _NOT_TEXT.take(typed.kinds)
                unread = typed.unread()
                if unread:  # the reference's records: their strings from their payloads
                    patch: list[str | None] = [None] * self.n
                    for row in unread:
                        v = self.value(field, row)
                        patch[row] = v if isinstance(v, str) else None
                        bad[row] = v is not None and v is not MISSING and not isinstance(v, str)
                    mask = np.zeros(self.n, np.bool_)
                    mask[unread] = True
                    texts = pc.if_else(mask, pa.array(patch, pa.string()), texts)
                self._str[field] = (texts, bad)
            elif arrow is not None and pa.types.is_string(arrow.type):
                self._str[field] = (arrow, np.zeros(self.n, np.bool_))
            else:
                raw = self.raw(field)
                texts = [v if isinstance(v, str) else None for v in raw]
                bad = np.fromiter(
                    (v is not None and v is not MISSING and not isinstance(v, str) for v in raw),
                    np.bool_,
                    self.n,
                )
                self._str[field] = (pa.array(texts, pa.string()), bad)
        return self._str[field]

    def identity(self) -> tuple[Sequence[str], Sequence[str]]:
        """(provider, instrument) per row as Python strings, '' where unknown."""
        if self._keys is None:
            raise ValueError("this batch carries no identity columns")
        if self._identity is None:
            self._identity = (as_strings(self._keys[0]), as_strings(self._keys[1]))
        return self._identity

    def identity_arrays(self) -> tuple[Sequence[str] | pa.Array, Sequence[str] | pa.Array]:
        """(provider, instrument) as given: Arrow arrays stay Arrow, for vectorised keys."""
        if self._keys is None:
            raise ValueError("this batch carries no identity columns")
        return self._keys

    def _arrow(self, field: str) -> pa.Array | None:
        if self._table is None or field not in self._table.column_names:
            return None
        if field not in self._chunks:
            column = self._table.column(field)
            self._chunks[field] = (
                column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            )
        return self._chunks[field]


def _number(v: Any) -> tuple[float, bool, bool]:
    """(value, is a number, present but not a number) of one Python value."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v, True, False
    return np.nan, False, v is not None and v is not MISSING


def _integer(v: Any) -> int:
    """``integers``' value of one Python value."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63:
        return v
    return -1


def as_strings(values: Sequence[str] | pa.Array | pa.ChunkedArray) -> Sequence[str]:
    """Python strings, '' for nulls, from a list or an Arrow array."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return [v or "" for v in pc.fill_null(values, "").to_pylist()]
    return values
