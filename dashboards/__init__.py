"""Grafana dashboards and alert rules as code, their provisioning and the push to a running
Grafana; and the evidence report for regulators.

Alert rules: ``grafana_alerting`` renders the alerting component's definitions as Grafana
alerting provisioning sections (rules, contact point, policy tree, mute timings), which
``export`` writes and ``push`` sends.

The evidence report: ``decision_evidence`` / ``event_evidence`` / ``period_evidence`` build
the facts from the audit trail as a versioned JSON document (``SCHEMA``); ``write_bundle``
writes it as a folder (HTML, PDF printed by headless Chromium, JSON, manifest).

May import ``audit`` and ``alerting``.
"""

from stampline._common import imported_as_part_of_stampline
from stampline.dashboards._alert_rules import GrafanaAlerting, grafana_alerting, rule_uid
from stampline.dashboards._browser import BrowserError, dump_dom, find_chromium, print_pdf
from stampline.dashboards._bundle import MANIFEST_SCHEMA, Bundle, write_bundle
from stampline.dashboards._chain import (
    ChainProof,
    read_chain_heads,
    read_chain_proof,
    verify_command,
)
from stampline.dashboards._common import (
    CLICKHOUSE_UID,
    FOLDER_UID,
    PROMETHEUS_UID,
    PanelSql,
)
from stampline.dashboards._evidence import (
    SCHEMA,
    Context,
    Evidence,
    InputFile,
    decision_evidence,
    event_evidence,
)
from stampline.dashboards._html import render_html
from stampline.dashboards._macros import ALL, TimeRange, expand
from stampline.dashboards._period import parse_period, period_evidence
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
from stampline.dashboards._regime import REGIMES, Regime, Tier, observed_granularity_ns, regime_tier
from stampline.dashboards._schema import EVIDENCE_JSON_SCHEMA
from stampline.dashboards.exceptions import GrafanaError, PushError

__all__ = [
    "ALERTS_FOLDER_TITLE",
    "ALERTS_FOLDER_UID",
    "ALL",
    "CLICKHOUSE_UID",
    "DASHBOARD_UIDS",
    "ENV_CLICKHOUSE_PASSWORD",
    "EVIDENCE_JSON_SCHEMA",
    "FOLDER_UID",
    "MANIFEST_SCHEMA",
    "PROMETHEUS_UID",
    "REGIMES",
    "SCHEMA",
    "AlertingSection",
    "BrowserError",
    "Bundle",
    "ChainProof",
    "Change",
    "Context",
    "Evidence",
    "GrafanaAlerting",
    "GrafanaError",
    "GrafanaSettings",
    "InputFile",
    "PanelSql",
    "PushError",
    "PushReport",
    "Regime",
    "Tier",
    "TimeRange",
    "dashboards",
    "datasources",
    "decision_evidence",
    "dump_dom",
    "event_evidence",
    "expand",
    "export",
    "find_chromium",
    "grafana_alerting",
    "observed_granularity_ns",
    "panel_queries",
    "parse_period",
    "period_evidence",
    "print_pdf",
    "push",
    "read_chain_heads",
    "read_chain_proof",
    "regime_tier",
    "render_html",
    "rule_uid",
    "verify_command",
    "write_bundle",
]

# Never as a top-level `dashboards` (from the repository root): see stampline/_common/_namespace.py.
imported_as_part_of_stampline(__name__)
