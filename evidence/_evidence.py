"""The evidence for one decision or event: the facts a regulator asks for, as one document.

``decision_evidence`` / ``event_evidence`` turn the trail's replay into an ``Evidence``: every
stamp with its host, bound and the bound's source, judged against a clock-accuracy tier;
stage and hop times as value ± combined bound with flags where the bound makes the value
or the order uncertain; each event's rule verdicts; and the integrity proof (the batches
holding the rows and the chain head). ``Evidence.to_dict()`` is the JSON document, schema
``SCHEMA`` (docs/evidence.md); the HTML and PDF are rendered from the same document.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stampline.audit import (
    ClockBound,
    EventTrail,
    Stamp,
    Store,
    Timeline,
    VerifyReport,
    format_ns,
    replay_decision,
    replay_event,
    short_ids,
)
from stampline.evidence._chain import read_chain_heads, read_chain_proof, verify_command
from stampline.evidence._regime import (
    BROKER_RESOLUTION_NS,
    Regime,
    Tier,
    observed_granularity_ns,
)

# Version 3: a stamp's tier verdict judges the divergence part of its bound against the tier
# declared for its stage, and its granularity is the clock's that produced the time (a tap
# sighting's is the broker's millisecond, no longer its digits); the decision's latency, and
# the values a failed verification affects, are part of the document.
SCHEMA = "stampline.evidence/3"


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file the report depends on (the configuration, a rule file), hashed when read."""

    role: str  # "config" | "rules"
    path: str
    sha256: str
    rules: dict[str, int] = field(default_factory=dict)  # rule id -> version, for rule files

    @classmethod
    def read(cls, role: str, path: Path, rules: dict[str, int] | None = None) -> InputFile:
        return cls(role, str(path), hashlib.sha256(path.read_bytes()).hexdigest(), rules or {})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "path": self.path, "sha256": self.sha256}
        if self.role == "rules":
            d["rules"] = dict(sorted(self.rules.items()))
        return d


@dataclass(frozen=True, slots=True)
class Context:
    """Who produced the report, from what, judged against which tier."""

    software: str
    regime: Regime
    tier: Tier
    store_args: str  # how `stampline audit verify` reaches the same store, e.g. "--store X"
    inputs: tuple[InputFile, ...] = ()
    produced_ns: int = field(default_factory=time.time_ns)
    # Stages the deployment gives a tier of their own (``evidence.stages``); the rest: ``tier``.
    stage_tiers: Mapping[str, Tier] = field(default_factory=dict)
    declared: str = "the default: the deployment declares no tier"  # where ``tier`` came from

    def tier_for(self, stage: str) -> Tier:
        return self.stage_tiers.get(stage, self.tier)


def config_hash(inputs: Sequence[InputFile]) -> str | None:
    """SHA-256 over the configuration file's digest and every rule file's, in order."""
    if not inputs:
        return None
    h = hashlib.sha256()
    for f in inputs:
        h.update(f"{f.role}:{f.sha256}\n".encode())
    return h.hexdigest()


def _source(stamp: Stamp) -> dict[str, Any]:
    b = ClockBound.from_label(stamp.clock_source, stamp.clock_err_ns or 0)
    d: dict[str, Any] = {"kind": b.kind}
    if b.kind == "chrony" and b.offset_ns is not None:
        d.update(
            offset_ns=b.offset_ns,
            root_dispersion_ns=b.root_dispersion_ns,
            root_delay_ns=b.root_delay_ns,
        )
    elif b.kind == "chrony":
        d["reason"] = "named by the stage's stamp, which does not carry chrony's terms"
    elif b.kind == "fallback":
        d["reason"] = b.reason
    elif b.kind == "unknown":
        d["reason"] = (
            "the trail does not say where this bound came from (a stamp that does not name "
            "its source, or a row written before bound sources were recorded)"
        )
    return d


