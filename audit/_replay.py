"""Forensic replay: every sighting of an event, or of a decision and its lineage, in order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from stampline._common import shown_value
from stampline.audit._model import TAP_SIGHTING
from stampline.audit.exceptions import NotFoundError

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_MAX_LINEAGE_DEPTH = 64
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"

StampKind = Literal["origin", "broker", "ingest", "stage"]
# Stamps that share a nanosecond are listed in the order an event lives through them.
_KIND_ORDER: dict[str, int] = {"origin": 0, "broker": 1, "ingest": 2, "stage": 3}


class Queryable(Protocol):
    """What replay needs from a store backend."""

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Stamp:
    """One point in an event's life. ``received_ns`` is set for stage stamps."""

    stage: str
    kind: StampKind
    time_ns: int
    clock_err_ns: int | None = None
    received_ns: int | None = None
    host: str = ""
    # Where the bound came from, as the trail recorded it (audit.ClockBound.label()); "" when
    # the stamper did not say.
    clock_source: str = ""
    # A tap's own sighting: received is the broker time, so time - received is the tap's
    # lag in reading the record, not a stage's hold time.
    tap: bool = False
    # A broker stamp's timestamp type, whose clock it is: "LogAppendTime" (the broker's, when
    # it appended the record), "CreateTime" (the producer's, when it made it), "" not
    # recorded (a row written before migration 032).
    time_type: str = ""
    # The chains of the trail holding different rows for the row(s) this stamp was read from
    # (the `trail` view's `contested`, migration 033), sorted; () where they agree. Which
    # chain is real is for `stampline audit verify` with the chains' heads to say.
    contested: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"stage": self.stage, "kind": self.kind, "time_ns": self.time_ns}
        if self.kind == "broker":
            d["time_type"] = self.time_type or "unknown"
        if self.received_ns is not None:
            d["received_ns"] = self.received_ns
        if self.tap:
            d["tap"] = True
        if self.clock_err_ns is not None:
            d["clock_err_ns"] = self.clock_err_ns
            d["clock_source"] = self.clock_source or "unknown"
        if self.host:
            d["host"] = self.host
        if self.contested:
            d["contested"] = list(self.contested)
        return d


@dataclass(frozen=True, slots=True)
class Verdict:
    """A broken rule recorded for an event: ``reject`` (dead-lettered) or ``warn``."""

    severity: Literal["reject", "warn"]
    rule_id: str
    rule_version: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class EventTrail:
    """Everything the trail holds about one event."""

    event_id: str
    role: Literal["event", "decision", "input"]
    depth: int
    origin_ns: int
    provider: str
    instrument: str
    topic: str
    partition: int
    offset: int
    outcome: str
    rule_id: str
    parents: tuple[str, ...]
    stamps: tuple[Stamp, ...]
    rule_version: int = 0
    warnings: tuple[str, ...] = ()  # warn rules the event broke and still passed, "rule@vN"
    # Every rule verdict the trail keeps for it: a dead letter's, or each broken warn rule
    # of a forwarded record, with version and reason.
    verdicts: tuple[Verdict, ...] = ()
    # The SHA-256 of the rule file each of those rules came from when the gate made the
    # verdict, as the trail recorded it: "rule@vN=HEX" (none for built-in rules, or rows
    # written before migration 011).
    rule_sha256: tuple[str, ...] = ()
    # Stages whose row two or more chains hold differently, with those chains: the event's
    # own columns (source, provider, outcome, parents, verdicts) may come from any of them.
    contested: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "role": self.role,
            "depth": self.depth,
            "origin_ns": self.origin_ns,
            "provider": self.provider,
            "instrument": self.instrument,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "outcome": self.outcome,
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "warnings": list(self.warnings),
            "parents": list(self.parents),
            "stamps": [s.to_dict() for s in self.stamps],
            "verdicts": [v.to_dict() for v in self.verdicts],
            "rule_sha256": list(self.rule_sha256),
            "contested": {stage: list(chains) for stage, chains in self.contested},
        }


