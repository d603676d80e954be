"""`grafana export`: the provisioning tree, the dashboards' shape, and the CLI around it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from stampline.cli import app
from stampline.dashboards import (
    CLICKHOUSE_UID,
    DASHBOARD_UIDS,
    FOLDER_UID,
    PROMETHEUS_UID,
    GrafanaError,
    GrafanaSettings,
    dashboards,
    export,
)
from stampline.dashboards._hotspots import PROMETHEUS_PANELS
from tests.dashboards.grafana_api import RecordingGrafana

runner = CliRunner()
VARIABLES = ["provider", "topic", "stage", "instrument"]


def _by_title(dash: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in dash["panels"] if p["title"] == title]
    return panel


def test_export_writes_datasources_provider_dashboards_and_alerting(tmp_path: Path) -> None:
    """The tree holds the two data sources, the file provider, one JSON per dashboard uid."""
    files = export(tmp_path)
    root = tmp_path / "provisioning"
    assert {f.relative_to(root).as_posix() for f in files} == {
        "datasources/stampline.yaml",
        "dashboards/stampline.yaml",
        *(f"dashboards/stampline/{uid}.json" for uid in DASHBOARD_UIDS),
    }
    assert (root / "alerting").is_dir()
    ds = yaml.safe_load((root / "datasources/stampline.yaml").read_text())
    assert ds["apiVersion"] == 1
    assert {d["uid"]: d["type"] for d in ds["datasources"]} == {
        CLICKHOUSE_UID: "grafana-clickhouse-datasource",
        PROMETHEUS_UID: "prometheus",
    }
    provider = yaml.safe_load((root / "dashboards/stampline.yaml").read_text())["providers"][0]
    assert provider["folderUid"] == FOLDER_UID
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards/stampline"
    for uid in DASHBOARD_UIDS:
        assert json.loads((root / f"dashboards/stampline/{uid}.json").read_text())["uid"] == uid


def test_export_is_stable_byte_for_byte(tmp_path: Path) -> None:
    """Two exports are identical, so a reviewer's diff shows only real changes."""
    export(tmp_path / "a")
    export(tmp_path / "b")
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*.*")}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*.*")}
    assert a == b


def test_the_password_is_a_variable_reference_never_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data source file names the password's environment variable, whatever its value."""
    monkeypatch.setenv("STAMPLINE_GRAFANA_CLICKHOUSE_PASSWORD", "hunter2-secret")
    export(tmp_path)
    text = (tmp_path / "provisioning/datasources/stampline.yaml").read_text()
    assert "${STAMPLINE_GRAFANA_CLICKHOUSE_PASSWORD}" in text
    assert "hunter2-secret" not in text


class _Rules:
    name = "rules"

    def document(self, settings: GrafanaSettings) -> dict[str, Any]:
        return {
            "apiVersion": 1,
            "groups": [{"name": "g", "folder": "Stampline alerts", "rules": []}],
        }


def test_alerting_sections_plug_into_the_tree(tmp_path: Path) -> None:
    """An alerting section becomes alerting/<name>.yaml; two with one name are refused."""
    export(tmp_path, alerting=[_Rules()])
    doc = yaml.safe_load((tmp_path / "provisioning/alerting/rules.yaml").read_text())
    assert doc["apiVersion"] == 1
    assert doc["groups"][0]["name"] == "g"
    with pytest.raises(GrafanaError, match="distinct names"):
        export(tmp_path, alerting=[_Rules(), _Rules()])


def test_heat_map_panel_is_stage_by_time_from_the_hop_rollup() -> None:
    """The heat map reads hop p99 from hop_latency_1m as a time series, one row per hop."""
    panel = _by_title(dashboards()["stampline-hotspots"], "Hop latency p99 by stage")
    assert panel["type"] == "heatmap"
    assert panel["options"]["calculate"] is False
    (target,) = panel["targets"]
    assert target["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": CLICKHOUSE_UID}
    assert (target["format"], target["queryType"], target["editorType"]) == (
        0,
        "timeseries",
        "sql",
    )
    assert "FROM stampline.hop_latency_1m" in target["rawSql"]
    assert "$__timeFilter(minute)" in target["rawSql"]


