"""Alerting from a deployment configuration: the `alerting` section's checks, and the parts
a gate runs with (an in-process provider watch for one gate, facts published for several)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from stampline._alerts import for_gate
from stampline.alerting import FactsPublisher, ProviderWatch
from stampline.audit import ChdbStore
from stampline.collectors import SidecarMetrics
from stampline.config import ConfigError, check_config, load_config
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.alerting.test_definitions import GOOD, PACKAGED

BASE = f"""\
version: 1
broker: {{bootstrap_servers: "127.0.0.1:1"}}
topics: {{raw: [md.raw], clean: md.clean, dead_letter: md.dlq}}
rules: {{files: ["{rules_file()}"]}}
"""


def write(tmp_path: Path, alerting: str) -> Path:
    path = tmp_path / "stampline.yaml"
    path.write_text(BASE + alerting)
    return path


def test_alerting_section_resolves_the_definitions_path(tmp_path: Path) -> None:
    """A relative definitions path resolves against the configuration file's folder."""
    (tmp_path / "alerts.yaml").write_text(GOOD)
    cfg = load_config(write(tmp_path, "alerting: {definitions: alerts.yaml}\n"))
    assert cfg.alerting.definitions == (tmp_path / "alerts.yaml").resolve()
    assert cfg.alerting.resend_interval_ns == 30_000_000_000


def test_bad_alerting_values_name_their_keys(tmp_path: Path) -> None:
    """A too-short resend interval and a non-URL Alertmanager are named with key and value;
    `check_config` reports a broken definitions file under alerting.definitions."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "alerting: {resend_interval: 10ms, alertmanager_url: am}\n"))
    keys = {p.key for p in caught.value.problems}
    assert keys == {"alerting.resend_interval", "alerting.alertmanager_url"}
    (tmp_path / "alerts.yaml").write_text(GOOD.replace("for: 1s", "for: soon"))
    _cfg, problems = check_config(write(tmp_path, "alerting: {definitions: alerts.yaml}\n"))
    (problem,) = problems
    assert problem.key == "alerting.definitions"
    assert "alerts.0.for" in problem.message


def test_one_gate_runs_the_watch_in_process(tmp_path: Path, store: ChdbStore) -> None:
    """Without a facts topic the gate's detectors feed a provider watch in the same process,
    whose registered providers appear in the sidecar's metrics."""
    cfg = load_config(write(tmp_path, f"alerting: {{definitions: {PACKAGED}}}\n"))
    metrics = SidecarMetrics()
    parts = for_gate(cfg, "127.0.0.1:1", store, metrics, RuleSet.load([rules_file()]))
    assert parts is not None
    try:
        assert isinstance(parts.watch, ProviderWatch)
        assert parts.detectors is not None
        assert parts.detectors.facts == parts.watch.add
        text = generate_latest(metrics.registry).decode()
        assert 'stampline_provider_expected_max_gap_seconds{provider="alpha",venue="XLON"}' in text
    finally:
        parts.close()


def test_several_gates_publish_facts(tmp_path: Path, bootstrap: str, store: ChdbStore) -> None:
    """With a facts topic the gate publishes its facts and runs no watch of its own."""
    cfg = load_config(
        write(tmp_path, f"alerting: {{definitions: {PACKAGED}, facts_topic: facts}}\n")
    )
    parts = for_gate(cfg, bootstrap, store, None, RuleSet.load([rules_file()]))
    assert parts is not None
    try:
        assert parts.watch is None
        assert parts.detectors is not None
        assert isinstance(parts.detectors.facts, FactsPublisher)
    finally:
        parts.close()


def test_no_definitions_no_alerting(tmp_path: Path, store: ChdbStore) -> None:
    """A configuration without alerting.definitions runs the gate without detectors."""
    cfg = load_config(write(tmp_path, ""))
    assert for_gate(cfg, "127.0.0.1:1", store, None, RuleSet.load([rules_file()])) is None


def test_a_gate_without_a_store_reads_dismissals_through_the_live_endpoint(
    tmp_path: Path, store: ChdbStore
) -> None:
    """A gate has no store; while a recorder serves the embedded store, the gate's detectors
    and in-process watch read the dismissals through it (dismiss and learn keeps working)."""
    from stampline.alerting import fingerprint, write_action
    from stampline.audit import LiveEndpoint

    fp = fingerprint("provider.silent", (("provider", "alpha"), ("venue", "XLON")))
    for _ in range(2):
        write_action(store, at_ns=1, action="dismiss", fingerprint=fp, verdict="expected")
    where = f"store: {{path: '{store.path}', database: {store.database}}}\n"
    cfg = load_config(write(tmp_path, where + f"alerting: {{definitions: {PACKAGED}}}\n"))
    with LiveEndpoint(store):
        parts = for_gate(cfg, "127.0.0.1:1", None, None, RuleSet.load([rules_file()]))
    assert parts is not None
    try:
        assert parts.detectors is not None
        assert parts.detectors.dismissals is not None
        assert parts.detectors.dismissals.count(fp) == 2
        assert parts.watch is not None
        assert parts.watch.dismissals is not None
        assert parts.watch.dismissals.count(fp) == 2
    finally:
        parts.close()
    # Nobody serving it: no dismissals, and the embedded store is not opened by the gate.
    parts = for_gate(cfg, "127.0.0.1:1", None, None, RuleSet.load([rules_file()]))
    assert parts is not None
    try:
        assert parts.detectors is not None
        assert parts.detectors.dismissals is None
    finally:
        parts.close()
