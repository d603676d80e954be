"""Tamper evidence, tried as an attacker with database access would: every kind of edit to the
observations, the dead letters or the ledger is found by `verify`, and what a consistent
rewrite of the whole chain hides is found against a head published elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from typer.testing import CliRunner

from stampline.audit import (
    LIVE_FILE,
    ChdbStore,
    DeadLetter,
    PublishedHead,
    canonical_table,
    dead_letter_table,
    find_live,
    generate_key,
    load_private_key,
    load_public_key,
    store_holder,
)
from stampline.audit._hotspots import hotspots
from stampline.audit._ledger import CANONICAL_SELECT, GENESIS, LedgerEntry, digest_batch
from stampline.audit._replay import replay_event
from stampline.cli import app
from tests.audit.test_store_suite import T0, pipeline
from tests.helpers import drop_database

CHAIN = "trail.topic/0"
OTHER = "trail.topic/1"
DAY_US = 86_400 * 1_000_000
NS = 1_000_000_000


def _dead(n: int, offset0: int = 0) -> list[DeadLetter]:
    return [
        DeadLetter(
            f"0190c6d8-0000-7000-8000-{offset0 + i:012x}",
            T0 + i,
            "md.raw",
            0,
            offset0 + i,
            "alpha",
            "quote.price",
            1,
            f"price -1 below 0 ({i})",
            b'{"price": -1}',
        )
        for i in range(n)
    ]


@pytest.fixture
def filled(store: ChdbStore) -> ChdbStore:
    """Two chains: observations at offsets 0, 2 and dead letters at 1 on the first; one
    observation batch on the second."""
    store.write_batch("observations", canonical_table(pipeline(4)), chain_id=CHAIN, source_offset=0)
    store.write_batch("dead_letters", dead_letter_table(_dead(3)), chain_id=CHAIN, source_offset=1)
    store.write_batch("observations", canonical_table(pipeline(4)), chain_id=CHAIN, source_offset=2)
    store.write_batch("observations", canonical_table(pipeline(2)), chain_id=OTHER, source_offset=0)
    report = store.verify()
    assert report.ok, report.findings
    assert (report.batches, report.rows, report.dead_letters) == (4, 30, 3)
    return store


def _tamper(store: ChdbStore, sql: str) -> list[tuple[str, str, int]]:
    store._execute(sql.replace("{db}", store.database) + " SETTINGS mutations_sync = 2")
    return _findings(store)


def _findings(
    store: ChdbStore, heads: list[tuple[str, str]] | None = None
) -> list[tuple[str, str, int]]:
    return [(f.chain_id, f.problem, f.seq) for f in store.verify(expect_heads=heads or []).findings]


def test_change_of_an_observation_is_found(filled: ChdbStore) -> None:
    """Rewriting one stored value of an observation is reported as a change to its batch."""
    assert _tamper(
        filled,
        f"ALTER TABLE {{db}}.observations UPDATE price = 1.0 "
        f"WHERE chain_id = '{CHAIN}' AND batch = 3 AND stage = 'risk'",
    ) == [(CHAIN, "changed", 3)]


def test_change_of_a_dead_letter_reason_is_found(filled: ChdbStore) -> None:
    """Rewriting every dead letter's reason is reported as a change to their batch, naming
    the column."""
    filled._execute(
        f"ALTER TABLE {filled.database}.dead_letters UPDATE reason = 'fine' WHERE 1 "
        "SETTINGS mutations_sync = 2"
    )
    (finding,) = filled.verify().findings
    assert (finding.chain_id, finding.kind, finding.problem, finding.seq) == (
        CHAIN,
        "dead_letters",
        "changed",
        2,
    )
    assert finding.columns == ("reason",)


def test_delete_of_a_dead_letter_is_found(filled: ChdbStore) -> None:
    """Deleting one dead letter is reported as a deletion from its batch."""
    assert _tamper(filled, "ALTER TABLE {db}.dead_letters DELETE WHERE offset = 1") == [
        (CHAIN, "deleted", 2)
    ]


def test_delete_of_observations_is_found(filled: ChdbStore) -> None:
    """Deleting a whole batch's rows is reported as that batch deleted."""
    assert _tamper(
        filled, f"ALTER TABLE {{db}}.observations DELETE WHERE chain_id = '{OTHER}'"
    ) == [(OTHER, "deleted", 1)]


def test_insert_of_rows_is_found(filled: ChdbStore) -> None:
    """A row slipped into a ledgered batch, and a dead letter in no batch, are both found."""
    filled._execute(
        f"INSERT INTO {filled.database}.observations (event_id, stage, batch, chain_id) "
        f"VALUES (generateUUIDv4(), 'gate', 1, '{CHAIN}')"
    )
    filled._execute(
        f"INSERT INTO {filled.database}.dead_letters (event_id, received, topic, batch, chain_id) "
        f"VALUES (generateUUIDv4(), now64(9), 'md.raw', 9, '{CHAIN}')"
    )
    assert _findings(filled) == [(CHAIN, "inserted", 1), (CHAIN, "unledgered", 9)]


