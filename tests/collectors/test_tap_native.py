"""The tap's compiled loop (native/src/tap.rs, taprows.rs) against the reference loop, over
the real embedded broker: one seeded corpus observed by a tap forced to the reference and by
one on the compiled loop gives the same trail rows (every column but the tap's own read
time), the same counts and the same metrics; and the compiled tap commits only what its
trail holds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stampline.audit import DeadLetter, Observation, decode_trail_message
from stampline.collectors import SidecarMetrics, Tap, TapSettings, TrailTopic, consumer_config
from stampline.collectors import _tap as tap_module
from stampline.collectors._tap import TAP_PATHS
from tests.collectors.stampcorpus import gate_written, hostile, written
from tests.collectors.test_gate_native import OIDC
from tests.helpers import read_all

pytestmark = pytest.mark.skipif(
    tap_module.TapLoop is None, reason="stampline._native is not built (docs/native.md)"
)

SEED = 2207
Headers = list[tuple[str, bytes | None]] | None
Record = tuple[bytes | None, bytes | None, Headers, int | None]  # key, value, headers, ms


class Tables:
    """A trail sink (``TrailSink``) that keeps the tables it is given."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write_observation_table(self, table: pa.Table) -> None:
        self.tables.append(table)

    def write_observations(self, rows: Sequence[Observation]) -> None:
        raise AssertionError("a table sink is given tables")

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        raise AssertionError("a tap writes no dead letters")

    def rows(self) -> list[dict[str, Any]]:
        return [r for t in self.tables for r in t.to_pylist()]


def _payload(rng: random.Random) -> bytes | None:
    """Payloads for key fields: with them, without one, of other types, not JSON, none."""
    pick = rng.randrange(8)
    if pick < 4:
        return orjson.dumps({"provider": rng.choice(["a", "b"]), "seq": rng.randrange(50)})
    return [
        orjson.dumps({"provider": "a"}),
        orjson.dumps([1, 2]),
        b"\xff not json",
        None,
    ][pick - 4]


def corpus(seed: int) -> list[Record]:
    """Stamped records as every stamper writes them, hostile ones made from them, unstamped
    ones (no headers, empty, only a producer's own, null values), with payloads the key
    fields read differently, and a few broker times of their own."""
    rng = random.Random(seed)
    base = written(seed, 600) + gate_written(seed + 1, 300)
    headers: list[Headers] = [*base, *hostile(seed + 2, base, 700)]
    headers += [None] * 150 + [[]] * 30 + [[("x-app", b"risk"), ("x-null", None)]] * 40
    headers += [[("stampline.event_id", None), ("stampline.stamp", None)]] * 10
    rng.shuffle(headers)
    out: list[Record] = []
    for h in headers:
        ms = rng.choice([None] * 8 + [1, 946_684_800_000, 4_102_444_800_000])
        out.append((rng.choice([None, b"k", b"\x00\xff"]), _payload(rng), h, ms))
    return out


def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 20_000_000}
    )
    for key, value, headers, ms in records:
        extra: dict[str, Any] = {"timestamp": ms} if ms is not None else {}
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, **extra)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def run_tap(tap: Tap, records: int, timeout: float = 60) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + timeout
    while tap.stats.records < records and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


def observed(
    bootstrap: str, topics: Sequence[str], group: str, compiled: bool, **settings: Any
) -> tuple[Tap, Tables, SidecarMetrics]:
    sink, metrics = Tables(), SidecarMetrics()
    tap = Tap(
        TapSettings(
            bootstrap, tuple(topics), group_id=group, compiled=compiled, host="tap-1", **settings
        ),
        sink,
        metrics,
    )
    return tap, sink, metrics


