"""End to end with the real parts: a provider goes silent in a live feed through the gate.

(a) the direct push reaches Alertmanager, whose webhook (in this test) gets it; (b)
Prometheus scrapes stampline's metrics, the exported rule fires, Alertmanager notifies; a
snooze made beforehand keeps another silent provider's notification away; the resolve
arrives when the provider resumes. A record of the silent provider dated a day ahead is
refused and changes none of it.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import start_http_server
from typer.testing import CliRunner

from stampline.alerting import (
    AlertmanagerClient,
    AlertMetrics,
    Dispatcher,
    KeyDetectors,
    ProviderWatch,
    WatchTicker,
    parse_alerts,
    prometheus_rules,
)
from stampline.audit import ChdbStore
from stampline.cli import app
from stampline.collectors import GateSettings, SidecarMetrics
from stampline.rules import RuleSet
from tests.alerting.conftest import Server, Webhook, start_prometheus, stop
from tests.alerting.test_faults import RULES, rule_kinds
from tests.helpers import GateRun, produce


class LiveFeed:
    """Quotes from each provider every 50 ms of wall time, origin = now; providers can be
    switched off and on."""

    def __init__(self, bootstrap: str, topic: str, providers: list[str]) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        self.topic = topic
        self.on = dict.fromkeys(providers, True)
        self.last: dict[str, int] = {}  # newest origin sent, ns
        self.seq = dict.fromkeys(providers, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            now_ms = int(time.time() * 1000)
            for p, on in list(self.on.items()):
                if not on:
                    continue
                price = 100 + (self.seq[p] % 40) * 0.05
                record = {"provider": p, "instrument": "SYM001", "seq": self.seq[p],
                          "ts": now_ms, "type": "quote", "price": round(price, 2),
                          "bid": round(price - 0.01, 2), "ask": round(price + 0.01, 2),
                          "quantity": 1}  # fmt: skip
                self.seq[p] += 1
                self.producer.produce(self.topic, orjson.dumps(record), p.encode())
                self.last[p] = now_ms * 1_000_000
            self.producer.poll(0)
        self.producer.flush(10)


def prometheus_alerts(prom: Server) -> list[dict[str, object]]:
    with urllib.request.urlopen(prom.url + "/api/v1/alerts", timeout=5) as r:
        return list(orjson.loads(r.read())["data"]["alerts"])


@pytest.mark.e2e
@pytest.mark.slow
def test_silent_provider_end_to_end(
    alertmanager: Server,
    webhook: Webhook,
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    uid: str,
    tmp_path: Path,
) -> None:
    """Silence → direct push and the Prometheus rule both reach the webhook; a snoozed
    provider is not notified (its alert is silenced); the resume resolves it."""
    alpha, beta, gamma = f"alpha{uid}", f"beta{uid}", f"gamma{uid}"
    definitions = parse_alerts(
        f"""\
version: 1
providers:
  - {{provider: {alpha}, venue: XLON, max_gap: 2s}}
  - {{provider: {beta}, venue: XLON, max_gap: 2s}}
  - {{provider: {gamma}, venue: XLON, max_gap: 2s}}
alerts:
  - id: provider.silent
    kind: provider_silent
    severity: critical
    scope: {{providers: ["*{uid}"]}}
"""
    )
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    rules = RuleSet.load([RULES])
    metrics = SidecarMetrics()
    dispatcher = Dispatcher(
        definitions,
        alertmanager=AlertmanagerClient(alertmanager.url),
        store=store,
        metrics=AlertMetrics(metrics.registry),
        resend_s=5,
    )
    watch = ProviderWatch(definitions, dispatcher)
    dispatcher.metrics.watch_providers(watch)  # type: ignore[union-attr]
    detectors = KeyDetectors(definitions, rule_kinds(rules), dispatcher, watch.add)
    server, _thread = start_http_server(0, "127.0.0.1", registry=metrics.registry)
    (tmp_path / "rules.yml").write_text(prometheus_rules(definitions))
    prom = start_prometheus(
        tmp_path, f"127.0.0.1:{server.server_port}", alertmanager.url, "rules.yml", "prometheus"
    )
    # Snoozed before anything fires: gamma's silence must never be notified.
    snoozed = CliRunner().invoke(
        app,
        ["alerts", "snooze", "--match", f"provider={gamma}", "--for", "10m",
         "--reason", "planned maintenance", "--alertmanager", alertmanager.url,
         "--store", str(store.path), "--database", store.database, "--json"],
    )  # fmt: skip
    assert snoozed.exit_code == 0, snoozed.output
    silence_id = orjson.loads(snoozed.output)["silence_id"]
    settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g")
    run = GateRun(settings, rules, store, metrics, detectors)
    assert run.gate.ready.wait(60), "the gate did not join"
    watch.started_ns = time.time_ns()  # the feed starts now: nobody is overdue yet
    ticker = WatchTicker(watch).start()
    feed = LiveFeed(bootstrap, raw, [alpha, beta, gamma])
    try:
        run.wait_for(30)
        feed.on[beta] = feed.on[gamma] = False
        # beta's one more record is dated a day ahead: refused (origin.window), it must not
        # make beta look alive for a day, nor Prometheus's silence negative.
        ahead = feed.seq[beta]
        feed.seq[beta] += 1
        produce(bootstrap, raw, [(beta.encode(), orjson.dumps({
            "provider": beta, "instrument": "SYM001", "seq": ahead,
            "ts": int(time.time() * 1000) + 86_400_000, "type": "quote", "price": 100.0,
            "bid": 99.99, "ask": 100.01, "quantity": 1}))])  # fmt: skip
        direct = webhook.wait_for(provider=beta, alertname="provider.silent")
        assert direct[0]["status"] == "firing"
        assert direct[0]["labels"]["severity"] == "critical"
        assert "source" not in direct[0]["labels"]  # the direct push
        via_rule = webhook.wait_for(60, provider=beta, source="prometheus")
        assert via_rule[0]["labels"]["alertname"] == "provider.silent"
        assert via_rule[0]["labels"]["venue"] == "XLON"
        assert store.query("SELECT rule_id FROM {db}.dead_letters") == [
            {"rule_id": "origin.window"}
        ]  # the future record was refused, and the silence fired all the same
        fired = {a["labels"]["provider"] for a in prometheus_alerts(prom) if a["state"] == "firing"}
        assert beta in fired
        assert alpha not in fired
        # gamma is silent too, but snoozed: Alertmanager holds it, silenced, and tells no one.
        held = [
            a for a in AlertmanagerClient(alertmanager.url).alerts()
            if a["labels"].get("provider") == gamma
        ]  # fmt: skip
        assert held
        assert all(a["status"]["silencedBy"] == [silence_id] for a in held)
        feed.on[beta] = True
        deadline = time.monotonic() + 60
        while not any(
            a["status"] == "resolved" and "source" not in a["labels"]
            for _t, a in webhook.alerts(provider=beta)
        ):
            assert time.monotonic() < deadline, "no resolve after the provider resumed"
            time.sleep(0.05)
        assert webhook.alerts(provider=gamma) == []
        assert webhook.alerts(provider=alpha) == []
    finally:
        feed.stop.set()
        feed.thread.join(10)
        ticker.stop()
        run.stop()
        dispatcher.close()
        stop(prom)
        server.shutdown()
        server.server_close()
