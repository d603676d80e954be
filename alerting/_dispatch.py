"""Delivery: every transition goes to Alertmanager, the alerts topic, the store's history and
the metrics, without ever making the detectors (and so the gate) wait.

The detectors call the :class:`Dispatcher` with transitions; it renders them, updates the
metrics in place (cheap), and offers them to one :class:`~alerting._outbox.Outbox` per sink:
a bounded queue drained by its own daemon thread, which retries a failed delivery with
back-off until it goes or is superseded (see there).

- Alertmanager: one instance's transitions are posted in order. When several waited (an
  outage), consecutive firings collapse into the newest (it says all the older did) and the
  rest are posted ``spacing_s`` apart, so Alertmanager notifies each: an alert that fired and
  resolved during an outage arrives as a firing, then a resolve. The worker also re-sends
  every firing alert each ``resend_s`` (with ``endsAt`` ahead), as Prometheus does, so
  Alertmanager keeps it active; a resolve is sent with ``endsAt`` = the resolve time.
- Alerts topic: a notice counts as sent on its delivery report, never before.
- Store: the history rows, one insert per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaException

from stampline.alerting._alertmanager import AlertmanagerClient, am_alert
from stampline.alerting._definitions import AlertsFile
from stampline.alerting._history import write_history
from stampline.alerting._lifecycle import Transition
from stampline.alerting._metrics import AlertMetrics
from stampline.alerting._notice import Notice, render
from stampline.alerting._outbox import RETRY_MAX_S, Outbox, PartialDeliveryError, Waiting
from stampline.audit import Store

log = logging.getLogger("stampline.alerting")


class _AlertmanagerSink:
    """Posts notices to Alertmanager, one transition per instance at a time (see above)."""

    def __init__(
        self, client: AlertmanagerClient, resend_ns: int, spacing_s: float, clock: Callable[[], int]
    ) -> None:
        self.client = client
        self.resend_ns = resend_ns
        self.spacing_s = spacing_s
        self.clock = clock
        self._spaced_until: dict[str, float] = {}  # fingerprint -> its next may go then

    def __call__(self, batch: list[Notice]) -> Waiting:
        now = time.monotonic()
        self._spaced_until = {fp: t for fp, t in self._spaced_until.items() if t > now}
        post: list[Notice] = []
        posted_at: dict[str, int] = {}  # fingerprint -> its index in post
        held: set[str] = set()
        waiting: list[Notice] = []
        for n in batch:
            fp, state = n.fingerprint, n.transition.state
            if state == "pending":
                continue  # ours alone: Alertmanager hears of an alert once it fires
            i = posted_at.get(fp)
            if fp in held or fp in self._spaced_until:
                held.add(fp)
                waiting.append(n)
            elif i is None:
                posted_at[fp] = len(post)
                post.append(n)
            elif state == "firing" and post[i].transition.state == "firing":
                post[i] = n  # superseded: the newer firing says all the older one did
            else:
                held.add(fp)
                waiting.append(n)
        at = self.clock()
        self.client.post_alerts([am_alert(n, at, self.resend_ns) for n in post])
        for fp in held & posted_at.keys():
            self._spaced_until[fp] = now + self.spacing_s
        after = min((self._spaced_until[fp] for fp in held), default=now)
        return waiting, max(0.0, after - now)


class _TopicSink:
    """Produces notices to the alerts topic; sent only once the broker acknowledged them."""

    def __init__(self, producer: Any, topic: str) -> None:  # a confluent_kafka Producer
        self.producer = producer
        self.topic = topic

    def __call__(self, batch: list[Notice]) -> Waiting:
        failed: dict[int, str] = {}  # index in batch -> the delivery error
        reported: set[int] = set()

        def report(i: int) -> Callable[[Any, Any], None]:
            def on_delivery(err: Any, _msg: Any) -> None:
                reported.add(i)
                if err is not None:
                    failed[i] = str(err)

            return on_delivery

        for i, n in enumerate(batch):
            value, key = orjson.dumps(n.to_json()), n.fingerprint.encode()
            while True:
                try:
                    self.producer.produce(self.topic, value, key, on_delivery=report(i))
                    break
                except BufferError:  # the local queue is full: let it drain
                    self.producer.poll(0.1)
                except KafkaException as exc:  # refused at once: tried again with the rest
                    reported.add(i)
                    failed[i] = str(exc)
                    break
        # The producer retries on its own until message.timeout.ms; every message gets
        # exactly one report, delivered or failed.
        while len(reported) < len(batch):
            self.producer.poll(0.1)
        if failed:
            first = failed[min(failed)]
            raise PartialDeliveryError(
                f"{len(failed)} of {len(batch)} not delivered: {first}",
                [batch[i] for i in sorted(failed)],
            )
        return [], 0.0


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
        spacing_s: float = 30.0,
        retry_max_s: float = RETRY_MAX_S,
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
        self.workers: list[Outbox] = []
        self.alertmanager = alertmanager
        if alertmanager is not None:
            sink = _AlertmanagerSink(alertmanager, self.resend_ns, spacing_s, clock)
            self.workers.append(
                Outbox(
                    "alertmanager",
                    sink,
                    metrics,
                    max_queue,
                    retry_max_s=retry_max_s,
                    every=(resend_s, self._resend),
                )
            )
        if topic is not None:
            self.workers.append(
                Outbox("topic", _TopicSink(*topic), metrics, max_queue, retry_max_s=retry_max_s)
            )
        if store is not None:

            def history(batch: list[Notice]) -> Waiting:
                write_history(store, batch)
                return [], 0.0

            self.workers.append(
                Outbox("store", history, metrics, max_queue, retry_max_s=retry_max_s)
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
