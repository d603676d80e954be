"""How the evidence reads the integrity chain: one function, so the chain's shape can change.

Today the store keeps one hash chain over every batch (``batch_ledger``: seq, digest,
prev_chain, chain) and ``stampline audit verify`` recomputes it from genesis. When the chain
becomes one per trail partition, only ``read_chain_proof`` (and ``verify_command``) change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Queryable(Protocol):
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class BatchLink:
    """One ledgered batch holding rows the report shows."""

    seq: int
    rows: int
    written: str
    digest: str
    prev_chain: str
    chain: str
    holds: tuple[str, ...]  # "event_id/stage" of the shown rows it holds

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.seq,
            "rows": self.rows,
            "written": self.written,
            "digest": self.digest,
            "prev_chain": self.prev_chain,
            "chain": self.chain,
            "holds": list(self.holds),
        }


@dataclass(frozen=True, slots=True)
class ChainProof:
    """The batches holding the rows shown, and the head of the chain they are linked into."""

    scheme: str
    batches: tuple[BatchLink, ...]
    head_seq: int
    head: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "batches": [b.to_dict() for b in self.batches],
            "head_batch": self.head_seq,
            "head": self.head,
            "links_to_head": {str(b.seq): self.head_seq - b.seq for b in self.batches},
        }


SCHEME = (
    "one chain over every batch: chain(n) = SHA-256(chain(n-1) || digest(n)), from 64 zeros; "
    "digest(n) = SHA-256 of the batch's per-column SHA-256 digests (audit/_ledger.py)"
)


def read_chain_proof(store: Queryable, event_ids: list[str]) -> ChainProof:
    """The ledger entries of every batch holding a row of ``event_ids``, and the chain head."""
    held = store.query(
        """SELECT batch, toString(event_id) AS eid, stage FROM {db}.observations
           WHERE event_id IN {ids:Array(UUID)} ORDER BY batch, eid, stage""",
        {"ids": event_ids},
    )
    by_batch: dict[int, list[str]] = {}
    for r in held:
        by_batch.setdefault(int(r["batch"]), []).append(f"{r['eid']}/{r['stage']}")
    entries = (
        store.query(
            """SELECT seq, rows, toString(written) AS written, toString(digest) AS digest,
                      toString(prev_chain) AS prev_chain, toString(chain) AS chain
               FROM {db}.batch_ledger FINAL WHERE seq IN {seqs:Array(UInt64)} ORDER BY seq""",
            {"seqs": sorted(by_batch)},
        )
        if by_batch
        else []
    )
    head_seq, head = read_chain_head(store)
    links = tuple(
        BatchLink(
            int(e["seq"]),
            int(e["rows"]),
            str(e["written"]),
            e["digest"],
            e["prev_chain"],
            e["chain"],
            tuple(by_batch[int(e["seq"])]),
        )
        for e in entries
    )
    return ChainProof(SCHEME, links, head_seq, head)


def verify_command(store_args: str, head: str) -> str:
    """The command that re-verifies the chain up to ``head`` (today's ``audit verify``)."""
    return (
        f"stampline audit verify {store_args} --json  "
        f"# passes (exit 0) and prints chain_head {head} while no batch after it was written"
    )


def read_chain_head(store: Queryable) -> tuple[int, str]:
    """The newest ledgered batch and its chain value (64 zeros on an empty ledger)."""
    head = store.query(
        "SELECT seq, toString(chain) AS chain FROM {db}.batch_ledger FINAL "
        "ORDER BY seq DESC LIMIT 1"
    )
    return (int(head[0]["seq"]), head[0]["chain"]) if head else (0, "0" * 64)
