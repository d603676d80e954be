"""Alert history without a store in the gate: `stampline gate` (no store) sends its alerts to
the alerts topic, `stampline recorder` writes them into the store, `stampline alerts list`
shows them; a recorder re-reading the topic from the start writes nothing twice, and a
dismissal made while the recorder holds the store reaches it through the topic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from stampline._deployment import shared_broker_env
from stampline.alerting import read_actions
from stampline.audit import LiveStore, find_live
from stampline.cli import app
from tests.alerting.conftest import Server
from tests.alerting.test_e2e import LiveFeed
from tests.alerting.test_faults import RULES

STAMPLINE = [sys.executable, "-m", "stampline"]
MAX_GAP_S = 3
runner = CliRunner()


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}


def write_config(tmp_path: Path, bootstrap: str, topics: dict[str, str], group: str) -> Path:
    (tmp_path / "alerts.yaml").write_text(
        f"""\
version: 1
providers:
  - {{provider: alpha, venue: XLON, max_gap: {MAX_GAP_S}s}}
  - {{provider: beta, venue: XLON, max_gap: {MAX_GAP_S}s}}
alerts:
  - {{id: provider.silent, kind: provider_silent, severity: critical}}
"""
    )
    path = tmp_path / "stampline.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"bootstrap_servers": bootstrap},
                "topics": {
                    "raw": [topics["raw"]],
                    "clean": topics["clean"],
                    "dead_letter": topics["dlq"],
                    "trail": topics["trail"],
                    "trail_heads": topics["heads"],
                    "create_missing": False,
                },
                "store": {"path": str(tmp_path / "store"), "database": "history_e2e"},
                "gate": {"group_id": f"{group}-gate"},
                "recorder": {"group_id": group, "heads_interval": "1h"},
                "rules": {"files": [str(RULES)]},
                "alerting": {"definitions": "alerts.yaml", "topic": topics["alerts"]},
            }
        )
    )
    return path


def start(command: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *STAMPLINE,
            command,
            "--config",
            str(config),
            *(["--json"] if command == "recorder" else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def wait(
    done: Callable[[], Any], what: str, procs: list[subprocess.Popen[str]], timeout_s: float = 90
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = done()
        if got:
            return got
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{p.args[3]} exited: {p.stderr.read() if p.stderr else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def listed(config: Path) -> list[dict[str, Any]]:
    """`stampline alerts list --json`, read through the running recorder."""
    result = runner.invoke(app, ["alerts", "list", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    return list(orjson.loads(result.output)["alerts"])


@pytest.mark.e2e
@pytest.mark.slow
def test_gate_alerts_reach_the_store_through_the_recorder_once(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """beta silent past its max_gap: `alerts list` shows its firing (at its last event +
    max_gap) and its resolve, with labels, written by the recorder from the alerts topic;
    a second recorder reading the topic from the start adds no row; `alerts dismiss` while
    it runs is recorded through the topic."""
    names = ("raw", "clean", "dlq", "trail", "heads", "alerts")
    topics = dict(zip(names, make_topics(*names, partitions=1), strict=True))
    config = write_config(tmp_path, bootstrap, topics, f"{uid}-rec")
    feed = LiveFeed(bootstrap, topics["raw"], ["alpha", "beta"])
    recorder = start("recorder", config)
    gate = start("gate", config)
    procs = [recorder, gate]
    try:
        live = wait(lambda: find_live(tmp_path / "store"), "the recorder's live endpoint", procs)
        store = LiveStore.found(live, "history_e2e")
        # The feed flows through the gate into the store.
        wait(lambda: store.query("SELECT count() AS n FROM {db}.observations")[0]["n"] > 50,
             "the trail", procs)  # fmt: skip
        time.sleep(MAX_GAP_S)  # a start-up silence (the gate joining) would resolve by now
        feed.on["beta"] = False
        off_ns = time.time_ns()
        time.sleep(0.2)
        last_beta = feed.last["beta"]

        def beta_fired() -> list[dict[str, Any]]:
            return [r for r in listed(config)
                    if r["labels"].get("provider") == "beta" and r["at_ns"] >= off_ns
                    and r["state"] == "firing"]  # fmt: skip

        (fired,) = wait(beta_fired, "beta's alert in the store", procs)
        feed.on["beta"] = True
        on_ns = time.time_ns()

        def beta_rows() -> list[dict[str, Any]]:
            fp = fired["fingerprint"]
            rows = [r for r in listed(config) if r["fingerprint"] == fp and r["at_ns"] >= off_ns]
            return rows if any(r["state"] == "resolved" for r in rows) else []

        rows = wait(beta_rows, "beta's resolve in the store", procs)
        assert [r["state"] for r in rows] == ["firing", "resolved"]
        assert fired["at_ns"] == last_beta + MAX_GAP_S * 10**9  # last event + max_gap
        assert on_ns - 1_000_000 <= rows[1]["at_ns"]  # resolved when beta came back
        assert fired["labels"] == {
            "alertname": "provider.silent", "kind": "provider_silent", "severity": "critical",
            "provider": "beta", "venue": "XLON",
        }  # fmt: skip
        assert all(r["labels"].get("provider") != "alpha" or r["at_ns"] < off_ns
                   for r in listed(config))  # fmt: skip
        before = listed(config)
        raw = store.query("SELECT count() AS n FROM {db}.alert_history")[0]["n"]
        assert raw == len(before)  # no duplicate hidden by FINAL
        srcs = {r["src"] for r in store.query("SELECT DISTINCT src FROM {db}.alert_history")}
        assert srcs == {f"{topics['alerts']}/0"}  # written by the recorder, from the topic
        _out, _err = stop(recorder)

        # A recorder of another group reads the trail and the alerts topic from the start.
        config2 = write_config(tmp_path, bootstrap, topics, f"{uid}-rec-again")
        recorder = start("recorder", config2)
        procs = [recorder, gate]
        live = wait(lambda: find_live(tmp_path / "store"), "the second live endpoint", procs)
        store = LiveStore.found(live, "history_e2e")
        # Sent after everything else on the one alerts partition: once it is written, the
        # re-read before it is done.
        dismissed = runner.invoke(
            app,
            ["alerts", "dismiss", fired["fingerprint"], "--as", "expected", "--reason",
             "vendor restart", "--by", "ana", "--config", str(config2), "--json"],
        )  # fmt: skip
        assert dismissed.exit_code == 0, dismissed.output
        answer = orjson.loads(dismissed.output)
        assert (answer["recorded_via"], answer["dismissed_as_expected"]) == ("recorder", 1)
        after = listed(config2)
        assert [(r["at_ns"], r["state"], r["fingerprint"]) for r in after[: len(before)]] == [
            (r["at_ns"], r["state"], r["fingerprint"]) for r in before
        ]
        raw = store.query("SELECT count() AS n FROM {db}.alert_history")[0]["n"]
        assert raw == len(after)
        out, _err = stop(recorder)
        stats = orjson.loads(out)
        assert stats["alerts_skipped"] >= len(before)
        assert stats["alerts_actions"] == 1
    finally:
        feed.stop.set()
        feed.thread.join(10)
        for p in (gate, recorder):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=90)


@pytest.mark.e2e
def test_snooze_on_the_embedded_default_is_recorded_through_the_recorders_broker(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    uid: str,
    tmp_path: Path,
    alertmanager: Server,
) -> None:
    """With `broker.embedded: true` and `alerting.topic`, `alerts snooze` while the recorder
    holds the store sends who/why to the broker the recorder's live file names, the recorder
    writes it, and the command exits 0."""
    trail, heads, alerts = make_topics("trail", "heads", "alerts", partitions=1)
    config = tmp_path / "stampline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"embedded": True},
                "topics": {"raw": ["md.raw"], "clean": "md.clean", "dead_letter": "md.dlq",
                           "trail": trail, "trail_heads": heads, "create_missing": False},
                "store": {"path": str(tmp_path / "store"), "database": "snooze_e2e"},
                "recorder": {"group_id": f"{uid}-rec", "heads_interval": "1h"},
                "rules": {"files": [str(RULES)]},
                "alerting": {"topic": alerts, "alertmanager_url": alertmanager.url},
            }
        )
    )  # fmt: skip
    # As `stampline run` starts it: its children share the run's embedded broker.
    recorder = subprocess.Popen(
        [*STAMPLINE, "recorder", "--config", str(config), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env(), **shared_broker_env(bootstrap)},
    )
    try:
        live = wait(lambda: find_live(tmp_path / "store"), "the live endpoint", [recorder])
        result = runner.invoke(
            app,
            # matched to this test's own provider: the session's Alertmanager is shared, and
            # a silence of every provider.silent would mute the later tests' alerts
            ["alerts", "snooze", "--alert", "provider.silent", "--match", f"provider=p{uid}",
             "--for", "10m", "--reason", "vendor maintenance", "--by", "ana",
             "--config", str(config), "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        answer = orjson.loads(result.stdout)
        assert answer["recorded_via"] == "recorder"
        (action,) = read_actions(LiveStore.found(live, "snooze_e2e"))
        assert (action["action"], action["by"], action["reason"], action["silence_id"]) == (
            "snooze", "ana", "vendor maintenance", answer["silence_id"],
        )  # fmt: skip
        out, _err = stop(recorder)
        assert orjson.loads(out)["alerts_actions"] == 1
    finally:
        if recorder.poll() is None:
            recorder.send_signal(signal.SIGTERM)
            recorder.communicate(timeout=90)
