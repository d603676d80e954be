"""Whose clock ``broker_time`` is: Kafka's timestamp type codes to the trail's names, and
migration 032 on a store written before it (old rows read as not recorded, every chain
written before still verifies, the type of a row written after it is tamper-evident)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from stampline.audit import (
    BROKER_TIME_TYPES,
    ChdbStore,
    Observation,
    _schema,
    _store,
    broker_clock,
    broker_time_type,
    canonical_table,
)
from stampline.audit._ledger import CANONICAL, SORT_KEYS
from stampline.audit._queries import broker_time_types
from stampline.audit._trailformat import CANONICAL_SCHEMA
from stampline.collectors._gate import _TIME_TYPES
from tests.helpers import drop_database


def test_kafka_timestamp_type_codes_map_to_the_trail_names() -> None:
    """0 (none) is '', 1 is CreateTime, 2 is LogAppendTime, a code Kafka lacks is ''; the
    gate's per-record table says the same."""
    assert [broker_time_type(c) for c in (0, 1, 2, 3, -1)] == [
        "",
        "CreateTime",
        "LogAppendTime",
        "",
        "",
    ]
    assert _TIME_TYPES == {0: "", 1: "CreateTime", 2: "LogAppendTime"}
    assert BROKER_TIME_TYPES == ("", "CreateTime", "LogAppendTime")
    assert broker_clock("LogAppendTime") == "LogAppendTime: the broker's clock"
    assert broker_clock("CreateTime") == "CreateTime: the producer's clock"
    assert broker_clock("") == "timestamp type not recorded"


def test_a_figure_over_several_types_says_which() -> None:
    """One type is named as it is; several are "mixed", naming each ('' as not recorded)."""
    assert broker_time_types(["CreateTime", "CreateTime"]) == "CreateTime"
    assert broker_time_types([""]) == ""
    mixed = broker_time_types(["LogAppendTime", "", "CreateTime"])
    assert mixed == "mixed: not recorded, CreateTime, LogAppendTime"
    assert broker_clock(mixed).startswith(mixed + ": ")


def _rows(n: int, first: int, kind: str = "") -> list[Observation]:
    now = time.time_ns()
    return [
        Observation(
            str(uuid.uuid4()), "gate", now + i, now + i + 5, now - 9_000_000, now - 1, 100,
            topic="md.raw", partition=0, offset=first + i, broker_time_ms=now // 1_000_000 - 3,
            provider="alpha", outcome="forwarded", prev_stage="origin",
            prev_emitted_ns=now - 9_000_000, broker_time_type=kind,  # type: ignore[arg-type]
        )
        for i in range(n)
    ]  # fmt: skip


_ORIGINAL = _schema.migrations


def test_a_store_written_before_migration_032_gains_the_column_and_still_verifies(
    chdb_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store migrated to 031 and written as the previous version wrote (no type column,
    ledger entries without it) is migrated: the column appears, old rows read '', their
    batches verify over the columns they were chained with; a batch written after carries
    its type, joins the digest with it, and a type changed later is named by verify."""
    database = f"old_{uuid.uuid4().hex[:10]}"
    old_schema = CANONICAL_SCHEMA.remove(CANONICAL_SCHEMA.get_field_index("broker_time_type"))
    old_inserts = dict(_store._INSERTS)
    names, select = old_inserts["observations"]
    old_inserts["observations"] = (
        names.replace(", broker_time_type", ""),
        select.replace(", broker_time_type", ""),
    )
    with monkeypatch.context() as old:
        old.setattr(_schema, "migrations", lambda: [m for m in _ORIGINAL() if m.version < 32])
        old.setattr(_store, "_INSERTS", old_inserts)
        old.setattr(
            _store,
            "_KINDS",
            {**_store._KINDS, "observations": (CANONICAL[:-1], SORT_KEYS, old_schema)},
        )
        with ChdbStore(chdb_dir, database) as before:
            assert "032_broker_time_type" not in _applied(before)
            assert "broker_time_type" not in _columns(before)
            before.write_observation_table(canonical_table(_rows(5, 0)))
            (entry,) = before.query("SELECT mapKeys(columns) AS names FROM {db}.ledger")
            assert "broker_time_type" not in entry["names"]
    with ChdbStore(chdb_dir, database) as store:
        try:
            assert "032_broker_time_type" in _applied(store)
            assert "broker_time_type" in _columns(store)
            old_rows = store.query("SELECT toString(broker_time_type) AS t FROM {db}.observations")
            assert [r["t"] for r in old_rows] == [""] * 5
            viewed = store.query("SELECT toString(broker_time_type) AS t FROM {db}.trail")
            assert [r["t"] for r in viewed] == [""] * 5
            assert store.verify().ok
            store.write_observation_table(canonical_table(_rows(3, 10, "LogAppendTime")))
            entries = store.query(
                "SELECT seq, has(mapKeys(columns), 'broker_time_type') AS has FROM {db}.ledger "
                "ORDER BY seq"
            )
            assert [(r["seq"], r["has"]) for r in entries] == [(1, 0), (2, 1)]
            report = store.verify()
            assert report.ok, report.findings
            store._execute(
                f"ALTER TABLE {store.database}.observations UPDATE broker_time_type = "
                "'CreateTime' WHERE offset = 10 SETTINGS mutations_sync = 2"
            )
            report = store.verify()
            assert [(f.seq, f.problem, f.columns) for f in report.findings] == [
                (2, "changed", ("broker_time_type",))
            ]
        finally:
            drop_database(store)


def _applied(store: ChdbStore) -> set[str]:
    return {
        f"{r['version']:03d}_{r['name']}"
        for r in store.query("SELECT version, name FROM {db}.schema_migrations FINAL")
    }


def _columns(store: ChdbStore) -> set[str]:
    return {
        r["name"]
        for r in store.query(
            "SELECT name FROM system.columns WHERE database = {d:String} "
            "AND table = 'observations'",
            {"d": store.database},
        )
    }