def test_back_dating_a_ledger_entry_to_expire_its_rows_is_found(filled: ChdbStore) -> None:
    """Back-dating an entry's write time and expiry by 40 days, then deleting its rows, is
    found: the dates are chained, so the entry no longer vouches for its own expiry."""
    filled._execute(
        f"ALTER TABLE {filled.database}.ledger UPDATE "
        f"written = fromUnixTimestamp64Micro(toUnixTimestamp64Micro(written) - {40 * DAY_US}), "
        f"expires = fromUnixTimestamp64Micro(toUnixTimestamp64Micro(written) - {10 * DAY_US}) "
        f"WHERE chain_id = '{CHAIN}' AND seq = 1 SETTINGS mutations_sync = 2"
    )
    found = _tamper(
        filled, f"ALTER TABLE {{db}}.observations DELETE WHERE chain_id = '{CHAIN}' AND batch = 1"
    )
    assert found == [(CHAIN, "chain_broken", 1), (CHAIN, "deleted", 1)]


def test_a_back_dated_duplicate_ledger_row_is_found(filled: ChdbStore) -> None:
    """Inserting a second, back-dated ledger row for a batch (what replaced the entry in a
    replacing table) is itself a finding."""
    filled._execute(
        f"INSERT INTO {filled.database}.ledger SELECT chain_id, seq, kind, source_offset, "
        f"written - INTERVAL 40 DAY, expires - INTERVAL 40 DAY, rows, first_received, "
        f"last_received, digest, columns, prev_chain, chain FROM {filled.database}.ledger "
        f"WHERE chain_id = '{CHAIN}' AND seq = 1"
    )
    assert (CHAIN, "duplicate_entry", 1) in _findings(filled)


def test_tail_truncation_is_found_against_a_published_head(filled: ChdbStore) -> None:
    """Cutting the last batch and its ledger entry leaves a self-consistent chain, which the
    head published before the cut exposes."""
    published = filled.chain_head(CHAIN).chain
    other = (OTHER, filled.chain_head(OTHER).chain)
    filled._execute(
        f"ALTER TABLE {filled.database}.observations DELETE "
        f"WHERE chain_id = '{CHAIN}' AND batch = 3 SETTINGS mutations_sync = 2"
    )
    filled._execute(
        f"ALTER TABLE {filled.database}.ledger DELETE WHERE chain_id = '{CHAIN}' AND seq = 3 "
        "SETTINGS mutations_sync = 2"
    )
    assert _findings(filled) == [], "without an outside reference the cut is invisible"
    assert _findings(filled, [(CHAIN, published), other]) == [(CHAIN, "head_missing", 0)]


def test_a_re_chained_rewrite_is_found_against_a_published_head(filled: ChdbStore) -> None:
    """Changing a batch and recomputing its digest and every later link is consistent inside
    the database; the published head is then no longer in the chain."""
    published = filled.chain_head(CHAIN).chain
    other = (OTHER, filled.chain_head(OTHER).chain)
    db = filled.database
    filled._execute(
        f"ALTER TABLE {db}.observations UPDATE provider = 'mallory' "
        f"WHERE chain_id = '{CHAIN}' AND batch = 1 SETTINGS mutations_sync = 2"
    )
    canon = filled.query_arrow(
        f"SELECT {CANONICAL_SELECT} FROM {{db}}.observations "
        f"WHERE chain_id = '{CHAIN}' AND batch = 1"
    )
    forged_digest, _ = digest_batch(canon)
    entries = filled.query(
        "SELECT seq, kind, source_offset, toUnixTimestamp64Micro(written) AS w, "
        "toUnixTimestamp64Micro(expires) AS e, rows, "
        "toUnixTimestamp64Nano(first_received) AS f, toUnixTimestamp64Nano(last_received) AS l, "
        "digest FROM {db}.ledger WHERE chain_id = {c:String} ORDER BY seq",
        {"c": CHAIN},
    )
    prev = "0" * 64
    for e in entries:
        digest = forged_digest if e["seq"] == 1 else e["digest"]
        entry = LedgerEntry(
            CHAIN,
            e["seq"],
            e["kind"],
            e["source_offset"],
            e["w"],
            e["e"],
            e["rows"],
            e["f"],
            e["l"],
            digest,
            prev,
        )
        filled._execute(
            f"ALTER TABLE {db}.ledger UPDATE digest = '{digest}', prev_chain = '{prev}', "
            f"chain = '{entry.chain}' WHERE chain_id = '{CHAIN}' AND seq = {e['seq']} "
            "SETTINGS mutations_sync = 2"
        )
        prev = entry.chain
    assert _findings(filled) == [], "a full re-chain is consistent inside the database"
    assert _findings(filled, [(CHAIN, published), other]) == [(CHAIN, "head_missing", 0)]
    assert _findings(filled, [("", published), other]) == [
        ("", "head_missing", 0),
        (CHAIN, "chain_without_head", 0),
    ]


