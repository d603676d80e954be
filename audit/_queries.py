"""The questions people ask the trail: provider comparison and completeness.

Every window counts back from the newest time in the store (its "anchor"), so a store
written yesterday -- the demo's, a benchmark's -- answers as it would have then. Windows are
exact: these reports read the raw trail (its `received` minmax index prunes the parts outside
the window), not the per-minute rollups, which only know whole minutes. Latencies come with
the combined clock-error bound of the hosts that stamped them; a latency that is negative or
inside its bound is flagged, never presented as a measured fact.

Every column is defined in docs/reports.md (which stamp minus which).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from stampline.audit._replay import Queryable

NS = 1_000_000_000

SequenceKey = tuple[Literal["provider", "instrument"], ...]
DEFAULT_SEQUENCE_KEY: SequenceKey = ("provider", "instrument")  # the sequence rule's key

IN_WINDOW = (
    "received >= fromUnixTimestamp64Nano({start:Int64}) "
    "AND received <= fromUnixTimestamp64Nano({end:Int64})"
)
# The broker as a place on an event's way: "kafka:<topic>", the record's timestamp there.
# That timestamp has millisecond resolution (it may read up to 1 ms early) and no clock-error
# bound of its own.
BROKER_PREFIX = "kafka:"
BROKER_RESOLUTION_NS = 1_000_000
# SQL, per trail row: broker append -> the stage took it in (the stage's queue), and
# born -> broker append (the provider's part); meaningful where BROKER_KNOWN holds.
BROKER_KNOWN = "toUnixTimestamp64Milli(broker_time) > 0"
QUEUE_NS = (
    "(toUnixTimestamp64Nano(received) - toInt64(toUnixTimestamp64Milli(broker_time)) * 1000000)"
)
TO_BROKER_NS = (
    "(toInt64(toUnixTimestamp64Milli(broker_time)) * 1000000 - toUnixTimestamp64Nano(origin))"
)
# SQL aggregate: the broker times' types of the rows (whose clock the provider's part is on).
BROKER_TYPES = "arraySort(groupUniqArray(toString(broker_time_type)))"


def broker_time_types(types: Sequence[str]) -> str:
    """One name for the timestamp types of the broker times a figure was made of: the type
    ("LogAppendTime": the broker's clock, "CreateTime": the producer's), "" where not
    recorded (rows written before migration 032), or "mixed: …" when they differ."""
    distinct = sorted(set(types))
    if len(distinct) == 1:
        return distinct[0]
    return "mixed: " + ", ".join(t or "not recorded" for t in distinct)


# Rows the gate wrote with its verdict (a tap's rows are 'observed' and judge nothing).
JUDGED = "outcome != 'observed'"


def anchor_ns(store: Queryable) -> int:
    """The newest time in the trail, received or emitted (0 for an empty store)."""
    (row,) = store.query(
        "SELECT greatest(toUnixTimestamp64Nano(max(received)), "
        "toUnixTimestamp64Nano(max(emitted))) AS t FROM {db}.observations"
    )
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


def quantiles(values: Sequence[float] | None) -> tuple[float | None, float | None, float | None]:
    """(p50, p99, p99.9) from a ClickHouse ``quantiles*(0.5, 0.99, 0.999)`` array."""
    if not values:
        return None, None, None
    p50, p99, p999 = (float(v) for v in values)
    return p50, p99, p999


def parse_sequence_key(text: str) -> SequenceKey:
    """``provider``, ``instrument`` or ``provider,instrument`` (in any order, ``+`` too).

    Raises:
        ValueError: a part is not one of the identity fields the trail keeps.
    """
    parts = [p.strip() for p in text.replace("+", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError("the sequence key names no field")
    key: list[Literal["provider", "instrument"]] = []
    for p in parts:
        if p not in ("provider", "instrument"):
            raise ValueError(
                f"{p!r} is not a field the trail keeps; use provider, instrument or both"
            )
        if p not in key:
            key.append(p)  # type: ignore[arg-type]
    return tuple(key)


def sequence_report(
    store: Queryable,
    params: dict[str, Any],
    key: SequenceKey = DEFAULT_SEQUENCE_KEY,
    limit: int = 1000,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per stage and key: expected, distinct and duplicated numbers; and the gaps themselves.

    Only rows the gate judged count (a sequence number is the provider's, read by the gate).
    Returns (per-key rows, gaps ordered by the time the number after the gap arrived, at most
    ``limit`` of them).
    """
    cols = ", ".join(key)
    named = " AND ".join(f"{k} != ''" for k in key)
    where = f"{IN_WINDOW} AND {JUDGED} AND seq >= 0 AND {named}"
    per_key = store.query(
        f"""SELECT stage, {cols}, min(seq) AS lo, max(seq) AS hi, uniqExact(seq) AS distinct_seq,
                   uniqExact(event_id) AS events,
                   arrayCount(d -> d > 1, arrayDifference(arraySort(groupUniqArray(seq)))) AS gaps
            FROM {{db}}.observations WHERE {where}
            GROUP BY stage, {cols} ORDER BY stage, {cols}""",
        params,
    )
    gaps = []
    if limit > 0:
        # Per key, the numbers in order (with when each first arrived); a gap is two
        # neighbours more than one apart, reported at the number after it.
        gaps = store.query(
            f"""SELECT stage, {cols}, g.1 + 1 AS first_missing, g.2 - g.1 - 1 AS size,
                       g.3 AS at_ns, g.4 AS origin_ns
                FROM (
                    SELECT stage, {cols},
                           arraySort(x -> x.1, groupArray((seq, at, born))) AS a,
                           arrayFilter(x -> x.2 - x.1 > 1, arrayZip(
                               arrayPopBack(arrayMap(x -> x.1, a)),
                               arrayMap(x -> x.1, arrayPopFront(a)),
                               arrayMap(x -> x.2, arrayPopFront(a)),
                               arrayMap(x -> x.3, arrayPopFront(a)))) AS found
                    FROM (
                        SELECT stage, {cols}, seq, min(toUnixTimestamp64Nano(received)) AS at,
                               min(toUnixTimestamp64Nano(origin)) AS born
                        FROM {{db}}.observations WHERE {where}
                        GROUP BY stage, {cols}, seq)
                    GROUP BY stage, {cols}
                    HAVING notEmpty(found))
                ARRAY JOIN found AS g
                ORDER BY at_ns, stage, {cols} LIMIT {int(limit)}""",
            params,
        )
    keyed = []
    for r in per_key:
        expected = int(r["hi"] - r["lo"] + 1)
        keyed.append(
            {
                "stage": r["stage"],
                "key": {k: r[k] for k in key},
                "first": int(r["lo"]),
                "last": int(r["hi"]),
                "expected": expected,
                "events": int(r["events"]),
                "lost": expected - int(r["distinct_seq"]),
                "gaps": int(r["gaps"]),
                "duplicated": int(r["events"] - r["distinct_seq"]),
            }
        )
    listed = [
        {
            "stage": g["stage"],
            "key": {k: g[k] for k in key},
            "first_missing": int(g["first_missing"]),
            "size": int(g["size"]),
            "at_ns": int(g["at_ns"]),  # received at the gate: the number after the gap
            "origin_ns": int(g["origin_ns"]),
        }
        for g in gaps
    ]
    return keyed, listed


