"""``stampline demo``: a synthetic market-data feed through the gate, a decision stage written
with the SDK, and a tap, on an embedded broker and store, ending with a summary.

The demo is `stampline run` plus a feed and a decision stage: it writes a deployment config
and starts the gate, the tap and the recorder from it as supervised child processes (see
stampline/_deployment.py), exactly as `stampline run` does; only the customer's parts, the
feed producer and the SDK decision stage, run in this process. The gate and the tap send
their trail to the trail topic, the recorder writes the store and serves it live (see
docs/trail.md), and the summary is read from the store through that live endpoint.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
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
import yaml
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from stampline import _deployment
from stampline._common import StamplineError
from stampline._feed import BAD_KINDS, FeedPlan, generate, plan_bad_slots
from stampline._supervisor import Child, Supervisor, exit_text
from stampline.audit import LiveStore, Store, find_live
from stampline.broker import EmbeddedBroker, ensure_topics
from stampline.collectors import consumer_config, producer_config, stage, take
from stampline.config import ConfigError, load_config

log = logging.getLogger("stampline.demo")
UNIDENTIFIED = "(unidentified)"  # records too broken to name their provider
DEFAULT_STORE = Path(".stampline-demo") / "store"
_MARKER = ".stampline-demo-store"  # the demo only ever wipes a folder that carries this
_JOIN_TIMEOUT_S = 60.0
_DRAIN_TIMEOUT_S = 120.0

Progress = Callable[[str], None]


class DemoError(StamplineError):
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
    trail_heads: str = "stampline.trail.heads"
    alerts: str = "stampline.alerts"

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            f"{prefix}md.raw",
            f"{prefix}md.clean",
            f"{prefix}md.dlq",
            f"{prefix}decisions",
            f"{prefix}stampline.trail",
            f"{prefix}stampline.trail.heads",
            f"{prefix}stampline.alerts",
        )


@dataclass(slots=True)
class DemoResult:
    summary: dict[str, Any]
    injected: list[Injected]
    topics: Topics
    bootstrap: str
    config: Path  # the deployment config the demo wrote and ran its children with
    children: list[dict[str, Any]] = field(default_factory=list)  # name, pid, last_exit


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


class _Thread:
    """An in-process part (the decision stage) whose failure the demo reports."""

    def __init__(self, name: str, target: Callable[[threading.Event], None]) -> None:
        self.name = name
        self.error: BaseException | None = None
        self.stop = threading.Event()

        def body() -> None:
            try:
                target(self.stop)
            except BaseException as exc:  # reported by the demo, which then stops
                self.error = exc

        self.thread = threading.Thread(target=body, name=name, daemon=True)

    def join(self) -> None:
        self.stop.set()
        self.thread.join(30)


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


# The demo's alerting. Every feed provider is registered and judged on the feed's own event
# time (`watch_clock: event`), so a busy machine's processing lag is not mistaken for
# silence and the end of the feed is no silence either. A silent provider, a sequence gap
# and a sustained divergence each raise one alert; the one-round price spike raises none
# (the divergence rule's sustain). MAX_GAP is ten rounds; the skewed provider's clock runs
# 250 ms ahead.
MAX_GAP = "500ms"
ALERTS = (
    "  - {id: provider.silent, kind: provider_silent, severity: critical}\n"
    # a gap of one is a record the gate dead-lettered itself (the feed's bad records)
    "  - {id: sequence.gap, kind: sequence_gap, min_missing: 2, scope: {instrument: true}}\n"
    "  - {id: price.divergence, kind: divergence, scope: {instrument: true}}\n"
)


def alert_definitions(plan: FeedPlan) -> str:
    """The demo's alert definitions file."""
    registry = "\n".join(
        f"  - {{provider: {p}, venue: DEMO, max_gap: {MAX_GAP}}}" for p in plan.providers
    )
    return f"version: 1\nproviders:\n{registry}\nalerts:\n{ALERTS}"


def deployment_config(
    *,
    bootstrap: str,
    store: Path,
    database: str,
    topics: Topics,
    alerts_file: Path,
    plan: FeedPlan,
    group_prefix: str = "",
) -> dict[str, Any]:
    """The deployment the demo runs: a real `stampline run` configuration."""
    return {
        "version": 1,
        # the broker `stampline demo` started in its own process, shared by every child
        "broker": {"bootstrap_servers": bootstrap},
        "topics": {
            "raw": [topics.raw],
            "clean": topics.clean,
            "dead_letter": topics.dead_letter,
            "decisions": topics.decisions,
            "trail": topics.trail,
            "trail_heads": topics.trail_heads,
        },
        "store": {"path": str(store), "database": database, "flush_interval": "200ms"},
        "gate": {
            "group_id": f"{group_prefix}demo-gate",
            "max_message_bytes": plan.max_message_bytes,
        },
        "tap": {"group_id": f"{group_prefix}demo-tap", "topics": [topics.decisions]},
        "recorder": {"group_id": f"{group_prefix}demo-recorder"},
        "rules": {"files": [str(rules_file()), str(stateful_rules_file())]},
        "alerting": {
            "definitions": str(alerts_file),
            "topic": topics.alerts,
            "watch_clock": "event",
        },
        "metrics": {"enabled": False},  # the demo's children serve no /metrics
    }


