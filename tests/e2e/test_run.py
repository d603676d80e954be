"""`stampline run` on the embedded default: one command runs gate, recorder and broker as
supervised processes, and the trail can be queried live from other processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from stampline.collectors import H_EVENT_ID
from stampline.demo import rules_file
from tests.collectors.test_gate import quote
from tests.helpers import children_of, produce, read_all, running, wait_gone

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAMPLINE = [sys.executable, "-m", "stampline"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}


def _wait_log(
    log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout_s: float = 90
) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        m = re.search(pattern, log.read_text())
        if m is not None:
            return m
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {pattern!r} in:\n{log.read_text()}"
        time.sleep(0.1)


def _query(args: list[str], timeout_s: float = 60) -> dict[str, object]:
    """Run a query command until it answers (the recorder may not have written yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run(
            [*STAMPLINE, *args, "--json"], capture_output=True, text=True, env=_env(), timeout=60
        )
        if done.returncode == 0:
            return json.loads(done.stdout)  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.5)


def _embedded_config(tmp_path: Path) -> Path:
    """A deployment on the embedded default: its own broker, a chDB store in ``tmp_path``."""
    config = tmp_path / "stampline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"embedded": True},
                "topics": {"raw": ["md.raw"], "clean": "md.clean", "dead_letter": "md.dlq"},
                "store": {"path": "store", "flush_interval": "100ms"},
                "rules": {"files": [str(rules_file())]},
            }
        )
    )
    return config


def _start_run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`stampline run` with one gate worker, its stderr (and its children's) in ``log``."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [*STAMPLINE, "run", "--config", str(config), "--workers", "1", "--json"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_env(),
        )


def test_run_serves_live_replay_and_hotspots_and_restarts_a_killed_child(tmp_path: Path) -> None:
    """While `stampline run` runs on the embedded default, another process replays a
    just-forwarded event and asks hotspots; a SIGKILLed gate is restarted; SIGTERM stops
    everything with exit 0."""
    config = _embedded_config(tmp_path)
    log = tmp_path / "run.log"
    proc = _start_run(config, log)
    try:
        bootstrap = _wait_log(log, r"run: broker at (\S+)", proc).group(1)
        gate_pid = int(_wait_log(log, r"started gate-1 pid (\d+)", proc).group(1))
        _wait_log(log, r"started recorder pid \d+", proc)
        now = int(time.time() * 1000)
        produce(
            bootstrap,
            "md.raw",
            [(None, orjson.dumps(quote("alpha", i, ts=now))) for i in range(20)],
        )
        (first, *_) = read_all(bootstrap, "md.clean", 20, idle_s=0.3)
        event_id = (first.header(H_EVENT_ID) or b"").decode()
        replay = _query(["replay", event_id, "--config", str(config)])
        (event,) = replay["events"]  # type: ignore[misc]
        assert event["outcome"] == "forwarded"
        hot = _query(["hotspots", "--config", str(config)])
        assert any(r["to_stage"] == "gate" for r in hot["rows"])  # type: ignore[union-attr]
        verify = _query(["audit", "verify", "--config", str(config)])
        assert verify["ok"] is True
        os.kill(gate_pid, signal.SIGKILL)
        _wait_log(log, r"gate-1 exited with signal SIGKILL .* restarting", proc)
        again = _wait_log(log, rf"started gate-1 pid (?!{gate_pid}\b)(\d+)", proc)
        restarted = int(again.group(1))
        assert restarted != gate_pid
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "run: stopped cleanly" in text
    assert "recorder: stopped cleanly" in text
    summary = json.loads(out)
    assert [c["name"] for c in summary["children"]] == ["gate-1", "recorder"]
    assert summary["children"][0]["restarts"] == 1


