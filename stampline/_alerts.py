"""Alerting wired from a configuration: detectors for a gate, the provider watch, delivery."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from alerting import (
    AlertmanagerClient,
    AlertMetrics,
    AlertsFile,
    DismissalBook,
    Dispatcher,
    FactsPublisher,
    FactsSubscriber,
    KeyDetectors,
    ProviderWatch,
    WatchTicker,
    load_alerts,
)
from audit import Store
from collectors import SidecarMetrics
from rules import RuleSet, RulesHolder
from stampline.config import Config


@dataclass
class AlertingParts:
    """What a process runs for alerting; :meth:`close` stops it in order."""

    definitions: AlertsFile
    dispatcher: Dispatcher
    detectors: KeyDetectors | None = None
    watch: ProviderWatch | None = None
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for c in reversed(self.closers):
            c()
        self.dispatcher.close()


def rule_kinds(rules: RuleSet | RulesHolder) -> dict[str, str]:
    """Rule id -> kind, what the detectors match alert definitions against."""
    return {r.id: r.kind for r in rules.current.rules}


def dispatcher(
    config: Config,
    definitions: AlertsFile,
    bootstrap: str | None,
    store: Store | None,
    metrics: SidecarMetrics | None,
    source: str,
) -> tuple[Dispatcher, list[Any]]:
    a = config.alerting
    closers: list[Any] = []
    topic = None
    if a.topic and bootstrap:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": bootstrap, **config.broker.client})
        topic = (producer, a.topic)
        closers.append(lambda: producer.flush(5))
    am = AlertmanagerClient(a.alertmanager_url) if a.alertmanager_url else None
    alert_metrics = AlertMetrics(metrics.registry) if metrics is not None else None
    d = Dispatcher(
        definitions,
        alertmanager=am,
        store=store,
        topic=topic,
        metrics=alert_metrics,
        source=source,
        resend_s=a.resend_interval_ns / 1e9,
    )
    return d, closers


def for_gate(
    config: Config,
    bootstrap: str,
    store: Store | None,
    metrics: SidecarMetrics | None,
    rules: RuleSet | RulesHolder,
) -> AlertingParts | None:
    """Detectors for one gate, or None when no definitions are configured. Without a facts
    topic the provider watch runs in this process (one gate); with one, the gate publishes
    facts and ``stampline alerts watch`` judges provider-wide kinds."""
    a = config.alerting
    if a.definitions is None:
        return None
    definitions = load_alerts(a.definitions)
    source = f"{config.gate.stage}@{socket.gethostname()}"
    d, closers = dispatcher(config, definitions, bootstrap, store, metrics, source)
    parts = AlertingParts(definitions, d, closers=closers)
    if a.facts_topic:
        publisher = FactsPublisher(bootstrap, a.facts_topic, dict(config.broker.client))
        parts.closers.append(publisher.close)
        facts: Any = publisher
    else:
        parts.watch = watch(parts, metrics, store)
        facts = parts.watch.add
    # The bound the clock_error alert reads is the sidecar's own gauge (stampline.wiring).
    parts.detectors = KeyDetectors(
        definitions, rule_kinds(rules), d, facts, source=source, dismissals=book(store)
    )
    return parts


def book(store: Store | None) -> DismissalBook | None:
    """What people dismissed as expected so far (read once, at start)."""
    return DismissalBook.from_store(store) if store is not None else None


def watch(
    parts: AlertingParts, metrics: SidecarMetrics | None, store: Store | None = None
) -> ProviderWatch:
    w = ProviderWatch(parts.definitions, parts.dispatcher, dismissals=book(store))
    if metrics is not None and parts.dispatcher.metrics is not None:
        parts.dispatcher.metrics.watch_providers(w)
    ticker = WatchTicker(w).start()
    parts.closers.append(ticker.stop)
    return w


def for_watch(
    config: Config, bootstrap: str, store: Store | None, metrics: SidecarMetrics | None
) -> AlertingParts:
    """The one provider watch of a deployment, fed by every gate's facts topic."""
    a = config.alerting
    assert a.definitions is not None
    assert a.facts_topic is not None
    definitions = load_alerts(a.definitions)
    d, closers = dispatcher(config, definitions, bootstrap, store, metrics, "watch")
    parts = AlertingParts(definitions, d, closers=closers)
    parts.watch = watch(parts, metrics, store)
    sub = FactsSubscriber(bootstrap, a.facts_topic, parts.watch, dict(config.broker.client))
    sub.start()
    parts.closers.append(sub.stop)
    return parts
