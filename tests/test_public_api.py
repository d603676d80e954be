"""Each component's public surface is exactly what its ``__init__`` exports, and it imports."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from stampline import StamplineError

COMPONENTS = ["audit", "rules", "collectors", "alerting", "dashboards", "evidence"]


def _isort_order(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", [*COMPONENTS, "_common"])
def test_all_is_sorted_unique_and_importable(name: str) -> None:
    """``__all__`` is sorted (constants, classes, functions), has no repeats, and resolves."""
    module = importlib.import_module(f"stampline.{name}")
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_order)
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is exported but missing"


def _loads_beyond(module: str, ok: list[str]) -> str:
    """The modules of ours that importing ``module`` in a fresh interpreter loads, other than
    the ``stampline`` package itself, the leaf, the compiled core and the packages in ``ok``
    and below them (comma-separated; empty when none)."""
    ok = ["stampline._common", "stampline._native", *ok]
    code = (
        f"import sys, {module}; ok = {ok!r}; print(','.join(sorted(m for m in "
        "sys.modules if m.split('.')[0] == 'stampline' and m != 'stampline' and not "
        "any(m == o or m.startswith(o + '.') for o in ok))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("rules", []),
        ("audit", []),
        ("alerting", ["audit"]),
        ("collectors", ["audit", "rules", "alerting"]),
        ("dashboards", ["audit", "alerting"]),
        ("evidence", ["audit", "alerting"]),
    ],
)
def test_imports_run_one_way(name: str, allowed: list[str]) -> None:
    """Importing a component loads only itself, the leaf package and the components DESIGN.md
    lets it import: no other component and nothing of the shell."""
    ok = [f"stampline.{name}"] + [f"stampline.{a}" for a in allowed]
    assert _loads_beyond(f"stampline.{name}", ok) == ""


@pytest.mark.parametrize("module", ["stampline", "stampline._common"])
def test_the_leaf_imports_nothing_of_ours(module: str) -> None:
    """Importing the leaf package, or the ``stampline`` package every component imports first,
    loads no other module of ours: anything may import the leaf without a cycle."""
    assert _loads_beyond(module, []) == ""


@pytest.mark.parametrize("name", [*COMPONENTS, "_common"])
def test_every_exported_exception_is_a_stampline_error(name: str) -> None:
    """Every exception class a component exports hangs under StamplineError, so one except
    clause catches everything stampline refuses."""
    module = importlib.import_module(f"stampline.{name}")
    exported = [getattr(module, attr) for attr in module.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, BaseException)]
    assert errors, f"stampline.{name} exports no exception"
    assert [e.__name__ for e in errors if not issubclass(e, StamplineError)] == []


def test_the_shell_errors_are_stampline_errors() -> None:
    """The shell's own errors (configuration, embedded broker, demo) join the same tree."""
    from stampline.broker import BrokerError
    from stampline.config import ConfigError
    from stampline.demo import DemoError

    assert all(issubclass(e, StamplineError) for e in (BrokerError, ConfigError, DemoError))


@pytest.mark.parametrize("name", COMPONENTS)
def test_components_import_only_under_the_stampline_namespace(name: str, tmp_path: Path) -> None:
    """A component is ``stampline.NAME``: ``import NAME`` fails, from the repository root (where
    the folder is) and from anywhere else, so no folder or other distribution can stand in."""
    root = Path(__file__).resolve().parents[1]
    for cwd in (root, tmp_path):
        out = subprocess.run(
            [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=cwd
        )
        assert out.returncode != 0
        assert "Error" in out.stderr.splitlines()[-1]
    assert importlib.import_module(f"stampline.{name}").__name__ == f"stampline.{name}"


def test_collectors_surface_is_pinned() -> None:
    """The collectors' public names change only on purpose."""
    import stampline.collectors as collectors

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
    import stampline.audit as audit

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
        # whose clock a broker time is (trail format 4, migration 032)
        "BROKER_TIME_TYPES",
        "BrokerTimeType",
        "broker_time_type",
        "broker_clock",
    }


def test_evidence_surface_is_pinned() -> None:
    """The evidence report's public names and the audit names it reads by."""
    import stampline.audit as audit
    import stampline.evidence as evidence

    assert set(audit.__all__) >= {"ClockBound", "read_clock_bound", "short_ids"}
    assert set(evidence.__all__) >= {
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
    import stampline.dashboards as dashboards

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