def _judged(stamp: Stamp, bound: int, tier: Tier) -> dict[str, Any]:
    """A bounded stamp against its tier: divergence from UTC and granularity, each from the
    clock that produced the time."""
    if stamp.tap and stamp.received_ns is not None and stamp.received_ns != stamp.time_ns:
        # A tap's sighting is timed by the broker's millisecond timestamp; the tap adds that
        # millisecond to its bound. RTS 25 counts it as granularity, not as divergence.
        gran, source = BROKER_RESOLUTION_NS, "broker"
        divergence = max(bound - BROKER_RESOLUTION_NS, 0)
    else:
        gran, source, divergence = observed_granularity_ns(stamp.time_ns), "digits", bound
    bound_ok = divergence <= tier.max_divergence_ns
    gran_ok = gran <= tier.granularity_ns
    return {
        "tier": tier.name,
        "max_divergence_ns": tier.max_divergence_ns,
        "granularity_ns": tier.granularity_ns,
        "divergence_ns": divergence,
        "bound_ok": bound_ok,
        "observed_granularity_ns": gran,
        "granularity_from": source,
        "granularity_ok": gran_ok,
        "verdict": "fails" if not bound_ok else "meets" if gran_ok else "unproven",
    }


def _stamp(stamp: Stamp, tier: Tier) -> dict[str, Any]:
    d: dict[str, Any] = {
        "stage": stamp.stage,
        "kind": stamp.kind,
        "time": format_ns(stamp.time_ns),
        "time_ns": stamp.time_ns,
        "host": stamp.host,
    }
    if stamp.received_ns is not None:
        d["received_ns"] = stamp.received_ns
    if stamp.clock_err_ns is None:
        # The origin is the provider's clock, the broker stamp Kafka's: stampline knows no
        # bound for either, so neither is judged against the tier.
        d.update(bound_ns=None, bound_source=None, regime={"verdict": "outside"})
        return d
    d.update(
        bound_ns=stamp.clock_err_ns,
        bound_source=_source(stamp),
        regime=_judged(stamp, stamp.clock_err_ns, tier),
    )
    return d


def _intervals(trail: EventTrail) -> list[dict[str, Any]]:
    """Consecutive stamps of one event (origin, ingest, stages) as value ± combined bound."""
    # In the order an event lives through them (origin, ingest, then stages by time), not by
    # reading: a source clock running ahead puts the origin after the ingest, and that shows
    # as a negative span instead of a reordered one.
    # A derived event (a decision) is born at its stage: its origin and ingest are that
    # stage's own stamp, so only its stages make spans.
    kinds = ("stage",) if trail.parents else ("origin", "ingest", "stage")
    life = {"origin": 0, "ingest": 1, "stage": 2}
    points = sorted(
        (s for s in trail.stamps if s.kind in kinds), key=lambda s: (life[s.kind], s.time_ns)
    )
    # A stage's own time is two readings of one host's clock: its bound counts twice, which
    # overstates it (the offset cancels) rather than understate it.
    out = [
        _interval(f"in {s.stage}", s.received_ns, s.time_ns, s.clock_err_ns, s.clock_err_ns)
        for s in points
        if s.kind == "stage" and s.received_ns is not None and s.received_ns != s.time_ns
    ]
    for a, b in itertools.pairwise(points):
        start = a.time_ns
        end = b.received_ns if b.received_ns is not None else b.time_ns
        if a.kind == "ingest" and b.kind == "stage" and b.received_ns == a.time_ns:
            continue  # the first stage's intake is the ingest stamp itself
        out.append(_interval(f"{a.stage} → {b.stage}", start, end, a.clock_err_ns, b.clock_err_ns))
    return out


def _interval(
    name: str, start: int, end: int, bound_a: int | None, bound_b: int | None
) -> dict[str, Any]:
    value = end - start
    flags: list[str] = []
    if bound_a is None or bound_b is None:
        bound = None
        flags.append("unbounded: one end is a clock stampline does not bound (origin)")
    else:
        bound = bound_a + bound_b
        if abs(value) <= bound:
            flags.append("within bound: the value, and the order of its ends, are uncertain")
    if value < 0:
        flags.append("negative: the later stamp reads earlier")
    return {"span": name, "value_ns": value, "bound_ns": bound, "flags": flags}


def _born(t: EventTrail) -> tuple[int, int | None]:
    """When an event was born and the bound on that time (its origin is the source's)."""
    if t.origin_ns:
        own = next((s for s in t.stamps if s.kind == "origin"), None)
        return t.origin_ns, own.clock_err_ns if own else None
    first = min(t.stamps, key=lambda s: s.time_ns)
    return first.time_ns, first.clock_err_ns


