"""Where the pipeline is slow: every hop between two stamps, every stage's hold time, every
tap's own lag, ranked (``hotspots``) or drawn over time (``heatmap``).

A hop is the time from one stamp to the next: the previous stage let the event go
(``prev_emitted``) until this stage took it in (``received``). A derived event (a decision
made from inputs) is born at its stage; its hops start where each input last left a stage,
as the SDK read it from the input's stamps and wrote it into the decision
(``stampline.parent_stamps``, stored as ``parent_stage``/``parent_emitted``), so a
decision stage's inbound hops are measured from its lineage, one per parent. (A decision
written before those columns existed is joined to its parents' rows instead: the stage of
each parent's latest ``emitted`` over its non-tap rows.) A dead-lettered record makes no
hop (its origin is often why it was rejected). Each (event, stage) counts once, as the
``trail`` view shows it (migration 033; the stamper's own row beats a tap's reading of the same
stamp); one that two chains hold differently (``contested``) counts in no figure -- which
chain is real only ``audit verify`` with the heads can say -- and is counted apart, per stage,
so a figure never rests on a row an insider chose. A stage's hold time is
``emitted - received`` at that stage. A tap's own sighting is not a stage: it measures its
hop up to the broker timestamp (when the record reached the topic) and keeps its own
consumption delay apart, as the tap's lag.

Windows are exact (raw trail, `received` in the window), not whole rollup minutes.
Columns are defined in docs/reports.md.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from stampline.audit._model import AUTHORITY_STAMPER, PREV_ORIGIN, TAP_SIGHTING
from stampline.audit._queries import (
    BROKER_KNOWN,
    BROKER_PREFIX,
    BROKER_RESOLUTION_NS,
    BROKER_TYPES,
    QUEUE_NS,
    anchor_ns,
    broker_time_types,
    latency_flags,
    quantiles,
)
from stampline.audit._replay import Queryable
from stampline.audit._trailof import (
    UNCONTESTED,
    contested_keys,
    contested_params,
    one_per_stage,
)

_WINDOW = (
    "received >= fromUnixTimestamp64Nano({lo:Int64}) "
    "AND received <= fromUnixTimestamp64Nano({hi:Int64})"
)
# The events with a row in the window, read from the table (its `received` minmax index
# prunes the parts outside the window).
_EVENTS = f"SELECT event_id FROM {{db}}.observations WHERE {_WINDOW}"
# The inputs of the window's decisions that carry no parent stamps (joined to their rows).
_PARENTS = f"""SELECT arrayJoin(parents) FROM {{db}}.observations
    WHERE {_WINDOW} AND prev_stage = '' AND notEmpty(parents) AND empty(parent_stage)"""
# The (event, stage)s of those events and inputs that chains hold differently, as the `trail`
# view judges them (migration 033, the one rule), read by event id wherever their rows' times
# lie; ``seen``: one of its rows is in the window reported (from {b} on).
_CONTESTED = f"""
    SELECT event_id, stage,
           (event_id, stage) IN (SELECT event_id, stage FROM {{db}}.observations
                                 WHERE received >= fromUnixTimestamp64Nano({{b:Int64}})
                                   AND received <= fromUnixTimestamp64Nano({{hi:Int64}})) AS seen
    FROM ({contested_keys(f"{_EVENTS} UNION ALL {_PARENTS}")})
