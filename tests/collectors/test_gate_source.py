"""The gate's two consumers (collectors/_source.py): the compiled one (stampline's own
librdkafka handle, native/src/source.rs) gives the columns confluent-kafka's gives, record for
record, over the real broker; it bounds a batch by bytes; a gate on the compiled route
consumes with it, and falls back to confluent-kafka's where it must."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from stampline import _native  # ./dev test builds it (it needs cargo): its absence is a failure
from stampline.collectors import H_OFFSET, H_REASON, Gate, GateSettings, TrailTopic
from stampline.collectors._kafka import consumer_config, native_settings
from stampline.collectors._source import Source, Taken, open_source
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import js, quote
from tests.helpers import GateRun, produce, read_all
from tests.rawheaders import produce_raw_headers

# What a provider can put in a record's key, value and headers, the hostile along with the
# ordinary: none, empty, binary, not UTF-8, large; header values None, repeated names, many
# headers, names of every script and a long one.
KEYS = [None, b"", b"k", b"\x00\xff\xfe", "ключ".encode(), b"k" * 10_000]
VALUES = [None, b"", b"{}", b'{"a":1}', b"\xff\xfe not utf-8", b"x" * 300_000, b"\x00" * 7]
HEADERS: list[list[tuple[str, bytes | None]] | None] = [
    None,
    [("a", None)],
    [("stampline.event_id", b"not a uuid"), ("stampline.event_id", b"twice")],
    [("bin", b"\x00\xff\x01")],
    [("ünï¢ødé 名前", b"v"), ("", b"empty name")],
    [("n" * 2_000, b"long name")],
    [(f"h{i}", str(i).encode()) for i in range(100)],
]


def _records() -> list[tuple[bytes | None, bytes | None, Any]]:
    out: list[tuple[bytes | None, bytes | None, Any]] = []
    for i in range(3 * len(VALUES) * len(HEADERS)):
        key = KEYS[i % len(KEYS)]
        value = VALUES[(i // len(KEYS)) % len(VALUES)]
        headers = HEADERS[i % len(HEADERS)]
        out.append((key, value, headers) if headers is not None else (key, value))
    return out


def _consume_all(source: Source, n: int) -> Taken:
    got = Taken([], [], [], [], [], [], [], [])
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got.extend(source.take(50, 2**30, 0.5))
    source.close()
    return got


def _by_position(t: Taken) -> list[tuple[Any, ...]]:
    rows = zip(
        t.topics, t.partitions, t.offsets, t.time_types, t.times_ms, t.keys, t.values, t.headers,
        strict=True,
    )  # fmt: skip
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def _open(
    bootstrap: str,
    group: str,
    topics: list[str],
    compiled: bool,
    extra: dict[str, Any] | None = None,
) -> Source:
    config = consumer_config(bootstrap, group, extra)
    source, why = open_source(
        bootstrap, group, config, topics, lambda _p: None, lambda _p: None, compiled=compiled
    )
    assert (why == "") == compiled, why
    return source


def test_both_consumers_give_the_same_columns(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    (topic,) = make_topics("raw")
    records = _records()
    produce(bootstrap, topic, records)
    # a record stamped with a creation time of its producer's choosing
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, b"{}", timestamp=1)
    p.flush(10)
    n = len(records) + 1
    reference = _consume_all(_open(bootstrap, f"{uid}-ref", [topic], compiled=False), n)
    compiled = _consume_all(_open(bootstrap, f"{uid}-native", [topic], compiled=True), n)
    assert len(reference) == len(compiled) == n
    assert _by_position(compiled) == _by_position(reference)
    assert (
        compiled.size
        == reference.size
        == sum(len(v or b"") + len(k or b"") for k, v, *_ in records) + 2
    )
    assert 1 in compiled.times_ms  # the chosen creation time came through as given
    assert {type(v) for v in compiled.values} == {bytes, type(None)}


def test_the_compiled_consumer_ends_a_batch_at_its_byte_bound(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    (topic,) = make_topics("raw", partitions=1)
    produce(bootstrap, topic, [(None, b"v" * 100_000) for _ in range(20)])
    source = _open(bootstrap, f"{uid}-bytes", [topic], compiled=True)
    try:
        first = Taken([], [], [], [], [], [], [], [])
        deadline = time.monotonic() + 30
        while not len(first) and time.monotonic() < deadline:
            first = source.take(1000, 250_000, 0.5)
        # it stops at the record that reaches the bound: 3 of 100 kB, not all 20
        assert len(first) == 3
        assert first.size == 300_000
        rest = Taken([], [], [], [], [], [], [], [])
        while len(rest) < 17 and time.monotonic() < deadline:
            rest.extend(source.take(1000, 250_000, 0.5))
        assert first.offsets + rest.offsets == list(range(20))  # nothing lost, in order
    finally:
        source.close()


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_a_consumer_whose_queue_is_full_waits_instead_of_spinning(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, compiled: bool
) -> None:
    # librdkafka stops fetching while a partition's local queue holds queued.min.messages
    # and tries again after fetch.queue.backoff.ms; with 0 its broker thread spun the whole
    # time, a core's worth of CPU taken from the loop draining the queue (docs/native.md,
    # "A consumer that waits"). A queue of 10 here stands for the default 100,000.
    (topic,) = make_topics("raw", partitions=1)
    produce(bootstrap, topic, [(None, b"v") for _ in range(200)])
    source = _open(bootstrap, f"{uid}-full", [topic], compiled, {"queued.min.messages": 10})
    try:
        first = Taken([], [], [], [], [], [], [], [])
        deadline = time.monotonic() + 30
        while not len(first) and time.monotonic() < deadline:
            first = source.take(1, 2**30, 0.5)
        assert len(first) == 1  # fetching has begun: the queue holds the rest, over 10
        time.sleep(0.5)  # the queue fills; from here librdkafka only decides not to fetch
        cpu = time.process_time()
        time.sleep(1.0)
        # CPU time, not wall-clock: a spinning thread burns most of a second on any machine
        # that gives it a core; waiting 5 ms at a time costs a few ms in all
        assert time.process_time() - cpu < 0.3
        rest = Taken([], [], [], [], [], [], [], [])
        while len(first) + len(rest) < 200 and time.monotonic() < deadline:
            rest.extend(source.take(1000, 2**30, 0.5))
        assert first.offsets + rest.offsets == list(range(200))  # it still reads them all
    finally:
        source.close()


def test_an_exception_in_a_rebalance_callback_comes_out_of_the_take(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    (topic,) = make_topics("raw", partitions=1)

    def refuse(partitions: list[tuple[str, int]]) -> None:
        raise LookupError(f"no recovery for {partitions}")

    config, _ = native_settings(consumer_config(bootstrap, f"{uid}-cb"))
    native = _native.GateSource(
        bootstrap, f"{uid}-cb", config, [topic], on_assign=refuse, on_revoke=lambda _p: None
    )

    def take_for_30_s() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            native.take(10, 2**20, 0.2)

    with pytest.raises(LookupError, match=r"no recovery for \[\('.*raw', 0\)\]"):
        take_for_30_s()
    native.close()
    with pytest.raises(RuntimeError, match="closed"):
        native.take(10, 2**20, 0.0)


def test_a_gate_on_the_compiled_route_consumes_with_its_own_handle(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    raw, clean, dlq = make_topics("raw", "clean", "dlq")
    produce(bootstrap, raw, [(None, b'{"provider":"p","instrument":"I","seq":1}')] * 5)
    rules = RuleSet.load([rules_file()])

    def run(**over: Any) -> Gate:
        group = f"{uid}-{len(over)}-{over.get('compiled', True)}"
        settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=group, **over)
        gate_run = GateRun(settings, rules, TrailTopic(f"{uid}.trail"))
        gate_run.wait_for(5)
        gate_run.stop()
        return gate_run.gate

    assert run().consumer_path == "compiled"
    # a callback only confluent-kafka takes: its consumer, which says why
    called = run(consumer={"error_cb": lambda _e: None})
    assert called.consumer_path == "reference (consumer setting 'error_cb')"
    assert called.stats.events_in == 5
    # the reference route consumes with the reference
    assert run(compiled=False).consumer_path == "reference (not asked for)"


BAD_NAME = [(b"\xff\xfe not utf-8", b"v"), (b"ok", b"w")]


def test_a_header_name_that_is_not_utf8_is_unreadable_on_both_consumers(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """confluent-kafka raises from ``headers()`` on such a name and the rdkafka crate's reader
    panics: both consumers give the record with no headers, named as unreadable, and the
    records around it as usual."""
    (topic,) = make_topics("raw", partitions=1)
    produce(bootstrap, topic, [(None, b"{}", [("a", b"1")])])
    produce_raw_headers(bootstrap, topic, 0, b"{}", BAD_NAME)
    produce(bootstrap, topic, [(None, b"{}", [("b", b"2")])])
    for compiled in (False, True):
        got = _consume_all(_open(bootstrap, f"{uid}-{compiled}", [topic], compiled), 3)
        assert got.offsets == [0, 1, 2], compiled
        assert got.headers == [[("a", b"1")], None, [("b", b"2")]], compiled
        assert got.unreadable == [1], compiled
        assert Taken.joined([got.one(2), got.one(1)]).unreadable == [1], compiled


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_a_gate_dead_letters_a_record_whose_headers_cannot_be_read_and_goes_on(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, compiled: bool
) -> None:
    """The record is dead-lettered as unprocessable, saying why, without its headers; the
    records around it are forwarded; a restarted gate does not meet it again (before, the
    reference gate's evaluator died on it, and so did every restart)."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)

    def good(seq: int) -> bytes:
        return js(quote("alpha", seq))

    produce(bootstrap, raw, [(None, good(i)) for i in (1, 2, 3)])
    hostile = good(4)
    produce_raw_headers(bootstrap, raw, 0, hostile, BAD_NAME)
    produce(bootstrap, raw, [(None, good(i)) for i in (5, 6, 7)])
    rules = RuleSet.load([rules_file()])
    settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g", compiled=compiled)
    first = GateRun(settings, rules, TrailTopic(f"{uid}.trail"))
    first.wait_for(7)
    first.stop()
    assert first.gate.path == ("compiled" if compiled else "reference")
    assert first.gate.stats.forwarded == 6
    assert dict(first.gate.stats.dead_lettered) == {"record.unprocessable": 1}
    (dead,) = read_all(bootstrap, dlq, 1)
    assert dead.header_all(H_OFFSET)[-1] == b"3"
    assert dead.header_all(H_REASON)[-1] == (
        b"a header name is not UTF-8: the record's headers cannot be read"
    )
    assert dead.value == hostile
    assert not [h for h in dead.headers if h[0] in ("ok", "\ufffd")]  # none of its own
    assert len(read_all(bootstrap, clean, 6)) == 6
    again = GateRun(settings, rules, TrailTopic(f"{uid}.trail"))
    produce(bootstrap, raw, [(None, good(8))])
    again.wait_for(1)
    time.sleep(0.5)
    again.stop()
    assert again.gate.stats.events_in == 1
