"""Threshold suggestions from the history: reported, never applied.

For each alert id: how many instances fired, how long they fired, how people dismissed
them. When most dismissed instances were judged ``false_positive`` or ``expected``, the
suggestion is a ``for`` long enough that those would not have fired (their 90th percentile
firing time): the alert keeps firing for longer faults and stops crying wolf over the rest.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stampline._common import prometheus_duration
from stampline.alerting._definitions import AlertsFile


@dataclass(frozen=True, slots=True)
class Suggestion:
    alert_id: str
    fired: int
    median_firing_s: float | None
    dismissals: dict[str, int] = field(default_factory=dict)
    current_for: str | None = None
    suggested_for: str | None = None
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "fired": self.fired,
            "median_firing_s": self.median_firing_s,
            "dismissals": self.dismissals,
            "current_for": self.current_for,
            "suggested_for": self.suggested_for,
            "why": self.why,
        }


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def suggest(
    definitions: AlertsFile,
    history: list[dict[str, Any]],
    actions: list[dict[str, Any]],
    min_fired: int = 3,
) -> list[Suggestion]:
    """One suggestion per alert id in the history (rows of ``read_history`` and
    ``read_actions``)."""
    fired: dict[str, int] = {}  # fingerprint -> firing time
    durations: dict[str, float] = {}  # fingerprint -> seconds it fired
    alert_of: dict[str, str] = {}
    for r in history:
        fp = r["fingerprint"]
        alert_of[fp] = r["alert_id"]
        if r["state"] == "firing":
            fired[fp] = r["at_ns"]
        elif r["state"] == "resolved" and fp in fired:
            durations[fp] = (r["at_ns"] - fired[fp]) / 1e9
    verdicts: dict[str, str] = {}
    for a in actions:
        if a["action"] == "dismiss" and a["fingerprint"]:
            verdicts[a["fingerprint"]] = a["verdict"]
    out = []
    for alert_id in sorted(set(alert_of.values())):
        mine = [fp for fp, a in alert_of.items() if a == alert_id and fp in fired]
        spans = [durations[fp] for fp in mine if fp in durations]
        counts = Counter(verdicts[fp] for fp in mine if fp in verdicts)
        try:
            d = definitions.alert(alert_id)
            current = prometheus_duration(d.for_ns)
        except KeyError:
            current = None
        quiet = ("false_positive", "expected")
        noise = [durations[fp] for fp in mine if verdicts.get(fp) in quiet and fp in durations]
        suggested, why = None, "no change suggested"
        if len(mine) < min_fired:
            why = f"fewer than {min_fired} firings: not enough history"
        elif noise and len(noise) * 2 >= sum(counts.values()):
            seconds = math.ceil(_quantile(noise, 0.9)) + 1
            suggested = prometheus_duration(seconds * 1_000_000_000)
            why = (
                f"{len(noise)} of {sum(counts.values())} dismissed instance(s) were noise "
                f"(false_positive/expected) and fired at most {seconds - 1}s (p90): "
                f"`for: {suggested}` would not have raised them"
            )
        out.append(
            Suggestion(
                alert_id,
                len(mine),
                round(_quantile(spans, 0.5), 3) if spans else None,
                dict(counts),
                current,
                suggested,
                why,
            )
        )
    return out
