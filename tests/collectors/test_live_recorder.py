"""The recorder's live endpoint, through the real process: a never-ending query from a client
that hung up, or one still running, neither holds up the recorder's writes nor its stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from stampline.audit import (
    LiveStore,
    Observation,
    canonical_table,
    encode_trail_messages,
    find_live,
)
from tests.audit.test_live import slow_query
from tests.collectors.test_crash import _config
from tests.collectors.test_gate import now_ms


def _wait(
    done: Callable[[], object], what: str, proc: subprocess.Popen[bytes], log: Path
) -> object:
    deadline = time.monotonic() + 60
    while not (got := done()):
        assert proc.poll() is None, f"the recorder exited waiting for {what}: {log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


@pytest.mark.e2e
def test_slow_live_queries_hold_up_neither_the_recorders_writes_nor_its_stop(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """A never-ending live query whose client hung up after a moment, and one still
    waiting for its answer: trail messages sent meanwhile are written, and SIGTERM stops the
    recorder (exit 0) without waiting for the query."""
    topics = make_topics("raw", "clean", "dlq", "trail", "heads", partitions=1)
    config = _config(tmp_path, bootstrap, topics, uid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    log = tmp_path / "recorder.log"
    with log.open("wb") as stderr:
        recorder = subprocess.Popen(
            [sys.executable, "-m", "stampline", "recorder", "--config", str(config)],
            stderr=stderr,
            env=env,
        )
    producer = Producer({"bootstrap.servers": bootstrap})

    def send(first: int, n: int) -> None:
        t0 = now_ms() * 1_000_000
        rows = [
            Observation(f"0190c6d8-0000-7000-8000-{i:012x}", "gate", t0 + i, t0 + i + 9, t0, t0, 1)
            for i in range(first, first + n)
        ]
        for m in encode_trail_messages("observations", canonical_table(rows), "t"):
            producer.produce(topics[3], m.value, b"k", headers=m.headers)
        producer.flush(30)

    def stored() -> int:
        return int(live.query("SELECT count() AS n FROM {db}.observations")[0]["n"])

    try:
        found = _wait(lambda: find_live(tmp_path / "trail"), "the live endpoint", recorder, log)
        assert isinstance(found, dict)
        live = LiveStore.found(found, "stampline")
        gone = slow_query(live)
        time.sleep(2)
        gone.close()  # the client hung up; its query would run for ever
        send(0, 5)
        _wait(lambda: stored() == 5, "the first trail message", recorder, log)
        waiting = slow_query(live)
        send(5, 7)
        _wait(lambda: stored() == 12, "the second trail message", recorder, log)
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(60)
        waiting.close()
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait(30)
    assert recorder.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


@pytest.mark.e2e
def test_the_recorder_will_not_serve_other_machines_without_a_token(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """`recorder.query_address: 0.0.0.0` without `recorder.query_token` stops the recorder
    at start with an error naming the key; no live file is left."""
    topics = make_topics("raw", "clean", "dlq", "trail", "heads", partitions=1)
    config = _config(tmp_path, bootstrap, topics, uid)
    data = yaml.safe_load(config.read_text())
    data["recorder"]["query_address"] = "0.0.0.0"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    done = subprocess.run(
        [sys.executable, "-m", "stampline", "recorder", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode != 0
    assert "recorder.query_token" in done.stderr
    assert find_live(tmp_path / "trail") is None
