"""`stampline run`: a whole deployment from one file, as supervised child processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stampline.cli._app import ConfigOpt, JsonOpt, app, emit_json, err, fail

EXIT_CHILD_FAILING = 3  # a child never came up, or was crash-looping or down at stop
LOG_DIR = "stampline-logs"  # children's logs, beside the config file unless --log-dir


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
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            help=f"Where each child logs, to `<name>.log`, appended (default: {LOG_DIR}/ "
            "beside the config file).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a deployment: the gates, the tap (if `tap.topics`), and the recorder; with alert
    definitions and several gates, also their one provider watch (`alerts watch`, over
    `alerting.facts_topic`; alerts reach the store through `alerting.topic`; both default to
    `<trail topic>.alert-facts` and `<trail topic>.alerts`).

    Each part runs as its own process, supervised, and logs to `<name>.log` in the log
    folder (`--log-dir`; default `stampline-logs/` beside the config file). A child that
    exits is reported with the last line it logged and restarted with back-off (0.5 s
    doubling to 30 s, reset once it has stayed up 60 s: it *came up*). With
    `broker.embedded: true` one embedded broker is started here and shared by every child.
    With `metrics.enabled`, each child serves its own /metrics: gate workers on
    `metrics.port`, `port+1`, …, then the recorder, then the tap. On the embedded store the
    recorder serves live read-only queries: run `stampline replay`, `hotspots`, … with the
    same --config meanwhile.

    SIGTERM or Ctrl-C stops every child cleanly (each commits what it did). `run` then exits
    0, or 3 when a child was failing: it exited twice in a row within 60 s of starting and
    has not stayed up 60 s since (crash-looping, or it never came up), or it was down
    waiting to restart; one line per such child names it and its last log line. Exit 1: the
    configuration or the log folder is not usable. On Linux, if `run` is killed outright
    (SIGKILL, OOM), its children and broker get SIGTERM and stop the same way.
    """
    from stampline import _deployment
    from stampline._supervisor import Supervisor
    from stampline.broker import ensure_topics
    from stampline.cli._start import broker, start_sidecar

    started = start_sidecar(config.resolve() if config is not None else None)
    path, cfg, stop = started.path.resolve(), started.config, started.stop
    logs = log_dir if log_dir is not None else path.parent / LOG_DIR
    try:
        logs.mkdir(mode=0o700, parents=True, exist_ok=True)  # logs may quote payload bytes
    except OSError as exc:
        fail(f"the log folder is not usable ({exc}): pass --log-dir DIR")
    with broker(cfg) as bootstrap:
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
        children = _deployment.children(cfg, path, bootstrap, n, log_dir=logs, env=env)
        supervisor = Supervisor(children)

        def report(message: str) -> None:
            err.print(f"run: {message}", highlight=False)

        rest = [c.name for c in children if not c.name.startswith("gate-")]
        report(f"{n} gate worker(s), {', '.join(rest)}; SIGTERM stops")
        report(f"children's logs in {logs}")
        supervisor.run(stop, report)
    failing = supervisor.failing()
    if json_out:
        emit_json(
            {
                "workers": n,
                "children": [c.to_dict() for c in supervisor.children],
                "failing": [c.name for c in failing],
            }
        )
    for child in failing:
        report(child.trouble())
    if failing:
        report(f"stopped; {len(failing)} child(ren) failing (log: {logs})")
        raise typer.Exit(EXIT_CHILD_FAILING)
    err.print("run: stopped cleanly", highlight=False)
