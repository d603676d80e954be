"""`grafana push` against a recording stand-in that enforces what Grafana 11-13 requires."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from stampline.dashboards import (
    ALERTS_FOLDER_UID,
    CLICKHOUSE_UID,
    DASHBOARD_UIDS,
    ENV_CLICKHOUSE_PASSWORD,
    FOLDER_UID,
    PROMETHEUS_UID,
    GrafanaSettings,
    PushError,
    dashboards,
    push,
)
from tests.dashboards.grafana_api import RecordingGrafana

TOKEN = "glsa_test-token-0123456789"


@pytest.fixture
def grafana() -> Iterator[RecordingGrafana]:
    with RecordingGrafana(TOKEN) as g:
        yield g


def test_first_push_creates_folder_datasources_and_dashboards(grafana: RecordingGrafana) -> None:
    """A push to an empty Grafana creates every object, with payloads Grafana accepts."""
    report = push(grafana.url, TOKEN)
    st = grafana.state
    assert st.problems == []
    assert {c.action for c in report.changes} == {"create"}
    assert set(st.folders) == {FOLDER_UID}
    assert set(st.datasources) == {CLICKHOUSE_UID, PROMETHEUS_UID}
    assert set(st.dashboards) == set(DASHBOARD_UIDS)
    assert {d["meta"]["folderUid"] for d in st.dashboards.values()} == {FOLDER_UID}
    assert [(r.method, r.path) for r in st.writes] == [
        ("POST", "/api/folders"),
        ("POST", "/api/datasources"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * len(DASHBOARD_UIDS),
    ]
    assert all(r.auth == f"Bearer {TOKEN}" for r in st.requests if r.path != "/api/health")


def test_second_push_changes_nothing(grafana: RecordingGrafana) -> None:
    """Pushing the same thing twice: the second push only reads and reports nothing changed."""
    push(grafana.url, TOKEN)
    writes = len(grafana.state.writes)
    versions = {u: d["dashboard"]["version"] for u, d in grafana.state.dashboards.items()}
    report = push(grafana.url, TOKEN)
    assert report.changed == 0
    assert len(grafana.state.writes) == writes
    assert {u: d["dashboard"]["version"] for u, d in grafana.state.dashboards.items()} == versions


def test_a_changed_dashboard_is_updated_in_place(grafana: RecordingGrafana) -> None:
    """A dashboard edited in Grafana is put back, keeping its uid, in the same folder."""
    push(grafana.url, TOKEN)
    uid = DASHBOARD_UIDS[0]
    grafana.state.dashboards[uid]["dashboard"]["title"] = "edited by hand"
    report = push(grafana.url, TOKEN)
    assert [(c.uid, c.action) for c in report.changes if c.action != "unchanged"] == [
        (uid, "update")
    ]
    assert grafana.state.dashboards[uid]["dashboard"]["title"] == dashboards()[uid]["title"]
    assert grafana.state.dashboards[uid]["dashboard"]["version"] == 2


def test_dry_run_reads_and_writes_nothing(grafana: RecordingGrafana) -> None:
    """A dry run reports what it would create and sends no write."""
    report = push(grafana.url, TOKEN, dry_run=True)
    assert report.dry_run
    assert report.changed == 1 + 2 + len(DASHBOARD_UIDS)
    assert grafana.state.writes == []


def test_password_comes_from_the_environment_and_is_not_in_the_report(
    grafana: RecordingGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ClickHouse password is sent from its variable, and a push with it set updates it."""
    monkeypatch.setenv(ENV_CLICKHOUSE_PASSWORD, "s3cret-pw")
    report = push(grafana.url, TOKEN)
    assert grafana.state.datasources[CLICKHOUSE_UID]["secureJsonData"] == {"password": "s3cret-pw"}
    assert "s3cret-pw" not in str(report.to_dict())


def test_wrong_token_is_a_clear_error_and_writes_nothing(grafana: RecordingGrafana) -> None:
    """A token Grafana refuses stops the push with a 401 message that does not echo it."""
    with pytest.raises(PushError, match="refused the token \\(401\\)") as info:
        push(grafana.url, "glsa_wrong")
    assert "glsa_wrong" not in str(info.value)
    assert grafana.state.writes == []


def test_unreachable_url_is_a_clear_error() -> None:
    """A URL where nothing listens says Grafana cannot be reached there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PushError, match=f"cannot reach Grafana at http://127.0.0.1:{port}"):
        push(f"http://127.0.0.1:{port}", TOKEN, timeout_s=2)


@pytest.mark.parametrize("bad", ["127.0.0.1:3000", "ftp://grafana", ""])
def test_url_without_http_scheme_is_refused(bad: str) -> None:
    """A URL that is not http(s) is named in the error before anything is sent."""
    with pytest.raises(PushError, match="must start with http"):
        push(bad, TOKEN)


def test_a_grafana_older_than_11_is_refused() -> None:
    """Grafana 10 is refused by version, before any object is read or written."""
    with RecordingGrafana(TOKEN, version="10.4.2") as g:
        with pytest.raises(PushError, match=r"Grafana 10\.4\.2; the dashboards target 11-13"):
            push(g.url, TOKEN)
        assert [r.path for r in g.state.requests] == ["/api/health"]


def test_a_server_that_is_not_grafana_is_named() -> None:
    """A URL whose /api/health is not Grafana's (here: 404) is reported as such."""
    refused = pytest.raises(PushError, match="not-grafana does not answer /api/health like Grafana")
    with RecordingGrafana(TOKEN) as g, refused:
        push(g.url + "/not-grafana", TOKEN)


