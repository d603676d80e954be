"""Prometheus metrics for the sidecars, on an explicit registry (never the global one).

Cardinality is bounded: labels are per provider (and per rule for dead letters); a label
value past ``max_label_values`` distinct values of one instrument is folded into
``"other"``. Per-instrument series exist only when ``per_instrument`` is on, with the same
cap, so a feed of 50,000 symbols cannot blow up the scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from math import inf, nan
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

OTHER = "other"
MAX_LABEL_CHARS = 256  # a label value longer than this is cut: a scrape must stay small

# Stage and store latencies of an inline sidecar live between ~10 µs and seconds.
_LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000)
# Origin to ingestion spans a colocated feed's sub-millisecond to a vendor's minutes.
_ORIGIN_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Where to serve ``/metrics`` and how many label values each instrument may take."""

    enabled: bool = False
    port: int = 9464
    address: str = "0.0.0.0"
    per_instrument: bool = False
    max_label_values: int = 1000


class _Capped:
    """Label values seen so far; past the cap, new ones become ``"other"``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        value = value[:MAX_LABEL_CHARS]
        if value in self._seen:
            return value
        if len(self._seen) >= self.cap:  # full for good: no lock (a gate asks per provider)
            return OTHER
        with self._lock:
            if len(self._seen) < self.cap:
                self._seen.add(value)
                return value
        return OTHER

    def many(self, values: Iterable[str]) -> list[str]:
        """``self(value)`` of each value. Once the cap is full, in one pass with no call per
        value: a gate asks for every distinct provider of every batch."""
        seen = self._seen
        if len(seen) < self.cap:
            return list(map(self, values))
        cut = [value[:MAX_LABEL_CHARS] for value in values]
        return [value if value in seen else OTHER for value in cut]


class _Rows:
    """Label sets numbered in order of first appearance, and arrays holding one row for each
    (grown by doubling, as a list grows): a batch updates every set it holds with one
    indexed NumPy operation, not a call per set. Callers hold their own lock."""

    def __init__(self, columns: dict[str, tuple[tuple[int, ...], float]]) -> None:
        # column name -> (the shape of one row, the value of a row not yet written)
        self._columns = columns
        self.index: dict[tuple[str, ...], int] = {}
        self.arrays = {
            name: np.full((0, *shape), fill, np.float64) for name, (shape, fill) in columns.items()
        }

    def __len__(self) -> int:
        return len(self.index)

    def of(self, label_sets: Iterable[tuple[str, ...]]) -> npt.NDArray[np.intp]:
        """The row of each label set, new rows for sets not seen before."""
        sets = list(label_sets)
        rows = list(map(self.index.get, sets))  # C-level: almost every set is known
        if None in rows:
            rows = [self._row(s) if r is None else r for s, r in zip(sets, rows, strict=True)]
        return np.array(rows, np.intp)

    def _row(self, labels: tuple[str, ...]) -> int:
        row = self.index.get(labels)
        if row is None:
            row = self.index[labels] = len(self.index)
            if row == len(next(iter(self.arrays.values()))):  # full
                for name, (shape, fill) in self._columns.items():
                    grown = np.full((max(16, 2 * row), *shape), fill, np.float64)
                    grown[:row] = self.arrays[name]
                    self.arrays[name] = grown
        return row


class BatchHistogram(Collector):
    """A labelled histogram fed a batch of values at a time.

    prometheus_client's ``Histogram`` takes one Python call per value (1.7 µs with its label
    lookup here): a gate observing three latencies per record spent more on its metrics than
    on judging the record. This one counts a whole batch's values per label set in one NumPy
    pass, and is exposed as a ``Histogram`` is (``_bucket`` with ``le``, ``_count``,
    ``_sum``), with the same bucket rule: a value counts in the first bucket whose upper
    bound it does not exceed.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._bounds = np.array([*buckets, inf], np.float64)
        # the `le` labels exactly as prometheus_client writes a Histogram's (its own helper)
        self._le = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._rows = _Rows({"counts": ((len(self._bounds),), 0.0), "sums": ((), 0.0)})
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(
        self,
        label_sets: Sequence[tuple[str, ...]],
        which: npt.NDArray[np.intp],
        values: npt.NDArray[np.float64],
    ) -> None:
        """Observe ``values[i]`` under ``label_sets[which[i]]`` (each set's values in order of
        the label names): the buckets of every value in one pass, then one update of every
        set's row, so a batch of a thousand providers costs no more passes than a batch of
        one."""
        if not len(values):
            return
        width = len(self._bounds)
        at = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(which * width + at, minlength=len(label_sets) * width)
        counts = counts.reshape(len(label_sets), width)
        totals = np.bincount(which, weights=values, minlength=len(label_sets))
        present = np.unique(which)
        with self._lock:
            # rows are distinct (label sets are), so a plain indexed add counts each once
            rows = self._rows.of(map(label_sets.__getitem__, present.tolist()))
            self._rows.arrays["counts"][rows] += counts[present]
            self._rows.arrays["sums"][rows] += totals[present]

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            n = len(self._rows)
            cumulative = np.cumsum(self._rows.arrays["counts"][:n], axis=1).tolist()
            totals = self._rows.arrays["sums"][:n].tolist()
            labels = list(self._rows.index)
        for label_set, buckets, total in zip(labels, cumulative, totals, strict=True):
            family.add_metric(list(label_set), list(zip(self._le, buckets, strict=True)), total)
        yield family


