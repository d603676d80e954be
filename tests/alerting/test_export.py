"""Exported Prometheus rules pass `promtool check rules`, their generated unit tests pass
`promtool test rules` (and fail when the rule is wrong); the Alertmanager snippet passes
`amtool check-config` and carries group_by, the inhibition and the market-hours intervals."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from stampline.alerting import (
    AlertDefinition,
    AlertsFile,
    Transition,
    alertmanager_config,
    load_alerts,
    parse_alerts,
    prometheus_rules,
    prometheus_tests,
    render,
    summary_notes,
    summary_template,
)
from stampline.alerting._kinds import KINDS
from stampline.alerting._summary import Summary, exported_summary, go_float

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
# Definitions with their own summaries: every kind of placeholder, a literal `{{ ... }}` that
# must stay text, and (seq.gap) placeholders the exported rule has no value for.
CUSTOM = """\
version: 1
providers:
  - {provider: kraken, venue: XCRY, max_gap: 30s}
alerts:
  - id: crypto.silent
    kind: provider_silent
    severity: critical
    threshold: 45s
    summary: "{alertname} [{severity}]: {provider}@{venue} quiet for \\
      {seconds_since_last_event:+08.2f}s (limit {max_gap_s:g}s) {{{{ $labels.venue }}}}"
  - id: gates.down
    kind: collector_down
    job: gates
    summary: "{instance} ({job}) down: up={value}"
  - id: dl.rate
    kind: dlq_rate
    threshold: 0.3
    summary: "{provider}: {rate:.1%} dead-lettered by {rule}"
  - id: clock.custom
    kind: clock_error
    summary: "{host}/{stage}: bound {value:.2e} s, {kind}"
  - id: seq.gap
    kind: sequence_gap
    summary: "{provider} {instrument}: {missing} missing, {value:.0f} {provider:>8} {{x}}"
"""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (system-packages.txt; ./dev test installs it)")
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def promtool_passes(definitions: AlertsFile, where: Path) -> list[dict[str, Any]]:
    """Export ``definitions`` and their generated tests into ``where``; assert that `promtool
    check rules` accepts the rules and `promtool test rules` passes; the generated tests."""
    promtool = tool("promtool")
    (where / "rules.yml").write_text(prometheus_rules(definitions))
    (where / "rules.test.yml").write_text(prometheus_tests(definitions, "rules.yml"))
    checked = run(promtool, "check", "rules", "rules.yml", cwd=where)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "rules.test.yml", cwd=where)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests: list[dict[str, Any]] = yaml.safe_load((where / "rules.test.yml").read_text())["tests"]
    return tests


@pytest.mark.parametrize(
    "text",
    [PACKAGED.read_text(), OVERNIGHT, OVERNIGHT + COMPLETENESS, CUSTOM],
    ids=["packaged", "overnight", "completeness", "custom"],
)
def test_promtool_checks_and_runs_the_generated_tests(tmp_path: Path, text: str) -> None:
    """`promtool check rules` accepts the rules and `promtool test rules` passes the tests
    generated beside them, with at least one firing expectation per testable kind."""
    definitions = parse_alerts(text)
    tests = promtool_passes(definitions, tmp_path)
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


def _rules(text: str) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in yaml.safe_load(text)["groups"][0]["rules"]}


def test_a_definition_with_its_own_summary_exports_it() -> None:
    """A definition's own summary becomes the rule's summary in Go template form: labels as
    `$labels`, the value (and the figures that are the value) through printf or
    humanizePercentage, the id, severity, kind and fixed figures as text; a literal
    `{{ ... }}` stays text that Go cannot run."""
    rules = _rules(prometheus_rules(parse_alerts(CUSTOM)))
    summary = {name: r["annotations"]["summary"] for name, r in rules.items()}
    assert summary["crypto.silent"] == (
        "crypto.silent [critical]: {{ $labels.provider }}@{{ $labels.venue }} quiet for "
        '{{ $value | printf "%+08.2f" }}s (limit 45s) {{ "{{ $labels.venue }}" }}'
    )
    assert summary["gates.down"] == (
        "{{ $labels.instance }} ({{ $labels.job }}) down: up={{ $value }}"
    )
    assert summary["dl.rate"] == (
        "{{ $labels.provider }}: {{ $value | humanizePercentage }} dead-lettered by "
        "{{ $labels.reason }}"
    )
    assert summary["clock.custom"] == (
        '{{ $labels.host }}/{{ $labels.stage }}: bound {{ $value | printf "%.2e" }} s, clock_error'
    )


def test_the_exported_summary_reads_as_the_in_process_notice() -> None:
    """What promtool is told to expect from the exported rule (and checks, above) is the text
    the in-process notice renders for the same instance and value."""
    definitions = parse_alerts(CUSTOM)
    tests = yaml.safe_load(prometheus_tests(definitions, "rules.yml"))["tests"]
    expected = {
        case["alertname"]: alert["exp_annotations"]["summary"]
        for t in tests
        for case in t["alert_rule_test"]
        for alert in case["exp_alerts"]
    }
    assert expected["crypto.silent"] == (
        "crypto.silent [critical]: kraken@XCRY quiet for +0060.00s (limit 45s) {{ $labels.venue }}"
    )
    silent = Transition(
        "crypto.silent", "provider_silent", "firing", (("provider", "kraken"), ("venue", "XCRY")),
        "critical", 0, 0, 60.0, {"seconds_since_last_event": 60.0, "max_gap_s": 45.0},
    )  # fmt: skip
    assert render(definitions, silent).annotations["summary"] == expected["crypto.silent"]
    clock = Transition(
        "clock.custom", "clock_error", "firing", (("host", "gate-1"), ("stage", "gate")),
        "warning", 0, 0, 0.002,
    )  # fmt: skip
    assert render(definitions, clock).annotations["summary"] == expected["clock.custom"]


def test_a_definition_without_a_summary_keeps_the_kinds_default() -> None:
    """No summary of its own: the kind's default, as before."""
    rules = _rules(prometheus_rules(parse_alerts(OVERNIGHT)))
    assert rules["crypto.silent"]["annotations"]["summary"] == (
        '{{ $labels.provider }} ({{ $labels.venue }}) silent for {{ $value | printf "%.1f" }}s'
    )
    assert rules["dl.rate"]["annotations"]["summary"] == (
        "{{ $labels.provider }}: {{ $value | humanizePercentage }} of records dead-lettered by "
        "{{ $labels.reason }}"
    )