@pytest.mark.parametrize("uid", DASHBOARD_UIDS)
def test_every_dashboard_has_the_four_multi_select_variables(uid: str) -> None:
    """provider, topic, stage, instrument: multi-select, with "All", on the ClickHouse source."""
    variables = dashboards()[uid]["templating"]["list"]
    assert [v["name"] for v in variables] == VARIABLES
    for v in variables:
        assert v["multi"] is True
        assert v["includeAll"] is True
        assert v["datasource"]["uid"] == CLICKHOUSE_UID
        assert v["current"]["value"] == "$__all"


def test_database_setting_reaches_every_query() -> None:
    """With another database, no panel or variable still names the default one."""
    text = json.dumps(dashboards(GrafanaSettings(database="audit_prod")))
    assert re.search(r"\bstampline\.[a-z_]+_1m\b", text) is None
    assert "audit_prod.hop_latency_1m" in text


def test_panel_ids_and_grid_fit_the_24_column_grid() -> None:
    """Every panel has a unique id and sits inside Grafana's 24 columns."""
    for dash in dashboards().values():
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        for p in dash["panels"]:
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_gate_health_promql_is_valid_prometheus(tmp_path: Path) -> None:
    """Every gate-health expression parses with promtool, Grafana's variables set as it would."""
    rules = [
        {
            "record": f"stampline:check_{i}_{j}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$provider", ".*"),
        }
        for i, (_, _, exprs) in enumerate(PROMETHEUS_PANELS)
        for j, (expr, _) in enumerate(exprs)
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_export_json_lists_the_files(tmp_path: Path) -> None:
    """`grafana export DIR --json` exits 0 and lists what it wrote."""
    result = runner.invoke(app, ["grafana", "export", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    files = orjson.loads(result.stdout)["files"]
    assert len(files) == 2 + len(DASHBOARD_UIDS)
    assert all(Path(f).exists() for f in files)


def test_cli_export_takes_the_store_from_the_config(tmp_path: Path) -> None:
    """With --config of a ClickHouse deployment, the data source points at its store."""
    cfg = tmp_path / "stampline.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"bootstrap_servers": "kafka:9092"},
                "topics": {"raw": ["md.raw"], "clean": "md.clean", "dead_letter": "md.dlq"},
                "store": {
                    "backend": "clickhouse",
                    "url": "https://ch.internal:8443",
                    "database": "audit_prod",
                },
                "rules": {"files": [str(tmp_path / "r.yaml")]},
            }
        )
    )
    (tmp_path / "r.yaml").write_text("version: 1\nrules: []\n")
    result = runner.invoke(app, ["grafana", "export", str(tmp_path / "out"), "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    ds = yaml.safe_load((tmp_path / "out/provisioning/datasources/stampline.yaml").read_text())
    ch = ds["datasources"][0]["jsonData"]
    assert (ch["host"], ch["port"], ch["secure"], ch["defaultDatabase"]) == (
        "ch.internal",
        8443,
        True,
        "audit_prod",
    )


@pytest.mark.parametrize(
    "bad", ["ftp://x:1", "clickhouse:8123", "http://[red]x", "[bold]ch[/bold]"]
)
def test_cli_export_names_a_bad_clickhouse_url(tmp_path: Path, bad: str) -> None:
    """A ClickHouse URL that is not http(s)://host:port is a usage error naming it, verbatim."""
    result = runner.invoke(app, ["grafana", "export", str(tmp_path), "--clickhouse-url", bad])
    assert result.exit_code == 2
    assert bad in result.output


def test_cli_push_twice_then_json_reports_nothing_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`grafana push --json` creates on the first run and reports 0 changed on the second."""
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_cli")
    with RecordingGrafana("glsa_cli") as g:
        first = runner.invoke(app, ["grafana", "push", "--url", g.url, "--json"])
        second = runner.invoke(app, ["grafana", "push", "--url", g.url, "--json"])
    assert first.exit_code == 0, first.output
    assert orjson.loads(first.stdout)["changed"] == 1 + 2 + len(DASHBOARD_UIDS)
    assert orjson.loads(second.stdout)["changed"] == 0


def test_cli_push_wrong_token_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused token is a one-line error on stderr, exit 1, without the token in it."""
    monkeypatch.setenv("MY_TOKEN", "glsa_wrong_value")
    with RecordingGrafana("glsa_right") as g:
        result = runner.invoke(app, ["grafana", "push", "--url", g.url, "--token-env", "MY_TOKEN"])
    assert result.exit_code == 1
    assert "401" in result.output
    assert "glsa_wrong_value" not in result.output


def test_cli_push_without_a_token_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token in the named variable: exit 2, naming the variable."""
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    result = runner.invoke(app, ["grafana", "push", "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "$GRAFANA_TOKEN" in result.output


def test_cli_export_into_a_file_is_a_clear_error(tmp_path: Path) -> None:
    """A target that cannot hold the tree (a file where the folder goes) exits 1, naming it."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "provisioning").write_text("not a folder")
    result = runner.invoke(app, ["grafana", "export", str(target)])
    assert result.exit_code == 1
    assert "cannot write the provisioning tree" in result.output


def test_cli_export_says_plainly_grafana_cannot_reach_an_embedded_store(tmp_path: Path) -> None:
    """On the embedded (chDB) default the export says the store is not reachable by Grafana
    and where the data source points instead, on stderr and in --json; a ClickHouse
    deployment gets no such note."""
    (tmp_path / "r.yaml").write_text("version: 1\nrules: []\n")
    base = {
        "version": 1,
        "broker": {"bootstrap_servers": "kafka:9092"},
        "topics": {"raw": ["md.raw"], "clean": "md.clean", "dead_letter": "md.dlq"},
        "rules": {"files": [str(tmp_path / "r.yaml")]},
    }
    embedded, server = tmp_path / "embedded.yaml", tmp_path / "server.yaml"
    embedded.write_text(yaml.safe_dump(base | {"store": {"path": str(tmp_path / "store")}}))
    server.write_text(
        yaml.safe_dump(base | {"store": {"backend": "clickhouse", "url": "http://ch:8123"}})
    )
    said = runner.invoke(app, ["grafana", "export", str(tmp_path / "a"), "-c", str(embedded)])
    assert said.exit_code == 0, said.output
    assert "(embedded): Grafana cannot reach that store" in said.stderr
    assert "clickhouse:8123" in said.stderr
    as_json = runner.invoke(
        app, ["grafana", "export", str(tmp_path / "b"), "-c", str(embedded), "--json"]
    )
    assert "Grafana cannot reach" in orjson.loads(as_json.stdout)["clickhouse_note"]
    quiet = runner.invoke(app, ["grafana", "export", str(tmp_path / "c"), "-c", str(server)])
    assert quiet.exit_code == 0, quiet.output
    assert "cannot reach" not in quiet.stderr
    pointed = runner.invoke(
        app,
        ["grafana", "export", str(tmp_path / "d"), "-c", str(embedded), "--clickhouse-url",
         "http://ch:8123"],
    )  # fmt: skip
    assert "cannot reach" not in pointed.stderr


@pytest.mark.parametrize("uid", DASHBOARD_UIDS)
def test_no_dashboard_calls_the_feed_topic_a_venue(uid: str) -> None:
    """Venue means venue (the alert definitions' label): the feed-topic variable is named and
    labelled topic, and no panel query names a column or variable venue."""
    dash = dashboards()[uid]
    names = {v["name"]: v.get("label", "") for v in dash["templating"]["list"]}
    assert "venue" not in names
    assert names["topic"] == "Feed topic"
    text = json.dumps(dash["panels"])
    assert "$venue" not in text
    assert "${venue" not in text
    assert not re.search(r"\bAS venue\b", text)