def providers_compare(
    store: Queryable,
    since_ns: int,
    *,
    by: Literal["provider", "instrument"] = "provider",
    gap_ns: int = NS,
    sustain_s: int = 5,
    skew_bound_ns: int | None = None,
    expected: Sequence[str] = (),
) -> dict[str, Any]:
    """Per provider (or provider and instrument): latency, clock offset, silences, sequence
    gaps, update rate, dead letters, divergence. See docs/reports.md for each column.

    ``expected``: the providers that must keep publishing (the alert definitions'
    registry); one that sent nothing in the window is a row too, marked absent, with the
    time since its last event (or since the deployment's start when it never sent one)."""
    end = anchor_ns(store)
    start = end - since_ns
    window = {"start": start, "end": end}
    keys = "provider" if by == "provider" else "provider, instrument"
    gate_rows = f"FROM {{db}}.observations WHERE {JUDGED} AND {IN_WINDOW}"
    stats = store.query(
        f"""SELECT {keys}, count() AS events, countIf(outcome = 'dead_lettered') AS dead,
                   max(clock_err_ns) AS bound,
                   quantilesExactIf(0.5, 0.99, 0.999)(ingest_ns, outcome = 'forwarded') AS q,
                   minIf(ingest_ns, outcome = 'forwarded') AS offset_ns,
                   countIf(outcome = 'forwarded') AS forwarded,
                   toUnixTimestamp64Nano(minIf(origin, outcome = 'forwarded')) AS first_ns,
                   toUnixTimestamp64Nano(maxIf(origin, outcome = 'forwarded')) AS last_ns,
                   toUnixTimestamp64Nano(maxIf(received, outcome = 'forwarded')) AS seen_ns,
                   countIf(outcome = 'forwarded' AND {BROKER_KNOWN}) AS brokered,
                   quantilesExactIf(0.5, 0.99, 0.999)({TO_BROKER_NS},
                       outcome = 'forwarded' AND {BROKER_KNOWN}) AS q_broker,
                   minIf({TO_BROKER_NS}, outcome = 'forwarded' AND {BROKER_KNOWN})
                       AS broker_offset_ns,
                   arraySort(groupUniqArrayIf(toString(broker_time_type),
                       outcome = 'forwarded' AND {BROKER_KNOWN})) AS broker_types,
                   countIf({BROKER_KNOWN}) AS queued,
                   quantilesExactIf(0.5, 0.99, 0.999)({QUEUE_NS}, {BROKER_KNOWN}) AS q_queue,
                   maxIf({QUEUE_NS}, {BROKER_KNOWN}) AS queue_max_ns
            {gate_rows} GROUP BY {keys}""",
        window,
    )
    silences = store.query(
        f"""SELECT {keys}, arrayDifference(arraySort(groupArray(
                       toUnixTimestamp64Nano(origin)))) AS d,
                   arrayFilter(x -> x > {{gap:Int64}}, d) AS pauses,
                   length(pauses) AS n, arraySum(pauses) AS total,
                   arrayMax(arrayPushBack(pauses, 0)) AS longest
            {gate_rows} AND outcome = 'forwarded' GROUP BY {keys}""",
        {**window, "gap": gap_ns},
    )
    per_key, _ = sequence_report(store, window, DEFAULT_SEQUENCE_KEY, limit=0)
    divergence = _divergence(store, window, keys, sustain_s)

    def key(r: dict[str, Any]) -> tuple[str, ...]:
        return (r["provider"],) if by == "provider" else (r["provider"], r["instrument"])

    seq_by: dict[tuple[str, ...], list[int]] = {}  # key -> [gaps, missing, duplicated]
    for k in per_key:
        kk = (k["key"]["provider"],) if by == "provider" else tuple(k["key"].values())
        acc = seq_by.setdefault(kk, [0, 0, 0])
        acc[0] += k["gaps"]
        acc[1] += k["lost"]
        acc[2] += k["duplicated"]
    sil_by = {key(r): r for r in silences}
    div_by = {key(r): r for r in divergence}
    # The provider is judged on provider -> broker, never on the gate's queue; only a provider
    # whose records carry no broker time falls back to origin -> gate (flagged).
    offsets = {
        key(r): int(r["broker_offset_ns"] if r["brokered"] else r["offset_ns"])
        for r in stats
        if r["forwarded"]
    }
    rows = []
    for r in sorted(stats, key=key):
        p50, p99, p999 = quantiles(r["q"]) if r["forwarded"] else (None, None, None)
        b50, b99, b999 = quantiles(r["q_broker"]) if r["brokered"] else (None, None, None)
        g50, g99, g999 = quantiles(r["q_queue"]) if r["queued"] else (None, None, None)
        bound = int(r["bound"] or 0)
        s, d = sil_by.get(key(r), {}), div_by.get(key(r), {})
        span_ns = int(r["last_ns"] - r["first_ns"])
        row: dict[str, Any] = {"provider": r["provider"]}
        if by == "instrument":
            row["instrument"] = r["instrument"]
        offset = offsets.get(key(r))
        seen = int(r["seen_ns"]) if r["forwarded"] else None
        row |= {
            "absent": False,
            # when the gate last took in an accepted record from it, and how long ago
            "last_event_ns": seen,
            "silent_for_ns": max(end - seen, 0) if seen is not None else None,
            "silent_since": "last event" if seen is not None else None,
            "events": int(r["events"]),
            "latency_p50_ns": p50,
            "latency_p99_ns": p99,
            "latency_p999_ns": p999,
            "clock_bound_ns": bound,
            "flags": latency_flags(p50, bound),
            "to_broker_p50_ns": b50,
            "to_broker_p99_ns": b99,
            "to_broker_p999_ns": b999,
            # whose clock the provider's part ends on: "LogAppendTime" the broker's,
            # "CreateTime" the producer's ("" not recorded, None: no broker time)
            "to_broker_clock": broker_time_types(r["broker_types"]) if r["brokered"] else None,
            "gate_queue_p50_ns": g50,
            "gate_queue_p99_ns": g99,
            "gate_queue_p999_ns": g999,
            "gate_queue_max_ns": int(r["queue_max_ns"]) if r["queued"] else None,
            "clock_offset_ns": offset,
            "clock_offset_basis": "provider → broker" if r["brokered"] else "origin → gate",
            "clock_offset_vs_peers_ns": None,
            "clock_flags": (
                []
                if r["brokered"] or not r["forwarded"]
                else ["no broker time: offset from origin → gate, the gate's queue included"]
            ),
            "silences": int(s.get("n", 0)),
            "silence_longest_ns": int(s.get("longest", 0)),
            "silence_total_ns": int(s.get("total", 0)),
            "sequence_gaps": seq_by.get(key(r), [0, 0, 0])[0],
            "sequence_missing": seq_by.get(key(r), [0, 0, 0])[1],
            "sequence_duplicated": seq_by.get(key(r), [0, 0, 0])[2],
            "active_span_ns": span_ns,
            "updates_per_s": (
                round((r["forwarded"] - 1) / (span_ns / NS), 3) if span_ns > 0 else None
            ),
            "dead_lettered_share": round(r["dead"] / r["events"], 6) if r["events"] else 0.0,
            "divergence_bps_max": d.get("bps_max"),
            "divergence_bps_sustained": d.get("bps_sustained"),
            "divergence_bps_p50": d.get("bps_p50"),
            "divergence_seconds": int(d.get("seconds", 0)),
        }
        # Offsets from broker times are as exact as those times' millisecond resolution.
        default = BROKER_RESOLUTION_NS if r["brokered"] else bound
        skew_bound = default if skew_bound_ns is None else skew_bound_ns
        _flag_offset(row, offset, skew_bound, offsets, key(r))
        rows.append(row)
    absent = absent_providers(store, expected, {r["provider"] for r in stats}, end)
    for a in absent:
        row = {"provider": a["provider"]} | ({"instrument": ""} if by == "instrument" else {})
        rows.append(row | _ABSENT_ROW | a)
    return {
        "window": window,
        "by": by,
        "absent": absent,
        "gap_threshold_ns": gap_ns,
        "sustain_s": sustain_s,
        "rate_basis": "(forwarded - 1) / (last - first origin forwarded) in the window",
        "rows": rows,
    }


