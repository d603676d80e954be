"""Verdicts of the compiled rule set, on the packaged market-data rules and on small rule files."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stampline.rules as rules
from stampline.rules import (
    BUILTIN_RULES,
    DECODE_RULE,
    NON_FINITE_RULE,
    ORIGIN_RULE,
    SIZE_RULE,
    Extraction,
    RuleFileError,
    RuleSet,
    Verdict,
    format_duration,
)

NOW_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
NOW_MS = NOW_NS // 1_000_000
MINUTE_MS = 60_000
PAST_WINDOW_MS = 5 * MINUTE_MS  # origin.window in market_data.rules.yaml
FUTURE_WINDOW_MS = 1 * MINUTE_MS

MARKET_RULES = Path(str(resources.files("stampline").joinpath("data", "market_data.rules.yaml")))


def quote(**changes: Any) -> dict[str, Any]:
    """A good market-data quote as a dict, with ``changes`` applied (``None`` drops a key)."""
    record: dict[str, Any] = {
        "provider": "xnas",
        "instrument": "AAPL",
        "seq": 42,
        "ts": NOW_MS,
        "type": "quote",
        "price": 189.25,
        "quantity": 100,
        "bid": 189.2,
        "ask": 189.3,
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def rule_ids(verdict: Verdict) -> list[str]:
    return [f.rule_id for f in verdict.failures]


@pytest.fixture(scope="module")
def market() -> RuleSet:
    """The packaged market-data rule set with the default extraction (origin ``ts`` in ms)."""
    return RuleSet.load([MARKET_RULES])


@pytest.fixture
def write_rules(tmp_path: Path) -> Callable[[str], Path]:
    """Write a rule file of version 1 whose ``rules:`` list is ``body``; return its path."""
    counter = iter(range(1_000))

    def write(body: str) -> Path:
        path = tmp_path / f"rules_{next(counter)}.yaml"
        path.write_text("version: 1\nrules:\n" + body, "utf-8")
        return path

    return write


def test_public_names_are_pinned() -> None:
    """The rules package exports exactly its documented public names."""
    assert sorted(rules.__all__) == [
        "BUILTIN_RULES",
        "BatchResult",
        "CompareRule",
        "Compatibility",
        "Contract",
        "DECODE_RULE",
        "DivergenceRule",
        "EnumRule",
        "ExampleOutcome",
        "ExampleReport",
        "Extraction",
        "Failure",
        "FreshnessRule",
        "GapEvent",
        "GxMissingError",
        "GxSuite",
        "NON_FINITE_RULE",
        "NotNullRule",
        "ORIGIN_RULE",
        "OriginUnit",
        "RangeRule",
        "RegexRule",
        "RuleFile",
        "RuleFileError",
        "RuleSet",
        "RuleStats",
        "RulesError",
        "RulesHolder",
        "SIZE_RULE",
        "SchemaRule",
        "Scope",
        "SequenceRule",
        "Severity",
        "StaleRule",
        "TickSizeRule",
        "Verdict",
        "check_compat",
        "export_gx",
        "format_duration",
        "gx_module",
        "gx_row_failures",
        "load_rule_file",
        "origin_ns",
        "parse_duration_ns",
        "run_examples",
        "validate_frames",
    ]


class TestLoad:
    def test_rule_ids_list_builtins_then_file_rules_in_order(self, market: RuleSet) -> None:
        """rule_ids lists the built-in rules first, then the contract, then the business rules."""
        assert market.rule_ids == [
            *BUILTIN_RULES,
            ("contract.market_data", 1),
            ("quantity.non_negative", 1),
            ("price.positive", 1),
            ("origin.window", 1),
        ]

    def test_default_extraction_reads_ts_in_milliseconds(self, market: RuleSet) -> None:
        """Without an Extraction, the rule set reads the origin from ``ts`` in milliseconds."""
        assert market.extraction == Extraction()
        assert (market.extraction.origin_field, market.extraction.origin_unit) == ("ts", "ms")

    def test_empty_rule_set_only_applies_builtins(self) -> None:
        """A rule set from no files still rejects undecodable records and passes good ones."""
        empty = RuleSet.load([])
        assert empty.rule_ids == list(BUILTIN_RULES)
        assert empty.evaluate(encode(quote()), NOW_NS).ok
        assert rule_ids(empty.evaluate(b"{", NOW_NS)) == [DECODE_RULE[0]]


class TestGoodRecord:
    def test_good_quote_passes_with_identity(self, market: RuleSet) -> None:
        """A good quote passes and carries its origin time, provider, instrument and seq."""
        record = quote()
        verdict = market.evaluate(encode(record), NOW_NS)
        assert verdict.ok
        assert verdict.failures == ()
        assert verdict.origin_ns == NOW_MS * 1_000_000
        assert (verdict.provider, verdict.instrument, verdict.seq) == ("xnas", "AAPL", 42)
        assert verdict.payload == record

    def test_a_trade_passes(self, market: RuleSet) -> None:
        """A trade without bid/ask passes the contract and the business rules."""
        verdict = market.evaluate(encode(quote(type="trade", bid=None, ask=None)), NOW_NS)
        assert verdict.ok, verdict.failures

    def test_evaluate_batch_keeps_order(self, market: RuleSet) -> None:
        """evaluate_batch returns one verdict per value, in the order of the values."""
        values = [encode(quote(seq=1)), b"not json", None, encode(quote(seq=4, price=-1))]
        verdicts = market.evaluate_batch(values, NOW_NS)
        assert [v.ok for v in verdicts] == [True, False, False, False]
        assert [rule_ids(v) for v in verdicts] == [
            [],
            ["record.decode"],
            ["record.decode"],
            ["price.positive"],
        ]
        assert verdicts[3].seq == 4


class TestDecode:
    @pytest.mark.parametrize(
        "value",
        [b'{"provider": "xnas",', b"{'single': 'quotes'}", b"hello", b'{"a": 1}}', b"\xff\xfe"],
        ids=["truncated", "single-quotes", "bare-word", "trailing-brace", "not-utf8"],
    )
    def test_malformed_json_is_a_decode_failure(self, market: RuleSet, value: bytes) -> None:
        """Bytes that are not JSON fail record.decode with a reason saying so."""
        verdict = market.evaluate(value, NOW_NS)
        assert verdict.failures[0].rule_id == "record.decode"
        assert verdict.failures[0].rule_version == DECODE_RULE[1]
        assert "not valid JSON" in verdict.failures[0].reason
        assert len(verdict.failures) == 1

    @pytest.mark.parametrize(
        ("value", "kind"),
        [(b"[1, 2, 3]", "list"), (b'"a quote"', "str"), (b"42", "int"), (b"null", "NoneType")],
    )
    def test_json_that_is_not_an_object_is_a_decode_failure(
        self, market: RuleSet, value: bytes, kind: str
    ) -> None:
        """Valid JSON that is not an object (array, string, number, null) fails record.decode."""
        verdict = market.evaluate(value, NOW_NS)
        assert rule_ids(verdict) == ["record.decode"]
        assert verdict.first.reason == f"JSON {kind} where an object was expected"

    @pytest.mark.parametrize("value", [b"", None], ids=["empty", "tombstone"])
    def test_empty_value_and_tombstone_are_decode_failures(
        self, market: RuleSet, value: bytes | None
    ) -> None:
        """An empty value and a None value (tombstone) fail record.decode."""
        verdict = market.evaluate(value, NOW_NS)
        assert rule_ids(verdict) == ["record.decode"]
        assert "empty value" in verdict.first.reason
        assert (verdict.provider, verdict.seq, verdict.origin_ns) == ("", -1, 0)


class TestNonFinite:
    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
    @pytest.mark.parametrize("field", ["price", "quantity"])
    def test_non_finite_number_is_named(self, market: RuleSet, literal: str, field: str) -> None:
        """NaN, infinities or an overflowing number in price or quantity fail record.non_finite."""
        text = encode(quote(**{field: 12345})).replace(
            f'"{field}":12345'.encode(), f'"{field}":{literal}'.encode()
        )
        assert literal.encode() in text
        verdict = market.evaluate(text, NOW_NS)
        assert rule_ids(verdict) == ["record.non_finite"]
        assert verdict.first.rule_version == NON_FINITE_RULE[1]
        assert verdict.first.reason == f"field {field!r} is not a finite number"

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
    def test_nested_non_finite_number_names_its_path(self, market: RuleSet, literal: str) -> None:
        """A non-finite number inside nested objects and arrays is reported with its dotted path."""
        text = encode(quote(book={"bids": [[189.2, 100], [189.1, 7]]})).replace(
            b"[189.1,7]", b"[189.1," + literal.encode() + b"]"
        )
        assert literal.encode() in text
        verdict = market.evaluate(text, NOW_NS)
        assert rule_ids(verdict) == ["record.non_finite"]
        assert verdict.first.reason == "field 'book.bids.1.1' is not a finite number"

    def test_non_finite_wins_over_a_later_broken_rule(self, market: RuleSet) -> None:
        """A record with NaN and a negative quantity is filed under record.non_finite only."""
        text = encode(quote(quantity=-5, price=1)).replace(b'"price":1', b'"price":NaN')
        verdict = market.evaluate(text, NOW_NS)
        assert rule_ids(verdict) == ["record.non_finite"]


class TestContract:
    @pytest.mark.parametrize(
        ("changes", "field", "got"),
        [
            ({"price": "189.25"}, "price", "'189.25'"),
            ({"seq": 4.5}, "seq", "4.5"),
            ({"provider": 7}, "provider", "7"),
            ({"instrument": ["AAPL"]}, "instrument", "['AAPL']"),
            ({"type": "order"}, "type", "'order'"),
            ({"seq": -1}, "seq", "-1"),
        ],
        ids=["price-str", "seq-float", "provider-int", "instrument-list", "type-enum", "seq-neg"],
    )
    def test_wrong_type_fails_the_contract_naming_the_field(
        self, market: RuleSet, changes: dict[str, Any], field: str, got: str
    ) -> None:
        """A field of the wrong type or value fails contract.market_data, naming field and value."""
        verdict = market.evaluate(encode(quote(**changes)), NOW_NS)
        assert rule_ids(verdict) == ["contract.market_data"]
        assert verdict.first.rule_version == 1
        reason = verdict.first.reason
        assert reason.startswith(f"contract: {field} ")
        assert reason.endswith(f"(got {got})")

    def test_missing_required_field_fails_the_contract(self, market: RuleSet) -> None:
        """A record without its instrument fails the contract, which lists the required fields."""
        verdict = market.evaluate(encode(quote(instrument=None)), NOW_NS)
        assert rule_ids(verdict) == ["contract.market_data"]
        assert verdict.first.reason.startswith("contract: ")
        assert "'instrument'" in verdict.first.reason

    def test_contract_failure_keeps_identity_and_origin(self, market: RuleSet) -> None:
        """A record failing the contract still carries the identity fields and origin time."""
        verdict = market.evaluate(encode(quote(price="x")), NOW_NS)
        assert not verdict.ok
        assert (verdict.provider, verdict.instrument, verdict.seq) == ("xnas", "AAPL", 42)
        assert verdict.origin_ns == NOW_NS

    def test_seq_too_big_for_int64_is_no_sequence(self, market: RuleSet) -> None:
        """A seq that does not fit the trail's Int64 column is recorded as -1 (no sequence)."""
        verdict = market.evaluate(encode(quote(seq=2**63)), NOW_NS)
        assert verdict.ok
        assert verdict.seq == -1
        assert market.evaluate(encode(quote(seq=2**63 - 1)), NOW_NS).seq == 2**63 - 1

    def test_identity_of_the_wrong_type_is_left_blank(self, market: RuleSet) -> None:
        """A numeric provider is not taken as the provider's name."""
        verdict = market.evaluate(encode(quote(provider=7)), NOW_NS)
        assert verdict.provider == ""
        assert verdict.instrument == "AAPL"

    def test_contract_stops_before_business_rules(self, market: RuleSet) -> None:
        """A record failing the contract is not also reported for a business rule it breaks."""
        verdict = market.evaluate(encode(quote(provider=7, quantity=-1)), NOW_NS)
        assert rule_ids(verdict) == ["contract.market_data"]


