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
        """The slot of each row's key (the tuple of ``parts``), creating slots as needed."""
        n = len(parts[0])
        combined = np.zeros(n, np.int64)
        uniques: list[list[Any]] = []
        for part in parts:
            encoded = part if isinstance(part, pa.Array) else pa.array(part, pa.string())
            encoded = encoded.dictionary_encode()
            codes = np.asarray(encoded.indices.fill_null(0), dtype=np.int64)
            values = encoded.dictionary.to_pylist()
            combined = combined * max(len(values), 1) + codes
            uniques.append(values)
        distinct, inverse = np.unique(combined, return_inverse=True)
        # Decode each distinct combined code back to its parts: a few thousand per batch.
        radices = [max(len(u), 1) for u in uniques]
        slot_of = np.empty(len(distinct), np.int64)
        fresh: list[int] = []
        for j, code in enumerate(distinct.tolist()):
            key_parts = []
            for values, radix in zip(reversed(uniques), reversed(radices), strict=True):
                code, r = divmod(code, radix)
                key_parts.append(values[r] if values else "")
            key = tuple(reversed(key_parts))
            slot = self._ids.get(key)
            if slot is None:
                slot = self._new_slot(key, now_ns)
                fresh.append(slot)
            slot_of[j] = slot
        slots = slot_of[inverse.reshape(-1)]
        if fresh:
            for table in self._tables:
                table.reset(np.asarray(fresh, np.int64))
        self.last_seen[slot_of] = now_ns
        return slots

    def _new_slot(self, key: Hashable, now_ns: int) -> int:
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
                for table in self._tables:
                    table.grow(capacity)
        self._ids[key] = slot
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

    def state_bytes(self) -> int:
        """Bytes held for the keys now present: their columns plus the key map itself."""
        per_slot = 8 + sum(t.bytes_per_slot() for t in self._tables)  # 8: last_seen
        keys = sum(
            sys.getsizeof(k) + sum(sys.getsizeof(p) for p in k if isinstance(p, str))
            for k in self._ids
            if isinstance(k, tuple)
        )
        return len(self._ids) * per_slot + sys.getsizeof(self._ids) + keys
