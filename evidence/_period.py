"""Clock compliance over a period: per stamping host and stage, how its bound behaved.

For every stamp stampline's own sidecars made in [FROM, TO) (one per event and stage, read
through the ``trail`` view, migration 033): the bound's percentiles, the share of stamps and of time
within the tier, excursions (maximal runs of stamps whose bound exceeds the tier: start,
end, duration, peak), the granularity the stamps themselves show, and where the bound came
from. Runs are found in the store with window functions, so one row comes back per run,
not per stamp. FROM and TO are times, or relative to now (``now-1h..now``,
:func:`parse_period`): what a clock alert's ``investigate`` command names.

A stamp two hash chains hold differently (``contested``) is in no figure: its host, time and
bound are whichever row the view shows, and which chain is real only ``audit verify`` with the
heads can say. The report lists them per stage instead, with the time their rows (every
chain's) span, which the chart marks as contested.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from stampline._common import parse_duration_ns
from stampline.audit import (
    TAP_SIGHTING,
    UNCONTESTED,
    ClockBound,
    Store,
    VerifyReport,
    contested_keys,
    contested_params,
    format_ns,
    one_per_stage,
)
from stampline.evidence._chain import SCHEME, read_chain_heads, verify_command
from stampline.evidence._evidence import (
    SCHEMA,
    Context,
    Evidence,
    produced,
    regime_block,
    verified_block,
)
from stampline.evidence._regime import BROKER_RESOLUTION_NS

# The events with a stamp in the period, read from the table (its `received` minmax index
# prunes the parts outside it).
_IN_PERIOD = """received >= fromUnixTimestamp64Nano({lo:Int64}, 'UTC')
  AND received < fromUnixTimestamp64Nano({hi:Int64}, 'UTC')
  AND clock_err_ns > 0 AND ({host:String} = '' OR host = {host:String})"""
_EVENTS = f"SELECT event_id FROM {{db}}.observations WHERE {_IN_PERIOD}"

# The stamps of the period: one per (event, stage) through the `trail` view, the one rule for
# which row counts (the stamper's own row first; its event_id filter reaches the primary
# index); a contested one counts in no figure. ``broker``: a tap's own sighting, timed by the
# broker's millisecond timestamp (evidence._evidence). ``allowed``: the divergence the tier
# declared for the stage allows.
_STAMPS = f"""
SELECT host, stage, toUnixTimestamp64Nano(received) AS t, clock_err_ns AS bound,
       toUnixTimestamp64Nano(emitted) AS emitted_ns, clock_source,
       {TAP_SIGHTING} AND received != emitted AS broker,
       if(broker, bound - least(bound, {BROKER_RESOLUTION_NS}), bound) AS divergence,
       transform(stage, {{stages:Array(String)}}, {{limits:Array(UInt64)}}, {{limit:UInt64}})
           AS allowed
FROM {one_per_stage(_EVENTS)}
WHERE {_IN_PERIOD} AND {UNCONTESTED}
"""

# The (event, stage)s of the period's events that chains hold differently (the `trail` view's
# rule, migration 033), and the time every chain's rows of each span in the period.
_CONTESTED = contested_keys(_EVENTS)
_CONTESTED_SPAN = f"""
SELECT event_id, stage, toUnixTimestamp64Nano(min(received)) AS first_t,
       toUnixTimestamp64Nano(max(received)) AS last_t
FROM {{db}}.observations WHERE {_IN_PERIOD} AND NOT {UNCONTESTED}
GROUP BY event_id, stage
"""

_GRANULARITY = (
    f"if(broker, {BROKER_RESOLUTION_NS}, multiIf("
    + ", ".join(f"emitted_ns % {10 ** (k + 1)} != 0, {10**k}" for k in range(9))
    + ", 1000000000))"
)

_SUMMARY = f"""
SELECT host, stage, count() AS stamps,
       quantilesExact(0.5, 0.99)(bound) AS q, min(bound) AS lo, max(bound) AS hi,
       countIf(divergence <= allowed) AS within,
       min({_GRANULARITY}) AS granularity, max(broker) AS by_broker,
       min(t) AS first_t, max(t) AS last_t
