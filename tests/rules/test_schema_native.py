"""The compiled contract check (native/src/schema.rs) changes nothing a batch's verdicts say:
``evaluate_records`` gives the same failures, reasons, identity, origins and payloads with
the compiled module on as with it forced off, for the market-data schema and schemas using
every keyword of the subset, as ``kind: schema`` rules (live, warn, shadow, scoped) and as a
contract whose version a header or a payload field names; and a schema outside the subset
leaves its records to the Python path."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from bench._corpus import quote
from bench._differential import NOW, TOPICS, Value, _judge, compare
from stampline import _native
from stampline.demo import rules_file
from stampline.rules import Extraction, RuleSet, RulesHolder, _checker

MARKET = rules_file().with_name("market_data.schema.json")
NOW_MS = NOW // 1_000_000

# One schema per part of the subset; the records below carry every field they name.
SCHEMAS: dict[str, dict[str, Any]] = {
    "types": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "s": {"type": "string"},
            "b": {"type": ["boolean", "null"]},
            "a": {"type": "array"},
            "o": {"type": "object"},
            "u": {"type": ["integer", "string"]},
        },
    },
    "lengths": {"properties": {"s": {"minLength": 1, "maxLength": 4}, "name": {"maxLength": 3}}},
    "bounds": {
        "properties": {
            "i": {"minimum": 0, "maximum": 9007199254740993},
            "n": {"exclusiveMinimum": -0.5, "exclusiveMaximum": 1e300},
            "f": {"minimum": 0.1, "maximum": 2},
        }
    },
    "choices": {"properties": {"e": {"enum": ["a", "é", 1, 2.5, True, None]}, "c": {"const": 0}}},
    "nested": {
        "required": ["i", "o"],
        "additionalProperties": {
            "type": ["number", "string", "boolean", "null", "array", "object"]
        },
        "properties": {
            "o": {
                "type": "object",
                "required": ["k"],
                "properties": {"k": {"type": "integer"}},
                "additionalProperties": False,
            },
            "a": {
                "type": "array",
                "items": {"type": "object", "properties": {"x": {"const": "y"}}},
            },
        },
    },
}

# Values a field may take: what the schemas accept, and near misses of every kind.
HOSTILE: list[Any] = [
    *(True, False, None, 0, 1, -1, 7, 1.0, 1.5, 2.5, -0.0, 0.0, 0.1, 2.0, 2.0000000000000004),
    *(
        0.09999999999999999,
        -0.5,
        -0.49999999999999994,
        1e300,
        1e299,
        5e-324,
        1.7976931348623157e308,
    ),
    *(
        2**53,
        2**53 + 1,
        2**53 + 2,
        9007199254740992.0,
        2**63 - 1,
        2**63,
        2**64 - 1,
        2**64,
        -(2**63),
    ),
    *("", "a", "é", "ab", "abcd", "abcde", "éééé", "ééééé", "😀😀😀😀", "😀😀😀😀😀", "1", "y"),
    *([], [1], [{"x": "y"}], [{"x": "z"}], [{"x": "y"}, 1], {}, {"k": 1}, {"k": 1.0}),
    *({"k": 1, "j": 2}, {"k": "1"}, {"j": 1}, {"k": True}),
]
VALID: dict[str, list[Any]] = {
    "i": [0, 5, 2**53 + 1, 3.0],
    "n": [0, 1.5, -0.25, 1e299],
    "s": ["a", "abcd", "éé", "😀"],
    "b": [True, False, None],
    "a": [[], [{"x": "y"}]],
    "o": [{"k": 1}, {"k": 2.0}],
    "u": [1, "x"],
    "name": ["ab", "é"],
    "f": [0.1, 2, 1.5],
    "e": ["a", "é", 1, 1.0, 2.5, True, None],
    "c": [0, 0.0, -0.0],
}


def _record(rnd: random.Random, i: int, market: bool) -> bytes:
    """A record that mostly passes every schema, each field sometimes missing, extra or
    replaced by a near miss; written with or without escapes."""
    payload: dict[str, Any] = quote(rnd, NOW_MS, i) if market else {}
    payload.setdefault("provider", "P1")
    payload.setdefault("instrument", "SYM")
    payload.setdefault("seq", i)
    payload.setdefault("ts", NOW_MS)
    fields = list(payload) if market else list(VALID)
    for name in fields:
        roll = rnd.random()
        if roll < 0.04:
            payload.pop(name, None)
        elif roll < 0.1:
            payload[name] = rnd.choice(HOSTILE)
        elif not market:
            payload[name] = rnd.choice(VALID[name])
    if rnd.random() < 0.05:
        payload[rnd.choice(["extra", "z", "é"])] = rnd.choice(HOSTILE)
    if rnd.random() < 0.05:
        payload["v"] = rnd.choice([1, 2, 3, "2", None, 2.0, True])  # the contract's version field
    return json.dumps(payload, ensure_ascii=rnd.random() < 0.3).encode()


def _headers(rnd: random.Random) -> list[tuple[str, bytes | None]]:
    roll = rnd.random()
    if roll < 0.7:
        return []
    return [("schema-version", rnd.choice([b"1", b"2", b" 2 ", b"3", b"x", None]))]


def _corpus(seed: int, n: int, market: bool) -> list[Value]:
    rnd = random.Random(seed)
    return [(_record(rnd, i, market), _headers(rnd)) for i in range(n)]


def _rules(tmp_path: Path, version_from: str) -> Path:
    """A rule file with every schema as a rule (live, warn, shadow, scoped) and a contract on
    md.* topics with two versions, chosen by ``version_from``."""
    for name, schema in SCHEMAS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(schema))
    (tmp_path / "market.json").write_bytes(MARKET.read_bytes())
    text = f"""version: 2
