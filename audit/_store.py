"""What every store backend shares: the SQL, the write path, the ledger, verification.

A backend supplies four primitives (run a statement, select rows as dicts, select an Arrow
table, insert an Arrow table through a SELECT); everything else is the same SQL on chDB and
on a ClickHouse server.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from stampline.audit._batchcheck import check_batch
from stampline.audit._heads import PublishedHead
from stampline.audit._ledger import (
    CANONICAL,
    DEAD_CANONICAL,
    DEAD_SORT_KEYS,
    GENESIS,
    SORT_KEYS,
    LedgerEntry,
    VerifyReport,
    digest_batch,
)
from stampline.audit._model import DeadLetter, Observation, encode_parent_stamps
from stampline.audit._schema import (
    MigrationReport,
    Retention,
    apply_migrations,
    check_database_name,
)
from stampline.audit._trailformat import CANONICAL_SCHEMA, DEAD_LETTER_SCHEMA, dead_letter_table
from stampline.audit.exceptions import BatchRefusedError, StoreError

# ClickHouse error codes that blame an insert's data, not the store: a value that does not
# parse or convert (https://github.com/ClickHouse/ClickHouse/blob/master/src/Common/ErrorCodes.cpp).
# Anything else -- a connection, a disk, memory, a timeout -- is the store's and waits.
_CONTENT_ERRORS = frozenset(
    {6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 376, 407, 691}
)
_CODE = re.compile(r"Code: (\d+)\.")
# TOO_MANY_PARTS (252) is the store's own state ("too many parts": merges behind inserts, it
# waits) except for this one, which the rows alone cause: their times span more day
# partitions than one insert may create (``max_partitions_per_insert_block``, 100).
_TOO_MANY_PARTITIONS = "Code: 252. DB::Exception: Too many partitions for single INSERT block"


def _refused(exc: StoreError) -> bool:
    """Whether a failed insert was refused for its data (see ``_CONTENT_ERRORS``)."""
    text = str(exc)
    found = _CODE.search(text)
    if found is None:
        return False
    return int(found.group(1)) in _CONTENT_ERRORS or _TOO_MANY_PARTITIONS in text


# The chain of direct writes (tests, embedding); the recorder keeps one per trail partition.
LOCAL_CHAIN = "local"


def _parent_part(expr: str) -> str:
    """One array of the parent stamps: ``expr`` over each comma-separated entry ``x``."""
    return f"arrayMap(x -> {expr}, if(parent_stamps = '', [], splitByChar(',', parent_stamps)))"


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
    ("rule_sha256", "rule_sha256"),
    # the canonical "stage/emitted_ns/err_ns,..." text as three aligned arrays ("-": not known)
    ("parent_stage", _parent_part("if(x = '-', '', splitByChar('/', x)[1])")),
    (
        "parent_emitted",
        _parent_part(
            "fromUnixTimestamp64Nano(if(x = '-', 0, toInt64(splitByChar('/', x)[2])), 'UTC')"
        ),
    ),
    ("parent_clock_err_ns", _parent_part("if(x = '-', 0, toUInt64(splitByChar('/', x)[3]))")),
    # text to the Enum8 of migration 032 (check_batch refuses a name it lacks beforehand)
    ("broker_time_type", "broker_time_type"),
    ("batch", "toUInt64({batch})"),
    ("chain_id", "{chain_id}"),
)
_OBS_COLUMNS = ", ".join(name for name, _ in _OBS_COLUMN_SELECT)
_OBS_SELECT = ", ".join(expr for _, expr in _OBS_COLUMN_SELECT)
_DEAD_COLUMNS = (
    "event_id, received, topic, partition, offset, provider, rule_id, rule_version, reason, "
    "value_size, value_head, batch, chain_id"
)
_DEAD_SELECT = (
    "toUUID(event_id), fromUnixTimestamp64Nano(received, 'UTC'), topic, partition, offset, "
    "provider, rule_id, rule_version, reason, value_size, value_head, toUInt64({batch}), "
    "{chain_id}"
)
# The INSERT of each evidence kind: (columns, SELECT over the Arrow table).
_INSERTS = {
    "observations": (_OBS_COLUMNS, _OBS_SELECT),
    "dead_letters": (_DEAD_COLUMNS, _DEAD_SELECT),
}


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last ledger entry of one chain: what its one writer continues from."""

    chain_id: str
    seq: int
    chain: str
    source_offset: int  # the last trail offset written, -1 if none
    # per kind, the last trail offset written: an entry covers a run of one kind's messages,
    # so a re-read message is skipped when its own kind's entries already reach it
    offsets: Mapping[str, int] = field(default_factory=dict)

    def written(self, kind: str, offset: int) -> bool:
        """Whether the trail message of ``kind`` at ``offset`` is already in the chain."""
        return 0 <= offset <= self.offsets.get(kind, -1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain_id,
            "seq": self.seq,
            "head": self.chain,
            "offset": self.source_offset,
        }


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
            "rule_sha256": [",".join(r.rule_sha256) for r in rows],
            "parent_stamps": [encode_parent_stamps(r.parent_stamps) for r in rows],
            "broker_time_type": [r.broker_time_type for r in rows],
        },
        schema=CANONICAL_SCHEMA,
    )


