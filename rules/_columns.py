"""A micro-batch as columns: built once per field from decoded records or an Arrow table.

Compiled rules read fields through here, so each field is turned into a NumPy or Arrow
column once per batch however many rules use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MISSING: Any = object()  # a field absent from the record, told apart from an explicit null


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
    ) -> None:
        self.n = n
        self._payloads = payloads
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
            if self._payloads is not None and "." not in field:
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
            if arrow is not None:
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
            if isinstance(v, int | float) and not isinstance(v, bool):
                values[i], ok[i] = v, True
            elif v is not None and v is not MISSING:
                bad[i] = True
        return values, ok, bad

    def integers(self, field: str) -> IntArray:
        """Exact whole numbers (no float rounding past 2**53); -1 where not one in int64."""
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
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63:
                out[i] = v
        return out

    def strings(self, field: str) -> tuple[pa.Array, BoolArray]:
        """(Arrow strings, null where not a string; present but not a string)."""
        if field not in self._str:
            arrow = self._arrow(field)
            if arrow is not None and pa.types.is_string(arrow.type):
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


def as_strings(values: Sequence[str] | pa.Array | pa.ChunkedArray) -> Sequence[str]:
    """Python strings, '' for nulls, from a list or an Arrow array."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return [v or "" for v in pc.fill_null(values, "").to_pylist()]
    return values
