"""Grafana dashboards as code (grafana-foundation-sdk), their provisioning, and the push to a
running Grafana.

May import ``audit`` and ``alerting``.
"""

from dashboards._common import (
    CLICKHOUSE_UID,
    FOLDER_UID,
    PROMETHEUS_UID,
    PanelSql,
)
from dashboards._macros import ALL, TimeRange, expand
from dashboards._provisioning import (
    DASHBOARD_UIDS,
    ENV_CLICKHOUSE_PASSWORD,
    AlertingSection,
    GrafanaSettings,
    dashboards,
    datasources,
    export,
    panel_queries,
)
from dashboards._push import Change, PushReport, push
from dashboards.exceptions import GrafanaError, PushError

__all__ = [
    "ALL",
    "CLICKHOUSE_UID",
    "DASHBOARD_UIDS",
    "ENV_CLICKHOUSE_PASSWORD",
    "FOLDER_UID",
    "PROMETHEUS_UID",
    "AlertingSection",
    "Change",
    "GrafanaError",
    "GrafanaSettings",
    "PanelSql",
    "PushError",
    "PushReport",
    "TimeRange",
    "dashboards",
    "datasources",
    "expand",
    "export",
    "panel_queries",
    "push",
]
