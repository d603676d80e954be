"""The trail topic and the recorder: gate and tap produce trail messages, the recorder writes
the store exactly once per message, per-partition chains, retries, never drops."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Producer

from stampline.audit import (
    ChdbStore,
    DeadLetter,
    StoreError,
    dead_letter_table,
    encode_trail_messages,
    generate_key,
    load_public_key,
)
from stampline.collectors import (
    GateSettings,
    RecorderMetrics,
    RecorderSettings,
    Tap,
    TapSettings,
    TrailTopic,
    read_heads,
)
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import now_ms, quote
from tests.collectors.trailmsgs import message, observations, send
from tests.helpers import GateRun, RecorderRun, event_ids, produce, read_all, read_committed

T0 = 1_750_000_000_000_000_000  # ns


def rows(store: ChdbStore, sql: str) -> dict[str, Any]:
    (row,) = store.query(sql)
    return row


def _feed(n: int, bad_every: int) -> list[tuple[bytes | None, bytes | None]]:
    return [
        (None, b"{broken" if i % bad_every == 0 else orjson.dumps(quote("alpha", i, ts=now_ms())))
        for i in range(n)
    ]


@pytest.fixture
def recorder_settings(bootstrap: str, uid: str) -> Callable[..., RecorderSettings]:
    def make(trail: str, **over: Any) -> RecorderSettings:
        base: dict[str, Any] = {
            "trail_topic": trail,
            "group_id": f"{uid}-rec",
            "heads_topic": None,
            "poll_timeout_s": 0.1,
        }
        return RecorderSettings(bootstrap, **{**base, **over})

    return make


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_gate_trail_goes_through_the_topic_and_the_recorder_writes_it_once(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    uid: str,
    recorder_settings: Callable[..., RecorderSettings],
    delivery: str,
) -> None:
    """The gate writes no store: its trail rows and dead letters reach the trail topic, and the
    recorder writes each event once, one chain per trail partition, verifiable."""
    raw, clean, dlq, trail = make_topics("raw", "clean", "dlq", "trail", partitions=2)
    n, bad_every = 1200, 50
    bad = len(range(0, n, bad_every))
    produce(bootstrap, raw, _feed(n, bad_every))
    settings = GateSettings(
        bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"{uid}-g",
        delivery=delivery,  # type: ignore[arg-type]
        # Tansu does not honour transaction markers, and the probe says so (tested in
        # test_hostile.py): here the transactional path's function is checked, not atomicity.
        transaction_probe=False,
        flush_rows=200,
        consume_batch=100,
    )
    gate = GateRun(settings, RuleSet.load([rules_file()]), TrailTopic(trail, "gate@test"))
    gate.wait_for(n)
    gate.stop()
    messages = read_committed(bootstrap, trail, 1, idle_s=0.5)
    kinds = {dict(m.headers)["stampline.trail.kind"] for m in messages}
    assert kinds == {b"observations", b"dead_letters"}
    assert rows(store, "SELECT count() AS n FROM {db}.observations")["n"] == 0
    rec = RecorderRun(recorder_settings(trail), store)
    rec.wait(lambda: rec.recorder.stats.messages >= len(messages), "the recorder")
    rec.stop()
    got = rows(
        store,
        "SELECT count() AS n, uniqExact(event_id) AS ids, "
        "countIf(outcome = 'dead_lettered') AS dead FROM {db}.trail",
    )
    assert got == {"n": n, "ids": n, "dead": bad}
    assert rows(store, "SELECT count() AS n FROM {db}.dead_letters")["n"] == bad
    forwarded = read_committed(bootstrap, clean, n - bad, idle_s=0.3)
    dead_ids = set(event_ids(read_committed(bootstrap, dlq, bad, idle_s=0.3)))
    trail_dead = {
        r["id"] for r in store.query("SELECT toString(event_id) AS id FROM {db}.dead_letters")
    }
    assert trail_dead == dead_ids
    assert len(forwarded) == n - bad
    report = store.verify()
    assert report.ok, report.findings
    assert set(report.heads) <= {f"{trail}/0", f"{trail}/1"}
    # Consecutive messages share an entry (one per kind and group): never more than messages.
    assert 2 <= report.batches <= len(messages)
    assert rec.recorder.stats.messages == len(messages)


def test_a_reread_trail_is_skipped_not_written_twice(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    uid: str,
    recorder_settings: Callable[..., RecorderSettings],
) -> None:
    """A second recorder group reading the whole trail again writes nothing: every message is
    found already written by its partition's chain (a crash before the commit looks the same)."""
    (trail,) = make_topics("trail", partitions=2)
    producer = Producer({"bootstrap.servers": bootstrap})
    table = _obs_table(300)
    for m in encode_trail_messages("observations", table, "t", max_bytes=20_000):
        producer.produce(trail, m.value, b"k", headers=m.headers)
    assert producer.flush(10) == 0
    sent = len(read_all(bootstrap, trail, 1, idle_s=0.3))
    first = RecorderRun(recorder_settings(trail), store)
    first.wait(lambda: first.recorder.stats.messages >= sent, "the first recorder")
    first.stop()
    again = RecorderRun(recorder_settings(trail, group_id=f"{uid}-again"), store)
    again.wait(lambda: again.recorder.stats.skipped >= sent, "the second recorder")
    again.stop()
    assert again.recorder.stats.messages == 0
    assert rows(store, "SELECT count() AS n FROM {db}.observations")["n"] == 300
    assert store.verify().ok