# The columns of a provider that sent nothing in the window: nothing to measure.
_ABSENT_ROW: dict[str, Any] = {
    "absent": True,
    "events": 0,
    **dict.fromkeys(
        (
            "latency_p50_ns",
            "latency_p99_ns",
            "latency_p999_ns",
            "to_broker_p50_ns",
            "to_broker_p99_ns",
            "to_broker_p999_ns",
            "to_broker_clock",
            "gate_queue_p50_ns",
            "gate_queue_p99_ns",
            "gate_queue_p999_ns",
            "gate_queue_max_ns",
            "clock_offset_ns",
            "clock_offset_basis",
            "clock_offset_vs_peers_ns",
            "updates_per_s",
            "divergence_bps_max",
            "divergence_bps_sustained",
            "divergence_bps_p50",
        )
    ),
    "clock_bound_ns": 0,
    "flags": [],
    "clock_flags": [],
    "silences": 0,
    "silence_longest_ns": 0,
    "silence_total_ns": 0,
    "sequence_gaps": 0,
    "sequence_missing": 0,
    "sequence_duplicated": 0,
    "active_span_ns": 0,
    "dead_lettered_share": 0.0,
    "divergence_seconds": 0,
}


def absent_providers(
    store: Queryable, expected: Sequence[str], present: set[str], end_ns: int
) -> list[dict[str, Any]]:
    """The ``expected`` providers not in ``present``: each with its last accepted event in
    the whole store (``last_event_ns``, None: never) and how long it has been silent at
    ``end_ns`` (``silent_for_ns``): since that event, or since the deployment's start (the
    first record the store holds) when it never sent one."""
    missing = sorted(set(expected) - present)
    if not missing:
        return []
    last = {
        r["provider"]: int(r["last_ns"])
        for r in store.query(
            f"""SELECT provider, toUnixTimestamp64Nano(max(received)) AS last_ns
                FROM {{db}}.observations
                WHERE {JUDGED} AND outcome = 'forwarded' AND provider IN {{names:Array(String)}}
                GROUP BY provider""",
            {"names": missing},
        )
    }
    (first,) = store.query(
        "SELECT toUnixTimestamp64Nano(min(received)) AS t FROM {db}.observations"
    )
    start = int(first["t"] or end_ns)
    return [
        {
            "provider": p,
            "last_event_ns": last.get(p),
            "silent_for_ns": max(end_ns - last.get(p, start), 0),
            "silent_since": "last event" if p in last else "deployment start",
        }
        for p in missing
    ]


