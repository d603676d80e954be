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

from stampline.alerting import (
    AlertIntake,
    CompletenessDetector,
    Dispatcher,
    Lifecycle,
    Transition,
    action_record,
    parse_alerts,
    read_history,
    render,
)
from stampline.audit import ChdbStore
from stampline.collectors import (
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
from stampline.demo import rules_file
from stampline.rules import RuleSet
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


def send_quotes(
    producer: Producer, raw: str, steps: range, providers: tuple[str, ...] = PROVIDERS
) -> int:
    """One quote per provider and instrument every STEP_S, ``seq`` = the step, all
    acknowledged; returns how many were sent."""
    sent = 0
    for step in steps:
        started = time.monotonic()
        now_ms = int(time.time() * 1000)
        for p in providers:
            for i in INSTRUMENTS:
                quote = {"provider": p, "instrument": i, "seq": step, "ts": now_ms,
                         "type": "quote", "price": 100.5, "quantity": 100}  # fmt: skip
                producer.produce(raw, orjson.dumps(quote), f"{p}/{i}".encode())
                sent += 1
        producer.poll(0)
        time.sleep(max(0.0, STEP_S - (time.monotonic() - started)))
    assert producer.flush(30) == 0
    return sent


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
        sent = send_quotes(producer, raw, range(STEPS))
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


# ---------------------------------------------------------------------- completeness restarts

# A window much longer than a recorder's restart: the trail's times jump by the restart when
# the feed pauses for it, and the lost fraction is sampled over the window.
RESTART_DEFS = COMPLETENESS.replace("window: 2s", "window: 30s")
ALPHA = (("from_stage", "gate"), ("provider", "alpha"), ("to_stage", "enrich"),
         ("venue", "XLON"))  # fmt: skip


class Restarts:
    """gate → enrich (SDK) → tap, and recorders started and stopped one after the other on
    the same store, trail topic and consumer group, each with its own completeness detector
    delivering to the alerts topic (which the recorder writes into the alert history), as
    `stampline recorder` runs with `alerting.topic`."""

    def __init__(self, bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]],
                 uid: str) -> None:  # fmt: skip
        self.bootstrap, self.store, self.uid = bootstrap, store, uid
        raw, clean, dlq, enriched, self.trail, self.alerts = make_topics(
            "raw", "clean", "dlq", "enriched", "trail", "alerts", partitions=1
        )
        self.raw = raw
        self.lost_steps: set[int] = set()  # alpha's quotes of these steps never reach enrich
        self.stop_event = threading.Event()
        settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g",
                                flush_interval_s=0.1)  # fmt: skip
        trail = TrailTopic(self.trail, "gate@test")
        self.gate = GateRun(settings, RuleSet.load([rules_file()]), trail)
        self.enrich = EnrichStage(
            bootstrap, clean, enriched, f"{uid}-e",
            lambda q: q["provider"] == "alpha" and q["seq"] in self.lost_steps,
        )  # fmt: skip
        tap = TapSettings(bootstrap, (enriched,), group_id=f"{uid}-t", flush_interval_s=0.1)
        self.tap = Tap(tap, TrailTopic(self.trail, "tap@test"))
        self.threads = [threading.Thread(target=w, args=(self.stop_event,), daemon=True)
                        for w in (self.enrich.run, self.tap.run)]  # fmt: skip
        for t in self.threads:
            t.start()
        self.producer = Producer(producer_config(bootstrap, {"linger.ms": 1}))
        self.sent = 0
        self.dispatchers: list[Dispatcher] = []
        assert self.gate.gate.ready.wait(60)
        assert self.enrich.ready.wait(60)
        assert self.tap.ready.wait(60)

    def recorder(self, idle_s: float) -> tuple[RecorderRun, CompletenessDetector, list[Transition]]:
        """A recorder (seeded from the store as it starts), its detector and what it raised."""
        defs = parse_alerts(RESTART_DEFS)
        producer = Producer(producer_config(self.bootstrap, {"linger.ms": 1}))
        dispatcher = Dispatcher(defs, topic=(producer, self.alerts), source="recorder@test")
        self.dispatchers.append(dispatcher)
        got: list[Transition] = []

        def deliver(ts: list[Transition]) -> None:
            got.extend(ts)
            dispatcher(ts)

        detector = CompletenessDetector(defs, deliver, idle_ns=int(idle_s * S))
        settings = RecorderSettings(self.bootstrap, self.trail, group_id=f"{self.uid}-r",
                                    heads_topic=None, poll_timeout_s=0.1,
                                    alerts_topic=self.alerts)  # fmt: skip
        recorder = Recorder(settings, self.store, alerts=AlertIntake(self.store),
                            observers=[detector])  # fmt: skip
        run = RecorderRun.of(recorder, 90.0)
        assert recorder.ready.wait(60)
        return run, detector, got

    def stop_recorder(self, run: RecorderRun) -> None:
        """Stop a recorder the way `stampline recorder` stops: its alerts delivered, then
        the recorder stopped (with the alerts topic written up to them)."""
        assert self.dispatchers[-1].flush(30)
        run.stop()
        assert run.recorder.stats.observer_errors == 0

    def send(self, steps: range, providers: tuple[str, ...] = PROVIDERS) -> None:
        self.sent += send_quotes(self.producer, self.raw, steps, providers)

    def close(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        self.gate.stop()
        for d in self.dispatchers:
            d.close()


def history_of(store: ChdbStore, state: str) -> list[dict[str, Any]]:
    return [r for r in read_history(store, alert_id="events.lost") if r["state"] == state]


@pytest.mark.slow
def test_events_lost_before_a_recorder_restart_are_judged_after_it(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Alpha's quotes of 4 steps pass the gate and never reach enrich; the recorder stops
    after writing their gate rows, before its watermark passed them; a new recorder on the
    same store and trail, seeded from the store, raises the one alert: alpha, lost=12."""
    p = Restarts(bootstrap, store, make_topics, uid)
    try:
        rec1, det1, got1 = p.recorder(idle_s=60)
        p.lost_steps = set(range(20, 24))
        p.send(range(20))
        p.send(range(20, 24), ("alpha",))  # the last of the feed: enrich's clock stays before
        p.gate.wait_for(p.sent)
        rec1.wait(lambda: det1.pending == 12 and det1.pairs[0].judged_total == p.sent - 12,
                  "every gate row written, the lost ones waiting")  # fmt: skip
        p.stop_recorder(rec1)
        assert got1 == []
        assert det1.pairs[0].lost_total == 0

        rec2, det2, got2 = p.recorder(idle_s=60)
        assert det2.seeded is not None
        assert det2.pending == 12
        assert det2.pairs[0].judged_total == p.sent - 12
        p.send(range(24, 104))  # the feed goes on: enrich's clock passes the lost quotes
        rec2.wait(lambda: any(t.state == "firing" for t in got2), "the alert")
        rec2.wait(lambda: len(history_of(store, "firing")) == 1, "the alert in the history")
        p.stop_recorder(rec2)
    finally:
        p.close()
    firing = [t for t in got2 if t.state == "firing"]
    assert [t.labels for t in firing] == [ALPHA]
    assert firing[0].figures["lost"] == 12
    assert {t.labels for t in got2} == {ALPHA}
    assert det2.pairs[0].lost_total == 12
    (row,) = history_of(store, "firing")
    assert row["labels"]["provider"] == "alpha"


@pytest.mark.slow
def test_an_alert_raised_before_a_recorder_restart_is_not_raised_again(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The alert fired (and reached the history through the alerts topic) before the
    restart; the new recorder rebuilds it from the store, firing, and raises nothing again
    while the feed goes on."""
    p = Restarts(bootstrap, store, make_topics, uid)
    try:
        rec1, _det1, got1 = p.recorder(idle_s=60)
        p.lost_steps = set(range(10, 14))
        p.send(range(80))
        rec1.wait(lambda: any(t.state == "firing" for t in got1), "the alert")
        rec1.wait(lambda: len(history_of(store, "firing")) == 1, "the alert in the history")
        p.stop_recorder(rec1)

        rec2, det2, got2 = p.recorder(idle_s=60)
        assert det2.seeded is not None
        assert det2.seeded.suppressed >= 1
        assert det2.seeded.delivered == 0
        p.send(range(80, 120))
        rec2.wait(lambda: det2.pairs[0].judged_total + det2.pending == p.sent,
                  "every gate row judged or waiting")  # fmt: skip
        p.stop_recorder(rec2)
    finally:
        p.close()
    assert [(t.state, t.labels) for t in got1] == [("pending", ALPHA), ("firing", ALPHA)]
    assert got2 == []
    assert det2.pairs[0].lost_total == 12
    assert ALPHA in det2.pairs[0].definitions[0][1].firing()  # held firing: it may resolve
    assert len(history_of(store, "firing")) == 1
    assert len(history_of(store, "pending")) == 1


@pytest.mark.slow
def test_a_clean_pipeline_restarted_mid_stream_raises_nothing(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The recorder restarts while the feed runs (rows of both stages in flight): every
    event is judged once, across the two, none lost, no alert."""
    p = Restarts(bootstrap, store, make_topics, uid)
    feed = threading.Thread(target=p.send, args=(range(120),), daemon=True)
    try:
        rec1, det1, got1 = p.recorder(idle_s=5)
        feed.start()
        rec1.wait(lambda: det1.pairs[0].judged_total >= 120, "some of the feed judged")
        p.stop_recorder(rec1)
        assert feed.is_alive(), "the feed ended before the restart"
        rec2, det2, got2 = p.recorder(idle_s=5)
        feed.join(60)
        p.gate.wait_for(p.sent)
        rec2.wait(lambda: det2.pairs[0].judged_total == p.sent and det2.pending == 0,
                  "every event judged")  # fmt: skip
        p.stop_recorder(rec2)
    finally:
        p.close()
    assert (got1, got2) == ([], [])
    assert (det1.pairs[0].lost_total, det2.pairs[0].lost_total) == (0, 0)
    assert det2.seeded is not None
    assert det2.seeded.rows > 0
