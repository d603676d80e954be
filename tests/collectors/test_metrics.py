"""Metrics: the gate's /metrics endpoint, scraped over HTTP, with bounded cardinality."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from math import nan
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
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
    from prometheus_client import Histogram, generate_latest

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
    # batches over many label sets, new ones among old ones: the rows grow past their first size
    rng = np.random.default_rng(7)
    for first in (0, 10, 30):
        sets = [("gate", f"p{k}") for k in range(first, first + 25)]
        which = rng.integers(0, len(sets), 200)
        vs = rng.exponential(0.05, 200)
        batched.observe_many(sets, which, vs)
        for k, v in zip(which.tolist(), vs.tolist(), strict=True):
            reference.labels(*sets[k]).observe(v)

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
    assert len({dict(labels)["provider"] for _, labels in want}) > 16  # past the first rows


def test_capped_labels_in_one_pass_are_those_asked_one_by_one() -> None:
    """``many`` gives what a call per value gives: while the cap has room (new values take
    it, in order) and once it is full (known values keep their label, new ones are
    "other"), long values cut to the label length either way."""
    from stampline.collectors._metrics import MAX_LABEL_CHARS, OTHER, _Capped

    long = "x" * (MAX_LABEL_CHARS + 5)
    batches = [["a", "b", "a", long], ["c", "d", "e", "b", long, "f"], ["a", "g", long, "e"]]
    one, many = _Capped(4), _Capped(4)
    for values in batches:
        assert many.many(values) == [one(v) for v in values]
    assert many.many(["a", "zz", long]) == ["a", OTHER, long[:MAX_LABEL_CHARS]]


def test_provider_series_expose_what_prometheus_clients_counters_and_gauges_did() -> None:
    """The gate's per-provider series, fed a batch at a time, give the families, documents
    and samples that a ``Counter`` and a ``Gauge`` per metric gave when fed provider by
    provider: records in always, out and last event only for providers with a forwarded
    record, a watermark or clock offset only once one is known (the last one kept), and a
    ``_created`` sample beside every count."""
    from prometheus_client import Counter, Gauge, generate_latest

    from stampline.collectors._metrics import ProviderSeries

    one, many = CollectorRegistry(), CollectorRegistry()
    series = ProviderSeries(many)
    counters = {
        name: Counter(name, doc, ["provider"], registry=one) for name, doc, _ in series._COUNTERS
    }
    gauges = {name: Gauge(name, doc, ["provider"], registry=one) for name, doc, _ in series._GAUGES}
    events_in, events_out = counters.values()
    last_event, watermark, clock_offset = gauges.values()
    rng = np.random.default_rng(3)
    batches = [
        (["a", "b"], [3, 1], [2, 0], [1.5, nan], [0.25, nan]),
        (["b", "c", "a"], [2, 1, 1], [1, 0, 0], [nan, 7.0, 2.5], [-0.5, nan, nan]),
        # many providers at once, some new: the rows grow past their first size
        *(
            (
                [f"p{k}" for k in range(first, first + 20)],
                rng.integers(1, 9, 20).tolist(),
                rng.integers(0, 2, 20).tolist(),
                np.where(rng.random(20) < 0.3, nan, rng.random(20) * 1e9).tolist(),
                np.where(rng.random(20) < 0.3, nan, rng.normal(0, 1, 20)).tolist(),
            )
            for first in (0, 10, 25)
        ),
    ]
    for now, (providers, taken, forwarded, marks, offsets) in enumerate(batches, 1000):
        series.update(providers, np.array(taken), np.array(forwarded), marks, offsets, float(now))
        for p, t, f, w, o in zip(providers, taken, forwarded, marks, offsets, strict=True):
            events_in.labels(p).inc(t)
            if f:
                last_event.labels(p).set(now)
                events_out.labels(p).inc(f)
            if not np.isnan(w):
                watermark.labels(p).set(w)
            if not np.isnan(o):
                clock_offset.labels(p).set(o)

    def exposed(registry: CollectorRegistry) -> tuple[set[tuple[str, str, str]], dict[Any, float]]:
        families = list(text_string_to_metric_families(generate_latest(registry).decode()))
        return {(f.name, f.type, f.documentation) for f in families}, {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
        }

    (got_families, got), (want_families, want) = exposed(many), exposed(one)
    assert got_families == want_families
    assert {k for k in got if not k[0].endswith("_created")} == {
        k for k in want if not k[0].endswith("_created")
    }
    for key, value in want.items():
        if key[0].endswith("_created"):
            assert got[key] >= 1000, key  # the batch time of the first count, not the reference's
        else:
            assert got[key] == value, key
    assert ("stampline_events_out_total", (("provider", "b"),)) in got  # from its second batch
    assert ("stampline_events_out_total", (("provider", "c"),)) not in got  # never forwarded
    assert got[("stampline_provider_watermark_timestamp_seconds", (("provider", "a"),))] == 2.5
    assert got[("stampline_provider_clock_offset_seconds", (("provider", "a"),))] == 0.25
