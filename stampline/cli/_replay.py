"""`stampline replay`: an event's or a decision's timeline."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from stampline._terminal import styled
from stampline.audit import (
    AuditError,
    ClockBound,
    NotFoundError,
    Sighting,
    Timeline,
    broker_clock,
    format_ns,
    replay_decision,
    replay_event,
    short_ids,
)
from stampline.cli._app import (
    ConfigOpt,
    DatabaseOpt,
    JsonOpt,
    StoreOpt,
    app,
    emit_json,
    fail,
    open_store_for_query,
    out,
)
from stampline.rules import format_duration


@app.command()
def replay(
    event_id: Annotated[str | None, typer.Argument(help="The event to replay.")] = None,
    decision: Annotated[
        str | None, typer.Option("--decision", "-d", help="Replay a decision and its lineage.")
    ] = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print every sighting of an event, or of a decision and all its inputs, in time order.

    Each line shows the stage, its UTC time to the nanosecond, the delta from the event's
    own origin and from the first origin in the lineage, the hop from the event's previous
    stamp and whose time it was (provider: born → on the broker; queue: on the broker → the
    gate took it in; hold: in → out), the stamping host's clock-error bound and where that
    bound came from (configured, chrony, or a fallback to the configured value when chrony
    was asked for and could not answer). Events are named by the tail of their id, the part
    that tells time-ordered ids apart.
    """
    if (event_id is None) == (decision is None):
        fail("give exactly one of EVENT_ID or --decision ID", 2)
    with open_store_for_query(store, database, config) as st:
        try:
            timeline = (
                replay_decision(st, decision) if decision else replay_event(st, event_id or "")
            )
        except ValueError as exc:
            fail(str(exc), 2)
        except NotFoundError as exc:
            fail(str(exc))
        except AuditError as exc:
            fail(f"the store could not answer: {exc}")
    if as_json:
        emit_json(timeline.to_dict())
    else:
        _print_timeline(timeline)


def _print_timeline(t: Timeline) -> None:
    roles = {e.event_id: e for e in t.events}
    names = short_ids([e.event_id for e in t.events])
    title = f"{t.kind} {t.root_id}: {len(t.events)} event(s), {len(t.sightings)} sightings"
    table = Table(title=title, title_justify="left")
    for col in (
        "time (UTC)",
        "Δ first",
        "Δ origin",
        "hop",
        "event",
        "role",
        "stage",
        "± clock",
        "bound from",
    ):
        table.add_column(
            col, justify="right" if col.startswith(("Δ", "±")) else "left", no_wrap=True
        )
    for s in t.sightings:
        e = roles[s.event_id]
        who = e.provider or e.role
        table.add_row(
            format_ns(s.stamp.time_ns),
            format_duration(s.delta_from_first_ns),
            "—" if s.delta_from_origin_ns is None else format_duration(s.delta_from_origin_ns),
            _hop(s),
            names[s.event_id],
            (f"{e.role} {who}" if e.provider else e.role),
            (s.stamp.stage)
            + (
                f" ({'tap lag' if s.stamp.tap else 'held'} "
                f"{format_duration(s.stamp.time_ns - s.stamp.received_ns)})"
                if s.stamp.received_ns
                else ""
            )
            + (f" ({broker_clock(s.stamp.time_type)})" if s.stamp.kind == "broker" else "")
            + (" CONTESTED" if s.stamp.contested else ""),
            format_duration(s.stamp.clock_err_ns) if s.stamp.clock_err_ns is not None else "?",
            _source(s.stamp.clock_source) if s.stamp.clock_err_ns is not None else "",
        )
    out.print(table)
    for e in t.events:
        for stage, chains in e.contested:
            out.print(
                styled(
                    f"{e.event_id} {stage}: CONTESTED: chains {', '.join(chains)} hold different "
                    "rows for it; the one shown is not a verdict. Run `stampline audit verify` "
                    "with every chain's head to tell a made-up chain from a real one",
                    "bold red",
                )
            )
        if not e.stamps:
            out.print(styled(f"input {e.event_id} was never observed by stampline", "yellow"))
        elif e.outcome == "dead_lettered" and not e.verdicts:
            out.print(styled(f"{e.event_id} was dead-lettered by {e.rule_id}", "red"))
        for v in e.verdicts:
            what = "dead-lettered by" if v.severity == "reject" else "forwarded with a warning:"
            colour = "red" if v.severity == "reject" else "yellow"
            out.print(
                styled(f"{e.event_id} {what} {v.rule_id}@v{v.rule_version}: {v.reason}", colour)
            )
    fallbacks = {s.stamp.host for s in t.sightings if s.stamp.clock_source.startswith("fallback")}
    if fallbacks:
        out.print(
            styled(
                f"bound on {', '.join(sorted(fallbacks))} is the configured value: chrony was "
                "asked for and could not answer (see the bound-from column)",
                "yellow",
            )
        )


def _hop(s: Sighting) -> str:
    """The hop that ends at this sighting and whose it was: "+348.7ms queue"."""
    if s.hop_ns is None:
        return ""
    return f"+{format_duration(s.hop_ns)}" + (f" {s.hop_owner}" if s.hop_owner else "")


def _source(label: str) -> str:
    b = ClockBound.from_label(label, 0)
    if b.kind == "chrony":
        return f"chrony (offset {format_duration(b.offset_ns or 0)})"
    if b.kind == "fallback":
        return f"fallback: {b.reason}"
    return b.kind
