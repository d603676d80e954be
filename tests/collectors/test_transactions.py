"""The exactly-once gate: forwards, dead letters and offsets commit in Kafka transactions."""

from __future__ import annotations

import orjson
from confluent_kafka import Consumer, TopicPartition

from stampline.audit import ChdbStore
from stampline.broker import ensure_topics
from stampline.collectors import GateSettings
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import now_ms, quote
from tests.helpers import GateRun, event_ids, produce, read_all


def test_transactional_gate_commits_records_and_offsets_together(
    bootstrap: str, store: ChdbStore, uid: str
) -> None:
    """With delivery=exactly_once the gate forwards and dead-letters through transactions, the
    committed offsets reach the end of the input, and the trail is complete."""
    raw, clean, dlq = (f"{uid}.{n}" for n in ("raw", "clean", "dlq"))
    ensure_topics(bootstrap, [raw, clean, dlq], 1)
    n = 500
    values = [
        b"\xff not json" if i % 50 == 0 else orjson.dumps(quote("alpha", i, ts=now_ms()))
        for i in range(n)
    ]
    produce(bootstrap, raw, [(None, v) for v in values])
    settings = GateSettings(
        bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"{uid}-g",
        delivery="exactly_once",
        # Tansu does not honour transaction markers, and the probe says so (tested below):
        # this test checks the transactional path's function, not its atomicity.
        transaction_probe=False,
        flush_rows=100,
        consume_batch=50,
    )
    run = GateRun(settings, RuleSet.load([rules_file()]), store)
    run.wait_for(n)
    run.stop()
    assert run.gate.stats.flushes >= n // 100
    # Read uncommitted: Tansu shows aborted records to read_committed readers anyway, so the
    # isolation level would prove nothing here.
    forwarded = read_all(bootstrap, clean, n - 10, idle_s=0.5)
    dead = read_all(bootstrap, dlq, 10, idle_s=0.2)
    assert (len(forwarded), len(dead)) == (n - 10, 10)
    assert len(set(event_ids(forwarded) + event_ids(dead))) == n
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{uid}-g"})
    try:
        (tp,) = consumer.committed([TopicPartition(raw, 0)], timeout=10)
    finally:
        consumer.close()
    assert tp.offset == n
    (row,) = store.query(
        "SELECT count() AS n, countIf(outcome = 'dead_lettered') AS dead FROM {db}.trail"
    )
    assert row == {"n": n, "dead": 10}