"""
# One row per (event, stage) of the window's events, as the view shows it, with `received` in
# the window; a contested one counts in no figure.
_TRAIL = f"(SELECT * FROM {one_per_stage(_EVENTS)} WHERE {_WINDOW} AND {UNCONTESTED})"

# A stamper's own first stamp read from a topic with a broker timestamp is two hops: the
# provider's (origin -> kafka:<topic>, born -> on the broker) and the stage's queue
# (kafka:<topic> -> stage, on the broker -> taken in), so the gate's backlog is never the
# provider's. The broker time has millisecond resolution and no known bound: each half's
# bound is its stamping host's plus 1 ms. Any other row is its one hop. (Migration 030 splits
# the per-minute rollup the same way.) Each part: (from, to, hop_ns, bound_ns).
_FIRST_HOP_SPLIT = f"""if(prev_stage = '{PREV_ORIGIN}' AND authority = {AUTHORITY_STAMPER}
        AND topic != '' AND toUnixTimestamp64Milli(broker_time) > 0,
    [('{PREV_ORIGIN}', concat('{BROKER_PREFIX}', topic), hop_ns - {QUEUE_NS},
      toUInt64(prev_clock_err_ns + {BROKER_RESOLUTION_NS})),
     (concat('{BROKER_PREFIX}', topic), toString(stage), {QUEUE_NS},
      toUInt64(clock_err_ns + {BROKER_RESOLUTION_NS}))],
    [(toString(prev_stage), toString(stage), hop_ns,
      toUInt64(clock_err_ns + prev_clock_err_ns))])"""

# Every hop in the window: (from_stage, to_stage, received_ns, hop_ns, bound_ns). Three parts:
# hops between two stamps of one event; a derived event's lineage hops as its birth row
# carries them (parent_stamps, what the rollup counts too); and, for birth rows written
# before those columns existed, the lineage hops joined from the parents' own rows.
_HOPS = f"""
    SELECT part.1 AS from_stage, part.2 AS to_stage,
           toUnixTimestamp64Nano(received) AS at_ns, part.3 AS hop, part.4 AS bound
    FROM (SELECT received, {_FIRST_HOP_SPLIT} AS parts
          FROM (SELECT prev_stage, stage, received, hop_ns, clock_err_ns, prev_clock_err_ns,
                       authority, topic, broker_time
                FROM {_TRAIL}
                WHERE prev_stage != '' AND outcome != 'dead_lettered'))
    ARRAY JOIN parts AS part
    UNION ALL
    SELECT from_stage, stage AS to_stage, toUnixTimestamp64Nano(received) AS at_ns,
           toUnixTimestamp64Nano(received) - toUnixTimestamp64Nano(left_at) AS hop,
           clock_err_ns + left_err AS bound
    FROM (SELECT stage, received, clock_err_ns, parent_stage, parent_emitted,
                 parent_clock_err_ns
          FROM {_TRAIL}
          WHERE notEmpty(parent_stage) AND outcome != 'dead_lettered')
    ARRAY JOIN parent_stage AS from_stage, parent_emitted AS left_at,
               parent_clock_err_ns AS left_err
    WHERE from_stage != ''
    UNION ALL
    SELECT p.last_stage AS from_stage, d.stage AS to_stage, d.at_ns AS at_ns,
           d.at_ns - p.left_ns AS hop, d.err + p.left_err AS bound
    FROM (SELECT stage, toUnixTimestamp64Nano(received) AS at_ns, clock_err_ns AS err,
                 arrayJoin(parents) AS parent
          FROM (SELECT stage, received, clock_err_ns, parents FROM {_TRAIL}
                WHERE prev_stage = '' AND notEmpty(parents)
                  AND empty(parent_stage) AND outcome != 'dead_lettered'
                  AND NOT {TAP_SIGHTING})) AS d
    INNER JOIN (
          SELECT event_id, argMax(stage, emitted) AS last_stage,
                 toUnixTimestamp64Nano(max(emitted)) AS left_ns,
                 argMax(clock_err_ns, emitted) AS left_err
          FROM {one_per_stage(_PARENTS)}
          WHERE NOT {TAP_SIGHTING}
          GROUP BY event_id
          -- an input whose stages chains hold differently has no last stage anyone can vouch for
          HAVING min({UNCONTESTED})) AS p ON d.parent = p.event_id
