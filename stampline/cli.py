"""The ``stampline`` command."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.table import Table

from audit import (
    AuditError,
    ChdbStore,
    NotFoundError,
    Timeline,
    format_ns,
    replay_decision,
    replay_event,
)
from rules import RuleFileError, format_duration
from stampline import __version__
from stampline.config import ENV_CONFIG_FILE, ConfigError, build_rules, check_config, load_config

app = typer.Typer(
    help="Audit streaming pipelines for latency and data quality.\n\n"
    "Start with `stampline demo`, then replay the decision it prints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check deployment configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

# Piped output keeps whole lines: tables are for people, --json is for scripts.
out = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _emit_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        out.print(f"stampline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what the sidecars do.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


# ---------------------------------------------------------------- config


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The deployment's YAML file.")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a configuration file and the rule files it names; list every problem.

    Each problem names the file and line, the key path and the bad value. Exit status 1
    when there is any problem, 0 when the file is ready to deploy.
    """
    config, problems = check_config(file)
    if as_json:
        _emit_json(
            {"file": str(file), "ok": not problems, "problems": [p.to_dict() for p in problems]}
        )
    elif problems:
        for p in problems:
            err.print(p.render(file), highlight=False, markup=False)
        err.print(f"{len(problems)} problem(s) in {file}")
    else:
        assert config is not None
        out.print(
            f"{file}: ok — raw {', '.join(config.topics.raw)} → clean {config.topics.clean}, "
            f"dead letters {config.topics.dead_letter}, store {config.store.backend} at "
            f"{config.store.path}, {len(config.rules.files)} rule file(s)",
            highlight=False,
        )
    if problems:
        raise typer.Exit(1)


# ---------------------------------------------------------------- gate


def _config_path(config: Path | None) -> Path:
    if config is not None:
        return config
    env = os.environ.get(ENV_CONFIG_FILE)
    if env:
        return Path(env)
    _fail(f"no configuration: pass --config FILE or set ${ENV_CONFIG_FILE}", 2)


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=f"Deployment YAML (default: ${ENV_CONFIG_FILE})."),
]


