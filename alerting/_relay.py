"""Provider facts between processes: each gate publishes its per-batch facts to the facts
topic; the one :class:`~alerting.ProviderWatch` of the deployment reads them all.

Publishing never blocks the gate: a full local queue drops the facts and counts them, and so
does a failed delivery report (the producer retried until ``message.timeout.ms``): the next
batch's facts carry the provider's newest origin again, so a drop delays a resolve by one
batch at most; silence is judged by the watch's clock regardless. Facts count as published
only on their delivery report.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition

from stampline.alerting._detectors import ProviderFacts
from stampline.alerting._watch import ProviderWatch

log = logging.getLogger("stampline.alerting")


class FactsPublisher:
    """A gate's facts sink: ``publisher(facts)`` produces one small JSON record."""

    def __init__(self, bootstrap: str, topic: str, extra: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.dropped = 0  # refused by the local queue, or reported undelivered
        self.published = 0  # acknowledged by the broker
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 0,  # facts drive a sub-second alert; do not wait to batch them
                "queue.buffering.max.messages": 10_000,
                **(extra or {}),
            }
        )

    def __call__(self, facts: ProviderFacts) -> None:
        try:
            self._producer.produce(
                self.topic, orjson.dumps(facts.to_json()), on_delivery=self._report
            )
        except (BufferError, KafkaException) as exc:
            self.dropped += 1
            log.warning("provider facts dropped topic=%s error=%s", self.topic, exc)
        self._producer.poll(0)

    def _report(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.published += 1
            return
        self.dropped += 1
        log.warning("provider facts not delivered topic=%s error=%s", self.topic, err)

    def close(self) -> None:
        self._producer.flush(5)


class FactsSubscriber:
    """Feeds every gate's facts from the facts topic into one watch, on a daemon thread.

    Reads every partition from its end with ``assign()`` (no consumer group to join: one
    watch per deployment, and a restarted watch needs only fresh facts).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        watch: ProviderWatch,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.watch = watch
        self.bad = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "stampline-alert-watch",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                **(extra or {}),
            }
        )
        self._thread = threading.Thread(target=self._run, name="alert-facts", daemon=True)

    def start(self) -> FactsSubscriber:
        meta = self._consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        self._consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_END) for p in sorted(meta.partitions)]
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        self.ready.set()
        while not self._stop.is_set():
            for m in self._consumer.consume(500, 0.05):
                if m.error() is not None:
                    log.warning("facts topic error: %s", m.error())
                    continue
                try:
                    facts = ProviderFacts.from_json(orjson.loads(m.value() or b""))
                except (orjson.JSONDecodeError, ValueError) as exc:
                    self.bad += 1  # not ours, or damaged: counted, never fatal
                    log.warning("unreadable provider facts offset=%s: %s", m.offset(), exc)
                    continue
                self.watch.add(facts)
        self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
