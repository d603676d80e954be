"""How a deployment starts: from a loaded configuration, the broker's address and a gate
count to the topics to create and the supervised child processes.

`stampline run` and `stampline demo` both start their parts through here, so there is one
way a deployment starts: the same topics, the same children (gate workers, the recorder,
the tap when `tap.topics` is set), each `stampline <part> --config FILE` in its own process,
pointed at the one shared broker through the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from stampline._supervisor import Child
from stampline.broker import partition_count
from stampline.config import ENV_PART_NAME, Config


def topics(config: Config) -> list[str]:
    """Every topic the deployment's parts read or write (created when `create_missing`)."""
    t = config.topics
    alerts = [config.alerting.topic] if config.alerting.topic else []
    return [*t.raw, t.clean, t.dead_letter, t.trail, t.trail_heads, *config.tap.topics, *alerts]


def watch_env(config: Config, gates: int) -> dict[str, str]:
    """What gives a deployment of several gates its one provider watch (a silent provider
    alerted once, not once per gate): with alert definitions and more than one gate, the
    gates publish their provider facts on `alerting.facts_topic` and one `alerts watch`
    child judges them, sending its alerts through `alerting.topic` to the recorder (the
    store's one writer). Each topic not configured gets a default named after the trail
    topic. Empty when nothing is to be set."""
    a = config.alerting
    if a.definitions is None or gates < 2:
        return {}
    env = {}
    if not a.facts_topic:
        env["STAMPLINE_ALERTING__FACTS_TOPIC"] = f"{config.topics.trail}.alert-facts"
    if not a.topic:
        env["STAMPLINE_ALERTING__TOPIC"] = f"{config.topics.trail}.alerts"
    return env


def watches_apart(config: Config, env: Mapping[str, str]) -> bool:
    """Whether the provider watch runs as its own `alerts watch` child: the gates publish
    their facts to a topic (configured, or set by :func:`watch_env`)."""
    facts = config.alerting.facts_topic or env.get("STAMPLINE_ALERTING__FACTS_TOPIC")
    return config.alerting.definitions is not None and bool(facts)


def gate_workers(config: Config, bootstrap: str, asked: int | None) -> tuple[int, int]:
    """How many gate processes to start: ``asked`` (default one per core), never more than
    the raw topics' partitions (a gate without a partition would only wait); and that
    partition count."""
    partitions = sum(partition_count(bootstrap, topic) for topic in config.topics.raw)
    return min(asked or os.cpu_count() or 1, max(1, partitions)), partitions


def shared_broker_env(bootstrap: str) -> dict[str, str]:
    """What points a child at the deployment's broker: children never start their own."""
    return {
        "STAMPLINE_BROKER__EMBEDDED": "false",
        "STAMPLINE_BROKER__BOOTSTRAP_SERVERS": bootstrap,
    }


def children(
    config: Config,
    path: Path,
    bootstrap: str,
    gates: int,
    *,
    log_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Child]:
    """The deployment's children: ``gates`` gate workers, the recorder, the tap when
    `tap.topics` is set, and the one provider watch (`alerts watch`) when the gates publish
    their facts (:func:`watches_apart`). With `metrics.enabled` each serves /metrics on its
    own port: the gates on `metrics.port`, `port+1`, …, then the recorder, the tap, the
    watch. With ``log_dir`` each child's output goes to ``<log_dir>/<name>.log``."""
    # -P: the working directory is not put on sys.path, so no folder there can shadow a package.
    base = [sys.executable, "-P", "-m", "stampline"]
    parts = [*((f"gate-{i + 1}", ["gate"]) for i in range(gates)), ("recorder", ["recorder"])]
    if config.tap.topics:
        parts.append(("tap", ["tap"]))
    if watches_apart(config, env or {}):
        parts.append(("alerts-watch", ["alerts", "watch"]))
    out = []
    for i, (name, command) in enumerate(parts):
        child_env = {**(env or {}), **shared_broker_env(bootstrap), ENV_PART_NAME: name}
        if config.metrics.enabled:
            child_env["STAMPLINE_METRICS__PORT"] = str(config.metrics.port + i)
        log = log_dir / f"{name}.log" if log_dir is not None else None
        out.append(Child(name, [*base, *command, "--config", str(path)], child_env, log))
    return out
