"""``stampline demo``: a synthetic market-data feed through the gate, a decision stage written
with the SDK, and a tap, on an embedded broker and store, ending with a summary.

The parts are wired as a deployment is: the gate and the tap send their trail to the trail
topic and the recorder writes the store (see docs/trail.md).
"""

from __future__ import annotations

import random
import shutil
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, Producer

from alerting import Dispatcher, KeyDetectors, ProviderWatch, parse_alerts
from audit import ChdbStore
from collectors import (
    Gate,
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
from rules import Extraction, RuleSet
from stampline._feed import BAD_KINDS, FeedPlan, generate, plan_bad_slots
from stampline.broker import EmbeddedBroker, ensure_topics

UNIDENTIFIED = "(unidentified)"  # records too broken to name their provider
DEFAULT_STORE = Path(".stampline-demo") / "store"
_MARKER = ".stampline-demo-store"  # the demo only ever wipes a folder that carries this
_JOIN_TIMEOUT_S = 60.0
_DRAIN_TIMEOUT_S = 120.0

Progress = Callable[[str], None]


class DemoError(Exception):
    """The demo could not run to the end; the message says which part stopped."""


def rules_file() -> Path:
    """The packaged market-data rule file the demo gates with."""
    return Path(str(resources.files("stampline").joinpath("data", "market_data.rules.yaml")))


def stateful_rules_file() -> Path:
    """The demo's sequence and divergence rules (warn only), whose verdicts raise its
    sequence-gap and divergence alerts."""
    return Path(str(resources.files("stampline").joinpath("data", "demo_stateful.rules.yaml")))


@dataclass(frozen=True, slots=True)
class Injected:
    """A bad record the feed sent on purpose, where it landed, and the rule that must catch it."""

    kind: str
    rule_id: str
    provider: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Topics:
    raw: str
    clean: str
    dead_letter: str
    decisions: str
    trail: str = "stampline.trail"

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            f"{prefix}md.raw",
            f"{prefix}md.clean",
            f"{prefix}md.dlq",
            f"{prefix}decisions",
            f"{prefix}stampline.trail",
        )


@dataclass(slots=True)
class DemoResult:
    summary: dict[str, Any]
    injected: list[Injected]
    topics: Topics
    bootstrap: str