class TestBusinessRules:
    @pytest.mark.parametrize("quantity", [-1, -0.001, -1_000_000])
    def test_negative_quantity_breaks_quantity_non_negative(
        self, market: RuleSet, quantity: float
    ) -> None:
        """A negative quantity fails quantity.non_negative with the rule's own reason."""
        verdict = market.evaluate(encode(quote(quantity=quantity)), NOW_NS)
        assert rule_ids(verdict) == ["quantity.non_negative"]
        assert verdict.first.rule_version == 1
        assert verdict.first.reason == f"quantity {quantity} is negative"

    def test_zero_quantity_passes(self, market: RuleSet) -> None:
        """A quantity of zero is allowed (the minimum is inclusive)."""
        assert market.evaluate(encode(quote(quantity=0)), NOW_NS).ok

    @pytest.mark.parametrize("price", [0, 0.0, -0.01, -189])
    def test_zero_or_negative_price_breaks_price_positive(
        self, market: RuleSet, price: float
    ) -> None:
        """A zero or negative price fails price.positive (the minimum 0 is exclusive)."""
        verdict = market.evaluate(encode(quote(price=price)), NOW_NS)
        assert rule_ids(verdict) == ["price.positive"]
        assert verdict.first.reason == f"price {price} is not positive"

    def test_tiny_positive_price_passes(self, market: RuleSet) -> None:
        """A price just above zero passes price.positive."""
        assert market.evaluate(encode(quote(price=1e-9)), NOW_NS).ok

    def test_every_broken_business_rule_is_listed(self, market: RuleSet) -> None:
        """A record breaking two business rules lists both failures, in rule-file order."""
        verdict = market.evaluate(encode(quote(price=-2.5, quantity=-3)), NOW_NS)
        assert [(f.rule_id, f.reason) for f in verdict.failures] == [
            ("quantity.non_negative", "quantity -3 is negative"),
            ("price.positive", "price -2.5 is not positive"),
        ]
        assert verdict.first.rule_id == "quantity.non_negative"
        assert verdict.seq == 42

    def test_three_broken_business_rules_are_all_listed(self, market: RuleSet) -> None:
        """Price, quantity and freshness failures are all recorded on one verdict."""
        stale = NOW_MS - 3 * 86_400_000
        verdict = market.evaluate(encode(quote(price=0, quantity=-1, ts=stale)), NOW_NS)
        assert rule_ids(verdict) == ["quantity.non_negative", "price.positive", "origin.window"]

    def test_range_rule_on_a_missing_field_passes(self, write_rules: Callable[[str], Path]) -> None:
        """A range rule does not fail a record that lacks the field: that is the contract's job."""
        rs = RuleSet.load(
            [
                write_rules(
                    "  - {id: price.positive, version: 1, kind: range, field: price, min: 0}\n"
                )
            ]
        )
        verdict = rs.evaluate(encode({"ts": NOW_MS, "quantity": 5}), NOW_NS)
        assert verdict.ok

    def test_range_rule_on_a_null_field_passes(self, write_rules: Callable[[str], Path]) -> None:
        """A range rule treats a null field like a missing one."""
        rs = RuleSet.load(
            [
                write_rules(
                    "  - {id: price.positive, version: 1, kind: range, field: price, min: 0}\n"
                )
            ]
        )
        assert rs.evaluate(encode({"ts": NOW_MS, "price": None}), NOW_NS).ok

    def test_range_rule_on_a_dotted_field(self, write_rules: Callable[[str], Path]) -> None:
        """A range rule reads a nested field by its dotted path."""
        rs = RuleSet.load(
            [
                write_rules(
                    "  - {id: book.spread, version: 3, kind: range, field: book.spread, max: 1}\n"
                )
            ]
        )
        ok = rs.evaluate(encode({"ts": NOW_MS, "book": {"spread": 0.5}}), NOW_NS)
        wide = rs.evaluate(encode({"ts": NOW_MS, "book": {"spread": 2}}), NOW_NS)
        assert ok.ok
        assert [(f.rule_id, f.rule_version, f.reason) for f in wide.failures] == [
            ("book.spread", 3, "book.spread 2 is above the maximum 1.0")
        ]

    def test_range_rule_default_reasons(self, write_rules: Callable[[str], Path]) -> None:
        """Without a reason template, a range rule says which bound was crossed."""
        rs = RuleSet.load(
            [
                write_rules(
                    "  - {id: qty.band, version: 1, kind: range, field: q, min: 1, max: 10,"
                    " min_exclusive: true, max_exclusive: true}\n"
                )
            ]
        )
        low = rs.evaluate(encode({"ts": NOW_MS, "q": 1}), NOW_NS)
        high = rs.evaluate(encode({"ts": NOW_MS, "q": 10}), NOW_NS)
        assert low.first.reason == "q 1 is below the minimum (exclusive) 1.0"
        assert high.first.reason == "q 10 is above the maximum (exclusive) 10.0"
        assert rs.evaluate(encode({"ts": NOW_MS, "q": 5}), NOW_NS).ok

    @pytest.mark.parametrize("flag", [True, False])
    def test_booleans_are_not_numbers_for_range_rules(
        self, write_rules: Callable[[str], Path], flag: bool
    ) -> None:
        """A boolean in a range rule's field fails the rule as not a number, not as 1 or 0."""
        rs = RuleSet.load(
            [write_rules("  - {id: qty.min, version: 1, kind: range, field: quantity, min: -5}\n")]
        )
        verdict = rs.evaluate(encode({"ts": NOW_MS, "quantity": flag}), NOW_NS)
        assert [(f.rule_id, f.reason) for f in verdict.failures] == [
            ("qty.min", f"quantity {flag!r} is not a number")
        ]

    def test_string_in_a_range_field_is_not_a_number(
        self, write_rules: Callable[[str], Path]
    ) -> None:
        """A numeric-looking string in a range rule's field fails as not a number."""
        rs = RuleSet.load(
            [write_rules("  - {id: qty.min, version: 1, kind: range, field: quantity, min: 0}\n")]
        )
        verdict = rs.evaluate(encode({"ts": NOW_MS, "quantity": "5"}), NOW_NS)
        assert verdict.first.reason == "quantity '5' is not a number"

    def test_booleans_are_not_numbers_for_the_contract(self, market: RuleSet) -> None:
        """A boolean price or quantity fails the market-data contract."""
        for field in ("price", "quantity"):
            verdict = market.evaluate(encode(quote(**{field: True})), NOW_NS)
            assert rule_ids(verdict) == ["contract.market_data"], field
            assert verdict.first.reason == f"contract: {field} must be number (got True)"


