"""`stampline providers compare`, `stampline hotspots`, `stampline completeness`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from audit import AuditError, completeness, hotspots, providers_compare
from rules import format_duration, parse_duration_ns
from stampline.cli._app import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    fail,
    open_store_for_query,
    out,
    providers_app,
)

StoreOpt = Annotated[Path | None, typer.Option("--store", help="chDB store folder.")]
DatabaseOpt = Annotated[str | None, typer.Option("--database", help="Database in the store.")]


def _window(since: str) -> int:
    try:
        ns = parse_duration_ns(since)
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    if ns <= 0:
        fail(f"--since must be positive (got {since!r})", 2)
    return ns


def _lat(value: float | None, bound: int) -> str:
    """A latency as value ± bound; '?' marks one that is not a fact (negative or in bound)."""
    if value is None:
        return "—"
    mark = " ?" if value < 0 or value <= bound else ""
    return f"{format_duration(int(value))} ± {format_duration(bound)}{mark}"


def _run(fn: Any, store: Path | None, database: str | None, config: Path | None) -> Any:
    try:
        with open_store_for_query(store, database, config) as st:
            return fn(st)
    except AuditError as exc:
        fail(f"the store could not answer: {exc}")


@providers_app.command("compare")
def compare(
    since: Annotated[str, typer.Option(help="Window, counted back from the newest data.")] = "1h",
    by: Annotated[
        Literal["provider", "instrument"],
        typer.Option(help="One row per provider or per instrument."),
    ] = "provider",
    gap: Annotated[str, typer.Option(help="A pause longer than this is a gap.")] = "1s",
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare providers: latency p50/p99/p999, gaps, update rate, dead letters, divergence.

    Latency is gate ingestion minus the provider's origin time, ± the gate's clock-error
    bound (the provider's own clock is unknown); a '?' marks a latency that is negative or
    inside the bound. Divergence is the distance, in basis points, of each provider's last
    price per instrument and minute from the median across providers.
    """
    window, gap_ns = _window(since), _window(gap)
    result = _run(
        lambda st: providers_compare(st, window, by=by, gap_ns=gap_ns), store, database, config
    )
    if as_json:
        emit_json(result)
        return
    t = Table(title=f"providers over the last {since}", title_justify="left")
    cols = ["provider"] + (["instrument"] if by == "instrument" else [])
    cols += ["events", "p50", "p99", "p99.9", "gaps", "gap time", "upd/s", "dead %", "div bps"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("provider", "instrument") else "right")
    for r in result["rows"]:
        b = r["clock_bound_ns"]
        div = r["divergence_bps_p50"]
        t.add_row(
            *(
                [r["provider"] or "(unidentified)"]
                + ([r["instrument"]] if by == "instrument" else [])
            ),
            f"{r['events']:,}",
            _lat(r["latency_p50_ns"], b),
            _lat(r["latency_p99_ns"], b),
            _lat(r["latency_p999_ns"], b),
            str(r["gaps"]),
            format_duration(r["gap_total_ns"]),
            f"{r['updates_per_s']:.1f}",
            f"{100 * r['dead_lettered_share']:.2f}",
            "—" if div is None else f"{div:.1f}",
        )
    out.print(t)


@app.command("hotspots")
def hotspots_cmd(
    since: Annotated[str, typer.Option(help="Window, counted back from the newest data.")] = "15m",
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank stage pairs by p99 hop latency, with the trend against the window before.

    A hop is the time from one stamp to the next (origin → first stage, stage → stage), read
    from the per-minute rollup. Each latency carries the two stamping hosts' combined
    clock-error bound; '?' marks one that is negative or inside it.
    """
    window = _window(since)
    result = _run(lambda st: hotspots(st, window), store, database, config)
    if as_json:
        emit_json(result)
        return
    t = Table(title=f"hop latency over the last {since}, slowest first", title_justify="left")
    for c in ("hop", "hops", "p50", "p99", "p99.9", "trend", "notes"):
        t.add_column(c, justify="left" if c in ("hop", "notes") else "right")
    for r in result["rows"]:
        b = r["clock_bound_ns"]
        t.add_row(
            f"{r['from_stage']} → {r['to_stage']}",
            f"{r['hops']:,}",
            _lat(r["p50_ns"], b),
            _lat(r["p99_ns"], b),
            _lat(r["p999_ns"], b),
            "—" if r["trend"] is None else f"×{r['trend']:.2f}",
            "; ".join(r["flags"]),
        )
    out.print(t)


@app.command("completeness")
def completeness_cmd(
    since: Annotated[str, typer.Option(help="Window, counted back from the newest data.")] = "1h",
    grace: Annotated[
        str, typer.Option(help="Events that left upstream this recently may be in flight.")
    ] = "5s",
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per stage pair: events seen upstream but never downstream (lost) or seen twice.

    Stage to stage, the event id links the sightings; origin to the first stage, each
    provider's sequence numbers do (a missing number is lost, a number on two events is
    duplicated).
    """
    window, grace_ns = _window(since), _window(grace)
    result = _run(lambda st: completeness(st, window, grace_ns), store, database, config)
    if as_json:
        emit_json(result)
        return
    t = Table(title=f"completeness over the last {since}", title_justify="left")
    for c in ("hop", "provider", "upstream", "lost", "duplicated"):
        t.add_column(c, justify="left" if c in ("hop", "provider") else "right")
    for r in result["rows"]:
        t.add_row(
            f"{r['from_stage']} → {r['to_stage']}",
            r["provider"] or "",
            f"{r['upstream']:,}",
            f"{r['lost']:,}",
            f"{r['duplicated']:,}",
        )
    out.print(t)
    if result["unattributed"]:
        out.print(
            f"{result['unattributed']:,} record(s) reached the first stage without a readable "
            "provider (dead-lettered as unreadable); missing sequence numbers may be those, "
            "received rather than lost.",
            highlight=False,
        )
