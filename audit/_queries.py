"""The questions people ask the trail: provider comparison, hotspots, completeness.

Every window counts back from the newest data in the store (its "anchor"), so a store
written yesterday -- the demo's, a benchmark's -- answers as it would have then. Latencies
come with the combined clock-error bound of the hosts that stamped them; a latency that is
negative or inside its bound is flagged, never presented as a measured fact.
"""

from __future__ import annotations

from typing import Any, Literal

from audit._replay import Queryable

NS = 1_000_000_000


def anchor_ns(store: Queryable) -> int:
    """The newest received time in the trail (0 for an empty store)."""
    (row,) = store.query("SELECT toUnixTimestamp64Nano(max(received)) AS t FROM {db}.observations")
    return int(row["t"] or 0)


def latency_flags(value_ns: float | None, bound_ns: int) -> list[str]:
    """Why a latency cannot be taken as a fact, if it cannot."""
    if value_ns is None:
        return []
    if value_ns < 0:
        return ["negative: the clocks disagree by more than the latency"]
    if value_ns <= bound_ns:
        return ["within the clock-error bound: not distinguishable from zero"]
    return []


def _q(values: list[float] | None) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    p50, p99, p999 = (float(v) for v in values)
    return p50, p99, p999


def providers_compare(
    store: Queryable,
    since_ns: int,
    *,
    by: Literal["provider", "instrument"] = "provider",
    gap_ns: int = NS,
) -> dict[str, Any]:
    """Per provider (or provider and instrument): latency, gaps, rate, dead letters, divergence.

    Latency is ingestion - origin of forwarded events (the provider's delay to the gate).
    A gap is a pause longer than ``gap_ns`` between consecutive origins. Divergence is the
    distance in basis points from the cross-provider median of each instrument's last price
    per minute.
    """
    end = anchor_ns(store)
    start = end - since_ns
    window = {"start": start, "end": end}
    keys = "provider" if by == "provider" else "provider, instrument"
    in_window = (
        "received >= fromUnixTimestamp64Nano({start:Int64}) "
        "AND received <= fromUnixTimestamp64Nano({end:Int64})"
    )
    gate_rows = f"FROM {{db}}.observations WHERE outcome != 'observed' AND {in_window}"
    if by == "provider":
        # Counts and quantiles come from the per-minute rollup, not the raw trail.
        stats = store.query(
            """SELECT provider, sum(events) AS events, sum(dead_lettered) AS dead,
                      max(bound_max_ns) AS bound,
                      quantilesTDigestMerge(0.5, 0.99, 0.999)(latency) AS q
               FROM {db}.provider_activity_1m
               WHERE minute >= toStartOfMinute(fromUnixTimestamp64Nano({start:Int64}))
                 AND minute <= fromUnixTimestamp64Nano({end:Int64})
               GROUP BY provider""",
            window,
        )
    else:
        stats = store.query(
            f"""SELECT {keys}, count() AS events, countIf(outcome = 'dead_lettered') AS dead,
                       max(clock_err_ns) AS bound,
                       quantilesTDigestIf(0.5, 0.99, 0.999)(
                           toUnixTimestamp64Nano(ingested) - toUnixTimestamp64Nano(origin),
                           outcome = 'forwarded') AS q
                {gate_rows} GROUP BY {keys}""",
            window,
        )
    gaps = store.query(
        f"""SELECT {keys}, arrayDifference(arraySort(groupArray(
                       toUnixTimestamp64Nano(origin)))) AS d,
                   arrayCount(x -> x > {{gap:Int64}}, d) AS gaps,
                   arraySum(arrayFilter(x -> x > {{gap:Int64}}, d)) AS gap_ns
            {gate_rows} AND outcome = 'forwarded' GROUP BY {keys}""",
        {**window, "gap": gap_ns},
    )
    divergence = store.query(
        f"""WITH per AS (
                SELECT provider, instrument, toStartOfMinute(received) AS m,
                       argMax(price, origin) AS p
                {gate_rows} AND outcome = 'forwarded' AND isFinite(price) AND price > 0
                GROUP BY provider, instrument, m),
            ref AS (
                SELECT instrument, m, median(p) AS mid FROM per
                GROUP BY instrument, m HAVING count() >= 2)
            SELECT {", ".join("per." + k.strip() for k in keys.split(","))},
                   quantile(0.5)(abs(p - mid) / mid * 10000) AS bps_p50,
                   max(abs(p - mid) / mid * 10000) AS bps_max
            FROM per INNER JOIN ref ON per.instrument = ref.instrument AND per.m = ref.m
            GROUP BY {keys}""",
        window,
    )

    def key(r: dict[str, Any]) -> tuple[str, ...]:
        return (r["provider"],) if by == "provider" else (r["provider"], r["instrument"])

    gap_by = {key(r): r for r in gaps}
    div_by = {key(r): r for r in divergence}
    seconds = max(since_ns / NS, 1e-9)
    rows = []
    for r in sorted(stats, key=key):
        p50, p99, p999 = _q(r["q"]) if r["events"] > r["dead"] else (None, None, None)
        bound = int(r["bound"] or 0)
        g, d = gap_by.get(key(r), {}), div_by.get(key(r), {})
        row: dict[str, Any] = {"provider": r["provider"]}
        if by == "instrument":
            row["instrument"] = r["instrument"]
        row |= {
            "events": int(r["events"]),
            "latency_p50_ns": p50,
            "latency_p99_ns": p99,
            "latency_p999_ns": p999,
            "clock_bound_ns": bound,
            "flags": latency_flags(p50, bound),
            "gaps": int(g.get("gaps", 0)),
            "gap_total_ns": int(g.get("gap_ns", 0)),
            "updates_per_s": round(r["events"] / seconds, 3),
            "dead_lettered_share": round(r["dead"] / r["events"], 6) if r["events"] else 0.0,
            "divergence_bps_p50": d.get("bps_p50"),
            "divergence_bps_max": d.get("bps_max"),
        }
        rows.append(row)
    return {"window": window, "by": by, "gap_threshold_ns": gap_ns, "rows": rows}


