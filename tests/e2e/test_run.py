"""`stampline run` on the embedded default: one command runs gate, recorder and broker as
supervised processes, and the trail can be queried live from other processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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
    log: Path,
    pattern: str,
    proc: subprocess.Popen[bytes],
    timeout_s: float = 90,
    *,
    start: int = 0,
) -> re.Match[str]:
    """The first match of ``pattern`` in ``log`` (from character ``start``), once written."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = re.search(pattern, log.read_text()[start:]) if log.exists() else None
        if m is not None:
            return m
        assert proc.poll() is None, log.read_text() if log.exists() else ""
        assert time.monotonic() < deadline, f"no {pattern!r} in {log}"
        time.sleep(0.1)


def _child_logs(config_dir: Path) -> str:
    """Every child's log of a `run` whose config is in ``config_dir`` (its default log folder)."""
    return "".join(f.read_text() for f in sorted((config_dir / "stampline-logs").glob("*.log")))


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
    just-forwarded event and asks hotspots, while `audit verify` refuses the held store (it
    never reads through the recorder); a SIGKILLed gate is restarted; SIGTERM stops
    everything with exit 0, and the stopped store then verifies."""
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
        held = subprocess.run(
            [*STAMPLINE, "audit", "verify", "--config", str(config), "--json"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
        assert held.returncode == 1
        assert "is open in process" in held.stderr
        os.kill(gate_pid, signal.SIGKILL)
        _wait_log(log, r"gate-1 exited with signal SIGKILL .* restarting in \S+: gate: ", proc)
        again = _wait_log(log, rf"started gate-1 pid (?!{gate_pid}\b)(\d+)", proc)
        restarted = int(again.group(1))
        assert restarted != gate_pid
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "run: stopped cleanly" in text
    assert f"children's logs in {tmp_path / 'stampline-logs'}" in text
    assert "recorder: stopped cleanly" in (tmp_path / "stampline-logs" / "recorder.log").read_text()
    summary = json.loads(out)
    assert [c["name"] for c in summary["children"]] == ["gate-1", "recorder"]
    assert summary["children"][0]["restarts"] == 1
    assert summary["failing"] == []
    assert _query(["audit", "verify", "--config", str(config)])["ok"] is True


def test_a_child_that_cannot_start_is_named_with_its_last_log_line_and_fails_the_run(
    tmp_path: Path,
) -> None:
    """A gate whose metrics port is taken fails at every start: `run` reports each exit with
    the gate's last log line (which names the address), restarts it with a doubling back-off,
    and after SIGTERM exits 3 with a final line naming the gate and that line."""
    config = _embedded_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = yaml.safe_load(config.read_text())
        # gate-1's port; the recorder's is port+1
        spec["metrics"] = {"enabled": True, "port": port, "address": "127.0.0.1"}
        config.write_text(yaml.safe_dump(spec))
        log = tmp_path / "run.log"
        proc = _start_run(config, log)
        try:
            address = re.escape(f"127.0.0.1:{port}")
            first = rf"gate-1 exited with exit code 1 after \S+; restarting in 0\.5s: .*{address}"
            _wait_log(log, first, proc)
            _wait_log(log, r"gate-1 exited with exit code 1 after \S+; restarting in 1\.0s", proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=120)
    text = log.read_text()
    assert proc.returncode == 3, text
    assert "run: stopped cleanly" not in text
    final = [ln for ln in text.splitlines() if ln.startswith("run: gate-1 never came up")]
    assert len(final) == 1, text
    assert re.search(rf"last log line: .*Address already in use.*{address}", final[0]), final
    assert "gate-1" in json.loads(out)["failing"]
    assert "Address already in use" in (tmp_path / "stampline-logs" / "gate-1.log").read_text()


def test_run_works_from_a_folder_of_lookalike_packages(tmp_path: Path) -> None:
    """`stampline run` started from a folder holding `rules/`, `audit/`, `collectors/` (and the
    other component names, and a `stampline/`), each a package that raises on import, runs the
    deployment: the gate forwards, and it stops cleanly with exit 0 and no ImportError."""
    here = tmp_path / "deploy"
    for name in ("rules", "audit", "collectors", "alerting", "dashboards", "evidence", "stampline"):
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
    text = log.read_text() + _child_logs(here)
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
        logs = tmp_path / "stampline-logs"
        _wait_log(logs / "gate-1.log", r"gate: md\.raw at \S+ → md\.clean", proc)  # consuming
        _wait_log(logs / "recorder.log", r"recorder: \S+ at \S+ → chdb", proc)  # store open
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
    text = _child_logs(tmp_path)
    assert "gate: stopped cleanly" in text, text
    assert "recorder: stopped cleanly" in text, text

    again_log = tmp_path / "again.log"
    recorder_log = tmp_path / "stampline-logs" / "recorder.log"
    before = len(recorder_log.read_text())
    again = _start_run(config, again_log)
    try:
        _wait_log(recorder_log, r"recorder: \S+ at \S+ → chdb", again, start=before)
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=120)
    text = again_log.read_text()
    assert again.returncode == 0, text
    assert " exited with " not in text, text
    assert "recorder: stopped cleanly" in recorder_log.read_text()[before:]


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
    feeder: threading.Thread | None = None

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
        # Both go on publishing while the resolve is awaited: a feed that stopped here made
        # both silent, and a slow machine read those alerts together with beta's resolve.
        stop_feed = threading.Event()
        feeder = threading.Thread(target=lambda: _keep_sending(send, stop_feed), daemon=True)
        feeder.start()
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
        if feeder is not None:
            stop_feed.set()
            feeder.join(30)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log.read_text()
    assert after == [("beta", "firing"), ("beta", "resolved")], after
    names = [c["name"] for c in json.loads(out)["children"]]
    assert names == ["gate-1", "gate-2", "recorder", "alerts-watch"]


def _keep_sending(send: Callable[[tuple[str, ...]], int], stop: threading.Event) -> None:
    """Both providers, every 100 ms, until ``stop``."""
    while not stop.wait(0.1):
        send(("alpha", "beta"))
