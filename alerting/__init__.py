"""Alerting: definitions (expected providers, calendars, alerts; one module per alert kind
under ``_kinds/``, listed in the registry ``KINDS``), the lifecycle of alert
instances, in-stream detectors, delivery (Alertmanager, alerts topic, store, metrics), and
the Prometheus / Alertmanager files exported from the same definitions (their PromQL and
routing parts are public, so Grafana-managed rules render from the very same strings).

May import ``audit``.
"""

from stampline._common import imported_as_part_of_stampline, prometheus_duration
from stampline._common import parse_duration_ns as duration_ns
from stampline.alerting._alertmanager import AlertmanagerClient, am_alert
from stampline.alerting._calendar import (
    SeverityDecision,
    decide_severity,
    event_at,
    in_quiet,
    in_session,
    read_ical,
    shift,
)
from stampline.alerting._completeness import CompletenessDetector
from stampline.alerting._definitions import (
    AlertDefinition,
    AlertsFile,
    Calendar,
    ExpectedProvider,
    ScheduledEvent,
    Window,
    load_alerts,
    parse_alerts,
)
from stampline.alerting._detectors import BatchObserver, KeyDetectors, ProviderFacts
from stampline.alerting._dispatch import Dispatcher
from stampline.alerting._export import (
    GROUP_BY,
    ROUTE_TIMING,
    alertmanager_config,
    expression,
    prometheus_rules,
    prometheus_tests,
    session_intervals,
    signal,
    summary_notes,
    summary_template,
    venue_sessions,
)
from stampline.alerting._history import (
    action_record,
    read_actions,
    read_history,
    read_record,
    write_action,
    write_history,
)
from stampline.alerting._intake import AlertIntake, IntakeResult
from stampline.alerting._kinds import KINDS
from stampline.alerting._kinds._kind import (
    ALERT_ID_PATTERN,
    PROMETHEUS,
    SEVERITIES,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    Scope,
)
from stampline.alerting._kinds.clock_error import RTS25_TIERS_NS, ClockError
from stampline.alerting._kinds.collector_down import CollectorDown
from stampline.alerting._kinds.completeness import Completeness
from stampline.alerting._kinds.divergence import Divergence
from stampline.alerting._kinds.dlq_rate import DlqRate
from stampline.alerting._kinds.latency_slo import LatencySlo
from stampline.alerting._kinds.provider_silent import ProviderSilent
from stampline.alerting._kinds.sequence_gap import SequenceGap
from stampline.alerting._kinds.stale import Stale
from stampline.alerting._kinds.trail_lag import TrailLag
from stampline.alerting._learning import DismissalBook, UpdateRates
from stampline.alerting._lifecycle import Lifecycle, Transition, fingerprint
from stampline.alerting._metrics import AlertMetrics
from stampline.alerting._notice import Notice, render
from stampline.alerting._relay import FactsPublisher, FactsSubscriber
from stampline.alerting._tune import Suggestion, suggest
from stampline.alerting._watch import ProviderWatch, WatchTicker
from stampline.alerting.exceptions import AlertDeliveryError, AlertingError, DefinitionError

__all__ = [
    "ALERT_ID_PATTERN",
    "GROUP_BY",
    "KINDS",
    "PROMETHEUS",
    "ROUTE_TIMING",
    "RTS25_TIERS_NS",
    "SEVERITIES",
    "AlertDefinition",
    "AlertDeliveryError",
    "AlertIntake",
    "AlertKind",
    "AlertMetrics",
    "AlertingError",
    "AlertmanagerClient",
    "AlertsFile",
    "BatchObserver",
    "Calendar",
    "ClockError",
    "CollectorDown",
    "Completeness",
    "CompletenessDetector",
    "DefinitionError",
    "DismissalBook",
    "Dispatcher",
    "Divergence",
    "DlqRate",
    "ExpectedProvider",
    "FactsPublisher",
    "FactsSubscriber",
    "GrafanaRule",
    "IntakeResult",
    "KeyDetectors",
    "LatencySlo",
    "Lifecycle",
    "Notice",
    "PromCase",
    "PromSignal",
    "ProviderFacts",
    "ProviderSilent",
    "ProviderWatch",
    "ScheduledEvent",
    "Scope",
    "SequenceGap",
    "SeverityDecision",
    "Stale",
    "Suggestion",
    "TrailLag",
    "Transition",
    "UpdateRates",
    "WatchTicker",
    "Window",
    "action_record",
    "alertmanager_config",
    "am_alert",
    "decide_severity",
    "duration_ns",
    "event_at",
    "expression",
    "fingerprint",
    "in_quiet",
    "in_session",
    "load_alerts",
    "parse_alerts",
    "prometheus_duration",
    "prometheus_rules",
    "prometheus_tests",
    "read_actions",
    "read_history",
    "read_ical",
    "read_record",
    "render",
    "session_intervals",
    "shift",
    "signal",
    "suggest",
    "summary_notes",
    "summary_template",
    "venue_sessions",
    "write_action",
    "write_history",
]

# Never as a top-level `alerting` (from the repository root): see stampline/_common/_namespace.py.
imported_as_part_of_stampline(__name__)
