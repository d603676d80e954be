"""Alerting: definitions (expected providers, calendars, alerts), the lifecycle of alert
instances, in-stream detectors, delivery (Alertmanager, alerts topic, store, metrics), and
the Prometheus / Alertmanager files exported from the same definitions.

May import ``audit``.
"""

from alerting._calendar import (
    SeverityDecision,
    decide_severity,
    event_at,
    in_quiet,
    in_session,
    read_ical,
    shift,
)
from alerting._definitions import (
    ALERT_ID_PATTERN,
    RTS25_TIERS_NS,
    SEVERITIES,
    AlertDefinition,
    AlertsFile,
    Calendar,
    ClockError,
    CollectorDown,
    Completeness,
    Divergence,
    DlqRate,
    ExpectedProvider,
    LatencySlo,
    ProviderSilent,
    ScheduledEvent,
    Scope,
    SequenceGap,
    Stale,
    TrailLag,
    Window,
    load_alerts,
    parse_alerts,
)
from alerting._detectors import BatchObserver, KeyDetectors, ProviderFacts
from alerting._durations import duration_ns, prometheus_duration
from alerting._lifecycle import Lifecycle, Transition, fingerprint
from alerting._relay import FactsPublisher, FactsSubscriber
from alerting._watch import ProviderWatch, WatchTicker
from alerting.exceptions import AlertDeliveryError, AlertingError, DefinitionError

__all__ = [
    "ALERT_ID_PATTERN",
    "RTS25_TIERS_NS",
    "SEVERITIES",
    "AlertDefinition",
    "AlertDeliveryError",
    "AlertingError",
    "AlertsFile",
    "BatchObserver",
    "Calendar",
    "ClockError",
    "CollectorDown",
    "Completeness",
    "DefinitionError",
    "Divergence",
    "DlqRate",
    "ExpectedProvider",
    "FactsPublisher",
    "FactsSubscriber",
    "KeyDetectors",
    "LatencySlo",
    "Lifecycle",
    "ProviderFacts",
    "ProviderSilent",
    "ProviderWatch",
    "ScheduledEvent",
    "Scope",
    "SequenceGap",
    "SeverityDecision",
    "Stale",
    "TrailLag",
    "Transition",
    "WatchTicker",
    "Window",
    "decide_severity",
    "duration_ns",
    "event_at",
    "fingerprint",
    "in_quiet",
    "in_session",
    "load_alerts",
    "parse_alerts",
    "prometheus_duration",
    "read_ical",
    "shift",
]