def run_demo(
    store: Path = DEFAULT_STORE,
    *,
    plan: FeedPlan | None = None,
    bootstrap: str | None = None,
    database: str = "stampline",
    topic_prefix: str = "",
    fresh: bool = True,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the whole demo and return its summary.

    The demo is `stampline run` plus a feed and a decision stage: it writes a deployment
    config (``<data_dir>/stampline.yaml``, ``data_dir`` defaulting to the store folder),
    starts the gate, the tap and the recorder from it as supervised child processes (their
    output in ``<data_dir>/logs/``), and runs only the customer's parts here: the synthetic
    feed and the SDK decision stage. It reads the store live through the recorder's
    endpoint, then stops the children with SIGTERM. A child that exits before that fails
    the demo at once, naming it (no restarts: the demo is a short run).

    ``store`` is the chDB folder: with ``fresh`` it is wiped first (only ever a folder the
    demo made); otherwise the demo writes its own ``database`` in it, which no process may
    hold open meanwhile (the recorder child opens it). With ``bootstrap`` None an embedded
    broker is started here and stopped; otherwise the demo's topics (named with
    ``topic_prefix``) are created there.

    Raises:
        DemoError: a part failed or did not finish in time.
    """
    plan = plan or FeedPlan()
    say = progress or (lambda _m: None)
    topics = Topics.with_prefix(topic_prefix)
    store = Path(store).resolve()
    if fresh:
        prepare_store_dir(store)
    else:
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = Path(data_dir).resolve() if data_dir is not None else store
    logs = data / "logs"
    logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    with ExitStack() as stack:
        if bootstrap is None:
            say("starting the embedded broker (Tansu)")
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
        say(f"broker at {bootstrap}")
        alerts_file = data / "demo.alerts.yaml"
        alerts_file.write_text(alert_definitions(plan))
        config_file = data / "stampline.yaml"
        spec = deployment_config(
            bootstrap=bootstrap, store=store, database=database, topics=topics,
            alerts_file=alerts_file, plan=plan, group_prefix=topic_prefix,
        )  # fmt: skip
        config_file.write_text(
            "# written by `stampline demo`: the deployment it ran (`stampline run --config`\n"
            "# runs the same parts, given a broker at this address)\n"
            + yaml.safe_dump(spec, sort_keys=False)
        )
        try:
            cfg = load_config(config_file)  # what the children load: checked here first
        except ConfigError as exc:
            raise DemoError(f"the demo's own config is not usable: {exc}") from exc
        # The children read the config file and nothing else: a STAMPLINE_* variable in
        # this shell would otherwise override what the demo wrote.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
        children = _deployment.children(cfg, config_file, bootstrap, 1, log_dir=logs)
        for child in children:
            # The gate's start-up is the demo's critical path (the feed waits for it); the
            # tap and the recorder catch up while the feed runs. Two cores are common.
            child.nice = 0 if child.name.startswith("gate") else 10
        supervisor = Supervisor(
            children,
            base_env=env,
            restart=False,
            stop_timeout_s=30,
        )
        # The children start at once (each its own process: imports and chDB overlap) while
        # this process creates the topics.
        supervisor.start_all(say)
        stack.callback(supervisor.stop_all, lambda _m: None)
        say(f"config at {config_file} (children's logs in {logs})")
        say(f"query it live: stampline hotspots --config {config_file}")
        ensure_topics(bootstrap, _deployment.topics(cfg), cfg.topics.partitions)
        risk = RiskStage(bootstrap, topics, f"{topic_prefix}demo-risk", plan.providers)
        stage_thread = _Thread("risk", risk.run)
        stage_thread.thread.start()
        stack.callback(stage_thread.join)

        def check() -> None:
            supervisor.check(lambda _m: None)
            for child in supervisor.exited:
                raise DemoError(_stopped(child))
            if stage_thread.error is not None:
                e = stage_thread.error
                raise DemoError(f"the risk stage stopped: {type(e).__name__}: {e}") from e

        # The feed starts once the gate and the risk stage hold their partitions, so the
        # latencies measure the pipeline, not its start-up. The tap and the recorder read
        # from the earliest offset and measure nothing the summary shows: they join
        # meanwhile, and the drain below waits for what they write.
        say("waiting for the gate and the risk stage to join")
        _wait(
            lambda: risk.ready.is_set() and _groups_stable(bootstrap, [cfg.gate.group_id]),
            _JOIN_TIMEOUT_S,
            "consumers joining their groups",
            check,
        )
        produced, injected = _produce_feed(bootstrap, topics.raw, plan, say, check)
        say(f"feed done: {produced:,} events; waiting for the pipeline to drain")
        live = _wait_live(store, database, check)
        _wait(
            lambda: _recorded(live, topics.decisions)[0] >= produced,
            _DRAIN_TIMEOUT_S,
            "the gate's trail",
            check,
        )
        forwarded = _recorded(live, topics.decisions)[2]
        _wait(lambda: risk.consumed >= forwarded, _DRAIN_TIMEOUT_S, "the risk stage", check)
        stage_thread.join()
        check()
        _wait(
            lambda: _recorded(live, topics.decisions)[1] >= len(risk.decisions),
            _DRAIN_TIMEOUT_S,
            "the tap's trail",
            check,
        )
        # The gate sends its last alert transitions as it stops; the recorder then writes
        # them before it is stopped too.
        feeders = [c for c in supervisor.children if c.name != "recorder"]
        supervisor.stop(feeders, lambda _m: None)
        _check_clean(feeders)
        _wait(
            lambda: _written_all(bootstrap, cfg.recorder.group_id, topics.alerts),
            _DRAIN_TIMEOUT_S,
            "the recorder to write the alerts",
            check,
        )
        summary = summarise(live, produced=produced, decisions=len(risk.decisions))
        summary["alerts"] = listed_alerts(live)
        recorder = [c for c in supervisor.children if c.name == "recorder"]
        supervisor.stop(recorder, lambda _m: None)
        _check_clean(recorder)
        say("stopped the gate, the tap and the recorder cleanly")
    summary["store_path"] = str(store)
    summary["database"] = database
    summary["injected"] = dict(sorted(Counter(i.kind for i in injected).items()))
    summary["config_path"] = str(config_file)
    summary["replay_command"] = (
        f"stampline replay --decision {summary['decision_id']} --store {store}"
        + ("" if database == "stampline" else f" --database {database}")
    )
    summary["evidence_command"] = evidence_command(
        summary["decision_id"], store, database, config_file
    )
    ran = [
        {"name": c.name, "pid": c.proc.pid if c.proc else None, "last_exit": c.last_exit}
        for c in supervisor.children
    ]
    return DemoResult(summary, injected, topics, bootstrap, config_file, ran)


def evidence_command(decision_id: str, store: Path, database: str, config_file: Path) -> str:
    """The evidence command the demo prints for its decision: with the configuration, so the
    report hashes it and its rule files and judges against the tier it declares."""
    return shlex.join(
        ["stampline", "evidence", "--decision", decision_id, "--store", str(store)]
        + ([] if database == "stampline" else ["--database", database])
        + ["--config", str(config_file), "--out", f"evidence-{decision_id}"]
    )


def produce_feed(
    bootstrap: str,
    topic: str,
    plan: FeedPlan,
    progress: Progress | None = None,
    sequences: dict[str, int] | None = None,
) -> tuple[int, list[Injected]]:
    """Produce one run of the synthetic feed (``plan.rounds`` rounds) to ``topic``.

    ``sequences``: each provider/instrument's next sequence number, carried from run to run
    (updated here) so that a run continues the last one's numbers; None starts at 0.
    Returns the number of records produced and the bad ones injected on purpose.

    Raises:
        DemoError: the broker did not take every record.
    """
    return _produce_feed(bootstrap, topic, plan, progress or (lambda _m: None), None, sequences)


def _stopped(child: Child) -> str:
    """One line: which child stopped, how, its last words, and where its log is."""
    code = child.last_exit if child.last_exit is not None else 0
    last = child.last_line()
    return (
        f"the {child.name} child stopped ({exit_text(code)})"
        + (f"; last log line: {last}" if last else "")
        + (f" (log: {child.log})" if child.log else "")
    )


def _check_clean(children: list[Child]) -> None:
    """Each stopped child exited 0 (it committed what it did)."""
    for child in children:
        if child.last_exit != 0:
            raise DemoError(_stopped(child))


def _groups_stable(bootstrap: str, groups: list[str]) -> bool:
    """Every group has joined (its consumers hold their partitions)."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    for group, future in admin.describe_consumer_groups(groups, request_timeout=5).items():
        try:
            if future.result(5).state != ConsumerGroupState.STABLE:
                return False
        except Exception:  # not known yet: the group has not formed
            log.debug("group %s not described yet", group)
            return False
    return True


