"""Delivery: Alertmanager's v2 API (real Alertmanager, its webhook), the alerts topic, the
store's history, the metrics; and a stuck sink never holds up the caller."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry, generate_latest

from stampline.alerting import (
    AlertmanagerClient,
    AlertMetrics,
    Dispatcher,
    Lifecycle,
    ProviderWatch,
    Transition,
    parse_alerts,
    read_history,
)
from stampline.audit import ChdbStore
from tests.alerting.conftest import Server, Webhook
from tests.helpers import read_all

S = 1_000_000_000
DEFS = parse_alerts(
    """\
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 2s}
  - {provider: never, venue: XNYS, max_gap: 5s}
alerts:
  - id: provider.silent
    kind: provider_silent
    severity: critical
    summary: "{provider} silent for {value:.1f}s"
    runbook_url: https://example.org/runbook
"""
)


def silence(provider: str, start_ns: int) -> tuple[Transition, Transition]:
    """A firing and the resolve of one provider_silent instance."""
    life = Lifecycle("provider.silent", "provider_silent", severity="critical")
    labels = (("provider", provider), ("venue", "XLON"))
    (fired,) = life.observe(labels, start_ns, active=True, value=3.5)
    (resolved,) = life.observe(labels, start_ns + 5 * S, active=False)
    return fired, resolved


def test_firing_and_resolve_reach_the_webhook(
    alertmanager: Server, webhook: Webhook, uid: str
) -> None:
    """A firing alert posted to Alertmanager reaches its webhook with labels and summary; the
    resolve arrives as status resolved."""
    dispatcher = Dispatcher(DEFS, alertmanager=AlertmanagerClient(alertmanager.url))
    provider = f"p{uid}"
    fired, resolved = silence(provider, time.time_ns() - 10 * S)
    dispatcher([fired])
    (alert,) = webhook.wait_for(provider=provider)
    assert alert["status"] == "firing"
    assert alert["labels"]["alertname"] == "provider.silent"
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == f"{provider} silent for 3.5s"
    assert alert["annotations"]["runbook_url"] == "https://example.org/runbook"
    dispatcher([resolved])
    deadline = time.monotonic() + 30
    while not any(a["status"] == "resolved" for _t, a in webhook.alerts(provider=provider)):
        assert time.monotonic() < deadline, "no resolve notification"
        time.sleep(0.05)
    dispatcher.close()


def test_a_stuck_alertmanager_never_blocks_the_caller() -> None:
    """With an Alertmanager that accepts connections and never answers, calls return, the
    bounded queue drops its oldest notices and counts them, failed tries are counted, and
    what is still queued at close is counted lost: every notice is accounted for."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(100)
    url = f"http://127.0.0.1:{stuck.getsockname()[1]}"
    metrics = AlertMetrics()
    dispatcher = Dispatcher(
        DEFS,
        alertmanager=AlertmanagerClient(url, timeout_s=0.2),
        metrics=metrics,
        max_queue=50,
        retry_max_s=0.2,
    )
    done = threading.Event()

    def flood() -> None:
        for i in range(2000):
            dispatcher([silence(f"p{i}", time.time_ns())[0]])
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(60), "the caller was held up by the sink"
    (worker,) = dispatcher.workers
    assert not dispatcher.flush(1)  # nothing can be delivered
    assert worker.failures >= 1
    assert worker.queued == 50
    dispatcher.close(1)
    assert worker.sent == 0
    assert worker.dropped + worker.lost == 2000
    text = generate_latest(metrics.registry).decode()
    assert 'stampline_alert_delivery_failures_total{sink="alertmanager"}' in text
    assert f'stampline_alert_dropped_total{{sink="alertmanager"}} {worker.dropped}.0' in text
    stuck.close()


def test_history_and_topic(
    store: ChdbStore, bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """Each transition is one history row (labels, figures, times) and one record on the
    alerts topic keyed by the instance's fingerprint."""
    (topic,) = make_topics("alerts", partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    dispatcher = Dispatcher(DEFS, store=store, topic=(producer, topic), source="test")
    fired, resolved = silence("alpha", 1_800_000_000 * S)
    dispatcher([fired, resolved])
    assert dispatcher.flush(30)
    rows = read_history(store)
    assert [(r["state"], r["at_ns"], r["labels"]["provider"]) for r in rows] == [
        ("firing", fired.at_ns, "alpha"),
        ("resolved", resolved.at_ns, "alpha"),
    ]
    assert rows[0]["annotations"]["summary"] == "alpha silent for 3.5s"
    assert rows[1]["started_ns"] == fired.at_ns
    assert read_history(store, since_ns=resolved.at_ns) == rows[1:]
    records = read_all(bootstrap, topic, 2)
    assert [orjson.loads(r.value or b"")["state"] for r in records] == ["firing", "resolved"]
    assert {r.key for r in records} == {fired.fingerprint.encode()}
    dispatcher.close()


def test_metrics_firing_series_and_every_registered_provider() -> None:
    """``stampline_alert_firing`` exists while an instance fires; every registered provider
    has a last-event series, the never-seen one at the watch's start time."""
    registry = CollectorRegistry()
    metrics = AlertMetrics(registry)
    dispatcher = Dispatcher(DEFS, metrics=metrics)
    watch = ProviderWatch(DEFS, dispatcher, clock=lambda: 100 * S, started_ns=50 * S)
    metrics.watch_providers(watch)
    fired, resolved = silence("alpha", 10 * S)
    dispatcher([fired])
    text = generate_latest(registry).decode()
    assert 'stampline_alert_firing{alertname="provider.silent"' in text
    assert 'provider="alpha"' in text
    assert (
        'stampline_provider_last_event_origin_timestamp_seconds{provider="never",venue="XNYS"} 50.0'
        in text
    )
    assert 'stampline_provider_expected_max_gap_seconds{provider="never",venue="XNYS"} 5.0' in text
    dispatcher([resolved])
    assert "stampline_alert_firing{" not in generate_latest(registry).decode()
