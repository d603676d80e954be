"""Stateful rules: sequence gaps, stale quotes, cross-provider divergence, and bounded state.

The property tests compare the vectorised checks with a plain one-event-at-a-time model of
the same rule, over arbitrary input (duplicates, reordering, interleaved keys) cut into
arbitrary batches: batch boundaries must not change any verdict.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.rules import RuleSet
from tests.rules.conftest import T0_MS, T0_NS, raw

SEQ = "  - {id: seq.ok, version: 1, kind: sequence, field: seq, max_open_gaps: 1024}\n"
STALE = (
    "  - {id: stale, version: 1, kind: stale, fields: [bid, ask], max_updates: 3, max_age: 5s}\n"
)
DIVERGE = (
    "  - {id: div, version: 1, kind: divergence, field: price, threshold_pct: 5, sustain: 2s,"
    " align: 1s}\n"
)


def write(tmp_path: Path, rules: str, head: str = "") -> Path:
    path = tmp_path / f"r{abs(hash(rules + head))}.yaml"
    path.write_text(f"version: 2\n{head}rules:\n{rules}", "utf-8")
    return path


def run(
    path: Path, values: list[bytes], cuts: list[int] | None = None, now: int = T0_NS
) -> list[str]:
    """Each event's reason from the one rule ('' when it passes), fed in batches cut at ``cuts``."""
    rules = RuleSet.load([path])
    bounds = [0, *sorted({c % (len(values) + 1) for c in cuts or []}), len(values)]
    out: list[str] = []
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        result = rules.evaluate_records(values[a:b], now)
        out.extend(next((f.reason for f in result.failing(i)), "") for i in range(b - a))
    return out


