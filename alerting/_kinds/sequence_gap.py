"""``sequence_gap``: a sequence rule saw numbers skipped on a key.

Judged in the gate that owns the key, from the rule's gap-open events (first, last,
missing); see ``_kind.per_key``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stampline.alerting._kinds._kind import RuleAlert, per_key


class SequenceGap(RuleAlert):
    """A sequence rule saw numbers skipped on a key; figures: first, last and missing."""

    kind: Literal["sequence_gap"]
    min_missing: int = Field(default=1, ge=1)


KIND = per_key(
    SequenceGap,
    "sequence",
    example={"scope": {"instrument": True}},
    summary="{provider}: sequence gap",
    notice="{provider} {instrument}: {missing} sequence number(s) missing",
    panel="Silence and gaps per provider",
    investigate="stampline providers compare --since 1h --by instrument",
)
