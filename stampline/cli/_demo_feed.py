"""`stampline demo-feed`: the demo's synthetic feed (and decision stage) on a real broker.

The production stack (docker-compose.yml) runs it so the dashboards have something to show.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.markup import escape

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
    as_json: JsonOpt = False,
) -> None:
    """Produce the demo's market-data feed to the configured broker's first raw topic.

    3 providers × 50 instruments with the demo's injected faults (a silent provider, a
    skewed clock, bad records), run after run, until SIGTERM or --runs. With --decisions
    the demo's risk stage derives decisions, so the Compliance dashboard has some.
    """
    from stampline._feed import FeedPlan
    from stampline.broker import ensure_topics
    from stampline.demo import DemoError, RiskStage, Topics, produce_feed

    path = config_path(config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(escape(str(exc)))
    bootstrap = cfg.broker.bootstrap_servers
    if cfg.broker.embedded or not bootstrap:
        fail(escape(f"{path}: demo-feed needs broker.bootstrap_servers (embedded is private)"))
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
    try:
        while not stop.is_set() and (runs == 0 or run < runs):
            n, _ = produce_feed(bootstrap, topics.raw, FeedPlan(seed=run))
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
