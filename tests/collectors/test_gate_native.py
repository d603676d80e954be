"""The gate's compiled route against its reference, through the real broker (issue 22).

bench/_gatediff.py runs one seeded corpus through a gate on each route and compares what
they wrote; bench/gate_differential.py runs a million records of it, this a slice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from bench._gatediff import compare_routes, differences
from stampline import _native  # ./dev test builds it (it needs cargo): its absence is a failure
from stampline.collectors import (
    EventTime,
    Gate,
    GateSettings,
    Tap,
    TapSettings,
    TrailTopic,
    consumer_config,
)
from stampline.collectors._gate import FORCE_REFERENCE_ENV, GATE_PATHS
from stampline.collectors._ids import traced_source_ids
from stampline.collectors._source import open_source
from stampline.collectors.exceptions import DeliveryError
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import js, quote
from tests.helpers import GateRun, produce, read_all

SEED = 20261206


@pytest.fixture(scope="module")
def routes(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    # every output kept readable, so a mismatch shows the record
    return compare_routes(bootstrap, tmp_path_factory.mktemp("diff"), SEED, 6_000, keep=10**6)


def test_both_routes_write_the_same_records_rows_and_reasons(routes: tuple[object, object]) -> None:
    """Clean and dead-letter records (key, value, headers but the times taken), dead-letter
    reasons, trail rows and warning rows are identical on the two routes."""
    reference, compiled = routes
    found = differences(reference, compiled)  # type: ignore[arg-type]
    if found:  # every one shown in full: they are what is to be looked into
        pytest.fail("\n".join(found), pytrace=False)


def test_the_compiled_route_did_the_work(routes: tuple[object, object]) -> None:
    """The comparison is not the reference against itself: the compiled gate routed most
    clean records in Rust, the reference gate none, and both met every kind of record."""
    reference, compiled = routes
    assert "compiled" not in reference.paths  # type: ignore[attr-defined]
    paths = compiled.paths  # type: ignore[attr-defined]
    assert paths["compiled"] > 0.4 * 6_000, paths
    assert paths["compiled, dead-lettered"] > 0.1 * 6_000, paths
    assert paths["python: warned about, or refused by the gate (size, stamps)"] > 0.05 * 6_000
    assert compiled.dead_lettered > 1_000  # type: ignore[attr-defined]
    assert len(compiled.clean) > 3_000  # type: ignore[attr-defined]


# ---- the batch's event ids and traceparents ----

_ids_batch = st.lists(
    st.tuples(
        st.text(max_size=300),  # a topic name the broker would refuse is still hashed alike
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**63), 2**63 - 1),
        # -1: no broker time; past 2^48 ms the id keeps the low 48 bits on both routes
        st.one_of(st.just(-1), st.integers(-(2**63), 2**63 - 1)),
        st.binary(min_size=8, max_size=8),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_ids_batch)
def test_event_ids_and_traceparents_are_the_references(batch: list[Any]) -> None:
    """``_native.event_ids`` (the compiled route's) gives byte for byte the ids and
    traceparents of the reference, ``traced_source_ids``, for any position and broker time."""
    topics = [b[0] for b in batch]
    partitions, offsets, times = ([b[k] for b in batch] for k in (1, 2, 3))
    spans = b"".join(b[4] for b in batch)
    spans_array = np.frombuffer(spans, np.uint8).reshape(len(batch), 8)
    want = traced_source_ids(topics, partitions, offsets, times, spans_array)
    assert _native.event_ids(topics, partitions, offsets, times, spans) == want


def test_event_ids_refuse_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one item per record"):
        _native.event_ids(["t"], [0, 1], [0], [0], bytes(8))
    with pytest.raises(ValueError, match="8 bytes per record"):
        _native.event_ids(["t"], [0], [0], [0], bytes(7))


# ---- which route a gate takes, and the compiled route's producer ----


# Settings confluent-kafka's librdkafka takes and the crate's refuses (no libcurl)
OIDC = {
    "security.protocol": "sasl_ssl",
    "sasl.mechanism": "OAUTHBEARER",
    "sasl.oauthbearer.method": "oidc",
    "sasl.oauthbearer.client.id": "gate",
    "sasl.oauthbearer.client.secret": "do-not-log-me",
    "sasl.oauthbearer.token.endpoint.url": "https://127.0.0.1:9/token",
}


def _settings(**over: Any) -> GateSettings:
    return GateSettings("127.0.0.1:9", ("md.raw",), "md.clean", "md.dlq", **over)


@pytest.mark.parametrize(
    ("over", "env", "why"),
    [
        ({}, "0", ""),
        ({"delivery": "exactly_once"}, "0", "exactly_once"),
        ({"compiled": False}, "0", "forced"),
        ({}, "1", "forced"),
        ({"producer": {"error_cb": print}}, "0", "producer setting 'error_cb'"),
    ],
)
def test_a_gate_takes_the_compiled_route_unless_something_rules_it_out(
    over: dict[str, Any], env: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled route is the default; exactly_once, the setting, the environment and a
    callback only confluent-kafka takes each put the whole gate on the reference, saying why,
    with the reference's event time."""
    monkeypatch.setenv(FORCE_REFERENCE_ENV, env)
    gate = Gate(_settings(**over), RuleSet([]), TrailTopic())
    if not why:
        assert gate.path == "compiled"
        assert isinstance(gate.event_time, _native.EventTime)
    else:
        assert gate.path == "reference"
        assert why in gate._reference_why
        assert isinstance(gate.event_time, EventTime)


def test_a_producer_setting_the_compiled_route_cannot_build_falls_back_to_the_reference() -> None:
    """OAuth through OIDC (the crate's librdkafka is built without libcurl, which it needs):
    the gate makes confluent-kafka's producer instead and takes the reference route, saying
    why. (TLS and the other SASL mechanisms take the compiled route: test_tls.py.)"""
    gate = Gate(_settings(), RuleSet([]), TrailTopic())
    assert gate.path == "compiled"
    producer = gate._new_producer({"bootstrap.servers": "127.0.0.1:9", **OIDC})
    assert isinstance(producer, Producer)
    assert gate.path == "reference"
    assert "producer settings" in gate._reference_why


def test_a_refused_setting_is_named_without_its_value() -> None:
    """librdkafka's own refusal ends with the value, here a client secret: the compiled
    clients' refusals, which the gate and the tap log as their reason for the reference, name
    only the key."""
    key = "sasl.oauthbearer.client.secret"
    with pytest.raises(ValueError, match=key) as refused:
        _native.GateProducer([(key, OIDC[key])])
    config = consumer_config("127.0.0.1:9", "g", {key: OIDC[key]})
    source, why = open_source("127.0.0.1:9", "g", config, ["t"], print, print, compiled=True)
    source.close()
    tap = Tap(TapSettings("127.0.0.1:9", ("t",), consumer={key: OIDC[key]}), TrailTopic())
    stop = threading.Event()
    stop.set()
    tap.run(stop)
    for told in (str(refused.value), why, tap._reference_why):
        assert key in told
        assert OIDC[key] not in told


def test_the_producer_refuses_as_confluent_kafka_does() -> None:
    """A record librdkafka will not take raises what the gate catches from confluent-kafka:
    KafkaException for its size, BufferError when the queue is full, TypeError for headers
    that are not (name, value) pairs; nothing is produced."""
    producer = _native.GateProducer(
        [
            ("bootstrap.servers", "127.0.0.1:9"),
            ("message.max.bytes", "1000"),
            ("queue.buffering.max.messages", "1"),
            ("message.timeout.ms", "200"),
        ]
    )
    reports: list[str | None] = []

    def on_delivery(error: str | None, _report: object) -> None:
        reports.append(error)

    with pytest.raises(KafkaException, match=r"too large|size"):
        producer.produce("t", b"x" * 5_000, on_delivery=on_delivery)
    with pytest.raises(TypeError):
        producer.produce("t", b"v", headers=[("only-a-name",)])  # type: ignore[list-item]
    producer.produce("t", b"v", headers=[("text", "sent as UTF-8"), ("none", None)])
    with pytest.raises(BufferError):
        producer.produce("t", b"v", on_delivery=on_delivery)
    producer.flush(10)  # no broker: what was queued times out, and only that
    assert [f[0] for f in producer.take_failures()] == ["t"]
    assert reports == []  # a record refused at once has no report: its callback is dropped


@pytest.mark.parametrize("route", ["reference", "compiled"])
def test_a_topic_refused_at_once_is_the_outputs_fault_a_record_too_large_its_own(
    bootstrap: str, uid: str, route: str
) -> None:
    """Once librdkafka has heard that a topic is not there, ``produce`` refuses the next
    record for it at once (_UNKNOWN_TOPIC), on both producers. The gate's produce makes that
    a DeliveryError naming the topic (the output's fault: stop, commit nothing, dead-letter
    nothing) and leaves a record over message.max.bytes a KafkaException with its code
    (the record's own fault: the caller dead-letters it)."""
    settings = {"bootstrap.servers": bootstrap, "message.max.bytes": "1000"}
    producer: Any = (
        Producer(settings) if route == "reference" else _native.GateProducer([*settings.items()])
    )
    refused = f"{uid} not a topic!"
    producer.produce(refused, b"v")  # refused in its delivery report: metadata now knows
    producer.flush(10)
    gate = Gate(_settings(), RuleSet([]), TrailTopic())
    gate._producer = producer
    with pytest.raises(DeliveryError, match=r"offsets not committed: .+ not a topic!: .*Unknown"):
        gate._produce(refused, b"v", None, [])
    with pytest.raises(KafkaException) as too_large:
        gate._produce(f"{uid}.clean", b"x" * 5_000, None, [])
    assert too_large.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_undelivered_records_are_reported_on_both_kinds_of_record() -> None:
    """With no broker to take them, a record produced with a callback reaches it with the
    error, and one produced by the compiled route is kept among the failures: either way the
    gate's flush check sees it and commits nothing."""
    producer = _native.GateProducer(
        [("bootstrap.servers", "127.0.0.1:9"), ("message.timeout.ms", "300")]
    )
    reports: list[tuple[str | None, str, int]] = []
    producer.produce(
        "md.dlq", b"v", on_delivery=lambda e, r: reports.append((e, r.topic(), r.offset()))
    )
    producer.produce("md.clean", b"v", b"k")  # as route_batch does: no callback
    assert producer.flush(10) == 0
    ((error, topic, _offset),) = reports
    assert topic == "md.dlq"
    assert error is not None
    assert "timed out" in error.lower()
    (failure,) = producer.take_failures()
    assert failure[0] == "md.clean"
    assert "timed out" in failure[3].lower()
    assert producer.take_failures() == []
    assert producer.positions() == {}


def test_a_wait_is_for_what_was_produced_before_its_epoch_closed(
    bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """``wait(epoch)`` counts the records produced in ``epoch`` or before, of both kinds, and
    none produced after ``close_epoch`` returned it: the gate's writer waits for its segment,
    not for what the evaluator produced since (which ``flush`` would wait for too). With no
    broker every record stays in flight; with one, the wait ends once the earlier records are
    delivered, their callbacks called."""
    stuck = _native.GateProducer(
        [("bootstrap.servers", "127.0.0.1:9"), ("message.timeout.ms", "1000")]
    )
    stuck.produce("md.clean", b"v", b"k")  # as route_batch does: no callback
    stuck.produce("md.dlq", b"v", on_delivery=lambda e, r: None)
    epoch = stuck.close_epoch()
    stuck.produce("md.clean", b"later", b"k")
    assert stuck.wait(epoch, 0.05) == 2
    assert stuck.flush(0.05) == 3
    assert stuck.close_epoch() == epoch + 1
    assert stuck.wait(epoch + 1, 0.05) == 3
    assert stuck.flush(10) == 0  # timed out, every one: none is counted any more
    assert stuck.wait(epoch + 1, 0) == 0

    clean, dlq = make_topics("clean", "dlq")
    producer = _native.GateProducer([("bootstrap.servers", bootstrap)])
    seen: list[str | None] = []
    producer.produce(clean, b"v", b"k")
    producer.produce(dlq, b"v", on_delivery=lambda e, r: seen.append(e))
    assert producer.wait(producer.close_epoch(), 30) == 0
    assert seen == [None]
    assert [tp[0] for tp in producer.positions()] == [clean]


def test_positions_are_the_next_offsets_after_the_route_records_delivered(
    bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """``positions()`` gives, per topic and partition, the offset after the last record the
    route produced there, as the broker numbered them; records with a callback (Python's)
    are not counted, whatever partition they land in."""
    clean, dlq = make_topics("clean", "dlq")
    producer = _native.GateProducer([("bootstrap.servers", bootstrap)])
    seen: list[tuple[str | None, str]] = []
    for i in range(60):  # keys spread the records over the three partitions
        producer.produce(clean, b"v", f"k{i}".encode())
    producer.produce(dlq, b"v", b"k", on_delivery=lambda e, r: seen.append((e, r.topic())))
    assert producer.flush(30) == 0
    assert seen == [(None, dlq)]
    ends: dict[tuple[str, int], int] = {}
    for r in read_all(bootstrap, clean, expect=60):
        ends[(clean, r.partition)] = max(ends.get((clean, r.partition), 0), r.offset + 1)
    assert len(ends) > 1  # more than one partition, or the test shows little
    assert producer.positions() == ends


def test_a_forward_the_broker_never_acknowledges_stops_the_gate_uncommitted(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The broker refuses every forward of the compiled route (its clean topic's name is one
    Kafka does not allow): the gate stops with a DeliveryError naming the topic, dead-letters
    nothing and commits nothing, and a gate with a clean topic the broker takes then forwards
    every record.

    librdkafka reports the refusal in a delivery report, or, once its metadata already says
    the topic is not there, at once from ``produce``: the record is not at fault either way
    (a gate once dead-lettered all five as too large when the second came first)."""
    (raw, clean, dlq) = make_topics("raw", "clean", "dlq", partitions=1)
    produce(bootstrap, raw, [(None, js(quote("alpha", i))) for i in range(5)])
    refused = f"{uid} not a topic!"
    settings = GateSettings(bootstrap, (raw,), refused, dlq, group_id=f"{uid}-g")
    run = GateRun(settings, RuleSet.load([rules_file()]), TrailTopic(f"{uid}.trail"))
    assert run.gate.path == "compiled"
    run.thread.join(60)
    assert isinstance(run.error, DeliveryError)
    assert refused in str(run.error)
    assert "Invalid topic" in str(run.error) or "Unknown topic" in str(run.error)
    assert "offsets not committed" in str(run.error)
    assert not run.gate.stats.dead_lettered  # (it may stop before it counts the batch in)
    assert read_all(bootstrap, dlq, 0, idle_s=0.5) == []
    again = GateRun(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g"),
        RuleSet.load([rules_file()]),
        TrailTopic(f"{uid}.trail"),
    )
    again.wait_for(5)
    again.stop()
    assert again.gate.stats.forwarded == 5
    assert len(read_all(bootstrap, clean, 5)) == 5


def test_both_producers_send_the_same_headers(
    bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """Header names with a NUL or non-ASCII text, empty and null values, text values: what
    the compiled route's producer sends reads back as what confluent-kafka's sends."""
    (topic,) = make_topics("headers", partitions=1)
    headers: list[tuple[str, bytes | str | None]] = [
        ("a\0b", b"1"), ("名前", b"\xff\x00"), ("empty", b""), ("null", None), ("text", "é"),
    ]  # fmt: skip
    reference = Producer({"bootstrap.servers": bootstrap})
    reference.produce(topic, b"v", b"k", headers=headers)
    assert reference.flush(10) == 0
    compiled = _native.GateProducer([("bootstrap.servers", bootstrap)])
    compiled.produce(topic, b"v", b"k", headers=headers)
    assert compiled.flush(10) == 0
    first, second = read_all(bootstrap, topic, 2)
    assert first.headers == second.headers
    assert [name for name, _ in first.headers] == ["a", "名前", "empty", "null", "text"]


def test_a_reason_the_compiled_route_cannot_read_is_left_to_the_reference(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """A rule whose reason holds a lone surrogate (YAML's "\\ud800" makes one; UTF-8 cannot
    carry it): the compiled route hands the record it refuses to the reference, in its place,
    which dead-letters it as unprocessable, naming the encoding error. The other records are
    forwarded on the compiled route, and the gate keeps running."""
    rules = tmp_path / "surrogate.rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n"
        "  - {id: quantity.non_negative, version: 1, kind: range, field: quantity, min: 0,\n"
        '     reason: "quantity \\ud800 {value}"}\n'
    )
    (raw, clean, dlq) = make_topics("raw", "clean", "dlq", partitions=1)
    quotes = [quote("alpha", i, quantity=-1 if i == 2 else 5) for i in range(5)]
    produce(bootstrap, raw, [(None, js(q)) for q in quotes])
    before = GATE_PATHS["python: left by the compiled route"]
    settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g")
    run = GateRun(settings, RuleSet.load([rules]), TrailTopic(f"{uid}.trail"))
    run.wait_for(5)
    run.stop()
    assert run.gate.path == "compiled"
    assert GATE_PATHS["python: left by the compiled route"] == before + 1
    assert run.gate.stats.forwarded == 4
    assert len(read_all(bootstrap, clean, 4)) == 4
    (dead,) = read_all(bootstrap, dlq, 1)
    assert dead.header("stampline.rule.id") == b"record.unprocessable"
    assert b"UnicodeEncodeError" in (dead.header("stampline.reason") or b"")
    assert dead.header("__connect.errors.offset") == b"2"
