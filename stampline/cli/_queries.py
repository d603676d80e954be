"""`stampline providers compare`, `stampline hotspots`, `stampline completeness`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from stampline.alerting import DefinitionError, load_alerts
from stampline.audit import (
    AuditError,
    broker_clock,
    completeness,
    format_ns,
    heatmap,
    hotspots,
    parse_sequence_key,
    providers_compare,
)
from stampline.cli._app import (
    ConfigOpt,
    DatabaseOpt,
    JsonOpt,
    StoreOpt,
    app,
    config_path,
    emit_json,
    fail,
    open_store_for_query,
    out,
    providers_app,
)
from stampline.cli._heatmap import render_heatmap
from stampline.config import ENV_CONFIG_FILE, ConfigError, load_config
from stampline.rules import format_duration, parse_duration_ns

AlertsOpt = Annotated[
    Path | None,
    typer.Option(
        "--alerts",
        help="Alert definitions whose registered providers must be there (default: the "
        "config's alerting.definitions); one that sent nothing is listed as absent.",
    ),
]


def _window(since: str, option: str = "--since", zero: bool = False) -> int:
    """A duration option's value in ns; ``zero`` allows 0 (a grace of none)."""
    try:
        ns = parse_duration_ns(since)
    except ValueError as exc:
        fail(f"{option}: {exc}", 2)
    if ns < 0 or (ns == 0 and not zero):
        fail(f"{option} must be {'zero or ' if zero else ''}positive (got {since!r})", 2)
    return ns


def _d(value: float | None) -> str:
    return "—" if value is None else format_duration(int(value))


def _lat(value: float | None, bound: int) -> str:
    """A latency as value ± bound; '?' marks one that is not a fact (negative or in bound)."""
    if value is None:
        return "—"
    mark = " ?" if value < 0 or value <= bound else ""
    return f"{format_duration(int(value))} ± {format_duration(bound)}{mark}"


def _expected(alerts: Path | None, config: Path | None) -> list[str]:
    """The registered providers: from --alerts, else the deployment's alert definitions."""
    if alerts is None and (config is not None or os.environ.get(ENV_CONFIG_FILE)):
        try:
            alerts = load_config(config_path(config)).alerting.definitions
        except ConfigError as exc:
            fail(str(exc))
    if alerts is None:
        return []
    try:
        return [p.provider for p in load_alerts(alerts).providers]
    except DefinitionError as exc:
        fail(f"alert definitions are not usable:\n{exc!s}")


