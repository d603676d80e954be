"""`stampline demo-feed`: the demo's synthetic feed (and decision stage) on a real broker.

The production stack (docker-compose.yml) runs it so the dashboards have something to show.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.markup import escape

from stampline._feed import FeedPlan
from stampline.cli._app import ConfigOpt, JsonOpt, app, config_path, emit_json, err, fail
from stampline.config import ConfigError, load_config


@app.command("demo-feed")
def demo_feed(
    config: ConfigOpt = None,
    runs: Annotated[
        int,
        typer.Option(min=0, help="Feed runs of 40 rounds each (150 events a round); 0 = forever."),
    ] = 0,
    decisions: Annotated[
        bool,
        typer.Option(
            "--decisions/--no-decisions",
            help="Also run the demo's decision stage (SDK): clean topic → decisions topic.",
        ),
    ] = True,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap",
            metavar="HOST:PORT",
            help="The broker (default: broker.bootstrap_servers); with an embedded broker, "
            "the address `stampline run` prints.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Produce the demo's market-data feed to the configured broker's first raw topic.

    3 providers × 50 instruments with the demo's injected faults (a silent provider, a
    skewed clock, bad records), run after run, until SIGTERM or --runs. With --decisions
    the demo's risk stage derives decisions, so the Compliance dashboard has some. Sequence
    numbers continue from run to run and from where the raw topic ends (an earlier
    demo-feed), so only the injected gap reads as one.
    """
    from stampline.broker import ensure_topics
    from stampline.demo import DemoError, RiskStage, Topics, produce_feed

    path = config_path(config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(escape(str(exc)))
    if bootstrap is None and not cfg.broker.embedded:
        bootstrap = cfg.broker.bootstrap_servers
    if not bootstrap:
        fail(
            escape(
                f"{path}: demo-feed needs a broker others can reach, and an embedded one is "
                f"private to the process that started it: start `stampline run -c {path}` "
                "and pass the address it prints (`run: broker at HOST:PORT`) as "
                "--bootstrap HOST:PORT, or set broker.bootstrap_servers"
            )
        )
    topics = Topics(
        cfg.topics.raw[0], cfg.topics.clean, cfg.topics.dead_letter, cfg.topics.decisions
    )
    if cfg.topics.create_missing:
        ensure_topics(
            bootstrap,
            [topics.raw, topics.clean, topics.dead_letter, topics.decisions],
            cfg.topics.partitions,
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    risk = RiskStage(bootstrap, topics, "stampline-demo-risk", FeedPlan().providers)
    thread = threading.Thread(target=risk.run, args=(stop,), name="risk", daemon=True)
    if decisions:
        thread.start()
    produced, run = 0, 0
    # Numbers continue where the topic ends (an earlier demo-feed) and from run to run: a
    # feed that restarted them would be all duplicates to the sequence rule and completeness.
    sequences = _next_sequences(bootstrap, topics.raw, FeedPlan())
    try:
        while not stop.is_set() and (runs == 0 or run < runs):
            n, _ = produce_feed(bootstrap, topics.raw, FeedPlan(seed=run), None, sequences)
            produced, run = produced + n, run + 1
            err.print(f"demo-feed: run {run}, {produced:,} events to {topics.raw}", markup=False)
    except DemoError as exc:
        fail(escape(str(exc)))
    finally:
        stop.set()
        if decisions:
            thread.join(30)
    if as_json:
        emit_json({"runs": run, "events": produced, "decisions": len(risk.decisions)})


def _next_sequences(bootstrap: str, topic: str, plan: FeedPlan) -> dict[str, int]:
    """Each provider/instrument's next sequence number after the records already on
    ``topic``: read from the tail of each partition (two rounds of every key)."""
    import orjson
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from stampline.collectors import consumer_config

    tail = 2 * len(plan.providers) * plan.instruments
    # The end of each partition is its EOF event: a high watermark is not exact on every
    # broker (Tansu's lags one record).
    consumer = Consumer(
        consumer_config(
            bootstrap, "stampline-demo-feed", {"log_level": 3, "enable.partition.eof": True}
        )
    )
    following: dict[str, int] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        partitions = sorted(metadata.partitions) if metadata is not None else []
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10) for p in partitions}
        todo = {p for p, (lo, hi) in ends.items() if hi > lo}
        consumer.assign(
            [
                TopicPartition(topic, p, max(lo, hi - tail))
                for p, (lo, hi) in ends.items()
                if p in todo
            ]
        )
        while todo:
            m = consumer.poll(10)
            if m is None:
                break  # what was read is enough: a repeated number is a warning, no more
            error = m.error()
            if error is not None:
                # _PARTITION_EOF is confluent-kafka's documented name for it.
                if error.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001
                    todo.discard(m.partition() or 0)
                continue
            try:
                event = orjson.loads(m.value() or b"")
                slot, seq = f"{event['provider']}/{event['instrument']}", int(event["seq"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # the feed's own bad records
            following[slot] = max(following.get(slot, 0), seq + 1)
    finally:
        consumer.close()
    return following
