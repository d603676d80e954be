"""Metrics: the gate's /metrics endpoint, scraped over HTTP, with bounded cardinality."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stampline.audit import ChdbStore
from stampline.collectors import (
    H_LATE,
    GateSettings,
    MetricsSettings,
    RecorderMetrics,
    SidecarMetrics,
)
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import now_ms, quote
from tests.helpers import GateRun, produce, read_all

NAMES = {
    "stampline_events_in",
    "stampline_events_out",
    "stampline_events_dead_lettered",
    "stampline_stage_latency_seconds",
    "stampline_origin_latency_seconds",
    "stampline_provider_latency_seconds",
    "stampline_consumer_lag",
    "stampline_batch_size",
    "stampline_store_write_seconds",
    "stampline_backpressure",
    "stampline_provider_last_event_timestamp_seconds",
    "stampline_provider_watermark_timestamp_seconds",
    "stampline_provider_clock_offset_seconds",
    "stampline_late_events",
}


def test_metrics_endpoint_serves_every_named_metric_with_capped_provider_labels(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """A scrape of /metrics shows events in/out/dead-lettered by provider and reason, latency
    histograms (origin to gate of accepted records only), lag, batch sizes, store writes,
    backpressure, last-event time, watermarks and clock offsets; a third provider past a cap
    of two is counted as "other"; a late event is counted and flagged in its headers."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    now = now_ms()
    records = [
        orjson.dumps(quote("alpha", 1, ts=now)),
        orjson.dumps(quote("bravo", 1, ts=now)),
        orjson.dumps(quote("alpha", 2, ts=now - 30_000)),  # 30 s behind alpha: late
        orjson.dumps(quote("charlie", 1, ts=now)),
        orjson.dumps(quote("alpha", 3, quantity=-5)),
    ]
    produce(bootstrap, raw, [(None, r) for r in records])
    metrics = SidecarMetrics(
        settings=MetricsSettings(enabled=True, port=0, address="127.0.0.1", max_label_values=2)
    )
    server = metrics.serve()
    port = server.server_port  # type: ignore[attr-defined]
    consumer = {"statistics.interval.ms": 200}
    settings = GateSettings(
        bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g", flush_interval_s=0.1, consumer=consumer
    )
    run = GateRun(settings, RuleSet.load([rules_file()]), store, metrics)
    try:
        run.wait_for(5)
        forwarded = read_all(bootstrap, clean, 4, idle_s=0.5)
        # Records are forwarded before their trail rows are written: scrape after the write.
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                body = resp.read().decode()
            if "stampline_store_write_seconds_count 0.0" not in body:
                break
            assert time.monotonic() < deadline, "the gate never wrote its trail"
            time.sleep(0.05)
    finally:
        run.stop()
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert set(families) >= NAMES, NAMES - set(families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("stampline_events_in_total", (("provider", "alpha"),))] == 3
    assert samples[("stampline_events_in_total", (("provider", "bravo"),))] == 1
    assert samples[("stampline_events_in_total", (("provider", "other"),))] == 1  # charlie
    assert samples[("stampline_events_out_total", (("provider", "alpha"),))] == 2
    key = (
        "stampline_events_dead_lettered_total",
        (("provider", "alpha"), ("reason", "quantity.non_negative")),
    )
    assert samples[key] == 1
    assert samples[("stampline_late_events_total", (("provider", "alpha"),))] == 1
    assert samples[("stampline_backpressure", ())] == 0
    assert samples[("stampline_store_write_seconds_count", ())] >= 1
    assert (
        samples[
            ("stampline_stage_latency_seconds_count", (("provider", "alpha"), ("stage", "gate")))
        ]
        == 3
    )
    # alpha's two forwarded records, one 30 s old; its refused record is left out.
    origin = (("provider", "alpha"),)
    assert samples[("stampline_origin_latency_seconds_count", origin)] == 2
    assert 30 <= samples[("stampline_origin_latency_seconds_sum", origin)] < 60
    # provider_latency's own: origin -> the broker's timestamp (the late one was born 30 s
    # before it reached the broker); the refused record is left out here too.
    assert samples[("stampline_provider_latency_seconds_count", origin)] == 2
    assert 30 <= samples[("stampline_provider_latency_seconds_sum", origin)] < 60
    assert not any(
        s.labels.get("provider") == "charlie" for f in families.values() for s in f.samples
    )
    late = [r for r in forwarded if r.header(H_LATE) is not None]
    assert len(late) == 1
    assert int(late[0].header(H_LATE) or b"0") == 25_000_000_000  # 30 s behind, 5 s allowed


def test_a_metrics_port_in_use_is_named_in_the_error() -> None:
    """A sidecar's or the recorder's metrics server on a port already bound fails with an
    error that names the host:port, not only "Address already in use"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = MetricsSettings(enabled=True, port=port, address="127.0.0.1")
        sidecar = SidecarMetrics(settings=settings)
        with pytest.raises(OSError, match=f"Address already in use: '127.0.0.1:{port}'"):
            sidecar.serve()
        with pytest.raises(OSError, match=f"Address already in use: '127.0.0.1:{port}'"):
            RecorderMetrics().serve(port)


def test_a_batch_histogram_exposes_what_prometheus_clients_histogram_does() -> None:
    """Values fed a batch at a time give the samples prometheus_client's Histogram gives for
    the same values observed one by one: the same buckets (a value on a bound counts in
    that bucket), counts and sums, per label set, in the text a scrape reads."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from stampline.collectors._metrics import BatchHistogram

    bounds = (0.001, 0.01, 0.1, 1.0)
    values = {
        ("gate", "alpha"): [0.0, 0.001, 0.0010001, 0.01, 0.05, 0.1, 1.0, 7.5, 1e300, -3.0],
        ("gate", "beta"): [0.5],
        ("tap", "alpha"): [],
    }
    one, many = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("x_seconds", "Doc.", ["stage", "provider"], buckets=bounds, registry=one)
    batched = BatchHistogram("x_seconds", "Doc.", ["stage", "provider"], bounds, many)
    for labels, vs in values.items():
        for v in vs:
            reference.labels(*labels).observe(v)
        batched.observe_many([labels], np.zeros(len(vs), np.intp), np.array(vs, np.float64))
    # and a second batch, every label set at once (one given no value makes no series)
    sets = [*values, ("tap", "nobody")]
    batched.observe_many(sets, np.arange(len(values)), np.full(len(values), 0.002))
    for labels in values:
        reference.labels(*labels).observe(0.002)

    def samples(
        registry: CollectorRegistry,
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    got, want = samples(many), samples(one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert (
        want[("x_seconds_bucket", (("le", "0.001"), ("provider", "alpha"), ("stage", "gate")))] == 3
    )
