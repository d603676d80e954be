"""From a configuration to running parts."""

from __future__ import annotations

from audit import ChdbStore
from collectors import GateSettings, MetricsSettings, SidecarMetrics, TapSettings
from stampline.config import Config


def open_store(config: Config) -> ChdbStore:
    """The configured store, its schema applied."""
    return ChdbStore(config.store.path, config.store.database)


def gate_settings(config: Config, bootstrap: str) -> GateSettings:
    """The gate's settings for this deployment, talking to ``bootstrap``."""
    client = dict(config.broker.client)
    return GateSettings(
        bootstrap_servers=bootstrap,
        raw_topics=tuple(config.topics.raw),
        clean_topic=config.topics.clean,
        dead_letter_topic=config.topics.dead_letter,
        group_id=config.gate.group_id,
        stage=config.gate.stage,
        clock_err_ns=config.gate.clock_error_ns,
        consume_batch=config.gate.consume_batch,
        flush_rows=config.store.flush_rows,
        flush_interval_s=config.store.flush_interval_ns / 1e9,
        consumer=client,
        producer=client,
        delivery=config.gate.delivery,
        recovery_scan=config.gate.recovery_scan,
        queue_batches=config.gate.queue_batches,
        allowed_lateness_ns=config.gate.allowed_lateness_ns,
    )


def tap_settings(config: Config, bootstrap: str, topics: list[str] | None = None) -> TapSettings:
    """The tap's settings: the configured topics unless ``topics`` names others."""
    return TapSettings(
        bootstrap_servers=bootstrap,
        topics=tuple(topics or config.tap.topics),
        group_id=config.tap.group_id,
        stage=config.tap.stage,
        key_fields=tuple(config.tap.key_fields),
        consume_batch=config.tap.consume_batch,
        consumer=dict(config.broker.client),
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