class RiskStage:
    """The customer's decision stage, written with the SDK.

    It keeps each provider's latest quote per instrument and, on every tenth quote from the
    lead provider, decides a reference price from all providers' quotes: a decision whose
    lineage is those quotes. Decisions ``spike`` take ``spike_s`` longer (the injected
    latency spike at one stage).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        group_id: str,
        providers: tuple[str, ...],
        spike: tuple[int, int] = (60, 80),
        spike_s: float = 0.025,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.group_id = group_id
        self.providers = providers
        self.spike = spike
        self.spike_s = spike_s
        self.consumed = 0
        self.decisions: list[str] = []
        self.ready = threading.Event()

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(
            consumer_config(self.bootstrap, self.group_id, {"enable.auto.commit": True})
        )
        producer = Producer(producer_config(self.bootstrap))
        consumer.subscribe([self.topics.clean], on_assign=lambda _c, _p: self.ready.set())
        latest: dict[str, dict[str, Message]] = {}
        try:
            while not stop.is_set():
                for msg in take(consumer, 500, 0.1):
                    if msg.error() is None:
                        self._on_quote(msg, latest, producer)
                producer.poll(0)
        finally:
            producer.flush(10)
            consumer.close()

    def _on_quote(
        self, msg: Message, latest: dict[str, dict[str, Message]], producer: Producer
    ) -> None:
        self.consumed += 1
        quote = orjson.loads(msg.value() or b"{}")
        book = latest.setdefault(quote["instrument"], {})
        book[quote["provider"]] = msg
        if (
            quote["provider"] != self.providers[0]
            or quote["seq"] % 10
            or len(book) < len(self.providers)
        ):
            return
        with stage("risk", *book.values(), producer=producer) as st:
            if self.spike[0] <= len(self.decisions) < self.spike[1]:
                time.sleep(self.spike_s)
            mids = [orjson.loads(m.value() or b"{}")["price"] for m in book.values()]
            decision = {
                "instrument": quote["instrument"],
                "action": "reprice",
                "reference_price": statistics.median(mids),
            }
            self.decisions.append(
                st.produce(
                    self.topics.decisions, orjson.dumps(decision), key=quote["instrument"].encode()
                )
            )


@dataclass(slots=True)
class _Worker:
    name: str
    target: Callable[[threading.Event], None]
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None)

    def start(self, stop: threading.Event) -> None:
        def body() -> None:
            try:
                self.target(stop)
            except BaseException as exc:  # reported by the demo, which then stops
                self.error = exc
                stop.set()

        self.thread = threading.Thread(target=body, name=self.name, daemon=True)
        self.thread.start()


def prepare_store_dir(path: Path) -> None:
    """Empty ``path`` for a fresh demo run, refusing any folder the demo did not create.

    Raises:
        DemoError: ``path`` holds something that is not a demo store.
    """
    if path.exists() and any(path.iterdir()):
        if not (path / _MARKER).exists():
            raise DemoError(f"{path} is not empty and not a demo store; choose another --store")
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker = path / _MARKER
    marker.write_text("created by `stampline demo`; safe to delete\n")
    marker.chmod(0o600)


def run_demo(
    store: Path | ChdbStore = DEFAULT_STORE,
    *,
    plan: FeedPlan | None = None,
    bootstrap: str | None = None,
    database: str = "stampline",
    topic_prefix: str = "",
    progress: Progress | None = None,
) -> DemoResult:
    """Run the whole demo and return its summary.

    ``store`` is a folder to create a fresh demo store in, or a store already open (its
    database is used as it is). With ``bootstrap`` None an embedded broker is started and
    stopped; otherwise the demo's topics (named with ``topic_prefix``) are created there.

    Raises:
        DemoError: a part failed or did not finish in time.
    """
    plan = plan or FeedPlan()
    say = progress or (lambda _m: None)
    topics = Topics.with_prefix(topic_prefix)
    with ExitStack() as stack:
        if bootstrap is None:
            say("starting the embedded broker (Tansu)")
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
        say(f"broker at {bootstrap}")
        ensure_topics(
            bootstrap,
            [topics.raw, topics.clean, topics.dead_letter, topics.decisions, topics.trail],
        )
        if not isinstance(store, ChdbStore):
            prepare_store_dir(Path(store).resolve())
            store = stack.enter_context(ChdbStore(Path(store).resolve(), database))
        say(f"store (chDB) at {store.path}, database {store.database}")
        rules = RuleSet.load(
            [rules_file(), stateful_rules_file()],
            Extraction(max_message_bytes=plan.max_message_bytes),
        )
        alerts = _DemoAlerts(plan, store, rules)
        gate = Gate(
            GateSettings(
                bootstrap,
                (topics.raw,),
                topics.clean,
                topics.dead_letter,
                group_id=f"{topic_prefix}demo-gate",
                flush_interval_s=0.2,
            ),
            rules,
            TrailTopic(topics.trail, "gate@demo"),
            detectors=alerts.detectors,
        )
        risk = RiskStage(bootstrap, topics, f"{topic_prefix}demo-risk", plan.providers)
        tap = Tap(
            TapSettings(bootstrap, (topics.decisions,), group_id=f"{topic_prefix}demo-tap"),
            TrailTopic(topics.trail, "tap@demo"),
        )
        recorder = Recorder(
            RecorderSettings(
                bootstrap,
                topics.trail,
                group_id=f"{topic_prefix}demo-recorder",
                heads_topic=None,
                poll_timeout_s=0.1,
            ),
            store,
        )
        stop = threading.Event()
        workers = [
            _Worker("gate", gate.run),
            _Worker("risk", risk.run),
            _Worker("tap", tap.run),
            _Worker("recorder", recorder.run),
        ]
        for w in workers:
            w.start(stop)
        try:
            say("waiting for the gate, the risk stage, the tap and the recorder to join")
            _wait(
                lambda: (
                    gate.ready.is_set()
                    and risk.ready.is_set()
                    and tap.ready.is_set()
                    and recorder.ready.is_set()
                ),
                _JOIN_TIMEOUT_S,
                "consumers joining their groups",
                workers,
            )
            produced, injected = _produce_feed(bootstrap, topics.raw, plan, say)
            say(f"feed done: {produced:,} events; waiting for the pipeline to drain")
            _wait(lambda: gate.stats.events_in >= produced, _DRAIN_TIMEOUT_S, "the gate", workers)
            _wait(
                lambda: risk.consumed >= gate.stats.forwarded,
                _DRAIN_TIMEOUT_S,
                "the risk stage",
                workers,
            )
            _wait(
                lambda: tap.stats.records >= len(risk.decisions),
                _DRAIN_TIMEOUT_S,
                "the tap",
                workers,
            )
            _wait(
                lambda: _caught_up(_recorded(store, topics.decisions), produced, risk.decisions),
                _DRAIN_TIMEOUT_S,
                "the recorder",
                workers,
            )
        finally:
            stop.set()
            for w in workers:
                if w.thread is not None:
                    w.thread.join(30)
        _raise_failed(workers)
        alerts.dispatcher.close()
        summary = summarise(store, produced=produced, decisions=len(risk.decisions))
        summary["alerts"] = alerts.listed()
        summary["store_path"] = str(store.path)
        summary["database"] = store.database
        summary["injected"] = dict(sorted(Counter(i.kind for i in injected).items()))
        summary["replay_command"] = (
            f"stampline replay --decision {summary['decision_id']} --store {store.path}"
            + ("" if store.database == "stampline" else f" --database {store.database}")
        )
        summary["evidence_command"] = (
            f"stampline evidence --decision {summary['decision_id']} --store {store.path}"
            + ("" if store.database == "stampline" else f" --database {store.database}")
            + f" --out evidence-{summary['decision_id']}"
        )
        return DemoResult(summary, injected, topics, bootstrap)


def produce_feed(
    bootstrap: str, topic: str, plan: FeedPlan, progress: Progress | None = None
) -> tuple[int, list[Injected]]:
    """Produce one run of the synthetic feed (``plan.rounds`` rounds) to ``topic``.

    Returns the number of records produced and the bad ones injected on purpose.

    Raises:
        DemoError: the broker did not take every record.
    """
    return _produce_feed(bootstrap, topic, plan, progress or (lambda _m: None))


class _DemoAlerts:
    """The demo's alerting: every feed provider registered, judged on the feed's own event
    time (so a busy machine's processing lag is not mistaken for silence), history in the
    store. A silent provider, a sequence gap and a sustained divergence each raise one alert;
    the one-round price spike raises none (the divergence rule's sustain)."""

    MAX_GAP = "500ms"  # ten rounds; the skewed provider's clock runs 250 ms ahead
    ALERTS = (
        "  - {id: provider.silent, kind: provider_silent, severity: critical}\n"
        # a gap of one is a record the gate dead-lettered itself (the feed's bad records)
        "  - {id: sequence.gap, kind: sequence_gap, min_missing: 2, scope: {instrument: true}}\n"
        "  - {id: price.divergence, kind: divergence, scope: {instrument: true}}\n"
    )

    def __init__(self, plan: FeedPlan, store: ChdbStore, rules: RuleSet) -> None:
        registry = "\n".join(
            f"  - {{provider: {p}, venue: DEMO, max_gap: {self.MAX_GAP}}}" for p in plan.providers
        )
        definitions = parse_alerts(f"version: 1\nproviders:\n{registry}\nalerts:\n{self.ALERTS}")
        self.dispatcher = Dispatcher(definitions, store=store, source="demo")
        self.watch = ProviderWatch(definitions, self.dispatcher, event_clock=True)
        kinds = {r.id: r.kind for r in rules.rules}
        self.detectors = KeyDetectors(definitions, kinds, self.dispatcher, self.watch.add)

    def listed(self) -> list[dict[str, Any]]:
        """One entry per alert instance: id, kind, labels, fired_at, resolved_at (UTC ISO)."""
        by: dict[str, dict[str, Any]] = {}
        for n in self.dispatcher.recent:
            t = n.transition
            entry = by.setdefault(
                n.fingerprint,
                {"id": t.alert_id, "kind": t.kind, "labels": dict(t.labels),
                 "summary": n.annotations.get("summary", ""), "fired_at": None,
                 "resolved_at": None},
            )  # fmt: skip
            if t.state == "firing":
                entry["fired_at"] = _iso(t.at_ns)
                entry["summary"] = n.annotations.get("summary", "")
            elif t.state == "resolved":
                entry["resolved_at"] = _iso(t.at_ns)
        return list(by.values())


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _produce_feed(
    bootstrap: str, topic: str, plan: FeedPlan, say: Progress
) -> tuple[int, list[Injected]]:
    rng = random.Random(plan.seed)
    slots = plan_bad_slots(plan, rng)
    # A provider's own producer: not idempotent, and warmed up (metadata fetched) before the
    # first round so its start-up does not show as feed latency.
    producer = Producer(producer_config(bootstrap, {"linger.ms": 2, "enable.idempotence": False}))
    producer.list_topics(topic, timeout=10)
    injected: list[Injected] = []
    failures: list[str] = []

    def delivered(kind: str | None, provider: str) -> Callable[[Any, Message], None]:
        def cb(err: Any, msg: Message) -> None:
            if err is not None:
                failures.append(str(err))
            elif kind is not None:
                injected.append(
                    Injected(
                        kind, BAD_KINDS[kind], provider, msg.partition() or 0, msg.offset() or 0
                    )
                )

        return cb

    produced = 0
    state: dict[str, int] = {}
    for round_no in range(plan.rounds):
        started = time.monotonic()
        for rec in generate(plan, round_no, time.time_ns() // 1_000_000, rng, state, slots):
            producer.produce(
                topic, rec.value, rec.key, on_delivery=delivered(rec.bad_kind, rec.provider)
            )
            produced += 1
        producer.poll(0)
        if round_no % 10 == 9:
            say(f"feed: round {round_no + 1}/{plan.rounds}, {produced:,} events")
        time.sleep(max(0.0, plan.round_interval_s - (time.monotonic() - started)))
    if producer.flush(30) or failures:
        raise DemoError(f"the feed could not be produced: {failures[:3]}")
    return produced, injected


def _wait(done: Callable[[], bool], timeout_s: float, what: str, workers: list[_Worker]) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        _raise_failed(workers)
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _caught_up(recorded: tuple[int, int], produced: int, decisions: list[str]) -> bool:
    gate_rows, tap_rows = recorded
    return gate_rows >= produced and tap_rows >= len(decisions)


def _recorded(store: ChdbStore, decisions_topic: str) -> tuple[int, int]:
    """Gate rows and tap sightings of decisions the recorder has written so far."""
    (row,) = store.query(
        "SELECT countIf(stage = 'gate') AS gate, countIf(stage = {tap:String}) AS tap "
        "FROM {db}.observations",
        {"tap": f"tap:{decisions_topic}"},
    )
    return int(row["gate"]), int(row["tap"])


def _raise_failed(workers: list[_Worker]) -> None:
    for w in workers:
        if w.error is not None:
            raise DemoError(
                f"the {w.name} stopped: {type(w.error).__name__}: {w.error}"
            ) from w.error


def summarise(store: ChdbStore, *, produced: int, decisions: int) -> dict[str, Any]:
    """The demo's summary, computed from the trail (not from the collectors' counters)."""
    gate_rows = "FROM {db}.trail WHERE stage = 'gate'"
    totals = store.query(f"SELECT count() AS n, countIf(outcome = 'forwarded') AS fwd {gate_rows}")[
        0
    ]
    dead = store.query(
        f"SELECT rule_id, count() AS n {gate_rows} AND outcome = 'dead_lettered' "
        "GROUP BY rule_id ORDER BY rule_id"
    )
    providers = store.query(
        f"""SELECT provider,
               count() AS events,
               countIf(outcome = 'forwarded') AS forwarded,
               countIf(outcome = 'dead_lettered') AS dead_lettered,
               quantilesExactIf(0.5, 0.99)(
                   toUnixTimestamp64Nano(received) - toUnixTimestamp64Nano(origin),
                   outcome = 'forwarded') AS q,
               arrayMax(arrayDifference(arraySort(groupArrayIf(
                   toUnixTimestamp64Milli(origin), outcome = 'forwarded')))) AS max_gap_ms
           {gate_rows} GROUP BY provider ORDER BY provider"""
    )
    stages = store.query(
        """SELECT stage, count() AS n,
               quantilesExact(0.5, 0.99)(
                   toUnixTimestamp64Nano(emitted) - toUnixTimestamp64Nano(received)) AS q
           FROM {db}.trail
           -- a tap's own sighting is not a stage: its out - in is the tap's lag in reading
           WHERE stage NOT LIKE 'tap:%' GROUP BY stage ORDER BY stage"""
    )
    slowest = store.query(
        """SELECT toString(event_id) AS id,
               toUnixTimestamp64Nano(emitted) - toUnixTimestamp64Nano(received) AS took_ns
           FROM {db}.trail WHERE stage = 'risk' ORDER BY took_ns DESC, id LIMIT 1"""
    )
    if not slowest:
        raise DemoError("no decision reached the trail")
    return {
        "events_in": produced,
        "gate_seen": totals["n"],
        "forwarded": totals["fwd"],
        "dead_lettered": {r["rule_id"]: r["n"] for r in dead},
        "decisions": decisions,
        "decision_id": slowest[0]["id"],
        "decision_stage_ms": round(slowest[0]["took_ns"] / 1e6, 3),
        "providers": {
            (r["provider"] or UNIDENTIFIED): {
                "events": r["events"],
                "forwarded": r["forwarded"],
                "dead_lettered": r["dead_lettered"],
                # No forwarded event, no latency: None, never a misleading zero.
                "latency_p50_ms": round(r["q"][0] / 1e6, 3) if r["forwarded"] else None,
                "latency_p99_ms": round(r["q"][1] / 1e6, 3) if r["forwarded"] else None,
                "max_gap_ms": r["max_gap_ms"],
            }
            for r in providers
        },
        "stages": {
            r["stage"]: {
                "events": r["n"],
                "p50_ms": round(r["q"][0] / 1e6, 3),
                "p99_ms": round(r["q"][1] / 1e6, 3),
            }
            for r in stages
        },
    }
