"""The configured clock-error source reaches the sidecars, and a chrony fallback is loud."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from stampline.collectors import SidecarMetrics
from stampline.config import load_config
from stampline.wiring import gate_settings, tap_settings
from tests.stampline.conftest import EXAMPLE, MARKET_RULES


def _config(tmp_path: Path, source: str) -> Path:
    text = (
        EXAMPLE.read_text("utf-8")
        .replace("  clock_error: 1ms", f"  clock_error: 250us\n  clock_error_source: {source}")
        .replace("../stampline/data/market_data.rules.yaml", str(MARKET_RULES))
        .replace("../stampline-data", str(tmp_path / "data"))
    )
    path = tmp_path / "stampline.yaml"
    path.write_text(text, "utf-8")
    return path


def test_chrony_missing_falls_back_with_a_warning_a_metric_and_a_recorded_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """clock_error_source: chrony without chronyc: the configured bound, a warning naming the
    reason, the fallback counted, and 'fallback: chronyc not found' on the gate's and tap's rows."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no chronyc anywhere
    cfg = load_config(_config(tmp_path, "chrony"))
    metrics = SidecarMetrics()
    with caplog.at_level(logging.WARNING, logger="stampline.clock"):
        gate = gate_settings(cfg, "127.0.0.1:1", metrics)
    assert (gate.clock_err_ns, gate.clock_source) == (250_000, "fallback: chronyc not found")
    assert "chronyc not found" in caplog.text
    assert metrics.registry.get_sample_value("stampline_clock_bound_fallbacks_total") == 1.0
    bound = metrics.registry.get_sample_value(
        "stampline_clock_error_bound_seconds", {"host": socket.gethostname(), "stage": "gate"}
    )
    assert bound == 250e-6
    tap = tap_settings(cfg, "127.0.0.1:1")
    assert (tap.clock_err_ns, tap.clock_source) == (250_000, "fallback: chronyc not found")


def test_a_configured_bound_is_recorded_as_configured_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """clock_error_source: configured never warns and labels its rows 'configured'."""
    cfg = load_config(_config(tmp_path, "configured"))
    metrics = SidecarMetrics()
    with caplog.at_level(logging.WARNING, logger="stampline.clock"):
        gate = gate_settings(cfg, "127.0.0.1:1", metrics)
    assert (gate.clock_err_ns, gate.clock_source) == (250_000, "configured")
    assert caplog.text == ""
    assert metrics.registry.get_sample_value("stampline_clock_bound_fallbacks_total") == 0.0


def test_the_gate_takes_its_batch_byte_bound_from_the_config(tmp_path: Path) -> None:
    """gate.batch_bytes reaches the gate's settings; unset, the gate's own default."""
    path = _config(tmp_path, "configured")
    default = gate_settings(load_config(path), "127.0.0.1:1", SidecarMetrics())
    assert default.batch_bytes == 16 * 2**20
    path.write_text(path.read_text("utf-8").replace("gate:\n", "gate:\n  batch_bytes: 1048576\n"))
    assert gate_settings(load_config(path), "127.0.0.1:1", SidecarMetrics()).batch_bytes == 2**20