def test_a_published_head_of_an_intact_chain_verifies_after_more_writes(
    filled: ChdbStore,
) -> None:
    """A head published earlier stays valid while the chain grows past it."""
    earlier = filled.chain_head(CHAIN).chain
    other = (OTHER, filled.chain_head(OTHER).chain)
    filled.write_batch(
        "observations", canonical_table(pipeline(1)), chain_id=CHAIN, source_offset=3
    )
    assert _findings(filled, [(CHAIN, earlier), ("", earlier), other]) == []


def test_the_same_trail_offset_is_written_once(store: ChdbStore) -> None:
    """A trail message written again at the same offset (a re-read) adds nothing."""
    table = canonical_table(pipeline(3))
    assert store.write_batch("observations", table, chain_id=CHAIN, source_offset=5) == 1
    assert store.write_batch("observations", table, chain_id=CHAIN, source_offset=5) == 0
    assert store.write_batch("observations", table, chain_id=CHAIN, source_offset=4) == 0
    assert store.query("SELECT count() AS n FROM {db}.observations") == [{"n": 9}]
    assert store.chain_head(CHAIN).seq == 1


FORGED = "trail.topic/9"


def _forge_chain(
    store: ChdbStore, seq: int, chain: str = FORGED, prev: str = GENESIS
) -> LedgerEntry:
    """Copy batch 3 of CHAIN into ``chain`` (by default a made-up one, FORGED) at batch
    ``seq`` with doubled prices, written a second later, digest it the documented way and
    ledger it linked to ``prev`` (by default the genesis: a chain of its own)."""
    db = store.database
    store._execute(
        f"INSERT INTO {db}.observations SELECT * REPLACE ('{chain}' AS chain_id, {seq} AS batch, "
        f"price * 2 AS price, written + 1 AS written) FROM (SELECT * FROM {db}.observations "
        f"WHERE chain_id = '{CHAIN}' AND batch = 3)"
    )
    canon = store.query_arrow(
        f"SELECT {CANONICAL_SELECT} FROM {{db}}.observations "
        f"WHERE chain_id = '{chain}' AND batch = {seq}"
    )
    digest, columns = digest_batch(canon)
    (real,) = store.query(
        "SELECT toUnixTimestamp64Micro(written) AS w, toUnixTimestamp64Micro(expires) AS e, "
        "rows, toUnixTimestamp64Nano(first_received) AS f, "
        "toUnixTimestamp64Nano(last_received) AS l FROM {db}.ledger "
        f"WHERE chain_id = '{CHAIN}' AND seq = 3"
    )
    entry = LedgerEntry(
        chain,
        seq,
        "observations",
        2,
        real["w"],
        real["e"],
        real["rows"],
        real["f"],
        real["l"],
        digest,
        prev,
    )
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    store._execute(
        f"INSERT INTO {db}.ledger VALUES ('{chain}', {seq}, 'observations', 2, "
        f"fromUnixTimestamp64Micro({real['w']}), fromUnixTimestamp64Micro({real['e']}), "
        f"{real['rows']}, fromUnixTimestamp64Nano({real['f']}), "
        f"fromUnixTimestamp64Nano({real['l']}), '{digest}', {cols}, '{prev}', "
        f"'{entry.chain}')"
    )
    return entry


def _shown_prices(store: ChdbStore) -> list[float]:
    return [
        r["price"]
        for r in store.query(
            "SELECT price FROM {db}.trail WHERE event_id IN (SELECT event_id "
            "FROM {db}.observations "
            f"WHERE chain_id = '{CHAIN}' AND batch = 3) ORDER BY event_id, stage"
        )
    ]


def test_a_forged_chain_from_batch_1000000_is_found_and_shadows_nothing(filled: ChdbStore) -> None:
    """A made-up chain whose only entry is batch 1000000 (doubled prices, digested and
    chained from the genesis the documented way) is found by its sequence, and the trail view
    keeps showing the real chain's prices."""
    before = _shown_prices(filled)
    _forge_chain(filled, 1_000_000)
    assert _findings(filled) == [(FORGED, "seq_gap", 1_000_000)]
    assert _shown_prices(filled) == before
    assert filled.verify().lengths == {CHAIN: 3, OTHER: 1, FORGED: 1}