def test_run_works_from_a_folder_of_lookalike_packages(tmp_path: Path) -> None:
    """`stampline run` started from a folder holding `rules/`, `audit/`, `collectors/` (and the
    other component names, and a `stampline/`), each a package that raises on import, runs the
    deployment: the gate forwards, and it stops cleanly with exit 0 and no ImportError."""
    here = tmp_path / "deploy"
    for name in ("rules", "audit", "collectors", "alerting", "dashboards", "stampline"):
        (here / name).mkdir(parents=True)
        (here / name / "__init__.py").write_text(f"raise ImportError('the lookalike {name}')\n")
    config = _embedded_config(here)
    log = tmp_path / "run.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [Path(sys.executable).parent / "stampline", "run", "-c", config.name, "-w", "1"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=_env(),
            cwd=here,
        )
    try:
        bootstrap = _wait_log(log, r"run: broker at (\S+)", proc).group(1)
        _wait_log(log, r"started recorder pid \d+", proc)
        now = int(time.time() * 1000)
        produce(
            bootstrap, "md.raw", [(None, orjson.dumps(quote("alpha", i, ts=now))) for i in range(5)]
        )
        assert len(read_all(bootstrap, "md.clean", 5, idle_s=0.3)) == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "lookalike" not in text
    assert "ImportError" not in text
    assert "recorder: stopped cleanly" in text


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux-only")
def test_children_of_a_sigkilled_run_stop_cleanly_and_free_the_store(tmp_path: Path) -> None:
    """When `stampline run` is killed with SIGKILL its gate, recorder and embedded broker stop
    by themselves within 30 s (gate and recorder through their clean SIGTERM path), and a
    second `run` on the same config then opens the store and stops cleanly."""
    config = _embedded_config(tmp_path)
    log = tmp_path / "run.log"
    proc = _start_run(config, log)
    children: dict[int, str] = {}
    try:
        gate = int(_wait_log(log, r"started gate-1 pid (\d+)", proc).group(1))
        recorder = int(_wait_log(log, r"started recorder pid (\d+)", proc).group(1))
        _wait_log(log, r"gate: md\.raw at \S+ → md\.clean", proc)  # consuming
        _wait_log(log, r"recorder: \S+ at \S+ → chdb", proc)  # the store is open
        children = children_of(proc.pid)
        (broker,) = [pid for pid, cmd in children.items() if "tansu" in cmd]
        assert set(children) == {gate, recorder, broker}, children
        proc.kill()
        proc.wait(10)
        wait_gone(children, 30)
    finally:
        proc.kill()
        proc.wait(10)
        for pid in children:  # after a failure: leave no orphan to the rest of the suite
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        assert proc.stdout is not None
        proc.stdout.close()
    text = log.read_text()
    assert "gate: stopped cleanly" in text, text
    assert "recorder: stopped cleanly" in text, text

    again_log = tmp_path / "again.log"
    again = _start_run(config, again_log)
    try:
        _wait_log(again_log, r"recorder: \S+ at \S+ → chdb", again)
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=120)
    text = again_log.read_text()
    assert again.returncode == 0, text
    assert " exited with " not in text, text
    assert "recorder: stopped cleanly" in text


def test_two_gates_alert_a_silent_provider_once(tmp_path: Path) -> None:
    """`stampline run --workers 2` with alert definitions: one provider watch judges both
    gates' facts, so beta's silence (each gate saw beta) is alerted once and resolved once,
    and alpha, never silent, is not alerted."""
    config = _embedded_config(tmp_path)
    settings = yaml.safe_load(config.read_text())
    definitions = tmp_path / "alerts.yaml"
    definitions.write_text(
        "version: 1\n"
        "providers:\n"
        "  - {provider: alpha, venue: XLON, max_gap: 3s}\n"
        "  - {provider: beta, venue: XLON, max_gap: 3s}\n"
        "alerts:\n"
        "  - {id: provider.silent, kind: provider_silent, severity: critical}\n"
    )
    settings["topics"]["partitions"] = 2
    settings["alerting"] = {"definitions": str(definitions)}
    config.write_text(yaml.safe_dump(settings))
    log = tmp_path / "run.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*STAMPLINE, "run", "--config", str(config), "--workers", "2", "--json"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_env(),
        )
    seq = {(p, i): 0 for p in ("alpha", "beta") for i in range(4)}

    def send(providers: tuple[str, ...]) -> int:
        """One round: each provider's four instruments, two on each partition."""
        now = int(time.time() * 1000)
        for part in (0, 1):
            records = []
            for p in providers:
                for i in (part, part + 2):
                    event = quote(p, seq[(p, i)], instrument=f"SYM00{i + 1}", ts=now)
                    seq[(p, i)] += 1
                    records.append((f"{p}/{i}".encode(), orjson.dumps(event)))
            produce(bootstrap, "md.raw", records, partition=part)
        return len(providers) * 4

    try:
        bootstrap = _wait_log(log, r"run: broker at (\S+)", proc).group(1)
        for name in ("gate-1", "gate-2", "recorder", "alerts-watch"):
            _wait_log(log, rf"started {name} pid \d+", proc)
        sent = 0
        while len(read_all(bootstrap, "md.clean", sent, idle_s=0.2)) < sent or not sent:
            sent += send(("alpha", "beta"))  # until both gates forward (startup is over)
        warm = time.time_ns()
        for step in range(110):  # 11 s: beta silent from 2 s to 9 s (its max_gap is 3 s)
            send(("alpha",) if 20 <= step < 90 else ("alpha", "beta"))
            time.sleep(0.1)
        deadline = time.monotonic() + 60
        while True:
            notices = [
                orjson.loads(r.value or b"{}")
                for r in read_all(bootstrap, "stampline.trail.alerts", idle_s=0.5)
            ]
            after = [
                (n["labels"]["provider"], n["state"])
                for n in notices
                # the providers were "silent" until the gates started: not this fault
                if n.get("type") == "transition" and n["started_ns"] > warm
            ]
            if ("beta", "resolved") in after or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log.read_text()
    assert after == [("beta", "firing"), ("beta", "resolved")], after
    names = [c["name"] for c in json.loads(out)["children"]]
    assert names == ["gate-1", "gate-2", "recorder", "alerts-watch"]
