"""How the evidence reads the integrity chains: the one place that knows the ledger's shape.

The store keeps one hash chain per writer: per trail partition for the recorder
(``<trail topic>/<partition>``), ``local`` for direct writes (audit/_ledger.py). Every ledger
entry digests one batch of observations or of dead letters and is hashed over all its fields
(chain id, sequence number, kind, trail offset, write time, expiry, rows, time range, batch
digest) into ``chain = SHA-256(prev_chain || entry digest)``. ``read_chain_proof`` finds the
entries of the batches holding the rows a report shows and the head of each chain involved;
``verify_command`` is the ``stampline audit verify`` that checks those heads are still in
their chains.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stampline.audit import format_ns


class Queryable(Protocol):
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


SCHEME = (
    "one hash chain per trail partition (chain id '<trail topic>/<partition>'; 'local' for "
    "direct writes); each ledger entry digests one batch of observations or dead letters "
    "(SHA-256 of the batch's per-column SHA-256 digests) and is hashed over all its fields "
    "(chain id, batch, kind, trail offset, write time, expiry, rows, time range, digest); "
    "chain(n) = SHA-256(chain(n-1) || entry digest(n)), from 64 zeros (audit/_ledger.py)"
)


@dataclass(frozen=True, slots=True)
class BatchLink:
    """One ledger entry: a batch holding rows the report shows."""

    chain_id: str
    seq: int
    kind: str  # observations | dead_letters
    trail_offset: int  # the last trail message it covers; -1 for a direct write
    rows: int
    written_ns: int
    expires_ns: int
    digest: str
    prev_chain: str
    chain: str
    holds: tuple[str, ...]  # "event_id/stage" of shown rows; "event_id/dead_letter"
    links_to_head: int  # entries after it in its chain, up to the chain's head

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "batch": self.seq,
            "kind": self.kind,
            "trail_offset": self.trail_offset,
            "rows": self.rows,
            "written": format_ns(self.written_ns),
            "expires": format_ns(self.expires_ns),
            "digest": self.digest,
            "prev_chain": self.prev_chain,
            "chain": self.chain,
            "holds": list(self.holds),
            "links_to_head": self.links_to_head,
        }


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The newest entry of one chain when the report was produced."""

    chain_id: str
    seq: int
    head: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "head_batch": self.seq,
            "head": self.head,
            "expect_head": f"{self.chain_id}={self.head}",
        }


@dataclass(frozen=True, slots=True)
class Unledgered:
    """Shown rows whose batch has no ledger entry: no chain vouches for them."""

    chain_id: str
    seq: int
    kind: str
    holds: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "batch": self.seq,
            "kind": self.kind,
            "holds": list(self.holds),
        }


@dataclass(frozen=True, slots=True)
class Contested:
    """An (event, stage) that two or more chains hold different rows for: the value shown is
    one of them, and which chain is real only verification with the heads can say."""

    event_id: str
    stage: str
    chains: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "stage": self.stage, "chains": list(self.chains)}


@dataclass(frozen=True, slots=True)
class ChainProof:
    """The batches holding the rows shown, and the head of every chain they are in."""

    batches: tuple[BatchLink, ...]
    chains: tuple[ChainHead, ...]
    unledgered: tuple[Unledgered, ...] = ()
    contested: tuple[Contested, ...] = ()

    @property
    def heads(self) -> dict[str, str]:
        return {c.chain_id: c.head for c in self.chains}

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": SCHEME,
            "chains": [c.to_dict() for c in self.chains],
            "batches": [b.to_dict() for b in self.batches],
            "unledgered": [u.to_dict() for u in self.unledgered],
            "contested": [c.to_dict() for c in self.contested],
        }