def test_a_forged_chain_from_batch_1_is_found_against_the_published_heads(
    filled: ChdbStore,
) -> None:
    """A made-up chain that starts at batch 1 is consistent inside the store; with the real
    chains' heads given it is the chain no head accounts for."""
    heads = [(h.chain_id, h.chain) for h in filled.chain_heads()]
    _forge_chain(filled, 1)
    assert _findings(filled) == [], "a well-formed made-up chain is invisible without heads"
    assert _findings(filled, heads) == [(FORGED, "chain_without_head", 0)]


class _Decoy(ThreadingHTTPServer):
    """Any ClickHouse-HTTP-like server: answers /ping, and every query from ``intact``."""

    def __init__(self, intact: ChdbStore, tampered_db: str) -> None:
        super().__init__(("127.0.0.1", 0), _DecoyHandler)
        self.intact, self.tampered_db = intact, tampered_db
        self.queries = 0


class _DecoyHandler(BaseHTTPRequestHandler):
    server: _Decoy

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self._reply(b"Ok.\n")

    def do_POST(self) -> None:
        self.server.queries += 1
        sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
        fmt = parse_qs(urlsplit(self.path).query)["default_format"][0]
        sql = sql.replace(self.server.tampered_db, self.server.intact.database)
        self._reply(self.server.intact.raw_query(sql, None, fmt))

    def _reply(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def _decoy_of_the_intact_store(filled: ChdbStore, chdb_dir: Path, uid: str) -> Iterator[_Decoy]:
    """Copy ``filled`` as it is, double its prices, and serve the intact copy from a decoy
    endpoint that a pid-1 `.stampline-live.json` in the store's folder names; removed after."""
    with ChdbStore(chdb_dir, f"t_{uid}_copy") as intact:
        db = filled.database
        for table in ("observations", "ledger", "dead_letters"):  # the copy before tampering
            intact._execute(f"DROP TABLE {intact.database}.{table}")
            intact._execute(f"CREATE TABLE {intact.database}.{table} AS {db}.{table}")
            intact._execute(f"INSERT INTO {intact.database}.{table} SELECT * FROM {db}.{table}")
        filled._execute(
            f"ALTER TABLE {db}.observations UPDATE price = price * 2 WHERE 1 "
            "SETTINGS mutations_sync = 2"
        )
        decoy = _Decoy(intact, db)
        threading.Thread(target=decoy.serve_forever, daemon=True).start()
        live = Path(filled.path) / LIVE_FILE
        url = f"http://127.0.0.1:{decoy.server_address[1]}"
        live.write_text(json.dumps({"url": url, "database": db, "pid": 1}))
        try:
            assert find_live(filled.path) is not None, "the decoy passes for a live recorder"
            yield decoy
        finally:
            live.unlink()
            decoy.shutdown()
            decoy.server_close()
            drop_database(intact)


def test_a_decoy_endpoint_named_inside_the_store_is_never_followed(
    filled: ChdbStore, chdb_dir: Path, uid: str
) -> None:
    """A store whose prices were doubled fails `audit verify --store` even when a
    `.stampline-live.json` in its folder names a live, pid-1 endpoint serving an intact copy:
    verify reads the folder itself and never asks the endpoint."""
    db = filled.database
    with _decoy_of_the_intact_store(filled, chdb_dir, uid) as decoy:
        args = ["audit", "verify", "--store", str(filled.path), "--database", db, "--json"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    problems = {(f["chain"], f["problem"]) for f in orjson.loads(result.stdout)["findings"]}
    assert problems == {(CHAIN, "changed"), (OTHER, "changed")}
    assert decoy.queries == 0


def test_evidence_never_follows_a_decoy_endpoint_named_inside_the_store(
    filled: ChdbStore, chdb_dir: Path, uid: str, tmp_path: Path
) -> None:
    """`stampline evidence --store` on a store whose prices were doubled, with a pid-1
    `.stampline-live.json` naming a decoy that serves an intact copy: nobody holds the folder,
    so the report reads its files, never asks the decoy, and fails verification (exit 1)."""
    db = filled.database
    (eid,) = filled.query(
        "SELECT toString(event_id) AS e FROM {db}.observations ORDER BY e LIMIT 1"
    )
    with _decoy_of_the_intact_store(filled, chdb_dir, uid) as decoy:
        assert store_holder(filled.path) is None
        args = ["evidence", "--event", eid["e"], "--store", str(filled.path),
                "--database", db, "--no-pdf", "--out", str(tmp_path / "ev")]  # fmt: skip
        result = CliRunner().invoke(app, args)
    assert decoy.queries == 0
    assert result.exit_code == 1, result.output
    doc = orjson.loads((tmp_path / "ev" / "evidence.json").read_bytes())
    problems = {
        (f["chain"], f["problem"]) for f in doc["integrity"]["verified_at_production"]["findings"]
    }
    assert problems == {(CHAIN, "changed"), (OTHER, "changed")}
    assert 'id="verification-failed"' in (tmp_path / "ev" / "report.html").read_text()


def test_evidence_checks_the_heads_it_is_given(filled: ChdbStore, tmp_path: Path) -> None:
    """A chain made up from batch 1 is consistent inside the store; `stampline evidence`
    given every real chain's head with `--expect-head` (as `audit verify` takes them) finds
    it, opens the report with the banner naming it and exits 1."""
    heads = [f"--expect-head={h.chain_id}={h.chain}" for h in filled.chain_heads()]
    _forge_chain(filled, 1)
    (eid,) = filled.query(
        f"SELECT toString(event_id) AS e FROM {{db}}.observations WHERE chain_id = '{FORGED}' "
        "ORDER BY e LIMIT 1"
    )
    base = ["evidence", "--event", eid["e"], "--store", str(filled.path),
            "--database", filled.database, "--no-pdf"]  # fmt: skip
    alone = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "alone")])
    assert alone.exit_code == 0, "without heads the made-up chain verifies"
    result = CliRunner().invoke(app, [*base, *heads, "--out", str(tmp_path / "ev")])
    assert result.exit_code == 1, result.output
    doc = orjson.loads((tmp_path / "ev" / "evidence.json").read_bytes())
    found = doc["integrity"]["verified_at_production"]["findings"]
    assert [(f["chain"], f["problem"]) for f in found] == [(FORGED, "chain_without_head")]
    html = (tmp_path / "ev" / "report.html").read_text()
    banner = html.find('id="verification-failed"')
    assert 0 < banner < html.find("<h2>")
    assert f"{FORGED}: chain_without_head" in html[banner:]
    # The row shown is the real chain's, marked contested by the made-up one.
    (gate,) = (s for e in doc["events"] for s in e["stamps"] if s["stage"] == "gate")
    assert gate["affected"] == [f"contested: chains {CHAIN}, {FORGED} hold different rows"]
    assert {b["chain_id"] for b in doc["integrity"]["batches"]} == {CHAIN}