class TestSequence:
    def test_gap_reorder_duplicate_and_gap_events(self, tmp_path: Path) -> None:
        """A jump opens a gap, late numbers fill it (closing it), a repeat is a duplicate."""
        path = write(tmp_path, SEQ)
        rules = RuleSet.load([path])
        reasons = [
            next((f.reason for f in (v.failures)), "")
            for v in rules.evaluate_batch([raw(seq=s) for s in (1, 2, 5, 3, 4, 6, 6)], T0_NS)
        ]
        assert reasons == [
            "",
            "",
            "sequence gap: expected 3, got 5 (2 missing)",
            "reordered: seq 3 arrived after 5",
            "reordered: seq 4 arrived after 5",
            "",
            "duplicate: seq 6 already seen (highest 6)",
        ]
        events = [(e.kind, e.key, e.first, e.last, e.why) for e in rules.drain_events()]
        assert events == [
            ("open", ("xnas", "AAPL"), 3, 4, ""),
            ("close", ("xnas", "AAPL"), 3, 4, "filled"),
        ]

    def test_a_refused_record_that_names_its_number_has_arrived(self, tmp_path: Path) -> None:
        """Seq 2 with a NaN price is refused (not JSON), yet its number arrived: no gap opens
        at 3, as `stampline completeness` counts it."""
        rules = RuleSet.load([write(tmp_path, SEQ)])
        nan = raw(seq=2, price=1.5).replace(b'"price":1.5', b'"price":NaN')
        result = rules.evaluate_records([raw(seq=1), nan, raw(seq=3)], T0_NS)
        assert [[f.rule_id for f in result.failing(i)] for i in range(3)] == [
            [],
            ["record.non_finite"],
            [],
        ]
        assert rules.drain_events() == []

    def test_keys_are_independent(self, tmp_path: Path) -> None:
        """Each provider and instrument pair keeps its own sequence."""
        path = write(tmp_path, SEQ)
        values = [
            raw(seq=1),
            raw(seq=1, instrument="MSFT"),
            raw(seq=2),
            raw(seq=3, instrument="MSFT"),
        ]
        assert run(path, values) == ["", "", "", "sequence gap: expected 2, got 3 (1 missing)"]

    def test_gap_expires_with_its_key(self, tmp_path: Path) -> None:
        """A key not seen for the TTL is forgotten and its open gap closes as expired."""
        path = write(tmp_path, SEQ, "state: {ttl: 1m, max_keys: 10}\n")
        rules = RuleSet.load([path])
        rules.evaluate_batch([raw(seq=1), raw(seq=5)], T0_NS)
        rules.evaluate_batch([raw(seq=1, instrument="MSFT")], T0_NS + 120 * 10**9)
        assert [(e.kind, e.why) for e in rules.drain_events()] == [
            ("open", ""),
            ("close", "expired"),
        ]
        assert rules.state_size()["keys"] == 1
        # the forgotten key starts afresh: no gap from 5 to 9
        assert rules.evaluate(raw(seq=9), T0_NS + 121 * 10**9).ok

    def test_filled_holes_do_not_grow_a_keys_pieces_past_max_open_gaps(
        self, tmp_path: Path
    ) -> None:
        """Numbers filling holes in one wide gap split it into pieces; the pieces stay within
        max_open_gaps (the oldest given up as expired) and a number in a kept piece is still
        found as reordered."""
        rule = "  - {id: seq.ok, version: 1, kind: sequence, field: seq, max_open_gaps: 4}\n"
        rules = RuleSet.load([write(tmp_path, rule)])
        fills = [500, 250, 750, 125, 625, 375, 875, 60]
        rules.evaluate_batch([raw(seq=0), raw(seq=1000), *(raw(seq=s) for s in fills)], T0_NS)
        assert rules.state_size()["open_gaps"] == 4
        events = rules.drain_events()
        expired = [(e.first, e.last) for e in events if e.why == "expired"]
        # each split past four pieces gave up the lowest piece; 60 then fell in none
        assert expired == [(1, 124), (126, 249), (251, 374), (376, 499)]
        late = rules.evaluate(raw(seq=900), T0_NS)
        assert late.failures[0].reason == "reordered: seq 900 arrived after 1000"

    def test_state_is_bounded_by_max_keys(self, tmp_path: Path) -> None:
        """Past max_keys, the least recently seen keys are evicted and the count stays bounded."""
        path = write(tmp_path, SEQ, "state: {ttl: 1h, max_keys: 50}\n")
        rules = RuleSet.load([path])
        for i in range(200):
            rules.evaluate(raw(seq=1, instrument=f"I{i}"), T0_NS + i)
        size = rules.state_size()
        assert size["keys"] <= 50
        assert size["evicted"] >= 150
        assert size["bytes"] > 0

    @settings(max_examples=150, deadline=None)
    @given(
        events=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 12)), min_size=1, max_size=60),
        cuts=st.lists(st.integers(0, 60), max_size=4),
    )
    def test_matches_the_one_at_a_time_model(
        self, tmp_path_factory: Any, events: list[tuple[int, int]], cuts: list[int]
    ) -> None:
        """Gaps, reorders and duplicates match a per-event model, whatever the batching."""
        path = write(tmp_path_factory.mktemp("seq"), SEQ)
        values = [raw(seq=s, instrument=f"K{k}") for k, s in events]
        expected = []
        high: dict[int, int] = {}
        missing: dict[int, set[int]] = {}
        for k, s in events:
            h = high.get(k, -1)
            gone = missing.setdefault(k, set())
            if h < 0 or s == h + 1:
                expected.append("")
            elif s > h + 1:
                expected.append("gap")
                gone.update(range(h + 1, s))
            elif s in gone:
                expected.append("reordered")
                gone.discard(s)
            else:
                expected.append("duplicate")
            high[k] = max(h, s)
        got = [r.split(":")[0].replace("sequence gap", "gap") for r in run(path, values, cuts)]
        assert got == expected


def stale_model(events: list[tuple[int, float, int]], n: int, age_ms: int) -> list[bool]:
    last: dict[int, tuple[float, int, int]] = {}  # key -> (value, unchanged, since)
    out = []
    for k, v, t in events:
        if k in last and last[k][0] == v:
            _, u, since = last[k]
            u += 1
        else:
            u, since = 0, t
        last[k] = (v, u, since)
        out.append(u >= n or (u >= 1 and t - since >= age_ms))
    return out