def _obs_table(n: int) -> pa.Table:
    from stampline.audit import Observation, canonical_table

    t0 = now_ms() * 1_000_000
    return canonical_table(
        [
            Observation(f"0190c6d8-0000-7000-8000-{i:012x}", "gate", t0 + i, t0 + i + 9, t0, t0, 1)
            for i in range(n)
        ]
    )


# How long the store stays down: well past the gate's old store retry limit (set to a quarter
# of it), kept short so the test stays fast; the recorder has no such limit at all.
OUTAGE_S = 4.0


class FlakyStore:
    """The real chDB store behind a switch: while ``down`` is set every call fails as an
    unreachable server would (ClickHouse itself cannot run on this machine)."""

    def __init__(self, store: ChdbStore) -> None:
        self.store = store
        self.down = threading.Event()
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set():
                self.failures += 1
                raise StoreError("ClickHouse query failed: connection refused (store is down)")
            return attr(*args, **kwargs)

        return call


def test_a_store_outage_makes_the_recorder_lag_and_retry_then_catch_up_losing_nothing(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    uid: str,
    recorder_settings: Callable[..., RecorderSettings],
) -> None:
    """While the store is down -- longer than the gate's own store retry limit, which used to
    pause and then stop it -- the gate keeps forwarding and never pauses (it never waits on
    the store), the recorder retries, lags and says so; once the store is back every row is
    written once."""
    raw, clean, dlq, trail = make_topics("raw", "clean", "dlq", "trail", partitions=1)
    flaky = FlakyStore(store)
    flaky.down.set()
    metrics = RecorderMetrics()
    rec = RecorderRun(recorder_settings(trail, retry_max_s=0.3), flaky, metrics)
    n = 600
    produce(bootstrap, raw, _feed(n, 1000))  # record 0 is bad: dead-lettered
    gate = GateRun(
        GateSettings(
            bootstrap,
            (raw,),
            clean,
            dlq,
            group_id=f"{uid}-g",
            flush_rows=100,
            store_retry_s=OUTAGE_S / 4,  # the old give-up time, scaled down with the outage
        ),
        RuleSet.load([rules_file()]),
        TrailTopic(trail, "gate"),
    )
    gate.wait_for(n)
    assert len(read_committed(bootstrap, clean, n - 1, idle_s=0.3)) == n - 1
    rec.wait(lambda: flaky.failures >= 3, "the recorder to retry")
    down_since = time.monotonic()
    while time.monotonic() - down_since < OUTAGE_S:  # the store stays down this long
        assert gate.error is None
        time.sleep(0.1)
    lag = metrics.registry.get_sample_value("stampline_trail_lag_seconds", {"partition": "0"})
    assert lag is not None
    assert lag >= 1.0, "the lag gauge should show how far behind the recorder is"
    assert rec.recorder.stats.messages == 0
    assert (gate.gate.stats.pauses, gate.gate.paused) == (0, False), "the gate waited"
    gate.stop()
    flaky.down.clear()
    rec.wait(
        lambda: rows(store, "SELECT count() AS n FROM {db}.observations")["n"] >= n,
        "the recorder to catch up",
    )
    rec.wait(lambda: rec.recorder.stats.lag_s == 0.0, "the lag to return to zero")
    rec.stop()
    assert rows(store, "SELECT count() AS n, uniqExact(event_id) AS u FROM {db}.trail") == {
        "n": n,
        "u": n,
    }
    assert rows(store, "SELECT count() AS n FROM {db}.observations")["n"] == n
    assert rec.recorder.stats.retries >= 3
    assert store.verify().ok