def _decided(decision: EventTrail) -> Stamp | None:
    """The deciding stage's stamp: the decision made (a tap's later sighting is not it)."""
    stages = [s for s in decision.stamps if s.kind == "stage"]
    return next((s for s in stages if not s.tap), stages[0] if stages else None)


def _receipt(t: EventTrail) -> Stamp | None:
    """When the pipeline received an input: its ingest stamp, else its first stage's intake."""
    ingest = next((s for s in t.stamps if s.kind == "ingest"), None)
    if ingest is not None:
        return ingest
    first = next((s for s in t.stamps if s.kind == "stage" and s.received_ns is not None), None)
    if first is None or first.received_ns is None:
        return None
    return Stamp(first.stage, "stage", first.received_ns, first.clock_err_ns, host=first.host)


def _latency(
    timeline: Timeline, names: Mapping[str, str], affected: Mapping[str, list[str]]
) -> dict[str, Any] | None:
    """The interval a regulator asks about: each input received -> the decision made, as
    value ± the two stamps' bounds (None for an event's report)."""
    if timeline.kind != "decision":
        return None
    decision = timeline.events[0]
    decided = _decided(decision)
    made = None
    if decided is not None:
        made = {
            "stage": decided.stage,
            "time": format_ns(decided.time_ns),
            "time_ns": decided.time_ns,
            "bound_ns": decided.clock_err_ns,
        }
    decided_marked = bool(decided and affected.get(f"{decision.event_id}/{decided.stage}"))
    lines = []
    for t in timeline.events[1:]:
        if t.event_id not in decision.parents:
            continue  # an input of an input: its own latency is not this decision's
        got = _receipt(t)
        line: dict[str, Any] = {"event_id": t.event_id, "label": names[t.event_id]}
        if got is None or decided is None:
            why = "input never observed by stampline" if got is None else "no decision stamp"
            line.update(
                received_at=None, received=None, received_ns=None, value_ns=None, bound_ns=None,
                flags=[why], affected=False,
            )  # fmt: skip
        else:
            bounds = got.clock_err_ns, decided.clock_err_ns
            span = _interval("", got.time_ns, decided.time_ns, *bounds)
            line.update(
                received_at=got.stage,
                received=format_ns(got.time_ns),
                received_ns=got.time_ns,
                value_ns=span["value_ns"],
                bound_ns=span["bound_ns"],
                flags=span["flags"],
                affected=decided_marked or bool(affected.get(t.event_id)),
            )
        lines.append(line)
    return {"decided": made, "inputs": lines}


# Findings that put a whole chain in doubt, not one batch of it.
_WHOLE_CHAIN = frozenset(
    {
        "seq_gap",
        "head_missing",
        "chain_without_head",
        "chain_truncated",
        "head_out_of_order",
        "head_unsigned",
        "head_bad_signature",
    }
)


def _affected(proof: dict[str, Any], verified: VerifyReport | None) -> dict[str, list[str]]:
    """``event/stage`` (and ``event`` alone) -> what verification found wrong with the batch
    or chain holding that row: every value shown from it is marked."""
    found: dict[str, list[str]] = {}
    if verified is None or verified.ok:
        return found
    for f in verified.findings:
        for b in [*proof["batches"], *proof["unledgered"]]:
            if f.chain_id and f.chain_id != b["chain_id"]:
                continue
            if f.problem in _WHOLE_CHAIN:
                note = f"{b['chain_id']}: {f.problem}"
            elif (f.seq, f.kind) == (b["batch"], b["kind"]):
                note = f"{b['chain_id']} batch {f.seq}: {f.problem}"
            else:
                continue
            for held in b["holds"]:
                for key in (held, held.split("/", 1)[0]):
                    if note not in found.setdefault(key, []):
                        found[key].append(note)
    return found


def contested_note(chains: Sequence[str]) -> str:
    """The mark on a value two or more chains hold differently."""
    return f"contested: chains {', '.join(chains)} hold different rows"


def _contested(timeline: Timeline, found: dict[str, list[str]]) -> None:
    """Add to ``found`` (as ``_affected`` returns it) each row the trail view says chains
    disagree on: the stage's own stamp, and the event's values read from any of its rows."""
    for t in timeline.events:
        for stage, chains in t.contested:
            note = contested_note(chains)
            for key in (f"{t.event_id}/{stage}", t.event_id):
                if note not in found.setdefault(key, []):
                    found[key].append(note)


