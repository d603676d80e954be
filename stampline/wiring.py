"""From a configuration to running parts."""

from __future__ import annotations

import logging
import socket

from stampline.audit import (
    TRAIL_MESSAGE_BYTES,
    ChdbStore,
    ClickHouseStore,
    ClockBound,
    LiveStore,
    Retention,
    Store,
    find_live,
    read_clock_bound,
)
from stampline.collectors import (
    GateSettings,
    Limits,
    MetricsSettings,
    RecorderSettings,
    SidecarMetrics,
    TapSettings,
    TrailTopic,
)
from stampline.config import Config, StoreConfig, build_extraction
from stampline.rules import RulesHolder

log = logging.getLogger("stampline.clock")


def retention(store: StoreConfig) -> Retention:
    r = store.retention
    return Retention(raw_s=r.raw_ns // 10**9, rollups_s=r.rollups_ns // 10**9)


def open_store(
    store: StoreConfig, database: str | None = None, *, migrate: bool = True, live: bool = False
) -> Store:
    """The configured store, its schema applied unless ``migrate`` is False: the one place
    the backend is chosen (a ClickHouse server, or chDB on a local folder).

    With ``live`` (a reader), a chDB folder that a running recorder holds is read through
    that recorder's live endpoint instead: opening the folder would keep the recorder out.

    Raises:
        AuditError: the store cannot be opened.
    """
    db = database or store.database
    if store.backend == "clickhouse":
        return ClickHouseStore(
            store.url or "",
            db,
            user=store.user,
            password=store.password.get_secret_value(),
            secure=store.secure,
            verify_tls=store.verify_tls,
            retention=retention(store),
            migrate=migrate,
        )
    held = live_store(store, db) if live else None
    if held is not None:
        return held
    return ChdbStore(
        store.path, db, retention(store), migrate=migrate, private=store.permissions == "private"
    )


def live_store(store: StoreConfig, database: str | None = None) -> LiveStore | None:
    """The live endpoint of the recorder holding the chDB folder ``store.path``; None when no
    running recorder serves it (or the store is a ClickHouse server, which serves itself)."""
    if store.backend != "chdb":
        return None
    found = find_live(store.path)
    return LiveStore.found(found, database or store.database) if found is not None else None


def clock_bound(
    config: Config, metrics: SidecarMetrics | None = None, stage: str | None = None
) -> ClockBound:
    """This host's clock-error bound as configured; a chrony fallback is logged and counted."""
    bound = read_clock_bound(config.gate.clock_error_source, config.gate.clock_error_ns)
    if bound.kind == "fallback":
        log.warning(
            "clock_error_source=chrony but %s: stamping with the configured bound "
            "clock_error_ns=%d (recorded on every trail row as a fallback)",
            bound.reason,
            bound.bound_ns,
        )
        if metrics is not None:
            metrics.clock_bound_fallbacks.inc()
    if metrics is not None:
        host = socket.gethostname()
        metrics.clock_error_bound.labels(host, stage or config.gate.stage).set(bound.bound_ns / 1e9)
    return bound


def gate_settings(
    config: Config, bootstrap: str, metrics: SidecarMetrics | None = None
) -> GateSettings:
    """The gate's settings for this deployment, talking to ``bootstrap``."""
    client = dict(config.broker.client)
    bound = clock_bound(config, metrics)
    return GateSettings(
        bootstrap_servers=bootstrap,
        raw_topics=tuple(config.topics.raw),
        clean_topic=config.topics.clean,
        dead_letter_topic=config.topics.dead_letter,
        group_id=config.gate.group_id,
        stage=config.gate.stage,
        clock_err_ns=bound.bound_ns,
        clock_source=bound.label(),
        consume_batch=config.gate.consume_batch,
        flush_rows=config.store.flush_rows,
        flush_interval_s=config.store.flush_interval_ns / 1e9,
        consumer=client,
        producer=client,
        delivery=config.gate.delivery,
        recovery_scan=config.gate.recovery_scan,
        queue_batches=config.gate.queue_batches,
        batch_bytes=config.gate.batch_bytes,
        allowed_lateness_ns=config.gate.allowed_lateness_ns,
        limits=Limits(
            max_value_bytes=config.gate.max_message_bytes,
            max_key_bytes=config.gate.max_key_bytes,
            max_header_bytes=config.gate.max_header_bytes,
        ),
        transaction_probe=config.gate.transaction_probe,
    )


def tap_settings(config: Config, bootstrap: str, topics: list[str] | None = None) -> TapSettings:
    """The tap's settings: the configured topics unless ``topics`` names others."""
    bound = clock_bound(config)
    return TapSettings(
        bootstrap_servers=bootstrap,
        topics=tuple(topics or config.tap.topics),
        group_id=config.tap.group_id,
        stage=config.tap.stage,
        key_fields=tuple(config.tap.key_fields),
        consume_batch=config.tap.consume_batch,
        consumer=dict(config.broker.client),
        clock_err_ns=bound.bound_ns,
        clock_source=bound.label(),
    )


def sidecar_metrics(config: Config) -> SidecarMetrics:
    """Metrics on their own registry, as configured (served by the caller when enabled)."""
    m = config.metrics
    return SidecarMetrics(
        settings=MetricsSettings(
            enabled=m.enabled,
            port=m.port,
            address=m.address,
            per_instrument=m.per_instrument,
            max_label_values=m.max_label_values,
        )
    )


def gate_metrics(config: Config, metrics: SidecarMetrics) -> SidecarMetrics | None:
    """The metrics a gate feeds per batch: ``metrics`` where they are served
    (`metrics.enabled`), else none. Nothing else reads them, and at batches of 100 records
    from many providers they cost about 30 % of the gate's CPU (docs/metrics.md)."""
    return metrics if config.metrics.enabled else None


def rules_holder(config: Config) -> RulesHolder:
    """The configured rules, reloaded when their files change.

    Raises:
        RuleFileError: the rule files do not load.
    """
    return RulesHolder(
        config.rules.files,
        build_extraction(config),
        interval_s=config.rules.reload_interval_ns / 1e9,
    )


def trail_topic(config: Config, source: str) -> TrailTopic:
    """Where a gate or a tap sends its trail: the configured trail topic.

    Trail messages go out on the gate's own producer, whose message.max.bytes follows
    `gate.max_message_bytes` (see ``Limits.producer_bytes``): they are cut at half of that
    (their size is estimated before encoding), never at more than the format's default, so
    a gate that fell behind and flushes many rows at once does not fail on its own trail.
    """
    g = config.gate
    producer_bytes = Limits(
        max_value_bytes=g.max_message_bytes,
        max_key_bytes=g.max_key_bytes,
        max_header_bytes=g.max_header_bytes,
    ).producer_bytes
    cap = min(TRAIL_MESSAGE_BYTES, producer_bytes // 2)
    return TrailTopic(config.topics.trail, source, max_message_bytes=cap)


def recorder_settings(config: Config, bootstrap: str) -> RecorderSettings:
    """The recorder's settings for this deployment, talking to ``bootstrap``."""
    r = config.recorder
    client = dict(config.broker.client)
    return RecorderSettings(
        bootstrap_servers=bootstrap,
        trail_topic=config.topics.trail,
        group_id=r.group_id,
        heads_topic=config.topics.trail_heads,
        heads_interval_s=r.heads_interval_ns / 1e9,
        signing_key=r.signing_key,
        consume_batch=r.consume_batch,
        max_message_rows=r.max_message_rows,
        max_batch_rows=r.max_batch_rows,
        retry_max_s=r.retry_max_ns / 1e9,
        consumer=client,
        producer=client,
    )