def test_a_placeholder_without_a_value_in_the_rule_is_shown_as_written() -> None:
    """Placeholders the exported rule has no value for (a figure only the gate knows, a label
    its query drops, the value of an in-stream kind, a spec on a label) are shown as written,
    as the in-process notice shows a name it has no value for, and named in the file's
    header: the in-process notice of the same definition still fills them."""
    definitions = parse_alerts(CUSTOM)
    text = prometheus_rules(definitions)
    assert _rules(text)["seq.gap"]["annotations"]["summary"] == (
        '{{ $labels.provider }} {{ "{instrument}: {missing} missing, {value:.0f} {provider:>8} '
        '{x}" }}'
    )
    assert (
        "# Note: seq.gap: summary placeholder(s) {instrument}, {missing}, {value:.0f}, "
        "{provider:>8} have no value in the exported rule and are shown as written\n"
    ) in text.split("groups:")[0]
    assert summary_notes(definitions.alert("crypto.silent")) == ()
    gap = Transition(
        "seq.gap", "sequence_gap", "firing", (("provider", "kraken"), ("venue", "XCRY")),
        "warning", 0, 0, 3.0, {"first": 7, "last": 9, "missing": 3},
    )  # fmt: skip
    assert render(definitions, gap).annotations["summary"] == (
        "kraken {instrument}: 3 missing, 3   kraken {x}"
    )


def _down(summary: str) -> AlertDefinition:
    alert = {"id": "down", "kind": "collector_down", "summary": summary}
    (d,) = parse_alerts(yaml.safe_dump({"version": 1, "alerts": [alert]})).alerts
    return d


def test_a_summary_that_is_not_a_template_is_exported_as_text() -> None:
    """A summary `str.format` cannot read is shown as written by the notice, and so by the
    rule (its braces kept out of Go's reach), with a note naming the definition."""
    d = _down("{instance down")
    assert summary_template(d) == '{{ "{" }}instance down'
    assert summary_notes(d) == (
        "down: summary is not a template (expected '}' before end of string); "
        "it is shown as written",
    )