def _order_flags(timeline: Timeline) -> list[dict[str, Any]]:
    """An input born after its decision (by its own clock), or too close to tell."""
    if timeline.kind != "decision":
        return []
    decided = _decided(timeline.events[0])
    if decided is None:
        return []
    flags: list[dict[str, Any]] = []
    for t in timeline.events[1:]:
        if not t.stamps:
            flags.append({"event_id": t.event_id, "flag": "input never observed by stampline"})
            continue
        born, bound = _born(t)
        combined = None if bound is None else bound + (decided.clock_err_ns or 0)
        if born > decided.time_ns:
            flags.append(
                {
                    "event_id": t.event_id,
                    "flag": "input born after its decision",
                    "by_ns": born - decided.time_ns,
                    "bound_ns": combined,
                }
            )
        elif combined is not None and decided.time_ns - born <= combined:
            flags.append(
                {
                    "event_id": t.event_id,
                    "flag": "order uncertain: input born within the bound of its decision",
                    "by_ns": born - decided.time_ns,
                    "bound_ns": combined,
                }
            )
    return flags


def _recorded_hashes(t: EventTrail) -> dict[tuple[str, int], str]:
    """(rule id, version) -> the rule file's SHA-256 the gate recorded with the verdict."""
    found: dict[tuple[str, int], str] = {}
    for entry in t.rule_sha256:
        rule, _, sha = entry.rpartition("=")
        rule_id, _, version = rule.rpartition("@v")
        if rule_id and version.isdigit():
            found[(rule_id, int(version))] = sha
    return found


def _verdicts(
    t: EventTrail, reasons: dict[str, str], rule_files: Sequence[InputFile]
) -> dict[str, Any]:
    recorded = _recorded_hashes(t)

    def verdict(rule_id: str, version: int, severity: str, reason: str) -> dict[str, Any]:
        # The hash recorded when the verdict was made; the file given now is compared to it.
        then = recorded.get((rule_id, version))
        now: dict[str, Any] | None = None
        for f in rule_files:
            if rule_id in f.rules:
                now = {
                    "path": f.path,
                    "sha256": f.sha256,
                    "version_now": f.rules[rule_id],
                    "same_version": f.rules[rule_id] == version,
                    "same_file": None if then is None else then == f.sha256,
                }
                break
        return {
            "rule_id": rule_id,
            "rule_version": version,
            "severity": severity,
            "reason": reason,
            "rule_file_sha256": then,
            "rule_file": now,
        }

    verdicts: list[dict[str, Any]] = []
    if t.outcome == "dead_lettered":
        verdicts.append(verdict(t.rule_id, t.rule_version, "error", reasons.get(t.event_id, "")))
    for w in t.warnings:
        rule_id, _, version = w.rpartition("@v")
        verdicts.append(verdict(rule_id, int(version) if version.isdigit() else 0, "warn", ""))
    return {"outcome": t.outcome, "verdicts": verdicts}


def _dead_letter_reasons(store: Store, ids: list[str]) -> dict[str, str]:
    rows = store.query(
        "SELECT toString(event_id) AS eid, any(reason) AS reason FROM {db}.dead_letters "
        "WHERE event_id IN {ids:Array(UUID)} GROUP BY eid",
        {"ids": ids},
    )
    return {r["eid"]: r["reason"] for r in rows}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One evidence document (``to_dict`` is the JSON the report folder holds)."""

    document: dict[str, Any]

    @property
    def subject_id(self) -> str:
        return str(self.document["subject"]["id"])

    @property
    def heads(self) -> dict[str, str]:
        """Chain id -> head of every chain the document's integrity proof names."""
        return {c["chain_id"]: c["head"] for c in self.document["integrity"]["chains"]}

    def to_dict(self) -> dict[str, Any]:
        return self.document


def decision_evidence(
    store: Store, decision_id: str, ctx: Context, verified: VerifyReport | None = None
) -> Evidence:
    """The evidence for a decision and its whole lineage.

    Raises:
        ValueError: ``decision_id`` is not a UUID.
        NotFoundError: the trail holds no observation of it.
    """
    return _evidence(store, replay_decision(store, decision_id), ctx, verified)


