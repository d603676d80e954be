"""``sequence_gap``: a sequence rule saw numbers skipped on a key.

Detected in the gate that owns the key (``KeyDetectors``: the rule keeps its state per
(provider, instrument), which lives on one partition, so exactly one gate sees each fault),
from the rule's gap-open events; exported as the detector's firing gauge.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stampline.alerting._kinds._kind import (
    AlertKind,
    GrafanaRule,
    RuleAlert,
    command,
    firing_case,
    firing_signal,
)


class SequenceGap(RuleAlert):
    """A sequence rule saw numbers skipped on a key; figures: first, last and missing."""

    kind: Literal["sequence_gap"]
    min_missing: int = Field(default=1, ge=1)


KIND = AlertKind(
    name="sequence_gap",
    model=SequenceGap,
    example={"scope": {"instrument": True}},
    detected_by="stampline.alerting._detectors:KeyDetectors",
    signal=firing_signal,
    case=firing_case,
    summary="{provider}: sequence gap",
    notice="{provider} {instrument}: {missing} sequence number(s) missing",
    grafana=GrafanaRule(
        no_data="OK",  # the firing gauge exists only while something fires
        group="providers",
        panel=("stampline-providers", "Silence and gaps per provider"),
        investigate=command("stampline providers compare --since 1h --by instrument"),
    ),
    firing_gauge=True,
    provider_level=True,
    rule_kind="sequence",
)
