"""No trail message stops the recorder: one holding a value the store cannot keep, or too
many rows, is set aside as a dead letter of the trail with the reason, and every partition
goes on (through `stampline recorder`, a process of its own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition

from stampline.audit import ChdbStore, canonical_table
from stampline.collectors._stamps import UNREADABLE_HEADERS
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
    wait_assigned,
)
from tests.rawheaders import produce_raw_headers

# (what is wrong, the message) -- each passes the trail format's column check
BAD: list[tuple[str, Callable[[], Message]]] = [
    ("outcome", lambda: message("observations", observations(4, 0, 0, outcome="weird"))),
    ("parents", lambda: message("observations", observations(4, 0, 0, parents="nope"))),
    ("parent_stamps", lambda: message("observations", observations(4, 0, 0, parent_stamps="g/x"))),
    ("event_id", lambda: message("observations", observations(4, 0, 0, event_id="abc"))),
    ("partition", lambda: message("observations", observations(4, 0, 0, partition=2**31))),
    ("clock_err_ns", lambda: message("observations", observations(4, 0, 0, clock_err_ns=-1))),
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


DAY_NS = 86_400 * 10**9


def _over_101_days(raw_partition: int) -> Message:
    """An observations message every value of which the pre-insert check accepts, whose rows'
    times span 101 days: more day partitions than one insert may create, so the store itself
    refuses it (``Code: 252``, "Too many partitions for single INSERT block")."""
    table = observations(101, raw_partition, 5000)
    first = time.time_ns() - 101 * DAY_NS
    received = pa.array([first + k * DAY_NS for k in range(101)], pa.int64())
    table = table.set_column(table.schema.get_field_index("received"), "received", received)
    return message("observations", table)


def _verify_cli(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    return subprocess.run(
        [sys.executable, "-m", "stampline", "audit", "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _set_aside(store: Path, trail: str) -> list[dict[str, object]]:
    with ChdbStore(store, "stampline") as s:
        return s.query(
            "SELECT partition, offset, rule_id, reason FROM {db}.dead_letters "
            "WHERE topic = {t:String} ORDER BY partition, offset",
            {"t": trail},
        )


@pytest.mark.slow
def test_a_message_the_store_itself_refuses_is_set_aside_and_every_partition_goes_on(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """A message that passes the pre-insert check but that the store refuses for its content,
    between dead-letter messages of the same partition, becomes one `trail.value` dead letter
    with the store's reason; every other message of its partition (before and after it, of
    either kind) and of the other partitions is written once, nothing is retried, and
    `audit verify` passes."""
    (trail,) = make_topics("trail", partitions=3)
    obs = lambda p, i: message("observations", observations(10, p, i * 10))  # noqa: E731
    dead = lambda p, i: message("dead_letters", dead_letters(3, p, i * 10))  # noqa: E731
    send(bootstrap, trail, 0, [obs(0, 0), dead(0, 1), _over_101_days(0), obs(0, 3)])
    send(bootstrap, trail, 1, [dead(1, 0), _over_101_days(1), dead(1, 2), obs(1, 3)])
    send(bootstrap, trail, 2, [obs(2, i) for i in range(3)])
    config = recorder_config(tmp_path, bootstrap, trail, f"{uid}-r", "store")
    log = tmp_path / "recorder.log"
    _run_until_caught_up(config, log, bootstrap, trail, f"{uid}-r", [4, 4, 3])
    assert "store write failed" not in log.read_text()
    aside = _set_aside(tmp_path / "store", trail)
    assert [(a["partition"], a["offset"], a["rule_id"]) for a in aside] == [
        (0, 2, "trail.value"),
        (1, 1, "trail.value"),
    ]
    for a in aside:
        assert "the store refused the batch" in str(a["reason"])
        assert "Too many partitions for single INSERT block" in str(a["reason"])
    with ChdbStore(tmp_path / "store", "stampline") as s:
        (rows,) = s.query("SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.observations")
        gate = s.query(
            "SELECT partition, count() AS n FROM {db}.dead_letters WHERE topic = 'md.raw' "
            "GROUP BY partition ORDER BY partition"
        )
    assert rows == {"n": 10 * 6, "ids": 10 * 6}
    assert gate == [{"partition": 0, "n": 3}, {"partition": 1, "n": 6}]
    verified = _verify_cli(config)
    assert verified.returncode == 0, verified.stdout + verified.stderr


# A `stampline recorder` SIGKILLed at one moment, the rows of a batch stored and its ledger
# entry not: "at the set-aside", the dead letter of a message the store refused; "after the
# set-aside", the first observations batch written after it.
KILLED_AROUND_A_SET_ASIDE = """
import os, signal, sys
from stampline.audit import ChdbStore
insert = ChdbStore._insert
moment = sys.argv[2]
aside = False