@dataclass(frozen=True, slots=True)
class Sighting:
    """A stamp placed on the merged timeline of a replay."""

    event_id: str
    role: str
    stamp: Stamp
    # From this event's own origin; None when the event has none (a record too broken to
    # carry an origin time), rather than a misleading zero on every row.
    delta_from_origin_ns: int | None
    # From the earliest origin in the replay, or the earliest stamp where no event has one.
    delta_from_first_ns: int
    # The hop that ends here: from this event's previous stamp (its stage), how long, and
    # whose time it was (``hop_owner``, "" where no one part of the pipeline owns it).
    hop_from: str = ""
    hop_ns: int | None = None
    hop_owner: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "role": self.role,
            "time": format_ns(self.stamp.time_ns),
            "delta_from_origin_ns": self.delta_from_origin_ns,
            "delta_from_first_ns": self.delta_from_first_ns,
            "hop": {"from": self.hop_from, "ns": self.hop_ns, "owner": self.hop_owner}
            if self.hop_ns is not None
            else None,
            **self.stamp.to_dict(),
        }


def hop_owner(before: Stamp, after: Stamp) -> str:
    """Whose time the hop from ``before`` to ``after`` was (docs/reports.md, "Which hop is
    whose"): born -> on the broker is the provider's; on the broker -> taken in is the
    consumer's queue (the gate's backlog, or a stage's); in -> out is the stage's hold."""
    if before.kind == "origin" and after.kind == "broker":
        return "provider"
    if after.tap:
        return "tap lag" if before.kind == "broker" else ""
    if before.kind == "broker":
        # a stage's stamp is when it let the event go: its queue and its hold (shown apart)
        return "queue" if after.kind == "ingest" else "queue + hold"
    if after.kind == "stage" and after.received_ns == before.time_ns:
        return "hold"
    return ""


@dataclass(frozen=True, slots=True)
class Timeline:
    """The answer to a replay: the events involved and their merged, ordered sightings."""

    kind: Literal["event", "decision"]
    root_id: str
    events: tuple[EventTrail, ...]
    sightings: tuple[Sighting, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.root_id,
            "events": [e.to_dict() for e in self.events],
            "timeline": [s.to_dict() for s in self.sightings],
        }


def format_ns(ns: int) -> str:
    """ISO-8601 UTC with all nine fractional digits (datetime alone keeps only six)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def normalise_id(event_id: str) -> str:
    """Canonical lower-case, hyphenated form of an event id.

    Raises:
        ValueError: ``event_id`` is not a UUID.
    """
    text = event_id.strip()
    if not _UUID.match(text):
        raise ValueError(f"event id {shown_value(event_id)} is not a UUID")
    h = text.replace("-", "").lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_SELECT = (
    """
SELECT toString(event_id) AS eid, stage,
       toUnixTimestamp64Nano(received) AS received_ns,
       toUnixTimestamp64Nano(emitted) AS emitted_ns,
       toUnixTimestamp64Nano(origin) AS origin_ns,
       toUnixTimestamp64Nano(ingested) AS ingested_ns,
       clock_err_ns, host, topic, partition, offset,
       toUnixTimestamp64Milli(broker_time) AS broker_ms,
       toString(broker_time_type) AS broker_time_type,
       provider, instrument, seq, toString(outcome) AS outcome, rule_id, rule_version,
       arrayMap(p -> toString(p), parents) AS parents, clock_source, warnings,
       toString(rule_sha256) AS rule_sha256,
       """
    + TAP_SIGHTING
    + """ AS tap_sighting,
       chains, contested
