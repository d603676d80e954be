"""No trail message stops the recorder: one holding a value the store cannot keep, or too
many rows, is set aside as a dead letter of the trail with the reason, and every partition
goes on (through `stampline recorder`, a process of its own)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from stampline.audit import ChdbStore, canonical_table
from tests.collectors.trailmsgs import (
    Message,
    caught_up,
    dead_letters,
    message,
    observations,
    recorder_config,
    send,
    start_recorder,
    stop,
)

# (what is wrong, the message) -- each passes the trail format's column check
BAD: list[tuple[str, Callable[[], Message]]] = [
    ("outcome", lambda: message("observations", observations(4, 0, 0, outcome="weird"))),
    ("parents", lambda: message("observations", observations(4, 0, 0, parents="nope"))),
    ("parent_stamps", lambda: message("observations", observations(4, 0, 0, parent_stamps="g/x"))),
    ("event_id", lambda: message("observations", observations(4, 0, 0, event_id="abc"))),
    ("partition", lambda: message("observations", observations(4, 0, 0, partition=2**31))),
    (
        "appears 2 times",
        lambda: message("dead_letters", pa.concat_tables([dead_letters(1, 0, 9)] * 2)),
    ),
]


def _run_until_caught_up(
    config: Path, log: Path, bootstrap: str, trail: str, group: str, ends: list[int]
) -> None:
    recorder = start_recorder(config, log)
    try:
        deadline = time.monotonic() + 120
        while not caught_up(bootstrap, trail, group, ends):
            assert recorder.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the recorder stopped writing"
            time.sleep(0.5)
    finally:
        stop(recorder, log)


@pytest.mark.slow
def test_values_the_store_cannot_keep_are_set_aside_and_every_partition_goes_on(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """Each message with a bad value becomes one `trail.value` dead letter naming the value,
    every good message before and after it, on its partition and the other, is written, the
    store is never retried, and verify passes."""
    (trail,) = make_topics("trail", partitions=2)
    good = lambda i: message("observations", observations(10, 0, i * 10))  # noqa: E731
    send(bootstrap, trail, 0, [m for i, (_, bad) in enumerate(BAD) for m in (good(i), bad())])
    send(bootstrap, trail, 0, [good(99)])
    send(bootstrap, trail, 1, [good(i) for i in range(5)])
    config = recorder_config(tmp_path, bootstrap, trail, f"{uid}-r", "store")
    log = tmp_path / "recorder.log"
    _run_until_caught_up(config, log, bootstrap, trail, f"{uid}-r", [2 * len(BAD) + 1, 5])
    assert "store write failed" not in log.read_text()
    with ChdbStore(tmp_path / "store", "stampline") as s:
        assert s.verify().ok
        (rows,) = s.query("SELECT count() AS n FROM {db}.observations")
        aside = s.query(
            "SELECT partition, offset, rule_id, reason FROM {db}.dead_letters "
            "WHERE topic = {t:String} ORDER BY offset",
            {"t": trail},
        )
    assert rows["n"] == 10 * (len(BAD) + 1 + 5)
    assert [(a["partition"], a["offset"], a["rule_id"]) for a in aside] == [
        (0, 2 * i + 1, "trail.value") for i in range(len(BAD))
    ]
    for (what, _), a in zip(BAD, aside, strict=True):
        assert what in a["reason"]


def _huge(rows: int) -> Message:
    """One observations message of ``rows`` rows (alike, so it compresses to a few MB)."""
    columns = {
        f.name: (
            pa.array(np.full(rows, 1_700_000_000_000_000_000, dtype=np.int64))
            if f.type == pa.int64()
            else pa.array(["0189a3f6-1c2b-7d3e-8f40-123456789abc"] * rows)
            if f.name == "event_id"
            else pa.array(["forwarded"] * rows)
            if f.name == "outcome"
            else pa.array([""] * rows)
        )
        for f in canonical_table([]).schema
    }
    for name in ("partition", "rule_version", "authority"):
        columns[name] = pa.array(np.zeros(rows, dtype=np.int64))
    return message("observations", pa.table(columns, schema=canonical_table([]).schema))


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_a_two_million_row_message_is_refused_and_memory_stays_bounded(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """A 2,000,000-row trail message is refused unread (a `trail.format` dead letter naming
    its size and the cap), the next message is written, and the recorder's peak resident
    memory stays far below what reading it took (2.1 GB)."""
    (trail,) = make_topics("trail", partitions=1)
    send(bootstrap, trail, 0, [_huge(2_000_000), message("observations", observations(10, 0, 0))])
    config = recorder_config(tmp_path, bootstrap, trail, f"{uid}-r", "store")
    log = tmp_path / "recorder.log"
    recorder = start_recorder(config, log)
    try:
        deadline = time.monotonic() + 120
        while not caught_up(bootstrap, trail, f"{uid}-r", [2]):
            assert recorder.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the recorder stopped writing"
            time.sleep(0.5)
        peak_mb = _vm_hwm_mb(recorder.pid)
    finally:
        stop(recorder, log)
    with ChdbStore(tmp_path / "store", "stampline") as s:
        (rows,) = s.query("SELECT count() AS n FROM {db}.observations")
        (aside,) = s.query("SELECT rule_id, reason FROM {db}.dead_letters")
        assert s.verify().ok
    assert rows["n"] == 10
    assert aside["rule_id"] == "trail.format"
    assert "2,000,000 rows: more than the 100,000" in aside["reason"]
    print(f"recorder peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 1000, f"the recorder peaked at {peak_mb:.0f} MB"
