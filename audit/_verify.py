"""Verification: recompute every batch's digest, every ledger entry and every chain, and
account for every chain against heads published outside the store.

Inside the store, each chain must run 1, 2, ... with no gap, each entry linked to the one
before; each batch's rows must digest to what its entry says. What no store can prove about
itself (that a chain was not cut, re-chained or made up whole) is checked against heads given
by the officer (``expect_heads``) or read from the heads topic (``published``): every head
must be an entry of its chain (at its ``seq`` when it says one), and, once any head is given,
every chain found must be one a head accounts for. With a public key, a published head counts
only when the recorder's key signed it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from stampline.audit._heads import PublishedHead
from stampline.audit._ledger import (
    CANONICAL_SELECT,
    DEAD_SELECT,
    GENESIS,
    BatchFinding,
    LedgerEntry,
    VerifyReport,
    digest_batch,
)

if TYPE_CHECKING:
    from stampline.audit._store import Store


def verify_store(
    store: Store,
    progress: Callable[[int, int], None] | None = None,
    expect_heads: Sequence[tuple[str, str]] = (),
    published: Sequence[PublishedHead] = (),
    public_key: Ed25519PublicKey | None = None,
) -> VerifyReport:
    """See ``Store.verify``."""
    from stampline.audit._store import _KINDS, _sql_string

    db = "{db}"
    ledger = store.query(
        f"""SELECT chain_id, seq, kind, source_offset,
               toUnixTimestamp64Micro(written) AS written_us,
               toUnixTimestamp64Micro(expires) AS expires_us, rows,
               toUnixTimestamp64Nano(first_received) AS first_ns,
               toUnixTimestamp64Nano(last_received) AS last_ns,
               digest, columns, prev_chain, chain
            FROM {db}.ledger ORDER BY chain_id, seq""",
        None,
    )
    counts: dict[tuple[str, str, int], int] = {}
    for kind in ("observations", "dead_letters"):
        for r in store.query(
            f"SELECT chain_id, batch, count() AS n FROM {db}.{kind} GROUP BY chain_id, batch",
            None,
        ):
            counts[(kind, r["chain_id"], int(r["batch"]))] = int(r["n"])
    now_us = int(store.query("SELECT toUnixTimestamp64Micro(now64(6)) AS t", None)[0]["t"])
    findings: list[BatchFinding] = []
    heads: dict[str, str] = {}
    at_seq: dict[str, dict[int, str]] = {}  # chain -> seq -> chain value
    expired = total = dead_total = 0
    last_seq: dict[str, int] = {}
    for i, row in enumerate(ledger, 1):
        cid, seq, kind = row["chain_id"], int(row["seq"]), row["kind"]
        expected = int(row["rows"])
        if progress is not None:
            progress(i, len(ledger))
        prev = heads.get(cid, GENESIS)
        if last_seq.get(cid) == seq:
            findings.append(BatchFinding(seq, "duplicate_entry", expected, 0, (), cid, kind))
            continue
        # A chain runs 1, 2, ...: an entry out of that order was not written by its writer.
        if seq != last_seq.get(cid, 0) + 1:
            detail = f"expected batch {last_seq.get(cid, 0) + 1}"
            findings.append(BatchFinding(seq, "seq_gap", expected, 0, (), cid, kind, detail))
        last_seq[cid] = seq
        entry = LedgerEntry(
            cid,
            seq,
            kind,
            int(row["source_offset"]),
            int(row["written_us"]),
            int(row["expires_us"]),
            expected,
            int(row["first_ns"]),
            int(row["last_ns"]),
            row["digest"],
            row["prev_chain"],
        )
        broken = row["prev_chain"] != prev or entry.chain != row["chain"]
        if broken:
            findings.append(BatchFinding(seq, "chain_broken", expected, 0, (), cid, kind))
        heads[cid] = row["chain"]
        at_seq.setdefault(cid, {})[seq] = row["chain"]
        found = counts.pop((kind, cid, seq), 0)
        if kind == "observations":
            total += found
        else:
            dead_total += found
        # Only an entry the chain vouches for may declare its rows expired.
        if not broken and entry.expires_us < now_us and found <= expected:
            expired += 1  # TTL removes old rows: retention (from a chained expiry)
            continue
        if found == 0 and expected:
            findings.append(BatchFinding(seq, "deleted", expected, 0, (), cid, kind))
            continue
        spec, sort_keys, _ = _KINDS.get(kind, _KINDS["observations"])
        if kind == "dead_letters":
            select, table_name = DEAD_SELECT, "dead_letters"
        else:
            select, table_name = CANONICAL_SELECT, "observations"
        canon = store.query_arrow(
            f"SELECT {select} FROM {db}.{table_name} "
            f"WHERE chain_id = {_sql_string(cid)} AND batch = {seq}",
            None,
        )
        # Over the columns the (chained) entry names: a column added later is not in it.
        digest, columns = digest_batch(canon, spec, sort_keys, row["columns"].keys())
        if digest == row["digest"]:
            continue
        changed = tuple(k for k, v in columns.items() if row["columns"].get(k) != v)
        problem = "deleted" if found < expected else "inserted" if found > expected else "changed"
        findings.append(BatchFinding(seq, problem, expected, found, changed, cid, kind))
    for (kind, cid, batch), n in sorted(counts.items()):
        findings.append(BatchFinding(batch, "unledgered", 0, n, (), cid, kind))
        if kind == "observations":
            total += n
        else:
            dead_total += n
    accounted = _check_heads(at_seq, expect_heads, published, public_key, findings)
    if expect_heads or published:
        findings.extend(
            BatchFinding(
                0,
                "chain_without_head",
                0,
                0,
                (),
                cid,
                detail=f"{len(at_seq[cid])} entries; no head given or published names it",
            )
            for cid in sorted(set(at_seq) - accounted)
        )
    only = next(iter(heads.values())) if len(heads) == 1 else (GENESIS if not heads else "")
    return VerifyReport(
        len(ledger),
        total,
        only,
        tuple(findings),
        expired,
        heads,
        dead_total,
        {c: len(s) for c, s in at_seq.items()},
        len(published),
    )


def _check_heads(
    at_seq: dict[str, dict[int, str]],
    expect_heads: Sequence[tuple[str, str]],
    published: Sequence[PublishedHead],
    public_key: Ed25519PublicKey | None,
    findings: list[BatchFinding],
) -> set[str]:
    """Check the given and the published heads against the chains found (appending to
    ``findings``); returns the chains they account for."""
    accounted: set[str] = set()
    for cid, head in expect_heads:
        head = head.lower()
        holders = [c for c in ([cid] if cid else at_seq) if head in at_seq.get(c, {}).values()]
        accounted.update(holders or ([cid] if cid else []))
        if not holders:
            findings.append(BatchFinding(0, "head_missing", 0, 0, (head,), cid))
    latest: dict[str, int] = {}
    for h in published:  # in the order they were published
        if public_key is not None and not h.signed_by(public_key):
            problem = "head_bad_signature" if h.sig else "head_unsigned"
            detail = f"{h.where}: not signed by the given public key; not counted"
            findings.append(BatchFinding(h.seq, problem, 0, 0, (h.head,), h.chain, detail=detail))
            continue
        accounted.add(h.chain)
        accounted.update(h.chains)
        if h.seq < latest.get(h.chain, 0):
            detail = f"{h.where}: batch {h.seq} published after batch {latest[h.chain]}"
            findings.append(
                BatchFinding(h.seq, "head_out_of_order", 0, 0, (h.head,), h.chain, detail=detail)
            )
        latest[h.chain] = max(h.seq, latest.get(h.chain, 0))
        if at_seq.get(h.chain, {}).get(h.seq) != h.head:
            detail = f"{h.where}: batch {h.seq} of the chain is not this head"
            findings.append(
                BatchFinding(h.seq, "head_missing", 0, 0, (h.head,), h.chain, detail=detail)
            )
        for other, length in sorted(h.chains.items()):
            if other != h.chain and len(at_seq.get(other, {})) < length:
                detail = (
                    f"{h.where}: published with {length} entries, "
                    f"{len(at_seq.get(other, {}))} found"
                )
                findings.append(
                    BatchFinding(length, "chain_truncated", 0, 0, (), other, detail=detail)
                )
    return accounted
