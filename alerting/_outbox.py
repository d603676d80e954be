"""One sink's outbox: a bounded queue of notices and the thread that delivers them, retrying
with back-off until each is delivered or superseded.

A sink is a function given the queued notices, oldest first. It returns the notices it kept
back on purpose and how many seconds until they may go (see ``Dispatcher``'s Alertmanager
sink, which spaces one instance's transitions), or raises when it could not deliver: a plain
exception means none of the batch went, :class:`PartialDeliveryError` names the part still to go.
What did not go stays at the head of the queue, in order, and is tried again after a back-off
(``RETRY_FIRST_S`` doubling up to ``retry_max_s``) for as long as the process runs. The queue
holds at most ``max_queue`` notices: when full, the oldest queued is dropped, counted
(``stampline_alert_dropped_total{sink}``) and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from stampline.alerting._metrics import AlertMetrics
from stampline.alerting._notice import Notice
from stampline.alerting.exceptions import AlertDeliveryError

log = logging.getLogger("stampline.alerting")

RETRY_FIRST_S = 0.5
"""The first wait before a failed delivery is tried again; it doubles on each failure."""
RETRY_MAX_S = 30.0
"""The longest wait between two tries of a failed delivery (by default)."""

Waiting = tuple[list[Notice], float]
"""What a sink kept back on purpose (in order), and the seconds until it may go."""
SendFn = Callable[[list[Notice]], Waiting]


class PartialDeliveryError(AlertDeliveryError):
    """A sink delivered part of a batch; ``waiting`` are the notices still to go."""

    def __init__(self, reason: str, waiting: list[Notice]) -> None:
        super().__init__(reason)
        self.waiting = waiting


class Outbox:
    """One sink's bounded queue and delivery thread."""

    def __init__(
        self,
        name: str,
        send: SendFn,
        metrics: AlertMetrics | None,
        max_queue: int,
        *,
        retry_max_s: float = RETRY_MAX_S,
        every: tuple[float, Callable[[], None]] | None = None,
    ) -> None:
        self.name = name
        self._send = send
        self._metrics = metrics
        self._queue: deque[Notice] = deque()
        self._max = max_queue
        self._retry_max_s = retry_max_s
        self._every = every
        self._cv = threading.Condition()
        self._busy = False
        self._in_flight = 0  # notices the thread is delivering now
        self._stop = False
        self._fresh = False  # notices offered since the last try
        self._not_before = 0.0  # back-off: no try before this (monotonic)
        self._kept_until: float | None = None  # what the sink kept back may go then
        self._delay = RETRY_FIRST_S
        self._dropping = False  # dropped since the last delivery (logged once)
        self.sent = 0  # notices delivered (or superseded by a delivered one)
        self.failures = 0  # failed tries (each retried)
        self.dropped = 0  # notices pushed out of the full queue
        self.lost = 0  # notices still queued when the outbox closed
        self._thread = threading.Thread(target=self._run, name=f"alert-{name}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Notices waiting to be delivered."""
        with self._cv:
            return len(self._queue) + self._in_flight

    def offer(self, notices: Sequence[Notice]) -> None:
        with self._cv:
            self._queue.extend(notices)
            self._trim()
            self._fresh = True
            self._cv.notify_all()

    def _trim(self) -> None:
        over = min(len(self._queue), len(self._queue) + self._in_flight - self._max)
        if over <= 0:
            return
        for _ in range(over):
            self._queue.popleft()
        self.dropped += over
        if self._metrics is not None:
            self._metrics.dropped.labels(self.name).inc(over)
        if not self._dropping:
            self._dropping = True
            log.warning("alert queue full, dropping the oldest sink=%s max_queue=%d",
                        self.name, self._max)  # fmt: skip

    def _ready(self, now: float) -> bool:
        if not self._queue or now < self._not_before:
            return False
        return self._fresh or self._kept_until is None or now >= self._kept_until

    def _run(self) -> None:
        interval = self._every[0] if self._every else None
        due = time.monotonic() + interval if interval else None
        while True:
            with self._cv:
                while not self._stop:
                    now = time.monotonic()
                    if self._ready(now) or (due is not None and now >= due and not self._queue):
                        break
                    wake = [t for t in (due, self._not_before, self._kept_until) if t and t > now]
                    self._cv.wait(min(wake) - now if wake else None)
                if self._stop:
                    return
                batch: list[Notice] = []
                if self._ready(time.monotonic()):
                    batch = list(self._queue)
                    self._queue.clear()
                    self._in_flight = len(batch)
                self._fresh = False
                self._busy = True
            try:
                if batch:
                    self._deliver(batch)
                # Re-sends keep delivered alerts alive; while anything waits they would only
                # run ahead of it, and the waiting notices are delivered first.
                if due is not None and time.monotonic() >= due and not self.queued:
                    due = time.monotonic() + (interval or 0.0)
                    assert self._every is not None
                    self._guarded(self._every[1])
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _deliver(self, batch: list[Notice]) -> None:
        kept_until: float | None = None
        try:
            waiting, after_s = self._send(batch)
            if waiting:
                kept_until = time.monotonic() + after_s
        except Exception as exc:
            waiting = exc.waiting if isinstance(exc, PartialDeliveryError) else batch
            self._failed(len(waiting), exc)
        else:
            self._delay = RETRY_FIRST_S
            self._dropping = False
        self.sent += len(batch) - len(waiting)
        with self._cv:
            self._kept_until = kept_until
            self._in_flight = 0
            self._queue.extendleft(reversed(waiting))
            self._trim()

    def _failed(self, notices: int, exc: Exception) -> None:
        self.failures += 1
        if self._metrics is not None:
            self._metrics.delivery_failures.labels(self.name).inc()
        wait = min(self._delay, self._retry_max_s)
        self._delay = wait * 2
        self._not_before = time.monotonic() + wait
        log.warning("alert delivery failed, retrying sink=%s notices=%d retry_in_s=%.1f error=%s",
                    self.name, notices, wait, exc)  # fmt: skip

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            log.warning("alert re-send failed sink=%s error=%s", self.name, exc)

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything offered so far was delivered; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, timeout_s: float) -> None:
        """Deliver what it can within ``timeout_s``, then stop; what is left is logged."""
        self.flush(timeout_s)
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout_s)
        with self._cv:
            self.lost = len(self._queue) + self._in_flight
        if self.lost:
            log.warning("alert notices undelivered at close sink=%s notices=%d",
                        self.name, self.lost)  # fmt: skip