def hotspots(store: Queryable, since_ns: int) -> dict[str, Any]:
    """Stage pairs ranked by p99 hop latency, with the trend against the window before."""
    end = anchor_ns(store)
    params = {"a": end - 2 * since_ns, "b": end - since_ns, "c": end}
    rows = store.query(
        """SELECT prev_stage, stage,
                  minute >= toStartOfMinute(fromUnixTimestamp64Nano({b:Int64})) AS current,
                  sum(hops) AS hops, sum(negative) AS negative,
                  sum(within_bound) AS within_bound, max(bound_max_ns) AS bound,
                  quantilesTDigestMerge(0.5, 0.99, 0.999)(latency) AS q
           FROM {db}.hop_latency_1m
           WHERE minute >= toStartOfMinute(fromUnixTimestamp64Nano({a:Int64}))
             AND minute <= fromUnixTimestamp64Nano({c:Int64})
           GROUP BY prev_stage, stage, current""",
        params,
    )
    before = {(r["prev_stage"], r["stage"]): r for r in rows if not r["current"]}
    out = []
    for r in (r for r in rows if r["current"]):
        p50, p99, p999 = _q(r["q"])
        prev = before.get((r["prev_stage"], r["stage"]))
        prev_p99 = _q(prev["q"])[1] if prev else None
        bound = int(r["bound"] or 0)
        flags = latency_flags(p99, bound)
        if r["negative"]:
            flags.append(f"{r['negative']} negative hop(s): clocks disagree")
        out.append(
            {
                "from_stage": r["prev_stage"],
                "to_stage": r["stage"],
                "hops": int(r["hops"]),
                "p50_ns": p50,
                "p99_ns": p99,
                "p999_ns": p999,
                "clock_bound_ns": bound,
                "within_bound": int(r["within_bound"]),
                "negative": int(r["negative"]),
                "previous_p99_ns": prev_p99,
                "trend": round(p99 / prev_p99, 3) if p99 and prev_p99 else None,
                "flags": flags,
            }
        )
    out.sort(key=lambda r: -(r["p99_ns"] or 0))
    return {"window": {"start": params["b"], "end": end}, "rows": out}