def event_evidence(
    store: Store, event_id: str, ctx: Context, verified: VerifyReport | None = None
) -> Evidence:
    """The evidence for one event.

    Raises:
        ValueError: ``event_id`` is not a UUID.
        NotFoundError: the trail holds no observation of it.
    """
    return _evidence(store, replay_event(store, event_id), ctx, verified)


def produced(ctx: Context) -> dict[str, Any]:
    """The report's provenance block: software, inputs, their hash, the time produced."""
    return {
        "software": ctx.software,
        "at": format_ns(ctx.produced_ns),
        "at_ns": ctx.produced_ns,
        "inputs": [f.to_dict() for f in ctx.inputs],
        "config_sha256": config_hash(ctx.inputs),
    }


def verified_block(verified: VerifyReport | None) -> dict[str, Any] | None:
    """What a whole-store verification found while the report was produced (None: not run)."""
    if verified is None:
        return None
    return {
        "ok": verified.ok,
        "batches": verified.batches,
        "rows": verified.rows,
        "dead_letters": verified.dead_letters,
        "expired_batches": verified.expired,
        "chain_heads": dict(sorted(verified.heads.items())),
        "findings": [f.to_dict() for f in verified.findings],
    }


def regime_block(ctx: Context) -> dict[str, Any]:
    return {
        "id": ctx.regime.id,
        "version": ctx.regime.version,
        "title": ctx.regime.title,
        **ctx.tier.to_dict(),
        "declared": ctx.declared,
        "stages": {stage: t.name for stage, t in sorted(ctx.stage_tiers.items())},
    }


def _evidence(
    store: Store, timeline: Timeline, ctx: Context, verified: VerifyReport | None
) -> Evidence:
    ids = [e.event_id for e in timeline.events]
    names = short_ids(ids)
    reasons = _dead_letter_reasons(store, ids)
    rule_files = [f for f in ctx.inputs if f.role == "rules"]
    proof = read_chain_proof(store, ids)
    integrity = proof.to_dict()
    affected = _affected(integrity, verified)
    _contested(timeline, affected)
    events = []
    for t in timeline.events:
        born, _ = _born(t) if t.stamps else (0, None)
        stamps = []
        for s in t.stamps:
            stamp = _stamp(s, ctx.tier_for(s.stage))
            # A stage stamp is its own row; origin, ingest and broker times are columns of
            # the event's rows, so any of them in doubt puts those in doubt too.
            marks = affected.get(f"{t.event_id}/{s.stage}" if s.kind == "stage" else t.event_id)
            if marks:
                stamp["affected"] = marks
            stamps.append(stamp)
        events.append(
            {
                "event_id": t.event_id,
                "label": names[t.event_id],
                "role": t.role,
                "depth": t.depth,
                "provider": t.provider,
                "instrument": t.instrument,
                "source": {"topic": t.topic, "partition": t.partition, "offset": t.offset},
                "parents": list(t.parents),
                "born": format_ns(born) if born else None,
                "observed": bool(t.stamps),
                "stamps": stamps,
                "intervals": _intervals(t) if t.stamps else [],
                "rules": _verdicts(t, reasons, rule_files),
                **({"affected": affected[t.event_id]} if t.event_id in affected else {}),
            }
        )
    # Every chain's head, not only those shown: verify counts a chain no head names as made up.
    every = {h.chain_id: h.head for h in read_chain_heads(store)}
    integrity["verify_command"] = verify_command(ctx.store_args, every)
    integrity["verified_at_production"] = verified_block(verified)
    document = {
        "schema": SCHEMA,
        "subject": {"kind": timeline.kind, "id": timeline.root_id},
        "produced": produced(ctx),
        "regime": regime_block(ctx),
        "latency": _latency(timeline, names, affected),
        "events": events,
        "order_flags": _order_flags(timeline),
        "timeline": [
            {
                "event_id": s.event_id,
                "label": names[s.event_id],
                "role": s.role,
                "stage": s.stamp.stage,
                "kind": s.stamp.kind,
                "time_ns": s.stamp.time_ns,
                "bound_ns": s.stamp.clock_err_ns,
                "delta_from_first_ns": s.delta_from_first_ns,
                "delta_from_origin_ns": s.delta_from_origin_ns,
            }
            for s in timeline.sightings
        ],
        "integrity": integrity,
    }
    return Evidence(document)
