"""The per-record path under a fuzzer: arbitrary bytes, headers and keys through a running gate.

Hypothesis draws batches of records (random bytes, JSON with arbitrary values where the
quote's fields should be, stamp headers with arbitrary contents, keys); each batch goes over
the real broker into one gate that runs for the whole test. Whatever comes, the gate never
raises, takes in every record, and forwards or dead-letters each one with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stampline.audit import ChdbStore
from stampline.collectors import H_REASON, H_RULE_ID, GateSettings
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import now_ms, quote
from tests.helpers import GateRun, Header, produce, read_all

CONTRACT_HEADERS = [
    "stampline.v",
    "stampline.event_id",
    "stampline.origin_ns",
    "stampline.ingest_ns",
    "stampline.clock_err_ns",
    "stampline.stamp",
    "stampline.parents",
    "traceparent",
    "__connect.errors.topic",
    "__connect.errors.partition",
    "__connect.errors.offset",
]

names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
header_values = st.one_of(
    st.none(),
    st.binary(max_size=80),
    st.integers().map(lambda i: str(i).encode()),
    st.uuids().map(lambda u: str(u).encode()),  # drawn, so Hypothesis can replay it
    st.builds(
        lambda a, b, h: f"stage=s;in={a};out={b};err=1;host={h}".encode(),
        st.integers(),
        st.integers(),
        st.text(max_size=10),
    ),
)
headers = st.lists(
    st.tuples(st.one_of(st.sampled_from(CONTRACT_HEADERS), names), header_values), max_size=8
)


def _mutated_quote(field: str, value: Any) -> bytes:
    event: dict[str, Any] = quote("fuzz", 1, ts=now_ms())
    event[field] = value
    return json.dumps(event, allow_nan=True).encode()


values = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.builds(
        _mutated_quote,
        st.sampled_from(["provider", "instrument", "seq", "ts", "price", "quantity", "type"]),
        json_values,
    ),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
)
records = st.tuples(st.one_of(st.none(), st.binary(max_size=50)), values, headers)


@pytest.mark.slow
def test_arbitrary_records_never_stop_the_gate_and_each_lands_once_with_a_reason(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Whatever the bytes, headers and keys: the gate does not raise, in = forwarded + dead-
    lettered, and each dead letter names its rule and reason."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    run = GateRun(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g"),
        RuleSet.load([rules_file()]),
        store,
    )
    sent = [0]

    @given(st.lists(records, min_size=1, max_size=25))
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,
    )
    def feed(batch: list[tuple[bytes | None, bytes | None, list[Header]]]) -> None:
        produce(bootstrap, raw, batch)
        sent[0] += len(batch)
        run.wait_for(sent[0])

    feed()
    run.stop()
    stats = run.gate.stats
    assert stats.events_in == sent[0]
    assert stats.events_in == stats.forwarded + stats.dead_lettered_total
    forwarded = read_all(bootstrap, clean, stats.forwarded, idle_s=0.5)
    dead = read_all(bootstrap, dlq, stats.dead_lettered_total, idle_s=0.5)
    assert (len(forwarded), len(dead)) == (stats.forwarded, stats.dead_lettered_total)
    assert all(d.header_all(H_RULE_ID)[-1] and d.header_all(H_REASON)[-1] for d in dead)
    # Each record has its own observation (records that claim one event id share that
    # event's row in the trail view, as a re-sent event does).
    (trail,) = store.query(
        "SELECT count() AS n, uniqExact(partition, offset) AS records FROM {db}.observations"
    )
    assert trail == {"n": sent[0], "records": sent[0]}