def _wait_live(store: Path, database: str, check: Callable[[], None]) -> LiveStore:
    """The store as the recorder serves it, once its endpoint answers."""
    found: list[LiveStore] = []

    def answers() -> bool:
        live = find_live(store)
        if live is None:
            return False
        found.append(LiveStore.found(live, database))
        return True

    _wait(answers, _JOIN_TIMEOUT_S, "the recorder's live endpoint", check)
    return found[-1]


def _written_all(bootstrap: str, group: str, topic: str) -> bool:
    """``group`` has committed every message of ``topic``: the recorder wrote them all."""
    consumer = Consumer(consumer_config(bootstrap, group, {"enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=5).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=5)}
        for tp in parts:
            high = consumer.get_watermark_offsets(tp, timeout=5)[1]
            if high > 0 and committed.get(tp.partition, -1) < high:
                return False
        return True
    finally:
        consumer.close()


_NOT_LABELS = frozenset({"alertname", "kind", "severity"})


def listed_alerts(store: Store) -> list[dict[str, Any]]:
    """One entry per alert instance, from the store's alert history (the recorder wrote it
    from the alerts topic): id, kind, labels, summary, fired_at, resolved_at (UTC ISO)."""
    rows = store.query(
        """SELECT fingerprint, any(alert_id) AS id, any(kind) AS kind,
               argMax(labels, at) AS labels,
               argMaxIf(annotations['summary'], at, state = 'firing') AS summary,
               maxIf(toUnixTimestamp64Nano(at), state = 'firing') AS fired_ns,
               countIf(state = 'firing') AS fired,
               maxIf(toUnixTimestamp64Nano(at), state = 'resolved') AS resolved_ns,
               countIf(state = 'resolved') AS resolved
           FROM {db}.alert_history FINAL
           GROUP BY fingerprint ORDER BY min(at), fingerprint"""
    )
    return [
        {
            "id": r["id"],
            "kind": r["kind"],
            # the identifying labels: the name, kind and severity Alertmanager also gets
            # are the entry's own fields
            "labels": {k: v for k, v in r["labels"].items() if k not in _NOT_LABELS},
            "summary": r["summary"],
            "fired_at": _iso(int(r["fired_ns"])) if r["fired"] else None,
            "resolved_at": _iso(int(r["resolved_ns"])) if r["resolved"] else None,
        }
        for r in rows
    ]


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _produce_feed(
    bootstrap: str,
    topic: str,
    plan: FeedPlan,
    say: Progress,
    check: Callable[[], None] | None = None,
    sequences: dict[str, int] | None = None,
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
    state: dict[str, int] = {} if sequences is None else sequences
    for round_no in range(plan.rounds):
        started = time.monotonic()
        for rec in generate(plan, round_no, time.time_ns() // 1_000_000, rng, state, slots):
            producer.produce(
                topic, rec.value, rec.key, on_delivery=delivered(rec.bad_kind, rec.provider)
            )
            produced += 1
        producer.poll(0)
        if check is not None:
            check()  # a part that stopped fails the demo now, not after the whole feed
        if round_no % 10 == 9:
            say(f"feed: round {round_no + 1}/{plan.rounds}, {produced:,} events")
        time.sleep(max(0.0, plan.round_interval_s - (time.monotonic() - started)))
    if producer.flush(30) or failures:
        raise DemoError(f"the feed could not be produced: {failures[:3]}")
    return produced, injected


def _wait(done: Callable[[], bool], timeout_s: float, what: str, check: Callable[[], None]) -> None:
    """Wait for ``done``; ``check`` raises at once when a part has stopped."""
    deadline = time.monotonic() + timeout_s
    while True:
        check()
        if done():
            return
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def _recorded(store: Store, decisions_topic: str) -> tuple[int, int, int]:
    """Gate rows, tap sightings of decisions, and forwarded gate rows written so far."""
    (row,) = store.query(
        "SELECT countIf(stage = 'gate') AS gate, countIf(stage = {tap:String}) AS tap, "
        "countIf(stage = 'gate' AND outcome = 'forwarded') AS fwd FROM {db}.observations",
        {"tap": f"tap:{decisions_topic}"},
    )
    return int(row["gate"]), int(row["tap"]), int(row["fwd"])


def summarise(store: Store, *, produced: int, decisions: int) -> dict[str, Any]:
    """The demo's summary, computed from the trail (not from the collectors' counters)."""
    gate_rows = "FROM {db}.trail WHERE stage = 'gate'"
    (totals,) = store.query(
        f"SELECT count() AS n, countIf(outcome = 'forwarded') AS fwd {gate_rows}"
    )
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
