"""`stampline run`: a whole deployment from one file, as supervised child processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import nullcontext
from typing import Annotated

import typer

from stampline.cli._app import ConfigOpt, JsonOpt, app, config_path, emit_json, err, fail
from stampline.config import ConfigError, load_config


@app.command()
def run(
    config: ConfigOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Gate processes (default: one per core, never more than the raw topics' "
            "partitions).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a deployment: the gates, the tap (if `tap.topics`), and the recorder.

    Each part runs as its own process, supervised: a child that exits is reported and
    restarted with back-off (0.5 s doubling to 30 s). With `broker.embedded: true` one
    embedded broker is started here and shared by every child. With `metrics.enabled`,
    each child serves its own /metrics: gate workers on `metrics.port`, `port+1`, …, then
    the recorder, then the tap. On the embedded store the recorder serves live read-only
    queries: run `stampline replay`, `hotspots`, … with the same --config meanwhile.
    SIGTERM or Ctrl-C stops every child cleanly (each commits what it did) and exits 0.
    """
    from stampline._supervisor import Child, Supervisor
    from stampline.broker import EmbeddedBroker, ensure_topics, partition_count

    path = config_path(config).resolve()
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(f"{path}: configuration is not usable:\n{exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker() if cfg.broker.embedded else nullcontext() as broker:
        bootstrap = broker.bootstrap_servers if broker else cfg.broker.bootstrap_servers
        assert bootstrap is not None
        err.print(f"run: broker at {bootstrap}", highlight=False)
        t = cfg.topics
        if t.create_missing:
            ensure_topics(
                bootstrap,
                [*t.raw, t.clean, t.dead_letter, t.trail, t.trail_heads, *cfg.tap.topics],
                t.partitions,
            )
        partitions = sum(partition_count(bootstrap, topic) for topic in t.raw)
        n = min(workers or os.cpu_count() or 1, max(1, partitions))
        if workers and workers > n:
            err.print(f"run: {workers} workers asked, {n} started (raw partitions: {partitions})")
        # Children share this broker, never start their own.
        env = {
            "STAMPLINE_BROKER__EMBEDDED": "false",
            "STAMPLINE_BROKER__BOOTSTRAP_SERVERS": bootstrap,
        }
        base = [sys.executable, "-m", "stampline"]
        names = [*(f"gate-{i + 1}" for i in range(n)), "recorder"]
        commands = [*(["gate"] for _ in range(n)), ["recorder"]]
        if cfg.tap.topics:
            names.append("tap")
            commands.append(["tap"])
        children = []
        for i, (name, command) in enumerate(zip(names, commands, strict=True)):
            child_env = dict(env)
            if cfg.metrics.enabled:
                child_env["STAMPLINE_METRICS__PORT"] = str(cfg.metrics.port + i)
            children.append(Child(name, [*base, *command, "--config", str(path)], child_env))
        supervisor = Supervisor(children)

        def report(message: str) -> None:
            err.print(f"run: {message}", highlight=False)

        report(f"{n} gate worker(s), recorder{', tap' if cfg.tap.topics else ''}; SIGTERM stops")
        supervisor.run(stop, report)
    if json_out:
        emit_json({"workers": n, "children": [c.to_dict() for c in supervisor.children]})
    err.print("run: stopped cleanly", highlight=False)
