"""Each component's public surface is exactly what its ``__init__`` exports, and it imports."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

COMPONENTS = ["audit", "rules", "collectors", "alerting", "dashboards"]


def _isort_order(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", COMPONENTS)
def test_all_is_sorted_unique_and_importable(name: str) -> None:
    """``__all__`` is sorted (constants, classes, functions), has no repeats, and resolves."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_order)
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is exported but missing"


@pytest.mark.parametrize(
    ("name", "forbidden"),
    [
        ("rules", ["audit", "collectors", "alerting", "dashboards", "stampline"]),
        ("audit", ["rules", "collectors", "alerting", "dashboards", "stampline"]),
        ("collectors", ["alerting", "dashboards", "stampline"]),
        ("dashboards", ["rules", "collectors", "stampline"]),
        ("alerting", ["rules", "collectors", "dashboards", "stampline"]),
    ],
)
def test_imports_run_one_way(name: str, forbidden: list[str]) -> None:
    """Importing a component loads none of the packages DESIGN.md says it may not import."""
    code = f"import sys, {name}; print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_collectors_surface_is_pinned() -> None:
    """The collectors' public names change only on purpose."""
    import collectors

    assert set(collectors.__all__) >= {
        "Gate",
        "GateSettings",
        "Tap",
        "TapSettings",
        "stage",
        "StageContext",
        "Stamps",
        "StageStamp",
        "read_stamps",
        "admin_config",
        "append_stamp",
        "source_event_id",
        "new_event_id",
        "dead_letter_headers",
        "StampError",
        "DeliveryError",
        "CollectorError",
        "TrailTopic",
        "Recorder",
        "RecorderSettings",
        "RecorderMetrics",
        "read_heads",
    }


def test_audit_surface_is_pinned() -> None:
    """The audit store's public names change only on purpose."""
    import audit

    assert set(audit.__all__) >= {
        "ChdbStore",
        "Observation",
        "DeadLetter",
        "replay_event",
        "replay_decision",
        "Timeline",
        "Verdict",
        "completeness",
        "heatmap",
        "hotspots",
        "parse_sequence_key",
        "providers_compare",
        "NotFoundError",
        "StoreError",
        "AuditError",
        "ChainHead",
        "TRAIL_FORMAT_VERSION",
        "TrailFormatError",
        "encode_trail_messages",
        "decode_trail_message",
        "dead_letter_table",
    }


def test_evidence_surface_is_pinned() -> None:
    """The evidence report's public names (dashboards) and the audit names it reads by."""
    import audit
    import dashboards

    assert set(audit.__all__) >= {"ClockBound", "read_clock_bound", "short_ids"}
    assert set(dashboards.__all__) >= {
        "SCHEMA",
        "Context",
        "InputFile",
        "decision_evidence",
        "event_evidence",
        "period_evidence",
        "write_bundle",
        "print_pdf",
        "dump_dom",
    }


def test_dashboards_surface_is_pinned() -> None:
    """The dashboards component's public names change only on purpose."""
    import dashboards

    assert set(dashboards.__all__) >= {
        "DASHBOARD_UIDS",
        "AlertingSection",
        "GrafanaSettings",
        "GrafanaError",
        "PushError",
        "dashboards",
        "export",
        "expand",
        "panel_queries",
        "push",
    }