def per_record(rows: list[dict[str, Any]]) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    """Rows by the record they came from, in the order the tap gave them. The tap's own read
    time is masked: its sighting's (each record's last row) ``emitted``, and its ``received``
    where the record had no broker time."""
    out: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["topic"], r["partition"], r["offset"]), []).append(dict(r))
    for got in out.values():
        got[-1]["emitted"] = "now"
        if got[-1]["broker_time"] == 0:
            got[-1]["received"] = "now"
    return out


def counts(metrics: SidecarMetrics) -> dict[str, float]:
    return {
        s.labels["topic"]: s.value
        for m in metrics.tap_observations.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }


@pytest.fixture
def topics(make_topics: Callable[..., list[str]]) -> list[str]:
    # the third name makes a sighting stage over 64 characters: cut, as stage_for cuts it
    return make_topics("a", "b", "x" * 60, partitions=2)


@pytest.mark.parametrize("key_fields", [(), ("provider", "seq")])
def test_the_compiled_tap_observes_a_corpus_as_the_reference_does(
    bootstrap: str, topics: list[str], uid: str, key_fields: tuple[str, ...]
) -> None:
    """A tap on the compiled loop and one forced to the reference, over the same seeded
    corpus (stamped, hostile and unstamped records, key fields or none), write the same rows
    per record and count the same records, observations and metrics."""
    records = corpus(SEED)
    for i, topic in enumerate(topics):
        produce(bootstrap, topic, records[i::3])
    before = TAP_PATHS.copy()
    taps = {}
    for compiled in (False, True):
        tap, sink, metrics = observed(
            bootstrap, topics, f"{uid}-{compiled}", compiled, key_fields=key_fields
        )
        run_tap(tap, len(records))
        taps[compiled] = (tap, per_record(sink.rows()), counts(metrics))
    (ref, ref_rows, ref_counts), (fast, fast_rows, fast_counts) = taps[False], taps[True]
    assert (ref.path, fast.path) == ("reference", "compiled")
    assert ref.stats.records == len(records) == len(ref_rows)
    assert fast.stats == ref.stats
    assert fast_counts == ref_counts
    assert fast_rows.keys() == ref_rows.keys()
    for where, rows in ref_rows.items():
        assert fast_rows[where] == rows, where
    paths = TAP_PATHS - before
    # most records took the compiled path; the unsure and the keyed went to the reference
    assert paths["native"] > len(records) / 2
    assert any(p.startswith("python: a ") for p in paths)
    assert (paths["python: an unstamped record with key fields"] > 0) == bool(key_fields)