def _flag_offset(
    row: dict[str, Any],
    offset: int | None,
    bound: int,
    offsets: dict[tuple[str, ...], int],
    me: tuple[str, ...],
) -> None:
    """Flag a clock-offset estimate that is negative or off the providers' median by > bound."""
    if offset is None:
        return
    if offset < 0:
        if row.get("clock_offset_basis") != "provider → broker":
            clock = "gate's"
        elif row.get("to_broker_clock") == "CreateTime":
            clock = "producer's (CreateTime)"
        elif row.get("to_broker_clock") == "LogAppendTime":
            clock = "broker's (LogAppendTime)"
        else:
            clock = "broker time's"
        row["clock_flags"].append(
            f"negative offset: the provider's clock runs ahead of the {clock}"
        )
    # The peers' median: over every provider (on the same instrument, by instrument), so
    # with three or more one skewed clock moves the median little and flags only itself.
    peers = sorted(v for k, v in offsets.items() if k[1:] == me[1:])
    if len(peers) < 2:
        return
    mid = len(peers) // 2
    median = peers[mid] if len(peers) % 2 else (peers[mid - 1] + peers[mid]) // 2
    row["clock_offset_vs_peers_ns"] = offset - median
    if abs(offset - median) > bound:
        row["clock_flags"].append(
            f"offset {'below' if offset < median else 'above'} its peers' median by more than "
            "the bound: a skewed clock or a different route"
        )