contracts:
  - id: contract.md
    topics: ["md.*"]
    format: json
    version_from: {version_from}
    default_version: 1
    versions: {{1: market.json, 2: types.json}}
rules:
  - {{id: s.types, version: 1, kind: schema, schema: types.json}}
  - {{id: s.lengths, version: 1, kind: schema, schema: lengths.json, severity: warn}}
  - {{id: s.bounds, version: 1, kind: schema, schema: bounds.json}}
  - {{id: s.bounds, version: 2, kind: schema, schema: choices.json, shadow: true}}
  - {{id: s.choices, version: 1, kind: schema, schema: choices.json,
      scope: {{topics: ["raw.*"]}}}}
  - {{id: s.nested, version: 1, kind: schema, schema: nested.json, severity: warn,
      scope: {{providers: ["P1"]}}}}
"""
    path = tmp_path / "schemas.rules.yaml"
    path.write_text(text)
    return path


def _schema_rule(tmp_path: Path, rule_id: str, schema: Path) -> Path:
    """A rule file in ``tmp_path`` with one ``kind: schema`` rule."""
    path = tmp_path / f"{rule_id}.rules.yaml"
    path.write_text(
        f"version: 1\nrules:\n  - {{id: {rule_id}, version: 1, kind: schema, schema: {schema}}}\n"
    )
    return path


def _market_rules(tmp_path: Path) -> Path:
    return _schema_rule(tmp_path, "contract.market_data", MARKET)


@pytest.mark.parametrize("version_from", ["{header: schema-version}", "{field: v}"])
def test_every_keyword_gives_identical_results_on_both_paths(
    tmp_path: Path, version_from: str
) -> None:
    """6,000 records against every schema of the subset: identical results, and the compiled
    check vouched for many records and left many to Python."""
    rules = _rules(tmp_path, version_from)
    outcome = compare(Extraction(), [rules], _corpus(22, 6_000, market=False), batch=500)
    assert outcome.mismatches == 0, outcome.first_mismatches
    assert outcome.raised_batches == 0
    assert outcome.paths["native, contract checked"] > 800, outcome.paths
    assert outcome.paths["python: contract not certain"] > 800, outcome.paths


def test_the_market_data_schema_gives_identical_results_on_both_paths(tmp_path: Path) -> None:
    """6,000 quotes, some with fields missing, added or of the wrong kind, against
    bench/gate.py's market-data schema rule: identical results, most vouched for in Rust."""
    outcome = compare(
        Extraction(), [_market_rules(tmp_path)], _corpus(7, 6_000, market=True), batch=500
    )
    assert outcome.mismatches == 0, outcome.first_mismatches
    assert outcome.paths["native, contract checked"] > 2_500, outcome.paths
    assert outcome.paths["python: contract not certain"] > 500, outcome.paths