class TestStale:
    def test_unchanged_for_n_updates_fails_and_a_change_resets(self, tmp_path: Path) -> None:
        """The third unchanged update fails; a changed bid starts over."""
        path = write(tmp_path, STALE)
        values = [raw(ts=T0_MS + i) for i in range(4)] + [raw(ts=T0_MS + 5, bid=1.0)]
        assert run(path, values) == [
            "",
            "",
            "",
            "stale: bid, ask unchanged for 3 updates over 3.0ms",
            "",
        ]

    def test_unchanged_for_too_long_fails(self, tmp_path: Path) -> None:
        """A quote unchanged for longer than max_age fails even after one update."""
        path = write(tmp_path, STALE)
        values = [raw(ts=T0_MS), raw(ts=T0_MS + 6_000)]
        assert run(path, values) == ["", "stale: bid, ask unchanged for 1 updates over 6.0s"]

    @settings(max_examples=150, deadline=None)
    @given(
        events=st.lists(
            st.tuples(st.integers(0, 2), st.sampled_from([1.0, 2.0]), st.integers(0, 8_000)),
            min_size=1,
            max_size=50,
        ),
        cuts=st.lists(st.integers(0, 50), max_size=4),
    )
    def test_matches_the_one_at_a_time_model(
        self, tmp_path_factory: Any, events: list[tuple[int, float, int]], cuts: list[int]
    ) -> None:
        """Staleness, with out-of-order times and repeats, matches a per-event model."""
        path = write(tmp_path_factory.mktemp("stale"), STALE)
        values = [raw(instrument=f"K{k}", bid=v, ts=T0_MS + t) for k, v, t in events]
        got = [bool(r) for r in run(path, values, cuts)]
        assert got == stale_model(events, 3, 5_000)


def divergence_model(
    events: list[tuple[str, float, int]],
    pct: float,
    sustain_ms: int,
    align_ms: int,
    max_providers: int = 8,
    instruments: list[str] | None = None,
) -> list[bool]:
    """One event at a time; ``instruments`` gives each event's (default: one for all)."""
    book: dict[str, dict[str, tuple[float, int]]] = {}
    start: dict[tuple[str, str], int | None] = {}
    compared: dict[str, list[str]] = {}  # per instrument, the first max_providers to arrive
    out = []
    for k, (provider, price, t) in enumerate(events):
        inst = instruments[k] if instruments else ""
        first = compared.setdefault(inst, [])
        if provider not in first and len(first) < max_providers:
            first.append(provider)
        if provider not in first:  # past the cap: never judged, never a comparison
            out.append(False)
            continue
        prices = book.setdefault(inst, {})
        others = [p for q, (p, tq) in prices.items() if q != provider and abs(t - tq) <= align_ms]
        off = (
            bool(others)
            and abs(price - statistics.median(others)) / statistics.median(others) * 100 > pct
        )
        if off:
            began = start.get((inst, provider))
            if began is None:
                began = start[(inst, provider)] = t
            out.append(t - began >= sustain_ms)
        else:
            start[(inst, provider)] = None
            out.append(False)
        prices[provider] = (price, t)
    return out