class TestOriginWindow:
    def test_origin_two_hours_ahead_is_too_far_in_the_future(self, market: RuleSet) -> None:
        """An origin two hours ahead of the gate fails origin.window, saying how far ahead."""
        verdict = market.evaluate(encode(quote(ts=NOW_MS + 2 * 3_600_000)), NOW_NS)
        assert rule_ids(verdict) == ["origin.window"]
        assert verdict.first.reason == (
            "origin time is 2h00m in the future; allowed: 5m00s past to 1m00s future"
        )
        assert verdict.origin_ns == NOW_NS + 2 * 3_600_000_000_000

    def test_origin_three_days_old_is_too_far_in_the_past(self, market: RuleSet) -> None:
        """An origin three days old fails origin.window, saying how far in the past."""
        verdict = market.evaluate(encode(quote(ts=NOW_MS - 3 * 86_400_000)), NOW_NS)
        assert rule_ids(verdict) == ["origin.window"]
        assert verdict.first.reason == (
            "origin time is 3d0h in the past; allowed: 5m00s past to 1m00s future"
        )

    @pytest.mark.parametrize(
        "offset_ms", [-PAST_WINDOW_MS, FUTURE_WINDOW_MS, 0], ids=["past-edge", "future-edge", "now"]
    )
    def test_origin_exactly_at_the_window_edge_passes(
        self, market: RuleSet, offset_ms: int
    ) -> None:
        """An origin exactly 5 minutes old or exactly 1 minute ahead is inside the window."""
        assert market.evaluate(encode(quote(ts=NOW_MS + offset_ms)), NOW_NS).ok

    @pytest.mark.parametrize(
        ("offset_ms", "where"),
        [(-PAST_WINDOW_MS - 1, "past"), (FUTURE_WINDOW_MS + 1, "future")],
    )
    def test_one_millisecond_beyond_the_edge_fails(
        self, market: RuleSet, offset_ms: int, where: str
    ) -> None:
        """An origin one millisecond outside the window fails origin.window."""
        verdict = market.evaluate(encode(quote(ts=NOW_MS + offset_ms)), NOW_NS)
        assert rule_ids(verdict) == ["origin.window"]
        assert f"in the {where};" in verdict.first.reason

    @settings(database=None, max_examples=200)
    @given(offset_ms=st.integers(min_value=-10 * 86_400_000, max_value=10 * 86_400_000))
    def test_window_verdict_matches_the_bounds(self, market: RuleSet, offset_ms: int) -> None:
        """For any origin offset, origin.window fails exactly when it is outside [-5m, +1m]."""
        verdict = market.evaluate(encode(quote(ts=NOW_MS + offset_ms)), NOW_NS)
        inside = -PAST_WINDOW_MS <= offset_ms <= FUTURE_WINDOW_MS
        assert verdict.ok == inside
        if not inside:
            assert rule_ids(verdict) == ["origin.window"]

    def test_freshness_reason_template(self, write_rules: Callable[[str], Path]) -> None:
        """A freshness rule's reason template is filled with the age and the origin value."""
        rs = RuleSet.load(
            [
                write_rules(
                    "  - {id: fresh, version: 2, kind: freshness, max_past: 1s, max_future: 1s,"
                    " reason: 'stale by {age} (origin {value}, {unknown})'}\n"
                )
            ]
        )
        verdict = rs.evaluate(encode({"ts": NOW_MS - 90_000}), NOW_NS)
        assert [(f.rule_id, f.rule_version) for f in verdict.failures] == [("fresh", 2)]
        origin = (NOW_MS - 90_000) * 1_000_000
        assert verdict.first.reason == f"stale by 1m30s (origin {origin}, {{unknown}})"