class ProviderSeries(Collector):
    """The gate's per-provider counts and times, fed a batch at a time and read at a scrape.

    With prometheus_client's ``Counter`` and ``Gauge`` each provider of a batch cost five
    calls, each checking and locking, and a first call for a provider built a child object
    per metric: more than half of the gate's metrics work with a thousand providers a batch
    (docs/metrics.md). Here a batch is one indexed NumPy update, and the families are
    written as those instruments write them (``_total`` and ``_created`` for the counters).
    A series appears when the instrument's would: ``events_in`` with a provider's first
    record, ``events_out`` and ``last_event`` with its first forwarded one, the watermark
    and the clock offset with their first value.
    """

    _COUNTERS = (
        ("stampline_events_in", "Records taken in, by provider.", "taken"),
        ("stampline_events_out", "Records forwarded to the clean topic.", "forwarded"),
    )
    _GAUGES = (
        (
            "stampline_provider_last_event_timestamp_seconds",
            "Wall-clock time the last accepted (forwarded) record of a provider was taken in.",
            "last_event",
        ),
        (
            "stampline_provider_watermark_timestamp_seconds",
            "Event-time watermark of a provider: newest origin minus the allowed lateness.",
            "watermark",
        ),
        (
            "stampline_provider_clock_offset_seconds",
            "Estimated ingestion - origin offset of a provider's clock "
            "(minimum over a window: transit time plus skew; negative = provider clock ahead).",
            "clock_offset",
        ),
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        # NaN: not written yet (no series); a counter's creation time is its first count's
        self._rows = _Rows(
            {
                name: ((), 0.0 if name in ("taken", "forwarded") else nan)
                for name in (
                    "taken", "forwarded", "taken_created", "forwarded_created",
                    "last_event", "watermark", "clock_offset",
                )
            }
        )  # fmt: skip
        self._lock = threading.Lock()
        registry.register(self)

    def update(
        self,
        providers: Sequence[str],
        taken: npt.NDArray[np.int64],
        forwarded: npt.NDArray[np.int64],
        watermarks: Sequence[float],
        offsets: Sequence[float],
        now: float,
    ) -> None:
        """Count one batch: for each provider (label values, distinct) the records taken and
        forwarded, and its watermark and clock offset now (NaN: none yet, the last kept)."""
        with self._lock:
            rows = self._rows.of((p,) for p in providers)
            a = self._rows.arrays
            for counted, created, counts in (
                ("taken", "taken_created", taken),
                ("forwarded", "forwarded_created", forwarded),
            ):
                a[counted][rows] += counts
                first = rows[np.isnan(a[created][rows]) & (counts > 0)]
                a[created][first] = now
            a["last_event"][rows[forwarded > 0]] = now
            for name, values in (("watermark", watermarks), ("clock_offset", offsets)):
                new = np.asarray(values, np.float64)
                known = ~np.isnan(new)
                a[name][rows[known]] = new[known]

    def describe(self) -> Iterator[Metric]:
        for name, doc, _ in self._COUNTERS:
            yield CounterMetricFamily(name, doc, labels=["provider"])
        for name, doc, _ in self._GAUGES:
            yield GaugeMetricFamily(name, doc, labels=["provider"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            n = len(self._rows)
            providers = [labels[0] for labels in self._rows.index]
            a = {name: column[:n].tolist() for name, column in self._rows.arrays.items()}
        for name, doc, column in self._COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=["provider"])
            created = a[f"{column}_created"]
            for provider, value, since in zip(providers, a[column], created, strict=True):
                if since == since:  # not NaN: counted at least once
                    counter.add_metric([provider], value, created=since)
            yield counter
        for name, doc, column in self._GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=["provider"])
            for provider, value in zip(providers, a[column], strict=True):
                if value == value:
                    gauge.add_metric([provider], value)
            yield gauge


class SidecarMetrics:
    """Every instrument the gate and the tap export. Safe to share between threads."""

    def __init__(
        self, registry: CollectorRegistry | None = None, settings: MetricsSettings | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.settings = settings or MetricsSettings()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        cap = self.settings.max_label_values
        self.provider = _Capped(cap)
        self.rule = _Capped(cap)
        self.instrument = _Capped(cap)
        r = self.registry
        # events in and out, last event, watermark and clock offset, by provider
        self.providers = ProviderSeries(r)
        self.dead_lettered = Counter(
            "stampline_events_dead_lettered",
            "Records sent to the dead-letter topic, by provider and rule (the reason).",
            ["provider", "reason"],
            registry=r,
        )
        self.warned = Counter(
            "stampline_events_warned",
            "Records forwarded although they broke a warn rule, by provider and rule.",
            ["provider", "rule"],
            registry=r,
        )
        self.duplicates_suppressed = Counter(
            "stampline_recovery_duplicates_suppressed",
            "Re-read records found already forwarded before a crash, not produced again.",
            registry=r,
        )
        # The per-record latencies are fed a batch at a time (BatchHistogram).
        self.stage_latency = BatchHistogram(
            "stampline_stage_latency_seconds",
            "Time an event spent in a stage (stamp out - in).",
            ["stage", "provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.origin_latency = BatchHistogram(
            "stampline_origin_latency_seconds",
            "Origin to ingestion (ingest - origin time) of the records a gate accepted, by "
            "provider; refused records are left out (their origin time is not to be trusted).",
            ["provider"],
            buckets=_ORIGIN_BUCKETS,
            registry=r,
        )
        # What provider_latency alerts on: the provider's part alone, so a gate's backlog
        # (the record waiting on the broker) never reads as a slow provider.
        self.provider_latency = BatchHistogram(
            "stampline_provider_latency_seconds",
            "Origin to the record's broker timestamp (the provider's part: born -> on the "
            "broker, on the broker's clock with LogAppendTime, the producer's with "
            "CreateTime) of the records a gate accepted, by provider; origin to ingestion "
            "for a record without a broker timestamp. Refused records are left out.",
            ["provider"],
            buckets=_ORIGIN_BUCKETS,
            registry=r,
        )
        self.instrument_latency = (
            BatchHistogram(
                "stampline_instrument_latency_seconds",
                "Stage time per instrument (only when per_instrument is on; capped).",
                ["stage", "instrument"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            )
            if self.settings.per_instrument
            else None
        )
        self.consumer_lag = Gauge(
            "stampline_consumer_lag",
            "Records behind the partition end, from the Kafka client's statistics.",
            ["topic", "partition"],
            registry=r,
        )
        self.batch_size = Histogram(
            "stampline_batch_size",
            "Records per consumed batch.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_write = Histogram(
            "stampline_store_write_seconds",
            "Time to write one batch of trail rows.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "stampline_store_write_errors", "Trail writes that failed and were retried.", registry=r
        )
        self.backpressure = Gauge(
            "stampline_backpressure",
            "1 while consumption is paused because the pipeline behind it is full.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "stampline_queue_depth", "Items in a bounded internal queue.", ["queue"], registry=r
        )
        self.late = Counter(
            "stampline_late_events",
            "Events whose origin was behind their provider's watermark (flagged, not dropped).",
            ["provider"],
            registry=r,
        )
        self.lateness = Histogram(
            "stampline_lateness_seconds",
            "How far behind the watermark late events were.",
            ["provider"],
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 30, 60, 300, 3600),
            registry=r,
        )
        self.clock_bound_fallbacks = Counter(
            "stampline_clock_bound_fallbacks",
            "Times chrony was asked for the clock-error bound and could not answer, so the "
            "configured bound was used (the trail records each such row as a fallback).",
            registry=r,
        )
        self.clock_error_bound = Gauge(
            "stampline_clock_error_bound_seconds",
            "The clock-error bound this sidecar stamps with (the clock_error alert reads it).",
            ["host", "stage"],
            registry=r,
        )
        self.tap_observations = Counter(
            "stampline_tap_observations", "Observations recorded by a tap.", ["topic"], registry=r
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: the gate asks for a few dozen a batch, and
        prometheus_client checks and locks at each ask (label values are capped, so this
        holds no more children than the metric does)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def serve(self) -> object:
        """Serve ``/metrics`` on the configured address and port; returns the server.

        Raises:
            OSError: the address cannot be bound; its ``filename`` is ``host:port``.
        """
        return serve_metrics(self.registry, self.settings.address, self.settings.port)


def serve_metrics(registry: CollectorRegistry, address: str, port: int) -> object:
    """Serve ``registry`` on ``address:port``; a bind failure names that address (``Address
    already in use: '127.0.0.1:9464'``), which the socket's own error does not."""
    try:
        server, _thread = start_http_server(port, address, registry=registry)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, f"{address}:{port}") from exc
    return server
