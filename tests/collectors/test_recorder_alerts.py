"""The recorder's alerting: the alerts topic into the store exactly once per message (a
re-read by a new consumer group writes nothing twice; unreadable messages become chained
dead letters), and the completeness detector behind a real gate, an SDK stage and a tap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer

from alerting import (
    AlertIntake,
    CompletenessDetector,
    Lifecycle,
    Transition,
    action_record,
    parse_alerts,
    read_history,
    render,
)
from audit import ChdbStore
from collectors import (
    GateSettings,
    Recorder,
    RecorderSettings,
    Tap,
    TapSettings,
    TrailTopic,
    consumer_config,
    producer_config,
    stage,
    take,
)
from rules import RuleSet
from stampline.demo import rules_file
from tests.helpers import GateRun, RecorderRun, produce

S = 1_000_000_000
DEFS = parse_alerts("version: 1\nalerts:\n  - {id: provider.silent, kind: provider_silent}\n")


def transitions() -> list[Transition]:
    """A provider silent from 10 s to 14 s: pending, firing, resolved."""
    life = Lifecycle("provider.silent", "provider_silent", for_ns=1 * S)
    labels = (("provider", "beta"), ("venue", "XLON"))
    t0 = 1_800_000_000 * S
    return [
        *life.observe(labels, t0 + 10 * S, active=True),
        *life.observe(labels, t0 + 11 * S, active=True),
        *life.observe(labels, t0 + 14 * S, active=False),
    ]


def raw_count(store: ChdbStore, table: str) -> int:
    """Rows as stored (no FINAL: a duplicate would show here)."""
    return int(store.query(f"SELECT count() AS n FROM {{db}}.{table}")[0]["n"])


def test_alerts_topic_is_written_once_and_unreadable_messages_are_kept(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Transitions and an action from the alerts topic land in alert_history and
    alert_actions with their source; two unreadable messages become dead letters under
    alerts.format; a new consumer group re-reading the whole topic writes nothing twice."""
    trail, alerts = make_topics("trail", "alerts", partitions=2)
    ts = transitions()
    messages: list[tuple[bytes | None, bytes | None]] = [
        (t.fingerprint.encode(), orjson.dumps(render(DEFS, t, "gate@test").to_json())) for t in ts
    ]
    action = action_record(at_ns=1_800_000_020 * S, action="dismiss", alert_id="provider.silent",
                           fingerprint=ts[0].fingerprint, by="ana", reason="auction",
                           verdict="expected")  # fmt: skip
    messages += [
        (ts[0].fingerprint.encode(), orjson.dumps(action)),
        (b"x", b"{not json"),
        (b"y", orjson.dumps({"type": "transition", "state": "exploded"})),
    ]
    produce(bootstrap, alerts, messages)

    def recorder(group: str) -> RecorderRun:
        settings = RecorderSettings(bootstrap, trail, group_id=group, heads_topic=None,
                                    poll_timeout_s=0.1, alerts_topic=alerts)  # fmt: skip
        return RecorderRun.of(Recorder(settings, store, alerts=AlertIntake(store)), 90.0)

    first = recorder(f"{uid}-rec1")
    s = first.recorder.stats
    first.wait(lambda: (s.alerts_history, s.alerts_actions, s.alerts_rejected) == (3, 1, 2),
               "the alerts topic written")  # fmt: skip
    first.stop()
    rows = read_history(store)
    assert [r["state"] for r in rows] == ["pending", "firing", "resolved"]
    assert [r["at_ns"] for r in rows] == [t.at_ns for t in ts]
    assert {r["labels"]["provider"] for r in rows} == {"beta"}
    srcs = store.query("SELECT src, src_offset FROM {db}.alert_history ORDER BY src_offset")
    assert {r["src"].rsplit("/", 1)[0] for r in srcs} == {alerts}
    (act,) = store.query("SELECT action, verdict, by, src FROM {db}.alert_actions")
    assert (act["action"], act["verdict"], act["by"]) == ("dismiss", "expected", "ana")
    dead = store.query("SELECT rule_id, reason, chain_id FROM {db}.dead_letters ORDER BY reason")
    assert [d["rule_id"] for d in dead] == ["alerts.format", "alerts.format"]
    assert "not JSON" in dead[0]["reason"] or "not JSON" in dead[1]["reason"]
    assert any("state: 'exploded'" in d["reason"] for d in dead)
    assert all(d["chain_id"].startswith(f"{alerts}/") for d in dead)
    counts = (raw_count(store, "alert_history"), raw_count(store, "alert_actions"))

    # Offsets forgotten: a new group reads the whole topic again.
    again = recorder(f"{uid}-rec2")
    s2 = again.recorder.stats
    again.wait(lambda: s2.alerts_skipped == 4, "the re-read")
    again.stop()
    assert (s2.alerts_history, s2.alerts_actions, s2.alerts_rejected) == (0, 0, 0)
    assert (raw_count(store, "alert_history"), raw_count(store, "alert_actions")) == counts
    assert raw_count(store, "dead_letters") == 2
    assert store.verify().ok


