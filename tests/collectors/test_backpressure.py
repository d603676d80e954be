"""Backpressure: a stalled store pauses the gate's partitions, bounds its queues, loses nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import orjson

from stampline.audit import ChdbStore, DeadLetter, Observation
from stampline.collectors import GateSettings, TrailTopic
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import now_ms, quote
from tests.helpers import GateRun, event_ids, produce, read_all


class StalledStore:
    """The real chDB store, slowed: every write waits until ``flowing`` is set."""

    def __init__(self, store: ChdbStore) -> None:
        self.store = store
        self.flowing = threading.Event()
        self.blocked_writes = 0

    def _wait(self) -> None:
        if not self.flowing.is_set():
            self.blocked_writes += 1
        self.flowing.wait()

    def write_observations(self, rows: Sequence[Observation]) -> None:
        self._wait()
        self.store.write_observations(rows)

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        self._wait()
        self.store.write_dead_letters(rows)


def test_a_stalled_store_pauses_consumption_with_bounded_queues_and_loses_nothing(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """While the store blocks, the gate pauses its partitions and its queues stay within their
    bound; once the store recovers it resumes, and every record is forwarded and trailed once."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=2)
    n = 3000
    bad = set(range(0, n, 100))
    produce(
        bootstrap,
        raw,
        [
            (None, b"{not json" if i in bad else orjson.dumps(quote("alpha", i, ts=now_ms())))
            for i in range(n)
        ],
    )
    slow = StalledStore(store)
    bound = 2
    settings = GateSettings(
        bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"{uid}-g",
        consume_batch=50,
        flush_rows=50,
        queue_batches=bound,
    )
    run = GateRun(settings, RuleSet.load([rules_file()]), slow)
    deadline = time.monotonic() + 60
    while not run.gate.paused:
        assert run.error is None, run.error
        assert time.monotonic() < deadline, "the gate never paused while the store was stalled"
        time.sleep(0.02)
    taken = run.gate.stats.events_in
    time.sleep(1.0)  # paused: nothing more is taken in while the store stays blocked
    assert run.gate.stats.events_in == taken
    assert taken < n
    assert slow.blocked_writes >= 1
    (rows,) = store.query("SELECT count() AS n FROM {db}.observations")
    assert rows["n"] == 0
    slow.flowing.set()
    run.wait_for(n)
    run.stop()
    assert run.gate.stats.pauses >= 1
    assert not run.gate.paused
    assert max(run.gate.stats.max_queue_depth.values()) <= bound
    forwarded = read_all(bootstrap, clean, n - len(bad), idle_s=0.5)
    dead = read_all(bootstrap, dlq, len(bad), idle_s=0.2)
    ids = event_ids(forwarded) + event_ids(dead)
    assert (len(forwarded), len(dead)) == (n - len(bad), len(bad))
    assert len(set(ids)) == n
    (row,) = store.query("SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.trail")
    assert row == {"n": n, "ids": n}


def test_a_busy_evaluator_joins_the_batches_waiting_for_it_up_to_consume_batch() -> None:
    """Small fetches that queued up while the evaluator worked are judged as one batch (the
    per-batch cost is paid once) until they reach ``consume_batch`` records, and a flush or stop
    queued behind them comes after them, in order."""
    from stampline.collectors._gate import Gate, _Flush
    from stampline.collectors._source import Taken

    def chunk(*offsets: int) -> Taken:
        n = len(offsets)
        return Taken([b"{}"] * n, [None] * n, ["raw"] * n, [0] * n, list(offsets),
                     [1] * n, [0] * n, [None] * n)  # fmt: skip

    def offsets(taken: Taken | None) -> list[int]:
        return taken.offsets if taken is not None else []

    settings = GateSettings(
        "127.0.0.1:1", ("raw",), "clean", "dlq", consume_batch=10, queue_batches=8
    )
    gate = Gate(settings, RuleSet.load([rules_file()]), TrailTopic())  # never run: no broker
    for batch in ([1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11, 12], [13]):
        gate._q_in.put(chunk(*batch))
    taken, control = gate._next_batch()
    assert (offsets(taken), control) == (list(range(1, 11)), False)  # reached 10: stop joining
    assert taken is not None
    assert len(taken) == 10 == len(taken.values) == len(taken.headers)
    marker = _Flush()
    gate._q_in.put(marker)
    taken, control = gate._next_batch()
    assert (offsets(taken), control) == ([11, 12, 13], marker)
    gate._q_in.put(None)
    taken, control = gate._next_batch()
    assert (offsets(taken), control) == ([], None)
