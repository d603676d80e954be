"""Stateful rules, vectorised per batch: sequence gaps, stale quotes, cross-provider divergence.

Each batch's rows are sorted by key (stably, so arrival order holds within a key) and the
per-key questions become segmented scans: "highest sequence so far", "last change", "start
of the current divergence run". The state carried between batches is one row per key in
a :class:`~stampline.rules._keys.KeyIndex` table. Rows that need more than arithmetic (a gap
opens, a late number fills one) are rare and are handled one by one.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from stampline._common import format_duration
from stampline.rules._columns import BoolArray, Columns, FloatArray, IntArray
from stampline.rules._files import DivergenceRule, SequenceRule, StaleRule
from stampline.rules._keys import KeyIndex
from stampline.rules._stateless import fill


@dataclass(frozen=True, slots=True)
class GapEvent:
    """A sequence gap opened (numbers skipped) or closed (filled late, or given up on expiry)."""

    kind: str  # "open" or "close"
    rule_id: str
    key: tuple[str, ...]
    first: int  # the missing range, inclusive
    last: int
    why: str = ""  # for a close: "filled" or "expired"


def _groups(slots: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """(order, sorted slots, group start) for rows grouped by slot in arrival order."""
    order = np.argsort(slots, kind="stable")
    ss = slots[order]
    start = np.ones(len(ss), np.bool_)
    start[1:] = ss[1:] != ss[:-1]
    return order, ss, start


def _last_of_group(start: BoolArray) -> BoolArray:
    end = np.ones(len(start), np.bool_)
    end[:-1] = start[1:]
    return end


def _segmented_cummax(values: IntArray, start: BoolArray) -> IntArray:
    """Running maximum of ``values`` that restarts at each group start."""
    if not len(values):
        return values
    distinct, rank = np.unique(values, return_inverse=True)
    rank = rank.reshape(-1).astype(np.int64)
    gid = np.cumsum(start) - 1
    width = len(distinct)
    # Offsetting each group above the previous one lets one global running max do the work.
    running = np.maximum.accumulate(gid * width + rank)
    out: IntArray = distinct[running - gid * width]
    return out


class SequenceCheck:
    """Per key: each sequence number one above the highest seen. Gaps, late numbers that
    fill a gap (reordered) and numbers seen before (duplicates) fail; gaps open and close."""

    def __init__(self, rule: SequenceRule, index: KeyIndex) -> None:
        self.rule = rule
        self.index = index
        self.state = index.table({"high": (np.int64, -1, 0)})
        self.gaps: dict[int, list[list[int]]] = {}  # slot -> missing pieces, see _fill
        self.events: list[GapEvent] = []
        index.on_free(self._expire)

    def _expire(self, keys: list[Hashable], slots: IntArray) -> None:
        for key, slot in zip(keys, slots.tolist(), strict=True):
            for first, last, _of, _ol in self.gaps.pop(slot, []):
                self.events.append(
                    GapEvent("close", self.rule.id, _key(key), first, last, "expired")
                )

    def evaluate(
        self, cols: Columns, active: BoolArray, slots: IntArray, _now: int
    ) -> tuple[BoolArray, dict[int, str]]:
        numbers = cols.integers(self.rule.field)
        rows = (active & (numbers >= 0)).nonzero()[0]
        fails = np.zeros(cols.n, np.bool_)
        reasons: dict[int, str] = {}
        if not len(rows):
            return fails, reasons
        seq = numbers[rows]
        order, ss, start = _groups(slots[rows])
        vs = seq[order]
        base = self.state["high"][ss]
        running = _segmented_cummax(np.where(start, np.maximum(vs, base), vs), start)
        before = np.where(start, base, np.roll(running, 1))
        odd = ((before >= 0) & (vs != before + 1)).nonzero()[0]
        for i in odd.tolist():
            row = int(rows[order[i]])
            reasons[row] = self._odd(int(ss[i]), int(vs[i]), int(before[i]))
            fails[row] = True
        end = _last_of_group(start)
        self.state["high"][ss[end]] = running[end]
        return fails, reasons

    def _odd(self, slot: int, seq: int, high: int) -> str:
        key = _key(self.index.key_of(slot))
        template = self.rule.reason
        if seq > high + 1:
            gaps = self.gaps.setdefault(slot, [])
            gaps.append([high + 1, seq - 1, high + 1, seq - 1])
            self.events.append(GapEvent("open", self.rule.id, key, high + 1, seq - 1))
            self._bound(gaps, key)
            default = "sequence gap: expected {expected}, got {seq} ({missing} missing)"
            return fill(
                template or default, expected=high + 1, seq=seq, missing=seq - high - 1, kind="gap"
            )
        # A key's pieces are disjoint and in ascending order (a gap opens above the highest
        # number, and filling splits a piece in place): the piece holding seq is found by
        # bisection, not by a walk that a feed of random numbers would make ever longer.
        pieces = self.gaps.get(slot)
        if pieces:
            at = bisect_right(pieces, seq, key=itemgetter(0)) - 1
            if at >= 0 and seq <= pieces[at][1]:
                self._fill(slot, at, seq, key)
                default = "reordered: seq {seq} arrived after {high}"
                return fill(template or default, seq=seq, high=high, kind="reordered")
        default = "duplicate: seq {seq} already seen (highest {high})"
        return fill(template or default, seq=seq, high=high, kind="duplicate")

    def _fill(self, slot: int, at: int, seq: int, key: tuple[str, ...]) -> None:
        # A piece is [first, last, first opened, last opened]: filling splits it, and the gap
        # as opened closes when no piece of it is left. Its pieces are neighbours.
        gaps = self.gaps[slot]
        first, last, opened_first, opened_last = gaps[at]
        pieces = [
            [a, b, opened_first, opened_last]
            for a, b in ((first, seq - 1), (seq + 1, last))
            if a <= b
        ]
        gaps[at : at + 1] = pieces
        if not any(g[2] == opened_first for g in gaps[max(at - 1, 0) : at + len(pieces) + 1]):
            self.events.append(
                GapEvent("close", self.rule.id, key, opened_first, opened_last, "filled")
            )
        # A split adds a piece: the bound holds for pieces too, or numbers filling random
        # holes would grow a key's pieces for as long as the key lives.
        self._bound(gaps, key)
        if not gaps:
            del self.gaps[slot]

    def _bound(self, gaps: list[list[int]], key: tuple[str, ...]) -> None:
        """Give up the oldest pieces beyond ``max_open_gaps``."""
        while len(gaps) > self.rule.max_open_gaps:
            first, last, _of, _ol = gaps.pop(0)
            self.events.append(GapEvent("close", self.rule.id, key, first, last, "expired"))

    def open_gaps(self) -> int:
        return sum(len(g) for g in self.gaps.values())


class StaleCheck:
    """Per key: the watched fields unchanged for ``max_updates`` updates or ``max_age``."""

    def __init__(self, rule: StaleRule, index: KeyIndex) -> None:
        self.rule = rule
        width = len(rule.fields)
        self.state = index.table(
            {
                "last": (np.float64, np.nan, width),
                "unchanged": (np.int64, 0, 0),
                "since": (np.int64, 0, 0),
                "seen": (np.bool_, False, 0),
            }
        )

    def evaluate(
        self, cols: Columns, active: BoolArray, slots: IntArray, _now: int
    ) -> tuple[BoolArray, dict[int, str]]:
        fails = np.zeros(cols.n, np.bool_)
        reasons: dict[int, str] = {}
        rows = active.nonzero()[0]
        if not len(rows):
            return fails, reasons
        values = np.stack([cols.numeric(f)[0][rows] for f in self.rule.fields], axis=1)
        order, ss, start = _groups(slots[rows])
        v = values[order]
        t = cols.origin_ns[rows][order]
        st = self.state
        prev = np.empty_like(v)
        prev[1:] = v[:-1]
        prev[start] = st["last"][ss[start]]
        seen = st["seen"][ss]
        changed = np.any(v != prev, axis=1) | (start & ~seen)
        idx = np.arange(len(v))
        mark = np.maximum.accumulate(np.where(changed | start, idx, 0))
        carried = ~changed[mark]  # the run began in an earlier batch
        unchanged = idx - mark + np.where(carried, st["unchanged"][ss] + 1, 0)
        since = np.where(carried, st["since"][ss], t[mark])
        stale = np.zeros(len(v), np.bool_)
        if self.rule.max_updates is not None:
            stale |= unchanged >= self.rule.max_updates
        if self.rule.max_age is not None:
            stale |= (unchanged >= 1) & (t - since >= self.rule.max_age)
        for i in stale.nonzero()[0].tolist():
            row = int(rows[order[i]])
            fails[row] = True
            reasons[row] = fill(
                self.rule.reason or "stale: {fields} unchanged for {updates} updates over {age}",
                fields=", ".join(self.rule.fields),
                updates=int(unchanged[i]),
                age=format_duration(int(t[i] - since[i])),
            )
        end = _last_of_group(start)
        last = ss[end]
        st["last"][last] = v[end]
        st["unchanged"][last] = unchanged[end]
        st["since"][last] = since[end]
        st["seen"][last] = True
        return fails, reasons


class DivergenceCheck:
    """A provider's price against the median of the other providers' latest prices for the
    same instrument (each within ``align`` of it), off by more than the threshold for at
    least ``sustain``: a single spike never fails."""

    def __init__(self, rule: DivergenceRule, index: KeyIndex, instruments: KeyIndex) -> None:
        self.rule = rule
        self.instruments = instruments
        p = rule.max_providers
        self.book = instruments.table(
            {"price": (np.float64, np.nan, p), "time": (np.int64, 0, p), "used": (np.int16, 0, 0)}
        )
        self.state = index.table({"column": (np.int16, -1, 0), "start": (np.int64, -1, 0)})

    def evaluate(
        self, cols: Columns, active: BoolArray, slots: IntArray, now: int
    ) -> tuple[BoolArray, dict[int, str]]:
        rule = self.rule
        price, ok, _bad = cols.numeric(rule.field)
        fails = np.zeros(cols.n, np.bool_)
        reasons: dict[int, str] = {}
        rows = (active & ok).nonzero()[0]
        if not len(rows):
            return fails, reasons
        every = cols.identity_arrays()[1]
        instruments = (
            every.take(pa.array(rows))
            if isinstance(every, pa.Array)
            else [every[r] for r in rows.tolist()]
        )
        inst = self.instruments.slots(instruments, now_ns=now)
        column = self._columns(slots[rows], inst)
        # Along each instrument, in arrival order: every provider's latest price and time.
        order, si, start = _groups(inst)
        p, t, col = price[rows][order], cols.origin_ns[rows][order], column[order]
        idx = np.arange(len(p))
        first = np.maximum.accumulate(np.where(start, idx, 0))
        width = int(self.book["used"][si].max(initial=1))
        others = np.full((len(p), width), np.nan)
        book_p, book_t = self.book["price"], self.book["time"]
        for j in range(width):
            # the latest row of provider j up to here; for other providers' rows, earlier
            latest = np.maximum.accumulate(np.where(col == j, idx, -1))
            inside = latest >= first  # in this batch and this instrument, else the book
            pj = np.where(inside, p[np.maximum(latest, 0)], book_p[si, j])
            tj = np.where(inside, t[np.maximum(latest, 0)], book_t[si, j])
            aligned = (col != j) & (np.abs(t - tj) <= rule.align) & ~np.isnan(pj)
            others[:, j] = np.where(aligned, pj, np.nan)
        median, count = _nan_median(others)
        # Prices near the float limit overflow to inf: a number like any other here (an inf
        # median makes no row diverge), not a warning, which would fail the batch's rows.
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            off = np.abs(p - median) / np.abs(median) * 100.0
        diverging = (count >= rule.min_others) & (off > rule.threshold_pct) & (col >= 0)
        # Book keeping: each provider's last price and time in this batch, per instrument.
        for j in range(width):
            mine = (col == j).nonzero()[0]
            if len(mine):
                last_rows = mine[_last_of_group(np.r_[True, si[mine][1:] != si[mine][:-1]])]
                book_p[si[last_rows], j] = p[last_rows]
                book_t[si[last_rows], j] = t[last_rows]
        self._sustain(rows, order, slots, t, diverging, off, median, count, p, fails, reasons)
        return fails, reasons

    def _sustain(
        self,
        rows: IntArray,
        order: IntArray,
        slots: IntArray,
        t: IntArray,
        diverging: BoolArray,
        off: FloatArray,
        median: FloatArray,
        count: IntArray,
        p: FloatArray,
        fails: BoolArray,
        reasons: dict[int, str],
    ) -> None:
        # Back to per-(provider, instrument) order to find when each run of divergence began.
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        key_order, sk, start = _groups(slots[rows])
        at = back[key_order]  # position in instrument order of each row in key order
        d, tk = diverging[at], t[at]
        prev = np.empty_like(d)
        prev[1:] = d[:-1]
        prev[start] = self.state["start"][sk[start]] >= 0
        begins = d & ~prev
        idx = np.arange(len(d))
        mark = np.maximum.accumulate(np.where(begins | start, idx, 0))
        carried = ~begins[mark] & d
        began = np.where(carried, self.state["start"][sk], tk[mark])
        failing = d & (tk - began >= self.rule.sustain)
        for i in failing.nonzero()[0].tolist():
            j = int(at[i])
            row = int(rows[key_order[i]])
            fails[row] = True
            reasons[row] = fill(
                self.rule.reason
                or "{field} {value} is {pct:.2f}% off the median {median} of {others} other "
                "provider(s) for {duration}",
                field=self.rule.field,
                value=float(p[j]),
                pct=float(off[j]),
                median=float(median[j]),
                others=int(count[j]),
                duration=format_duration(int(tk[i] - began[i])),
            )
        end = _last_of_group(start)
        self.state["start"][sk[end]] = np.where(d[end], began[end], -1)

    def _columns(self, slots: IntArray, inst: IntArray) -> IntArray:
        column = self.state["column"]
        need = column[slots] < 0
        new_slots, first = np.unique(slots[need], return_index=True)
        # In arrival order, as one record at a time would: past the cap, which providers are
        # compared must not depend on how the records were batched.
        arrival = np.argsort(first, kind="stable")
        new_slots, first = new_slots[arrival], first[arrival]
        for s, i in zip(new_slots.tolist(), inst[need][first].tolist(), strict=True):
            used = int(self.book["used"][i])
            if used < self.rule.max_providers:  # providers beyond the cap are not compared
                column[s] = used
                self.book["used"][i] = used + 1
        return np.asarray(column[slots], np.int64)


def _nan_median(m: FloatArray) -> tuple[FloatArray, IntArray]:
    """Row medians ignoring NaN, and how many values each had (NaN median when none)."""
    count = np.sum(~np.isnan(m), axis=1)
    s = np.sort(m, axis=1)  # NaN sorts last
    lo = np.maximum((count - 1) // 2, 0)
    hi = np.maximum(count // 2, 0)
    rows = np.arange(len(m))
    with np.errstate(invalid="ignore", over="ignore"):  # two prices near the limit: inf
        median = np.where(count > 0, (s[rows, lo] + s[rows, hi]) / 2.0, np.nan)
    return median, count


def _key(key: Any) -> tuple[str, ...]:
    return tuple(key) if isinstance(key, tuple) else (str(key),)
