"""The tap: one sighting per record, ids from stamps or key fields, hop latency from two taps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from stampline.audit import ChdbStore, decode_trail_message
from stampline.broker import ensure_topics
from stampline.collectors import (
    DeliveryError,
    Stamps,
    Tap,
    TapSettings,
    TrailTopic,
    consumer_config,
    hop_latencies,
    key_event_id,
)
from stampline.collectors import _tap as tap_module
from tests.helpers import produce, read_all
from tests.rawheaders import produce_raw_headers

T0 = 1_750_000_000_000_000_000  # ns; stamps hold times between 2000 and 2100


def _run_tap(tap: Tap, records: int) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 30
    while tap.stats.records < records and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


def test_two_taps_give_the_hop_latency_of_unstamped_events_by_key_fields(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Two taps on two topics derive the same id for the same unstamped event from its key
    fields, so the hop between the topics is the difference of their broker times."""
    upstream, downstream = make_topics("upstream", "downstream", partitions=2)
    events = [{"provider": "alpha", "seq": i, "px": 1.5 + i} for i in range(20)]
    produce(bootstrap, upstream, [(None, orjson.dumps(e)) for e in events])
    # the downstream copy is enriched (payload changed) but keeps the key fields
    produce(bootstrap, downstream, [(None, orjson.dumps({**e, "enriched": True})) for e in events])
    settings = {"key_fields": ("provider", "seq"), "group_id": f"{uid}-tap"}
    for topic in (upstream, downstream):
        tap = Tap(TapSettings(bootstrap, (topic,), **settings), store)  # type: ignore[arg-type]
        _run_tap(tap, 20)
        assert (tap.stats.records, tap.stats.unstamped, tap.stats.keyed) == (20, 20, 20)
    hops = hop_latencies(store, f"tap:{upstream}", f"tap:{downstream}")
    up = {
        orjson.loads(r.value or b"")["seq"]: r.timestamp_ms
        for r in read_all(bootstrap, upstream, 20)
    }
    down = {
        orjson.loads(r.value or b"")["seq"]: r.timestamp_ms
        for r in read_all(bootstrap, downstream, 20)
    }
    assert len(up) == len(down) == 20  # read-only: the taps added nothing to either topic
    assert hops == {key_event_id(["alpha", i]): down[i] - up[i] for i in range(20)}


