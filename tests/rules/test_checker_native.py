"""The compiled record checker (native/src/check.rs, decode.rs) changes nothing a batch's
verdicts say: ``evaluate_records`` gives the same failures, reasons, identity columns,
origins and payloads with the fast path on as with it forced off, on a seeded corpus of
hostile and careless records; and the checker calls a record clean only when the Python path
reads it as one clean JSON object with no repeated key, decoding its fields as Python does."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench._corpus import HOSTILE, values
from bench._differential import CONFIGS, FULL_RULES, NOW, compare
from stampline import _native  # ./dev test builds it (it needs cargo): its absence is a failure
from stampline.rules import Extraction, RuleSet, _checker
from stampline.rules._checker import CHECK_PATHS, FROM_PYTHON, check_batch
from stampline.rules._columns import MISSING, UNREAD, Columns
from stampline.rules._ruleset import _decode_json, _identity, _origin, _repeated_key


@pytest.mark.parametrize(("name", "extraction", "files"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_fast_path_and_python_path_give_identical_results(
    name: str, extraction: Extraction, files: list[Any]
) -> None:
    """5,000 records per configuration, 25,000 in all (bench/differential.py runs 1,000,000)."""
    outcome = compare(extraction, files, values(seed=20261206, n=5_000), batch=500)
    assert outcome.records == 5_000
    assert outcome.mismatches == 0, outcome.first_mismatches
    # The fast path really ran, and never met a record it passed that orjson refused.
    assert outcome.paths["native"] > 2_000, outcome.paths
    assert "python: orjson refused a record the checker passed" not in outcome.paths
    assert outcome.paths["python: the checker is not sure"] > 400, outcome.paths
    # No record makes a batch raise: nesting past 256 levels is refused, and a lone
    # surrogate in a leniently read name is escaped (each once failed its whole batch).
    assert outcome.raised_batches == 0


def test_a_divergence_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness is not blind: a checker that misreads one escaped repeated key as
    clean makes a mismatch."""
    real = _native.check_records

    def misreads(vals: list[bytes | None], *args: Any) -> Any:
        vals = [v.replace(b"\\u0061", b"b") if v is not None else v for v in vals]
        return real(vals, *args)

    monkeypatch.setattr(_checker, "_native", SimpleNamespace(check_records=misreads))
    outcome = compare(Extraction(), [], values(seed=1, n=len(HOSTILE)), batch=500)
    assert outcome.mismatches >= 1


def test_hostile_cases_are_judged_by_the_python_path() -> None:
    """Every hand-written hostile case that is not plainly clean is left to Python."""
    checked = check_batch(HOSTILE, Extraction())
    assert checked is not None
    for value, clean in zip(HOSTILE, checked.clean, strict=True):
        if clean:
            assert value is not None
            assert _reference_clean(value, Extraction()), value[:80]
    # an escaped repeated key, NaN, a big int, a BOM, a lone surrogate: all unsure
    unsure = {v for v, c in zip(HOSTILE, checked.clean, strict=True) if not c}
    for needle in (b'"\\u0061":2', b"NaN", b"18446744073709551616", b"\xef\xbb\xbf", b"\\ud800"):
        assert any(v is not None and needle in v for v in unsure), needle


# --- the checker against the Python path, on arbitrary input (Hypothesis) ---


def _reference_clean(value: bytes, ext: Extraction) -> bool:
    """Whether the Python path reads ``value`` as one JSON object with no repeated key."""
    if not value or len(value) > ext.max_message_bytes:
        return False
    payload, failure, _ = _decode_json(value)
    return payload is not None and failure is None and _repeated_key(value, payload) is None


