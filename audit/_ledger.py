"""Tamper evidence: each written batch is digested and chained in the ledger.

A batch's digest is SHA-256 over its rows in a canonical order, column by column (so a
mismatch also names the columns that changed). Observations and dead letters are both
digested (``CANONICAL`` and ``DEAD_CANONICAL``). Each ledger entry is itself hashed over all
of its fields -- chain id, sequence number, kind, trail offset, write time, expiry, row
count, time range and the batch digest (``entry_digest``) -- and chained:
``chain = SHA-256(prev_chain || entry_digest)``, starting from 64 zeros. So changing,
removing or adding a row changes its batch's digest or row count; rewriting any ledger field
(a back-dated write time, an earlier expiry) breaks the chain at that entry; rewriting the
ledger to match breaks the chain after it unless every later entry is forged too, which the
heads published outside the database (``audit verify --expect-head``) expose.

There is one chain per writer: per trail partition for the recorder (``<topic>/<p>``), so
several recorders write one database and each chain still has exactly one writer.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from stampline import _native
except ImportError:  # built without cargo (docs/native.md): the Python reference digests
    _native = None  # type: ignore[assignment]

log = logging.getLogger("stampline.audit.ledger")

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
    # Added by migration 010; a batch written before it is digested without them (see
    # ``digest_batch``'s ``names``).
    ("clock_source", "toString(clock_source)", "str"),
    ("warnings", "toString(warnings)", "str"),
    # Added by migration 011: the rule files' hashes at verdict time ("rule@vN=HEX,...").
    ("rule_sha256", "toString(rule_sha256)", "str"),
    # Added by migration 026: where each parent of a derived event last left a stage, as
    # audit.encode_parent_stamps writes it ("stage/emitted_ns/err_ns" or "-", by commas).
    (
        "parent_stamps",
        "arrayStringConcat(arrayMap((s, t, e) -> if(s = '', '-', concat(s, '/', "
        "toString(toUnixTimestamp64Nano(t)), '/', toString(e))), "
        "parent_stage, parent_emitted, parent_clock_err_ns), ',')",
        "str",
    ),
    # Added by migration 032: whose clock broker_time is ('', 'CreateTime', 'LogAppendTime').
    # It joins the digest because it decides what a report's "provider -> broker" hop means;
    # a batch chained before it names no such column and is verified without it.
    ("broker_time_type", "toString(broker_time_type)", "str"),
)
# Rows are digested in this order. The receipt time comes first because it is an integer and
# almost unique, so sorting a batch (which arrives in near time order) is cheap; the columns
# after it break ties between rows received in the same nanosecond.
SORT_KEYS = ("received", "event_id", "stage", "emitted", "authority", "topic", "offset", "host")

CANONICAL_SELECT = ", ".join(f"{expr} AS {name}" for name, expr, _ in CANONICAL)
CANONICAL_ORDER = ", ".join(SORT_KEYS)

# hashlib releases the GIL on large buffers (and the compiled digest releases it), so
# columns are hashed side by side.
_HASH_THREADS = 2

# Which path digested each batch: "native" (Rust, native/src/digest.rs) or "python: <why
# the compiled one did not>". The Python path is the reference the compiled one is tested
# against (tests/audit/test_digest_native.py); a new reason is logged once.
DIGEST_PATHS: Counter[str] = Counter()


# The dead letters' digest columns, in order (the table the trail topic carries).
DEAD_CANONICAL: tuple[tuple[str, str, str], ...] = (
    ("event_id", "toString(event_id)", "str"),
    ("received", "toUnixTimestamp64Nano(received)", "int"),
    ("topic", "toString(topic)", "str"),
    ("partition", "toInt64(partition)", "int"),
    ("offset", "offset", "int"),
    ("provider", "toString(provider)", "str"),
    ("rule_id", "toString(rule_id)", "str"),
    ("rule_version", "toInt64(rule_version)", "int"),
    ("reason", "reason", "str"),
    ("value_size", "toInt64(value_size)", "int"),
    ("value_head", "value_head", "str"),
)
DEAD_SORT_KEYS = ("topic", "partition", "offset", "event_id", "received", "reason")
DEAD_SELECT = ", ".join(f"{expr} AS {name}" for name, expr, _ in DEAD_CANONICAL)
DEAD_ORDER = ", ".join(DEAD_SORT_KEYS)


def digest_batch(
    canon: pa.Table,
    spec: tuple[tuple[str, str, str], ...] = CANONICAL,
    sort_keys: tuple[str, ...] = SORT_KEYS,
    names: Collection[str] | None = None,
) -> tuple[str, dict[str, str]]:
    """The batch digest and the per-column digests of a canonical table (any row order).

    ``names`` limits the digest to those columns (still in ``CANONICAL`` order): verification
    passes the columns a batch's ledger entry names, so a batch written before a column was
    added is checked over the columns it was written with.

    Each column's digest is SHA-256 over its values in canonical row order: integers as
    little-endian int64; strings as their little-endian int32 byte lengths, then their
    concatenated bytes (together these fix every value). The batch digest is SHA-256 over
    the column digests in ``CANONICAL`` order.
    """
    order = pc.sort_indices(canon, [(k, "ascending") for k in sort_keys])
    specs = [c for c in spec if names is None or c[0] in names]
    digests = _digest_native(canon, specs, order)
    if digests is None:
        digests = _digest_python(canon, specs, order)
    columns = {name: d for (name, _, _), d in zip(specs, digests, strict=True)}
    total = hashlib.sha256(b"".join(bytes.fromhex(d) for d in digests))
    return total.hexdigest(), columns


def _digest_native(
    canon: pa.Table, specs: Sequence[tuple[str, str, str]], order: pa.Array
) -> list[str] | None:
    """The column digests from the compiled module, or None where it cannot read the table
    exactly as the reference does (it checks the types itself); the path taken is counted."""
    if _native is None:
        why = "no compiled module"
    else:
        try:
            _, digests = _native.digest_table(
                canon,
                pa.table([order], names=["order"]),
                [(name, kind) for name, _, kind in specs],
                _HASH_THREADS,
            )
        except ValueError as e:
            why = str(e)
        else:
            DIGEST_PATHS["native"] += 1
            return digests
    path = f"python: {why}"
    DIGEST_PATHS[path] += 1
    if DIGEST_PATHS[path] == 1:
        log.info("batch digests on the Python path: %s", why)
    return None


def _digest_python(
    canon: pa.Table, specs: Sequence[tuple[str, str, str]], order: pa.Array
) -> list[str]:
    """The reference: the column digests computed with NumPy and hashlib."""

    def one(spec: tuple[str, str, str]) -> str:
        name, _, kind = spec
        col = canon.column(name).take(order).combine_chunks()
        h = hashlib.sha256()
        if kind == "int":
            h.update(np.ascontiguousarray(col.to_numpy(zero_copy_only=False), dtype="<i8").data)
        else:
            _update_with_strings(h, col)
        return h.hexdigest()

    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        return list(pool.map(one, specs))


def _update_with_strings(h: Any, values: pa.Array) -> None:
    """Hash a string column's lengths and bytes straight from its Arrow buffers (no copies)."""
    if values.null_count:
        values = values.fill_null("")
    if not pa.types.is_large_binary(values.type):
        values = values.cast(pa.large_binary())  # one offset width, whatever the source gave
    _, offsets_buf, data = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype="<i8")[
        values.offset : values.offset + len(values) + 1
    ]
    h.update(np.diff(offsets).astype("<i4").data)
    if data is not None and len(values):
        h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def chain(prev_chain: str, digest: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_chain) + bytes.fromhex(digest)).hexdigest()


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger row: every field but ``chain`` goes into the entry digest."""

    chain_id: str
    seq: int
    kind: str
    source_offset: int  # the trail message's offset; -1 for a direct write
    written_us: int
    expires_us: int
    rows: int
    first_received_ns: int
    last_received_ns: int
    digest: str
    prev_chain: str

    def entry_digest(self) -> str:
        """SHA-256 over every field, each as a length-prefixed UTF-8 text (unambiguous)."""
        h = hashlib.sha256()
        for value in (
            self.chain_id,
            self.seq,
            self.kind,
            self.source_offset,
            self.written_us,
            self.expires_us,
            self.rows,
            self.first_received_ns,
            self.last_received_ns,
            self.digest,
        ):
            text = str(value).encode()
            h.update(len(text).to_bytes(4, "little") + text)
        return h.hexdigest()

    @property
    def chain(self) -> str:
        return chain(self.prev_chain, self.entry_digest())


@dataclass(frozen=True, slots=True)
class BatchFinding:
    """What verification found wrong with one batch."""

    seq: int
    # changed | deleted | inserted | chain_broken | duplicate_entry | unledgered | seq_gap
    # | head_missing | chain_without_head | chain_truncated | head_out_of_order
    # | head_unsigned | head_bad_signature | fork_without_head
    # (see docs/evidence.md, "What each check defeats")
    problem: str
    expected_rows: int
    found_rows: int
    columns: tuple[str, ...] = ()
    chain_id: str = ""
    kind: str = "observations"
    detail: str = ""  # what a chain or head check saw, in words

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chain": self.chain_id,
            "kind": self.kind,
            "batch": self.seq,
            "problem": self.problem,
            "expected_rows": self.expected_rows,
            "found_rows": self.found_rows,
            "changed_columns": [] if self.problem == "head_missing" else list(self.columns),
        }
        if self.problem == "head_missing":  # ``columns`` holds the head that was not found
            out["missing_head"] = self.columns[0] if self.columns else ""
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of ``verify``: ok when every batch and every link checks out."""

    batches: int
    rows: int
    head: str  # the head of the only chain; with several chains, see ``heads``
    findings: tuple[BatchFinding, ...] = field(default=())
    expired: int = 0
    heads: dict[str, str] = field(default_factory=dict)  # chain id -> head
    dead_letters: int = 0
    lengths: dict[str, int] = field(default_factory=dict)  # chain id -> entries found
    published_heads: int = 0  # published heads checked

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "batches": self.batches,
            "rows": self.rows,
            "dead_letters": self.dead_letters,
            "expired_batches": self.expired,
            "chain_head": self.head,
            "chain_heads": dict(sorted(self.heads.items())),
            "chains": [
                {"chain": c, "entries": self.lengths.get(c, 0), "head": h}
                for c, h in sorted(self.heads.items())
            ],
            "published_heads_checked": self.published_heads,
            "findings": [f.to_dict() for f in self.findings],
        }
