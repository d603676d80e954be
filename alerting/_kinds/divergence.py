"""``divergence``: a divergence rule (already sustained by its own ``sustain``) fails a
key's records.

Detected in the gate that owns the key (``KeyDetectors``); exported as its firing gauge.
"""

from __future__ import annotations

from typing import Literal

from stampline.alerting._kinds._kind import (
    AlertKind,
    GrafanaRule,
    RuleAlert,
    command,
    firing_case,
    firing_signal,
)


class Divergence(RuleAlert):
    """A divergence rule (already sustained by its own ``sustain``) fails a key's records."""

    kind: Literal["divergence"]


KIND = AlertKind(
    name="divergence",
    model=Divergence,
    example={"scope": {"instrument": True}},
    detected_by="stampline.alerting._detectors:KeyDetectors",
    signal=firing_signal,
    case=firing_case,
    summary="{provider}: diverging prices",
    notice="{provider}: price off the other providers' median",
    grafana=GrafanaRule(
        no_data="OK",  # the firing gauge exists only while something fires
        group="providers",
        panel=("stampline-providers", "Price ratio to the cross-provider median, per instrument"),
        investigate=command("stampline providers compare --since 1h --by instrument"),
    ),
    firing_gauge=True,
    provider_level=True,
    rule_kind="divergence",
)