def test_intake_writes_only_what_a_table_lacks(store: ChdbStore) -> None:
    """After a crash that left the history written and the action not (two inserts), the
    re-read writes the action alone."""
    ts = transitions()
    src = "alerts/0"
    values = [orjson.dumps(render(DEFS, t).to_json()) for t in ts]
    values.append(orjson.dumps(action_record(at_ns=1, action="snooze", by="ana",
                                             matchers={"provider": "beta"})))  # fmt: skip
    messages = list(enumerate(values))
    AlertIntake(store).write(src, messages[:3])  # the history's insert, then the "crash"
    got = AlertIntake(store).write(src, messages)
    assert (got.history, got.actions, got.skipped) == (0, 1, 3)
    assert (raw_count(store, "alert_history"), raw_count(store, "alert_actions")) == (3, 1)


# ---------------------------------------------------------------------- completeness

COMPLETENESS = """\
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 5s}
  - {provider: beta, venue: XLON, max_gap: 5s}
alerts:
  - id: events.lost
    kind: completeness
    from_stage: gate
    to_stage: enrich
    threshold: 0.001
    grace: 1s
    window: 2s
    for: 1s
"""
STEP_S = 0.05
STEPS = 140  # 7 s of a live feed
PROVIDERS = ("alpha", "beta")
INSTRUMENTS = ("SYM001", "SYM002", "SYM003")


class EnrichStage:
    """A customer's stage written with the SDK: forwards every quote from the clean topic to
    the enriched topic, stamped `enrich`, except the ones ``drop`` names."""

    def __init__(self, bootstrap: str, src: str, dst: str, group: str,
                 drop: Callable[[dict[str, Any]], bool]) -> None:  # fmt: skip
        self.bootstrap, self.src, self.dst, self.group, self.drop = bootstrap, src, dst, group, drop
        self.seen = self.dropped = 0
        self.ready = threading.Event()

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(consumer_config(self.bootstrap, self.group))
        producer = Producer(producer_config(self.bootstrap, {"linger.ms": 1}))
        consumer.subscribe([self.src], on_assign=lambda _c, _p: self.ready.set())
        try:
            while not stop.is_set():
                for msg in take(consumer, 500, 0.05):
                    if msg.error() is not None:
                        continue
                    self.seen += 1
                    if self.drop(orjson.loads(msg.value() or b"{}")):
                        self.dropped += 1
                        continue
                    with stage("enrich", msg, producer=producer) as st:
                        st.forward(self.dst, msg)
                producer.poll(0)
        finally:
            producer.flush(10)
            consumer.close()


