"""The compiled loop's Kafka side (native/src/kafka.rs) over the real embedded broker: every
record delivered once, stamped as the gate stamps a new event, and exactly the consumed
offsets committed.

The normal install builds the extension with the `kafka` feature (docs/native.md), so these
tests run wherever the crate is built; they are skipped only where it is not (an install
without cargo). To run them against a module built apart (`cargo build --release --features
python,kafka` in native/), set STAMPLINE_NATIVE_KAFKA to its lib_native.so.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from stampline.collectors import consumer_config, producer_config, read_stamps, source_event_id
from stampline.collectors._ids import trace_id_of
from stampline.collectors._stamps import trace_of


def _module() -> ModuleType | None:
    path = os.environ.get("STAMPLINE_NATIVE_KAFKA")
    if path:  # its init function is PyInit__native: loaded as a top-level `_native`
        loader = importlib.machinery.ExtensionFileLoader("_native", path)
        spec = importlib.util.spec_from_file_location("_native", path, loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module
    try:
        from stampline import _native
    except ImportError:
        return None
    return _native if hasattr(_native, "kafka_stamp_loop") else None


native = _module()
pytestmark = pytest.mark.skipif(
    native is None,
    reason="stampline._native is not built (an install without cargo; docs/native.md)",
)

STAGE = "gate-rs"
HOST = "host-1"
ERR = 2_000_000
GATE_HEADERS = [
    "stampline.v",
    "stampline.event_id",
    "stampline.origin_ns",
    "stampline.ingest_ns",
    "stampline.clock_err_ns",
    "traceparent",
    "stampline.stamp",
]


def run_loop(bootstrap: str, group: str, src: str, dst: str, **kw: Any) -> dict[str, Any]:
    assert native is not None
    got: dict[str, Any] = native.kafka_stamp_loop(
        bootstrap, group, src, dst, stage=STAGE, host=HOST, clock_err_ns=ERR, **kw
    )
    return got


def fill(bootstrap: str, topic: str, per_partition: int) -> None:
    """Records with unique values, some with a header of their own, some without a key."""
    producer = Producer(producer_config(bootstrap))
    for p in range(3):
        for i in range(per_partition):
            producer.produce(
                topic,
                f'{{"p":{p},"i":{i}}}'.encode(),
                None if i % 5 == 0 else f"k{i}".encode(),
                partition=p,
                headers=[("own", f"h{i}".encode())] if i % 3 == 0 else None,
            )
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, want: int) -> list[Any]:
    """Every record of ``topic``: wait for ``want``, then a second more for any extra."""
    consumer = Consumer(consumer_config(bootstrap, f"read-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    got: list[Any] = []
    deadline = time.monotonic() + 60
    while len(got) < want and time.monotonic() < deadline:
        got += [m for m in consumer.consume(500, 0.5) if m.error() is None]
    extra_until = time.monotonic() + 1.0
    while time.monotonic() < extra_until:
        got += [m for m in consumer.consume(500, 0.2) if m.error() is None]
    consumer.close()
    return got


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer(consumer_config(bootstrap, group))
    tps = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    consumer.close()
    return {tp.partition: tp.offset for tp in tps}


def test_the_compiled_loop_stamps_every_record_once_and_commits_what_it_consumed(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    src, dst = make_topics("src", "dst")
    fill(bootstrap, src, 100)
    by_value = {m.value(): m for m in read_all(bootstrap, src, 300)}
    assert len(by_value) == 300
    group = f"{uid}.loop"

    # First run: 200 of the 300, in batches of at most 37, so several batches are in flight.
    first = run_loop(bootstrap, group, src, dst, batch_size=37, max_events=200)
    assert (first["consumed"], first["produced"], first["delivered"]) == (200, 200, 200)
    assert first["batches"] >= 6
    offsets = {p: o for _t, p, o in first["committed"]}
    assert committed(bootstrap, group, src) == {p: offsets.get(p, -1001) for p in range(3)}
    assert sum(offsets.values()) == 200  # offsets start at 0: what was committed is what was read

    out = read_all(bootstrap, dst, 200)
    consumed = {v for v, m in by_value.items() if m.offset() < offsets.get(m.partition(), 0)}
    assert Counter(m.value() for m in out) == Counter(dict.fromkeys(consumed, 1))

    for m in out:
        source = by_value[m.value()]
        assert m.key() == source.key()
        own = source.headers() or []
        headers = m.headers() or []
        # the record's own headers first, then the gate's seven, in the gate's order
        assert headers[: len(own)] == own
        assert [k for k, _v in headers[len(own) :]] == GATE_HEADERS
        stamps = read_stamps(headers)
        assert stamps is not None
        ts = source.timestamp()[1]
        assert stamps.event_id == source_event_id(src, source.partition(), source.offset(), ts)
        assert stamps.origin_ns == ts * 1_000_000
        assert stamps.clock_err_ns == ERR
        assert trace_of(stamps.traceparent) == trace_id_of(stamps.event_id)
        (stage,) = stamps.stages
        assert (stage.stage, stage.host, stage.clock_err_ns, stage.source) == (STAGE, HOST, ERR, "")
        assert stage.received_ns == stamps.ingest_ns <= stage.emitted_ns

    # Second run of the same group: exactly the other 100, then it ends on an idle topic.
    second = run_loop(bootstrap, group, src, dst, batch_size=37, idle_ms=1500)
    assert second["consumed"] == second["delivered"] == 100
    assert committed(bootstrap, group, src) == {0: 100, 1: 100, 2: 100}
    assert Counter(m.value() for m in read_all(bootstrap, dst, 300)) == Counter(
        dict.fromkeys(by_value, 1)
    )


def test_span_ids_differ_between_records(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Each record's traceparent carries a span id of its own (the trace id is the event's)."""
    src, dst = make_topics("src", "dst")
    fill(bootstrap, src, 50)
    run_loop(bootstrap, f"{uid}.spans", src, dst, max_events=150)
    spans = [
        dict(m.headers() or [])["traceparent"].split(b"-")[2] for m in read_all(bootstrap, dst, 150)
    ]
    assert len(spans) == 150
    assert len(set(spans)) == 150


@pytest.mark.parametrize(
    ("stage", "host", "what"), [("a b", HOST, "stage name"), (STAGE, "h;x", "host")]
)
def test_names_out_of_contract_are_refused_before_anything_is_read(
    bootstrap: str, stage: str, host: str, what: str
) -> None:
    assert native is not None
    with pytest.raises(ValueError, match=what):
        native.kafka_stamp_loop(
            bootstrap, "g", "t", "u", stage=stage, host=host, clock_err_ns=0, start_ms=0
        )
