"""What a transition looks like to people and tools: labels, annotations, and the figures
filled into the definition's summary template."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stampline.alerting._definitions import AlertsFile
from stampline.alerting._kinds import KINDS
from stampline.alerting._lifecycle import Transition


class _Safe(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def iso(ns: int) -> str:
    """RFC 3339 with nanoseconds cut to microseconds, as Alertmanager reads it."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Notice:
    """A transition ready to deliver."""

    transition: Transition
    labels: dict[str, str]
    annotations: dict[str, str]
    source: str = ""
    figures: Mapping[str, object] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.transition.fingerprint

    def to_json(self) -> dict[str, object]:
        t = self.transition
        return {
            "type": "transition",  # the alerts topic also carries people's actions
            "alert_id": t.alert_id,
            "kind": t.kind,
            "state": t.state,
            "fingerprint": self.fingerprint,
            "severity": t.severity,
            "labels": self.labels,
            "annotations": self.annotations,
            "value": t.value,
            "figures": dict(t.figures),
            "at": iso(t.at_ns),
            "at_ns": t.at_ns,
            "started_ns": t.started_ns,
            "why": t.why,
            "source": self.source,
        }


def render(definitions: AlertsFile, t: Transition, source: str = "") -> Notice:
    """Labels (``alertname`` = the alert id, kind, severity, the identifying labels) and
    annotations (summary from the template, runbook and dashboard links, the figures)."""
    try:
        d = definitions.alert(t.alert_id)
    except KeyError:
        d = None
    labels = {"alertname": t.alert_id, "kind": t.kind, "severity": t.severity, **dict(t.labels)}
    if d is not None and d.scope.stage:
        labels.setdefault("stage", d.scope.stage)
    values = _Safe(labels)
    values.update(dict(t.figures))
    values["value"] = t.value
    kind = KINDS.get(t.kind)  # a transition from the store may name a kind no longer known
    default = kind.notice if kind is not None else "{alertname}"
    template = (d.summary if d is not None else "") or default
    try:
        summary = template.format_map(values)
    except (ValueError, TypeError, IndexError, KeyError):
        summary = template  # a template that does not fit its figures still says something
    annotations = {"summary": summary, "value": f"{t.value:g}"}
    if d is not None:
        for name in ("description", "runbook_url", "dashboard_url"):
            text = getattr(d, name)
            if text:
                annotations[name] = text
    for k, v in t.figures.items():
        annotations[k] = str(v)
    return Notice(t, labels, annotations, source, dict(t.figures))