FROM {db}.trail
WHERE event_id IN {ids:Array(UUID)}
ORDER BY event_id, stage
"""
)


def replay_event(store: Queryable, event_id: str) -> Timeline:
    """The timeline of one event.

    Raises:
        ValueError: ``event_id`` is not a UUID.
        NotFoundError: the trail holds no observation of it.
    """
    eid = normalise_id(event_id)
    rows = _fetch(store, [eid])
    if eid not in rows:
        raise NotFoundError(f"no observation of event {eid} in the trail")
    trail = _trail(eid, rows[eid], "event", 0, _verdicts(store, [eid]).get(eid, ()))
    return _timeline("event", eid, [trail])


def replay_decision(store: Queryable, decision_id: str) -> Timeline:
    """The timeline of a decision and, recursively, of every event it was derived from.

    Parents the trail never saw are listed with no stamps rather than silently omitted.

    Raises:
        ValueError: ``decision_id`` is not a UUID.
        NotFoundError: the trail holds no observation of the decision.
    """
    root = normalise_id(decision_id)
    trails: dict[str, EventTrail] = {}
    frontier = [root]
    depth = 0
    while frontier and depth <= _MAX_LINEAGE_DEPTH:
        rows = _fetch(store, frontier)
        if depth == 0 and root not in rows:
            raise NotFoundError(f"no observation of decision {root} in the trail")
        verdicts = _verdicts(store, frontier)
        next_ids: list[str] = []
        for eid in frontier:
            role: Literal["decision", "input"] = "decision" if depth == 0 else "input"
            trail = _trail(eid, rows.get(eid, []), role, depth, verdicts.get(eid, ()))
            trails[eid] = trail
            next_ids.extend(p for p in trail.parents if p not in trails and p not in next_ids)
        frontier = next_ids
        depth += 1
    return _timeline("decision", root, list(trails.values()))


_VERDICTS = """
SELECT eid, severity, rule_id, rule_version, reason FROM (
    SELECT toString(event_id) AS eid, 'reject' AS severity, rule_id, rule_version, reason
    FROM {db}.dead_letters WHERE event_id IN {ids:Array(UUID)}
    UNION ALL
    SELECT toString(event_id) AS eid, 'warn' AS severity, rule_id, rule_version, reason
    FROM {db}.warnings WHERE event_id IN {ids:Array(UUID)})