def test_verify_refuses_a_store_another_process_holds(tmp_path: Path) -> None:
    """A chDB folder open in another process (a running recorder) is refused, naming that
    process, and is not read through any endpoint."""
    folder = tmp_path / "held"
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert store_holder(folder) == holder.pid
        result = CliRunner().invoke(app, ["audit", "verify", "--store", str(folder)])
        holder.terminate()
    assert result.exit_code == 1
    assert f"open in process {holder.pid}" in result.stderr
    assert "verify a copy" in result.stderr


_HOLD = """
import sys, time
from chdb import session
s = session.Session(sys.argv[1])
s.query("SELECT 1")
print("held", flush=True)
time.sleep(120)
"""


def _published(store: ChdbStore, key: Ed25519PrivateKey | None) -> list[PublishedHead]:
    """Every chain's head as the recorder publishes it, signed with ``key``."""
    owned = {h.chain_id: h.seq for h in store.chain_heads()}
    return [
        PublishedHead.from_message(
            PublishedHead(h.chain_id, h.seq, h.chain, h.source_offset, 1, owned).message(key)
        )
        for h in store.chain_heads()
    ]


def _keys(tmp_path: Path, name: str) -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    generate_key(tmp_path / name, tmp_path / f"{name}.pub")
    return load_private_key(tmp_path / name), load_public_key(tmp_path / f"{name}.pub")


def test_a_forged_chain_with_a_head_forged_on_the_broker_is_found_by_the_signature(
    filled: ChdbStore, tmp_path: Path
) -> None:
    """An insider who writes both the store and the heads topic can make up a chain and
    publish a head for it; unsigned, or signed with a key not the recorder's, the head does
    not count, so the made-up chain is the one no head accounts for."""
    recorder, public = _keys(tmp_path, "recorder")
    mallory, _ = _keys(tmp_path, "mallory")
    published = _published(filled, recorder)
    assert filled.verify(published=published, public_key=public).ok
    _forge_chain(filled, 1)
    (forged,) = (h for h in _published(filled, None) if h.chain == FORGED)
    (signed_by_mallory,) = (h for h in _published(filled, mallory) if h.chain == FORGED)
    found = filled.verify(
        published=[*published, forged, signed_by_mallory], public_key=public
    ).findings
    assert [(f.chain_id, f.problem) for f in found] == [
        (FORGED, "head_unsigned"),
        (FORGED, "head_bad_signature"),
        (FORGED, "chain_without_head"),
    ]
    unchecked = filled.verify(published=[*published, forged])
    assert unchecked.ok, "without the public key a head on the broker is taken at its word"


