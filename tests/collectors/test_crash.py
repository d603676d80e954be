"""Crash safety: a gate or a recorder process killed with SIGKILL mid-stream and restarted
loses nothing and duplicates nothing, in the output topics or in the trail."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml

from stampline.audit import ChdbStore
from stampline.demo import rules_file
from tests.collectors.test_gate import now_ms, quote
from tests.helpers import event_ids, produce, read_committed, record_until

N = 6000
BAD_EVERY = 97


def _config(
    tmp_path: Path,
    bootstrap: str,
    topics: list[str],
    group: str,
    flush: str = "1s",
    flush_rows: int = 100000,
) -> Path:
    raw, clean, dlq, trail, heads = topics
    path = tmp_path / "gate.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"bootstrap_servers": bootstrap},
                "topics": {
                    "raw": [raw],
                    "clean": clean,
                    "dead_letter": dlq,
                    "trail": trail,
                    "trail_heads": heads,
                },
                "store": {"path": "trail", "flush_interval": flush, "flush_rows": flush_rows},
                "gate": {"group_id": group, "consume_batch": 200},
                "recorder": {"group_id": f"{group}-rec", "heads_interval": "100ms"},
                "rules": {"files": [str(rules_file())]},
            }
        )
    )
    return path


def _start(command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    with log.open("ab") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "stampline", "-v", command, "--config", str(config)],
            stderr=stderr,
            env=env,
        )


def _gate(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return _start("gate", config, log)


def _count(bootstrap: str, topic: str) -> int:
    return len(read_committed(bootstrap, topic, 0, idle_s=0.3))


def _redriven(i: int) -> list[tuple[str, bytes | None]]:
    """Headers of a dead letter fed back into the raw topic after a fix: an earlier gate's
    ``__connect.errors.*`` set naming another topic (and, now and then, a hostile value)."""
    return [
        ("__connect.errors.topic", b"md.raw.old"),
        ("__connect.errors.partition", b"abc" if i % 7 == 0 else b"4"),
        ("__connect.errors.offset", str(i).encode()),
        ("stampline.rule.id", b"price.positive"),
        ("stampline.reason", b"price 0 is not positive"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("redriven", [False, True], ids=["fresh", "redriven"])
def test_sigkill_mid_stream_then_restart_gives_every_event_exactly_once(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path, redriven: bool
) -> None:
    """Each input event is in the clean or DLQ topic once (read_committed) and in the trail
    once, after the gate was SIGKILLed while records were flowing and then restarted; also
    when the inputs are re-driven dead letters carrying an earlier gate's headers. The
    restarted gate's counts add up and its recovered events keep ordered stamps."""
    topics = make_topics("raw", "clean", "dlq", "trail", "heads")
    raw, clean, dlq, trail_topic, _ = topics
    config = _config(tmp_path, bootstrap, topics, f"{uid}-gate")
    records = [
        (
            None,
            b"{broken" if i % BAD_EVERY == 0 else orjson.dumps(quote("alpha", i, ts=now_ms())),
            _redriven(i) if redriven else [],
        )
        for i in range(N)
    ]
    half = N // 6
    produce(bootstrap, raw, records[:half])

    def feed() -> None:
        for i in range(half, N, 100):
            produce(bootstrap, raw, records[i : i + 100])
            time.sleep(0.1)

    feeder = threading.Thread(target=feed)
    log = tmp_path / "gate.log"
    first = _gate(config, log)
    try:
        deadline = time.monotonic() + 90
        while _count(bootstrap, clean) < half // 2:  # the gate is in the group and writing
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first gate forwarded nothing"
        feeder.start()
        time.sleep(2.0)  # mid-stream: records keep arriving, some written since the last commit
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    feeder.join(120)
    second = _gate(config, log)
    try:
        bad = len(range(0, N, BAD_EVERY))
        forwarded = read_committed(bootstrap, clean, N - bad, idle_s=2.0)
        dead = read_committed(bootstrap, dlq, bad, idle_s=0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    stderr = log.read_text()
    assert second.returncode == 0, stderr
    assert "stopped cleanly" in stderr
    # The kill left records written but not committed: the restarted gate found them.
    summary = re.findall(
        r"gate stopped in=(\d+) forwarded=(\d+) dead_lettered=(\d+) recovered=(\d+)", stderr
    )
    assert len(summary) == 1
    took_in, out, dead_count, recovered = map(int, summary[0])
    assert recovered > 0
    assert took_in == out + dead_count, summary
    ids = event_ids(forwarded) + event_ids(dead)
    assert (len(forwarded), len(dead)) == (N - bad, bad)
    assert len(set(ids)) == N, "an event is missing or written twice"
    with ChdbStore(tmp_path / "trail", "stampline") as trail:
        record_until(
            bootstrap,
            trail_topic,
            trail,
            f"{uid}-rec",
            lambda: trail.query("SELECT count() AS n FROM {db}.trail")[0]["n"] >= N,
        )
        report = trail.verify()
        assert report.ok, report.findings
        (row,) = trail.query(
            "SELECT count() AS n, uniqExact(event_id) AS ids, "
            "countIf(outcome = 'dead_lettered') AS dead FROM {db}.trail"
        )
        (dl,) = trail.query(
            "SELECT uniqExact(topic, partition, offset) AS n FROM {db}.dead_letters"
        )
        (disorder,) = trail.query(
            "SELECT countIf(ingested > received OR received > emitted) AS n FROM {db}.trail"
        )
        # Every gate row, the recovered ones too, keeps the broker timestamp's type (the
        # embedded broker gives CreateTime): a recovered row takes it from the re-read record.
        (typed,) = trail.query(
            "SELECT groupUniqArray(toString(broker_time_type)) AS types, count() AS n "
            "FROM {db}.observations WHERE authority = 2"
        )
    assert disorder["n"] == 0, "a trail row's stamps are out of order"
    assert typed["types"] == ["CreateTime"], typed
    assert typed["n"] >= N, typed
    assert row == {"n": N, "ids": N, "dead": bad}
    assert dl["n"] == bad


@pytest.mark.slow
def test_sigkill_of_the_recorder_mid_stream_then_restart_writes_every_row_once(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """A recorder process SIGKILLed at a random point while writing, then restarted, leaves
    every trail row in the store exactly once (no row lost, none doubled) and the chain
    intact."""
    topics = make_topics("raw", "clean", "dlq", "trail", "heads")
    raw, clean, _dlq, trail_topic, _ = topics
    config = _config(tmp_path, bootstrap, topics, f"{uid}-gate", flush="100ms", flush_rows=150)
    records = [
        (None, b"{broken" if i % BAD_EVERY == 0 else orjson.dumps(quote("alpha", i, ts=now_ms())))
        for i in range(N)
    ]
    produce(bootstrap, raw, records)
    bad = len(range(0, N, BAD_EVERY))
    log = tmp_path / "run.log"
    gate = _gate(config, log)
    try:
        read_committed(bootstrap, clean, N - bad, idle_s=0.5)
    finally:
        gate.send_signal(signal.SIGTERM)
        gate.wait(60)
    assert gate.returncode == 0, log.read_text()
    recorder = _start("recorder", config, log)
    try:
        deadline = time.monotonic() + 90
        # Some chains have entries: the recorder is writing. Then a random moment later, kill.
        while "chain head" not in log.read_text():
            assert recorder.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the recorder wrote nothing"
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.5))
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
    assert recorder.returncode == -signal.SIGKILL
    again = _start("recorder", config, log)
    try:
        # In the group (its SIGTERM handler set: a busy machine takes seconds to start it),
        # then a few seconds of writing: then SIGTERM, which commits and exits.
        deadline = time.monotonic() + 90
        while log.read_text().count("recorder assigned") < 2:
            assert again.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the restarted recorder joined no group"
            time.sleep(0.05)
        time.sleep(3.0)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(60)
    assert again.returncode == 0, log.read_text()
    assert "recorder: stopped cleanly" in log.read_text()
    with ChdbStore(tmp_path / "trail", "stampline") as trail:
        # Whatever the restarted one did not reach, the group's next member writes.
        record_until(
            bootstrap,
            trail_topic,
            trail,
            f"{uid}-gate-rec",
            lambda: trail.query("SELECT count() AS n FROM {db}.observations")[0]["n"] >= N,
        )
        time.sleep(0.5)
        report = trail.verify()
        (row,) = trail.query(
            "SELECT count() AS n, uniqExact(event_id) AS ids, "
            "countIf(outcome = 'dead_lettered') AS dead FROM {db}.observations"
        )
        (dl,) = trail.query("SELECT count() AS n FROM {db}.dead_letters")
    assert report.ok, report.findings
    assert row == {"n": N, "ids": N, "dead": bad}, "a trail row is missing or written twice"
    assert dl["n"] == bad
