"""Stateless rule kinds, severities, scopes and shadow rules: passing and failing events."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from stampline.rules import RuleFileError, RuleSet
from tests.rules.conftest import T0_NS, raw


def one(path: Path, value: bytes, topic: str = "") -> list[tuple[str, str]]:
    """(rule id, reason) of every reject failure ``value`` gets."""
    verdict = RuleSet.load([path]).evaluate(value, T0_NS, topic)
    return [(f.rule_id, f.reason) for f in verdict.failures]


class TestStatelessKinds:
    def test_not_null(self, rule_file: Callable[..., Path]) -> None:
        """not_null fails a missing or null field, naming which, and passes a present one."""
        path = rule_file("  - {id: bid.present, version: 1, kind: not_null, field: bid}\n")
        assert one(path, raw()) == []
        assert one(path, raw(bid=...)) == [("bid.present", "bid is missing")]
        assert one(path, raw(bid=None)) == [("bid.present", "bid is null")]

    def test_enum(self, rule_file: Callable[..., Path]) -> None:
        """enum fails a value outside the set and leaves a missing field alone."""
        path = rule_file(
            "  - {id: t.known, version: 1, kind: enum, field: type, values: [quote]}\n"
        )
        assert one(path, raw()) == []
        assert one(path, raw(type=...)) == []
        assert one(path, raw(type="trade")) == [("t.known", "type 'trade' is not one of ['quote']")]
        assert one(path, raw(type=7)) == [("t.known", "type 7 is not one of ['quote']")]

    def test_enum_of_numbers_keeps_booleans_apart(self, rule_file: Callable[..., Path]) -> None:
        """An enum of numbers does not accept True for 1."""
        path = rule_file(
            "  - {id: lot.size, version: 1, kind: enum, field: lot, values: [1, 10]}\n"
        )
        assert one(path, raw(lot=10)) == []
        assert [r for r, _ in one(path, raw(lot=True))] == ["lot.size"]

    def test_regex(self, rule_file: Callable[..., Path]) -> None:
        """regex fails a non-matching string and a non-string, naming the pattern."""
        path = rule_file(
            "  - {id: sym, version: 1, kind: regex, field: instrument, pattern: '^[A-Z]+$'}\n"
        )
        assert one(path, raw()) == []
        assert one(path, raw(instrument="aapl")) == [
            ("sym", "instrument 'aapl' does not match ^[A-Z]+$")
        ]
        assert one(path, raw(instrument=5)) == [("sym", "instrument 5 is not a string")]

    def test_bad_regex_is_refused_at_load(self, rule_file: Callable[..., Path]) -> None:
        """A pattern that is not a regular expression is refused with file:line and key."""
        path = rule_file("  - {id: sym, version: 1, kind: regex, field: x, pattern: '(['}\n")
        with pytest.raises(RuleFileError, match=r"r\.rules\.yaml:3: rules\.0\.regex\.pattern"):
            RuleSet.load([path])

    def test_cross_field_bid_not_above_ask(self, rule_file: Callable[..., Path]) -> None:
        """compare fails a crossed quote with both values and passes when a side is missing."""
        path = rule_file(
            "  - {id: q.cross, version: 1, kind: compare, left: bid, op: '<=', right: ask}\n"
        )
        assert one(path, raw()) == []
        assert one(path, raw(bid=190.26)) == []
        assert one(path, raw(bid=191, ask=190)) == [("q.cross", "bid 191 is not <= ask 190")]
        assert one(path, raw(ask=...)) == []
        assert one(path, raw(ask="x")) == [("q.cross", "ask 'x' is not a number")]

    def test_tick_size(self, rule_file: Callable[..., Path]) -> None:
        """tick_size passes multiples of the tick despite binary rounding and fails the rest."""
        path = rule_file("  - {id: tick, version: 1, kind: tick_size, field: price, tick: 0.01}\n")
        assert one(path, raw(price=100.01)) == []
        assert one(path, raw(price=0.07)) == []
        assert one(path, raw(price=100.015)) == [
            ("tick", "price 100.015 is not a multiple of the tick 0.01")
        ]

    def test_freshness_per_provider_window(self, rule_file: Callable[..., Path]) -> None:
        """A provider with its own freshness window is judged by it; others by the default."""
        path = rule_file(
            "  - id: fresh\n    version: 1\n    kind: freshness\n    max_past: 1m\n"
            "    max_future: 1s\n    providers: {slow: {max_past: 10m, max_future: 1s}}\n"
        )
        old = T0_NS // 1_000_000 - 5 * 60_000
        assert one(path, raw(provider="slow", ts=old)) == []
        assert one(path, raw(provider="fast", ts=old)) == [
            ("fresh", "origin time is 5m00s in the past; allowed: 1m00s past to 1.0s future")
        ]

    def test_one_batch_with_a_failure_per_kind_keeps_rows_apart(
        self, rule_file: Callable[..., Path]
    ) -> None:
        """In one batch, each row fails exactly the rules it breaks."""
        path = rule_file(
            "  - {id: a, version: 1, kind: not_null, field: bid}\n"
            "  - {id: b, version: 1, kind: range, field: quantity, min: 0}\n"
            "  - {id: c, version: 1, kind: compare, left: bid, op: '<=', right: ask}\n"
        )
        verdicts = RuleSet.load([path]).evaluate_batch(
            [raw(), raw(bid=...), raw(quantity=-1), raw(bid=200, quantity=-2)], T0_NS
        )
        assert [[f.rule_id for f in v.failures] for v in verdicts] == [[], ["a"], ["b"], ["b", "c"]]

    def test_arrow_table_and_raw_records_agree(self, rule_file: Callable[..., Path]) -> None:
        """The same events judged from an Arrow table and from raw JSON get the same rule ids."""
        path = rule_file(
            "  - {id: a, version: 1, kind: range, field: price, min: 0, min_exclusive: true}\n"
            "  - {id: b, version: 1, kind: enum, field: type, values: [quote, trade]}\n"
            "  - {id: c, version: 1, kind: regex, field: instrument, pattern: '^[A-Z]+$'}\n"
        )
        events = [
            {"price": 1.0, "type": "quote", "instrument": "A"},
            {"price": 0.0, "type": "x", "instrument": "A"},
            {"price": 2.0, "type": "trade", "instrument": "a"},
        ]
        rules = RuleSet.load([path])
        import orjson

        by_rows = rules.evaluate_records([orjson.dumps({**e, "ts": 1}) for e in events], T0_NS)
        table = pa.Table.from_pylist(events)
        by_table = rules.evaluate_table(table, T0_NS)
        assert (
            [[f.rule_id for f in by_table.failing(i)] for i in range(3)]
            == [[f.rule_id for f in by_rows.failing(i)] for i in range(3)]
            == [[], ["a", "b"], ["c"]]
        )


class TestSeverities:
    RULES = (
        "  - {id: q.rej, version: 1, kind: range, field: quantity, min: 0}\n"
        "  - {id: q.warn, version: 2, kind: range, field: quantity, max: 1000, severity: warn}\n"
        "  - {id: q.obs, version: 3, kind: range, field: quantity, max: 500, severity: observe}\n"
    )

    def test_reject_warn_and_observe_land_apart(self, rule_file: Callable[..., Path]) -> None:
        """A reject failure blocks; warn and observe failures leave the record ok."""
        rules = RuleSet.load([rule_file(self.RULES)])
        big = rules.evaluate(raw(quantity=2000), T0_NS)
        assert big.ok
        assert [(f.rule_id, f.rule_version, f.severity) for f in big.warnings] == [
            ("q.warn", 2, "warn")
        ]
        assert [(f.rule_id, f.severity) for f in big.observed] == [("q.obs", "observe")]
        neg = rules.evaluate(raw(quantity=-1), T0_NS)
        assert not neg.ok
        assert neg.first.rule_id == "q.rej"

    def test_observe_is_counted(self, rule_file: Callable[..., Path]) -> None:
        """Observe rules count their violations and the rows they saw."""
        rules = RuleSet.load([rule_file(self.RULES)])
        rules.evaluate_batch([raw(quantity=600), raw(quantity=10), raw(quantity=700)], T0_NS)
        assert rules.stats.violations[("q.obs", 3, False)] == 2
        assert rules.stats.evaluated[("q.obs", 3, False)] == 3


class TestScope:
    def test_rule_applies_only_to_matching_topic_and_provider(
        self, rule_file: Callable[..., Path]
    ) -> None:
        """A scoped rule judges matching records and lets every other record pass."""
        path = rule_file(
            "  - id: q.max\n    version: 1\n    kind: range\n    field: quantity\n    max: 10\n"
            "    scope: {topics: ['md.*'], providers: ['xn*']}\n"
        )
        rules = RuleSet.load([path])
        value = raw(quantity=50)
        assert not rules.evaluate(value, T0_NS, "md.raw").ok
        assert rules.evaluate(value, T0_NS, "fx.raw").ok
        assert rules.evaluate(raw(quantity=50, provider="bats"), T0_NS, "md.raw").ok


class TestShadow:
    def test_shadow_version_only_counts(self, rule_file: Callable[..., Path]) -> None:
        """A shadow version's failures are observed, never rejected, and counted apart."""
        path = rule_file(
            "  - {id: q.max, version: 1, kind: range, field: quantity, max: 1000}\n"
            "  - {id: q.max, version: 2, kind: range, field: quantity, max: 100, shadow: true}\n"
        )
        rules = RuleSet.load([path])
        verdicts = rules.evaluate_batch([raw(quantity=500), raw(quantity=5000)], T0_NS)
        assert verdicts[0].ok
        assert [(f.rule_version, f.shadow) for f in verdicts[0].observed] == [(2, True)]
        assert [f.rule_version for f in verdicts[1].failures] == [1]
        assert rules.stats.violations[("q.max", 2, True)] == 2
        assert rules.stats.violations[("q.max", 1, False)] == 1

    def test_shadow_without_live_version_is_refused(self, rule_file: Callable[..., Path]) -> None:
        """A shadow rule with no live rule of the same id is refused at load."""
        path = rule_file(
            "  - {id: q.max, version: 2, kind: range, field: q, max: 1, shadow: true}\n"
        )
        with pytest.raises(RuleFileError, match="no live version"):
            RuleSet.load([path])

    def test_v1_file_cannot_use_v2_keys(self, tmp_path: Path) -> None:
        """A version-1 file using a version-2 key is refused naming the key and the version."""
        path = tmp_path / "old.yaml"
        path.write_text(
            "version: 1\nrules:\n  - {id: a, version: 1, kind: range, field: q, severity: warn}\n"
        )
        with pytest.raises(RuleFileError, match="severity needs rule file version 2"):
            RuleSet.load([path])
