"""Prometheus metrics of alerting, on an explicit registry.

``stampline_alert_firing`` has one series per firing instance (removed on resolve), so
cardinality follows the open faults, bounded by the lifecycle's cap. The provider series
come from the one :class:`~alerting.ProviderWatch` and exist for *every registered*
provider, seen or not: a silent provider is a series with an old timestamp, never a series
that disappeared (which Grafana would resolve as MissingSeries).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stampline._common import SECOND_NS
from stampline.alerting._notice import Notice
from stampline.alerting._watch import ProviderWatch

FIRING_LABELS = (
    "alertname",
    "kind",
    "severity",
    "provider",
    "venue",
    "instrument",
    "rule",
    "from_stage",  # completeness: the stage pair the events were lost between
    "to_stage",
)


class AlertMetrics:
    """Firing alerts, transitions and delivery failures."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.firing = Gauge(
            "stampline_alert_firing",
            "1 per firing alert instance (the series goes away when it resolves).",
            list(FIRING_LABELS),
            registry=r,
        )
        self.transitions = Counter(
            "stampline_alert_transitions",
            "Lifecycle transitions of alert instances.",
            ["alertname", "state"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "stampline_alert_delivery_failures",
            "Failed delivery tries of a sink (each is retried with back-off).",
            ["sink"],
            registry=r,
        )
        self.dropped = Counter(
            "stampline_alert_dropped",
            "Notices dropped, oldest first, because a sink's bounded queue was full.",
            ["sink"],
            registry=r,
        )

    def update(self, notices: Sequence[Notice]) -> None:
        for n in notices:
            values = [n.labels.get(k, "") for k in FIRING_LABELS]
            values[2] = n.transition.severity
            self.transitions.labels(n.labels["alertname"], n.transition.state).inc()
            if n.transition.state == "firing":
                self.firing.labels(*values).set(1)
            elif n.transition.state == "resolved":
                # resolved without a firing series here: another process fired it
                with contextlib.suppress(KeyError):
                    self.firing.remove(*values)

    def watch_providers(self, watch: ProviderWatch) -> None:
        """Export the watch's per-provider series (read at scrape time)."""
        self.registry.register(_ProviderCollector(watch))


class _ProviderCollector(Collector):
    def __init__(self, watch: ProviderWatch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        w = self.watch
        labels = ["provider", "venue"]
        last = GaugeMetricFamily(
            "stampline_provider_last_event_origin_timestamp_seconds",
            "Origin time of a registered provider's newest event seen by any gate "
            "(the watch's start time when it was never seen).",
            labels=labels,
        )
        gap = GaugeMetricFamily(
            "stampline_provider_expected_max_gap_seconds",
            "The registry's max_gap: longer without events is a silent provider.",
            labels=labels,
        )
        session = GaugeMetricFamily(
            "stampline_provider_in_session",
            "1 while the provider's venue trades (its calendar's sessions), else 0.",
            labels=labels,
        )
        now = w.clock()
        for p in w.definitions.providers:
            values = [p.provider, p.venue]
            last.add_metric(values, w.last_origin.get(p.provider, w.started_ns) / SECOND_NS)
            gap.add_metric(values, p.max_gap_ns / SECOND_NS)
            session.add_metric(values, 1.0 if w.in_session(p, now) else 0.0)
        yield last
        yield gap
        yield session
