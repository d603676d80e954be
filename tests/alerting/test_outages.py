"""Deliveries outlast outages: Alertmanager answering 500, hanging, or down for a while gets
every transition once it is back (a fire-then-resolve as both, in order), and the alerts
topic counts a transition as sent only on its delivery report."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from prometheus_client import generate_latest

from stampline.alerting import (
    AlertmanagerClient,
    AlertMetrics,
    Dispatcher,
    FactsPublisher,
    ProviderFacts,
)
from tests.alerting.conftest import FlakyServer, Server, Webhook, free_port
from tests.alerting.test_delivery import DEFS, S, silence


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def outage_dispatcher(url: str, metrics: AlertMetrics | None = None, **kw: float) -> Dispatcher:
    """A dispatcher with short client timeouts and back-off, so an outage is quick to test."""
    return Dispatcher(
        DEFS,
        alertmanager=AlertmanagerClient(url, timeout_s=0.3),
        metrics=metrics,
        retry_max_s=0.3,
        **kw,
    )


@pytest.mark.parametrize("outage", ["down", "500", "hang"])
def test_transitions_wait_out_an_outage(flaky: FlakyServer, outage: str) -> None:
    """Transitions offered while Alertmanager is down, failing or hanging are retried with
    back-off, failures counted, and all delivered once it answers again."""
    if outage != "down":
        flaky.up(outage)
    metrics = AlertMetrics()
    dispatcher = outage_dispatcher(flaky.url, metrics)
    firings = [silence(f"p{i}", time.time_ns() - 10 * S)[0] for i in range(5)]
    dispatcher(firings)
    (worker,) = dispatcher.workers
    wait_until(lambda: worker.failures >= 2, "no retry")
    assert worker.sent == 0
    assert worker.queued == 5
    flaky.up("ok")
    assert dispatcher.flush(30)
    assert sorted(a["labels"]["provider"] for a in flaky.posted_alerts()) == [
        f"p{i}" for i in range(5)
    ]
    assert (worker.sent, worker.lost, worker.dropped) == (5, 0, 0)
    text = generate_latest(metrics.registry).decode()
    assert (
        f'stampline_alert_delivery_failures_total{{sink="alertmanager"}} {worker.failures}.0'
        in text
    )
    dispatcher.close(1)


def test_fire_then_resolve_during_an_outage_arrive_in_order_once_back(flaky: FlakyServer) -> None:
    """An instance that fired and resolved while Alertmanager was down is posted as the
    firing, then (spaced) the resolve; a firing superseded by a newer one is posted once."""
    dispatcher = outage_dispatcher(flaky.url, spacing_s=0.5)
    fired, resolved = silence("flap", time.time_ns() - 10 * S)
    dispatcher([fired])
    dispatcher([fired])  # the same instance firing again: superseded by the newest
    dispatcher([resolved])
    (worker,) = dispatcher.workers
    wait_until(lambda: worker.failures >= 1, "no failed try")
    flaky.up("ok")
    assert dispatcher.flush(30)
    posts = [body for _m, p, _h, body in flaky.requests if p == "/api/v2/alerts"]
    assert [len(body) for body in posts] == [1, 1]  # the repeated firing went once
    (first,), (second,) = posts
    assert first["endsAt"] > second["endsAt"]  # firing (ends ahead), then the resolve
    assert worker.sent == 3
    dispatcher.close(1)


def test_fire_then_resolve_reach_a_real_alertmanager_after_its_outage(
    flaky: FlakyServer, alertmanager: Server, webhook: Webhook, uid: str
) -> None:
    """A real Alertmanager behind an outage notifies both the firing and then the resolve of
    an alert that fired and resolved while it was unreachable."""
    dispatcher = outage_dispatcher(flaky.url, spacing_s=2.0)
    provider = f"flap{uid}"
    fired, resolved = silence(provider, time.time_ns() - 10 * S)
    dispatcher([fired])
    dispatcher([resolved])
    (worker,) = dispatcher.workers
    wait_until(lambda: worker.failures >= 2, "no failed try")
    flaky.up("forward", alertmanager.url)
    wait_until(
        lambda: any(a["status"] == "resolved" for _t, a in webhook.alerts(provider=provider)),
        "no resolve notified",
    )
    statuses = [
        a["status"] for _t, a in sorted(webhook.alerts(provider=provider), key=lambda x: x[0])
    ]
    assert statuses[0] == "firing"
    assert statuses[-1] == "resolved"
    dispatcher.close(1)


def test_the_alerts_topic_counts_only_acknowledged_transitions() -> None:
    """With the alerts topic's broker unreachable, transitions are not counted as sent: each
    failed delivery report is a failed try, and the transitions wait to be tried again."""
    producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 300}
    )
    metrics = AlertMetrics()
    dispatcher = Dispatcher(DEFS, topic=(producer, "alerts"), metrics=metrics, retry_max_s=0.2)
    fired, resolved = silence("alpha", time.time_ns())
    dispatcher([fired, resolved])
    (worker,) = dispatcher.workers
    wait_until(lambda: worker.failures >= 2, "no failed delivery report")
    assert worker.sent == 0
    assert worker.queued == 2
    dispatcher.close(0.5)
    assert worker.lost == 2
    text = generate_latest(metrics.registry).decode()
    assert 'stampline_alert_delivery_failures_total{sink="topic"}' in text


def test_facts_count_as_published_only_on_their_delivery_report() -> None:
    """A gate's provider facts to an unreachable broker are counted dropped when their
    delivery report fails, never published."""
    publisher = FactsPublisher(f"127.0.0.1:{free_port()}", "facts", {"message.timeout.ms": 300})
    publisher(ProviderFacts(time.time_ns(), {"alpha": time.time_ns()}, {"alpha": 1}))
    publisher.close()  # waits for the report (message.timeout.ms is shorter)
    assert (publisher.published, publisher.dropped) == (0, 1)
