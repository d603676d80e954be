"""The deployment the demo writes, and the children `stampline run` and the demo both start
from a configuration (stampline/_deployment.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from stampline import _deployment
from stampline._feed import FeedPlan
from stampline.config import ConfigError, load_config
from stampline.demo import (
    Topics,
    alert_definitions,
    deployment_config,
    rules_file,
    stateful_rules_file,
)


def _write(tmp_path: Path, prefix: str = "") -> Path:
    alerts = tmp_path / "demo.alerts.yaml"
    alerts.write_text(alert_definitions(FeedPlan()))
    spec = deployment_config(
        bootstrap="127.0.0.1:9092", store=tmp_path / "store", database="stampline",
        topics=Topics.with_prefix(prefix), alerts_file=alerts, plan=FeedPlan(),
        group_prefix=prefix,
    )  # fmt: skip
    path = tmp_path / "stampline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_demo_config_is_a_deployment_config_with_its_rules_and_alerts(
    tmp_path: Path,
) -> None:
    """What the demo writes loads as any deployment config: the shared broker, the prefixed
    topics and groups, both rule files, the alert definitions judged on event time."""
    cfg = load_config(_write(tmp_path, "p."))
    assert cfg.broker.bootstrap_servers == "127.0.0.1:9092"
    assert cfg.broker.embedded is False
    assert cfg.topics.raw == ["p.md.raw"]
    assert (cfg.gate.group_id, cfg.tap.group_id) == ("p.demo-gate", "p.demo-tap")
    assert cfg.rules.files == [rules_file(), stateful_rules_file()]
    assert cfg.alerting.watch_clock == "event"
    assert cfg.alerting.topic == "p.stampline.alerts"
    assert cfg.gate.max_message_bytes == FeedPlan().max_message_bytes


def test_a_bad_watch_clock_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path)
    path.write_text(path.read_text().replace("watch_clock: event", "watch_clock: sometimes"))
    with pytest.raises(ConfigError, match=r"alerting\.watch_clock"):
        load_config(path)


def test_the_children_are_stampline_commands_on_the_shared_broker(tmp_path: Path) -> None:
    """Gates first, then the recorder, then the tap (it has topics); each `stampline <part>
    --config FILE`, pointed at the one broker, told its name (for its log lines), logging to
    its own file; with metrics on, one port each in that order."""
    path = _write(tmp_path)
    cfg = load_config(path)
    kids = _deployment.children(cfg, path, "127.0.0.1:1", 2, log_dir=tmp_path / "logs")
    assert [c.name for c in kids] == ["gate-1", "gate-2", "recorder", "tap"]
    assert [c.argv for c in kids][1:] == [
        [sys.executable, "-P", "-m", "stampline", part, "--config", str(path)]
        for part in ("gate", "recorder", "tap")
    ]
    for c in kids:
        assert c.env == {
            "STAMPLINE_BROKER__EMBEDDED": "false",
            "STAMPLINE_BROKER__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "STAMPLINE_PART_NAME": c.name,
        }
        assert c.log == tmp_path / "logs" / f"{c.name}.log"
    metered = cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update={"enabled": True})})
    ports = [c.env["STAMPLINE_METRICS__PORT"] for c in _deployment.children(metered, path, "b", 1)]
    assert ports == [str(cfg.metrics.port + i) for i in range(3)]
    assert set(_deployment.topics(cfg)) == {
        "md.raw", "md.clean", "md.dlq", "stampline.trail", "stampline.trail.heads",
        "decisions", "stampline.alerts",
    }  # fmt: skip


def test_several_gates_get_one_provider_watch_child(tmp_path: Path) -> None:
    """With alert definitions and two gates, the children include one `alerts watch`, last,
    and every child is told the facts topic (a default named after the trail topic); one
    gate keeps its watch in process, with no such child."""
    cfg = load_config(_write(tmp_path))
    env = _deployment.watch_env(cfg, 2)
    assert env == {"STAMPLINE_ALERTING__FACTS_TOPIC": "stampline.trail.alert-facts"}
    kids = _deployment.children(cfg, tmp_path / "c.yaml", "b", 2, env=env)
    assert [c.name for c in kids] == ["gate-1", "gate-2", "recorder", "tap", "alerts-watch"]
    assert kids[-1].argv[-4:] == ["alerts", "watch", "--config", str(tmp_path / "c.yaml")]
    assert all(c.env["STAMPLINE_ALERTING__FACTS_TOPIC"] == env[
        "STAMPLINE_ALERTING__FACTS_TOPIC"] for c in kids)  # fmt: skip
    assert _deployment.watch_env(cfg, 1) == {}
    assert "alerts-watch" not in [c.name for c in _deployment.children(cfg, tmp_path, "b", 1)]
