"""The gate's trail survives re-reading, and a stop makes pending work durable."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from confluent_kafka import Consumer, TopicPartition

from stampline.audit import ChdbStore
from stampline.collectors import H_EVENT_ID, GateSettings
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import now_ms, quote
from tests.helpers import GateRun, produce, read_all


def _feed(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), orjson.dumps(quote("alpha", i, ts=now_ms()))) for i in range(n)]


def test_reprocessing_the_same_records_does_not_duplicate_the_trail(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Two gates reading the same records (as after a crash) give the same ids and one row each."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq")
    produce(bootstrap, raw, _feed(40))
    rules = RuleSet.load([rules_file()])
    for attempt in ("first", "replayed"):
        run = GateRun(
            GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-{attempt}"), rules, store
        )
        run.wait_for(40)
        run.stop()
    forwarded = read_all(bootstrap, clean, 80)
    ids = [r.header(H_EVENT_ID) for r in forwarded]
    assert len(ids) == 80
    assert len(set(ids)) == 40, "each record keeps one id across both reads"
    (row,) = store.query(
        "SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.trail WHERE stage = 'gate'"
    )
    assert row == {"n": 40, "ids": 40}


def test_stop_writes_pending_rows_and_commits(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Rows held back by a long flush interval are written, and offsets committed, on stop."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    produce(bootstrap, raw, _feed(25))
    settings = GateSettings(
        bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"{uid}-g",
        flush_rows=1_000_000,
        flush_interval_s=3600,
    )
    run = GateRun(settings, RuleSet.load([rules_file()]), store)
    run.wait_for(25)
    (before,) = store.query("SELECT count() AS n FROM {db}.observations")
    assert before["n"] == 0, "nothing is written before the flush is due"
    run.stop()
    (after,) = store.query("SELECT count() AS n FROM {db}.observations")
    assert after["n"] == 25
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{uid}-g"})
    try:
        (tp,) = consumer.committed([TopicPartition(raw, 0)], timeout=10)
        assert tp.offset == 25
    finally:
        consumer.close()