def _absent(result: dict[str, Any]) -> None:
    """One line per registered provider that sent nothing in the window."""
    for a in result["absent"]:
        last = "never" if a["last_event_ns"] is None else format_ns(a["last_event_ns"])
        out.print(
            f"absent: {a['provider']}: nothing in the window; last event {last}, silent for "
            f"{format_duration(a['silent_for_ns'])} (since its {a['silent_since']})",
            highlight=False,
        )


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
    gap: Annotated[
        str, typer.Option(help="A pause between two origins longer than this is a silence.")
    ] = "1s",
    sustain: Annotated[
        str, typer.Option(help="Divergence counts as sustained when it holds this long.")
    ] = "5s",
    skew_bound: Annotated[
        str | None,
        typer.Option(help="Flag a clock offset this far from its peers' (default: clock bound)."),
    ] = None,
    alerts: AlertsOpt = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare providers: latency, clock offset, silences, sequence gaps, rate, divergence.

    Latency (p50, p99) is gate ingestion minus the provider's origin time, ± the gate's
    clock-error bound; '?' marks a latency that is negative or inside the bound. It splits at
    the record's broker timestamp: "to broker" is the provider's part (origin → broker),
    "gate queue" the gate's backlog (broker → gate), never the provider's. Clock offset is
    the smallest broker time − origin (transit plus skew; ingestion − origin only where no
    broker time was kept), flagged '!' when negative or off its peers'. Silences are pauses
    between origins longer than --gap; sequence gaps are missing numbers per provider and
    instrument. The rate is over the provider's active span. Divergence is from the
    cross-provider median, per second of origin time: max, sustained (held for --sustain)
    and median. A provider the alert definitions register (--alerts, or the config's) that
    sent nothing is a row marked absent, with the time since its last event or "never".
    Every column: docs/reports.md.
    """
    window, gap_ns = _window(since), _window(gap, "--gap")
    sustain_ns = _window(sustain, "--sustain")
    if sustain_ns % 1_000_000_000:
        fail(f"--sustain must be whole seconds (got {sustain!r})", 2)
    bound_ns = None if skew_bound is None else _window(skew_bound, "--skew-bound", zero=True)
    expected = _expected(alerts, config)
    result = _run(
        lambda st: providers_compare(
            st,
            window,
            by=by,
            gap_ns=gap_ns,
            sustain_s=sustain_ns // 1_000_000_000,
            skew_bound_ns=bound_ns,
            expected=expected,
        ),
        store,
        database,
        config,
    )
    if as_json:
        emit_json(result)
        return
    t = Table(title=f"providers over the last {(since)}", title_justify="left")
    cols = ["provider"] + (["instrument"] if by == "instrument" else [])
    cols += ["events", "p50", "p99", "to broker p99", "gate queue p99", "clock offset"]
    cols += ["silences", "longest", "seq gaps"]
    cols += ["missing", "upd/s", "dead %", "div max", "div held", "div p50"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("provider", "instrument") else "right")
    for r in result["rows"]:
        if r["absent"]:
            continue  # listed below the table
        b = r["clock_bound_ns"]
        offset = _d(r["clock_offset_ns"]) + (" !" if r["clock_flags"] else "")
        t.add_row(
            *(
                [(r["provider"] or "(unidentified)")]
                + ([(r["instrument"])] if by == "instrument" else [])
            ),
            f"{r['events']:,}",
            _lat(r["latency_p50_ns"], b),
            _lat(r["latency_p99_ns"], b),
            _d(r["to_broker_p99_ns"]),
            _d(r["gate_queue_p99_ns"]),
            offset,
            str(r["silences"]),
            format_duration(r["silence_longest_ns"]),
            str(r["sequence_gaps"]),
            f"{r['sequence_missing']:,}",
            "—" if r["updates_per_s"] is None else f"{r['updates_per_s']:.1f}",
            f"{100 * r['dead_lettered_share']:.2f}",
            *(_bps(r[k]) for k in ("divergence_bps_max", "divergence_bps_sustained")),
            _bps(r["divergence_bps_p50"]),
        )
    out.print(t)
    _absent(result)
    _to_broker_clocks(result["rows"])
    for r in result["rows"]:
        for flag in r["clock_flags"]:
            out.print(f"! {(r['provider'])}: {(flag)}", highlight=False)
    out.print(
        f"rate: {result['rate_basis']}; divergence in basis points, held = for "
        f"{result['sustain_s']}s",
        style="dim",
        highlight=False,
    )


def _to_broker_clocks(rows: list[dict[str, Any]]) -> None:
    """Which clock each provider's "to broker" column ends on, one line per clock."""
    by_clock: dict[str, list[str]] = {}
    for r in rows:
        if r.get("to_broker_clock") is not None:
            names = by_clock.setdefault(r["to_broker_clock"], [])
            if r["provider"] not in names:
                names.append(r["provider"] or "(unidentified)")
    for clock, names in sorted(by_clock.items()):
        out.print(
            f"to broker for {', '.join(names)}: {broker_clock(clock)}", style="dim", highlight=False
        )


def _bps(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


@app.command("hotspots")
def hotspots_cmd(
    since: Annotated[str, typer.Option(help="Window, counted back from the newest data.")] = "15m",
    heat: Annotated[
        bool, typer.Option("--heatmap", help="Draw stage pair × time, coloured by p99.")
    ] = False,
    buckets: Annotated[
        int, typer.Option(min=1, max=1000, help="Time buckets across the heat map.")
    ] = 30,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank every stage pair by p99 hop latency, with each stage's hold time and taps' lag.

    A hop runs from one stamp to the next (gate → risk, risk → a tap's topic); the gate's
    first hop splits at the record's broker time: origin → kafka:<topic> is the provider's,
    kafka:<topic> → gate the gate's queue. A decision's hop starts where its inputs left
    their last stage. Hold time is a stage's
    out − in. A tap measures hops up to the broker time and reports its own lag apart.
    Each latency carries the stamping hosts' combined clock-error bound; '?' marks one that
    is negative or inside it. --heatmap draws the hops over time instead (--json: the
    matrix). Every column: docs/reports.md.
    """
    window = _window(since)
    if heat:
        matrix = _run(lambda st: heatmap(st, window, buckets), store, database, config)
        if as_json:
            emit_json(matrix)
        else:
            out.print(render_heatmap(matrix, f"p99 hop latency over the last {since}"))
        return
    result = _run(lambda st: hotspots(st, window), store, database, config)
    if as_json:
        emit_json(result)
        return
    contested = result["contested"]
    if contested:
        out.print(
            "contested: "
            + ", ".join(f"{stage} {n:,}" for stage, n in sorted(contested.items()))
            + " (event, stage)s left out of every figure: chains hold different rows; "
            "`stampline audit verify` with every chain's head says which chain is real",
            highlight=False,
        )
    if not result["rows"] and not result["holds"]:
        out.print(_no_hops(store, database, config), highlight=False)
        return
    t = Table(title=f"hop latency over the last {(since)}, slowest first", title_justify="left")
    for c in ("hop", "hops", "p50", "p99", "p99.9", "max", "trend", "notes"):
        t.add_column(c, justify="left" if c in ("hop", "notes") else "right")
    for r in result["rows"]:
        b = r["clock_bound_ns"]
        t.add_row(
            (f"{r['from_stage']} → {r['to_stage']}"),
            f"{r['hops']:,}",
            _lat(r["p50_ns"], b),
            _lat(r["p99_ns"], b),
            _lat(r["p999_ns"], b),
            format_duration(r["max_ns"]),
            "—" if r["trend"] is None else f"×{r['trend']:.2f}",
            "; ".join(
                ([f"provider's part, {broker_clock(r['broker_clock'])}"]
                 if r.get("broker_clock") is not None else [])
                + r["flags"]
            ),
        )  # fmt: skip
    out.print(t)
    h = Table(title="hold time per stage (out − in)", title_justify="left")
    for c in ("stage", "events", "p50", "p99", "p99.9", "max"):
        h.add_column(c, justify="left" if c == "stage" else "right")
    for r in result["holds"]:
        b = r["clock_bound_ns"]
        h.add_row(
            (r["stage"]),
            f"{r['events']:,}",
            _lat(r["p50_ns"], b),
            _lat(r["p99_ns"], b),
            _lat(r["p999_ns"], b),
            format_duration(r["max_ns"]),
        )
    out.print(h)
    if result["tap_lags"]:
        lag = Table(
            title="taps' own lag (read − broker time; not pipeline latency)", title_justify="left"
        )
        for c in ("tap", "records", "p50", "p99", "max"):
            lag.add_column(c, justify="left" if c == "tap" else "right")
        for r in result["tap_lags"]:
            lag.add_row(
                (r["stage"]),
                f"{r['events']:,}",
                _d(r["p50_ns"]),
                _d(r["p99_ns"]),
                format_duration(r["max_ns"]),
            )
        out.print(lag)


def _no_hops(store: Path | None, database: str | None, config: Path | None) -> str:
    """Why ``hotspots`` has nothing to show, and what to do."""
    (row,) = _run(
        lambda st: st.query("SELECT count() AS n FROM {db}.observations"), store, database, config
    )
    if not int(row["n"]):
        return (
            "no hops: the store holds no trail rows yet. Start the pipeline (`stampline run "
            "--config FILE`) and produce to its raw topics (e.g. `stampline demo-feed`), or "
            "pass the store that holds them (--store PATH / --config FILE)."
        )
    return (
        "no hops: no event was stamped at two stages in the window (a hop runs from one stamp "
        "to the next: an event that only reached the gate has none). Widen --since, or stamp "
        "a later stage (the SDK) or tap a downstream topic (`tap.topics`)."
    )


@app.command("completeness")
def completeness_cmd(
    since: Annotated[str, typer.Option(help="Window, counted back from the newest data.")] = "1h",
    grace: Annotated[
        str,
        typer.Option(help="Events that left upstream this recently may be in flight (0s: none)."),
    ] = "5s",
    key: Annotated[
        str,
        typer.Option(
            help="What sequence numbers count per: provider, instrument, or provider,instrument."
        ),
    ] = "provider,instrument",
    limit: Annotated[int, typer.Option(min=0, help="List at most this many gaps.")] = 50,
    alerts: AlertsOpt = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per stage pair: events seen upstream but never downstream (lost) or seen twice.

    Stage to stage, the event id links the sightings. Origin to the gate, the provider's
    sequence numbers do, counted per --key (by default provider and instrument, as the
    sequence rule keys them): a missing number is lost, a number on two events is
    duplicated. Each gap is listed with its key, first missing number, size and time. A
    provider the alert definitions register (--alerts, or the config's) that sent nothing
    is listed as absent, with the time since its last event or "never".
    """
    window, grace_ns = _window(since), _window(grace, "--grace", zero=True)
    try:
        seq_key = parse_sequence_key(key)
    except ValueError as exc:
        fail(f"--key: {exc}", 2)
    expected = _expected(alerts, config)
    result = _run(
        lambda st: completeness(st, window, grace_ns, seq_key, limit, expected),
        store,
        database,
        config,
    )
    if as_json:
        emit_json(result)
        return
    t = Table(title=f"completeness over the last {(since)}", title_justify="left")
    for c in ("hop", "provider", "keys", "upstream", "lost", "duplicated"):
        t.add_column(c, justify="left" if c in ("hop", "provider") else "right")
    for r in result["rows"]:
        t.add_row(
            (f"{r['from_stage']} → {r['to_stage']}"),
            (r["provider"] or ""),
            "" if r["keys"] is None else f"{r['keys']:,}",
            f"{r['upstream']:,}",
            f"{r['lost']:,}",
            f"{r['duplicated']:,}",
        )
    out.print(t)
    _absent(result)
    if result["sequence_gaps"]:
        g = Table(
            title=f"sequence gaps (per {'+'.join(result['sequence_key'])}), oldest first",
            title_justify="left",
        )
        for c in ("at (gate time, UTC)", "stage", "key", "first missing", "size"):
            g.add_column(c, justify="right" if c in ("first missing", "size") else "left")
        for gap in result["sequence_gaps"]:
            g.add_row(
                format_ns(gap["at_ns"]),
                (gap["stage"]),
                ("/".join(gap["key"].values())),
                f"{gap['first_missing']:,}",
                f"{gap['size']:,}",
            )
        out.print(g)
    if result["unattributed"]:
        out.print(
            f"{result['unattributed']:,} record(s) reached the gate without a readable "
            "provider (dead-lettered as unreadable); missing sequence numbers may be those, "
            "received rather than lost.",
            highlight=False,
        )