def test_every_published_head_is_checked_in_order(filled: ChdbStore, tmp_path: Path) -> None:
    """Each published head must be the entry at its batch, never going back, and each chain
    it names at least as long as it says: an earlier head that no longer matches, a head
    published after a later one, and a chain cut below its published length are all found."""
    recorder, public = _keys(tmp_path, "recorder")
    earlier = _published(filled, recorder)
    filled.write_batch(
        "observations", canonical_table(pipeline(1)), chain_id=OTHER, source_offset=1
    )
    later = _published(filled, recorder)
    assert filled.verify(published=[*earlier, *later], public_key=public).ok
    found = filled.verify(published=[*later, *earlier], public_key=public).findings
    assert [(f.chain_id, f.problem, f.seq) for f in found] == [(OTHER, "head_out_of_order", 1)]
    filled._execute(
        f"ALTER TABLE {filled.database}.ledger DELETE WHERE chain_id = '{OTHER}' AND seq = 2 "
        "SETTINGS mutations_sync = 2"
    )
    filled._execute(
        f"ALTER TABLE {filled.database}.observations DELETE "
        f"WHERE chain_id = '{OTHER}' AND batch = 2 SETTINGS mutations_sync = 2"
    )
    found = filled.verify(published=[*earlier, *later], public_key=public).findings
    assert [(f.chain_id, f.problem, f.seq) for f in found] == [
        (OTHER, "chain_truncated", 2),  # named with its length by CHAIN's head
        (OTHER, "head_missing", 2),
    ]


def _copy_batch(store: ChdbStore, chain: str, seq: int, replace: str = "") -> list[str]:
    """Copy batch 3 of CHAIN into ``chain`` at batch ``seq``, each column in ``replace``
    (``expr AS column, ...``) rewritten, as an insider writing the store would; returns the
    copied events' ids, read back from the store."""
    db = store.database
    store._execute(
        f"INSERT INTO {db}.observations SELECT * REPLACE ('{chain}' AS chain_id, {seq} AS batch"
        f"{', ' + replace if replace else ''}) FROM (SELECT * FROM {db}.observations "
        f"WHERE chain_id = '{CHAIN}' AND batch = 3)"
    )
    rows = store.query(
        "SELECT DISTINCT toString(event_id) AS e FROM {db}.observations "
        "WHERE chain_id = {c:String} AND batch = {b:UInt64} ORDER BY e",
        {"c": chain, "b": seq},
    )
    assert len(rows) == 4, "the copy is in the store"
    return [r["e"] for r in rows]


def _view(store: ChdbStore, ids: list[str]) -> list[tuple[str, int, list[str]]]:
    """Per (event, stage) of ``ids`` as the trail view shows it: host, contested, chains."""
    return [
        (r["host"], r["contested"], r["chains"])
        for r in store.query(
            "SELECT host, contested, chains FROM {db}.trail "
            "WHERE event_id IN {ids:Array(UUID)} ORDER BY event_id, stage",
            {"ids": ids},
        )
    ]


@pytest.mark.parametrize(
    ("chain", "seq", "trick"),
    [
        (FORGED, 1_000_000, ""),  # a batch number above every real one
        ("a.forged/0", 1, ""),  # a chain id sorting before the real one
        (FORGED, 1, "written - 3600 AS written"),  # written an hour before the real rows
        (FORGED, 1, "3 AS authority"),  # an authority above the stamper's
    ],
)
def test_no_chain_shadows_another_in_the_trail_view_or_replay(
    filled: ChdbStore, chain: str, seq: int, trick: str
) -> None:
    """A made-up chain re-stating real rows with another host never silently replaces them,
    whatever batch number, chain id, write time or authority it was given: the trail view
    marks each such (event, stage) contested, naming both chains, and replay shows each stamp
    read from it as contested."""
    ids = _copy_batch(filled, chain, seq, ", ".join(x for x in ("'mallory' AS host", trick) if x))
    both = sorted([CHAIN, chain])
    shown = _view(filled, ids)
    assert len(shown) == 12
    assert all(contested == 1 and chains == both for _, contested, chains in shown), shown
    for eid in ids:
        trail = replay_event(filled, eid)
        stages = [s for s in trail.events[0].stamps if s.kind == "stage"]
        assert [s.contested for s in stages] == [tuple(both)] * 3
        assert dict(trail.events[0].contested) == {
            st: tuple(both) for st in ("gate", "enrich", "risk")
        }
        assert all(s.contested == tuple(both) for s in trail.events[0].stamps), "origin, ingest"


def test_the_same_rows_in_two_chains_are_not_contested(filled: ChdbStore) -> None:
    """A batch whose rows another chain also holds unchanged (a trail message written by two
    recorders across a repartition) is one sighting: shown once, naming both chains, not
    contested."""
    ids = _copy_batch(filled, OTHER, 2, "written + 5 AS written")
    assert all(c == 0 and chains == [CHAIN, OTHER] for _, c, chains in _view(filled, ids))
    assert all(not s.contested for s in replay_event(filled, ids[0]).events[0].stamps)


