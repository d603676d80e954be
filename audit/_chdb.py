"""The embedded store: chDB (in-process ClickHouse) on a local directory.

chDB allows one data directory per process at a time, so tests share one directory and
isolate themselves by database name.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from audit._model import DeadLetter, Observation
from audit._schema import statements
from audit.exceptions import StoreError

# JSON 64-bit integers unquoted: nanosecond times must come back as numbers.
_JSON_SETTINGS = "SETTINGS output_format_json_quote_64bit_integers = 0"

_VALUE_HEAD_BYTES = 256


class ChdbStore:
    """Audit store on chDB. Thread-safe: calls are serialised by a lock."""

    def __init__(self, path: str | Path, database: str = "stampline") -> None:
        from chdb import session  # imported late: loading the engine takes ~1 s

        self.path = Path(path)
        self.database = database
        self._lock = threading.Lock()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._session = session.Session(str(self.path))
        except Exception as exc:
            raise StoreError(f"cannot open chDB store at {self.path}: {exc}") from exc
        for sql in statements(database):
            self._run(sql)

    def _run(self, sql: str, params: Mapping[str, Any] | None = None, fmt: str = "CSV") -> Any:
        with self._lock:
            try:
                if params:
                    return self._session.query(sql, fmt, params=_param_text(params))
                return self._session.query(sql, fmt)
            except Exception as exc:
                raise StoreError(f"chDB query failed: {exc}\n  in: {sql[:300]}") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts. ``{db}`` names this store's database."""
        text = sql.replace("{db}", self.database) + "\n" + _JSON_SETTINGS
        result = self._run(text, params, fmt="JSONEachRow")
        return [orjson.loads(line) for line in result.bytes().splitlines() if line]

    def write_observations(self, rows: Sequence[Observation]) -> None:
        """Insert a batch of observations (idempotent per (event_id, stage))."""
        if not rows:
            return
        table = pa.table(
            {
                "event_id": [r.event_id for r in rows],
                "stage": [r.stage for r in rows],
                "received": pa.array([r.received_ns for r in rows], pa.int64()),
                "emitted": pa.array([r.emitted_ns for r in rows], pa.int64()),
                "origin": pa.array([r.origin_ns for r in rows], pa.int64()),
                "ingested": pa.array([r.ingested_ns for r in rows], pa.int64()),
                "clock_err_ns": pa.array([r.clock_err_ns for r in rows], pa.uint64()),
                "host": [r.host for r in rows],
                "topic": [r.topic for r in rows],
                "partition": pa.array([r.partition for r in rows], pa.int32()),
                "offset": pa.array([r.offset for r in rows], pa.int64()),
                "broker_time": pa.array([r.broker_time_ms for r in rows], pa.int64()),
                "provider": [r.provider for r in rows],
                "instrument": [r.instrument for r in rows],
                "seq": pa.array([r.seq for r in rows], pa.int64()),
                "outcome": [r.outcome for r in rows],
                "rule_id": [r.rule_id for r in rows],
                "rule_version": pa.array([r.rule_version for r in rows], pa.uint32()),
                "parents": pa.array([list(r.parents) for r in rows], pa.list_(pa.string())),
                "authority": pa.array([r.authority for r in rows], pa.uint8()),
            }
        )
        self._insert(
            "observations",
            "event_id, stage, fromUnixTimestamp64Nano(received), "
            "fromUnixTimestamp64Nano(emitted), fromUnixTimestamp64Nano(origin), "
            "fromUnixTimestamp64Nano(ingested), clock_err_ns, host, topic, partition, offset, "
            "fromUnixTimestamp64Milli(broker_time), provider, instrument, seq, outcome, "
            "rule_id, rule_version, parents, authority",
            table,
        )

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        """Insert a batch of dead letters (idempotent per source topic/partition/offset)."""
        if not rows:
            return
        table = pa.table(
            {
                "event_id": [r.event_id for r in rows],
                "received": pa.array([r.received_ns for r in rows], pa.int64()),
                "topic": [r.topic for r in rows],
                "partition": pa.array([r.partition for r in rows], pa.int32()),
                "offset": pa.array([r.offset for r in rows], pa.int64()),
                "provider": [r.provider for r in rows],
                "rule_id": [r.rule_id for r in rows],
                "rule_version": pa.array([r.rule_version for r in rows], pa.uint32()),
                "reason": [r.reason for r in rows],
                "value_size": pa.array([len(r.value) for r in rows], pa.uint64()),
                "value_head": pa.array([r.value[:_VALUE_HEAD_BYTES] for r in rows], pa.binary()),
            }
        )
        self._insert(
            "dead_letters",
            "event_id, fromUnixTimestamp64Nano(received), topic, partition, offset, provider, "
            "rule_id, rule_version, reason, value_size, value_head",
            table,
        )

    def _insert(self, table_name: str, select: str, table: pa.Table) -> None:
        columns = ", ".join(table.column_names)
        # chDB's Python() table function resolves `table` from the calling frames' locals.
        self._run(
            f"INSERT INTO {self.database}.{table_name} ({columns}) "
            f"SELECT {select} FROM Python(table)"
        )

    def close(self) -> None:
        """Release the engine; the directory stays and can be reopened."""
        with self._lock:
            self._session.close()

    def __enter__(self) -> ChdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _param_text(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters in ClickHouse's text format (chDB would render a list as Python does)."""
    return {k: _literal(v) if isinstance(v, list | tuple) else v for k, v in params.items()}


def _literal(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)
