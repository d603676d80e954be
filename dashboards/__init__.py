"""Grafana dashboards and alert rules as code, their provisioning and the push to a running
Grafana.

Alert rules: ``grafana_alerting`` renders the alerting component's definitions as Grafana
alerting provisioning sections (rules, contact point, policy tree, mute timings), which
``export`` writes and ``push`` sends.


May import ``audit`` and ``alerting``.
"""

from stampline._common import imported_as_part_of_stampline
from stampline.dashboards._alert_rules import GrafanaAlerting, grafana_alerting, rule_uid
from stampline.dashboards._common import (
    CLICKHOUSE_UID,
    FOLDER_UID,
    PROMETHEUS_UID,
    PanelSql,
)
from stampline.dashboards._macros import ALL, TimeRange, expand
from stampline.dashboards._provisioning import (
    ALERTS_FOLDER_TITLE,
    ALERTS_FOLDER_UID,
    DASHBOARD_UIDS,
    ENV_CLICKHOUSE_PASSWORD,
    AlertingSection,
    GrafanaSettings,
    dashboards,
    datasources,
    export,
    panel_queries,
)
from stampline.dashboards._push import Change, PushReport, push
from stampline.dashboards.exceptions import GrafanaError, PushError

__all__ = [
    "ALERTS_FOLDER_TITLE",
    "ALERTS_FOLDER_UID",
    "ALL",
    "CLICKHOUSE_UID",
    "DASHBOARD_UIDS",
    "ENV_CLICKHOUSE_PASSWORD",
    "FOLDER_UID",
    "PROMETHEUS_UID",
    "AlertingSection",
    "Change",
    "GrafanaAlerting",
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
    "grafana_alerting",
    "panel_queries",
    "push",
    "rule_uid",
]

# Never as a top-level `dashboards` (from the repository root): see stampline/_common/_namespace.py.
imported_as_part_of_stampline(__name__)
