"""Crafted trail messages for the recorder's tests, produced as a gate or a tap would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from stampline.audit import DeadLetter, Observation, canonical_table, dead_letter_table
from stampline.audit import encode_trail_messages as encode
from stampline.demo import rules_file

Message = tuple[bytes, list[tuple[str, str | bytes | None]]]


def observations(n: int, raw_partition: int, first: int, **over: Any) -> pa.Table:
    """``n`` forwarded sightings of new events by a gate, as the trail carries them."""
    now = time.time_ns()
    rows = [
        Observation(
            str(uuid.uuid4()), "gate", now + i, now + i + 4_000, now - 2_000_000, now - 1_000,
            50_000, host="gw", topic="md.raw", partition=raw_partition, offset=first + i,
            broker_time_ms=now // 1_000_000, provider=f"p{i % 3}", outcome="forwarded",
        )
        for i in range(n)
    ]  # fmt: skip
    table = canonical_table(rows)
    for name, value in over.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pa.array([value] * n, table.schema.field(name).type))
    return table


def dead_letters(n: int, partition: int, first: int) -> pa.Table:
    """``n`` dead letters of the raw topic's ``partition`` from offset ``first``."""
    now = time.time_ns()
    return dead_letter_table(
        [
            DeadLetter(
                str(uuid.uuid4()), now + i, "md.raw", partition, first + i, "p0",
                "price.positive", 1, "price 0 is not positive", b'{"price": 0}',
            )
            for i in range(n)
        ]
    )  # fmt: skip


def message(kind: str, table: pa.Table) -> Message:
    """``table`` as one trail message (value, headers)."""
    (m,) = encode(kind, table, "gate@test", max_bytes=1 << 30)  # type: ignore[arg-type]
    return m.value, m.headers


def send(bootstrap: str, topic: str, partition: int, messages: list[Message]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 200_000_000}
    )
    for value, headers in messages:
        producer.produce(topic, value, b"gate@test", partition=partition, headers=headers)
    assert producer.flush(60) == 0


def recorder_config(
    tmp_path: Path, bootstrap: str, trail: str, group: str, store: str, **recorder: Any
) -> Path:
    path = tmp_path / f"{group}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {
                    "bootstrap_servers": bootstrap,
                    # a killed member leaves the group fast, so its successor joins fast
                    "client": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 500},
                },
                "topics": {"raw": ["md.raw"], "clean": "md.clean", "dead_letter": "md.dlq",
                           "trail": trail, "trail_heads": f"{trail}.heads",
                           "create_missing": False},
                "rules": {"files": [str(rules_file())]},
                "store": {"path": str(tmp_path / store)},
                "recorder": {"group_id": group, "heads_interval": "200ms", **recorder},
            }
        )
    )  # fmt: skip
    return path


def start_recorder(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``stampline recorder`` in a process of its own, its stderr appended to ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "stampline", "-v", "recorder", "--config", str(config)],
            stderr=stderr,
            env=env,
        )


def wait_assigned(process: subprocess.Popen[bytes], log: Path, since: int) -> None:
    """Until the recorder ``process`` logged (past byte ``since`` of ``log``) that it took its
    partitions: a SIGTERM while Python still imports ends it before it can stop cleanly."""
    deadline = time.monotonic() + 90
    while "recorder assigned" not in log.read_text()[since:]:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the recorder joined no group"
        time.sleep(0.05)


def caught_up(bootstrap: str, trail: str, group: str, ends: list[int]) -> bool:
    """Whether ``group`` has committed offset ``ends[p]`` (the end) of each partition ``p``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(trail, p) for p in range(len(ends))]
        committed = c.committed(tps, timeout=10)
        return [tp.offset for tp in committed] == ends
    finally:
        c.close()


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, and the recorder stops cleanly."""
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    assert process.returncode == 0, log.read_text()[-3000:]