def run_pipeline(
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    uid: str,
    drop: Callable[[dict[str, Any]], bool],
) -> tuple[list[Transition], CompletenessDetector, int]:
    """A live feed through gate → enrich (SDK) → tap, the recorder judging completeness;
    returns the transitions, the detector and the number of events dropped."""
    raw, clean, dlq, enriched, trail = make_topics("raw", "clean", "dlq", "enriched", "trail",
                                                   partitions=1)  # fmt: skip
    got: list[Transition] = []
    detector = CompletenessDetector(parse_alerts(COMPLETENESS), got.extend, idle_ns=2 * S)
    settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g",
                            flush_interval_s=0.1)  # fmt: skip
    gate = GateRun(settings, RuleSet.load([rules_file()]), TrailTopic(trail, "gate@test"))
    enrich = EnrichStage(bootstrap, clean, enriched, f"{uid}-e", drop)
    tap = Tap(TapSettings(bootstrap, (enriched,), group_id=f"{uid}-t", flush_interval_s=0.1),
              TrailTopic(trail, "tap@test"))  # fmt: skip
    rec_settings = RecorderSettings(
        bootstrap, trail, group_id=f"{uid}-r", heads_topic=None, poll_timeout_s=0.1
    )
    rec = RecorderRun.of(Recorder(rec_settings, store, observers=[detector]), 90.0)
    stop = threading.Event()
    threads = [threading.Thread(target=w, args=(stop,), daemon=True) for w in (enrich.run, tap.run)]
    for t in threads:
        t.start()
    try:
        assert gate.gate.ready.wait(60)
        assert enrich.ready.wait(60)
        assert tap.ready.wait(60)
        assert rec.recorder.ready.wait(60)
        producer = Producer(producer_config(bootstrap, {"linger.ms": 1}))
        sent = 0
        for step in range(STEPS):
            started = time.monotonic()
            now_ms = int(time.time() * 1000)
            for p in PROVIDERS:
                for i in INSTRUMENTS:
                    quote = {"provider": p, "instrument": i, "seq": step, "ts": now_ms,
                             "type": "quote", "price": 100.5, "quantity": 100}  # fmt: skip
                    producer.produce(raw, orjson.dumps(quote), f"{p}/{i}".encode())
                    sent += 1
            producer.poll(0)
            time.sleep(max(0.0, STEP_S - (time.monotonic() - started)))
        assert producer.flush(30) == 0
        gate.wait_for(sent)
        # Everything judged: the stages go idle after the feed, so the rest is final.
        rec.wait(lambda: detector.pairs[0].judged_total == sent and detector.pending == 0,
                 "every event judged")  # fmt: skip
        rec.wait(lambda: not any(life.instances for _d, life in detector.pairs[0].definitions),
                 "open alerts to resolve")  # fmt: skip
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        gate.stop()
        rec.stop()
    assert rec.recorder.stats.observer_errors == 0
    assert detector.errors == 0
    return got, detector, enrich.dropped


@pytest.mark.slow
def test_events_dropped_between_stages_raise_one_alert_with_their_count(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The SDK stage drops alpha's quotes of 4 steps (12 events): the recorder raises one
    completeness alert for alpha, gate → enrich, with lost=12, and resolves it."""
    got, detector, dropped = run_pipeline(
        bootstrap, store, make_topics, uid,
        lambda q: q["provider"] == "alpha" and 40 <= q["seq"] < 44,
    )  # fmt: skip
    assert dropped == 12
    assert detector.pairs[0].lost_total == 12
    labels = (("from_stage", "gate"), ("provider", "alpha"), ("to_stage", "enrich"),
              ("venue", "XLON"))  # fmt: skip
    assert [(t.state, t.labels) for t in got] == [
        ("pending", labels),
        ("firing", labels),
        ("resolved", labels),
    ]
    firing = got[1]
    assert (firing.figures["lost"], firing.alert_id) == (12, "events.lost")


@pytest.mark.slow
def test_a_clean_pipeline_raises_no_completeness_alert(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The same live feed with nothing dropped: every event judged, none lost, no alert."""
    got, detector, dropped = run_pipeline(bootstrap, store, make_topics, uid, lambda _q: False)
    assert dropped == 0
    assert detector.pairs[0].lost_total == 0
    assert got == []
