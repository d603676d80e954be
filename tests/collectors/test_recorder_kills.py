"""Exactly once under any kill: a `stampline recorder` SIGKILLed again and again at random
moments, on several trail partitions, stores every trail message once and `audit verify`
passes, with the same figures as a recorder that was never killed."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stampline.audit import ChdbStore
from tests.collectors import trailmsgs as tm

PARTITIONS = 4
MESSAGES = 40  # per partition: observations, and every fourth a dead-letter message
ROWS = 25
KILLS = 20


def _figures(path: Path) -> dict[str, Any]:
    """What the store holds, as a reader would count it."""
    with ChdbStore(path, "stampline") as s:
        report = s.verify()
        return {
            "ok": report.ok,
            "findings": [f.to_dict() for f in report.findings],
            "rows": s.query(
                "SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.observations"
            )[0],
            "dead": s.query(
                "SELECT rule_id, count() AS n, uniqExact(topic, partition, offset) AS at "
                "FROM {db}.dead_letters GROUP BY rule_id ORDER BY rule_id"
            ),
            "hops": s.query(
                "SELECT provider, sum(hops) AS n FROM {db}.hop_latency_1m "
                "GROUP BY provider ORDER BY provider"
            ),
        }


@pytest.mark.slow
@pytest.mark.timeout(900)  # twenty-two recorder processes, each ~10 s to start here
def test_recorder_killed_twenty_times_writes_every_message_once(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """Twenty SIGKILLs at random moments while the recorder writes four trail partitions
    leave every row stored once, verify passing and the figures of an unkilled run."""
    (trail,) = make_topics("trail", partitions=PARTITIONS)
    for p in range(PARTITIONS):
        tm.send(
            bootstrap,
            trail,
            p,
            [
                tm.message("dead_letters", tm.dead_letters(3, p, i * 10))
                if i % 4 == 3
                else tm.message("observations", tm.observations(ROWS, p, i * 100))
                for i in range(MESSAGES)
            ],
        )
    # small groups: many writes, so the kills land between rows and ledger entries too
    killed = tm.recorder_config(tmp_path, bootstrap, trail, f"{uid}-k", "killed", consume_batch=3)
    log = tmp_path / "killed.log"
    rng = random.Random()
    for _ in range(KILLS):
        seen = log.stat().st_size if log.exists() else 0
        recorder = tm.start_recorder(killed, log)
        try:
            tm.wait_assigned(recorder, log, seen)
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            recorder.send_signal(signal.SIGKILL)
            recorder.wait(30)
        assert recorder.returncode == -signal.SIGKILL
    seen = log.stat().st_size
    last = tm.start_recorder(killed, log)
    try:
        # the killed ones may have written everything: caught up at once, stopped at once
        tm.wait_assigned(last, log, seen)
        deadline = time.monotonic() + 180
        while not tm.caught_up(bootstrap, trail, f"{uid}-k", [MESSAGES] * PARTITIONS):
            assert last.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the recorder did not catch up"
            time.sleep(0.5)
    finally:
        tm.stop(last, log)
    clean = tm.recorder_config(tmp_path, bootstrap, trail, f"{uid}-c", "clean")
    once = tm.start_recorder(clean, tmp_path / "clean.log")
    try:
        tm.wait_assigned(once, tmp_path / "clean.log", 0)
        deadline = time.monotonic() + 180
        while not tm.caught_up(bootstrap, trail, f"{uid}-c", [MESSAGES] * PARTITIONS):
            assert time.monotonic() < deadline, "the unkilled recorder did not catch up"
            time.sleep(0.5)
    finally:
        tm.stop(once, tmp_path / "clean.log")
    after_kills, unkilled = _figures(tmp_path / "killed"), _figures(tmp_path / "clean")
    expected_rows = PARTITIONS * (MESSAGES - MESSAGES // 4) * ROWS
    assert after_kills["ok"], after_kills["findings"]
    assert after_kills["rows"] == {"n": expected_rows, "ids": expected_rows}
    assert after_kills == unkilled
    print("batches completed after a kill:", log.read_text().count("completed batch"))