# The observation rows a report shows: the row replay shows per (event, stage), through the
# same `trail` view (migration 033: each chain's best row, a conflict between chains marked
# `contested`, never resolved by anything a writer of the store chooses).
_SHOWN = """
SELECT chain_id, batch, toString(event_id) AS eid, stage, chains, contested FROM {db}.trail
WHERE event_id IN {ids:Array(UUID)}
"""
_DEAD = """
SELECT DISTINCT chain_id, batch, toString(event_id) AS eid FROM {db}.dead_letters
WHERE event_id IN {ids:Array(UUID)}
"""
_ENTRIES = """
SELECT chain_id, seq, kind, source_offset, rows,
       toUnixTimestamp64Micro(written) AS written_us, toUnixTimestamp64Micro(expires) AS expires_us,
       toString(digest) AS digest, toString(prev_chain) AS prev_chain, toString(chain) AS chain
FROM {db}.ledger
WHERE chain_id IN {chains:Array(String)} AND seq IN {seqs:Array(UInt64)}
ORDER BY chain_id, seq
"""
_HEADS = """
SELECT chain_id, max(seq) AS head_seq, toString(argMax(chain, seq)) AS head FROM {db}.ledger
WHERE {all:UInt8} OR chain_id IN {chains:Array(String)}
GROUP BY chain_id ORDER BY chain_id
"""


def read_chain_proof(store: Queryable, event_ids: Sequence[str]) -> ChainProof:
    """The ledger entry of every batch holding a shown row of ``event_ids`` (observations,
    and the dead letters of a dead-lettered event), and the head of each chain involved."""
    ids = list(event_ids)
    holds: dict[tuple[str, str, int], list[str]] = {}
    contested: list[Contested] = []
    for r in store.query(_SHOWN, {"ids": ids}):
        key = ("observations", r["chain_id"], int(r["batch"]))
        holds.setdefault(key, []).append(f"{r['eid']}/{r['stage']}")
        if r["contested"]:
            contested.append(Contested(r["eid"], r["stage"], tuple(r["chains"])))
    for r in store.query(_DEAD, {"ids": ids}):
        key = ("dead_letters", r["chain_id"], int(r["batch"]))
        holds.setdefault(key, []).append(f"{r['eid']}/dead_letter")
    if not holds:
        return ChainProof((), ())
    chains = sorted({c for _, c, _ in holds})
    entries = store.query(_ENTRIES, {"chains": chains, "seqs": sorted({s for _, _, s in holds})})
    heads = read_chain_heads(store, chains)
    head_of = {h.chain_id: h for h in heads}
    links: list[BatchLink] = []
    for e in entries:
        held = holds.pop((e["kind"], e["chain_id"], int(e["seq"])), None)
        # None: an entry of the same number in another chain or of the other kind, or a
        # second entry for one batch (audit verify reports that as duplicate_entry).
        if held is None:
            continue
        head = head_of[e["chain_id"]]
        links.append(
            BatchLink(
                chain_id=e["chain_id"],
                seq=int(e["seq"]),
                kind=e["kind"],
                trail_offset=int(e["source_offset"]),
                rows=int(e["rows"]),
                written_ns=int(e["written_us"]) * 1000,
                expires_ns=int(e["expires_us"]) * 1000,
                digest=e["digest"],
                prev_chain=e["prev_chain"],
                chain=e["chain"],
                holds=tuple(sorted(held)),
                links_to_head=head.seq - int(e["seq"]),
            )
        )
    # Rows whose batch has no ledger entry are vouched for by no chain: listed apart (audit
    # verify reports them as unledgered).
    missing = tuple(
        Unledgered(cid, seq, kind, tuple(sorted(held)))
        for (kind, cid, seq), held in sorted(holds.items(), key=lambda kv: kv[0][1:] + kv[0][:1])
    )
    return ChainProof(tuple(links), tuple(heads), missing, tuple(contested))


def read_chain_heads(store: Queryable, chains: Sequence[str] | None = None) -> list[ChainHead]:
    """The newest entry of each of ``chains`` (every chain in the ledger when None)."""
    rows = store.query(_HEADS, {"all": int(chains is None), "chains": list(chains or [])})
    return [ChainHead(r["chain_id"], int(r["head_seq"]), r["head"]) for r in rows]


def verify_command(store_args: str, heads: Mapping[str, str]) -> str:
    """The ``stampline audit verify`` that re-verifies the store and checks each head.

    It passes (exit 0) while every batch's rows and every ledger entry are unchanged and
    each chain still holds the head given (a chain that grew since still does); it fails
    (exit 1) after any row or entry is changed, deleted or inserted, or a chain was cut or
    rewritten below its head. ``store_args`` reaches the store the report was made from.
    """
    parts = ["stampline", "audit", "verify"]
    if store_args:
        parts.append(store_args)
    parts += [
        f"--expect-head {shlex.quote(f'{cid}={head}')}" for cid, head in sorted(heads.items())
    ]
    return " ".join(parts)