ORDER BY eid, severity, rule_id, rule_version
LIMIT 1 BY eid, severity, rule_id, rule_version
"""


def _fetch(store: Queryable, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in store.query(_SELECT, {"ids": ids}):
        by_id.setdefault(row["eid"], []).append(row)
    return by_id


def _verdicts(store: Queryable, ids: list[str]) -> dict[str, tuple[Verdict, ...]]:
    by_id: dict[str, list[Verdict]] = {}
    for r in store.query(_VERDICTS, {"ids": ids}):
        v = Verdict(r["severity"], r["rule_id"], int(r["rule_version"]), r["reason"])
        by_id.setdefault(r["eid"], []).append(v)
    return {k: tuple(v) for k, v in by_id.items()}


def _trail(
    eid: str,
    rows: list[dict[str, Any]],
    role: Literal["event", "decision", "input"],
    depth: int,
    verdicts: tuple[Verdict, ...] = (),
) -> EventTrail:
    stamps: list[Stamp] = []
    contested = [(r["stage"], _chains(r)) for r in rows if r["contested"]]
    anywhere = tuple(sorted({c for _, chains in contested for c in chains}))
    origin = min((r["origin_ns"] for r in rows if r["origin_ns"] > 0), default=0)
    ingested = min((r["ingested_ns"] for r in rows if r["ingested_ns"] > 0), default=0)
    if origin:
        stamps.append(Stamp("origin", "origin", origin, contested=anywhere))
    if ingested:
        # The ingest stamp is the first stage's intake: its bound and source are that row's.
        first_in = min(
            (r for r in rows if r["ingested_ns"] == ingested), key=lambda r: r["clock_err_ns"]
        )
        stamps.append(
            Stamp(
                "ingest",
                "ingest",
                ingested,
                clock_err_ns=first_in["clock_err_ns"],
                host=first_in["host"],
                clock_source=first_in["clock_source"],
                contested=_chains(first_in),
            )
        )
    seen_topics: set[str] = set()
    for r in rows:
        if r["broker_ms"] > 0 and r["topic"] and r["topic"] not in seen_topics:
            seen_topics.add(r["topic"])
            stamps.append(
                Stamp(
                    f"kafka:{r['topic']}",
                    "broker",
                    r["broker_ms"] * 1_000_000,
                    time_type=r["broker_time_type"],
                    contested=_chains(r),
                )
            )
        stamps.append(
            Stamp(
                r["stage"],
                "stage",
                r["emitted_ns"],
                clock_err_ns=r["clock_err_ns"],
                received_ns=r["received_ns"],
                host=r["host"],
                clock_source=r["clock_source"],
                tap=bool(r["tap_sighting"]),
                contested=_chains(r),
            )
        )
    stamps.sort(key=lambda s: (s.time_ns, _KIND_ORDER[s.kind]))
    # The row that recorded the event's source (the gate, or the first stage) names it.
    first = min(rows, key=lambda r: r["received_ns"]) if rows else {}
    parents = sorted({p for r in rows for p in r["parents"] if p != _ZERO_UUID})
    dead = next((r for r in rows if r["outcome"] == "dead_lettered"), None)
    warned = sorted({w for r in rows for w in r["warnings"].split(",") if w})
    hashes = sorted({h for r in rows for h in r["rule_sha256"].split(",") if h})
    return EventTrail(
        event_id=eid,
        role=role,
        depth=depth,
        origin_ns=origin,
        provider=first.get("provider", ""),
        instrument=first.get("instrument", ""),
        topic=first.get("topic", ""),
        partition=first.get("partition", -1),
        offset=first.get("offset", -1),
        outcome=dead["outcome"] if dead else first.get("outcome", "unseen"),
        rule_id=dead["rule_id"] if dead else "",
        parents=tuple(parents),
        stamps=tuple(stamps),
        rule_version=dead["rule_version"] if dead else 0,
        warnings=tuple(warned),
        verdicts=verdicts,
        rule_sha256=tuple(hashes),
        contested=tuple(contested),
    )


def _chains(row: dict[str, Any]) -> tuple[str, ...]:
    """The chains holding the row's (event, stage) when they disagree, else ()."""
    return tuple(row["chains"]) if row["contested"] else ()


def _timeline(kind: Literal["event", "decision"], root: str, trails: list[EventTrail]) -> Timeline:
    origins = [t.origin_ns for t in trails if t.origin_ns]
    first = min(origins, default=0) or min((s.time_ns for t in trails for s in t.stamps), default=0)
    sightings = [
        Sighting(
            event_id=t.event_id,
            role=t.role,
            stamp=s,
            delta_from_origin_ns=s.time_ns - t.origin_ns if t.origin_ns else None,
            delta_from_first_ns=s.time_ns - first,
            hop_from=before.stage if before else "",
            hop_ns=s.time_ns - before.time_ns if before else None,
            hop_owner=hop_owner(before, s) if before else "",
        )
        for t in trails
        for before, s in zip((None, *t.stamps), t.stamps, strict=False)
    ]
    sightings.sort(key=lambda s: (s.stamp.time_ns, _KIND_ORDER[s.stamp.kind]))
    return Timeline(kind=kind, root_id=root, events=tuple(trails), sightings=tuple(sightings))


def short_ids(ids: list[str] | tuple[str, ...], minimum: int = 8) -> dict[str, str]:
    """A short label per id that tells it apart from the others: its tail, "…" in front.

    Time-ordered ids (UUIDv7, the gate's UUIDv8) share their first characters within a
    millisecond, so a prefix names nothing; their tail is random or hashed. The tail grows
    from ``minimum`` hex digits until every label is unique.
    """
    hexes = {i: i.replace("-", "") for i in ids}
    n = minimum
    while n < 32 and len({h[-n:] for h in hexes.values()}) < len(hexes):
        n += 1
    return {i: "…" + h[-n:] for i, h in hexes.items()}
