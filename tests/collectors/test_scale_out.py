"""Scale-out: two gates in one consumer group share partitions through rebalances."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import orjson
import pytest

from stampline.audit import ChdbStore
from stampline.collectors import GateSettings
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import now_ms, quote
from tests.helpers import GateRun, event_ids, produce, read_all


@pytest.mark.slow
def test_a_second_gate_joining_and_the_first_leaving_loses_and_duplicates_nothing(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Records flowing while a second gate joins the group and the first then leaves are each
    forwarded once and trailed once, and both gates took a share."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=4)
    n = 4000
    records = [(f"k{i}".encode(), orjson.dumps(quote("alpha", i, ts=now_ms()))) for i in range(n)]
    rules = RuleSet.load([rules_file()])

    def settings() -> GateSettings:
        return GateSettings(
            bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g", flush_interval_s=0.2
        )

    def feed() -> None:
        for i in range(0, n, 100):
            produce(bootstrap, raw, records[i : i + 100])
            time.sleep(0.5)

    first = GateRun(settings(), rules, store)
    feeder = threading.Thread(target=feed)
    feeder.start()
    first.wait_for(200)
    second = GateRun(settings(), rules, store)  # rebalance: partitions split between the two
    deadline = time.monotonic() + 60
    while second.gate.stats.events_in == 0:
        assert feeder.is_alive() or second.gate.ready.is_set(), (
            f"fed everything before a join; first took {first.gate.stats.events_in}"
        )
        assert time.monotonic() < deadline, "the second gate never got a partition"
        time.sleep(0.05)
    first.stop()  # rebalance: the second takes every partition
    feeder.join(120)
    deadline = time.monotonic() + 90
    while first.gate.stats.events_in + second.gate.stats.events_in < n:
        assert second.error is None, second.error
        assert time.monotonic() < deadline, "records were not all taken in"
        time.sleep(0.05)
    second.stop()
    forwarded = read_all(bootstrap, clean, n, idle_s=1.0)
    assert len(forwarded) == n
    assert len(set(event_ids(forwarded))) == n
    assert first.gate.stats.events_in + second.gate.stats.events_in == n
    assert first.gate.stats.events_in > 0
    assert second.gate.stats.events_in > 0
    (row,) = store.query("SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.trail")
    assert row == {"n": n, "ids": n}