class TestOriginField:
    def test_missing_origin_field(self, market: RuleSet) -> None:
        """A record without its origin field fails record.origin, saying the field is missing."""
        verdict = market.evaluate(encode(quote(ts=None)), NOW_NS)
        assert rule_ids(verdict) == ["record.origin"]
        assert verdict.first.rule_version == ORIGIN_RULE[1]
        assert verdict.first.reason == "origin field 'ts' is missing"
        assert (verdict.provider, verdict.instrument, verdict.seq) == ("xnas", "AAPL", 42)

    @pytest.mark.parametrize(
        ("value", "shown"),
        [("1700000000000", "'1700000000000'"), (True, "True"), ([1], "[1]")],
        ids=["string", "bool", "list"],
    )
    def test_origin_of_the_wrong_type(self, market: RuleSet, value: object, shown: str) -> None:
        """An origin that is a string, a boolean or a list fails record.origin showing the value."""
        verdict = market.evaluate(encode(quote(ts=value)), NOW_NS)
        assert rule_ids(verdict) == ["record.origin"]
        assert (
            verdict.first.reason == f"origin field 'ts' is invalid: {shown} is not a number of ms"
        )

    def test_null_origin_is_invalid(self, market: RuleSet) -> None:
        """A null origin fails record.origin."""
        raw = encode(quote()).replace(f'"ts":{NOW_MS}'.encode(), b'"ts":null')
        verdict = market.evaluate(raw, NOW_NS)
        assert rule_ids(verdict) == ["record.origin"]
        assert "None is not a number of ms" in verdict.first.reason

    def test_nested_origin_field_and_unit(self) -> None:
        """The origin is read from a dotted field in the configured unit."""
        rs = RuleSet.load([MARKET_RULES], Extraction(origin_field="meta.sent", origin_unit="s"))
        verdict = rs.evaluate(encode({"meta": {"sent": NOW_NS // 1_000_000_000}}), NOW_NS)
        assert verdict.origin_ns == NOW_NS
        missing = rs.evaluate(encode({"meta": 5}), NOW_NS)
        assert missing.first.reason == "origin field 'meta.sent' is missing"

    def test_iso_origin_without_time_zone_is_rejected(self) -> None:
        """With ISO-8601 origins, a time without a zone fails record.origin."""
        rs = RuleSet.load([], Extraction(origin_unit="iso8601"))
        verdict = rs.evaluate(encode({"ts": "2023-11-14T22:13:20"}), NOW_NS)
        assert rule_ids(verdict) == ["record.origin"]
        assert "has no time zone" in verdict.first.reason
        assert rs.evaluate(encode({"ts": "2023-11-14T22:13:20Z"}), NOW_NS).origin_ns == NOW_NS

    def test_huge_float_origin_is_dead_lettered_not_raised(self, market: RuleSet) -> None:
        """An origin of 1e303 ms (finite, infinite in ns) fails record.origin instead of raising."""
        verdict = market.evaluate(encode(quote(ts=1e303)), NOW_NS)
        assert rule_ids(verdict) == ["record.origin"]
        assert verdict.first.reason == (
            "origin field 'ts' is invalid: 1e+303 ms is outside the range the trail can store "
            "(1970 to 2262)"
        )

    def test_origin_before_1970_is_invalid(self, market: RuleSet) -> None:
        """A negative origin cannot be stored as DateTime64(9) and fails record.origin."""
        verdict = market.evaluate(encode(quote(ts=-1)), NOW_NS)
        assert rule_ids(verdict) == ["record.origin"]
        assert "outside the range the trail can store" in verdict.first.reason


class TestSize:
    def test_oversized_message_names_both_sizes(self) -> None:
        """A value over max_message_bytes fails record.size, giving its size and the limit."""
        rs = RuleSet.load([MARKET_RULES], Extraction(max_message_bytes=64))
        value = encode(quote())
        assert len(value) > 64
        verdict = rs.evaluate(value, NOW_NS)
        assert rule_ids(verdict) == ["record.size"]
        assert verdict.first.rule_version == SIZE_RULE[1]
        assert verdict.first.reason == f"message is {len(value)} bytes, over the limit of 64"

    def test_message_exactly_at_the_limit_passes(self) -> None:
        """A value exactly max_message_bytes long is not too big."""
        value = encode(quote())
        rs = RuleSet.load([MARKET_RULES], Extraction(max_message_bytes=len(value)))
        assert rs.evaluate(value, NOW_NS).ok
        assert rule_ids(rs.evaluate(value + b" ", NOW_NS)) == ["record.size"]

    def test_default_limit_is_one_mebibyte_with_thousands_separators(self, market: RuleSet) -> None:
        """Over the default 1 MiB limit, the reason prints both sizes with thousands separators."""
        value = b" " * 1_048_577
        verdict = market.evaluate(value, NOW_NS)
        assert rule_ids(verdict) == ["record.size"]
        assert verdict.first.reason == "message is 1,048,577 bytes, over the limit of 1,048,576"

    def test_size_is_checked_before_decoding(self) -> None:
        """An oversized value that is not JSON either is filed under record.size."""
        rs = RuleSet.load([], Extraction(max_message_bytes=64))
        assert rule_ids(rs.evaluate(b"\x00" * 65, NOW_NS)) == ["record.size"]


class TestBrokenRule:
    def test_reason_template_that_cannot_be_filled_is_refused_at_load(
        self, write_rules: Callable[[str], Path]
    ) -> None:
        """A reason template that would raise on some record is a load error naming the rule."""
        # ``{value:d}`` formats an int but raises on a float: caught before any record is seen.
        path = write_rules(
            "  - {id: qty.min, version: 1, kind: range, field: quantity, min: 0,"
            " reason: 'quantity {value:d} is negative'}\n"
        )
        with pytest.raises(RuleFileError, match=r"qty\.min: reason template") as caught:
            RuleSet.load([path])
        assert str(path) in str(caught.value)

    def test_check_that_raises_is_caught_and_named(
        self, market: RuleSet, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A compiled check that raises fails the record with the exception's type and message."""
        calls: list[int] = []
        rule = next(r for r in market.rules if r.id == "price.positive")
        vectorised = rule.check
        assert vectorised is not None

        def explode(cols: Any, now: int) -> Any:
            seqs = [int(s) for s in cols.integers("seq")]
            calls.extend(seqs)
            if 1 in seqs:
                raise ZeroDivisionError("division by zero in a rule")
            return vectorised(cols, now)

        monkeypatch.setattr(rule, "check", explode)
        first, second = market.evaluate_batch([encode(quote(seq=1)), encode(quote(seq=2))], NOW_NS)
        assert [(f.rule_id, f.rule_version, f.reason) for f in first.failures] == [
            ("price.positive", 1, "rule raised ZeroDivisionError: division by zero in a rule")
        ]
        assert first.seq == 1
        assert second.ok
        assert calls == [1, 2, 1, 2]  # the batch, then row by row to find the culprit
        assert market.stats.rule_errors["price.positive"] == 1


class TestFormatDuration:
    @pytest.mark.parametrize(
        ("ns", "text"),
        [
            (0, "0µs"),
            (850_000, "850µs"),
            (12_345_678, "12.3ms"),
            (4_200_000_000, "4.2s"),
            (200_000_000_000, "3m20s"),
            (7_500_000_000_000, "2h05m"),
            (47 * 3_600_000_000_000, "47h00m"),
            (3 * 86_400_000_000_000 + 4 * 3_600_000_000_000, "3d4h"),
            (-5_000_000_000, "-5.0s"),
            (-90 * 1_000_000_000, "-1m30s"),
        ],
    )
    def test_short_human_durations(self, ns: int, text: str) -> None:
        """format_duration picks the unit that keeps the text short and readable."""
        assert format_duration(ns) == text


@pytest.fixture(scope="module")
def example_rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    from bench._gatediff import rules as gatediff_rules

    return gatediff_rules(tmp_path_factory.mktemp("rules"))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(200, 400))
def test_failures_rule_by_rule_are_failing_row_by_row(
    example_rules: RuleSet, seed: int, n: int
) -> None:
    """``BatchResult.failures`` (what the gate reads) gives every row that broke anything,
    in row order, exactly the failures ``failing(row)`` gives it: the market-data example
    rules (every kind, warn, observe and shadow rules) over the differential corpus, hostile
    records (early refusals) among them."""
    from bench._gatediff import corpus

    values = [value for _key, value, _headers in corpus(seed, n, NOW_MS)]
    result = example_rules.evaluate_records(values, NOW_NS, ["md.raw"] * n)
    found = result.failures()
    assert found == {row: f for row in range(n) if (f := result.failing(row))}
    assert list(found) == sorted(found)
    assert result.early  # both kinds met: early refusals, and the rules' failures
    assert len(found) > len(result.early)
