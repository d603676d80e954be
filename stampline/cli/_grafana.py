"""`stampline grafana export|push`: the dashboards, data sources and alert rules, as files or
over the API."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
from rich.table import Table

from stampline.alerting import DefinitionError, load_alerts
from stampline.cli._app import ConfigOpt, DatabaseOpt, JsonOpt, app, emit_json, err, fail, out
from stampline.config import ENV_CONFIG_FILE, Config, ConfigError, load_config
from stampline.dashboards import (
    GrafanaAlerting,
    GrafanaError,
    GrafanaSettings,
    PushError,
    export,
    grafana_alerting,
    push,
)

grafana_app = typer.Typer(
    help="Grafana dashboards, data sources and alert rules as code: export a provisioning "
    "tree, or push.",
    no_args_is_help=True,
)
app.add_typer(grafana_app, name="grafana")

DEFAULT_TOKEN_ENV = "GRAFANA_TOKEN"

ClickHouseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--clickhouse-url",
        help="ClickHouse as Grafana reaches it, http(s)://host:port "
        "(default: the config's store.url, else http://clickhouse:8123).",
    ),
]
ClickHouseUserOpt = Annotated[
    str, typer.Option("--clickhouse-user", help="Read-only ClickHouse user Grafana queries as.")
]
PrometheusOpt = Annotated[
    str,
    typer.Option("--prometheus-url", help="Prometheus as Grafana reaches it."),
]
AlertsOpt = Annotated[
    Path | None,
    typer.Option(
        "--alerts",
        help="Alert definitions YAML to render as Grafana alert rules "
        "(default: the config's alerting.definitions).",
    ),
]
AlertmanagerOpt = Annotated[
    str | None,
    typer.Option(
        "--alertmanager-url",
        help="Alertmanager as Grafana reaches it: adds a contact point sending there and the "
        "notification policy tree (default: the config's alerting.alertmanager_url).",
    ),
]


def _config(path: Path | None) -> Config | None:
    """The deployment configuration: --config, else $STAMPLINE_CONFIG, else none."""
    if path is None and os.environ.get(ENV_CONFIG_FILE):
        path = Path(os.environ[ENV_CONFIG_FILE])
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))


def _settings(
    cfg: Config | None,
    database: str | None,
    clickhouse_url: str | None,
    clickhouse_user: str,
    prometheus_url: str,
) -> GrafanaSettings:
    base = GrafanaSettings()
    db, url = base.database, clickhouse_url
    if cfg is not None:
        db = cfg.store.database
        if url is None and cfg.store.backend == "clickhouse":
            url = cfg.store.url
    host, port, secure = base.clickhouse_host, base.clickhouse_port, base.clickhouse_secure
    if url is not None:
        try:
            parsed = urlparse(url)
        except ValueError:  # e.g. an unclosed [ in the host part
            fail(f"--clickhouse-url {url!r} must be http(s)://host:port", 2)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            fail(f"--clickhouse-url {url!r} must be http(s)://host:port", 2)
        secure = parsed.scheme == "https"
        host = parsed.hostname
        try:
            port = parsed.port or (8443 if secure else 8123)
        except ValueError:
            fail(f"--clickhouse-url {url!r} has a bad port", 2)
    try:
        return GrafanaSettings(
            database=database or db,
            clickhouse_host=host,
            clickhouse_port=port,
            clickhouse_secure=secure,
            clickhouse_user=clickhouse_user,
            prometheus_url=prometheus_url,
        )
    except GrafanaError as exc:
        fail(str(exc), 2)


@dataclass(frozen=True, slots=True)
class _Alerting:
    """The alert rules to provision, or why there are none."""

    rendered: GrafanaAlerting | None
    source: Path | None

    def to_dict(self) -> dict[str, Any]:
        if self.rendered is None:
            return {"definitions": None}
        return {"definitions": str(self.source), **self.rendered.summary()}

    def say(self) -> None:
        """What became of the alert definitions, on stderr (stdout holds the result)."""
        if self.rendered is None:
            err.print(
                "no alert definitions (--alerts FILE, or alerting.definitions in the config): "
                "no alert rules provisioned",
                highlight=False,
            )
            return
        r = self.rendered
        routing = (
            "with a contact point and the policy tree"
            if r.routed
            else "without routing (no --alertmanager-url or alerting.alertmanager_url)"
        )
        err.print(f"alert rules from {self.source}: {r.rules} rule(s), {routing}", highlight=False)
        for line in (*r.skipped, *r.notes):
            err.print(f"  {line}", highlight=False)


def _alerting(cfg: Config | None, alerts: Path | None, alertmanager_url: str | None) -> _Alerting:
    if alerts is None and cfg is not None:
        alerts = cfg.alerting.definitions
    if alertmanager_url is None and cfg is not None:
        alertmanager_url = cfg.alerting.alertmanager_url
    if alerts is None:
        return _Alerting(None, None)
    try:
        definitions = load_alerts(alerts)
    except DefinitionError as exc:
        fail(f"alert definitions are not usable:\n{exc!s}")
    try:
        return _Alerting(grafana_alerting(definitions, alertmanager_url=alertmanager_url), alerts)
    except GrafanaError as exc:
        fail(str(exc), 2)


@grafana_app.command("export")
def export_command(
    directory: Annotated[Path, typer.Argument(help="Folder to write provisioning/ into.")],
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
    clickhouse_url: ClickHouseUrlOpt = None,
    clickhouse_user: ClickHouseUserOpt = "grafana",
    prometheus_url: PrometheusOpt = "http://prometheus:9090",
    alerts: AlertsOpt = None,
    alertmanager_url: AlertmanagerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the provisioning tree Grafana loads at start.

    DIRECTORY/provisioning/ gets datasources/ (ClickHouse and Prometheus, fixed uids),
    dashboards/ (a file provider and the three dashboards: Pipeline hotspots, Providers,
    Compliance) and alerting/: with alert definitions (--alerts, or the config's
    alerting.definitions) one Grafana-managed rule per definition and the calendars' mute
    timings, plus a contact point and the policy tree when an Alertmanager URL is known.
    Mount it read-only at /etc/grafana/provisioning. The ClickHouse password is read by
    Grafana from $STAMPLINE_GRAFANA_CLICKHOUSE_PASSWORD, never written.

    Example: stampline grafana export deploy/grafana --config deploy/stampline.yaml
    """
    cfg = _config(config)
    settings = _settings(cfg, database, clickhouse_url, clickhouse_user, prometheus_url)
    rules = _alerting(cfg, alerts, alertmanager_url)
    sections = rules.rendered.sections if rules.rendered else ()
    try:
        files = export(directory, settings, alerting=sections)
    except GrafanaError as exc:
        fail(str(exc))
    unreachable = _embedded_note(cfg, clickhouse_url, settings)
    if as_json:
        emit_json(
            {"directory": str(directory), "files": [str(f) for f in files]}
            | {"alerting": rules.to_dict(), "clickhouse_note": unreachable}
        )
        return
    for f in files:
        out.print(f"wrote {f}", highlight=False)
    rules.say()
    if unreachable:
        err.print(unreachable, highlight=False)