# Literal text Go's template parser must never see as template: its delimiters with trim
# markers, actions, quotes, backslashes, backticks, line breaks and non-ASCII.
LITERALS = [
    '{{{{ template "x" }}}}',
    "{{{{- $labels -}}}} {{{{ .Value }}}}",
    'a\\b "q" `t` }}}} {{{{',
    "line 1\nline 2 {{{{ $value }}}}\ttab",
    'ünï {{{{ "ß" }}}} \u2028 {{{{}}}}',
    "{instance} {{{{ {instance} }}}}",
]


def test_literal_braces_in_a_summary_stay_text(tmp_path: Path) -> None:
    """Whatever literal text a summary holds, Prometheus shows it as the notice would:
    promtool runs the generated tests, which expect exactly the in-process text."""
    alerts = [
        {"id": f"down.n{i}", "kind": "collector_down", "summary": text}
        for i, text in enumerate(LITERALS)
    ]
    definitions = parse_alerts(yaml.safe_dump({"version": 1, "alerts": alerts}))
    tests = promtool_passes(definitions, tmp_path)
    got = [
        alert["exp_annotations"]["summary"]
        for t in tests
        for case in t["alert_rule_test"]
        for alert in case["exp_alerts"]
    ]
    labels = {"instance": "gate-1:9464"}
    assert got == [text.format_map(labels) for text in LITERALS]
    assert all(not summary_notes(d) for d in definitions.alerts)


@pytest.mark.parametrize(
    ("value", "plain", "g", "signed", "zero"),
    [
        (60.0, "60", "60", "      +60", "000000060"),
        (-2.5, "-2.5", "-2.5", "     -2.5", "-000002.5"),
        (0.0001, "0.0001", "0.0001", "  +0.0001", "0000.0001"),
        (1e-05, "1e-05", "1e-05", "   +1e-05", "00001E-05"),
        (123456.0, "123456", "123456", "  +123456", "01.23E+05"),
        (1234567.0, "1.234567e+06", "1.234567e+06", "+1.234567e+06", "01.23E+06"),
        (0.1 + 0.2, "0.30000000000000004", "0.30000000000000004", "+0.30000000000000004",
         "0000000.3"),
    ],
)  # fmt: skip
def test_generated_expectations_print_numbers_as_go_does(
    value: float, plain: str, g: str, signed: str, zero: str
) -> None:
    """The generated tests expect `{{ $value }}` and printf's %g as Go prints them (shortest
    digits, exponent from 1e6 and below 1e-4), not as Python does: the figures are what
    promtool 2.42 renders."""
    assert go_float(value) == plain
    for spec, want in (("g", g), ("+9g", signed), ("09.3G", zero)):
        (part,) = exported_summary(_down("{value:" + spec + "}"), ("instance",)).parts
        assert part.kind == "value"
        assert Summary((part,)).expand({}, value) == want


def test_the_shipped_summaries_read_the_same_in_prometheus_and_grafana() -> None:
    """No shipped definition's summary holds a placeholder the exported rule shows as
    written (the sequence gap's `{missing} … ({first}..{last})` did)."""
    definitions = load_alerts(PACKAGED)
    assert {d.id: summary_notes(d) for d in definitions.alerts if summary_notes(d)} == {}
    assert _rules(prometheus_rules(definitions))["sequence.gap"]["annotations"]["summary"] == (
        "{{ $labels.provider }} {{ $labels.instrument }}: sequence numbers missing"
    )


def test_silence_is_never_negative_on_a_future_timestamp(tmp_path: Path) -> None:
    """promtool: with the last-event gauge a day ahead of Prometheus's clock, the exported
    silence value is 0 s, not minus a day (which no threshold could ever cross)."""
    promtool = tool("promtool")
    definitions = parse_alerts(OVERNIGHT)
    signal = KINDS["provider_silent"].signal
    assert signal is not None
    value = signal(definitions.alert("crypto.silent")).value
    series = (
        'stampline_provider_last_event_origin_timestamp_seconds{provider="kraken",venue="XCRY"}'
    )
    test = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                # in step with Prometheus's clock for a minute, then a day ahead of it
                "input_series": [{"series": series, "values": "0+15x4 86460+0x8"}],
                "promql_expr_test": [
                    {
                        "expr": value,
                        "eval_time": when,
                        "exp_samples": [{"labels": '{provider="kraken",venue="XCRY"}', "value": 0}],
                    }
                    for when in ("1m", "2m")
                ],
            }
        ],
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(test))
    tested = run(promtool, "test", "rules", "t.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
