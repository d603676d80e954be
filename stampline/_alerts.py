"""Alerting wired from a configuration: detectors for a gate, the provider watch, delivery,
and the recorder's part (the alerts topic into the store, the completeness detector).

Where alert history reaches the store: with ``alerting.topic`` set, every process sends its
transitions to the topic and the recorder (the store's one writer) writes them, exactly once
per message; no process writes history directly. Without a topic, a process that holds a
store writes its own history (a single-process deployment, tests, the demo).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from stampline.alerting import (
    KINDS,
    AlertIntake,
    AlertmanagerClient,
    AlertMetrics,
    AlertsFile,
    CompletenessDetector,
    DismissalBook,
    Dispatcher,
    FactsPublisher,
    FactsSubscriber,
    KeyDetectors,
    ProviderWatch,
    WatchTicker,
    load_alerts,
)
from stampline.audit import AuditError, Store
from stampline.collectors import RecorderMetrics, SidecarMetrics
from stampline.config import Config
from stampline.rules import RuleSet, RulesHolder

log = logging.getLogger("stampline.alerting")


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
    metrics: SidecarMetrics | RecorderMetrics | None,
    source: str,
) -> tuple[Dispatcher, list[Any]]:
    """Delivery as configured. With an alerts topic, history goes to the store only through
    the topic (the recorder writes it), so ``store`` is not written here."""
    a = config.alerting
    closers: list[Any] = []
    topic = None
    if a.topic and bootstrap:
        store = None
        from confluent_kafka import Producer

        from stampline.collectors import producer_config

        producer = Producer(producer_config(bootstrap, config.broker.client))
        topic = (producer, a.topic)
        closers.append(lambda: producer.flush(5))
    am = alertmanager_client(config)
    alert_metrics = AlertMetrics(metrics.registry) if metrics is not None else None
    d = Dispatcher(
        definitions,
        alertmanager=am,
        store=store,
        topic=topic,
        metrics=alert_metrics,
        source=source,
        resend_s=a.resend_interval_ns / 1e9,
        spacing_s=a.replay_spacing_ns / 1e9,
    )
    return d, closers


def alertmanager_client(config: Config, url: str | None = None) -> AlertmanagerClient | None:
    """The Alertmanager at ``url`` (default: ``alerting.alertmanager_url``), with the basic
    auth of ``alerting.alertmanager_username``/``password`` or of the URL's user info."""
    a = config.alerting
    url = url or a.alertmanager_url
    if url is None:
        return None
    password = a.alertmanager_password
    return AlertmanagerClient(
        url,
        username=a.alertmanager_username,
        password=password.get_secret_value() if password is not None else None,
    )


@dataclass
class RecorderAlerting:
    """What the recorder runs for alerting: the alerts topic's writer and the detectors
    that need every stage's rows."""

    intake: AlertIntake | None = None
    completeness: CompletenessDetector | None = None
    dispatcher: Dispatcher | None = None
    closers: list[Any] = field(default_factory=list)

    @property
    def observers(self) -> list[CompletenessDetector]:
        return [self.completeness] if self.completeness is not None else []

    def close(self) -> None:
        for c in reversed(self.closers):
            c()
        if self.dispatcher is not None:
            self.dispatcher.close()


def for_recorder(
    config: Config, bootstrap: str, store: Store, metrics: RecorderMetrics | None
) -> RecorderAlerting:
    """The recorder's alerting: it writes the alerts topic (``alerting.topic``) into the
    store, and judges the definitions of events lost between stages (``completeness``).

    Raises:
        DefinitionError: the definitions file is not usable.
    """
    a = config.alerting
    parts = RecorderAlerting(intake=AlertIntake(store) if a.topic else None)
    if a.definitions is None:
        return parts
    definitions = load_alerts(a.definitions)
    if not any(KINDS[d.kind].stage_loss is not None for d in definitions.alerts):
        return parts
    source = f"recorder@{socket.gethostname()}"
    d, closers = dispatcher(config, definitions, bootstrap, store, metrics, source)
    parts.dispatcher, parts.closers = d, closers
    parts.completeness = CompletenessDetector(definitions, d, dismissals=book(store))
    return parts


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
        parts.watch = watch(parts, metrics, store, config, server=False)  # in the gate
        facts = parts.watch.add
    # The bound the clock_error alert reads is the sidecar's own gauge (stampline.wiring).
    parts.detectors = KeyDetectors(
        definitions,
        rule_kinds(rules),
        d,
        facts,
        source=source,
        # never a ClickHouse server here: a gate must not wait on the store to start
        dismissals=book(store, config, server=False),
    )
    return parts


def reading_store(config: Config, *, server: bool = True) -> Store | None:
    """The store to *read* while another process may hold it: a ClickHouse server (unless
    ``server`` is False), or the live endpoint of the recorder holding the embedded store;
    None when neither answers (an embedded store is never opened here: that would keep the
    recorder out of it)."""
    from stampline.wiring import live_store, open_store

    s = config.store
    try:
        if s.backend == "clickhouse":
            return open_store(s, migrate=False) if server else None
        return live_store(s)
    except AuditError as exc:
        log.warning("store not readable: %s", exc)
        return None


def book(
    store: Store | None, config: Config | None = None, *, server: bool = True
) -> DismissalBook | None:
    """What people dismissed as expected so far (read once, at start), from ``store`` or,
    without one, from the store another process holds (see :func:`reading_store`). None,
    logged, when no store answers: alerts then fire at their defined severity."""
    if store is None and config is not None:
        store = reading_store(config, server=server)
    if store is None:
        return None
    try:
        return DismissalBook.from_store(store)
    except AuditError as exc:
        log.warning("dismissals not read (alerts fire at their defined severity): %s", exc)
        return None


def watch(
    parts: AlertingParts,
    metrics: SidecarMetrics | None,
    store: Store | None = None,
    config: Config | None = None,
    *,
    server: bool = True,
) -> ProviderWatch:
    w = ProviderWatch(
        parts.definitions,
        parts.dispatcher,
        event_clock=config is not None and config.alerting.watch_clock == "event",
        dismissals=book(store, config, server=server),
    )
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
    parts.watch = watch(parts, metrics, store, config)
    sub = FactsSubscriber(bootstrap, a.facts_topic, parts.watch, dict(config.broker.client))
    sub.start()
    parts.closers.append(sub.stop)
    return parts