class TestDivergence:
    def feed(self, rows: list[tuple[str, float, int]]) -> list[bytes]:
        return [
            raw(provider=p, price=price, ts=T0_MS + t, seq=i)
            for i, (p, price, t) in enumerate(rows)
        ]

    def test_a_single_spike_is_not_a_divergence(self, tmp_path: Path) -> None:
        """One price 10% off the others, then back in line, passes."""
        path = write(tmp_path, DIVERGE)
        rows = [("a", 100.0, 0), ("b", 100.0, 10), ("c", 110.0, 20), ("c", 100.0, 500)]
        assert run(path, self.feed(rows)) == ["", "", "", ""]

    def test_sustained_divergence_fails_once_held_long_enough(self, tmp_path: Path) -> None:
        """A provider 8% off for 2 s fails from then on, naming the gap and how long it held."""
        path = write(tmp_path, DIVERGE)
        rows = [("a", 100.0, 0), ("b", 100.0, 0)]
        for t in (0, 800, 1600, 2100):
            rows += [("a", 100.0, t + 1), ("b", 100.0, t + 2), ("c", 108.0, t + 3)]
        reasons = run(path, self.feed(rows))
        assert reasons[-1] == (
            "price 108.0 is 8.00% off the median 100.0 of 2 other provider(s) for 2.1s"
        )
        assert [bool(r) for r in reasons] == [False] * (len(rows) - 1) + [True]

    def test_refused_records_do_not_break_a_divergence_run(self, tmp_path: Path) -> None:
        """c is 8% off for 2.1 s; a record of c dated a day ahead (refused by the window rule)
        and one the caller refuses (``refused``, as the gate does for broken stamps) arrive
        mid-run: neither ends the run, so c still fails once it held 2 s."""
        window = "  - {id: window, version: 1, kind: freshness, max_past: 5m, max_future: 1m}\n"
        rules = RuleSet.load([write(tmp_path, window + DIVERGE)])
        rows = [("a", 100.0, 0), ("b", 100.0, 0)]
        for t in (0, 800, 1600, 2100):
            rows += [("a", 100.0, t + 1), ("b", 100.0, t + 2), ("c", 108.0, t + 3)]
        values = self.feed(rows)
        ahead = raw(provider="c", price=108.0, ts=T0_MS + 86_400_000, seq=99)
        caller = raw(provider="c", price=108.0, ts=T0_MS + 30_000, seq=98)
        values[8:8] = [ahead, caller]  # after c's second row
        result = rules.evaluate_records(values, T0_NS, refused=[9])
        reasons = [[f.rule_id for f in result.failing(i)] for i in range(len(values))]
        assert reasons[8] == ["window"]
        assert reasons[-1] == ["div"]

    def test_prices_near_the_float_limit_are_judged_not_raised(self, tmp_path: Path) -> None:
        """A median of two prices at 1e308 overflows to inf, and no price diverges from it
        (b, c, e); 100 against a median of 5e307 does (f), and so does 1e308 against 100 (d).
        Nothing warns: a warning, an error under pytest, once failed every row of the batch
        as "rule raised"."""
        path = write(tmp_path, DIVERGE.replace("sustain: 2s", "sustain: 0s"))
        rows = [("a", 1e308, 0), ("b", 1e308, 1), ("c", 100.0, 2), ("e", 100.0, 3)]
        rows += [("f", 100.0, 4), ("d", 1e308, 5)]
        reasons = run(path, self.feed(rows))
        assert reasons[:4] == ["", "", "", ""]
        assert reasons[4].startswith("price 100.0 is 100.00% off the median 5e+307")
        assert reasons[5].startswith("price 1e+308 is ")

    def test_stale_prices_of_others_are_not_compared(self, tmp_path: Path) -> None:
        """Other providers' prices older than the alignment window are left out."""
        path = write(tmp_path, DIVERGE)
        rows = [("a", 100.0, 0), ("c", 150.0, 5_000), ("c", 150.0, 8_000)]
        assert run(path, self.feed(rows)) == ["", "", ""]

    @settings(max_examples=150, deadline=None)
    @given(
        events=st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.sampled_from([100.0, 101.0, 110.0]),
                st.integers(0, 6_000),
            ),
            min_size=1,
            max_size=50,
        ),
        cuts=st.lists(st.integers(0, 50), max_size=4),
    )
    def test_matches_the_one_at_a_time_model(
        self, tmp_path_factory: Any, events: list[tuple[str, float, int]], cuts: list[int]
    ) -> None:
        """Divergence over out-of-order, repeated input matches a per-event model."""
        path = write(tmp_path_factory.mktemp("div"), DIVERGE)
        got = [bool(r) for r in run(path, self.feed(events), cuts)]
        assert got == divergence_model(events, 5.0, 2_000, 1_000)

    def test_past_the_provider_cap_the_first_to_arrive_are_compared(self, tmp_path: Path) -> None:
        """Cap 2 on instrument Y: a, then c and d in one batch. c came first, so c is compared
        and fails once 8% off for 2 s, however the records are batched. (The places went by
        the order the names were first seen on any instrument: d before c, on X.)"""
        capped = DIVERGE.replace("align: 1s}", "align: 1s, max_providers: 2}")
        path = write(tmp_path, capped)
        events = [
            ("X", "d", 100.0, 0), ("X", "c", 100.0, 1), ("Y", "a", 100.0, 2),
            ("Y", "c", 110.0, 10), ("Y", "d", 100.0, 20), ("Y", "a", 100.0, 2_000),
            ("Y", "c", 110.0, 2_500),
        ]  # fmt: skip
        values = [
            raw(instrument=inst, provider=p, price=price, ts=T0_MS + t, seq=i)
            for i, (inst, p, price, t) in enumerate(events)
        ]
        for cuts in ([], [3, 5], [4]):
            assert [bool(r) for r in run(path, values, cuts)] == [False] * 6 + [True], cuts

    @settings(max_examples=200, deadline=None)
    @given(
        events=st.lists(
            st.tuples(
                st.sampled_from(["X", "Y"]),
                st.sampled_from(["a", "b", "c", "d"]),
                st.sampled_from([100.0, 110.0]),
                st.integers(0, 6_000),
            ),
            min_size=1,
            max_size=40,
        ),
        cuts=st.lists(st.integers(0, 40), max_size=4),
    )
    def test_past_the_provider_cap_matches_the_model_however_batched(
        self,
        tmp_path_factory: Any,
        events: list[tuple[str, str, float, int]],
        cuts: list[int],
    ) -> None:
        """With more providers on an instrument than ``max_providers``, the first to arrive
        there are the ones compared, whatever the batches (a batch once gave the places to
        its new providers in the order their names were first seen on any instrument)."""
        capped = DIVERGE.replace("align: 1s}", "align: 1s, max_providers: 2}")
        path = write(tmp_path_factory.mktemp("div"), capped)
        values = [
            raw(instrument=inst, provider=p, price=price, ts=T0_MS + t, seq=i)
            for i, (inst, p, price, t) in enumerate(events)
        ]
        got = [bool(r) for r in run(path, values, cuts)]
        rows = [(p, price, t) for _inst, p, price, t in events]
        instruments = [inst for inst, *_ in events]
        assert got == divergence_model(rows, 5.0, 2_000, 1_000, 2, instruments)


