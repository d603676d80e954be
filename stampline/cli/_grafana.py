"""`stampline grafana export|push`: the dashboards and data sources, as files or over the API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.markup import escape
from rich.table import Table

from dashboards import GrafanaError, GrafanaSettings, PushError, export, push
from stampline.cli._app import ConfigOpt, JsonOpt, app, emit_json, fail, out
from stampline.config import ConfigError, load_config

grafana_app = typer.Typer(
    help="Grafana dashboards and data sources as code: export a provisioning tree, or push.",
    no_args_is_help=True,
)
app.add_typer(grafana_app, name="grafana")

DEFAULT_TOKEN_ENV = "GRAFANA_TOKEN"

DatabaseOpt = Annotated[
    str | None, typer.Option("--database", help="Store database (default: the config's).")
]
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


def _settings(
    config: Path | None,
    database: str | None,
    clickhouse_url: str | None,
    clickhouse_user: str,
    prometheus_url: str,
) -> GrafanaSettings:
    base = GrafanaSettings()
    db, url = base.database, clickhouse_url
    if config is not None:
        try:
            cfg = load_config(config)
        except ConfigError as exc:
            fail(escape(str(exc)))
        db = cfg.store.database
        if url is None and cfg.store.backend == "clickhouse":
            url = cfg.store.url
    host, port, secure = base.clickhouse_host, base.clickhouse_port, base.clickhouse_secure
    if url is not None:
        try:
            parsed = urlparse(url)
        except ValueError:  # e.g. an unclosed [ in the host part
            fail(escape(f"--clickhouse-url {url!r} must be http(s)://host:port"), 2)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            fail(escape(f"--clickhouse-url {url!r} must be http(s)://host:port"), 2)
        secure = parsed.scheme == "https"
        host = parsed.hostname
        try:
            port = parsed.port or (8443 if secure else 8123)
        except ValueError:
            fail(escape(f"--clickhouse-url {url!r} has a bad port"), 2)
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
        fail(escape(str(exc)), 2)


@grafana_app.command("export")
def export_command(
    directory: Annotated[Path, typer.Argument(help="Folder to write provisioning/ into.")],
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
    clickhouse_url: ClickHouseUrlOpt = None,
    clickhouse_user: ClickHouseUserOpt = "grafana",
    prometheus_url: PrometheusOpt = "http://prometheus:9090",
    as_json: JsonOpt = False,
) -> None:
    """Write the provisioning tree Grafana loads at start.

    DIRECTORY/provisioning/ gets datasources/ (ClickHouse and Prometheus, fixed uids),
    dashboards/ (a file provider and the three dashboards: Pipeline hotspots, Providers,
    Compliance) and alerting/. Mount it read-only at /etc/grafana/provisioning. The ClickHouse
    password is read by Grafana from $STAMPLINE_GRAFANA_CLICKHOUSE_PASSWORD, never written.

    Example: stampline grafana export deploy/grafana --config deploy/stampline.yaml
    """
    settings = _settings(config, database, clickhouse_url, clickhouse_user, prometheus_url)
    try:
        files = export(directory, settings)
    except GrafanaError as exc:
        fail(escape(str(exc)))
    if as_json:
        emit_json({"directory": str(directory), "files": [str(f) for f in files]})
        return
    for f in files:
        out.print(f"wrote {escape(str(f))}", highlight=False)


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
    as_json: JsonOpt = False,
) -> None:
    """Provision a running Grafana (11-13): the Stampline folder, data sources, dashboards.

    Idempotent: each object is read first and written only if it differs, so pushing twice
    changes nothing the second time. Exits 1 on a refused token, an unreachable URL or a
    refused payload. Set $STAMPLINE_GRAFANA_CLICKHOUSE_PASSWORD to send (or rotate) the
    ClickHouse password.

    Example: GRAFANA_TOKEN=glsa_... stampline grafana push --url http://localhost:3000 --dry-run
    """
    settings = _settings(config, database, clickhouse_url, clickhouse_user, prometheus_url)
    token = os.environ.get(token_env, "")
    if not token:
        fail(escape(f"no token: set ${token_env} to a Grafana service-account token"), 2)
    try:
        report = push(url, token, settings, dry_run=dry_run)
    except PushError as exc:
        fail(escape(str(exc)))
    if as_json:
        emit_json(report.to_dict())
        return
    verb = "would change" if dry_run else "changed"
    table = Table(title=f"Grafana {escape(report.grafana_version)} at {escape(url)}")
    for col in ("kind", "uid", "action"):
        table.add_column(col)
    for c in report.changes:
        table.add_row(c.kind, escape(c.uid), c.action)
    out.print(table)
    out.print(f"{verb}: {report.changed} of {len(report.changes)}")