FROM ({_STAMPS}) GROUP BY host, stage ORDER BY host, stage
"""

_SOURCES = f"""
SELECT host, stage, clock_source, count() AS stamps, max(bound) AS bound
FROM ({_STAMPS}) GROUP BY host, stage, clock_source ORDER BY host, stage, clock_source
"""

# Runs of stamps on the same side of the tier's limit, per host and stage, in time order.
_RUNS = f"""
SELECT host, stage, run, any(out) AS out, min(t) AS start, max(t) AS last, max(bound) AS peak,
       count() AS stamps
FROM (
    SELECT host, stage, t, bound, out,
           sum(changed) OVER (PARTITION BY host, stage ORDER BY t
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
    FROM (
        SELECT host, stage, t, bound, divergence > allowed AS out,
               out != lagInFrame(out, 1, 2) OVER (PARTITION BY host, stage ORDER BY t
                                             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS changed
        FROM ({_STAMPS})
    )
)
GROUP BY host, stage, run ORDER BY host, stage, run
"""


def parse_period(text: str, now_ns: int | None = None) -> tuple[int, int]:
    """``FROM..TO`` as nanoseconds since the epoch. Each end is an ISO-8601 time (one
    without a zone is UTC), ``now``, or ``now-DURATION`` (``now-1h``, ``now-1h30m``: the
    durations of the alert definitions), counted from ``now_ns`` (default: the clock now),
    so an alert can name a period that is still right when someone runs its command.

    Raises:
        ValueError: not two times joined by ``..``, unreadable, or TO not after FROM.
    """
    parts = text.split("..")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ValueError(
            f"period {text!r} is not FROM..TO (e.g. 2026-11-27T09:00Z..2026-11-27T17:30Z, "
            "or now-1h..now)"
        )
    now = time.time_ns() if now_ns is None else now_ns
    lo, hi = (_parse_time(p.strip(), now) for p in parts)
    if hi <= lo:
        raise ValueError(f"period {text!r} ends before it starts")
    return lo, hi


def _parse_time(text: str, now_ns: int) -> int:
    if text == "now":
        return now_ns
    if text.startswith("now-"):
        try:
            return now_ns - parse_duration_ns(text.removeprefix("now-"))
        except ValueError:
            raise ValueError(f"{text!r} is not now-DURATION (e.g. now-1h, now-90m)") from None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time, now or now-DURATION") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1_000


def period_evidence(
    store: Store,
    lo_ns: int,
    hi_ns: int,
    ctx: Context,
    *,
    host: str | None = None,
    verified: VerifyReport | None = None,
) -> Evidence:
    """The clock-compliance document for stamps received in [lo_ns, hi_ns)."""
    stages = sorted(ctx.stage_tiers)
    params: dict[str, Any] = {
        "lo": lo_ns,
        "hi": hi_ns,
        "host": host or "",
        "limit": ctx.tier.max_divergence_ns,
        "stages": stages,
        "limits": [ctx.stage_tiers[st].max_divergence_ns for st in stages],
    }
    keys = store.query(_CONTESTED, params)
    params |= contested_params(keys)
    summary = store.query(_SUMMARY, params)
    sources = store.query(_SOURCES, params)
    runs = store.query(_RUNS, params)
    contested = _contested(store, params, keys) if keys else []
    groups = []
    for s in summary:
        key = (s["host"], s["stage"])
        mine = [r for r in runs if (r["host"], r["stage"]) == key]
        excursions: list[dict[str, Any]] = []
        for i, r in enumerate(mine):
            if not r["out"]:
                continue
            # It lasts until the next stamp back within the tier. After the last stamp the
            # clock's state is not known: a run still out then ends at its last stamp.
            ongoing = i + 1 == len(mine)
            end = int(r["last"]) if ongoing else int(mine[i + 1]["start"])
            excursions.append(
                {
                    "start": format_ns(int(r["start"])),
                    "start_ns": int(r["start"]),
                    "end": format_ns(end),
                    "end_ns": end,
                    "duration_ns": end - int(r["start"]),
                    "peak_ns": int(r["peak"]),
                    "stamps": int(r["stamps"]),
                    "ongoing_at_last_stamp": ongoing,
                }
            )
        # Time is counted over what the stamps cover, first to last: before the first stamp
        # and after the last one nothing is known, so neither counts as within the tier.
        outside = sum(e["duration_ns"] for e in excursions)
        covered = int(s["last_t"]) - int(s["first_t"])
        gran = int(s["granularity"])
        tier = ctx.tier_for(s["stage"])
        groups.append(
            {
                "host": s["host"],
                "stage": s["stage"],
                "tier": tier.name,
                "stamps": int(s["stamps"]),
                "first": format_ns(int(s["first_t"])),
                "first_ns": int(s["first_t"]),
                "last": format_ns(int(s["last_t"])),
                "last_ns": int(s["last_t"]),
                "covered_ns": covered,
                "bound_ns": {
                    "min": int(s["lo"]),
                    "p50": int(s["q"][0]),
                    "p99": int(s["q"][1]),
                    "max": int(s["hi"]),
                },
                "within_tier_stamps_share": int(s["within"]) / int(s["stamps"]),
                "within_tier_time_share": 1 - outside / covered if covered else None,
                "observed_granularity_ns": gran,
                "granularity_from": "broker" if s["by_broker"] else "digits",
                "granularity_ok": gran <= tier.granularity_ns,
                "sources": [_source(r) for r in sources if (r["host"], r["stage"]) == key],
                "excursions": excursions,
            }
        )
    # A period's rows may be in any batch of any chain: every chain's head is given.
    heads = read_chain_heads(store)
    document = {
        "schema": SCHEMA,
        "subject": {
            "kind": "period",
            "id": f"{format_ns(lo_ns)}..{format_ns(hi_ns)}",
            "from": format_ns(lo_ns),
            "to": format_ns(hi_ns),
            "host": host,
        },
        "produced": produced(ctx),
        "regime": regime_block(ctx),
        "clocks": groups,
        "contested": contested,
        "alerts": {
            "available": False,
            "reason": "no clock-alert history is recorded in the store yet",
        },
        "integrity": {
            "scheme": SCHEME,
            "chains": [h.to_dict() for h in heads],
            "verify_command": verify_command(ctx.store_args, {h.chain_id: h.head for h in heads}),
            "verified_at_production": verified_block(verified),
        },
    }
    return Evidence(document)


def _contested(
    store: Store, params: dict[str, Any], keys: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per stage, the contested (event, stage)s with a stamp in the period, the chains that
    hold them and the time every chain's rows of them span there."""
    chains = {(str(k["event_id"]), str(k["stage"])): k["chains"] for k in keys}
    per_stage: dict[str, list[dict[str, Any]]] = {}
    for r in store.query(_CONTESTED_SPAN, params):
        per_stage.setdefault(str(r["stage"]), []).append(r)
    out = []
    for stage, spans in sorted(per_stage.items()):
        first = min(int(r["first_t"]) for r in spans)
        last = max(int(r["last_t"]) for r in spans)
        out.append(
            {
                "stage": stage,
                "stamps": len(spans),
                "chains": sorted({c for r in spans for c in chains[(str(r["event_id"]), stage)]}),
                "first": format_ns(first),
                "first_ns": first,
                "last": format_ns(last),
                "last_ns": last,
            }
        )
    return out


def _source(row: dict[str, Any]) -> dict[str, Any]:
    b = ClockBound.from_label(row["clock_source"], int(row["bound"]))
    d: dict[str, Any] = {"kind": b.kind, "stamps": int(row["stamps"]), "max_bound_ns": b.bound_ns}
    if b.kind in ("fallback", "unknown") and b.reason:
        d["reason"] = b.reason
    if b.kind == "chrony" and b.offset_ns is not None:
        d["offset_ns"] = b.offset_ns
    return d
