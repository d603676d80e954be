"""`stampline demo`: the whole pipeline on embedded parts."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from stampline._terminal import line, styled
from stampline.cli._app import JsonOpt, app, emit_json, err, fail, out


@app.command()
def demo(
    store: Annotated[
        Path,
        typer.Option("--store", help="Folder for the demo's store, config and logs (wiped first)."),
    ] = Path(".stampline-demo/store"),
    rounds: Annotated[
        int, typer.Option(min=5, max=10_000, help="Feed rounds (150 events each).")
    ] = 40,
    as_json: JsonOpt = False,
) -> None:
    """Run a synthetic market-data feed through the whole pipeline on embedded parts.

    The demo is `stampline run` plus a feed and a decision stage: it starts an embedded
    broker, writes a deployment config into the store folder (`stampline.yaml`) and starts
    the gate, the tap and the recorder from it as child processes (logs in `logs/`); query
    it live meanwhile with `stampline hotspots --config <that file>`. A child that exits
    early fails the demo, naming it. It feeds 3 providers × 50 instruments with injected
    faults (a silent provider, a sequence gap, a sustained price divergence and a one-round
    price spike, bad records of ten kinds, a latency spike, clock skew) through the gate and
    a decision stage built with the SDK, then prints a summary — with the alerts raised and
    resolved (the spike raises none) — and the command that replays one decision.
    """
    from stampline._feed import FeedPlan
    from stampline.broker import BrokerError
    from stampline.demo import DemoError, run_demo

    def progress(message: str) -> None:
        err.print(line(("demo:", "dim"), f" {message}"), highlight=False)

    def stopped(*_: object) -> None:
        raise KeyboardInterrupt  # unwinds run_demo, which stops its children and broker

    # SIGTERM's default would end this process at once and leave the children running.
    signal.signal(signal.SIGTERM, stopped)
    try:
        result = run_demo(store, plan=FeedPlan(rounds=rounds), progress=progress)
    except (DemoError, BrokerError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("stopped before the end (its children are stopped too)")
    summary = result.summary
    if as_json:
        emit_json(summary)
        return
    _print_summary(summary)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _print_summary(s: dict[str, Any]) -> None:
    total_dead = sum(s["dead_lettered"].values())
    out.print()
    out.print(
        line(
            ("events in", "bold"),
            f" {s['events_in']:,}   ",
            ("forwarded", "bold"),
            f" {s['forwarded']:,}   ",
            ("dead-lettered", "bold"),
            f" {total_dead:,}   ",
            ("decisions", "bold"),
            f" {s['decisions']:,}",
        )
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
            _ms(p["latency_p50_ms"]),
            _ms(p["latency_p99_ms"]),
            str(p["max_gap_ms"]) if p["forwarded"] else "—",
        )
    out.print(pt)
    for name, p in s["providers"].items():
        if p["latency_p50_ms"] is not None and p["latency_p50_ms"] < 0:
            out.print(
                styled(
                    f"{name}: origin times are later than ingestion — its clock runs "
                    "ahead of the gate's; latencies from it are not facts",
                    "yellow",
                )
            )
    alerts = s.get("alerts", [])
    at = Table(title="alerts (docs/alerting.md)", title_justify="left")
    for col in ("alert", "labels", "fired at", "resolved at", "summary"):
        at.add_column(col)
    for a in alerts:
        at.add_row(
            (a["id"]),
            (" ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))),
            a["fired_at"] or "—",
            a["resolved_at"] or "still firing",
            (a["summary"]),
        )
    if alerts:
        out.print(at)
    st = Table(title="stages (time from taking an event in to letting it go)", title_justify="left")
    for col in ("stage", "events", "p50 ms", "p99 ms"):
        st.add_column(col, justify="left" if col == "stage" else "right")
    for name, v in s["stages"].items():
        st.add_row(name, f"{v['events']:,}", f"{v['p50_ms']:.3f}", f"{v['p99_ms']:.3f}")
    out.print(st)
    out.print(
        line(
            "slowest decision ",
            (s["decision_id"], "bold"),
            f" spent {s['decision_stage_ms']} ms in stage risk.",
        ),
        highlight=False,
    )
    out.print(line("replay it:  ", (s["replay_command"], "bold")), highlight=False)
    out.print(line("evidence for a regulator:  ", (s["evidence_command"], "bold")), highlight=False)
