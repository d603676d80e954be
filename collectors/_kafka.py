"""Kafka client settings every collector starts from; the deployment's own settings win."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Message


class _LibrdkafkaLog(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's own log, one step quieter than librdkafka rates it.

    Its errors are retried connection attempts and the like, repeated many times a second
    while a broker is away; what they mean for stampline surfaces once, as an error the
    caller reports. So its errors and warnings are INFO and the rest DEBUG: seen with
    --verbose, never as a flood on a normal run.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(
            logging.INFO if level >= logging.WARNING else logging.DEBUG, msg, *args, **kwargs
        )


# librdkafka's own log lines go through Python logging (see _LibrdkafkaLog), not stderr.
_CLIENT_LOG = _LibrdkafkaLog(logging.getLogger("stampline.kafka"), {})

try:
    from stampline._native import client_log as _compiled_client_log
except ImportError:  # built without cargo: no compiled client logs anything
    _compiled_client_log = None  # type: ignore[assignment]


def forward_native_log() -> None:
    """Log what the compiled clients' librdkafka said since the last call, as the reference's
    clients are logged (_LibrdkafkaLog). The lines wait in Rust (native/src/clientlog.rs)
    until a loop that polls anyway calls this: the gate's consumer, the tap's loop."""
    if _compiled_client_log is None:
        return
    lines, dropped = _compiled_client_log()
    for level, line in lines:
        _CLIENT_LOG.log(level, "%s", line)
    if dropped:
        _CLIENT_LOG.log(
            logging.WARNING,
            "%d librdkafka log lines of the compiled clients dropped: none took them in time",
            dropped,
        )


CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,  # offsets are committed only after the trail is written
    "auto.offset.reset": "earliest",
    # A short session lets a group form fast: Tansu takes ~3 s to join with 6 s, ~23 s with
    # librdkafka's 45 s default. Production brokers are unaffected either way.
    "session.timeout.ms": 6000,
    "fetch.wait.max.ms": 10,
    # librdkafka pauses fetching for this long once its local queue is "full enough"
    # (queued.min.messages). The 1 s default shows up as latency spikes on a bursty feed;
    # 0 makes the consumer's broker thread spin while a backlog is queued (measured: 4-5 µs
    # of CPU per event, one core's worth, taken from the loop that drains the queue). A few
    # ms is neither: it only applies while the queue already holds that many records.
    "fetch.queue.backoff.ms": 5,
    "logger": _CLIENT_LOG,
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,  # a retried send never duplicates a forwarded record
    "acks": "all",
    "linger.ms": 5,
    "logger": _CLIENT_LOG,
}


def consumer_config(
    bootstrap: str, group_id: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """librdkafka consumer settings: defaults, then the deployment's ``extra``."""
    return {
        **CONSUMER_DEFAULTS,
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        **(extra or {}),
    }


def producer_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka producer settings: defaults, then the deployment's ``extra``."""
    return {**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap, **(extra or {})}


def admin_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka admin client settings: the deployment's ``extra``, logging through Python."""
    return {"bootstrap.servers": bootstrap, **(extra or {}), "logger": _CLIENT_LOG}


def native_settings(config: Mapping[str, Any]) -> tuple[list[tuple[str, str]], str | None]:
    """``config`` as stampline's compiled loops take it (librdkafka's own settings, as text),
    and the name of the first setting only confluent-kafka takes (a callback), if any: a loop
    given one must run on the reference instead. confluent-kafka's ``logger`` is left out:
    the compiled clients' lines reach the same logger through forward_native_log."""
    settings: list[tuple[str, str]] = []
    for name, value in config.items():
        if name == "logger":
            continue
        if not isinstance(value, str | int | float):
            return settings, name
        settings.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return settings, None


def take(consumer: Consumer, max_records: int, timeout_s: float) -> list[Message]:
    """Up to ``max_records`` records: wait up to ``timeout_s`` for the first, then take only
    what is already fetched. ``Consumer.consume`` alone waits for a full batch or the whole
    timeout, which adds up to ``timeout_s`` of latency to every record of a quiet feed.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