def test_a_failure_of_a_warn_schema_is_still_found(tmp_path: Path) -> None:
    """A clean record that fails only a warn-severity schema rule is judged by Python, which
    writes that rule's failure."""
    rules = RuleSet.load([_rules(tmp_path, "{header: schema-version}")])
    good = {"provider": "P1", "instrument": "SYM", "seq": 1, "ts": NOW_MS, "o": {"k": 1}, "i": 1}
    value = json.dumps({**good, "s": "abcde"}).encode()  # s.lengths (warn): longer than 4
    result = rules.evaluate_records([json.dumps(good).encode(), value], NOW, ["raw.q"] * 2)
    assert result.early.get(0) is None
    assert result.early[1].rule_id == "s.lengths"
    assert "abcde" in result.early[1].reason


def test_a_schema_outside_the_subset_takes_the_python_path(tmp_path: Path) -> None:
    """A schema with ``pattern`` is not compiled: every record goes to ``_contract``, counted
    as not compiled, and the results are the same on both paths."""
    schema = tmp_path / "pattern.json"
    schema.write_text(json.dumps({"properties": {"provider": {"pattern": "^P"}}}))
    path = _schema_rule(tmp_path, "s.p", schema)
    outcome = compare(Extraction(), [path], _corpus(3, 1_000, market=True), batch=250)
    assert outcome.mismatches == 0, outcome.first_mismatches
    assert outcome.paths["python: contract not compiled"] > 500, outcome.paths
    assert "native, contract checked" not in outcome.paths


