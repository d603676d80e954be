"""Repeated JSON keys: found exactly, cheaply, and refused by default."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.demo import rules_file
from stampline.rules import Extraction, RuleSet
from stampline.rules._ruleset import _repeated_key

keys = st.text(max_size=6)
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
objects = st.recursive(
    st.dictionaries(keys, scalars, max_size=5),
    lambda inner: st.dictionaries(keys, inner | st.lists(inner, max_size=3), max_size=4),
    max_leaves=12,
)


def _with_repeat(obj: dict[str, Any], key: str) -> bytes:
    """``obj`` as JSON text with ``key`` written twice in its top-level object."""
    body = json.dumps(obj, separators=(",", ":"))[1:-1]
    extra = f"{json.dumps(key)}:1,{json.dumps(key)}:2"
    return ("{" + (body + "," if body else "") + extra + "}").encode()


def _truth(text: bytes) -> bool:
    found: list[bool] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) < len(items):
            found.append(True)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return bool(found)


@given(objects, st.one_of(st.none(), keys), st.sampled_from([(",", ":"), (", ", " : ")]))
@settings(max_examples=400)
def test_repeated_keys_are_found_exactly(
    obj: dict[str, Any], repeat: str | None, separators: tuple[str, str]
) -> None:
    """The fast count-then-check detector agrees with a parser that sees every pair, for
    compact and spaced JSON, nested objects and strings holding quotes and colons."""
    if repeat is not None:
        text = _with_repeat(obj, repeat)
    else:
        text = json.dumps(obj, separators=separators).encode()
    payload = json.loads(text)
    assert (_repeated_key(text, payload) is not None) == _truth(text)


def test_a_repeated_quantity_is_refused_and_allow_turns_it_off() -> None:
    """`{"quantity": -5, …, "quantity": 300}` is a record.duplicate_keys dead letter naming
    the key; with duplicate_keys "allow" the last value is judged, as before."""
    now = time.time_ns()
    text = (
        b'{"provider":"a","instrument":"X","seq":1,"ts":%d,"type":"quote","price":1.5,'
        b'"quantity":-5,"quantity":300}' % (now // 1_000_000)
    )
    strict = RuleSet.load([rules_file()]).evaluate(text, now)
    assert [f.rule_id for f in strict.failures] == ["record.duplicate_keys"]
    assert "'quantity'" in strict.failures[0].reason
    lenient = RuleSet.load([rules_file()], Extraction(duplicate_keys="allow")).evaluate(text, now)
    assert lenient.failures == ()
