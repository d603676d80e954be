"""Delivery: every transition goes to Alertmanager, the alerts topic, the store's history and
the metrics, without ever making the detectors (and so the gate) wait.

The detectors call the :class:`Dispatcher` with transitions; it renders them, updates the
metrics in place (cheap), and offers them to one bounded queue per sink, each drained by its
own daemon thread. A full queue drops its oldest notice and counts it; a sink that fails is
retried a few times, then the failure is counted and logged. Alertmanager's worker also
re-sends every firing alert each ``resend_s`` (with ``endsAt`` ahead), as Prometheus does,
so Alertmanager keeps it active; a resolve is sent with ``endsAt`` = the resolve time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from stampline.alerting._alertmanager import AlertmanagerClient, am_alert
from stampline.alerting._definitions import AlertsFile
from stampline.alerting._history import write_history
from stampline.alerting._lifecycle import Transition
from stampline.alerting._metrics import AlertMetrics
from stampline.alerting._notice import Notice, render
from stampline.audit import Store

log = logging.getLogger("stampline.alerting")

SendFn = Callable[[list[Notice]], None]


class _Worker:
    """One sink's bounded queue and thread."""

    def __init__(
        self,
        name: str,
        send: SendFn,
        metrics: AlertMetrics | None,
        max_queue: int,
        retries: int = 3,
        every: tuple[float, Callable[[], None]] | None = None,
    ) -> None:
        self.name = name
        self._send = send
        self._metrics = metrics
        self._queue: deque[Notice] = deque()
        self._max = max_queue
        self._retries = retries
        self._every = every
        self._cv = threading.Condition()
        self._busy = False
        self._stop = False
        self.sent = 0
        self.failures = 0  # batches given up on
        self.lost = 0  # notices in them
        self.dropped = 0  # notices pushed out of the full queue
        self._thread = threading.Thread(target=self._run, name=f"alert-{name}", daemon=True)
        self._thread.start()

    def offer(self, notices: Sequence[Notice]) -> None:
        with self._cv:
            for n in notices:
                if len(self._queue) >= self._max:
                    self._queue.popleft()
                    self.dropped += 1
                    if self._metrics is not None:
                        self._metrics.dropped.labels(self.name).inc()
                self._queue.append(n)
            self._cv.notify()

    def _run(self) -> None:
        interval = self._every[0] if self._every else None
        due = time.monotonic() + interval if interval else None
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    timeout = max(0.0, due - time.monotonic()) if due is not None else None
                    if not self._cv.wait(timeout) and due is not None:
                        break
                if self._stop and not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
                self._busy = True
            try:
                if batch:
                    self._deliver(batch)
                if self._every is not None and due is not None and time.monotonic() >= due:
                    due = time.monotonic() + self._every[0]
                    self._guarded(self._every[1])
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _deliver(self, batch: list[Notice]) -> None:
        delay = 0.05
        for attempt in range(self._retries):
            try:
                self._send(batch)
                self.sent += len(batch)
                return
            except Exception as exc:
                if attempt + 1 == self._retries:
                    self.failures += 1
                    self.lost += len(batch)
                    if self._metrics is not None:
                        self._metrics.delivery_failures.labels(self.name).inc()
                    log.warning("alert delivery failed sink=%s notices=%d error=%s",
                                self.name, len(batch), exc)  # fmt: skip
                    return
                time.sleep(delay)
                delay *= 4

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            log.warning("alert re-send failed sink=%s error=%s", self.name, exc)

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything offered so far was handled; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, timeout_s: float) -> None:
        self.flush(timeout_s)
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout_s)


class Dispatcher:
    """Fans transitions out to the configured sinks. Call it with a list of transitions
    (it is the detectors' ``deliver``); it returns at once."""

    def __init__(
        self,
        definitions: AlertsFile,
        *,
        alertmanager: AlertmanagerClient | None = None,
        store: Store | None = None,
        topic: tuple[Any, str] | None = None,  # (a confluent_kafka Producer, topic name)
        metrics: AlertMetrics | None = None,
        source: str = "",
        resend_s: float = 30.0,
        max_queue: int = 10_000,
        keep: int = 10_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.definitions = definitions
        self.metrics = metrics
        self.source = source
        self.clock = clock
        self.resend_ns = int(resend_s * 1e9)
        self.firing: dict[str, Notice] = {}  # fingerprint -> the firing notice
        self.recent: deque[Notice] = deque(maxlen=keep)  # every transition, newest last
        self._lock = threading.Lock()
        self.workers: list[_Worker] = []
        self.alertmanager = alertmanager
        if alertmanager is not None:
            self.workers.append(
                _Worker(
                    "alertmanager",
                    self._to_alertmanager,
                    metrics,
                    max_queue,
                    every=(resend_s, self._resend),
                )
            )
        if topic is not None:
            producer, name = topic

            def produce(batch: list[Notice]) -> None:
                for n in batch:
                    producer.produce(name, orjson.dumps(n.to_json()), n.fingerprint.encode())
                producer.flush(10)

            self.workers.append(_Worker("topic", produce, metrics, max_queue))
        if store is not None:
            self.workers.append(
                _Worker("store", lambda batch: write_history(store, batch), metrics, max_queue)
            )

    def __call__(self, transitions: list[Transition]) -> None:
        notices = [render(self.definitions, t, self.source) for t in transitions]
        with self._lock:
            for n in notices:
                self.recent.append(n)
                if n.transition.state == "firing":
                    self.firing[n.fingerprint] = n
                elif n.transition.state == "resolved":
                    self.firing.pop(n.fingerprint, None)
        if self.metrics is not None:
            self.metrics.update(notices)
        for w in self.workers:
            w.offer(notices)

    def _to_alertmanager(self, batch: list[Notice]) -> None:
        assert self.alertmanager is not None
        now = self.clock()
        # Pending is ours alone: Alertmanager hears of an alert once it fires.
        alerts = [
            am_alert(n, now, self.resend_ns) for n in batch if n.transition.state != "pending"
        ]
        self.alertmanager.post_alerts(alerts)

    def _resend(self) -> None:
        assert self.alertmanager is not None
        with self._lock:
            firing = list(self.firing.values())
        now = self.clock()
        self.alertmanager.post_alerts([am_alert(n, now, self.resend_ns) for n in firing])

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every sink handled what it was offered."""
        return all(w.flush(timeout_s) for w in self.workers)

    def close(self, timeout_s: float = 10.0) -> None:
        for w in self.workers:
            w.close(timeout_s)