class _Alerting:
    """An alerting section in Grafana's file-provisioning format, as the alerting component
    is to render it (the real rules come from its definitions)."""

    name = "provider-alerts"

    def __init__(self, threshold: float = 5.0) -> None:
        self.threshold = threshold

    def document(self, settings: GrafanaSettings) -> dict[str, Any]:
        above = {"type": "gt", "params": [self.threshold]}
        return {
            "apiVersion": 1,
            "contactPoints": [
                {
                    "orgId": 1,
                    "name": "data-team",
                    "receivers": [
                        {
                            "uid": "stampline-data-team",
                            "type": "webhook",
                            "settings": {"url": "http://hooks/data", "password": "hook-secret"},
                        }
                    ],
                }
            ],
            "muteTimes": [
                {"orgId": 1, "name": "xlon-closed", "time_intervals": [{"weekdays": ["saturday"]}]}
            ],
            "policies": [
                {
                    "orgId": 1,
                    "receiver": "data-team",
                    "group_by": ["alertname", "provider"],
                    "routes": [{"receiver": "data-team", "mute_time_intervals": ["xlon-closed"]}],
                }
            ],
            "groups": [
                {
                    "orgId": 1,
                    "name": "providers",
                    "folder": "Stampline alerts",
                    "interval": "1m",
                    "rules": [
                        {
                            "uid": "stampline-provider-silent",
                            "title": "Provider silent",
                            "condition": "B",
                            "data": [
                                {"refId": "A", "datasourceUid": CLICKHOUSE_UID, "model": {}},
                                {
                                    "refId": "B",
                                    "datasourceUid": "__expr__",
                                    "model": {
                                        "type": "threshold",
                                        "expression": "A",
                                        "conditions": [{"evaluator": above}],
                                    },
                                },
                            ],
                            "noDataState": "Alerting",
                            "execErrState": "Error",
                            "for": "1m",
                        }
                    ],
                }
            ],
        }


def test_alerting_sections_go_through_the_provisioning_api(grafana: RecordingGrafana) -> None:
    """Contact point, mute timing, policy tree and rule group are created, in an order Grafana
    accepts (receivers and mute timings before the policies that name them)."""
    report = push(grafana.url, TOKEN, alerting=[_Alerting()])
    st = grafana.state
    assert st.problems == []
    kinds = [
        (c.kind, c.action)
        for c in report.changes
        if c.kind not in {"folder", "datasource", "dashboard"}
    ]
    assert kinds == [
        ("contact_point", "create"),
        ("mute_timing", "create"),
        ("policies", "update"),
        ("rule_group", "create"),
    ]
    (rules_group,) = st.rule_groups.values()
    assert rules_group["interval"] == 60
    assert rules_group["rules"][0]["folderUID"] == ALERTS_FOLDER_UID
    assert st.folders[ALERTS_FOLDER_UID]["title"] == "Stampline alerts"
    assert st.policies["receiver"] == "data-team"


def test_alerting_push_is_idempotent_despite_redacted_secrets(grafana: RecordingGrafana) -> None:
    """A second push changes nothing, though Grafana shows the webhook password as [REDACTED]."""
    push(grafana.url, TOKEN, alerting=[_Alerting()])
    writes = len(grafana.state.writes)
    assert push(grafana.url, TOKEN, alerting=[_Alerting()]).changed == 0
    assert len(grafana.state.writes) == writes


def test_a_changed_rule_updates_only_its_group(grafana: RecordingGrafana) -> None:
    """Changing a threshold re-saves the rule group and nothing else."""
    push(grafana.url, TOKEN, alerting=[_Alerting()])
    report = push(grafana.url, TOKEN, alerting=[_Alerting(threshold=9.0)])
    assert [(c.kind, c.action) for c in report.changes if c.action != "unchanged"] == [
        ("rule_group", "update")
    ]


def test_a_rule_without_uid_is_refused_before_anything_is_sent(grafana: RecordingGrafana) -> None:
    """A rule a push could not find again (no uid) is an error naming the section and group."""

    class NoUid(_Alerting):
        def document(self, settings: GrafanaSettings) -> dict[str, Any]:
            doc = super().document(settings)
            del doc["groups"][0]["rules"][0]["uid"]
            return {"apiVersion": 1, "groups": doc["groups"]}

    with pytest.raises(
        PushError, match="'provider-alerts', group 'providers': every rule needs a uid"
    ):
        push(grafana.url, TOKEN, alerting=[NoUid()], dry_run=True)
