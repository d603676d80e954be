"""Which metrics a gate feeds: `stampline gate` wires them through `wiring.gate_metrics`."""

from __future__ import annotations

from pathlib import Path

import pytest

from stampline.config import load_config
from stampline.demo import rules_file
from stampline.wiring import gate_metrics, sidecar_metrics


@pytest.mark.parametrize("enabled", [False, True])
def test_a_gate_feeds_its_metrics_only_where_they_are_served(tmp_path: Path, enabled: bool) -> None:
    """With `metrics.enabled` the gate gets the sidecar's metrics; without, none: nothing
    else reads them, and a gate feeding them spends about 30 % of its CPU on it."""
    config = tmp_path / "stampline.yaml"
    config.write_text(
        "version: 1\nbroker: {bootstrap_servers: 'x:1'}\n"
        "topics: {raw: [md.raw], clean: md.clean, dead_letter: md.dlq, trail: md.trail}\n"
        f"rules: {{files: ['{rules_file()}']}}\n"
        f"metrics: {{enabled: {str(enabled).lower()}, port: 0}}\n"
    )
    cfg = load_config(config)
    metrics = sidecar_metrics(cfg)
    assert gate_metrics(cfg, metrics) is (metrics if enabled else None)
