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
from typing import TYPE_CHECKING, Any

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
            FROM {db}.ledger ORDER BY chain_id, seq, digest, chain""",
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
    at_seq: dict[str, dict[int, tuple[str, ...]]] = {}  # chain -> seq -> its entries' chains
    links: dict[str, dict[str, tuple[int, str]]] = {}  # chain -> entry chain -> (seq, prev)
    expired = total = dead_total = 0
    done = 0
    for group in _batches(ledger):
        done += len(group)
        if progress is not None:
            progress(done, len(ledger))
        cid, seq, kind = group[0]["chain_id"], int(group[0]["seq"]), group[0]["kind"]
        known = at_seq.setdefault(cid, {})
        # A chain runs 1, 2, ...: an entry out of that order was not written by its writer.
        last = max(known, default=0)
        if seq != last + 1:
            detail = f"expected batch {last + 1}"
            findings.append(
                BatchFinding(seq, "seq_gap", int(group[0]["rows"]), 0, (), cid, kind, detail)
            )
        # The ledger is append-only: two entries for one batch are a fork of the chain, and
        # each is reported (in the order of their digests, so the report never depends on the
        # order the store returns rows in). Which one is the writer's only a head can say.
        prevs = known.get(last, (GENESIS,)) if last else (GENESIS,)
        entries = [_entry(row) for row in group]
        good: list[LedgerEntry] = []
        for row, entry in zip(group, entries, strict=True):
            if len(group) > 1:
                detail = f"entry {row['chain']}, one of {len(group)} for this batch"
                findings.append(
                    BatchFinding(seq, "duplicate_entry", entry.rows, 0, (), cid, kind, detail)
                )
            if row["prev_chain"] not in prevs or entry.chain != row["chain"]:
                findings.append(BatchFinding(seq, "chain_broken", entry.rows, 0, (), cid, kind))
            else:
                good.append(entry)
            links.setdefault(cid, {})[row["chain"]] = (seq, row["prev_chain"])
        known[seq] = tuple(row["chain"] for row in group)
        first = entries.index(good[0]) if good else 0
        heads[cid] = group[first]["chain"]
        expected = entries[first].rows
        found = counts.pop((kind, cid, seq), 0)
        if kind == "observations":
            total += found
        else:
            dead_total += found
        # Only an entry the chain vouches for may declare its rows expired.
        if good and entries[first].expires_us < now_us and found <= expected:
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
        # Rows that digest to any entry of the batch are that entry's (the fork is reported).
        digests = [digest_batch(canon, spec, sort_keys, row["columns"].keys()) for row in group]
        if any(d == row["digest"] for (d, _), row in zip(digests, group, strict=True)):
            continue
        columns = digests[first][1]
        changed = tuple(k for k, v in columns.items() if group[first]["columns"].get(k) != v)
        problem = "deleted" if found < expected else "inserted" if found > expected else "changed"
        findings.append(BatchFinding(seq, problem, expected, found, changed, cid, kind))
    for (kind, cid, batch), n in sorted(counts.items()):
        findings.append(BatchFinding(batch, "unledgered", 0, n, (), cid, kind))
        if kind == "observations":
            total += n
        else:
            dead_total += n
    accounted, vouched = _check_heads(at_seq, expect_heads, published, public_key, findings)
    findings.extend(_forks_off_heads(at_seq, links, vouched))
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
    at_seq: dict[str, dict[int, tuple[str, ...]]],
    expect_heads: Sequence[tuple[str, str]],
    published: Sequence[PublishedHead],
    public_key: Ed25519PublicKey | None,
    findings: list[BatchFinding],
) -> tuple[set[str], dict[str, set[str]]]:
    """Check the given and the published heads against the chains found (appending to
    ``findings``); returns the chains they account for, and per chain the heads found in it."""
    accounted: set[str] = set()
    vouched: dict[str, set[str]] = {}
    for cid, head in expect_heads:
        head = head.lower()
        holders = [
            c
            for c in ([cid] if cid else at_seq)
            if any(head in entries for entries in at_seq.get(c, {}).values())
        ]
        accounted.update(holders or ([cid] if cid else []))
        for c in holders:
            vouched.setdefault(c, set()).add(head)
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
        if h.head not in at_seq.get(h.chain, {}).get(h.seq, ()):
            detail = f"{h.where}: batch {h.seq} of the chain is not this head"
            findings.append(
                BatchFinding(h.seq, "head_missing", 0, 0, (h.head,), h.chain, detail=detail)
            )
        else:
            vouched.setdefault(h.chain, set()).add(h.head)
        for other, length in sorted(h.chains.items()):
            if other != h.chain and len(at_seq.get(other, {})) < length:
                detail = (
                    f"{h.where}: published with {length} entries, "
                    f"{len(at_seq.get(other, {}))} found"
                )
                findings.append(
                    BatchFinding(length, "chain_truncated", 0, 0, (), other, detail=detail)
                )
    return accounted, vouched


def _forks_off_heads(
    at_seq: dict[str, dict[int, tuple[str, ...]]],
    links: dict[str, dict[str, tuple[int, str]]],
    vouched: dict[str, set[str]],
) -> list[BatchFinding]:
    """Where a chain forks (two entries for one batch), the entries no head leads back to:
    a head vouches for its entry and, link by link, every entry before it, so of two entries
    for a batch at or below a head only the one on its way back is the writer's."""
    findings = []
    for cid, heads in sorted(vouched.items()):
        on_path: set[str] = set()
        for head in heads:
            at = head
            while at in links[cid] and at not in on_path:
                on_path.add(at)
                at = links[cid][at][1]
        reach = max(links[cid][head][0] for head in heads)
        for seq, entries in sorted(at_seq[cid].items()):
            if len(entries) < 2 or seq > reach:
                continue
            for off in (e for e in entries if e not in on_path):
                detail = f"entry {off} is on no given or published head's way back"
                findings.append(
                    BatchFinding(seq, "fork_without_head", 0, 0, (), cid, detail=detail)
                )
    return findings


def _batches(ledger: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The ledger's rows (ordered by chain, seq, digest, chain value) grouped per batch."""
    groups: list[list[dict[str, Any]]] = []
    for row in ledger:
        if groups and (groups[-1][0]["chain_id"], groups[-1][0]["seq"]) == (
            row["chain_id"],
            row["seq"],
        ):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _entry(row: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        row["chain_id"],
        int(row["seq"]),
        row["kind"],
        int(row["source_offset"]),
        int(row["written_us"]),
        int(row["expires_us"]),
        int(row["rows"]),
        int(row["first_ns"]),
        int(row["last_ns"]),
        row["digest"],
        row["prev_chain"],
    )