# kind -> (digest columns, digest row order, the table's Arrow schema)
_KINDS: dict[str, tuple[tuple[tuple[str, str, str], ...], tuple[str, ...], pa.Schema]] = {
    "observations": (CANONICAL, SORT_KEYS, CANONICAL_SCHEMA),
    "dead_letters": (DEAD_CANONICAL, DEAD_SORT_KEYS, DEAD_LETTER_SCHEMA),
}


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
        self._written_heads: dict[str, ChainHead] = {}

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
        """Write a canonical Arrow table (see ``canonical_table``) as one ledgered batch of
        the ``local`` chain (direct writes; the recorder writes per trail partition).

        Returns the batch's ledger number (the existing one if it was written before).
        """
        return self.write_batch("observations", canon)

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        """Write a batch of dead letters as one ledgered batch of the ``local`` chain (warn
        verdicts, ``severity="warn"``, go to ``warnings``: see ``write_batch``)."""
        if rows:
            self.write_batch("dead_letters", dead_letter_table(rows))

    def chain_head(self, chain_id: str) -> ChainHead:
        """The last entry of ``chain_id`` (seq 0 and the genesis hash when it has none)."""
        rows = self._rows(
            f"SELECT seq, chain, source_offset FROM {self.database}.ledger "
            "WHERE chain_id = {c:String} ORDER BY seq DESC LIMIT 1",
            {"c": chain_id},
        )
        if not rows:
            return ChainHead(chain_id, 0, GENESIS, -1)
        r = rows[0]
        offsets = {
            k["kind"]: int(k["o"])
            for k in self._rows(
                f"SELECT kind, max(source_offset) AS o FROM {self.database}.ledger "
                "WHERE chain_id = {c:String} GROUP BY kind",
                {"c": chain_id},
            )
        }
        return ChainHead(chain_id, int(r["seq"]), r["chain"], int(r["source_offset"]), offsets)

    def orphan_rows(self, chain_id: str, after_seq: int) -> dict[str, int]:
        """Rows of ``chain_id`` stored under a sequence number past ``after_seq`` (its last
        ledger entry), per kind: a batch whose writer stopped between the rows and the
        entry. Its one writer completes it (the recorder) before writing on."""
        found = {}
        for kind in _INSERTS:
            (row,) = self._rows(
                f"SELECT count() AS n FROM {self.database}.{kind} "
                "WHERE chain_id = {c:String} AND batch > {s:UInt64}",
                {"c": chain_id, "s": after_seq},
            )
            if int(row["n"]):
                found[kind] = int(row["n"])
        return found

    def chain_heads(self) -> list[ChainHead]:
        """The last entry of every chain in the ledger."""
        rows = self._rows(
            # Aliases unlike the columns: ClickHouse would read an alias inside argMax.
            f"SELECT chain_id, max(seq) AS last, argMax(chain, seq) AS head, "
            f"argMax(source_offset, seq) AS off FROM {self.database}.ledger "
            "GROUP BY chain_id ORDER BY chain_id",
            None,
        )
        return [ChainHead(r["chain_id"], int(r["last"]), r["head"], int(r["off"])) for r in rows]

    def write_batch(
        self,
        kind: str,
        table: pa.Table,
        *,
        chain_id: str = LOCAL_CHAIN,
        source_offset: int = -1,
        head: ChainHead | None = None,
        checked: bool = False,
    ) -> int:
        """Write one batch (observations or dead letters) as the next entry of a chain.

        With ``source_offset`` >= 0 (the last trail offset the batch covers; a batch may
        cover a run of messages of its kind), a batch at or before the chain's last written
        offset of that kind was written already and is skipped: that, and the inserts'
        deduplication tokens, make a re-read after a crash a no-op. A direct write (offset
        -1) is skipped when the chain already holds a batch with the same digest. ``head``
        is the chain's current head when the caller (its one writer) knows it; the head
        after the write is ``written_head(chain_id)``. ``checked`` says the caller ran
        ``check_batch`` on each table an observations batch was concatenated from (the
        recorder checks every trail message as it reads it, to set aside only the one that
        fails): every check of observations is per row, so those checks hold for the whole
        and are not run again. Dead letters are always checked here: a source position may
        repeat across two tables.

        Returns the batch's sequence number in the chain (the existing one if skipped, 0 for
        an empty table or a skipped trail message).

        Raises:
            BatchRefusedError: the batch holds a value the store would refuse or change
                (``check_batch``); nothing of it was written.
            StoreError: the store could not be written (an outage: try again).
        """
        spec, sort_keys, schema = _KINDS[kind]
        problem = None if checked and kind == "observations" else check_batch(kind, table)
        if problem is not None:
            raise BatchRefusedError(problem)
        warnings = None
        if kind == "dead_letters" and "severity" in table.column_names:
            # Warn verdicts travel with the dead letters (forwarded records' broken warn
            # rules); they are kept in ``warnings``, one row per record and rule.
            warn = pc.equal(table.column("severity"), "warn")
            warnings = table.filter(warn)
            table = table.filter(pc.invert(warn))
        with self._write_lock:
            if head is None:
                head = self.chain_head(chain_id)
            if head.written(kind, source_offset):
                return 0
            if warnings is not None and warnings.num_rows:
                # A trail message re-read after a crash carries the same warnings. The table
                # is keyed by source position (merges fold repeats, readers take one per
                # key); the token also drops the repeat at once on a replicated server.
                token = f"{chain_id}#warnings@{source_offset}" if source_offset >= 0 else None
                self._refusing(self._insert_warnings, warnings, token)
            if table.num_rows == 0:
                return 0
            # One chunk: the recorder's batch is many trail messages' tables concatenated
            # (~70 chunks of ~2,900 rows), and chDB inserted that, with the rollup views,
            # for 200-600 ns/row more CPU than the same rows in one chunk (bench/recorder.py
            # rows, A/B in one process); the copy costs ~50 ns/row.
            table = table.select(schema.names).cast(schema).combine_chunks()
            digest, columns = digest_batch(table, spec, sort_keys)
            if source_offset < 0:
                known = self._rows(
                    f"SELECT seq FROM {self.database}.ledger "
                    "WHERE chain_id = {c:String} AND digest = {d:String} LIMIT 1",
                    {"c": chain_id, "d": digest},
                )
                if known:
                    return int(known[0]["seq"])
            seq = head.seq + 1
            chain_sql = _sql_string(chain_id)
            token = f"{chain_id}#{seq}:{digest}"
            names, select = _INSERTS[kind]
            self._refusing(
                self._insert,
                kind,
                names,
                select.format(batch=seq, chain_id=chain_sql),
                table,
                token,
            )
            received = table.column("received").to_numpy()
            written_us = time.time_ns() // 1000
            entry = LedgerEntry(
                chain_id=chain_id,
                seq=seq,
                kind=kind,
                source_offset=source_offset,
                written_us=written_us,
                expires_us=written_us + self.retention.raw_s * 1_000_000,
                rows=table.num_rows,
                first_received_ns=int(received.min()),
                last_received_ns=int(received.max()),
                digest=digest,
                prev_chain=head.chain,
            )
            ledger = pa.table(
                {
                    "chain_id": [chain_id],
                    "seq": pa.array([seq], pa.uint64()),
                    "kind": [kind],
                    "source_offset": pa.array([source_offset], pa.int64()),
                    "written": pa.array([entry.written_us], pa.int64()),
                    "expires": pa.array([entry.expires_us], pa.int64()),
                    "rows": pa.array([table.num_rows], pa.uint64()),
                    "first": pa.array([entry.first_received_ns], pa.int64()),
                    "last": pa.array([entry.last_received_ns], pa.int64()),
                    "digest": [digest],
                    "names": pa.array([list(columns)], pa.list_(pa.string())),
                    "digests": pa.array([list(columns.values())], pa.list_(pa.string())),
                    "prev": [head.chain],
                    "chain": [entry.chain],
                }
            )
            self._insert(
                "ledger",
                "chain_id, seq, kind, source_offset, written, expires, rows, first_received, "
                "last_received, digest, columns, prev_chain, chain",
                "chain_id, seq, kind, source_offset, fromUnixTimestamp64Micro(written, 'UTC'), "
                "fromUnixTimestamp64Micro(expires, 'UTC'), rows, "
                "fromUnixTimestamp64Nano(first, 'UTC'), fromUnixTimestamp64Nano(last, 'UTC'), "
                "digest, mapFromArrays(names, digests), prev, chain",
                ledger,
                # No token: a retry re-reads the head first, so it never repeats an entry
                # that was written (a token would also drop a rewrite after a lost write).
                None,
            )
            offsets = dict(head.offsets)
            if source_offset >= 0:
                offsets[kind] = source_offset
            self._written_heads[chain_id] = ChainHead(
                chain_id, seq, entry.chain, source_offset, offsets
            )
            return seq

    @staticmethod
    def _refusing(insert: Callable[..., None], *args: Any) -> None:
        """Run ``insert``; a refusal for the data raises ``BatchRefusedError`` (nothing was
        written: the pipeline fails before its block is), anything else stays a
        ``StoreError``."""
        try:
            insert(*args)
        except BatchRefusedError:
            raise
        except StoreError as exc:
            if _refused(exc):
                raise BatchRefusedError(f"the store refused the batch: {exc}") from exc
            raise

    def _insert_warnings(self, table: pa.Table, token: str | None) -> None:
        names = (
            "event_id, received, topic, partition, offset, provider, rule_id, rule_version, reason"
        )
        self._insert(
            "warnings",
            names,
            "toUUID(event_id), fromUnixTimestamp64Nano(received, 'UTC'), topic, partition, "
            "offset, provider, rule_id, rule_version, reason",
            table.select(names.split(", ")),
            token,
        )

    def written_head(self, chain_id: str) -> ChainHead | None:
        """The head of ``chain_id`` after this store object's last write to it, if any."""
        return self._written_heads.get(chain_id)

    # -- verification --------------------------------------------------------------------------

    def verify(
        self,
        progress: Callable[[int, int], None] | None = None,
        expect_heads: Sequence[tuple[str, str]] = (),
        published: Sequence[PublishedHead] = (),
        public_key: Ed25519PublicKey | None = None,
    ) -> VerifyReport:
        """Recompute every batch's digest from the stored rows (observations and dead
        letters), every ledger entry's hash from its fields, and each chain from them; each
        chain must run 1, 2, ... without a gap.

        A batch past its chained expiry, with rows missing, is counted as expired, not
        tampered. ``expect_heads`` are (chain id, head) pairs published elsewhere: each head
        must be an entry of that chain (chain id ``""``: of any chain), else the chain was
        truncated or re-chained. ``published`` heads (as read from the heads topic, in order)
        must each be the entry at their ``seq``, never going back, and the chains they name
        at least as long as they say; with ``public_key`` only heads it signed count. Once
        any head is given, a chain no head accounts for is a finding.
        """
        from stampline.audit._verify import verify_store

        return verify_store(self, progress, expect_heads, published, public_key)

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