class TestRobustness:
    def test_stateful_rule_that_raises_fails_its_rows_and_keeps_going(
        self, tmp_path: Path, monkeypatch: Any
    ) -> None:
        """A stateful rule raising dead-letters the batch's rows naming the exception, counts
        it, and the next batch is judged normally."""
        rules = RuleSet.load([write(tmp_path, SEQ)])
        check = rules.rules[0].stateful
        assert check is not None
        original = check.evaluate

        def broken(*args: Any) -> Any:
            raise RuntimeError("state corrupted")

        monkeypatch.setattr(check, "evaluate", broken)
        bad = rules.evaluate_batch([raw(seq=1), raw(seq=2)], T0_NS)
        assert [v.first.reason for v in bad] == ["rule raised RuntimeError: state corrupted"] * 2
        assert rules.stats.rule_errors["seq.ok"] == 1
        monkeypatch.setattr(check, "evaluate", original)
        assert rules.evaluate(raw(seq=3), T0_NS).ok


def test_unused_helpers_are_exercised(rule_file: Callable[..., Path]) -> None:
    """The shared fixture writes a loadable version-2 file."""
    assert RuleSet.load([rule_file(SEQ)]).rule_ids[-1] == ("seq.ok", 1)
    assert orjson.loads(raw())["seq"] == 1


def test_key_numbering_stays_bounded_and_correct(tmp_path: Path) -> None:
    """After many more distinct keys than max_keys, string numbering is rebuilt and the
    surviving keys keep their sequence state."""
    path = write(tmp_path, SEQ, "state: {ttl: 1h, max_keys: 4}\n")
    rules = RuleSet.load([path])
    for i in range(2_000):
        rules.evaluate(raw(seq=1, instrument=f"I{i}"), T0_NS + i)
    assert max(len(n) for n in rules.index._names) <= 4 * 4 + 1024 + 1
    rules.evaluate(raw(seq=1, instrument="KEEP"), T0_NS + 3_000)
    verdict = rules.evaluate(raw(seq=3, instrument="KEEP"), T0_NS + 3_001)
    assert verdict.first.reason == "sequence gap: expected 2, got 3 (1 missing)"
