"""The clock-error bound, read again while a sidecar runs.

A gate reads its bound at start (``stampline.wiring.clock_bound``). With
``gate.clock_error_source: chrony`` the bound moves with chrony's offset, dispersion and
delay, so it is read again every ``gate.clock_error_refresh`` (default 30 s) and the
sidecar's ``stampline_clock_error_bound_seconds{host, stage}`` gauge follows it: the
``clock_error`` alert (a Prometheus rule over that gauge) sees an excursion during a run,
not only the value at start. A configured bound never changes, so it is not re-read.

Each read is also handed to ``on_read``: the gate stamps with the bound from its next batch
on (``Gate.set_clock_bound``), so its stamps and trail rows carry the bound in force when the
record was taken in, not the one read at start.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from stampline.audit import ClockBound, ClockSource, read_clock_bound
from stampline.collectors import SidecarMetrics

log = logging.getLogger("stampline.clock")


class ClockBoundRefresher:
    """Reads the bound every ``interval_s`` on a daemon thread and sets the gauge."""

    def __init__(
        self,
        source: ClockSource,
        configured_ns: int,
        metrics: SidecarMetrics,
        stage: str,
        interval_s: float,
        *,
        first: ClockBound | None = None,
        read: Callable[[ClockSource, int], ClockBound] = read_clock_bound,
        on_read: Callable[[ClockBound], None] | None = None,
    ) -> None:
        self.source = source
        self.configured_ns = configured_ns
        self.metrics = metrics
        self.interval_s = interval_s
        self.reads = 0
        self.last = first
        self._read = read
        self._on_read = on_read
        self._gauge = metrics.clock_error_bound.labels(socket.gethostname(), stage)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock-bound", daemon=True)

    def refresh(self) -> ClockBound:
        """Read the bound once, set the gauge; a change to or from a fallback is logged (and
        a new fallback counted), not every read."""
        bound = self._read(self.source, self.configured_ns)
        self.reads += 1
        was = self.last.kind if self.last is not None else None
        if bound.kind == "fallback" and was != "fallback":
            log.warning(
                "clock-error bound: %s; the gauge shows the configured bound clock_error_ns=%d",
                bound.reason,
                bound.bound_ns,
            )
            self.metrics.clock_bound_fallbacks.inc()
        elif bound.kind != "fallback" and was == "fallback":
            log.info("clock-error bound: chrony answers again bound_ns=%d", bound.bound_ns)
        self._gauge.set(bound.bound_ns / 1e9)
        if self._on_read is not None:
            self._on_read(bound)
        self.last = bound
        return bound

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:  # a failed read must not end the refreshing
                log.exception("clock-error bound refresh failed")

    def start(self) -> ClockBoundRefresher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


def refresher_for(
    source: ClockSource,
    configured_ns: int,
    interval_ns: int,
    metrics: SidecarMetrics,
    stage: str,
    first: ClockBound | None = None,
    on_read: Callable[[ClockBound], None] | None = None,
) -> ClockBoundRefresher | None:
    """A started refresher when the bound can change (chrony, a positive interval), else
    None."""
    if source != "chrony" or interval_ns <= 0:
        return None
    return ClockBoundRefresher(
        source, configured_ns, metrics, stage, interval_ns / 1e9, first=first, on_read=on_read
    ).start()
