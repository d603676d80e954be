"""`stampline run`: a whole deployment from one file, as supervised child processes."""

from __future__ import annotations

import signal
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
    """Run a deployment: the gates, the tap (if `tap.topics`), and the recorder; with alert
    definitions and several gates, also their one provider watch (`alerts watch`, over
    `alerting.facts_topic`; alerts reach the store through `alerting.topic`; both default to
    `<trail topic>.alert-facts` and `<trail topic>.alerts`).

    Each part runs as its own process, supervised: a child that exits is reported and
    restarted with back-off (0.5 s doubling to 30 s). With `broker.embedded: true` one
    embedded broker is started here and shared by every child. With `metrics.enabled`,
    each child serves its own /metrics: gate workers on `metrics.port`, `port+1`, …, then
    the recorder, then the tap. On the embedded store the recorder serves live read-only
    queries: run `stampline replay`, `hotspots`, … with the same --config meanwhile.
    SIGTERM or Ctrl-C stops every child cleanly (each commits what it did) and exits 0. On
    Linux, if `run` is killed outright (SIGKILL, OOM), its children and broker get SIGTERM
    and stop the same way.
    """
    from stampline import _deployment
    from stampline._supervisor import Supervisor
    from stampline.broker import EmbeddedBroker, ensure_topics

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
        if cfg.topics.create_missing:
            ensure_topics(bootstrap, _deployment.topics(cfg), cfg.topics.partitions)
        n, partitions = _deployment.gate_workers(cfg, bootstrap, workers)
        if workers and workers > n:
            err.print(f"run: {workers} workers asked, {n} started (raw partitions: {partitions})")
        # Several gates: one provider watch for all of them, over the facts topic.
        env = _deployment.watch_env(cfg, n)
        if env and cfg.topics.create_missing:
            ensure_topics(bootstrap, list(env.values()), cfg.topics.partitions)
        children = _deployment.children(cfg, path, bootstrap, n, env=env)
        supervisor = Supervisor(children)

        def report(message: str) -> None:
            err.print(f"run: {message}", highlight=False)

        rest = [c.name for c in children if not c.name.startswith("gate-")]
        report(f"{n} gate worker(s), {', '.join(rest)}; SIGTERM stops")
        supervisor.run(stop, report)
    if json_out:
        emit_json({"workers": n, "children": [c.to_dict() for c in supervisor.children]})
    err.print("run: stopped cleanly", highlight=False)
