"""Tamper evidence: each written batch is digested and chained in the batch ledger.

A batch's digest is SHA-256 over its rows in a canonical order, column by column (so a
mismatch also names the columns that changed). The chain links every batch to the one
before: ``chain = SHA-256(prev_chain || digest)``, starting from 64 zeros. Changing,
removing or adding a row changes its batch's digest or row count; rewriting the ledger to
match breaks the chain after that batch unless every later entry is forged too, and the
head of the chain can be published (``stampline audit verify --json`` prints it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GENESIS = "0" * 64

# (column, SQL expression giving its canonical value, kind). The order is the digest's order.
CANONICAL: tuple[tuple[str, str, str], ...] = (
    ("event_id", "toString(event_id)", "str"),
    ("stage", "toString(stage)", "str"),
    ("prev_stage", "toString(prev_stage)", "str"),
    ("received", "toUnixTimestamp64Nano(received)", "int"),
    ("emitted", "toUnixTimestamp64Nano(emitted)", "int"),
    ("prev_emitted", "toUnixTimestamp64Nano(prev_emitted)", "int"),
    ("origin", "toUnixTimestamp64Nano(origin)", "int"),
    ("ingested", "toUnixTimestamp64Nano(ingested)", "int"),
    ("clock_err_ns", "toInt64(clock_err_ns)", "int"),
    ("prev_clock_err_ns", "toInt64(prev_clock_err_ns)", "int"),
    ("host", "toString(host)", "str"),
    ("topic", "toString(topic)", "str"),
    ("partition", "toInt64(partition)", "int"),
    ("offset", "offset", "int"),
    ("broker_time", "toUnixTimestamp64Milli(broker_time)", "int"),
    ("provider", "toString(provider)", "str"),
    ("instrument", "toString(instrument)", "str"),
    ("seq", "seq", "int"),
    ("price", "reinterpretAsInt64(price)", "int"),
    ("outcome", "toString(outcome)", "str"),
    ("rule_id", "toString(rule_id)", "str"),
    ("rule_version", "toInt64(rule_version)", "int"),
    ("parents", "arrayStringConcat(arrayMap(p -> toString(p), parents), ',')", "str"),
    ("authority", "toInt64(authority)", "int"),
)
# Rows are digested in this order; the columns after event_id and stage break ties between
# two sightings of one (event, stage) in the same batch.
SORT_KEYS = ("event_id", "stage", "received", "emitted", "authority", "topic", "offset", "host")

CANONICAL_SELECT = ", ".join(f"{expr} AS {name}" for name, expr, _ in CANONICAL)
CANONICAL_ORDER = ", ".join(SORT_KEYS)


def digest_batch(canon: pa.Table) -> tuple[str, dict[str, str]]:
    """The batch digest and the per-column digests of a canonical table (any row order)."""
    ordered = canon.sort_by([(k, "ascending") for k in SORT_KEYS])
    columns: dict[str, str] = {}
    total = hashlib.sha256()
    for name, _, kind in CANONICAL:
        col = ordered.column(name)
        h = hashlib.sha256()
        if kind == "int":
            h.update(np.ascontiguousarray(col.to_numpy(), dtype="<i8").tobytes())
        else:
            # Lengths, then the concatenated bytes: together they fix every value.
            values = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            lengths = pc.binary_length(values).to_numpy(zero_copy_only=False)
            h.update(np.ascontiguousarray(lengths, dtype="<i8").tobytes())
            whole = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
            h.update(_raw(whole))
        columns[name] = h.hexdigest()
        total.update(bytes.fromhex(columns[name]))
    return total.hexdigest(), columns


def _raw(whole: pa.ListArray) -> bytes:
    joined = pc.binary_join(whole, "")[0].as_py()
    if joined is None:
        return b""
    return joined if isinstance(joined, bytes) else joined.encode()


def chain(prev_chain: str, digest: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_chain) + bytes.fromhex(digest)).hexdigest()


@dataclass(frozen=True, slots=True)
class BatchFinding:
    """What verification found wrong with one batch."""

    seq: int
    problem: str  # changed | deleted | inserted | chain_broken | unledgered | expired
    expected_rows: int
    found_rows: int
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.seq,
            "problem": self.problem,
            "expected_rows": self.expected_rows,
            "found_rows": self.found_rows,
            "changed_columns": list(self.columns),
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of ``verify``: ok when every batch and every link checks out."""

    batches: int
    rows: int
    head: str
    findings: tuple[BatchFinding, ...] = field(default=())
    expired: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "batches": self.batches,
            "rows": self.rows,
            "expired_batches": self.expired,
            "chain_head": self.head,
            "findings": [f.to_dict() for f in self.findings],
        }