def inserting(self, table_name, columns, select, table, token):
    global aside
    if table_name == "ledger":
        kind = table.column("kind")[0].as_py()
        if kind == "dead_letters" and moment == "at the set-aside":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "observations" and aside and moment == "after the set-aside":
            os.kill(os.getpid(), signal.SIGKILL)
        aside = aside or kind == "dead_letters"
    insert(self, table_name, columns, select, table, token)

ChdbStore._insert = inserting
sys.argv = ["stampline", "-v", "recorder", "--config", sys.argv[1]]
from stampline.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize(("moment", "batch"), [("at the set-aside", 2), ("after the set-aside", 3)])
def test_a_kill_around_a_set_aside_completes_the_batch_and_every_partition_goes_on(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    uid: str,
    tmp_path: Path,
    moment: str,
    batch: int,
) -> None:
    """A recorder killed between the rows and the ledger entry of a message's set-aside (the
    store refused it), or of the batch after it, then restarted, completes that batch, the
    set-aside message counted as what it became: every good message of both partitions is
    written once, the refused one is dead-lettered once with the store's reason, and `audit
    verify` passes."""
    (trail,) = make_topics("trail", partitions=2)
    obs = lambda p, i: message("observations", observations(10, p, i * 10))  # noqa: E731
    send(bootstrap, trail, 0, [obs(0, 0), _over_101_days(0), obs(0, 2), obs(0, 3)])
    send(bootstrap, trail, 1, [obs(1, i) for i in range(3)])
    config = recorder_config(tmp_path, bootstrap, trail, f"{uid}-r", "store")
    log = tmp_path / "recorder.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    with log.open("ab") as stderr:
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_AROUND_A_SET_ASIDE, str(config), moment],
            stderr=stderr,
            env=env,
            timeout=180,
            check=False,
        )
    assert killed.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    # The moment the fault needs: the set-aside message is still past the committed offset,
    # so the restarted recorder reads it again while completing the orphan batch.
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{uid}-r"})
    (committed,) = reader.committed([TopicPartition(trail, 0)], timeout=10)
    reader.close()
    assert committed.offset <= 1
    assert _set_aside(tmp_path / "store", trail)[0]["offset"] == 1
    seen = log.stat().st_size
    recorder = start_recorder(config, log)
    try:
        wait_assigned(recorder, log, seen)
        deadline = time.monotonic() + 120
        while not caught_up(bootstrap, trail, f"{uid}-r", [4, 3]):
            assert recorder.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                "the recorder stopped writing: " + (log.read_text()[seen:][-2000:])
            )
            time.sleep(0.5)
    finally:
        stop(recorder, log)
    after = log.read_text()[seen:]
    assert f"completed batch {batch} of {trail}/0" in after
    assert "store write failed" not in after
    (aside,) = _set_aside(tmp_path / "store", trail)
    assert (aside["partition"], aside["offset"], aside["rule_id"]) == (0, 1, "trail.value")
    assert "the store refused the batch" in str(aside["reason"])
    assert "Too many partitions for single INSERT block" in str(aside["reason"])
    with ChdbStore(tmp_path / "store", "stampline") as s:
        (rows,) = s.query("SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.observations")
    assert rows == {"n": 10 * 6, "ids": 10 * 6}
    verified = _verify_cli(config)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.slow
def test_a_message_whose_header_names_no_client_reads_is_set_aside(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """A message on the trail topic with a header name that is not UTF-8 (not stampline's: a
    producer in C can send one) is set aside as a `trail.format` dead letter saying so, and
    the messages around it are written (before, confluent-kafka's headers() left its error
    pending and the recorder died of it, each restart alike)."""
    (trail,) = make_topics("trail", partitions=1)
    send(bootstrap, trail, 0, [message("observations", observations(10, 0, 0))])
    produce_raw_headers(bootstrap, trail, 0, b"not a trail message", [(b"\xff\xfe", b"v")])
    send(bootstrap, trail, 0, [message("observations", observations(10, 0, 10))])
    config = recorder_config(tmp_path, bootstrap, trail, f"{uid}-r", "store")
    _run_until_caught_up(config, tmp_path / "recorder.log", bootstrap, trail, f"{uid}-r", [3])
    with ChdbStore(tmp_path / "store", "stampline") as s:
        (rows,) = s.query("SELECT count() AS n FROM {db}.observations")
        assert s.verify().ok
    assert rows["n"] == 20
    assert _set_aside(tmp_path / "store", trail) == [
        {"partition": 0, "offset": 1, "rule_id": "trail.format", "reason": UNREADABLE_HEADERS}
    ]