def test_the_compiled_tap_reads_every_compression_a_producer_may_use(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Records compressed with gzip, snappy, lz4 and zstd are all observed on the compiled
    loop (its librdkafka once lacked zstd: such a topic gave only consume errors)."""
    (topic,) = make_topics("z", partitions=1)
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec})
        for i in range(25):
            producer.produce(topic, orjson.dumps({"codec": codec, "i": i}))
        assert producer.flush(30) == 0
    tap, sink, _ = observed(bootstrap, [topic], f"{uid}-z", True)
    run_tap(tap, 100)
    assert tap.path == "compiled"
    assert tap.stats.records == 100
    assert len(per_record(sink.rows())) == 100


def test_a_setting_the_compiled_loop_cannot_take_puts_the_tap_on_the_reference() -> None:
    """OAuth through OIDC (the crate's librdkafka is built without libcurl, which it needs):
    the tap runs its reference loop and says why, rather than failing."""
    tap = Tap(
        TapSettings("127.0.0.1:9", ("t",), consumer=OIDC),
        TrailTopic(),
    )
    stop = threading.Event()
    stop.set()
    tap.run(stop)
    assert tap.path == "reference"
    assert "OAuth/OIDC depends on libcurl" in tap._reference_why


def test_the_compiled_tap_commits_only_what_its_trail_holds(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The compiled tap commits after its rows are written: the next tap of the group reads
    nothing again, and the committed offsets are the ends of the partitions."""
    (topic,) = make_topics("c", partitions=2)
    produce(bootstrap, topic, corpus(SEED + 1)[:300])
    tap, sink, _ = observed(bootstrap, [topic], f"{uid}-g", True)
    run_tap(tap, 300)
    assert tap.path == "compiled"
    seen = per_record(sink.rows())
    assert len(seen) == 300
    ends = [1 + max(o for (_, p, o) in seen if p == partition) for partition in range(2)]
    assert committed(bootstrap, f"{uid}-g", topic) == ends
    again, sink2, _ = observed(bootstrap, [topic], f"{uid}-g", True)
    produce(bootstrap, topic, corpus(SEED + 2)[:10])
    run_tap(again, 10)
    assert again.stats.records == 10
    assert len(per_record(sink2.rows())) == 10


def test_a_revoked_compiled_tap_writes_its_pending_rows_first(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """When a second tap joins its group, a compiled tap that holds rows it has not written
    writes them before its partitions go, and commits them: the newcomer reads none again."""
    (topic,) = make_topics("r", partitions=2)
    produce(bootstrap, topic, corpus(SEED + 4)[:100])
    group = f"{uid}-r"
    first, sink, _ = observed(bootstrap, [topic], group, True, flush_interval_s=3600.0)
    stop_first = threading.Event()
    thread = threading.Thread(target=first.run, args=(stop_first,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while first.stats.records < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.stats.records == 100
        assert sink.tables == []  # held: no flush for an hour
        second, sink2, _ = observed(bootstrap, [topic], group, True)
        stop_second = threading.Event()
        joined = threading.Thread(target=second.run, args=(stop_second,))
        joined.start()
        try:
            assert second.ready.wait(30)
            assert len(per_record(sink.rows())) == 100  # written on the revoke
            time.sleep(1)
            assert second.stats.records == 0  # committed before the partitions went
        finally:
            stop_second.set()
            joined.join(30)
    finally:
        stop_first.set()
        thread.join(30)
    assert sink2.tables == []


def committed(bootstrap: str, group: str, topic: str) -> list[int]:
    c = Consumer(consumer_config(bootstrap, group))
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
        return [p.offset for p in parts]
    finally:
        c.close()


# -- crash and restart: a child process runs the tap and is killed at a chosen moment --

CHILD = """
import os, sys, threading
from stampline.collectors import Tap, TapSettings, TrailTopic
from stampline.collectors import _tap

bootstrap, topic, group, trail, moment = sys.argv[1:6]
send, commit = _tap.Tap._send, _tap._Compiled.commit
sent = 0

def sending(self):
    global sent
    if moment == "before" and self._pending:
        os.kill(os.getpid(), 9)  # killed before the trail is written
    send(self)
    sent += bool(self._in_flight)
    if moment == "in flight" and sent == 3:
        print(self.in_flight, flush=True)  # segments unacknowledged, and so uncommitted
        os.kill(os.getpid(), 9)

def committing(self, offsets):
    if moment == "after":
        os.kill(os.getpid(), 9)  # killed once the trail acknowledged, before the commit
    commit(self, offsets)

_tap.Tap._send, _tap._Compiled.commit = sending, committing
batch = 20 if moment == "in flight" else 5000  # a segment a batch, several in flight
tap = Tap(TapSettings(bootstrap, (topic,), group_id=group, consume_batch=batch,
                      flush_interval_s=0.0 if moment == "in flight" else 0.2),
          TrailTopic(trail))
tap.run(threading.Event())
"""


def trail_rows(bootstrap: str, trail: str) -> Iterator[dict[str, Any]]:
    """Every row on the trail topic, read committed as the recorder reads it, once its writer
    is gone: assigned, not subscribed (no group join to wait for), until 3 s bring nothing."""
    for r in read_all(bootstrap, trail, idle_s=3.0):
        yield from decode_trail_message(r.value, r.headers)[1].to_pylist()


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_killed_compiled_tap_loses_nothing(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, moment: str
) -> None:
    """A compiled tap killed before its trail write loses nothing, and one killed after the
    write but before the commit reads its records again (at-least-once): once a clean tap
    of the group has run, every record has its sighting on the trail."""
    topic, trail = make_topics("in", "trail", partitions=1)
    produce(bootstrap, topic, corpus(SEED + 3)[:200])
    child = kill_a_tap(bootstrap, topic, f"{uid}-k", trail, moment)
    assert child.returncode == -signal.SIGKILL
    written_before = {r["offset"] for r in trail_rows(bootstrap, trail) if r["topic"] == topic}
    assert written_before == (set(range(200)) if moment == "after" else set())
    tap = Tap(TapSettings(bootstrap, (topic,), group_id=f"{uid}-k"), TrailTopic(trail))
    run_tap(tap, 200)
    assert tap.path == "compiled"
    assert tap.stats.records == 200
    sightings = [r for r in trail_rows(bootstrap, trail) if r["topic"] == topic]
    assert {r["offset"] for r in sightings} == set(range(200))


@pytest.mark.parametrize("reference", [False, True], ids=["compiled", "reference"])
def test_a_tap_killed_with_trail_segments_in_flight_loses_nothing(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, reference: bool
) -> None:
    """A tap killed while trail segments are unacknowledged has committed no offset past
    what the trail holds, and once a clean tap of the group has run, every record has its
    sighting on the trail."""
    topic, trail = make_topics("in", "trail", partitions=1)
    produce(bootstrap, topic, corpus(SEED + 5)[:200])
    group = f"{uid}-f"
    child = kill_a_tap(bootstrap, topic, group, trail, "in flight", reference)
    assert child.returncode == -signal.SIGKILL
    assert int(child.stdout) >= 1  # segments were in flight when it died
    (at_kill,) = Consumer(consumer_config(bootstrap, group)).committed(
        [TopicPartition(topic, 0)], timeout=10
    )
    written_before = {r["offset"] for r in trail_rows(bootstrap, trail) if r["topic"] == topic}
    assert set(range(max(at_kill.offset, 0))) <= written_before  # never committed past the trail
    assert len(written_before) < 200  # killed before it had written them all
    tap = Tap(TapSettings(bootstrap, (topic,), group_id=group), TrailTopic(trail))
    run_tap(tap, 200 - max(at_kill.offset, 0))
    assert tap.stats.records == 200 - max(at_kill.offset, 0)  # exactly the uncommitted again
    sightings = [r for r in trail_rows(bootstrap, trail) if r["topic"] == topic]
    assert {r["offset"] for r in sightings} == set(range(200))


def kill_a_tap(
    bootstrap: str, topic: str, group: str, trail: str, moment: str, reference: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``CHILD``, a tap killed at ``moment``, to its death."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    env["STAMPLINE_TAP_REFERENCE"] = "1" if reference else "0"
    return subprocess.run(
        [sys.executable, "-c", CHILD, bootstrap, topic, group, trail, moment],
        env=env,
        timeout=120,
        check=False,
        capture_output=True,
        text=True,
    )


def test_a_compiled_tap_waiting_for_records_stops_when_told(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """A take waiting for its first record (here for up to an hour) ends once the tap is told
    to stop, and the tap writes and commits what it observed before."""
    (topic,) = make_topics("s", partitions=2)
    produce(bootstrap, topic, corpus(SEED + 5)[:20])
    tap, sink, _ = observed(bootstrap, [topic], f"{uid}-s", True, poll_timeout_s=3600.0)
    run_tap(tap, 20)  # stopped and joined within 30 s, though a take may wait an hour
    assert tap.path == "compiled"
    seen = per_record(sink.rows())
    assert len(seen) == 20
    ends = [
        1 + max((o for (_, p, o) in seen if p == partition), default=-1) for partition in (0, 1)
    ]
    assert committed(bootstrap, f"{uid}-s", topic) == [e if e else -1001 for e in ends]
