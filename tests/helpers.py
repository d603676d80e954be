"""Helpers for tests that talk to the real broker: produce records, read a topic back whole;
and for tests that watch processes (Linux /proc)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from stampline.alerting import BatchObserver
from stampline.audit import ChdbStore, StoreError
from stampline.collectors import (
    Gate,
    GateSettings,
    Recorder,
    RecorderSettings,
    SidecarMetrics,
    TrailSink,
    TrailTopic,
)
from stampline.rules import RuleSet

Header = tuple[str, bytes | None]


@dataclass(frozen=True)
class Record:
    """A record as read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    timestamp_ms: int

    def header(self, name: str) -> bytes | None:
        """The first value of header ``name`` (None when absent)."""
        return next((v for k, v in self.headers if k == name), None)

    def header_all(self, name: str) -> list[bytes | None]:
        return [v for k, v in self.headers if k == name]


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[
        tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, list[Header]]
    ],
    partition: int | None = None,
    extra: dict[str, Any] | None = None,
) -> list[tuple[int, int]]:
    """Produce ``records`` (key, value[, headers]) and return each one's (partition, offset);
    ``extra``: more producer settings (TLS, say)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 1,
            "message.max.bytes": 20_000_000,
            **(extra or {}),
        }
    )
    where: list[tuple[int, int] | None] = []

    def delivered(i: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            assert err is None, f"produce failed: {err}"
            where[i] = (msg.partition(), msg.offset())

        return cb

    for i, rec in enumerate(records):
        where.append(None)
        key, value, *rest = rec
        kwargs: dict[str, Any] = {"headers": rest[0]} if rest else {}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, value, key, on_delivery=delivered(i), **kwargs)
    assert producer.flush(30) == 0, "records still in flight after 30 s"
    assert all(w is not None for w in where)
    return [w for w in where if w is not None]


def read_all(
    bootstrap: str,
    topic: str,
    expect: int = 0,
    idle_s: float = 1.0,
    extra: dict[str, Any] | None = None,
) -> list[Record]:
    """Every record in ``topic``, in (partition, offset) order, read with assign() (no group).

    Reads until at least ``expect`` records arrived and then nothing more for ``idle_s``, so
    duplicates beyond ``expect`` are caught too. Watermarks are not used: Tansu reports a
    partition's high watermark as its count of record batches, not the next offset.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            **(extra or {}),
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out: list[Record] = []
        deadline = time.monotonic() + 30
        last = time.monotonic()
        while len(out) < expect or time.monotonic() - last < idle_s:
            assert time.monotonic() < deadline, f"read {len(out)} of {expect} records from {topic}"
            for m in consumer.consume(1000, 0.1):
                assert m.error() is None, m.error()
                out.append(
                    Record(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        list(m.headers() or []),
                        m.timestamp()[1],
                    )
                )
                last = time.monotonic()
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


class GateRun:
    """A gate running in a thread, stopped (flushed, committed) by :meth:`stop`."""

    def __init__(
        self,
        settings: GateSettings,
        rules: RuleSet,
        trail: TrailSink | TrailTopic,
        metrics: SidecarMetrics | None = None,
        detectors: BatchObserver | None = None,
    ) -> None:
        self.gate = Gate(settings, rules, trail, metrics, detectors)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._body, daemon=True)
        self.thread.start()

    def _body(self) -> None:
        try:
            self.gate.run(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def wait_for(self, events: int, timeout_s: float = 60.0) -> None:
        """Block until the gate has taken in ``events`` records."""
        deadline = time.monotonic() + timeout_s
        while self.gate.stats.events_in < events:
            assert self.error is None, f"gate failed: {self.error!r}"
            assert time.monotonic() < deadline, (
                f"gate took in {self.gate.stats.events_in} of {events} records in {timeout_s} s"
            )
            time.sleep(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "gate did not stop within 60 s"
        assert self.error is None, f"gate failed: {self.error!r}"


def event_ids(records: Iterable[Record]) -> list[str]:
    """The stamped event id of each record (``""`` where there is none)."""
    return [(r.header("stampline.event_id") or b"").decode() for r in records]


def read_committed(
    bootstrap: str, topic: str, expect: int = 0, idle_s: float = 1.0
) -> list[Record]:
    """Like :func:`read_all`, as a ``read_committed`` consumer sees the topic."""
    return read_all(bootstrap, topic, expect, idle_s, {"isolation.level": "read_committed"})


class RecorderRun:
    """A recorder running in a thread, stopped by :meth:`stop`."""

    def __init__(self, settings: RecorderSettings, store: Any, metrics: Any = None) -> None:
        self._start(Recorder(settings, store, metrics), 60.0)

    @classmethod
    def of(cls, recorder: Recorder, wait_s: float = 60.0) -> RecorderRun:
        """Run an already built recorder (with alerting parts, observers, …)."""
        run = cls.__new__(cls)
        run._start(recorder, wait_s)
        return run

    def _start(self, recorder: Recorder, wait_s: float) -> None:
        self.recorder = recorder
        self.wait_s = wait_s  # how long :meth:`wait` waits unless told
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._body, daemon=True)
        self.thread.start()

    def _body(self) -> None:
        try:
            self.recorder.run(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def wait(self, done: Callable[[], bool], what: str, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (self.wait_s if timeout_s is None else timeout_s)
        while not done():
            assert self.error is None, f"recorder failed: {self.error!r}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "recorder did not stop within 60 s"
        assert self.error is None, f"recorder failed: {self.error!r}"


def record_until(
    bootstrap: str, trail_topic: str, store: Any, group: str, done: Callable[[], bool]
) -> RecorderRun:
    """Run a recorder on ``trail_topic`` into ``store`` until ``done()``, then stop it."""
    run = RecorderRun(
        RecorderSettings(
            bootstrap, trail_topic, group_id=group, heads_topic=None, poll_timeout_s=0.1
        ),
        store,
    )
    run.wait(done, f"the recorder to write {trail_topic}")
    run.stop()
    return run


def drop_database(store: ChdbStore) -> None:
    """Drop ``store``'s database, reopening the folder if the test closed the store.

    Opening a chDB session attaches every database in its folder: with each test's database
    kept, opening a store took 0.6 s in an empty folder and 5.4 s after 120 tests, which
    made up most of the suite's time."""
    sql = f"DROP DATABASE IF EXISTS {store.database} SYNC"
    try:
        store._execute(sql)
    except StoreError:  # closed by the test, e.g. to let another process open the folder
        with ChdbStore(store.path, store.database, migrate=False) as again:
            again._execute(sql)


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs: a zombie (exited, not yet reaped) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children_of(pid: int) -> dict[int, str]:
    """The running processes whose parent is ``pid``, with their command lines (read from
    every /proc/<pid>/stat: kernels without CONFIG_PROC_CHILDREN lack
    /proc/<pid>/task/*/children)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited meanwhile
            continue
        if int(ppid) == pid and state not in ("Z", "X"):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def wait_gone(pids: dict[int, str], timeout_s: float = 30) -> None:
    """Wait until none of ``pids`` runs; fail naming those left after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while left := [f"{pid} {cmd}" for pid, cmd in pids.items() if running(pid)]:
        assert time.monotonic() < deadline, f"still running after {timeout_s:g} s: {left}"
        time.sleep(0.1)