def completeness(store: Queryable, since_ns: int, grace_ns: int = 5 * NS) -> dict[str, Any]:
    """Per stage pair: events seen upstream but never downstream (lost), or seen twice.

    Between two stages the event id links the sightings. Between the origin and the first
    stage, the provider's sequence numbers do: a missing number was lost before stampline
    saw it, a number seen on two different events was duplicated. Events that left the
    upstream stage within ``grace_ns`` of the window's end may still be in flight and are
    not counted as lost.
    """
    end = anchor_ns(store)
    params = {"start": end - since_ns, "end": end, "settled": end - grace_ns}
    in_window = (
        "received >= fromUnixTimestamp64Nano({start:Int64}) "
        "AND received <= fromUnixTimestamp64Nano({end:Int64})"
    )
    stage_pairs = store.query(
        f"""WITH pairs AS (
                SELECT DISTINCT prev_stage AS up, stage AS down FROM {{db}}.observations
                WHERE {in_window} AND prev_stage NOT IN ('', 'origin')),
            seen AS (
                SELECT event_id, stage, uniqExact(received, emitted) AS sightings,
                       max(emitted) AS left_at
                FROM {{db}}.observations WHERE {in_window} GROUP BY event_id, stage)
            SELECT pairs.up AS up, pairs.down AS down,
                   uniqExactIf(u.event_id, u.left_at <= fromUnixTimestamp64Nano({{settled:Int64}}))
                       AS upstream,
                   uniqExactIf(u.event_id, d.sightings = 0
                       AND u.left_at <= fromUnixTimestamp64Nano({{settled:Int64}})) AS lost,
                   uniqExactIf(u.event_id, d.sightings > 1) AS duplicated
            FROM pairs
            INNER JOIN seen AS u ON u.stage = pairs.up
            LEFT JOIN seen AS d ON d.event_id = u.event_id AND d.stage = pairs.down
            GROUP BY up, down ORDER BY up, down""",
        params,
    )
    origin_pairs = store.query(
        f"""SELECT stage AS down, provider, max(seq) - min(seq) + 1 AS expected,
                   uniqExact(seq) AS distinct_seq, uniqExact(event_id) AS events
            FROM {{db}}.observations
            WHERE {in_window} AND prev_stage = 'origin' AND seq >= 0 AND provider != ''
            GROUP BY stage, provider ORDER BY stage, provider""",
        params,
    )
    rows = [
        {
            "from_stage": r["up"],
            "to_stage": r["down"],
            "provider": None,
            "upstream": int(r["upstream"]),
            "lost": int(r["lost"]),
            "duplicated": int(r["duplicated"]),
        }
        for r in stage_pairs
    ]
    rows.extend(
        {
            "from_stage": "origin",
            "to_stage": r["down"],
            "provider": r["provider"],
            "upstream": int(r["expected"]),
            "lost": int(r["expected"] - r["distinct_seq"]),
            "duplicated": int(r["events"] - r["distinct_seq"]),
        }
        for r in origin_pairs
    )
    # Records too broken to name their provider (not JSON, oversized) still used up a
    # sequence number: they are received and dead-lettered, yet show as missing above.
    (unattributed,) = store.query(
        f"""SELECT uniqExact(event_id) AS n FROM {{db}}.observations
            WHERE {in_window} AND prev_stage = 'origin' AND provider = ''""",
        params,
    )
    return {
        "window": {"start": params["start"], "end": end},
        "rows": rows,
        "unattributed": int(unattributed["n"]),
    }
