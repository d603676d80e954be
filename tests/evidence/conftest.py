"""Shared fixtures of the evidence tests.

- ``lineage``: a small trail with a known lineage for the evidence report: two inputs and a
  decision, plus a dead-lettered event. Every value is chosen so the evidence has one thing
  of each kind to show: a chrony bound, a configured one, a fallback and an unknown source; a
  bound over the 'other' tier; a warn verdict made under an earlier edit of the rule file and a
  dead letter (with its reason) under the file as it is now; an input born after its decision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from stampline.audit import AUTHORITY_TAP, ChdbStore, ClockBound, DeadLetter, Observation
from stampline.evidence import Context, InputFile, regime_tier

T0 = 1_700_000_000_000_000_000
CHRONY = ClockBound(50_000, "chrony", "", -12_000, 30_000, 16_000).label()
RULES = (
    "version: 2\nrules:\n"
    "  - {id: qty.max, version: 2, kind: range, field: quantity, max: 1000}\n"
    "  - {id: price.tick, version: 1, kind: tick_size, field: price, tick: 0.01, severity: warn}\n"
)
# The rule file as it was when alpha's warn verdict was made: edited since (a comment), so
# the hash recorded with that verdict is not the file's hash now.
RULES_THEN_SHA = hashlib.sha256(("# first cut\n" + RULES).encode()).hexdigest()
RULES_SHA = hashlib.sha256(RULES.encode()).hexdigest()


@dataclass(frozen=True)
class Lineage:
    store: ChdbStore
    alpha: str
    charlie: str
    decision: str
    dead: str
    rules: Path


def lineage_context(
    lin: Lineage, tier: str = "other", stages: dict[str, str] | None = None
) -> Context:
    """A report's context on the lineage's store, its rule file given, judged against
    ``tier`` (and ``stages``: stage -> tier)."""
    reg, t = regime_tier("rts25/2017/574", tier)
    return Context(
        software="stampline test",
        regime=reg,
        tier=t,
        store_args=f"--store {lin.store.path} --database {lin.store.database}",
        inputs=(InputFile.read("rules", lin.rules, {"qty.max": 2, "price.tick": 1}),),
        stage_tiers={s: reg.tier(n) for s, n in (stages or {}).items()},
    )


@pytest.fixture
def lineage(store: ChdbStore, tmp_path: Path) -> Lineage:
    alpha = "01a21ad7-0aa1-8795-a770-c306b1314d78"
    charlie = "01a21ad7-0a6d-8df1-b3d7-5fd456ffc443"
    decision = "01a21ad7-0ae0-796b-aa17-d84548332490"
    dead = "01a21ad7-0b00-8000-8000-00000000dead"
    store.write_observations(
        [
            Observation(
                alpha, "gate", T0 + 5_000, T0 + 7_123, T0, T0 + 5_000, 50_000,
                host="gw-1", topic="md.raw", partition=0, offset=3, provider="alpha",
                instrument="EURUSD", outcome="forwarded", prev_stage="origin",
                prev_emitted_ns=T0, clock_source=CHRONY, warnings=("price.tick@v1",),
                rule_sha256=(f"price.tick@v1={RULES_THEN_SHA}",),
            ),
            Observation(
                charlie, "gate", T0 + 6_000, T0 + 8_000, T0 + 9_000_000, T0 + 6_000, 50_000,
                host="gw-1", topic="md.raw", partition=1, offset=4, provider="charlie",
                instrument="EURUSD", outcome="forwarded", clock_source="configured",
            ),
        ]
    )  # fmt: skip
    store.write_observations(
        [
            Observation(
                decision, "risk", T0 + 1_000_000, T0 + 1_500_001, T0 + 1_000_000,
                T0 + 1_000_000, 2_000_000, host="risk-1", topic="decisions", offset=7,
                parents=(alpha, charlie), authority=AUTHORITY_TAP,
            )
        ]
    )  # fmt: skip
    store.write_observations(
        [
            Observation(
                dead, "gate", T0 + 20_000, T0 + 21_000, 0, T0 + 20_000, 1_000_000,
                host="gw-2", topic="md.raw", partition=2, offset=9, outcome="dead_lettered",
                rule_id="qty.max", rule_version=2, clock_source="fallback: chronyc not found",
                rule_sha256=(f"qty.max@v2={RULES_SHA}",),
            )
        ]
    )  # fmt: skip
    store.write_dead_letters(
        [
            DeadLetter(
                dead, T0 + 20_000, "md.raw", 2, 9, "", "qty.max", 2,
                "quantity 5000 is above 1000", b"{}",
            )
        ]
    )  # fmt: skip
    rules = tmp_path / "market.rules.yaml"
    rules.write_text(RULES, "utf-8")
    return Lineage(store, alpha, charlie, decision, dead, rules)
