"""From a configuration to running parts."""

from __future__ import annotations

from audit import ChdbStore
from collectors import GateSettings
from rules import RulesHolder
from stampline.config import Config, build_extraction


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
    )


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
