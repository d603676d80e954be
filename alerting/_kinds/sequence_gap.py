"""``sequence_gap``: a sequence rule saw numbers skipped on a key.

Judged in the gate that owns the key (see ``_kind.per_key``), from the rule's gap-open
events, not from the rows the rule fails: :func:`gap_opened` is the kind's ``key_faults``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stampline.alerting._kinds._kind import KeyBatch, KeyFaults, RuleAlert, per_key


class SequenceGap(RuleAlert):
    """A sequence rule saw numbers skipped on a key; figures: first, last and missing."""

    kind: Literal["sequence_gap"]
    min_missing: int = Field(default=1, ge=1)


def gap_opened(d: SequenceGap, batch: KeyBatch) -> KeyFaults:
    """A gap is raised by its gap-open event (it knows the size), not by every row the
    sequence rule flags (reordered and duplicate rows fail it too): the first row of a key
    whose gap of at least ``min_missing`` opened in the batch, with the gap as its figures
    and the numbers missing as its value."""
    opened: dict[tuple[str, str], tuple[int, dict[str, object]]] = {}
    for g in batch.gaps:
        missing = g.last - g.first + 1
        if g.kind == "open" and g.rule_id in batch.rules and missing >= d.min_missing:
            key = (g.key[0], g.key[1] if len(g.key) > 1 else "")
            opened[key] = (missing, {"first": g.first, "last": g.last, "missing": missing})
    failing: set[int] = set()
    faults: dict[tuple[str, str], tuple[float, dict[str, object]]] = {}
    if opened:
        foreign = batch.foreign
        for row, key in enumerate(zip(batch.providers, batch.instruments, strict=True)):
            if key in opened and key not in faults and row not in foreign:
                missing, figures = opened[key]
                faults[key] = (float(missing), figures)
                failing.add(row)
    return failing, faults


KIND = per_key(
    SequenceGap,
    "sequence",
    example={"scope": {"instrument": True}},
    summary="{provider}: sequence gap",
    notice="{provider} {instrument}: {missing} sequence number(s) missing",
    panel="Silence and gaps per provider",
    investigate="stampline providers compare --since 1h --by instrument",
    faults=gap_opened,
)
