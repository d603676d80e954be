"""Grafana-managed alerting rendered from the alert definitions: the files' shape against what
Grafana requires, the no-data choices, the same PromQL as the exported Prometheus rules, the
provider-silence query evaluated by a real Prometheus (a provider that never sent data fires),
the push through the recording Grafana, and the CLI around it."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import start_http_server
from typer.testing import CliRunner

from stampline.alerting import (
    KINDS,
    AlertMetrics,
    AlertsFile,
    ProviderFacts,
    ProviderWatch,
    alertmanager_config,
    expression,
    parse_alerts,
    prometheus_rules,
    signal,
)
from stampline.cli import app
from stampline.dashboards import (
    ALERTS_FOLDER_TITLE,
    ALERTS_FOLDER_UID,
    DASHBOARD_UIDS,
    GrafanaError,
    GrafanaSettings,
    export,
    grafana_alerting,
    push,
    rule_uid,
)
from stampline.dashboards._alert_rules import NO_DATA
from tests.alerting.conftest import Server, start, stop
from tests.alerting.test_export import COMPLETENESS, CUSTOM, OVERNIGHT, PACKAGED
from tests.alerting.test_kinds import every_kind
from tests.dashboards.grafana_api import RecordingGrafana

runner = CliRunner()
TOKEN = "glsa_rules-token"
AM_URL = "http://alertmanager:9093"
DEFINITIONS = {
    "packaged": PACKAGED.read_text() + COMPLETENESS,
    "overnight": OVERNIGHT,
    "every kind": every_kind(),
}
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# Grafana's model.ParseDuration (Prometheus' syntax).
DURATION = re.compile(r"^(0|((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?)$")
THRESHOLDS = {"gt", "lt", "within_range", "outside_range"}  # what Grafana 11 can evaluate


def _tree(tmp_path: Path, text: str, alertmanager_url: str | None = AM_URL) -> dict[str, Any]:
    """Export with the rendered alerting; every file of the tree, read back from disk."""
    rendered = grafana_alerting(parse_alerts(text), alertmanager_url=alertmanager_url)
    export(tmp_path, alerting=rendered.sections)
    root = tmp_path / "provisioning"
    alerting = {p.stem: p.read_text() for p in (root / "alerting").glob("*.yaml")}
    return {
        "rendered": rendered,
        "alerting_text": alerting,
        "alerting": {name: yaml.safe_load(text) for name, text in alerting.items()},
        "datasources": yaml.safe_load((root / "datasources/stampline.yaml").read_text()),
        "dashboards": {
            uid: json.loads((root / f"dashboards/stampline/{uid}.json").read_text())
            for uid in DASHBOARD_UIDS
        },
    }


def _rules(tree: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in tree["alerting"]["stampline-rules"]["groups"] for r in g["rules"]]


@pytest.mark.parametrize("name", DEFINITIONS)
def test_every_rule_has_the_shape_grafana_requires(tmp_path: Path, name: str) -> None:
    """Required fields, uid charset and length, durations, refIds and the condition, data
    sources that the exported tree provisions, expressions Grafana 11 runs, valid states,
    and a dashboard and panel that exist in the exported dashboards."""
    tree = _tree(tmp_path, DEFINITIONS[name])
    doc = tree["alerting"]["stampline-rules"]
    assert doc["apiVersion"] == 1
    datasource_uids = {d["uid"] for d in tree["datasources"]["datasources"]}
    uids = []
    for group in doc["groups"]:
        assert group["folder"] == ALERTS_FOLDER_TITLE
        assert DURATION.match(group["interval"])
        seconds = int(group["interval"].removesuffix("s"))
        assert seconds % 10 == 0  # Grafana's scheduler ticks every 10 s
        for rule in group["rules"]:
            uids.append(rule["uid"])
            assert UID.match(rule["uid"])
            for key in ("title", "condition", "data", "noDataState", "execErrState", "for"):
                assert rule[key] != "", key
            assert DURATION.match(rule["for"])
            assert DURATION.match(rule.get("keepFiringFor", "0"))
            refs = [q["refId"] for q in rule["data"]]
            assert len(refs) == len(set(refs))
            assert rule["condition"] in refs
            for q in rule["data"]:
                assert q["model"]["refId"] == q["refId"]
                if q["datasourceUid"] == "__expr__":
                    model = q["model"]
                    assert model["type"] == "threshold"
                    assert model["expression"] in set(refs) - {q["refId"]}
                    (condition,) = model["conditions"]
                    for part in ("evaluator", "unloadEvaluator"):
                        if part in condition:
                            assert condition[part]["type"] in THRESHOLDS
                            assert all(
                                isinstance(v, float | int) for v in condition[part]["params"]
                            )
                else:
                    assert q["datasourceUid"] in datasource_uids
                    assert q["model"]["expr"]
                    assert q["model"]["instant"] is True
            assert rule["noDataState"] in {"Alerting", "NoData", "OK", "KeepLast"}
            assert rule["execErrState"] in {"Alerting", "Error", "OK", "KeepLast"}
            dashboard = rule["annotations"]["__dashboardUid__"]
            panel = int(rule["annotations"]["__panelId__"])
            assert (rule["dashboardUid"], rule["panelId"]) == (dashboard, panel)
            assert panel in {p["id"] for p in tree["dashboards"][dashboard]["panels"]}
            assert rule["labels"]["stampline_dashboard"] == dashboard
            assert rule["annotations"]["investigate"].startswith("stampline ")
    assert len(uids) == len(set(uids))


def test_one_rule_per_definition_completeness_included(tmp_path: Path) -> None:
    """Every definition is one rule titled with its id (Grafana's alertname), completeness too
    (the recorder judges it and re-publishes it as a metric); nothing is skipped."""
    tree = _tree(tmp_path, DEFINITIONS["packaged"])
    definitions = parse_alerts(DEFINITIONS["packaged"])
    titles = [r["title"] for r in _rules(tree)]
    assert sorted(titles) == sorted(a.id for a in definitions.alerts)
    assert "lost.events" in titles
    header = tree["alerting_text"]["stampline-rules"].split("apiVersion")[0]
    assert "Not rendered" not in header
    assert tree["rendered"].skipped == ()


def test_every_registered_kind_renders_a_grafana_rule(tmp_path: Path) -> None:
    """One definition of each registered kind renders one rule each, in its kind's group,
    with its no-data state and its panel; none is left out."""
    rendered = grafana_alerting(parse_alerts(every_kind()))
    assert rendered.skipped == ()
    tree = _tree(tmp_path, every_kind())
    groups = tree["alerting"]["stampline-rules"]["groups"]
    placed = {r["labels"]["kind"]: (g["name"], r) for g in groups for r in g["rules"]}
    assert set(placed) == set(KINDS)
    for name, (group, rule) in placed.items():
        grafana = KINDS[name].grafana
        assert group == grafana.group
        assert rule["noDataState"] == grafana.no_data
        assert rule["dashboardUid"] == grafana.panel[0]


def test_no_data_and_error_states_are_the_documented_choices(tmp_path: Path) -> None:
    """A query that returns no series at all is a DatasourceNoData alert where the series must
    always exist (the registry's providers, the scrape targets) and OK where they exist only
    while something is wrong; a failing query is always an Error, never a claimed fault."""
    expected = {
        "provider_silent": "NoData",
        "collector_down": "NoData",
        "sequence_gap": "OK",
        "stale": "OK",
        "divergence": "OK",
        "dlq_rate": "OK",
        "completeness": "OK",
        "latency_slo": "OK",
        "trail_lag": "OK",
        "clock_error": "OK",
        "provider_latency": "OK",  # the gates' histogram: none means no gate runs
    }
    assert expected == NO_DATA
    for rule in _rules(_tree(tmp_path, DEFINITIONS["packaged"])):
        assert rule["noDataState"] == expected[rule["labels"]["kind"]], rule["title"]
        assert rule["execErrState"] == "Error"


def test_queries_are_the_exported_prometheus_rules_own() -> None:
    """Query A is the value the Prometheus rule compares, and the threshold is its number:
    both renderers take them from alerting.signal, so they cannot drift."""
    definitions = parse_alerts(DEFINITIONS["packaged"])
    rendered = grafana_alerting(definitions)
    rules = {
        r["title"]: r
        for s in rendered.sections
        for g in s.document(GrafanaSettings()).get("groups", [])
        for r in g["rules"]
    }
    for d in definitions.alerts:
        s = signal(d)
        if s is None:
            continue
        rule = rules[d.id]
        by_ref = {q["refId"]: q for q in rule["data"]}
        assert by_ref["A"]["model"]["expr"] == s.value
        assert s.value in (expression(d) or "")
        condition = by_ref["C"]["model"]["conditions"][0]["evaluator"]
        if "B" in by_ref:  # judged on the excess over a per-instance threshold or a session
            assert by_ref["B"]["model"]["expr"].startswith(f"({s.value} - ")
            assert condition == {"type": "gt", "params": [0]}
        elif s.op == ">":
            assert condition == {"type": "gt", "params": [s.threshold]}
        else:  # up == 0, and up is 0 or 1
            assert condition == {"type": "lt", "params": [1]}


def test_a_definition_with_its_own_summary_is_the_rules_summary(tmp_path: Path) -> None:
    """A definition's own summary is the Grafana rule's, in the provisioning file: the
    Prometheus rule's text with the value as `$values.A.Value`; a placeholder the rule has
    no value for is a note of the export (and the file's header); a literal `{{ ... }}` stays
    text."""
    tree = _tree(tmp_path, CUSTOM)
    summary = {r["title"]: r["annotations"]["summary"] for r in _rules(tree)}
    assert summary["crypto.silent"] == (
        "crypto.silent [critical]: {{ $labels.provider }}@{{ $labels.venue }} quiet for "
        '{{ $values.A.Value | printf "%+08.2f" }}s (limit 45s) {{ "{{ $labels.venue }}" }}'
    )
    assert summary["dl.rate"] == (
        "{{ $labels.provider }}: {{ $values.A.Value | humanizePercentage }} dead-lettered by "
        "{{ $labels.reason }}"
    )
    prometheus = {
        r["alert"]: r["annotations"]["summary"]
        for r in yaml.safe_load(prometheus_rules(parse_alerts(CUSTOM)))["groups"][0]["rules"]
    }
    assert {k: v.replace("$values.A.Value", "$value") for k, v in summary.items()} == prometheus
    note = (
        "seq.gap: summary placeholder(s) {instrument}, {missing}, {value:.0f}, {provider:>8} "
        "have no value in the exported rule and are shown as written"
    )
    assert tree["rendered"].notes == (note,)
    assert f"Note: {note}" in tree["alerting_text"]["stampline-rules"].split("apiVersion")[0]


def test_a_definition_without_a_summary_keeps_the_kinds_default(tmp_path: Path) -> None:
    """No summary of its own: the kind's default, and no note."""
    tree = _tree(tmp_path, OVERNIGHT)
    summary = {r["title"]: r["annotations"]["summary"] for r in _rules(tree)}
    assert summary["crypto.silent"] == (
        "{{ $labels.provider }} ({{ $labels.venue }}) silent for "
        '{{ $values.A.Value | printf "%.1f" }}s'
    )
    assert summary["gates.down"] == "{{ $labels.instance }} is down"
    assert tree["rendered"].notes == ()


def test_uids_are_stable_short_and_distinct() -> None:
    """A uid is the id with dots as dashes; a long id keeps its start and a hash, within 40
    characters, and two long ids that share their start stay distinct."""
    assert rule_uid("provider.silent") == "stampline-provider-silent"
    long_a = "a" * 60 + ".one"
    long_b = "a" * 60 + ".two"
    assert UID.match(rule_uid(long_a))
    assert len(rule_uid(long_a)) == 40
    assert rule_uid(long_a) != rule_uid(long_b)
    assert rule_uid(long_a) == rule_uid(long_a)


def test_clear_becomes_a_recovery_threshold() -> None:
    """dlq_rate's clear, and provider_silent's clear when the providers share one max_gap,
    are Grafana recovery thresholds that clear at or below it; with different gaps there is
    no single number, which the report says."""
    text = """\
version: 1
providers:
  - {provider: a, venue: X, max_gap: 10s}
  - {provider: b, venue: X, max_gap: 10s}
  - {provider: c, venue: Y, max_gap: 60s}
alerts:
  - {id: dl.rate, kind: dlq_rate, threshold: 0.3, clear: 0.1}
  - {id: silent.x, kind: provider_silent, clear: 4s, scope: {venues: [X]}}
  - {id: silent.all, kind: provider_silent, clear: 4s}
"""
    rendered = grafana_alerting(parse_alerts(text))
    (section,) = [s for s in rendered.sections if s.name == "stampline-rules"]
    rules = {
        r["title"]: r for g in section.document(GrafanaSettings())["groups"] for r in g["rules"]
    }

    def condition(title: str) -> dict[str, Any]:
        (c,) = [q for q in rules[title]["data"] if q["refId"] == "C"]
        return dict(c["model"]["conditions"][0])

    dl = condition("dl.rate")
    assert dl["evaluator"] == {"type": "gt", "params": [0.3]}
    assert dl["unloadEvaluator"]["type"] == "lt"
    (clear,) = dl["unloadEvaluator"]["params"]
    assert clear > 0.1
    assert clear == math.nextafter(0.1, math.inf)  # "lt" the next float: at or below 0.1
    silent = condition("silent.x")
    assert silent["unloadEvaluator"]["params"] == [math.nextafter(4 - 10, math.inf)]
    assert "unloadEvaluator" not in condition("silent.all")
    assert rendered.notes == (
        "silent.all: `clear` not rendered: Grafana's recovery threshold is one number per "
        "rule and the providers in scope have different max_gap",
    )


def test_a_provider_silent_alert_with_no_registered_provider_in_scope_is_not_rendered() -> None:
    """A scope no registered provider matches would query nothing (a rule stuck in NoData)."""
    text = """\
version: 1
providers: [{provider: a, venue: X, max_gap: 10s}]
alerts: [{id: silent.none, kind: provider_silent, scope: {providers: ["zz*"]}}]
"""
    rendered = grafana_alerting(parse_alerts(text))
    assert rendered.rules == 0
    assert rendered.skipped == (
        "silent.none (provider_silent): no registered provider in its scope "
        "(its query would return nothing)",
    )


@pytest.mark.parametrize("name", DEFINITIONS)
def test_mute_timings_and_policies_mirror_the_alertmanager_snippet(
    tmp_path: Path, name: str
) -> None:
    """The calendars' sessions become mute timings equal to the snippet's time_intervals
    (overnight sessions split at midnight); the policy tree groups and times as the snippet
    does and routes each venue's alerts only inside its sessions, to the Alertmanager."""
    text = DEFINITIONS[name]
    doc = _tree(tmp_path, text)["alerting"]["stampline-notifications"]
    am = yaml.safe_load(alertmanager_config(parse_alerts(text)))
    assert [{k: v for k, v in m.items() if k != "orgId"} for m in doc["muteTimes"]] == am[
        "time_intervals"
    ]
    (cp,) = doc["contactPoints"]
    (receiver,) = cp["receivers"]
    assert (receiver["type"], receiver["settings"]) == ("prometheus-alertmanager", {"url": AM_URL})
    (policy,) = doc["policies"]
    route = am["route"]
    for key in ("group_by", "group_wait", "group_interval", "repeat_interval"):
        assert policy[key] == route[key], key
    assert policy["receiver"] == cp["name"]
    assert [(r["object_matchers"], r["active_time_intervals"]) for r in policy["routes"]] == [
        ([["venue", "=", m.split('"')[1]]], r["active_time_intervals"])
        for r in route["routes"]
        for m in r["matchers"]
    ]


def test_without_an_alertmanager_url_routing_stays_grafanas(tmp_path: Path) -> None:
    """No Alertmanager URL: no contact point and no policy tree (Grafana's own stay), the
    mute timings are still provisioned for policies people write themselves."""
    doc = _tree(tmp_path, DEFINITIONS["overnight"], alertmanager_url=None)["alerting"]
    assert set(doc["stampline-notifications"]) == {"apiVersion", "muteTimes"}
    with pytest.raises(GrafanaError, match="must be http"):
        grafana_alerting(parse_alerts(OVERNIGHT), alertmanager_url="alertmanager:9093")


# --- the provider-silence query on a real Prometheus ------------------------------------

SILENCE = """\
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 1h}                    # publishing
  - {provider: ghost, venue: XLON, max_gap: 1h}                    # never sent anything
  - {provider: sleepy, venue: XTKS, max_gap: 1h, calendar: weekend} # never, but closed
calendars:
  weekend: {timezone: UTC, sessions: [{days: [sat, sun]}]}
alerts:
  - {id: provider.silent, kind: provider_silent, severity: critical}
"""
WEDNESDAY_NOON_NS = 1_767_787_200 * 10**9  # 2026-01-07T12:00:00Z: the weekend calendar is shut


def _query(prom: Server, expr: str) -> list[dict[str, Any]]:
    url = prom.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = orjson.loads(r.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _holds(evaluator: dict[str, Any], value: float) -> bool:
    """A Grafana threshold evaluator applied to one value (Grafana 11's types)."""
    kind, params = evaluator["type"], evaluator["params"]
    return bool(
        {
            "gt": lambda: value > params[0],
            "lt": lambda: value < params[0],
            "within_range": lambda: params[0] < value < params[1],
            "outside_range": lambda: value < params[0] or value > params[1],
        }[kind]()
    )


@pytest.fixture
def silence_prometheus(tmp_path: Path) -> Iterator[tuple[Server, AlertsFile]]:
    """A provider watch's metrics (alpha seen now; ghost and sleepy never, the watch started
    two hours ago) scraped by a real Prometheus every second."""
    definitions = parse_alerts(SILENCE)
    metrics = AlertMetrics()
    now = time.time_ns()
    # The calendar is judged at a fixed Wednesday; silence against Prometheus' own time().
    watch = ProviderWatch(
        definitions,
        lambda _t: None,
        clock=lambda: WEDNESDAY_NOON_NS,
        started_ns=now - 2 * 3600 * 10**9,
    )
    watch.add(ProviderFacts(at_ns=now, last_origin={"alpha": now}, events={"alpha": 1}))
    metrics.watch_providers(watch)
    server, _thread = start_http_server(0, "127.0.0.1", registry=metrics.registry)
    target = f"127.0.0.1:{server.server_port}"
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: stampline, static_configs: [{{targets: ['{target}']}}]}}\n"
    )
    prom = start(
        "prometheus",
        [
            "--config.file=prometheus.yml",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        tmp_path,
        "/-/ready",
        "prometheus",
    )
    try:
        deadline = time.monotonic() + 30
        while len(_query(prom, "stampline_provider_in_session")) < 3:
            assert time.monotonic() < deadline, "Prometheus never scraped the watch"
            time.sleep(0.2)
        yield prom, definitions
    finally:
        stop(prom)
        server.shutdown()
        server.server_close()


def test_provider_silent_fires_for_a_provider_that_never_sent_data(
    silence_prometheus: tuple[Server, AlertsFile],
) -> None:
    """The rendered rule's queries, run by Prometheus, and its threshold applied: the
    provider that never published fires; the publishing one does not; the one whose venue
    is closed does not, yet is still a series (valued 0), not a missing one that Grafana
    would resolve. The exported Prometheus rule, on the same Prometheus, fires for the
    same provider only."""
    prom, definitions = silence_prometheus
    (section,) = [s for s in grafana_alerting(definitions).sections if s.name == "stampline-rules"]
    (group,) = section.document(GrafanaSettings())["groups"]
    (rule,) = group["rules"]
    results = {
        q["refId"]: {
            r["metric"]["provider"]: float(r["value"][1]) for r in _query(prom, q["model"]["expr"])
        }
        for q in rule["data"]
        if q["datasourceUid"] != "__expr__"
    }
    (condition,) = [q["model"] for q in rule["data"] if q["refId"] == rule["condition"]]
    judged = results[condition["expression"]]
    assert set(judged) == {"alpha", "ghost", "sleepy"}  # every registered provider
    firing = {p for p, v in judged.items() if _holds(condition["conditions"][0]["evaluator"], v)}
    assert firing == {"ghost"}
    assert judged["sleepy"] == 0
    assert results["A"]["ghost"] > 3600  # the summary's value: seconds silent
    (d,) = definitions.alerts
    prometheus_rule = {r["metric"]["provider"] for r in _query(prom, expression(d) or "")}
    assert prometheus_rule == firing


def test_every_rendered_query_runs_on_prometheus(
    silence_prometheus: tuple[Server, AlertsFile],
) -> None:
    """Every PromQL query of every rule (all kinds) is accepted and answered by Prometheus."""
    prom, _ = silence_prometheus
    for text in DEFINITIONS.values():
        for section in grafana_alerting(parse_alerts(text)).sections:
            for group in section.document(GrafanaSettings()).get("groups", []):
                for rule in group["rules"]:
                    for q in rule["data"]:
                        if q["datasourceUid"] != "__expr__":
                            _query(prom, q["model"]["expr"])  # asserts status success


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_promtool_checks_every_query(tmp_path: Path) -> None:
    """Every query, as a recording rule, passes `promtool check rules`."""
    rules = []
    for text in DEFINITIONS.values():
        for section in grafana_alerting(parse_alerts(text)).sections:
            for group in section.document(GrafanaSettings()).get("groups", []):
                for rule in group["rules"]:
                    for q in rule["data"]:
                        if q["datasourceUid"] != "__expr__":
                            name = f"check:{rule['uid'].replace('-', '_')}_{q['refId']}"
                            rules.append({"record": name, "expr": q["model"]["expr"]})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- push through the recording Grafana -------------------------------------------------


@pytest.fixture
def grafana() -> Iterator[RecordingGrafana]:
    with RecordingGrafana(TOKEN) as g:
        yield g


def test_push_provisions_rules_contact_point_policies_and_mute_timings(
    grafana: RecordingGrafana,
) -> None:
    """The rendered sections go through the provisioning API in an order Grafana accepts,
    every payload passing the stand-in's checks of Grafana's validation."""
    rendered = grafana_alerting(parse_alerts(DEFINITIONS["packaged"]), alertmanager_url=AM_URL)
    report = push(grafana.url, TOKEN, alerting=rendered.sections)
    st = grafana.state
    assert st.problems == []
    kinds = [c.kind for c in report.changes if c.kind not in {"datasource", "dashboard"}]
    assert kinds == [
        "folder",
        "folder",
        "rule_group",
        "rule_group",
        "contact_point",
        "mute_timing",
        "mute_timing",
        "policies",
    ]
    assert {c.action for c in report.changes} == {"create", "update"}
    assert st.folders[ALERTS_FOLDER_UID]["title"] == ALERTS_FOLDER_TITLE
    assert {g: len(v["rules"]) for (_, g), v in st.rule_groups.items()} == {
        "providers": 5,
        "pipeline": 5,
    }
    silent = next(
        r for v in st.rule_groups.values() for r in v["rules"] if r["title"] == "provider.silent"
    )
    assert silent["keep_firing_for"] == "1s"  # the API's name for the file's keepFiringFor
    assert "dashboardUid" not in silent  # over the API the annotations say it
    assert silent["annotations"]["__dashboardUid__"] == "stampline-providers"
    assert set(st.mute_timings) == {"always-session", "lse-session"}
    assert st.contact_points["stampline-alertmanager"]["settings"] == {"url": AM_URL}
    assert st.policies["group_by"] == ["alertname", "provider", "venue"]


@pytest.mark.parametrize("version", ["12.3.1", "11.6.0"])
def test_a_second_push_of_the_rules_changes_nothing(version: str) -> None:
    """Pushing the same rendering twice: the second push only reads. On Grafana 11, which
    drops keep_firing_for, it is not sent (it would read back as a change every time)."""
    rendered = grafana_alerting(parse_alerts(DEFINITIONS["packaged"]), alertmanager_url=AM_URL)
    with RecordingGrafana(TOKEN, version=version) as g:
        push(g.url, TOKEN, alerting=rendered.sections)
        writes = len(g.state.writes)
        again = push(g.url, TOKEN, alerting=rendered.sections)
        assert again.changed == 0
        assert len(g.state.writes) == writes
        assert g.state.problems == []


def test_a_changed_definition_updates_only_its_rule_group(grafana: RecordingGrafana) -> None:
    """Editing a threshold in the definitions re-saves that rule's group and nothing else."""
    text = DEFINITIONS["packaged"]
    push(grafana.url, TOKEN, alerting=grafana_alerting(parse_alerts(text)).sections)
    edited = text.replace("threshold: 100000", "threshold: 5000")
    report = push(grafana.url, TOKEN, alerting=grafana_alerting(parse_alerts(edited)).sections)
    assert [(c.kind, c.uid, c.action) for c in report.changes if c.action != "unchanged"] == [
        ("rule_group", "pipeline", "update")
    ]


# --- the CLI ----------------------------------------------------------------------------


def _alerts_file(tmp_path: Path, text: str = DEFINITIONS["packaged"]) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    return path


def test_cli_export_writes_the_alerting_provisioning(tmp_path: Path) -> None:
    """`grafana export DIR --alerts FILE --alertmanager-url URL --json` writes the rules and
    notifications files and reports what it rendered and left out."""
    alerts = _alerts_file(tmp_path)
    result = runner.invoke(
        app,
        ["grafana", "export", str(tmp_path / "out"), "--alerts", str(alerts),
         "--alertmanager-url", AM_URL, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.stdout)
    alerting = [f for f in body["files"] if "/alerting/" in f]
    assert sorted(Path(f).name for f in alerting) == [
        "stampline-notifications.yaml",
        "stampline-rules.yaml",
    ]
    assert body["alerting"]["rules"] == 10
    assert body["alerting"]["routed"] is True
    assert body["alerting"]["skipped"] == []


def test_cli_export_takes_definitions_and_alertmanager_from_the_config(tmp_path: Path) -> None:
    """With --config, the config's alerting.definitions and alerting.alertmanager_url are
    used, and the non-JSON output says how many rules it rendered."""
    _alerts_file(tmp_path, OVERNIGHT)
    (tmp_path / "r.yaml").write_text("version: 1\nrules: []\n")
    cfg = tmp_path / "stampline.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"bootstrap_servers": "kafka:9092"},
                "topics": {"raw": ["md.raw"], "clean": "md.clean", "dead_letter": "md.dlq"},
                "rules": {"files": ["r.yaml"]},
                "alerting": {"definitions": "alerts.yaml", "alertmanager_url": AM_URL},
            }
        )
    )
    result = runner.invoke(app, ["grafana", "export", str(tmp_path / "out"), "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "3 rule(s), with a contact point and the policy tree" in result.stderr
    notifications = tmp_path / "out/provisioning/alerting/stampline-notifications.yaml"
    assert yaml.safe_load(notifications.read_text())["contactPoints"][0]["receivers"][0][
        "settings"
    ] == {"url": AM_URL}


def test_cli_export_without_definitions_says_so(tmp_path: Path) -> None:
    """No definitions anywhere: the tree as before (alerting/ empty), and a line saying so."""
    result = runner.invoke(app, ["grafana", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "no alert definitions" in result.stderr
    assert list((tmp_path / "provisioning/alerting").iterdir()) == []


def test_cli_a_bad_definitions_file_is_a_clear_error(tmp_path: Path) -> None:
    """A definitions file with a bad value: exit 1, naming file:line, the key and the value;
    nothing is written."""
    alerts = _alerts_file(tmp_path, "version: 1\nalerts:\n  - {id: x.y, kind: stale, for: soon}\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["grafana", "export", str(out), "--alerts", str(alerts)])
    assert result.exit_code == 1
    assert f"{alerts}:3: alerts.0.for: 'soon' is not a duration" in result.stderr
    assert not out.exists()


def test_cli_push_with_alerts_twice_changes_nothing_the_second_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`grafana push --alerts FILE --json`: the rules go with the rest; a second push changes
    nothing."""
    alerts = _alerts_file(tmp_path)
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    with RecordingGrafana(TOKEN) as g:
        args = ["grafana", "push", "--url", g.url, "--alerts", str(alerts), "--json"]
        first = runner.invoke(app, args)
        second = runner.invoke(app, args)
        assert g.state.problems == []
    assert first.exit_code == 0, first.output
    changes = orjson.loads(first.stdout)["changes"]
    assert sum(c["kind"] == "rule_group" for c in changes) == 2
    assert orjson.loads(second.stdout)["changed"] == 0
