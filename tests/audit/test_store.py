"""The chDB audit store: schema, writes, idempotency."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stampline.audit import ChdbStore, DeadLetter, Observation, check_database_name
from stampline.audit._schema import statements


def obs(
    eid: str, stage: str = "gate", t: int = 1_700_000_000_123_456_789, **over: object
) -> Observation:
    fields: dict[str, object] = {
        "event_id": eid,
        "stage": stage,
        "received_ns": t,
        "emitted_ns": t + 1_500,
        "origin_ns": t - 2_000_000,
        "ingested_ns": t,
        "clock_err_ns": 1_000_000,
    }
    fields.update(over)
    return Observation(**fields)  # type: ignore[arg-type]


def test_schema_is_applied_idempotently(chdb_dir: Path, uid: str) -> None:
    """Opening a store twice on one database applies the DDL again without error or change."""
    with ChdbStore(chdb_dir, f"idem_{uid}") as first:
        first.write_observations([obs(str(uuid.uuid4()))])
    with ChdbStore(chdb_dir, f"idem_{uid}") as again:
        assert again.query("SELECT count() AS n FROM {db}.observations") == [{"n": 1}]


def test_nanosecond_times_and_every_column_round_trip(store: ChdbStore) -> None:
    """Every observation field is stored as given, times to the nanosecond."""
    eid, parent = str(uuid.uuid4()), str(uuid.uuid4())
    row = obs(
        eid,
        "risk",
        host="h1",
        topic="decisions",
        partition=2,
        offset=41,
        broker_time_ms=1_700_000_000_123,
        provider="alpha",
        instrument="SYM001",
        seq=9,
        outcome="dead_lettered",
        rule_id="price.positive",
        rule_version=3,
        parents=(parent,),
    )
    store.write_observations([row])
    (got,) = store.query(
        """SELECT toString(event_id) AS eid, stage, toUnixTimestamp64Nano(received) AS r,
                  toUnixTimestamp64Nano(emitted) AS e, toUnixTimestamp64Nano(origin) AS o,
                  toUnixTimestamp64Nano(ingested) AS i, clock_err_ns, host, topic, partition,
                  offset,
                  toUnixTimestamp64Milli(broker_time) AS b, provider, instrument, seq,
                  toString(outcome) AS outcome, rule_id, rule_version,
                  arrayMap(p -> toString(p), parents) AS parents
           FROM {db}.observations"""
    )
    assert got == {
        "eid": eid,
        "stage": "risk",
        "r": row.received_ns,
        "e": row.emitted_ns,
        "o": row.origin_ns,
        "i": row.ingested_ns,
        "clock_err_ns": 1_000_000,
        "host": "h1",
        "topic": "decisions",
        "partition": 2,
        "offset": 41,
        "b": 1_700_000_000_123,
        "provider": "alpha",
        "instrument": "SYM001",
        "seq": 9,
        "outcome": "dead_lettered",
        "rule_id": "price.positive",
        "rule_version": 3,
        "parents": [parent],
    }


def test_rewriting_a_batch_does_not_duplicate_rows(store: ChdbStore) -> None:
    """A batch written twice (a retry after a crash) reads back once per (event, stage)."""
    batch = [obs(str(uuid.uuid4()), stage) for _ in range(50) for stage in ("gate", "risk")]
    store.write_observations(batch)
    store.write_observations(batch)
    assert store.query("SELECT count() AS n FROM {db}.observations") == [{"n": 100}]


def test_dead_letters_keep_reason_and_the_head_of_the_payload(store: ChdbStore) -> None:
    """A dead letter stores its rule, reason, full size and the first bytes of the payload."""
    value = b"\xff\x00" + b"x" * 1000
    store.write_dead_letters(
        [
            DeadLetter(
                str(uuid.uuid4()), 1, "md.raw", 0, 5, "alpha", "record.decode", 1, "not JSON", value
            )
        ]
    )
    (row,) = store.query(
        "SELECT rule_id, reason, value_size, length(value_head) AS head FROM {db}.dead_letters"
    )
    assert row == {
        "rule_id": "record.decode",
        "reason": "not JSON",
        "value_size": 1002,
        "head": 256,
    }


def test_empty_batches_are_a_no_op(store: ChdbStore) -> None:
    """Writing nothing writes nothing and raises nothing."""
    store.write_observations([])
    store.write_dead_letters([])
    assert store.query("SELECT count() AS n FROM {db}.observations") == [{"n": 0}]


@pytest.mark.parametrize("name", ["1abc", "a-b", "a;DROP", "", "x" * 64, "stampline\n"])
def test_unsafe_database_names_are_refused(name: str) -> None:
    """Database names are interpolated into DDL, so anything needing quotes is refused."""
    with pytest.raises(ValueError, match="database name"):
        check_database_name(name)
    with pytest.raises(ValueError, match="database name"):
        statements(name)