def _embedded_note(cfg: Config | None, url: str | None, settings: GrafanaSettings) -> str | None:
    """Why the ClickHouse data source cannot show this deployment's store, if it cannot.

    An embedded (chDB) store lives inside the recorder's process: Grafana has no way in (the
    recorder's live endpoint speaks only a subset of ClickHouse's HTTP interface and has not
    been tried with Grafana's plugin), so the data source keeps the compose default. Said
    plainly rather than written silently.
    """
    if url is not None or cfg is None or cfg.store.backend == "clickhouse":
        return None
    return (
        f"store.backend is {cfg.store.backend} (embedded): Grafana cannot reach that store; "
        f"the ClickHouse data source points at {settings.clickhouse_host}:"
        f"{settings.clickhouse_port} (the compose stack's ClickHouse). Run a ClickHouse "
        "server (store.backend: clickhouse) or pass --clickhouse-url for the dashboards to "
        "show data."
    )


@grafana_app.command("push")
def push_command(
    url: Annotated[
        str,
        typer.Option("--url", envvar="GRAFANA_URL", help="Grafana's base URL ($GRAFANA_URL)."),
    ],
    token_env: Annotated[
        str,
        typer.Option(
            "--token-env",
            help="Environment variable holding a service-account token (Editor or Admin); "
            "a token is never taken on the command line, where `ps` would show it.",
        ),
    ] = DEFAULT_TOKEN_ENV,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read only: print what would change.")
    ] = False,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
    clickhouse_url: ClickHouseUrlOpt = None,
    clickhouse_user: ClickHouseUserOpt = "grafana",
    prometheus_url: PrometheusOpt = "http://prometheus:9090",
    alerts: AlertsOpt = None,
    alertmanager_url: AlertmanagerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Provision a running Grafana (11-13): the Stampline folder, data sources, dashboards
    and, with alert definitions, the alert rules, mute timings, contact point and policies.

    Idempotent: each object is read first and written only if it differs, so pushing twice
    changes nothing the second time. Exits 1 on a refused token, an unreachable URL or a
    refused payload. Set $STAMPLINE_GRAFANA_CLICKHOUSE_PASSWORD to send (or rotate) the
    ClickHouse password.

    Example: GRAFANA_TOKEN=glsa_... stampline grafana push --url http://localhost:3000 --dry-run
    """
    cfg = _config(config)
    settings = _settings(cfg, database, clickhouse_url, clickhouse_user, prometheus_url)
    rules = _alerting(cfg, alerts, alertmanager_url)
    token = os.environ.get(token_env, "")
    if not token:
        fail(f"no token: set ${token_env} to a Grafana service-account token", 2)
    sections = rules.rendered.sections if rules.rendered else ()
    try:
        report = push(url, token, settings, dry_run=dry_run, alerting=sections)
    except PushError as exc:
        fail(str(exc))
    if as_json:
        emit_json(report.to_dict() | {"alerting": rules.to_dict()})
        return
    verb = "would change" if dry_run else "changed"
    table = Table(title=f"Grafana {report.grafana_version} at {url}")
    for col in ("kind", "uid", "action"):
        table.add_column(col)
    for c in report.changes:
        table.add_row(c.kind, c.uid, c.action)
    out.print(table)
    out.print(f"{verb}: {report.changed} of {len(report.changes)}", highlight=False)
    rules.say()
