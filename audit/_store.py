"""What every store backend shares: the SQL, the write path, the ledger, verification.

A backend supplies four primitives (run a statement, select rows as dicts, select an Arrow
table, insert an Arrow table through a SELECT); everything else is the same SQL on chDB and
on a ClickHouse server.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from audit._ledger import (
    CANONICAL,
    CANONICAL_ORDER,
    CANONICAL_SELECT,
    GENESIS,
    BatchFinding,
    VerifyReport,
    chain,
    digest_batch,
)
from audit._model import DeadLetter, Observation
from audit._schema import MigrationReport, Retention, apply_migrations, check_database_name
from audit.exceptions import StoreError

_VALUE_HEAD_BYTES = 256

# The canonical Arrow table (what the ledger digests) to the observations table's stored
# columns: emitted, prev_emitted, ingested and broker_time are stored as Int64 offsets (see
# sql/001_trail.sql), computed with the same wrapping arithmetic the ALIAS columns undo.
_OBS_COLUMN_SELECT = (
    ("event_id", "toUUID(event_id)"),
    ("stage", "stage"),
    ("prev_stage", "prev_stage"),
    ("received", "fromUnixTimestamp64Nano(received, 'UTC')"),
    ("stage_ns", "emitted - received"),
    ("hop_ns", "received - prev_emitted"),
    ("origin", "fromUnixTimestamp64Nano(origin, 'UTC')"),
    ("ingest_ns", "ingested - origin"),
    ("clock_err_ns", "clock_err_ns"),
    ("prev_clock_err_ns", "prev_clock_err_ns"),
    ("host", "host"),
    ("topic", "topic"),
    ("partition", "partition"),
    ("offset", "offset"),
    ("broker_lag_ms", "broker_time - intDiv(received, 1000000)"),
    ("provider", "provider"),
    ("instrument", "instrument"),
    ("seq", "seq"),
    ("price", "reinterpretAsFloat64(price)"),
    ("outcome", "outcome"),
    ("rule_id", "rule_id"),
    ("rule_version", "rule_version"),
    (
        "parents",
        "if(parents = '', [], "
        "CAST(arrayFilter(p -> p != '', splitByChar(',', parents)) AS Array(UUID)))",
    ),
    ("authority", "authority"),
    ("clock_source", "clock_source"),
    ("warnings", "warnings"),
    ("batch", "toUInt64({batch})"),
)
_OBS_COLUMNS = ", ".join(name for name, _ in _OBS_COLUMN_SELECT)
_OBS_SELECT = ", ".join(expr for _, expr in _OBS_COLUMN_SELECT)


def canonical_table(rows: Sequence[Observation]) -> pa.Table:
    """Observations as the canonical Arrow table the store writes and the ledger digests."""
    i64 = pa.int64()
    return pa.table(
        {
            "event_id": [r.event_id.lower() for r in rows],
            "stage": [r.stage for r in rows],
            "prev_stage": [r.prev_stage for r in rows],
            "received": pa.array([r.received_ns for r in rows], i64),
            "emitted": pa.array([r.emitted_ns for r in rows], i64),
            "prev_emitted": pa.array([r.prev_emitted_ns for r in rows], i64),
            "origin": pa.array([r.origin_ns for r in rows], i64),
            "ingested": pa.array([r.ingested_ns for r in rows], i64),
            "clock_err_ns": pa.array([r.clock_err_ns for r in rows], i64),
            "prev_clock_err_ns": pa.array([r.prev_clock_err_ns for r in rows], i64),
            "host": [r.host for r in rows],
            "topic": [r.topic for r in rows],
            "partition": pa.array([r.partition for r in rows], i64),
            "offset": pa.array([r.offset for r in rows], i64),
            "broker_time": pa.array([r.broker_time_ms for r in rows], i64),
            "provider": [r.provider for r in rows],
            "instrument": [r.instrument for r in rows],
            "seq": pa.array([r.seq for r in rows], i64),
            "price": pa.array(np.array([r.price for r in rows], dtype="<f8").view("<i8"), i64),
            "outcome": [r.outcome for r in rows],
            "rule_id": [r.rule_id for r in rows],
            "rule_version": pa.array([r.rule_version for r in rows], i64),
            "parents": [",".join(p.lower() for p in r.parents) for r in rows],
            "authority": pa.array([r.authority for r in rows], i64),
            "clock_source": [r.clock_source for r in rows],
            "warnings": [",".join(r.warnings) for r in rows],
        },
        schema=CANONICAL_SCHEMA,
    )


CANONICAL_SCHEMA = pa.schema(
    [(name, pa.int64() if kind == "int" else pa.string()) for name, _, kind in CANONICAL]
)


def insert_settings(token: str | None) -> dict[str, Any]:
    """Settings for an insert: the batch's deduplication token, if any, and the rollup views
    fed side by side (they cost about as much as the trail's own write)."""
    settings: dict[str, Any] = {"parallel_view_processing": 1}
    if token:
        settings["insert_deduplication_token"] = token
    return settings


class Store(ABC):
    """The audit store: trail, dead letters, ledger. Thread-safe: writes are serialised.

    Every observation batch is written once: its digest is the insert's deduplication token
    and is looked up in the ledger first, so a retried batch (same rows) is a no-op.
    """

    backend: str = ""

    def __init__(self, database: str, retention: Retention | None) -> None:
        self.database = check_database_name(database)
        self.retention = retention or Retention()
        self._write_lock = threading.Lock()

    # -- what a backend provides -------------------------------------------------------------

    @abstractmethod
    def _execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> None: ...

    @abstractmethod
    def _rows(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _arrow(self, sql: str, params: Mapping[str, Any] | None) -> pa.Table: ...

    @abstractmethod
    def _insert(
        self, table_name: str, columns: str, select: str, table: pa.Table, token: str | None
    ) -> None:
        """``INSERT INTO db.table_name (columns) SELECT select FROM <table>``."""

    @abstractmethod
    def close(self) -> None: ...

    # -- schema --------------------------------------------------------------------------------

    def migrate(self) -> MigrationReport:
        """Apply every migration this database lacks (idempotent), and the retention TTLs.

        Raises:
            StoreError: a statement failed, or an applied migration has been edited since.
        """
        return apply_migrations(
            self._execute, lambda sql: self._rows(sql, None), self.database, self.retention
        )

    # -- reading -------------------------------------------------------------------------------

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts. ``{db}`` names this store's database."""
        return self._rows(sql.replace("{db}", self.database), params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a SELECT and return an Arrow table. ``{db}`` names this store's database."""
        return self._arrow(sql.replace("{db}", self.database), params)

    # -- writing -------------------------------------------------------------------------------

    def write_observations(self, rows: Sequence[Observation]) -> None:
        """Write a batch of observations once, whatever the number of retries."""
        if rows:
            self.write_observation_table(canonical_table(rows))

    def write_observation_table(self, canon: pa.Table) -> int:
        """Write a canonical Arrow table (see ``canonical_table``) as one ledgered batch.

        Returns the batch's ledger number (the existing one if it was written before).
        """
        if canon.num_rows == 0:
            return 0
        canon = canon.select(CANONICAL_SCHEMA.names).cast(CANONICAL_SCHEMA)
        digest, columns = digest_batch(canon)
        with self._write_lock:
            known = self._rows(
                f"SELECT seq FROM {self.database}.batch_ledger WHERE digest = {{d:String}}",
                {"d": digest},
            )
            if known:
                return int(known[0]["seq"])
            head = self._rows(
                f"SELECT seq, chain FROM {self.database}.batch_ledger ORDER BY seq DESC LIMIT 1",
                None,
            )
            seq = int(head[0]["seq"]) + 1 if head else 1
            prev = head[0]["chain"] if head else GENESIS
            self._insert("observations", _OBS_COLUMNS, _OBS_SELECT.format(batch=seq), canon, digest)
            received = canon.column("received").to_numpy()
            ledger = pa.table(
                {
                    "seq": pa.array([seq], pa.uint64()),
                    "rows": pa.array([canon.num_rows], pa.uint64()),
                    "first": pa.array([int(received.min())], pa.int64()),
                    "last": pa.array([int(received.max())], pa.int64()),
                    "digest": [digest],
                    "names": pa.array([list(columns)], pa.list_(pa.string())),
                    "digests": pa.array([list(columns.values())], pa.list_(pa.string())),
                    "prev": [prev],
                    "chain": [chain(prev, digest)],
                }
            )
            self._insert(
                "batch_ledger",
                "seq, written, rows, first_received, last_received, digest, columns, "
                "prev_chain, chain",
                "seq, now64(6), rows, fromUnixTimestamp64Nano(first, 'UTC'), "
                "fromUnixTimestamp64Nano(last, 'UTC'), digest, mapFromArrays(names, digests), "
                "prev, chain",
                ledger,
                None,
            )
            return seq

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        """Insert a batch of dead letters (idempotent per source topic/partition/offset) and
        warn verdicts (``severity="warn"``: into ``warnings``, idempotent per record and rule)."""
        warned = [r for r in rows if r.severity == "warn"]
        if warned:
            self._write_warnings(warned)
            rows = [r for r in rows if r.severity != "warn"]
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
                "value_size": pa.array(
                    [len(r.value) if r.value_size is None else r.value_size for r in rows],
                    pa.uint64(),
                ),
                "value_head": pa.array([r.value[:_VALUE_HEAD_BYTES] for r in rows], pa.binary()),
            }
        )
        with self._write_lock:
            self._insert(
                "dead_letters",
                ", ".join(table.column_names),
                "toUUID(event_id), fromUnixTimestamp64Nano(received, 'UTC'), topic, partition, "
                "offset, provider, rule_id, rule_version, reason, value_size, value_head",
                table,
                None,
            )

    def _write_warnings(self, rows: Sequence[DeadLetter]) -> None:
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
            }
        )
        with self._write_lock:
            self._insert(
                "warnings",
                ", ".join(table.column_names),
                "toUUID(event_id), fromUnixTimestamp64Nano(received, 'UTC'), topic, partition, "
                "offset, provider, rule_id, rule_version, reason",
                table,
                None,
            )

    # -- verification --------------------------------------------------------------------------

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Recompute every batch's digest from the stored rows, and the chain from the digests.

        A batch whose rows are past the raw retention is reported as expired, not tampered.
        """
        ledger = self._rows(
            f"""SELECT seq, rows, digest, columns, prev_chain, chain,
                   toUnixTimestamp64Nano(written) AS written_ns
                FROM {self.database}.batch_ledger FINAL ORDER BY seq""",
            None,
        )
        counts = {
            int(r["batch"]): int(r["n"])
            for r in self._rows(
                f"SELECT batch, count() AS n FROM {self.database}.observations GROUP BY batch",
                None,
            )
        }
        horizon = self._rows(
            f"SELECT toUnixTimestamp64Nano(now64(9)) - {self.retention.raw_s} * 1000000000 AS h",
            None,
        )[0]["h"]
        findings: list[BatchFinding] = []
        prev, expired, total = GENESIS, 0, 0
        for i, entry in enumerate(ledger, 1):
            seq, expected = int(entry["seq"]), int(entry["rows"])
            found = counts.pop(seq, 0)
            total += found
            if progress is not None:
                progress(i, len(ledger))
            if entry["prev_chain"] != prev or chain(prev, entry["digest"]) != entry["chain"]:
                findings.append(BatchFinding(seq, "chain_broken", expected, found))
            prev = entry["chain"]
            if entry["written_ns"] < horizon and found <= expected:
                expired += 1  # TTL removes old rows; that is retention, not tampering
                continue
            if found == 0 and expected:
                findings.append(BatchFinding(seq, "deleted", expected, 0))
                continue
            canon = self._arrow(
                f"SELECT {CANONICAL_SELECT} FROM {self.database}.observations "
                f"WHERE batch = {seq} ORDER BY {CANONICAL_ORDER}",
                None,
            )
            digest, columns = digest_batch(canon, entry["columns"].keys())
            if digest == entry["digest"]:
                continue
            changed = tuple(k for k, v in columns.items() if entry["columns"].get(k) != v)
            problem = (
                "deleted" if found < expected else "inserted" if found > expected else "changed"
            )
            findings.append(BatchFinding(seq, problem, expected, found, changed))
        findings.extend(
            BatchFinding(batch, "unledgered", 0, n) for batch, n in sorted(counts.items())
        )
        total += sum(counts.values())
        return VerifyReport(len(ledger), total, prev, tuple(findings), expired)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def arrow_structure(table: pa.Table) -> str:
    """ClickHouse column types for an Arrow table's columns (for ``input()``)."""
    names = {
        pa.string(): "String",
        pa.binary(): "String",
        pa.int64(): "Int64",
        pa.int32(): "Int32",
        pa.uint64(): "UInt64",
        pa.uint32(): "UInt32",
        pa.uint8(): "UInt8",
        pa.list_(pa.string()): "Array(String)",
    }
    try:
        return ", ".join(f"{f.name} {names[f.type]}" for f in table.schema)
    except KeyError as exc:
        raise StoreError(f"no ClickHouse type for Arrow type {exc}") from None
