"""Per-key state for stateful rules: one slot per key in NumPy tables, bounded and expiring.

A key (provider and instrument, or an instrument) gets a slot; each stateful rule keeps its
state in columns indexed by slot. Slots not seen for the TTL are freed; when the table is
full the least recently seen keys make room. Either way the rules' state for the slot is
reset, so memory stays bounded however many keys a feed invents.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

IntArray = npt.NDArray[np.int64]


class StateTable:
    """Named per-slot columns with a fill value for a slot nobody has used yet."""

    def __init__(self, spec: dict[str, tuple[Any, Any, int]]) -> None:
        self._spec = spec  # name -> (dtype, fill, width); width 0 means one value per slot
        self.columns: dict[str, np.ndarray[Any, Any]] = {}
        self.grow(0)

    def __getitem__(self, name: str) -> np.ndarray[Any, Any]:
        return self.columns[name]

    def grow(self, capacity: int) -> None:
        for name, (dtype, fill, width) in self._spec.items():
            shape: tuple[int, ...] = (capacity, width) if width else (capacity,)
            new = np.full(shape, fill, dtype=dtype)
            old = self.columns.get(name)
            if old is not None:
                new[: len(old)] = old
            self.columns[name] = new

    def reset(self, slots: IntArray) -> None:
        for name, (_dtype, fill, _width) in self._spec.items():
            self.columns[name][slots] = fill

    def bytes_per_slot(self) -> int:
        return sum(
            np.dtype(dtype).itemsize * max(width, 1) for dtype, _f, width in self._spec.values()
        )


class KeyIndex:
    """Keys to slots, at most ``max_keys`` of them, each freed ``ttl_ns`` after last seen."""

    def __init__(self, max_keys: int, ttl_ns: int) -> None:
        self.max_keys = max_keys
        self.ttl_ns = ttl_ns
        self._ids: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        self._free: list[int] = []
        self._tables: list[StateTable] = []
        self._on_free: list[Callable[[list[Hashable], IntArray], None]] = []
        self.last_seen: IntArray = np.zeros(0, np.int64)
        # Keys as integers (each part's string numbered once), sorted for vectorised lookup.
        self._names: list[dict[str, int]] = [{}, {}]
        self._code_of: IntArray = np.zeros(0, np.int64)
        self._sorted_codes: IntArray = np.zeros(0, np.int64)
        self._sorted_slots: IntArray = np.zeros(0, np.int64)
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._ids)

    def table(self, spec: dict[str, tuple[Any, Any, int]]) -> StateTable:
        """A new table of per-slot state that follows this index's slots."""
        table = StateTable(spec)
        table.grow(len(self.last_seen))
        self._tables.append(table)
        return table

    def on_free(self, callback: Callable[[list[Hashable], IntArray], None]) -> None:
        """Call ``callback(keys, slots)`` whenever slots are freed (expired or evicted)."""
        self._on_free.append(callback)

    def key_of(self, slot: int) -> Hashable:
        return self._keys[slot]

    def slots(self, *parts: Sequence[str] | pa.Array, now_ns: int) -> IntArray:
        """The slot of each row's key (the tuple of one or two ``parts``), creating slots as
        needed. Only a batch's distinct strings and its new keys cost Python work."""
        if any(len(names) > 4 * self.max_keys + 1024 for names in self._names):
            self._renumber()
        codes = np.zeros(len(parts[0]), np.int64)
        for position, part in enumerate(parts):
            encoded = part if isinstance(part, pa.Array) else pa.array(part, pa.string())
            encoded = encoded.dictionary_encode()
            names = self._names[position]
            ids = np.fromiter(
                (names.setdefault(v, len(names)) for v in encoded.dictionary.to_pylist()),
                np.int64,
                len(encoded.dictionary),
            )
            local = np.asarray(encoded.indices.fill_null(0), dtype=np.int64)
            codes = (codes << 31) | (ids[local] if len(ids) else local)
        distinct, inverse = np.unique(codes, return_inverse=True)
        pos = np.searchsorted(self._sorted_codes, distinct)
        pos = np.minimum(pos, max(len(self._sorted_codes) - 1, 0))
        found = (
            self._sorted_codes[pos] == distinct
            if len(self._sorted_codes)
            else np.zeros(len(distinct), np.bool_)
        )
        slot_of = np.where(found, self._sorted_slots[pos] if len(self._sorted_slots) else 0, -1)
        fresh = (~found).nonzero()[0]
        if len(fresh):
            reverse = [
                {i: name for name, i in names.items()} for names in self._names[: len(parts)]
            ]
            for j in fresh.tolist():
                code = int(distinct[j])
                key_parts = []
                for position in reversed(range(len(parts))):
                    key_parts.append(reverse[position][code & (2**31 - 1)])
                    code >>= 31
                slot_of[j] = self._new_slot(tuple(reversed(key_parts)), int(distinct[j]), now_ns)
            new_slots = slot_of[fresh]
            for table in self._tables:
                table.reset(new_slots)
            self._index_codes()
        slots: IntArray = slot_of[inverse.reshape(-1)]
        self.last_seen[slot_of] = now_ns
        return slots

    def _renumber(self) -> None:
        """Number only the strings of live keys again, so the string maps stay bounded."""
        self._names = [{}, {}]
        for key, slot in self._ids.items():
            code = 0
            for position, part in enumerate(key if isinstance(key, tuple) else (key,)):
                code = (code << 31) | self._names[position].setdefault(
                    str(part), len(self._names[position])
                )
            self._code_of[slot] = code
        self._index_codes()

    def _index_codes(self) -> None:
        live = np.asarray(list(self._ids.values()), np.int64)
        codes = self._code_of[live]
        order = np.argsort(codes)
        self._sorted_codes, self._sorted_slots = codes[order], live[order]

    def _new_slot(self, key: Hashable, code: int, now_ns: int) -> int:
        if not self._free and len(self._keys) >= self.max_keys:
            self.expire(now_ns)
            if not self._free:  # still full: the least recently seen tenth makes room
                used = np.asarray(list(self._ids.values()), np.int64)
                k = max(1, len(used) // 10)
                oldest = used[np.argpartition(self.last_seen[used], k - 1)[:k]]
                self.evicted += len(oldest)
                self._release(oldest)
        if self._free:
            slot = self._free.pop()
            self._keys[slot] = key
        else:
            slot = len(self._keys)
            self._keys.append(key)
            if slot >= len(self.last_seen):
                capacity = min(self.max_keys, max(1024, 2 * len(self.last_seen)))
                grown = np.zeros(capacity, np.int64)
                grown[: len(self.last_seen)] = self.last_seen
                self.last_seen = grown
                codes = np.full(capacity, -1, np.int64)
                codes[: len(self._code_of)] = self._code_of
                self._code_of = codes
                for table in self._tables:
                    table.grow(capacity)
        self._ids[key] = slot
        self._code_of[slot] = code
        return slot

    def expire(self, now_ns: int) -> int:
        """Free every key not seen for the TTL; return how many."""
        used = np.asarray(list(self._ids.values()), np.int64)
        if not len(used):
            return 0
        old = used[self.last_seen[used] < now_ns - self.ttl_ns]
        self.expired += len(old)
        self._release(old)
        return len(old)

    def _release(self, slots: IntArray) -> None:
        if not len(slots):
            return
        keys = [self._keys[s] for s in slots.tolist()]
        for callback in self._on_free:
            callback(keys, slots)
        for key in keys:
            del self._ids[key]
        self._free.extend(slots.tolist())
        for table in self._tables:
            table.reset(slots)
        self._index_codes()

    def state_bytes(self) -> int:
        """Bytes held for the keys now present: their columns plus the key map itself."""
        per_slot = 8 + sum(t.bytes_per_slot() for t in self._tables)  # 8: last_seen
        keys = sum(
            sys.getsizeof(k) + sum(sys.getsizeof(p) for p in k if isinstance(p, str))
            for k in self._ids
            if isinstance(k, tuple)
        )
        return len(self._ids) * per_slot + sys.getsizeof(self._ids) + keys