def test_a_taps_reading_of_a_stamp_in_another_chain_is_not_contested(filled: ChdbStore) -> None:
    """A tap's reading (authority 1) of the stamper's own stamp, in the tap's chain, holds the
    same stamp and differs in what only the stamper knows: it agrees. The same reading with
    another time contests the stamper's row."""
    tap = ", ".join(
        (
            "1 AS authority",
            "'md.clean' AS topic",
            "'' AS provider",
            "'observed' AS outcome",
            "nan AS price",
            "offset + 100 AS offset",
        )
    )
    ids = _copy_batch(filled, OTHER, 2, tap)
    assert all(c == 0 and ch == [CHAIN, OTHER] for _, c, ch in _view(filled, ids))
    ids = _copy_batch(filled, FORGED, 1, tap + ", stage_ns + 1 AS stage_ns")
    assert all(c == 1 and ch == [CHAIN, OTHER, FORGED] for _, c, ch in _view(filled, ids))


def test_replay_prints_a_contested_stamp_naming_the_chains(filled: ChdbStore) -> None:
    """`stampline replay` marks each contested stamp and names the chains holding it."""
    (eid, *_) = _copy_batch(filled, FORGED, 1_000_000, "'mallory' AS host")
    result = CliRunner().invoke(
        app, ["replay", eid, "--store", str(filled.path), "--database", filled.database]
    )
    assert result.exit_code == 0, result.output
    assert "CONTESTED" in result.stdout
    for stage in ("gate", "enrich", "risk"):
        assert f"{eid} {stage}: CONTESTED: chains {CHAIN}, {FORGED}" in result.stdout


def _read_back(store: ChdbStore, sql: str) -> list[dict[str, object]]:
    return store.query(sql)


def test_a_dropped_partition_is_found_as_deleted_batches(filled: ChdbStore) -> None:
    """Dropping every partition of the observations (what `ALTER TABLE … DROP PARTITION`
    does to a day of the trail) is found: each batch that held rows there is deleted."""
    parts = filled.query(
        "SELECT DISTINCT partition AS p FROM system.parts "
        "WHERE database = {d:String} AND table = 'observations' AND active",
        {"d": filled.database},
    )
    assert parts, "the trail has partitions to drop"
    for p in parts:
        filled._execute(f"ALTER TABLE {filled.database}.observations DROP PARTITION '{p['p']}'")
    assert _read_back(filled, "SELECT count() AS n FROM {db}.observations") == [{"n": 0}]
    assert _findings(filled) == [
        (CHAIN, "deleted", 1),
        (CHAIN, "deleted", 3),
        (OTHER, "deleted", 1),
    ]


def test_rows_moved_to_another_chain_are_found_in_both(filled: ChdbStore) -> None:
    """Moving a batch's rows into another chain (as that chain's batch 1, so its count and
    ids look plausible) is found twice: deleted from the chain they were written in, and
    inserted into the one they were moved to."""
    db = filled.database
    filled._execute(
        f"INSERT INTO {db}.observations SELECT * REPLACE ('{OTHER}' AS chain_id, 1 AS batch) "
        f"FROM (SELECT * FROM {db}.observations WHERE chain_id = '{CHAIN}' AND batch = 3)"
    )
    filled._execute(
        f"ALTER TABLE {db}.observations DELETE WHERE chain_id = '{CHAIN}' AND batch = 3 "
        "SETTINGS mutations_sync = 2"
    )
    assert _read_back(
        filled,
        "SELECT chain_id, batch, count() AS n FROM {db}.observations "
        "GROUP BY chain_id, batch ORDER BY chain_id, batch",
    ) == [
        {"chain_id": CHAIN, "batch": 1, "n": 12},
        {"chain_id": OTHER, "batch": 1, "n": 18},
    ]
    assert _findings(filled) == [(CHAIN, "deleted", 3), (OTHER, "inserted", 1)]


def test_a_deleted_chain_is_found_against_its_head(filled: ChdbStore) -> None:
    """Deleting a whole chain, rows and ledger, leaves a store consistent inside; the chain's
    head, kept outside, is then in no chain."""
    heads = [(h.chain_id, h.chain) for h in filled.chain_heads()]
    db = filled.database
    for table, column in (("observations", "chain_id"), ("ledger", "chain_id")):
        filled._execute(
            f"ALTER TABLE {db}.{table} DELETE WHERE {column} = '{OTHER}' "
            "SETTINGS mutations_sync = 2"
        )
    assert _read_back(
        filled, f"SELECT count() AS n FROM {{db}}.ledger WHERE chain_id = '{OTHER}'"
    ) == [{"n": 0}]
    assert _findings(filled) == [], "without an outside reference the deletion is invisible"
    assert _findings(filled, heads) == [(OTHER, "head_missing", 0)]