def _divergence(
    store: Queryable, window: dict[str, int], keys: str, sustain_s: int
) -> list[dict[str, Any]]:
    """Per key: divergence from the cross-provider median, aligned per second of origin time.

    Each provider's last price in a second is one voice in that second's median (seconds
    with at least two providers); the provider's divergence in the second is its farthest
    price in that second from the median. ``bps_sustained`` is the highest level held in
    ``sustain_s`` consecutive compared seconds (a one-tick spike does not hold).
    """
    own = ", ".join("per." + k.strip() for k in keys.split(","))
    return store.query(
        f"""WITH per AS (
                SELECT provider, instrument,
                       intDiv(toUnixTimestamp64Nano(origin), 1000000000) AS sec,
                       argMax(price, origin) AS last, min(price) AS lo, max(price) AS hi
                FROM {{db}}.observations
                WHERE {JUDGED} AND {IN_WINDOW} AND outcome = 'forwarded'
                  AND isFinite(price) AND price > 0
                GROUP BY provider, instrument, sec),
            ref AS (
                SELECT instrument, sec, median(last) AS mid FROM per
                GROUP BY instrument, sec HAVING count() >= 2),
            each AS (
                SELECT {own}, {"" if "instrument" in keys else "per.instrument,"} per.sec AS sec,
                       greatest(abs(hi - mid), abs(lo - mid)) / mid * 10000 AS bps
                FROM per INNER JOIN ref ON per.instrument = ref.instrument AND per.sec = ref.sec),
            held AS (
                SELECT {keys}, bps,
                       min(bps) OVER w AS floor_bps, count() OVER w AS n,
                       min(sec) OVER w AS first_sec, max(sec) OVER w AS last_sec
                FROM each
                WINDOW w AS (PARTITION BY {keys}, instrument ORDER BY sec
                             ROWS BETWEEN {int(sustain_s) - 1} PRECEDING AND CURRENT ROW))
            SELECT {keys}, max(bps) AS bps_max, quantileExact(0.5)(bps) AS bps_p50,
                   count() AS seconds,
                   maxIf(floor_bps, n = {int(sustain_s)}
                         AND last_sec - first_sec = {int(sustain_s) - 1}) AS bps_sustained
            FROM held GROUP BY {keys}""",
        window,
    )