@app.command()
def gate(config: ConfigOpt = None) -> None:
    """Run the gate: raw feed → rules → clean topic or dead letters, one trail row per event.

    Runs until SIGTERM or Ctrl-C, then writes what is pending, commits and exits 0.
    Progress goes to stderr every few seconds.
    """
    from collectors import Gate
    from stampline.broker import EmbeddedBroker, ensure_topics
    from stampline.wiring import gate_settings, open_store

    path = _config_path(config)
    try:
        cfg = load_config(path)
        rules = build_rules(cfg)
    except (ConfigError, RuleFileError) as exc:
        _fail(f"{path}: configuration is not usable:\n{exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker() if cfg.broker.embedded else nullcontext() as broker:
        bootstrap = broker.bootstrap_servers if broker else cfg.broker.bootstrap_servers
        assert bootstrap is not None
        if cfg.topics.create_missing:
            ensure_topics(
                bootstrap,
                [*cfg.topics.raw, cfg.topics.clean, cfg.topics.dead_letter],
                cfg.topics.partitions,
            )
        with open_store(cfg) as store:
            the_gate = Gate(gate_settings(cfg, bootstrap), rules, store)
            err.print(
                f"gate: {', '.join(cfg.topics.raw)} at {bootstrap} → {cfg.topics.clean} "
                f"/ {cfg.topics.dead_letter}; trail in {cfg.store.path}",
                highlight=False,
            )
            last = [0.0]

            def report(stats: Any) -> None:
                import time

                if time.monotonic() - last[0] >= 5:
                    last[0] = time.monotonic()
                    err.print(
                        f"gate: in {stats.events_in:,} forwarded {stats.forwarded:,} "
                        f"dead-lettered {stats.dead_lettered_total:,}",
                        highlight=False,
                    )

            the_gate.run(stop, on_flush=report)
            s = the_gate.stats
            err.print(
                f"gate: stopped cleanly; in {s.events_in:,} forwarded {s.forwarded:,} "
                f"dead-lettered {s.dead_lettered_total:,}",
                highlight=False,
            )


# ---------------------------------------------------------------- replay


def _open_store_for_query(
    store: Path | None, database: str | None, config: Path | None
) -> ChdbStore:
    if store is None:
        if config is None and not os.environ.get(ENV_CONFIG_FILE):
            _fail("say which trail: --store PATH (a chDB folder) or --config FILE", 2)
        try:
            cfg = load_config(_config_path(config))
        except ConfigError as exc:
            _fail(str(exc))
        store, database = cfg.store.path, database or cfg.store.database
    if not store.is_dir():
        _fail(f"no store at {store} (run `stampline demo` first, or pass the right --store)")
    return ChdbStore(store, database or "stampline")


@app.command()
def replay(
    event_id: Annotated[str | None, typer.Argument(help="The event to replay.")] = None,
    decision: Annotated[
        str | None, typer.Option("--decision", "-d", help="Replay a decision and its lineage.")
    ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="chDB store folder.")] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="Database in the store.")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print every sighting of an event, or of a decision and all its inputs, in time order.

    Each line shows the stage, its UTC time to the nanosecond, the delta from the event's
    own origin and from the first origin in the lineage, and the stamping host's
    clock-error bound.
    """
    if (event_id is None) == (decision is None):
        _fail("give exactly one of EVENT_ID or --decision ID", 2)
    with _open_store_for_query(store, database, config) as st:
        try:
            timeline = (
                replay_decision(st, decision) if decision else replay_event(st, event_id or "")
            )
        except ValueError as exc:
            _fail(str(exc), 2)
        except NotFoundError as exc:
            _fail(str(exc))
        except AuditError as exc:
            _fail(f"the store could not answer: {exc}")
    if as_json:
        _emit_json(timeline.to_dict())
    else:
        _print_timeline(timeline)


def _print_timeline(t: Timeline) -> None:
    roles = {e.event_id: e for e in t.events}
    title = f"{t.kind} {t.root_id}: {len(t.events)} event(s), {len(t.sightings)} sightings"
    table = Table(title=title, title_justify="left")
    for col in ("time (UTC)", "Δ first", "Δ origin", "event", "role", "stage", "± clock"):
        table.add_column(
            col, justify="right" if col.startswith(("Δ", "±")) else "left", no_wrap=True
        )
    for s in t.sightings:
        e = roles[s.event_id]
        who = e.provider or e.role
        table.add_row(
            format_ns(s.stamp.time_ns),
            format_duration(s.delta_from_first_ns),
            format_duration(s.delta_from_origin_ns),
            s.event_id[:8],
            f"{e.role} {who}" if e.provider else e.role,
            s.stamp.stage
            + (
                f" (held {format_duration(s.stamp.time_ns - s.stamp.received_ns)})"
                if s.stamp.received_ns
                else ""
            ),
            format_duration(s.stamp.clock_err_ns) if s.stamp.clock_err_ns is not None else "?",
        )
    out.print(table)
    for e in t.events:
        if not e.stamps:
            out.print(f"[yellow]input {e.event_id} was never observed by stampline[/]")
        elif e.outcome == "dead_lettered":
            out.print(f"[red]{e.event_id} was dead-lettered by {e.rule_id}[/]")


# ---------------------------------------------------------------- demo


@app.command()
def demo(
    store: Annotated[
        Path, typer.Option("--store", help="Folder for the demo's trail (wiped first).")
    ] = Path(".stampline-demo/store"),
    rounds: Annotated[
        int, typer.Option(min=5, max=10_000, help="Feed rounds (150 events each).")
    ] = 40,
    as_json: JsonOpt = False,
) -> None:
    """Run a synthetic market-data feed through the whole pipeline on embedded parts.

    Starts an embedded broker and store, feeds 3 providers × 50 instruments with injected
    faults (a silent provider, bad records of ten kinds, a latency spike, clock skew)
    through the gate and a decision stage built with the SDK, then prints a summary and
    the command that replays one decision.
    """
    from stampline._feed import FeedPlan
    from stampline.demo import DemoError, run_demo

    def progress(message: str) -> None:
        err.print(f"[dim]demo:[/] {message}", highlight=False)

    try:
        result = run_demo(store, plan=FeedPlan(rounds=rounds), progress=progress)
    except DemoError as exc:
        _fail(str(exc))
    summary = result.summary
    if as_json:
        _emit_json(summary)
        return
    _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    total_dead = sum(s["dead_lettered"].values())
    out.print(
        f"\n[bold]events in[/] {s['events_in']:,}   [bold]forwarded[/] {s['forwarded']:,}   "
        f"[bold]dead-lettered[/] {total_dead:,}   [bold]decisions[/] {s['decisions']:,}"
    )
    dl = Table(title="dead letters by rule", title_justify="left")
    dl.add_column("rule")
    dl.add_column("records", justify="right")
    for rule, n in s["dead_lettered"].items():
        dl.add_row(rule, str(n))
    out.print(dl)
    pt = Table(title="providers (latency = gate ingestion − origin)", title_justify="left")
    for col in ("provider", "events", "forwarded", "dead", "p50 ms", "p99 ms", "max gap ms"):
        pt.add_column(col, justify="left" if col == "provider" else "right")
    for name, p in s["providers"].items():
        pt.add_row(
            name,
            f"{p['events']:,}",
            f"{p['forwarded']:,}",
            str(p["dead_lettered"]),
            f"{p['latency_p50_ms']:.2f}",
            f"{p['latency_p99_ms']:.2f}",
            str(p["max_gap_ms"]),
        )
    out.print(pt)
    for name, p in s["providers"].items():
        if p["latency_p50_ms"] < 0:
            out.print(
                f"[yellow]{name}: origin times are later than ingestion — its clock runs "
                "ahead of the gate's; latencies from it are not facts[/]"
            )
    st = Table(title="stages (time from taking an event in to letting it go)", title_justify="left")
    for col in ("stage", "events", "p50 ms", "p99 ms"):
        st.add_column(col, justify="left" if col == "stage" else "right")
    for name, v in s["stages"].items():
        st.add_row(name, f"{v['events']:,}", f"{v['p50_ms']:.3f}", f"{v['p99_ms']:.3f}")
    out.print(st)
    out.print(
        f"slowest decision [bold]{s['decision_id']}[/] spent {s['decision_stage_ms']} ms "
        f"in stage risk.\nreplay it:  [bold]{s['replay_command']}[/]",
        highlight=False,
    )


# ---------------------------------------------------------------- broker


@app.command()
def broker() -> None:
    """Run the embedded Kafka-protocol broker (Tansu, in memory) until Ctrl-C.

    Prints its bootstrap address; point `broker.bootstrap_servers` or any Kafka client at
    it. Data lives in memory and is gone when it stops.
    """
    from stampline.broker import BrokerError, EmbeddedBroker

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with EmbeddedBroker() as b:
            out.print(b.bootstrap_servers, highlight=False)
            sys.stdout.flush()
            stop.wait()
    except BrokerError as exc:
        _fail(str(exc))


def main() -> None:
    app()
