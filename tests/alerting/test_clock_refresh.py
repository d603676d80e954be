"""The clock-error bound the clock_error alert judges is read again while the gate runs: a
real (fake) `chronyc` executable on PATH whose answer changes moves the gauge, in process
and in a running `stampline gate`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml

from stampline._clockwatch import refresher_for
from stampline.collectors import H_CLOCK_ERR, H_STAMP, SidecarMetrics
from stampline.config import load_config
from stampline.demo import rules_file
from stampline.wiring import gate_settings
from tests.alerting.conftest import free_port
from tests.collectors.test_gate import js, quote
from tests.helpers import produce, read_all

CALM = "0.000010000 seconds fast"  # 10 µs + 50 µs dispersion + 200/2 µs delay = 160 µs
EXCURSION = "0.002000000 seconds slow"  # 2 ms + 150 µs = 2.15 ms: past RTS 25's 1 ms


def tracking(system_time: str) -> str:
    return (
        "Reference ID    : C0A80001 (ntp.example)\n"
        "Stratum         : 3\n"
        f"System time     : {system_time} of NTP time\n"
        "Root delay      : 0.000200000 seconds\n"
        "Root dispersion : 0.000050000 seconds\n"
        "Leap status     : Normal\n"
    )


@pytest.fixture
def chronyc(tmp_path: Path) -> tuple[Path, Path]:
    """A `chronyc` script in its own folder answering `tracking` from a file (the folder,
    the file)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    answer = tmp_path / "tracking.txt"
    answer.write_text(tracking(CALM))
    script = folder / "chronyc"
    script.write_text(f'#!/bin/sh\n[ "$1" = tracking ] || exit 2\nexec cat "{answer}"\n')
    script.chmod(0o755)
    return folder, answer


def config(
    tmp_path: Path,
    extra: dict[str, object] | None = None,
    bootstrap: str = "127.0.0.1:1",
    prefix: str = "",
    **gate: object,
) -> Path:
    path = tmp_path / "stampline.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"bootstrap_servers": bootstrap},
                "topics": {
                    "raw": [f"{prefix}raw"],
                    "clean": f"{prefix}clean",
                    "dead_letter": f"{prefix}dlq",
                },
                "rules": {"files": [str(rules_file())]},
                "gate": {"clock_error_source": "chrony", **gate},
                **(extra or {}),
            }
        )
    )
    return path


def gauge(metrics: SidecarMetrics) -> float | None:
    return metrics.registry.get_sample_value(
        "stampline_clock_error_bound_seconds", {"host": socket.gethostname(), "stage": "gate"}
    )