def completeness(
    store: Queryable,
    since_ns: int,
    grace_ns: int = 5 * NS,
    key: SequenceKey = DEFAULT_SEQUENCE_KEY,
    gap_limit: int = 1000,
    expected: Sequence[str] = (),
) -> dict[str, Any]:
    """Per stage pair: events seen upstream but never downstream (lost), or seen twice; and
    per sequence key, the numbers the provider skipped or repeated. An ``expected`` provider
    (the alert definitions' registry) that sent nothing in the window is listed as absent,
    as ``providers_compare`` lists it.

    Between two stages the event id links the sightings. Between the origin and the gate,
    the provider's sequence numbers do, per ``key`` (provider and instrument by default, as
    the sequence rule keys them): a missing number was lost before stampline saw it, a number
    seen on two different events was duplicated. Events that left the upstream stage within
    ``grace_ns`` of the window's end may still be in flight and are not counted as lost.
    """
    end = anchor_ns(store)
    params = {"start": end - since_ns, "end": end, "settled": end - grace_ns}
    stage_pairs = store.query(
        f"""WITH pairs AS (
                SELECT DISTINCT prev_stage AS up, stage AS down FROM {{db}}.observations
                WHERE {IN_WINDOW} AND prev_stage NOT IN ('', 'origin')),
            seen AS (
                SELECT event_id, stage, uniqExact(received, emitted) AS sightings,
                       max(emitted) AS left_at
                FROM {{db}}.observations WHERE {IN_WINDOW} GROUP BY event_id, stage)
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
    per_key, gaps = sequence_report(store, params, key, gap_limit)
    rows: list[dict[str, Any]] = [
        {
            "from_stage": r["up"],
            "to_stage": r["down"],
            "provider": None,
            "keys": None,
            "upstream": int(r["upstream"]),
            "lost": int(r["lost"]),
            "duplicated": int(r["duplicated"]),
        }
        for r in stage_pairs
    ]
    # Origin -> gate, summed per stage and provider over the keys (per key below).
    summary: dict[tuple[str, str | None], dict[str, Any]] = {}
    for k in per_key:
        group = (k["stage"], k["key"].get("provider"))
        s = summary.setdefault(
            group,
            {
                "from_stage": "origin",
                "to_stage": group[0],
                "provider": group[1],
                "keys": 0,
                "upstream": 0,
                "lost": 0,
                "duplicated": 0,
            },
        )
        s["keys"] += 1
        s["upstream"] += k["expected"]
        s["lost"] += k["lost"]
        s["duplicated"] += k["duplicated"]
    rows.extend(summary[g] for g in sorted(summary, key=lambda g: (g[0], g[1] or "")))
    # Records too broken to name their provider (not JSON, oversized) still used up a
    # sequence number: the gate received and dead-lettered them, yet they show as missing.
    # Only the gate's judged rows count: a tap's rows name no provider by design.
    (unattributed,) = store.query(
        f"""SELECT uniqExact(event_id) AS n FROM {{db}}.observations
            WHERE {IN_WINDOW} AND {JUDGED} AND provider = ''""",
        params,
    )
    present = {
        r["provider"]
        for r in store.query(
            f"SELECT DISTINCT provider FROM {{db}}.observations WHERE {IN_WINDOW} AND {JUDGED}",
            params,
        )
    }
    return {
        "window": {"start": params["start"], "end": end},
        "absent": absent_providers(store, expected, present, end),
        "grace_ns": grace_ns,
        "sequence_key": list(key),
        "rows": rows,
        "sequence_keys": [k for k in per_key if k["lost"] or k["duplicated"]],
        "sequence_gaps": gaps,
        "sequence_gaps_listed_max": gap_limit,
        "unattributed": int(unattributed["n"]),
    }
