"""``stale``: a stale rule fails a key's records.

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


class Stale(RuleAlert):
    """A stale rule fails a key's records."""

    kind: Literal["stale"]


KIND = AlertKind(
    name="stale",
    model=Stale,
    example={},
    detected_by="stampline.alerting._detectors:KeyDetectors",
    signal=firing_signal,
    case=firing_case,
    summary="{provider}: stale quotes",
    notice="{provider}: stale quotes",
    grafana=GrafanaRule(
        no_data="OK",  # the firing gauge exists only while something fires
        group="providers",
        panel=("stampline-providers", "Provider latency p50 / p99 (origin → gate)"),
        investigate=command("stampline providers compare --since 1h"),
    ),
    firing_gauge=True,
    provider_level=True,
    rule_kind="stale",
)