def until(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_an_excursion_during_the_run_moves_the_gauge(
    tmp_path: Path, chronyc: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start: 160 µs from chrony. chrony's offset jumps: the refreshed gauge shows 2.15 ms;
    chrony stops answering: the configured bound, one fallback counted for several reads;
    chrony back: its bound again."""
    folder, answer = chronyc
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    cfg = load_config(config(tmp_path, clock_error_refresh="50ms", clock_error="3ms"))
    metrics = SidecarMetrics()
    settings = gate_settings(cfg, "127.0.0.1:1", metrics)
    assert settings.clock_err_ns == 160_000
    assert gauge(metrics) == pytest.approx(160e-6)
    refresher = refresher_for("chrony", 3_000_000, cfg.gate.clock_error_refresh_ns, metrics, "gate")
    assert refresher is not None
    try:
        answer.write_text(tracking(EXCURSION))
        until(lambda: gauge(metrics) == pytest.approx(2.15e-3), "the excursion in the gauge")
        answer.write_text("506 Cannot talk to daemon\n")
        until(lambda: gauge(metrics) == pytest.approx(3e-3), "the configured fallback")
        reads = refresher.reads
        until(lambda: refresher.reads >= reads + 3, "more reads while chrony is down")
        fallbacks = metrics.registry.get_sample_value("stampline_clock_bound_fallbacks_total")
        assert fallbacks == 1.0  # counted once per outage, not per read
        answer.write_text(tracking(CALM))
        until(lambda: gauge(metrics) == pytest.approx(160e-6), "chrony's bound again")
    finally:
        refresher.stop()
    assert settings.clock_err_ns == 160_000  # the stamps keep the bound read at start


def test_no_refresh_for_a_configured_bound_or_a_zero_interval(tmp_path: Path) -> None:
    """A configured bound never changes; `clock_error_refresh: 0` reads chrony once."""
    metrics = SidecarMetrics()
    assert refresher_for("configured", 1_000_000, 30 * 10**9, metrics, "gate") is None
    assert refresher_for("chrony", 1_000_000, 0, metrics, "gate") is None
    cfg = load_config(config(tmp_path))
    assert cfg.gate.clock_error_refresh_ns == 30 * 10**9  # the default


def test_bad_refresh_interval_names_the_key(tmp_path: Path) -> None:
    """A refresh interval that is not a duration is refused with its key."""
    result = subprocess.run(
        [sys.executable, "-m", "stampline", "config", "check",
         str(config(tmp_path, clock_error_refresh="often"))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "gate.clock_error_refresh" in result.stdout + result.stderr
    assert "'often'" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_running_gate_serves_the_refreshed_bound(
    tmp_path: Path, chronyc: tuple[Path, Path], bootstrap: str, uid: str
) -> None:
    """`stampline gate` with chrony: its /metrics shows 160 µs, then 2.15 ms after chrony's
    answer changes, without a restart; the records it stamps follow (err= and the clock-error
    header of a record taken in after the change carry 2.15 ms)."""
    folder, answer = chronyc
    port = free_port()
    path = config(
        tmp_path,
        {"metrics": {"enabled": True, "port": port, "address": "127.0.0.1"}},
        bootstrap=bootstrap,
        prefix=f"{uid}.",
        clock_error_refresh="100ms",
        group_id=f"{uid}-g",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    env["PATH"] = f"{folder}{os.pathsep}{env['PATH']}"
    # The gate's output goes to a file: a pipe nobody reads fills up and blocks the gate.
    log = tmp_path / "gate.log"
    with log.open("wb") as out:
        gate = subprocess.Popen(
            [sys.executable, "-m", "stampline", "gate", "--config", str(path)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    def scraped() -> float | None:
        assert gate.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                body = r.read().decode()
        except OSError:
            return None
        m = re.search(r'^stampline_clock_error_bound_seconds\{[^}]*stage="gate"\} (\S+)$', body,
                      re.MULTILINE)  # fmt: skip
        return float(m.group(1)) if m else None

    def stamped_err(seq: int) -> tuple[bytes | None, bytes]:
        """Feed one quote; its forwarded copy's clock-error header and the gate stamp's err=."""
        produce(bootstrap, f"{uid}.raw", [(None, js(quote("alpha", seq)))])
        # 90 s as for the start bound: the gate's first forward waits for its group join,
        # which on a broker fresh to the session took over 30 s once
        until(lambda: len(read_all(bootstrap, f"{uid}.clean", idle_s=0.1)) >= seq, "a forward", 90)
        (rec,) = [
            r
            for r in read_all(bootstrap, f"{uid}.clean", seq, idle_s=0.1)
            if orjson.loads(r.value or b"{}")["seq"] == seq
        ]
        (stamp,) = rec.header_all(H_STAMP)
        err = re.search(rb";err=(\d+);", stamp or b"")
        assert err is not None, stamp
        return rec.header(H_CLOCK_ERR), err.group(1)

    try:
        until(lambda: scraped() == pytest.approx(160e-6), "the start bound on /metrics", 90)
        assert stamped_err(1) == (b"160000", b"160000")
        answer.write_text(tracking(EXCURSION))
        until(lambda: scraped() == pytest.approx(2.15e-3), "the excursion on /metrics", 30)
        assert stamped_err(2) == (b"2150000", b"2150000")
    finally:
        gate.send_signal(signal.SIGTERM)
        gate.wait(timeout=90)
    assert gate.returncode == 0, log.read_text()[-2000:]