def _agrees(value: bytes, ext: Extraction | None = None) -> bool:
    """Checks the checker's verdict and columns for ``value`` against the Python path;
    returns whether it called the value clean."""
    ext = ext or Extraction()
    checked = check_batch([value], ext)
    assert checked is not None
    if not checked.clean[0]:
        assert (checked.providers[0], checked.instruments[0]) == ("", "")
        assert (checked.seqs[0], int(checked.origins[0])) == (-1, 0)
        return False
    assert _reference_clean(value, ext), value
    payload = orjson.loads(value)
    provider, instrument, seq = _identity(payload, ext)
    assert (checked.providers[0], checked.instruments[0]) == (provider, instrument)
    assert checked.seqs[0] in (seq, FROM_PYTHON)
    if checked.seqs[0] == FROM_PYTHON:
        assert isinstance(payload.get(ext.seq_field), float)
    origin, failure = _origin(payload, ext)
    if checked.origins[0] != FROM_PYTHON:
        assert failure is None
        assert int(checked.origins[0]) == origin
    return True


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=16,
)
fields = st.sampled_from(["provider", "instrument", "seq", "ts", "p\u00e9"])
records = st.dictionaries(fields | st.text(max_size=3), json_values, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
@example(b'{"a":1,"\\u0061":2}')
@example(b'{"provider":"\\ud800"}')
@example(b"\xef\xbb\xbf{}")
def test_arbitrary_bytes(value: bytes) -> None:
    _agrees(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records,
    st.booleans(),
    st.sampled_from([None, (",", ":"), (" , ", " : ")]),
    st.sampled_from(["s", "ms", "us", "ns", "iso8601"]),
)
def test_arbitrary_json_objects(
    record: dict[str, Any], ascii_only: bool, separators: Any, unit: Any
) -> None:
    text = json.dumps(record, ensure_ascii=ascii_only, separators=separators).encode()
    clean = _agrees(text, Extraction(origin_unit=unit))
    plain = not any(
        (isinstance(v, float) and not math.isfinite(v))
        or (isinstance(v, int) and not -(2**63) <= v < 2**64)
        for v in _leaves(record)
    )
    # What orjson reads as Python does is clean (so the fast path is taken), the rest is not.
    assert clean == plain


@settings(max_examples=300, deadline=None)
@given(records, st.text(max_size=3), st.booleans())
def test_repeated_keys_are_never_clean(record: dict[str, Any], key: str, escape: bool) -> None:
    body = json.dumps(record)[1:-1]
    again = json.dumps(key, ensure_ascii=True)
    if escape:  # the same key, every character escaped
        again = '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in key) + '"'
    text = "{" + (body + "," if body else "") + f"{json.dumps(key)}:1,{again}:2" + "}"
    assert not _agrees(text.encode())


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


# --- the typed columns against the columns read from payloads (Hypothesis) ---

TYPED = ["a", "b", "price", "p\u00e9"]


def _typed_agrees(texts: list[bytes]) -> None:
    """The checker's typed columns give what Columns reads from the payload dicts, for every
    accessor a rule uses; a record it did not call clean reads from its payload either way."""
    checked = check_batch(texts, Extraction(), typed=TYPED)
    assert checked is not None
    payloads = []
    for text, clean in zip(texts, checked.clean, strict=True):
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError:
            payload = None
        assert not clean or isinstance(payload, dict)
        payloads.append(payload if isinstance(payload, dict) else None)
    typed = Columns(len(texts), payloads=payloads, typed=checked.typed)
    plain = Columns(len(texts), payloads=payloads)
    for name in TYPED:
        for got, want in zip(typed.numeric(name), plain.numeric(name), strict=True):
            assert got.tobytes() == want.tobytes(), name  # bit for bit: -0.0 is not 0.0
        assert typed.integers(name).tolist() == plain.integers(name).tolist(), name
        assert typed.present(name).tolist() == plain.present(name).tolist(), name
        (t_texts, t_bad), (p_texts, p_bad) = typed.strings(name), plain.strings(name)
        assert t_texts.to_pylist() == p_texts.to_pylist(), name
        assert t_bad.tolist() == p_bad.tolist(), name
        got_raw, want_raw = typed.raw(name), plain.raw(name)
        assert [(type(v), v) for v in got_raw] == [(type(v), v) for v in want_raw], name
        fresh = Columns(len(texts), payloads=payloads, typed=checked.typed)  # nothing cached
        for row, want in enumerate(want_raw):
            value = fresh.value(name, row)
            assert type(value) is type(want), (name, row)
            assert value is want if want is MISSING else value == want, (name, row)


number_texts = st.from_regex(
    r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.sampled_from(TYPED) | st.text(max_size=2), json_values, max_size=5),
        min_size=1,
        max_size=6,
    )
)
def test_typed_columns_read_as_payloads(records: list[dict[str, Any]]) -> None:
    """Any JSON values in the typed fields (big and small integers, floats, strings with
    escapes, booleans, null, containers) read the same from the columns."""
    texts = [json.dumps(r, ensure_ascii=bool(i % 2)).encode() for i, r in enumerate(records)]
    _typed_agrees([*texts, b"not json", b'{"a":NaN}'])


@settings(max_examples=400, deadline=None)
@given(st.lists(number_texts, min_size=1, max_size=8))
@example(
    [
        "18446744073709551615",
        "9223372036854775808",
        "-9223372036854775808",
        "-0",
        "-0.0",
        "2.2250738585072011e-308",
        "9007199254740993",
        "1e-400",
        "0.1000000000000000055511151231257827",
    ]
)
def test_typed_numbers_are_orjsons_floats_bit_for_bit(texts: list[str]) -> None:
    """Number texts with up to 30 digits each side and any exponent: the columns' floats are
    the ones orjson reads, bit for bit (Rust's parse and orjson's both round correctly)."""
    _typed_agrees([f'{{"price":{t},"a":{t}}}'.encode() for t in texts])


def test_a_clean_records_payload_is_read_only_when_asked_for() -> None:
    """With every field the rules read typed, the clean quotes' payload dicts are not made
    while judging (the fast path did the work); a verdict still carries each one, read then,
    and a record the checker left to Python has its payload read as before."""
    rules = RuleSet.load([FULL_RULES])
    quotes = [
        orjson.dumps({"provider": "P", "instrument": "ABC", "seq": i, "ts": 1_765_000_000_000,
                      "type": "quote", "bid": 1.0, "ask": 1.5, "price": 1.25, "size": 5})
        for i in range(20)
    ] + [b'{"provider":"P","instrument":"ABC","seq":20,"price":NaN}']  # fmt: skip
    result = rules.evaluate_records(quotes, NOW, ["raw.quotes"] * 21, numbers=("price",))
    assert result.payloads is not None
    unread = [row for row, p in enumerate(result.payloads._payloads) if p is UNREAD]
    assert unread == list(range(20))
    assert result.numbers("price").tolist()[:20] == [1.25] * 20
    assert math.isnan(result.numbers("price")[20])  # refused: no payload, no price
    for row, verdict in enumerate(result.verdicts()[:20]):
        assert verdict.payload == orjson.loads(quotes[row])
    assert not any(p is UNREAD for p in result.payloads._payloads)


def test_without_the_compiled_module_everything_takes_the_python_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_checker, "_native", None)
    CHECK_PATHS.clear()
    result = RuleSet(Extraction()).evaluate_records([b'{"provider":"P","ts":1}', b"x"], NOW)
    assert [v.provider for v in result.verdicts()] == ["P", ""]
    assert CHECK_PATHS == {"python: no compiled module": 2}
    assert _native.check_records is not None  # the real module is back after the test
