"""The provisioning tree Grafana loads at start, and what ``push`` sends to a running one.

``export(DIR)`` writes::

    DIR/provisioning/datasources/stampline.yaml      ClickHouse + Prometheus, fixed uids
    DIR/provisioning/dashboards/stampline.yaml       the file provider (folder "Stampline")
    DIR/provisioning/dashboards/stampline/<uid>.json one file per dashboard
    DIR/provisioning/alerting/<name>.yaml            one file per alerting section

Mount ``DIR/provisioning`` read-only at ``/etc/grafana/provisioning``. Alerting is a list of
sections (``AlertingSection``): each renders one file in Grafana's alerting provisioning
format (``apiVersion: 1`` with ``groups``, ``contactPoints``, ``policies`` or
``muteTimes``). The alert rules rendered from the alerting component's definitions
(``grafana_alerting`` in ``_alert_rules``) plug in there; with none given the folder is
created empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from stampline.dashboards import _compliance, _hotspots, _providers
from stampline.dashboards._common import (
    CLICKHOUSE_TYPE,
    CLICKHOUSE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    PROMETHEUS_TYPE,
    PROMETHEUS_UID,
    PanelSql,
)
from stampline.dashboards.exceptions import GrafanaError

GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
DASHBOARDS_SUBDIR = "dashboards/stampline"
# The alert rules' folder. Not the dashboards' one: a provisioning file names a rule's folder
# by title only, and Grafana provisions alerting before dashboards, so at a first start a
# rule file naming "Stampline" would create that folder under a random uid and the dashboards
# provider (uid "stampline", same title) would then fail on the duplicate title.
ALERTS_FOLDER_UID = "stampline-alerts"
ALERTS_FOLDER_TITLE = "Stampline alerts"
ENV_CLICKHOUSE_PASSWORD = "STAMPLINE_GRAFANA_CLICKHOUSE_PASSWORD"
"""Environment variable Grafana reads the ClickHouse password from (never written to a file)."""

_DASHBOARDS: dict[str, tuple[Callable[[str], dict[str, Any]], list[PanelSql]]] = {
    _hotspots.UID: (_hotspots.build, _hotspots.SQL.queries),
    _providers.UID: (_providers.build, _providers.SQL.queries),
    _compliance.UID: (_compliance.build, _compliance.SQL.queries),
}
DASHBOARD_UIDS: tuple[str, ...] = tuple(_DASHBOARDS)


@dataclass(frozen=True, slots=True)
class GrafanaSettings:
    """Where Grafana finds the store and Prometheus; the defaults are the compose stack's."""

    database: str = "stampline"
    clickhouse_host: str = "clickhouse"
    clickhouse_port: int = 8123
    clickhouse_protocol: str = "http"  # the plugin's "http" or "native"
    clickhouse_secure: bool = False
    clickhouse_user: str = "grafana"  # a read-only user
    prometheus_url: str = "http://prometheus:9090"

    def __post_init__(self) -> None:
        if self.clickhouse_protocol not in ("http", "native"):
            raise GrafanaError(
                f"clickhouse_protocol must be 'http' or 'native', not {self.clickhouse_protocol!r}"
            )
        if not 0 < self.clickhouse_port < 65536:
            raise GrafanaError(f"clickhouse_port {self.clickhouse_port} is not a TCP port")
        if not self.prometheus_url.startswith(("http://", "https://")):
            raise GrafanaError(f"prometheus_url {self.prometheus_url!r} must be http(s)://...")


class AlertingSection(Protocol):
    """One alerting provisioning file (rules, contact points, policies or mute timings).

    A section may also have a ``comment`` (text): it is written at the top of its file.
    """

    @property
    def name(self) -> str:
        """The file stem, e.g. "rules"."""
        ...

    def document(self, settings: GrafanaSettings) -> dict[str, Any]:
        """The file's content: ``{"apiVersion": 1, ...}`` in Grafana's provisioning format."""
        ...


def dashboards(settings: GrafanaSettings | None = None) -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON, by uid."""
    settings = settings or GrafanaSettings()
    return {uid: build(settings.database) for uid, (build, _) in _DASHBOARDS.items()}


def panel_queries() -> list[PanelSql]:
    """Every ClickHouse query the dashboards hold, with the columns its panel reads."""
    return [q for _, queries in _DASHBOARDS.values() for q in queries]


def datasources(settings: GrafanaSettings) -> list[dict[str, Any]]:
    """The two data sources, as provisioning entries (the push uses the same content)."""
    return [
        {
            "name": "Stampline ClickHouse",
            "uid": CLICKHOUSE_UID,
            "type": CLICKHOUSE_TYPE,
            "access": "proxy",
            "editable": False,
            "jsonData": {
                "host": settings.clickhouse_host,
                "port": settings.clickhouse_port,
                "protocol": settings.clickhouse_protocol,
                "secure": settings.clickhouse_secure,
                "username": settings.clickhouse_user,
                "defaultDatabase": settings.database,
            },
            "secureJsonData": {"password": "${" + ENV_CLICKHOUSE_PASSWORD + "}"},
        },
        {
            "name": "Stampline Prometheus",
            "uid": PROMETHEUS_UID,
            "type": PROMETHEUS_TYPE,
            "access": "proxy",
            "editable": False,
            "url": settings.prometheus_url,
            "jsonData": {"timeInterval": "15s"},
        },
    ]


def dashboard_provider() -> dict[str, Any]:
    """The file provider that loads the dashboards into the Stampline folder."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "stampline",
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": f"{GRAFANA_PROVISIONING}/{DASHBOARDS_SUBDIR}"},
            }
        ],
    }


def export(
    directory: Path,
    settings: GrafanaSettings | None = None,
    alerting: Sequence[AlertingSection] = (),
) -> list[Path]:
    """Write the provisioning tree under ``directory``; returns the files written.

    Raises:
        GrafanaError: ``directory`` exists and is not a folder, or cannot be written.
    """
    settings = settings or GrafanaSettings()
    root = directory / "provisioning"
    files: dict[Path, str] = {
        root / "datasources" / "stampline.yaml": _yaml(
            {"apiVersion": 1, "datasources": datasources(settings)}
        ),
        root / "dashboards" / "stampline.yaml": _yaml(dashboard_provider()),
    }
    for uid, dash in dashboards(settings).items():
        files[root / DASHBOARDS_SUBDIR / f"{uid}.json"] = (
            json.dumps(dash, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        )
    names = [s.name for s in alerting]
    if len(set(names)) != len(names):
        raise GrafanaError(f"alerting sections must have distinct names, got {names}")
    for section in alerting:
        comment = str(getattr(section, "comment", ""))
        files[root / "alerting" / f"{section.name}.yaml"] = _yaml(
            section.document(settings), comment
        )
    try:
        (root / "alerting").mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GrafanaError(f"cannot write the provisioning tree under {directory}: {exc}") from exc
    return sorted(files)


def _yaml(doc: dict[str, Any], comment: str = "") -> str:
    head = "# Written by `stampline grafana export`; edit the code, not this file.\n"
    head += "".join(f"# {line}\n" for line in comment.splitlines())
    return head + yaml.dump(doc, sort_keys=False, allow_unicode=True)