def test_an_unreadable_trail_message_becomes_a_trail_dead_letter(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    recorder_settings: Callable[..., RecorderSettings],
) -> None:
    """A message that is not a trail message is kept, chained, as a dead letter of the trail
    with the reason, and the messages after it are still written."""
    (trail,) = make_topics("trail", partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(trail, b"not arrow", headers=[("stampline.trail.version", b"1")])
    (good,) = encode_trail_messages("observations", _obs_table(5), "t")
    producer.produce(trail, good.value, headers=good.headers)
    assert producer.flush(10) == 0
    rec = RecorderRun(recorder_settings(trail), store)
    rec.wait(lambda: rec.recorder.stats.messages >= 2, "the recorder")
    rec.stop()
    (dl,) = store.query("SELECT rule_id, reason, offset FROM {db}.dead_letters")
    assert dl["rule_id"] == "trail.format"
    assert "unknown trail kind" in dl["reason"]
    assert dl["offset"] == 0
    assert rows(store, "SELECT count() AS n FROM {db}.observations")["n"] == 5
    assert store.verify().ok


def test_tap_sends_its_sightings_to_the_trail_topic(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    uid: str,
    recorder_settings: Callable[..., RecorderSettings],
) -> None:
    """A tap given the trail topic produces its sightings there (never to what it observes),
    and the recorder writes them."""
    observed, trail = make_topics("observed", "trail", partitions=1)
    produce(bootstrap, observed, [(None, b'{"a": %d}' % i) for i in range(40)])
    tap = Tap(TapSettings(bootstrap, (observed,), group_id=f"{uid}-tap"), TrailTopic(trail, "tap"))
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while tap.stats.records < 40:
        assert time.monotonic() < deadline, "the tap saw too little"
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    assert len(read_all(bootstrap, observed, 40, idle_s=0.3)) == 40
    rec = RecorderRun(recorder_settings(trail), store)
    rec.wait(
        lambda: rows(store, "SELECT count() AS n FROM {db}.observations")["n"] >= 40, "recorder"
    )
    rec.stop()
    assert (
        rows(store, f"SELECT count() AS n FROM {{db}}.trail WHERE stage = 'tap:{observed}'")["n"]
        == 40
    )


def test_chain_heads_are_published_signed_and_verify_the_store(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    recorder_settings: Callable[..., RecorderSettings],
    tmp_path: Path,
) -> None:
    """The recorder publishes each chain's head, with its length and the chains it owns,
    signed with its key; every published head verifies the store under the public key."""
    key = tmp_path / "heads.key"
    generate_key(key, tmp_path / "heads.key.pub")
    trail, heads = make_topics("trail", "heads", partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for m in encode_trail_messages("observations", _obs_table(50), "t", max_bytes=5000):
        producer.produce(trail, m.value, headers=m.headers)
    assert producer.flush(10) == 0
    settings = recorder_settings(trail, heads_topic=heads, heads_interval_s=0.2, signing_key=key)
    rec = RecorderRun(settings, store)
    rec.wait(lambda: rec.recorder.stats.rows >= 50, "the recorder")
    rec.stop()
    published = read_heads(bootstrap, heads, timeout_s=1.0)
    last = published[-1]
    chain = store.chain_head(f"{trail}/0")
    assert (last.chain, last.seq, last.head) == (chain.chain_id, chain.seq, chain.chain)
    assert dict(last.chains) == {chain.chain_id: chain.seq}
    report = store.verify(
        published=published, public_key=load_public_key(tmp_path / "heads.key.pub")
    )
    assert report.ok, report.findings
    assert report.published_heads == len(published) >= 1


def test_an_insert_never_holds_more_than_max_batch_rows(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    store: ChdbStore,
    recorder_settings: Callable[..., RecorderSettings],
) -> None:
    """Consecutive messages are combined into one insert only up to ``max_batch_rows``."""
    (trail,) = make_topics("trail", partitions=1)
    send(bootstrap, trail, 0, [message("observations", observations(10, 0, i)) for i in range(6)])
    run = RecorderRun(recorder_settings(trail, max_batch_rows=25), store)
    try:
        run.wait(
            lambda: rows(store, "SELECT count() AS n FROM {db}.observations")["n"] >= 60, "rows"
        )
    finally:
        run.stop()
    entries = store.query("SELECT rows FROM {db}.ledger ORDER BY seq")
    assert sum(e["rows"] for e in entries) == 60
    assert max(e["rows"] for e in entries) <= 25, entries


def test_warnings_are_counted_apart_from_dead_letters(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    recorder_settings: Callable[..., RecorderSettings],
) -> None:
    """A trail message of 3 dead letters and 5 warn verdicts counts 3 dead letters and 5
    warnings, as the store keeps them."""
    (trail,) = make_topics("trail", partitions=1)
    verdicts = [
        DeadLetter(
            str(uuid.uuid4()), T0 + i, "md.raw", 0, i, "alpha", "r.x", 1, "bad", b"{}",
            severity="reject" if i < 3 else "warn",
        )
        for i in range(8)
    ]  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap})
    for m in encode_trail_messages("dead_letters", dead_letter_table(verdicts), "t"):
        producer.produce(trail, m.value, b"k", headers=m.headers)
    assert producer.flush(10) == 0
    rec = RecorderRun(recorder_settings(trail), store)
    rec.wait(lambda: rec.recorder.stats.messages >= 1, "the recorder")
    rec.stop()
    stats = rec.recorder.stats
    assert (stats.dead_letters, stats.warnings) == (3, 5)
    stored = rows(store, "SELECT (SELECT count() FROM {db}.dead_letters) AS d, "
                  "(SELECT count() FROM {db}.warnings) AS w")  # fmt: skip
    assert stored == {"d": 3, "w": 5}