def test_a_check_that_passes_everything_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness is not blind: a compiled check that vouches for every record makes
    mismatches."""
    real = _checker._native.check_records

    def vouches(*args: Any) -> Any:
        got = real(*args)
        return (*got[:5], b"\xff" * len(got[5]))

    monkeypatch.setattr(_checker._native, "check_records", vouches)
    outcome = compare(Extraction(), [_rules(tmp_path, "{field: v}")], _corpus(5, 1_000, False))
    assert outcome.mismatches > 0


def test_a_reload_compiles_the_edited_schema(tmp_path: Path) -> None:
    """After a schema file changes, the reloaded rule set checks the new schema in Rust: a
    record it passed before now fails, on the Python path."""
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "properties": {"s": {"maxLength": 4}}}')
    holder = RulesHolder([_schema_rule(tmp_path, "c.s", schema)], interval_s=0)
    value = json.dumps({"provider": "P1", "instrument": "SYM", "seq": 1, "ts": NOW_MS, "s": "abcd"})
    before = Counter(_checker.CHECK_PATHS)
    assert holder.current.evaluate(value.encode(), NOW).ok
    assert Counter(_checker.CHECK_PATHS) - before == Counter(
        {"native": 1, "native, contract checked": 1}
    )
    schema.write_text('{"type": "object", "properties": {"s": {"maxLength": 3}}}')
    before = Counter(_checker.CHECK_PATHS)
    assert holder.current.evaluate(value.encode(), NOW).first.rule_id == "c.s"
    assert Counter(_checker.CHECK_PATHS) - before == Counter(
        {"native": 1, "python: contract not certain": 1}
    )


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(HOSTILE)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def rule_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[RuleSet, RuleSet]:
    rules = _rules(tmp_path_factory.mktemp("schemas"), "{field: v}")
    return RuleSet.load([rules]), RuleSet.load([rules])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.dictionaries(
        st.sampled_from([*VALID, "v", "x"]), _json_values | st.sampled_from(HOSTILE), max_size=8
    ),
    ascii_only=st.booleans(),
)
def test_arbitrary_records_give_identical_results(
    rule_sets: tuple[RuleSet, RuleSet], fields: dict[str, Any], ascii_only: bool
) -> None:
    """Hypothesis: any record of those fields is judged alike with the module on and off."""
    payload = {"provider": "P1", "instrument": "SYM", "seq": 1, "ts": NOW_MS, **fields}
    chunk: list[Value] = [(json.dumps(payload, ensure_ascii=ascii_only).encode(), [])]
    fast, slow = rule_sets
    native = _checker._native
    got = [_judge(fast, chunk, [t]) for t in TOPICS]
    _checker._native = None
    try:
        want = [_judge(slow, chunk, [t]) for t in TOPICS]
    finally:
        _checker._native = native
    assert got == want


_TYPES = ["object", "array", "string", "integer", "number", "boolean", "null"]
_names = st.sampled_from(["a", "b", "é", "c_d", ""])
_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\"'\\"), max_size=4
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, 1.0, -0.0, 2**53 + 1, 9007199254740992.0, 0.5])
    | _text
)


def _node(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    sizes = st.integers(min_value=0, max_value=5)
    bounds = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats(
        allow_nan=False, allow_infinity=False
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(_TYPES)
            | st.lists(st.sampled_from(_TYPES), min_size=1, max_size=3, unique=True),
            "minLength": sizes,
            "maxLength": sizes,
            "minimum": bounds,
            "maximum": bounds,
            "exclusiveMinimum": bounds,
            "exclusiveMaximum": bounds,
            "enum": st.lists(_scalars, min_size=1, max_size=4),
            "const": _scalars,
            "required": st.lists(_names, max_size=3, unique=True),
            "properties": st.dictionaries(_names, children, max_size=3),
            "additionalProperties": st.booleans() | children,
            "items": children,
        },
    )


_schemas = _node(st.recursive(st.just({}), _node, max_leaves=6))


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3)


_records = st.dictionaries(_names, st.recursive(_scalars, _nested, max_leaves=6), max_size=4)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema=_schemas, record=_records, ascii_only=st.booleans())
def test_a_record_rust_passes_passes_fastjsonschema(
    schema: dict[str, Any], record: dict[str, Any], ascii_only: bool
) -> None:
    """Hypothesis on arbitrary schemas of the subset and arbitrary records: whatever Rust
    says certainly passes, fastjsonschema lets pass (and Rust compiles every such schema)."""
    try:
        validate = fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException:
        assume(False)
    compiled = _native.Schema(json.dumps(schema, ensure_ascii=ascii_only))
    value = json.dumps(record, ensure_ascii=ascii_only).encode()
    clean, *_rest, passed, _typed = _native.check_records(
        [value], ("p", "i", "s", "t"), 10**6, 2**20, 256, [compiled], [1]
    )
    assume(clean == b"\x01")
    vouched = passed == (1).to_bytes(8, "little")
    event(f"Rust vouched: {vouched}")  # both happen often (--hypothesis-show-statistics)
    if vouched:
        validate(orjson.loads(value))  # raises if Rust vouched for a failing record


@settings(max_examples=300, deadline=None)
@given(text=st.text() | _schemas.map(json.dumps) | st.recursive(_scalars, _nested).map(json.dumps))
def test_any_schema_text_compiles_or_is_refused(text: str) -> None:
    """Any text makes a Schema or a ValueError saying why, never another error or a panic."""
    try:
        _native.Schema(text)
    except ValueError as exc:
        why = str(exc)
    else:
        why = "compiled"
    assert why


_MARKET_SCHEMA = _native.Schema(MARKET.read_text())


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=200) | _records.map(lambda r: json.dumps(r).encode()))
def test_any_bytes_are_checked_without_error(value: bytes) -> None:
    """Any bytes go through the contract check without an error, and only a clean record
    can be vouched for."""
    clean, *_rest, passed, _typed = _native.check_records(
        [value], ("provider", "instrument", "seq", "ts"), 10**6, 2**20, 256, [_MARKET_SCHEMA], [1]
    )
    assert clean == b"\x01" or passed == bytes(8)