def test_a_batch_forged_onto_a_chains_tail_is_found_by_the_next_real_batch(
    filled: ChdbStore,
) -> None:
    """A batch appended to a chain's tail, correctly digested and linked, is consistent until
    the chain's writer goes on: its own batch of that number is then a duplicate entry."""
    real = filled.chain_head(CHAIN)
    _forge_chain(filled, real.seq + 1, chain=CHAIN, prev=real.chain)
    assert _read_back(
        filled, f"SELECT max(seq) AS s FROM {{db}}.ledger WHERE chain_id = '{CHAIN}'"
    ) == [{"s": 4}]
    assert _findings(filled) == [], "the forged tail is consistent inside the store"
    # The recorder, which keeps its chain's head itself, writes its next batch.
    assert (
        filled.write_batch(
            "observations", canonical_table(pipeline(1)), chain_id=CHAIN, source_offset=3, head=real
        )
        == 4
    )
    # Both entries at batch 4 are a finding, and the rows of the two batches under one
    # number are more than either entry digests.
    assert sorted(_findings(filled)) == [
        (CHAIN, "duplicate_entry", 4),
        (CHAIN, "duplicate_entry", 4),
        (CHAIN, "inserted", 4),
    ]


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    """hotspots' figures without the notes and the window."""
    drop = ("flags", "previous_p99_ns", "trend")
    return {
        part: [{k: v for k, v in r.items() if k not in drop} for r in result[part]]
        for part in ("rows", "holds", "tap_lags")
    }


def test_a_forged_chain_with_other_times_changes_no_hotspots_figure_silently(
    filled: ChdbStore,
) -> None:
    """Batch 3's rows re-stated by a made-up chain at batch 1000000, each stamp 7 ms later
    and held three times as long, never enter a figure: every (event, stage) they contest is
    left out, counted per stage and named in the notes, and the figures are those of the
    store without those events."""
    ids = _copy_batch(
        filled,
        FORGED,
        1_000_000,
        "received + toIntervalMillisecond(7) AS received, hop_ns + 7000000 AS hop_ns, "
        "stage_ns * 3 AS stage_ns",
    )
    forged = hotspots(filled, 3600 * NS)
    # The same figures as a store that never held the contested events.
    filled._execute(
        f"ALTER TABLE {filled.database}.observations DELETE WHERE event_id IN "
        f"({', '.join(repr(i) for i in ids)}) SETTINGS mutations_sync = 2"
    )
    without = hotspots(filled, 3600 * NS)
    assert _figures(forged) == _figures(without)
    assert forged["contested"] == {"enrich": 4, "gate": 4, "risk": 4}
    assert without["contested"] == {}
    assert all(
        "4 contested (event, stage) left out: chains disagree, see `audit verify`" in r["flags"]
        for r in forged["rows"] + forged["holds"]
    )
    assert [r["hops"] for r in without["rows"]] == [6, 6, 6]


def test_a_batch_forged_onto_a_chains_tail_is_found_by_a_later_head_every_time(
    filled: ChdbStore,
) -> None:
    """A batch appended to a chain's tail, then the writer's own batch of that number: with
    the head the writer published after it given, verify names the forged entry (the one no
    head leads back to) and both entries of the fork, the same way on every run, whatever
    order the store returns the two entries in."""
    real = filled.chain_head(CHAIN)
    forged = _forge_chain(filled, real.seq + 1, chain=CHAIN, prev=real.chain)
    filled.write_batch(
        "observations", canonical_table(pipeline(1)), chain_id=CHAIN, source_offset=3, head=real
    )
    (mine,) = filled.query(
        f"SELECT chain FROM {{db}}.ledger WHERE chain_id = '{CHAIN}' AND seq = 4 "
        f"AND chain != '{forged.chain}'"
    )
    heads = [(CHAIN, mine["chain"]), (OTHER, filled.chain_head(OTHER).chain)]
    entries = sorted([forged.chain, mine["chain"]])
    runs = set()
    for _ in range(10):
        report = filled.verify(expect_heads=heads)
        runs.add(tuple(f.to_dict().get("detail", "") + f.problem for f in report.findings))
        found = sorted((f.chain_id, f.problem, f.seq, f.detail) for f in report.findings)
        assert found == sorted(
            [
                (CHAIN, "duplicate_entry", 4, f"entry {entries[0]}, one of 2 for this batch"),
                (CHAIN, "duplicate_entry", 4, f"entry {entries[1]}, one of 2 for this batch"),
                (CHAIN, "inserted", 4, ""),
                (
                    CHAIN,
                    "fork_without_head",
                    4,
                    f"entry {forged.chain} is on no given or published head's way back",
                ),
            ]
        )
    assert len(runs) == 1
