"""The alert-kind registry: immutable, and every registered kind complete — its example
definition validates, its detector resolves, its PromQL passes `promtool check rules` and its
promtool case fires, its default summaries render whole, and its Grafana data is usable."""

from __future__ import annotations

import string
from pathlib import Path
from typing import get_args

import pytest
import yaml

from stampline.alerting import (
    KINDS,
    PROMETHEUS,
    AlertKind,
    Transition,
    parse_alerts,
    render,
    signal,
)
from stampline.alerting._summary import exported_summary
from tests.alerting.test_export import promtool_passes


def every_kind() -> str:
    """An alerts file with one definition per registered kind (its ``example``), id
    ``every.<kind>``, and one registered provider trading on a calendar."""
    alerts = [{"id": f"every.{name}", "kind": name, **k.example} for name, k in KINDS.items()]
    return yaml.safe_dump(
        {
            "version": 1,
            "providers": [
                {"provider": "alpha", "venue": "XLON", "max_gap": "30s", "calendar": "london"}
            ],
            "calendars": {"london": {"timezone": "Europe/London"}},
            "alerts": alerts,
        },
        sort_keys=False,
    )


def test_the_registry_cannot_be_changed() -> None:
    """KINDS is built once: adding or replacing a kind at run time raises."""
    with pytest.raises(TypeError):
        KINDS["provider_silent"] = KINDS["stale"]  # type: ignore[index]


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_is_complete(name: str) -> None:
    """The kind's model is tagged with its name, its example is a valid definition, its
    detector resolves (Prometheus, or an in-stream class), its signal is PromQL over a
    stampline metric, its promtool case exists, and its default summaries render whole."""
    kind: AlertKind = KINDS[name]
    assert get_args(kind.model.model_fields["kind"].annotation) == (name,)
    definitions = parse_alerts(every_kind())
    d = definitions.alert(f"every.{name}")
    assert isinstance(d, kind.model)
    detector = kind.detector()
    if kind.detected_by == PROMETHEUS:
        assert detector is None
        assert not kind.firing_gauge  # nothing in stream publishes a firing gauge for it
    else:
        assert isinstance(detector, type)
    s = signal(d)
    assert "stampline_" in s.value or s.value.startswith("up{")
    assert s.by
    assert kind.case(d, definitions) is not None
    exported = exported_summary(d, s.by)
    assert exported.unexported == ()
    assert exported.unreadable == ""
    assert [f for _t, f, _s, _c in string.Formatter().parse(kind.notice) if f]
    labels = tuple((label, "x") for label in s.by)
    notice = render(definitions, Transition(d.id, name, "firing", labels, d.severity, 1, 1))
    assert notice.annotations["summary"]
    assert kind.grafana.group in ("providers", "pipeline")
    assert kind.grafana.panel[0].startswith("stampline-")
    assert kind.grafana.investigate(d, definitions).startswith("stampline ")


def test_every_kind_passes_promtool(tmp_path: Path) -> None:
    """One definition of each registered kind: `promtool check rules` accepts the exported
    rules and `promtool test rules` passes the generated cases, each of which fires."""
    tests = promtool_passes(parse_alerts(every_kind()), tmp_path)
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert fired == {f"every.{name}" for name in KINDS}