def test_tap_sighting_keeps_the_stamped_event_id_and_broker_time(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """A stamped record's sighting carries its stamped id, origin and the broker timestamp;
    a record missing a key field falls back to an id from where it was read."""
    (topic,) = make_topics("clean", partitions=1)
    stamps = Stamps("0b9e1c1e-4f7a-4b1e-9c53-1a2b3c4d5e6f", T0, T0 + 1_000_000, 7)
    produce(
        bootstrap,
        topic,
        [(None, b'{"provider":"a"}', stamps.headers()), (None, b'{"provider":"a"}')],
    )
    tap = Tap(
        TapSettings(bootstrap, (topic,), group_id=f"{uid}-tap", key_fields=("provider", "seq")),
        store,
    )
    _run_tap(tap, 2)
    rows = store.query(
        "SELECT toString(event_id) AS id, toUnixTimestamp64Nano(origin) AS origin, "
        "toUnixTimestamp64Milli(broker_time) AS broker_ms, offset "
        "FROM {db}.trail WHERE stage = {s:String} ORDER BY offset",
        {"s": f"tap:{topic}"},
    )
    assert len(rows) == 2
    assert rows[0]["id"] == stamps.event_id
    assert rows[0]["origin"] == T0
    assert all(r["broker_ms"] > 0 for r in rows)
    assert rows[1]["id"] != rows[0]["id"]
    assert tap.stats.keyed == 0  # "seq" was missing, so the position named it


def test_a_tap_started_before_its_topic_exists_observes_it_once_created(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """A tap (as `stampline tap` runs it, sending to the trail topic) subscribed to a topic
    nobody has created yet picks it up once it is created, and observes what is produced."""
    (trail,) = make_topics("trail", partitions=1)
    topic = f"{uid}.later"
    tap = Tap(TapSettings(bootstrap, (topic,), group_id=f"{uid}-tap"), TrailTopic(trail, "tap@t"))
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    try:
        time.sleep(5)  # the tap has subscribed and found no such topic
        ensure_topics(bootstrap, [topic], 1)
        produce(bootstrap, topic, [(None, orjson.dumps({"seq": i})) for i in range(5)])
        deadline = time.monotonic() + 60
        while tap.stats.records < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tap.stats.records == 5
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert read_all(bootstrap, trail, 1)  # the sightings reached the trail


def test_the_reference_loop_commits_only_what_it_observed(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The reference loop commits the offsets of the records it observed, not the consumer's
    position: a revoke runs inside the consumer's poll, which may already have taken records
    that are not observed (nor written) yet, and those must be read again."""
    from stampline.collectors._tap import _Reference
    from stampline.collectors._trailrows import TrailRows

    (topic,) = make_topics("observed", partitions=1)
    produce(bootstrap, topic, [(None, b"{}") for _ in range(10)])
    tap = Tap(
        TapSettings(bootstrap, (topic,), group_id=f"{uid}-tap", consume_batch=4), TrailTopic()
    )
    source = _Reference(tap.settings, tap._observe, lambda: None, dict, "test")
    try:
        pending = TrailRows()
        deadline = time.monotonic() + 30
        while (offsets := source.take(pending)) is None:
            assert time.monotonic() < deadline, "no record taken"
        observed = tap.stats.records
        assert 0 < observed <= 4
        # taken by the consumer as a revoke's poll would, and not observed
        extra: list[object] = []
        while not extra:
            assert time.monotonic() < deadline, "no more records taken"
            extra = source.consumer.consume(3, 0.5)
        source.commit(offsets)
        (committed,) = source.consumer.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset == observed
    finally:
        source.close()


LOOPS = [
    pytest.param(
        True,
        id="compiled",
        marks=pytest.mark.skipif(tap_module.TapLoop is None, reason="no compiled loop"),
    ),
    pytest.param(False, id="reference"),
]


@pytest.mark.parametrize("compiled", LOOPS)
def test_the_tap_takes_on_while_its_trail_is_unacknowledged_and_commits_none_of_it(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, compiled: bool
) -> None:
    """While the broker has not acknowledged a trail segment the tap goes on taking records
    (up to its segments in flight), commits nothing past that segment, stops when its
    delivery fails, and the next tap of the group observes exactly the uncommitted records."""
    topic, trail = make_topics("in", "trail", partitions=1)
    group = f"{uid}-tap"
    settings = {"group_id": group, "compiled": compiled, "consume_batch": 10}
    produce(bootstrap, topic, [(None, b"{}") for _ in range(30)])
    first = Tap(TapSettings(bootstrap, (topic,), **settings), TrailTopic(trail))  # type: ignore[arg-type]
    _run_tap(first, 30)
    assert committed(bootstrap, group, topic) == 30
    produce(bootstrap, topic, [(None, b"{}") for _ in range(100)])
    # a trail topic that does not exist: its messages wait, then time out
    missing = {"allow.auto.create.topics": False, "message.timeout.ms": 6000}
    blocked = Tap(
        TapSettings(
            bootstrap,
            (topic,),
            flush_interval_s=0.0,
            consumer=missing,
            **settings,  # type: ignore[arg-type]
        ),
        TrailTopic(f"{uid}.missing"),
    )
    failed: list[BaseException] = []
    stop = threading.Event()  # set only if the test fails: the tap should stop by itself
    thread = threading.Thread(target=_catch, args=(blocked.run, stop, failed))
    thread.start()
    try:
        # a batch is counted as it is observed, and its segment joins those in flight only
        # after the take returns: wait for the second segment itself, not for its records
        deadline = time.monotonic() + 30
        in_flight = 0
        while in_flight < 2 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
            in_flight = max(in_flight, blocked.in_flight)
        assert blocked.stats.records > 10  # past the first segment, which is unacknowledged
        assert in_flight >= 2
        assert committed(bootstrap, group, topic) == 30
        thread.join(60)
        assert not thread.is_alive()
    finally:
        stop.set()
        thread.join(60)
    (error,) = failed
    assert isinstance(error, DeliveryError), error
    # it took at most its segments in flight and one more, then waited for the first
    assert blocked.stats.records <= 10 * (blocked.settings.trail_in_flight + 1)
    assert committed(bootstrap, group, topic) == 30
    again = Tap(TapSettings(bootstrap, (topic,), **settings), TrailTopic(trail))  # type: ignore[arg-type]
    _run_tap(again, 100)
    assert again.stats.records == 100  # exactly the uncommitted
    assert committed(bootstrap, group, topic) == 130
    offsets = [
        offset
        for r in read_all(bootstrap, trail, 2)
        for offset in decode_trail_message(r.value, r.headers)[1].column("offset").to_pylist()
    ]
    assert sorted(offsets) == list(range(130))


def _catch(
    run: Callable[[threading.Event], None], stop: threading.Event, failed: list[BaseException]
) -> None:
    try:
        run(stop)
    except BaseException as exc:
        failed.append(exc)


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of ``topic``'s partition 0."""
    c = Consumer(consumer_config(bootstrap, group))
    try:
        (part,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return int(part.offset)
    finally:
        c.close()


@pytest.mark.parametrize("compiled", LOOPS)
def test_a_revoke_waits_for_the_trail_segments_in_flight_and_commits_them(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, compiled: bool
) -> None:
    """When a second tap joins its group while the first one's trail segments wait for the
    broker, the first waits for their acknowledgement and commits them before its partitions
    go: the newcomer reads none of those records again, and the trail holds them all."""
    (topic,) = make_topics("in", partitions=1)
    trail, group = f"{uid}.trail-later", f"{uid}-tap"
    produce(bootstrap, topic, [(None, b"{}") for _ in range(40)])
    held = {"allow.auto.create.topics": False, "message.timeout.ms": 120_000}
    settings = {"group_id": group, "compiled": compiled, "consume_batch": 10}
    first = Tap(
        TapSettings(bootstrap, (topic,), flush_interval_s=0.0, consumer=held, **settings),  # type: ignore[arg-type]
        TrailTopic(trail),
    )
    revoked_with: list[int] = []
    revoking = first._revoking

    def counted() -> dict[tuple[str, int], int]:
        revoked_with.append(first.in_flight)
        return revoking()

    first._revoking = counted  # type: ignore[method-assign]
    second = Tap(TapSettings(bootstrap, (topic,), **settings), TrailTopic(trail))  # type: ignore[arg-type]
    stops = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=tap.run, args=(stop,))
        for tap, stop in zip((first, second), stops, strict=True)
    ]
    threads[0].start()
    try:
        deadline = time.monotonic() + 30
        while first.stats.records < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.stats.records == 40
        assert first.in_flight >= 1  # the trail topic does not exist: nothing acknowledged
        threads[1].start()
        while not revoked_with and time.monotonic() < deadline:
            time.sleep(0.01)
        assert revoked_with[0] >= 1  # the revoke began with segments in flight
        ensure_topics(bootstrap, [trail], 1)  # now the broker takes them
        assert second.ready.wait(60)
        assert committed(bootstrap, group, topic) == 40
        time.sleep(1)
        assert second.stats.records == 0  # committed before the partition went
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(60)
    offsets = [
        offset
        for r in read_all(bootstrap, trail, 1)
        for offset in decode_trail_message(r.value, r.headers)[1].column("offset").to_pylist()
    ]
    assert sorted(offsets) == list(range(40))


@pytest.mark.parametrize("compiled", LOOPS)
def test_a_segment_goes_to_the_trail_in_parts_before_its_flush(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    uid: str,
    compiled: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows reach the trail in whole messages while their segment is still being filled (long
    before its flush), the rows short of a message wait for the next part, and the trail ends
    with every record's row exactly once, in order, committed once all of it is there."""
    monkeypatch.setattr(tap_module, "PART_ROWS", 40)
    topic, trail = make_topics("in", "trail", partitions=1)
    group = f"{uid}-tap"
    produce(bootstrap, topic, [(None, b"{}") for _ in range(500)])
    # ~11 rows a message: a part of 40 makes 3 whole ones and carries the rest
    max_bytes = 3000
    tap = Tap(
        TapSettings(
            bootstrap,
            (topic,),
            group_id=group,
            compiled=compiled,
            consume_batch=25,
            flush_rows=1_000_000,
            flush_interval_s=3600.0,
        ),
        TrailTopic(trail, max_message_bytes=max_bytes),
    )
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while tap.stats.records < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tap.stats.records == 500
        early = read_all(bootstrap, trail, 1)  # the segment is not flushed yet
        assert early
        assert committed(bootstrap, group, topic) < 0  # nor committed: nothing is
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    messages = [decode_trail_message(r.value, r.headers)[1] for r in read_all(bootstrap, trail)]
    offsets = [o for table in messages for o in table.column("offset").to_pylist()]
    assert offsets == list(range(500))
    # whole messages before the last: a part's rows short of one waited for the next part
    assert all(len(table) >= 8 for table in messages[:-1])
    early_rows = sum(len(decode_trail_message(r.value, r.headers)[1]) for r in early)
    assert early_rows < 500  # the last rows waited for the flush
    assert committed(bootstrap, group, topic) == 500


@pytest.mark.parametrize("compiled", LOOPS)
def test_a_header_name_that_is_not_utf8_is_a_broken_stamp_and_the_tap_goes_on(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, compiled: bool
) -> None:
    """No client reads a record's headers when a name is not UTF-8 (confluent-kafka's fail, the
    rdkafka crate's reader panics): the tap observes the record as one whose stamps cannot be
    read, with the records around it as usual, and the next tap of its group does not meet it
    again (before, the compiled loop panicked on it and the reference died of it, each restart
    alike)."""
    topic, trail = make_topics("in", "trail", partitions=1)
    produce(bootstrap, topic, [(None, b"{}")])
    produce_raw_headers(bootstrap, topic, 0, b"{}", [(b"\xff\xfe", b"v")])
    produce(bootstrap, topic, [(None, b"{}")])
    settings = {"group_id": f"{uid}-tap", "compiled": compiled}
    first = Tap(TapSettings(bootstrap, (topic,), **settings), TrailTopic(trail))  # type: ignore[arg-type]
    _run_tap(first, 3)
    assert first.path == ("compiled" if compiled else "reference")
    assert (first.stats.records, first.stats.bad_stamps) == (3, 1)
    rows = [
        row
        for r in read_all(bootstrap, trail, 1)
        for row in decode_trail_message(r.value, r.headers)[1].to_pylist()
    ]
    assert sorted(row["offset"] for row in rows) == [0, 1, 2]  # each record its own sighting
    produce(bootstrap, topic, [(None, b"{}")])
    again = Tap(TapSettings(bootstrap, (topic,), **settings), TrailTopic(trail))  # type: ignore[arg-type]
    _run_tap(again, 1)
    time.sleep(0.5)
    assert again.stats.records == 1