"""


def _hop_row(r: dict[str, Any], prev_p99: float | None) -> dict[str, Any]:
    p50, p99, p999 = quantiles(r["q"])
    bound = int(r["bound_max"] or 0)
    flags = latency_flags(p99, bound)
    if r["negative"]:
        flags.append(f"{r['negative']} negative hop(s): clocks disagree")
    return {
        "from_stage": r["from_stage"],
        "to_stage": r["to_stage"],
        "hops": int(r["n"]),
        "p50_ns": p50,
        "p99_ns": p99,
        "p999_ns": p999,
        "max_ns": int(r["max_ns"]),
        "clock_bound_ns": bound,
        "within_bound": int(r["within_bound"]),
        "negative": int(r["negative"]),
        "previous_p99_ns": prev_p99,
        "trend": round(p99 / prev_p99, 3) if p99 and prev_p99 else None,
        "flags": flags,
    }


def hotspots(store: Queryable, since_ns: int) -> dict[str, Any]:
    """Every stage pair ranked by p99 hop latency (trend against the window before), each
    stage's hold time, and each tap's own lag."""
    end = anchor_ns(store)
    start = end - since_ns
    contested, keys = _contested(store, end - 2 * since_ns, end, start)
    params = {"lo": end - 2 * since_ns, "hi": end, "b": start} | keys
    pairs = store.query(
        f"""SELECT from_stage, to_stage, at_ns >= {{b:Int64}} AS current, count() AS n,
                   countIf(hop < 0) AS negative, countIf(abs(hop) <= bound) AS within_bound,
                   max(bound) AS bound_max, max(hop) AS max_ns,
                   quantilesExact(0.5, 0.99, 0.999)(hop) AS q
            FROM ({_HOPS}) GROUP BY from_stage, to_stage, current""",
        params,
    )
    before = {(r["from_stage"], r["to_stage"]): r for r in pairs if not r["current"]}
    rows = []
    for r in (r for r in pairs if r["current"]):
        prev = before.get((r["from_stage"], r["to_stage"]))
        rows.append(_hop_row(r, quantiles(prev["q"])[1] if prev else None))
    rows.sort(key=lambda r: (-(r["p99_ns"] or 0), r["from_stage"], r["to_stage"]))
    now = {"lo": start, "hi": end} | keys
    # Whose clock each provider's part (origin -> kafka:<topic>) ends on, per topic.
    clocks = {
        f"{BROKER_PREFIX}{r['topic']}": broker_time_types(r["types"])
        for r in store.query(
            f"""SELECT topic, {BROKER_TYPES} AS types FROM {_TRAIL}
                WHERE prev_stage = '{PREV_ORIGIN}'
                  AND authority = {AUTHORITY_STAMPER} AND topic != '' AND {BROKER_KNOWN}
                  AND outcome != 'dead_lettered'
                GROUP BY topic""",
            now,
        )
    }
    for r in rows:
        provider_part = r["from_stage"] == PREV_ORIGIN and r["to_stage"] in clocks
        r["broker_clock"] = clocks[r["to_stage"]] if provider_part else None
    held = store.query(
        f"""SELECT stage, {TAP_SIGHTING} AS tap, count() AS n, max(clock_err_ns) AS bound,
                   max(stage_ns) AS max_ns, quantilesExact(0.5, 0.99, 0.999)(stage_ns) AS q
            FROM (SELECT stage, authority, topic, stage_ns, clock_err_ns FROM {_TRAIL})
            GROUP BY stage, tap ORDER BY stage""",
        now,
    )
    holds, lags = [], []
    for r in held:
        p50, p99, p999 = quantiles(r["q"])
        row = {
            "stage": r["stage"],
            "events": int(r["n"]),
            "p50_ns": p50,
            "p99_ns": p99,
            "p999_ns": p999,
            "max_ns": int(r["max_ns"]),
        }
        if r["tap"]:
            lags.append(row)
        else:
            bound = int(r["bound"] or 0)
            # out and in come from one host's clock: its bound covers the pair
            holds.append(row | {"clock_bound_ns": bound, "flags": latency_flags(p99, bound)})
    holds.sort(key=lambda r: (-(r["p99_ns"] or 0), r["stage"]))
    for r in rows:
        r["flags"] += _left_out(contested.get(r["to_stage"], 0))
    for r in holds:
        r["flags"] += _left_out(contested.get(r["stage"], 0))
    return {
        "window": {"start": start, "end": end},
        "rows": rows,
        "holds": holds,
        "tap_lags": lags,
        "contested": contested,
    }


def _contested(
    store: Queryable, lo: int, hi: int, b: int
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Stage -> how many of its (event, stage)s with a row in ``[b, hi]`` chains hold
    differently, and the parameters that leave out every contested (event, stage) of the
    window ``[lo, hi]``: from every figure."""
    rows = store.query(_CONTESTED, {"lo": lo, "hi": hi, "b": b})
    counts = Counter(str(r["stage"]) for r in rows if r["seen"])
    return dict(sorted(counts.items())), contested_params(rows)


def _left_out(n: int) -> list[str]:
    if not n:
        return []
    return [f"{n} contested (event, stage) left out: chains disagree, see `audit verify`"]


def heatmap(store: Queryable, since_ns: int, buckets: int = 30) -> dict[str, Any]:
    """Stage pair x time bucket: p99 hop latency (and hop count) in each cell.

    The window ``[end - since, end]`` is cut into ``buckets`` equal buckets by the time the
    hop ended (``received``); a cell with no hop is None.

    Raises:
        ValueError: ``buckets`` is not between 1 and 1000.
    """
    if not 1 <= buckets <= 1000:
        raise ValueError(f"buckets must be between 1 and 1000 (got {buckets})")
    end = anchor_ns(store)
    start = end - since_ns
    width = -(-since_ns // buckets)  # ceiling: the last bucket ends at or after `end`
    contested, keys = _contested(store, start, end, start)
    cells = store.query(
        f"""SELECT from_stage, to_stage,
                   least(intDiv(at_ns - {{lo:Int64}}, {{w:Int64}}), {{last:Int64}}) AS bucket,
                   count() AS n, quantileExact(0.99)(hop) AS p99
            FROM ({_HOPS}) GROUP BY from_stage, to_stage, bucket""",
        {"lo": start, "hi": end, "w": width, "last": buckets - 1} | keys,
    )
    pairs = sorted({(c["from_stage"], c["to_stage"]) for c in cells})
    index = {p: i for i, p in enumerate(pairs)}
    p99: list[list[int | None]] = [[None] * buckets for _ in pairs]
    hops: list[list[int]] = [[0] * buckets for _ in pairs]
    for c in cells:
        i, b = index[(c["from_stage"], c["to_stage"])], int(c["bucket"])
        p99[i][b] = int(c["p99"])
        hops[i][b] = int(c["n"])
    return {
        "window": {"start": start, "end": end},
        "bucket_ns": width,
        "buckets": [start + b * width for b in range(buckets)],
        "pairs": [{"from_stage": a, "to_stage": b} for a, b in pairs],
        "p99_ns": p99,
        "hops": hops,
        "contested": contested,
    }
