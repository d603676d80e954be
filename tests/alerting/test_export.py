"""Exported Prometheus rules pass `promtool check rules`, their generated unit tests pass
`promtool test rules` (and fail when the rule is wrong); the Alertmanager snippet passes
`amtool check-config` and carries group_by, the inhibition and the market-hours intervals."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from alerting import (
    alertmanager_config,
    load_alerts,
    parse_alerts,
    prometheus_rules,
    prometheus_tests,
)

PACKAGED = Path(str(resources.files("stampline").joinpath("data", "market_data.alerts.yaml")))
OVERNIGHT = """\
version: 1
providers:
  - {provider: kraken, venue: XCRY, max_gap: 30s, calendar: asia}
calendars:
  asia:
    timezone: Asia/Tokyo
    sessions: [{days: [mon, fri], start: "22:00", end: "02:00"}]
alerts:
  - {id: crypto.silent, kind: provider_silent, threshold: 45s, for: 30s, keep_firing_for: 1m}
  - {id: gates.down, kind: collector_down, for: 1m, job: gates}
  - {id: dl.rate, kind: dlq_rate, threshold: 0.3, window: 1m, for: 15s}
"""
COMPLETENESS = (
    "  - {id: lost.events, kind: completeness, from_stage: gate, to_stage: risk, threshold: 0.01}\n"
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (system-packages.txt; ./dev test installs it)")
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "text",
    [PACKAGED.read_text(), OVERNIGHT, OVERNIGHT + COMPLETENESS],
    ids=["packaged", "overnight", "completeness"],
)
def test_promtool_checks_and_runs_the_generated_tests(tmp_path: Path, text: str) -> None:
    """`promtool check rules` accepts the rules and `promtool test rules` passes the tests
    generated beside them, with at least one firing expectation per testable kind."""
    promtool = tool("promtool")
    definitions = parse_alerts(text)
    (tmp_path / "rules.yml").write_text(prometheus_rules(definitions))
    (tmp_path / "rules.test.yml").write_text(prometheus_tests(definitions, "rules.yml"))
    checked = run(promtool, "check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "rules.test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = yaml.safe_load((tmp_path / "rules.test.yml").read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    testable = {"provider_silent", "collector_down", "clock_error"}
    kinds = {a.id for a in definitions.alerts if a.kind in testable}
    assert kinds <= fired


def test_generated_tests_catch_a_wrong_rule(tmp_path: Path) -> None:
    """The generated tests are not vacuous: a rule whose threshold was edited fails them."""
    promtool = tool("promtool")
    definitions = parse_alerts(OVERNIGHT)
    rules = prometheus_rules(definitions).replace("> 45", "> 4500")
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "rules.test.yml").write_text(prometheus_tests(definitions, "rules.yml"))
    tested = run(promtool, "test", "rules", "rules.test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "crypto.silent" in tested.stdout + tested.stderr


def test_rules_carry_for_and_keep_firing_for() -> None:
    """Durations, severity and kind travel into each rule; the clock_error limit is the RTS 25
    tier's; completeness (judged by the recorder) re-publishes its firing gauge per stage
    pair."""
    definitions = load_alerts(PACKAGED)
    text = prometheus_rules(definitions)
    rules = {r["alert"]: r for r in yaml.safe_load(text)["groups"][0]["rules"]}
    assert rules["provider.silent"]["keep_firing_for"] == "1s"
    assert rules["quote.stale"]["for"] == "1s"
    assert rules["provider.silent"]["labels"] == {"severity": "critical", "kind": "provider_silent"}
    assert "max by (provider, venue)" in rules["provider.silent"]["expr"]
    assert rules["clock.rts25"]["expr"].endswith("> 0.001")  # RTS 25, other trading: 1 ms
    text = prometheus_rules(parse_alerts(OVERNIGHT + COMPLETENESS))
    (lost,) = [r for r in yaml.safe_load(text)["groups"][0]["rules"] if r["alert"] == "lost.events"]
    assert lost["expr"] == (
        "max by (provider, venue, from_stage, to_stage) "
        '(stampline_alert_firing{alertname="lost.events"}) > 0'
    )
    assert "Not exported" not in text


def test_alertmanager_snippet(tmp_path: Path) -> None:
    """group_by, the collector-down inhibition and per-venue session intervals (overnight
    windows split at midnight, in the venue's zone); amtool accepts the file."""
    amtool = tool("amtool")
    text = alertmanager_config(parse_alerts(OVERNIGHT))
    (tmp_path / "am.yml").write_text(text)
    checked = run(amtool, "check-config", "am.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(text)
    assert config["route"]["group_by"] == ["alertname", "provider", "venue"]
    (route,) = config["route"]["routes"]
    assert route["matchers"] == ['venue="XCRY"']
    assert route["active_time_intervals"] == ["asia-session"]
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['alertname=~"gates\\.down"']
    (interval,) = config["time_intervals"]
    evening, morning = interval["time_intervals"]
    assert evening["weekdays"] == ["monday", "friday"]
    assert evening["times"] == [{"start_time": "22:00", "end_time": "24:00"}]
    assert morning["weekdays"] == ["tuesday", "saturday"]
    assert morning["location"] == "Asia/Tokyo"
