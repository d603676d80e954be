"""The trail a gate sends fits its own producer: a gate configured for small records (its
producer's message.max.bytes follows `gate.max_message_bytes`) that flushes many rows at
once still gets every trail message to the broker."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from stampline.audit import Observation, canonical_table
from stampline.collectors import Limits, producer_config
from stampline.config import load_config
from stampline.demo import rules_file
from stampline.wiring import trail_topic

T0 = 1_700_000_000_000_000_000


def test_a_big_flush_on_a_small_record_limit_reaches_the_broker(
    bootstrap: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    (trail,) = make_topics("trail")
    config = tmp_path / "stampline.yaml"
    config.write_text(
        "version: 1\nbroker: {bootstrap_servers: 'x:1'}\n"
        f"topics: {{raw: [md.raw], clean: md.clean, dead_letter: md.dlq, trail: {trail}}}\n"
        f"rules: {{files: ['{rules_file()}']}}\ngate: {{max_message_bytes: 16384}}\n"
    )
    cfg = load_config(config)
    g = cfg.gate
    limit = Limits(g.max_message_bytes, g.max_key_bytes, g.max_header_bytes).producer_bytes
    # the gate's producer, as collectors.Gate makes it
    producer = Producer(producer_config(bootstrap, {"message.max.bytes": limit}))
    rng = random.Random(7)  # rows that compress about as little as real ones
    rows = canonical_table(
        [
            Observation(
                str(uuid.UUID(bytes=rng.randbytes(16))), "gate",
                T0 + rng.getrandbits(40), T0 + rng.getrandbits(40), T0 - rng.getrandbits(40),
                T0, rng.getrandbits(30), provider=rng.randbytes(8).hex(),
                instrument=rng.randbytes(8).hex(), topic="md.raw", offset=i,
            )
            for i in range(20_000)
        ]
    )  # fmt: skip
    assert rows.nbytes > limit  # one flush larger than the producer takes in one message
    failed: list[Any] = []
    sent = trail_topic(cfg, "gate@test").produce(
        producer, rows, [], lambda err, _m: failed.append(err) if err else None
    )
    assert producer.flush(30) == 0
    assert sent > 1
    assert failed == []
