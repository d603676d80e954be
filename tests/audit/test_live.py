"""Live queries: the process holding a chDB store serves read-only queries on 127.0.0.1, and
other readers (`LiveStore`, the CLI) read through it; nothing can write through it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from stampline.audit import (
    LIVE_FILE,
    ChdbStore,
    ClickHouseStore,
    LiveEndpoint,
    LiveStore,
    ReadOnlyError,
    StoreError,
    find_live,
    replay_event,
)
from stampline.audit._live import read_only_statement
from tests.audit.test_store_suite import pipeline


@pytest.fixture
def live(store: ChdbStore) -> Iterator[tuple[ChdbStore, LiveStore]]:
    store.write_observations(pipeline(5))
    with LiveEndpoint(store) as endpoint:
        yield store, LiveStore(endpoint.url, store.database)


def test_queries_through_the_endpoint_match_the_store(live: tuple[ChdbStore, LiveStore]) -> None:
    """Rows, Arrow tables, parameters, replay and verification read the same through the
    endpoint as from the store itself."""
    store, remote = live
    sql = "SELECT stage, count() AS n FROM {db}.observations GROUP BY stage ORDER BY stage"
    assert remote.query(sql) == store.query(sql)
    assert remote.query_arrow(sql).to_pylist() == store.query_arrow(sql).to_pylist()
    params = {"s": "it's", "ids": ["a", "b'c"]}
    assert remote.query("SELECT {s:String} AS s, {ids:Array(String)} AS ids", params) == [
        {"s": "it's", "ids": ["a", "b'c"]}
    ]
    (event_id,) = store.query("SELECT toString(event_id) AS id FROM {db}.observations LIMIT 1")
    assert (
        replay_event(remote, event_id["id"]).to_dict()
        == replay_event(store, event_id["id"]).to_dict()
    )
    assert remote.verify().to_dict() == store.verify().to_dict()
    assert remote.migrate().already == store.migrate().already


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("INSERT INTO {db}.observations (stage) VALUES ('x')", "INSERT is not a read"),
        ("ALTER TABLE {db}.observations DELETE WHERE 1", "ALTER is not a read"),
        ("DROP TABLE {db}.observations", "DROP is not a read"),
        ("SELECT 1; DROP TABLE {db}.observations", "one statement"),
        ("SELECT 1 /* ; */; TRUNCATE TABLE {db}.observations", "one statement"),
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "readonly mode"),
        ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", "readonly mode"),
        (  # an inner setting cannot lift the outer read-only mode
            "SELECT * FROM (SELECT * FROM file('/etc/hostname', 'LineAsString') "
            "SETTINGS readonly = 0)",
            "readonly mode",
        ),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("DESCRIBE TABLE file('/etc/hostname')", "table function"),
        ("  ", "an empty query"),
    ],
)
def test_writes_and_escapes_are_refused(
    live: tuple[ChdbStore, LiveStore], sql: str, why: str
) -> None:
    """Every write, a second statement, table functions and setting changes are refused, and
    the store is unchanged."""
    store, remote = live
    before = store.query("SELECT count() AS n FROM {db}.observations")
    with pytest.raises(StoreError, match=why):
        remote.query(sql)
    assert store.query("SELECT count() AS n FROM {db}.observations") == before


def test_a_semicolon_inside_a_string_is_not_a_second_statement() -> None:
    """Quoted text and comments may hold ';' and '--' without being taken for code."""
    text, fmt = read_only_statement("SELECT 'a;b' AS x, `c;d` -- ; x\nFORMAT JSON;", None)
    assert fmt == "JSON"
    assert text.startswith("SELECT * FROM (\nSELECT 'a;b' AS x, `c;d`")
    with pytest.raises(ReadOnlyError):
        read_only_statement("SELECT 'a' ; SELECT 2", None)


def test_a_statement_ending_in_a_string_literal_keeps_it() -> None:
    """A query whose last token is a quoted value (a filter on a text column) is passed on
    whole, with or without a FORMAT clause after it."""
    sql = "SELECT count() FROM t WHERE verdict = 'expected'"
    text, fmt = read_only_statement(sql, None)
    assert text == f"SELECT * FROM (\n{sql}\n) SETTINGS readonly = 1"
    assert fmt is None
    text, fmt = read_only_statement(sql + " FORMAT JSONEachRow", None)
    assert text.endswith("verdict = 'expected'\n) SETTINGS readonly = 1")
    assert fmt == "JSONEachRow"


def test_writes_through_the_live_store_are_refused(live: tuple[ChdbStore, LiveStore]) -> None:
    """The live store cannot write: a batch of observations is refused with a clear error."""
    _store, remote = live
    with pytest.raises(StoreError, match="read-only live endpoint"):
        remote.write_observations(pipeline(1))


def test_the_endpoint_speaks_clickhouse_http(live: tuple[ChdbStore, LiveStore]) -> None:
    """/ping answers Ok., a query in the URL with default_format answers in that format, and
    an error carries X-ClickHouse-Exception-Code as ClickHouse's does."""
    _store, remote = live
    with urllib.request.urlopen(f"{remote.url}/ping") as r:
        assert r.read() == b"Ok.\n"
    with urllib.request.urlopen(f"{remote.url}/?query=SELECT%201%20AS%20x%20FORMAT%20CSV") as r:
        assert (r.read(), r.headers["X-ClickHouse-Format"]) == (b"1\n", "CSV")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{remote.url}/?query=DROP%20TABLE%20x")
    info.value.close()
    assert info.value.headers["X-ClickHouse-Exception-Code"] == "164"


def test_the_endpoint_is_found_from_the_store_folder_and_forgotten_when_closed(
    store: ChdbStore,
) -> None:
    """While it serves, the store folder names the endpoint; after close, and for a file left
    by a dead process, nothing is found."""
    with LiveEndpoint(store) as endpoint:
        found = find_live(store.path)
        assert found is not None
        assert (found["url"], found["pid"]) == (endpoint.url, os.getpid())
    assert find_live(store.path) is None
    (store.path / LIVE_FILE).write_text(
        json.dumps({"url": endpoint.url, "database": "x", "pid": 2**22 + 12345})
    )
    try:
        assert find_live(store.path) is None
    finally:
        (store.path / LIVE_FILE).unlink()


def test_the_server_backend_reads_the_embedded_store_through_the_endpoint(
    live: tuple[ChdbStore, LiveStore],
) -> None:
    """clickhouse-connect, through the store's own server backend, reads the live endpoint as
    it reads a ClickHouse server: queries, replay and verification agree; writes fail."""
    store, remote = live
    server = ClickHouseStore(remote.url, store.database, migrate=False)
    try:
        sql = "SELECT stage, count() AS n FROM {db}.observations WHERE stage != {s:String} "
        sql += "GROUP BY stage ORDER BY stage"
        assert server.query(sql, {"s": "gate"}) == store.query(sql, {"s": "gate"})
        (row,) = store.query("SELECT toString(event_id) AS id FROM {db}.observations LIMIT 1")
        assert replay_event(server, row["id"]).to_dict() == replay_event(store, row["id"]).to_dict()
        assert server.verify().ok
        with pytest.raises(StoreError):
            server.write_observations(pipeline(1))
    finally:
        server.close()
    assert store.query("SELECT count() AS n FROM {db}.observations") == [{"n": 15}]


def test_an_address_in_use_is_named_in_the_error(store: ChdbStore) -> None:
    """Binding the live endpoint to an address another endpoint holds fails with an error
    that names that host:port."""
    with LiveEndpoint(store) as first:
        taken = f"Address already in use: '127.0.0.1:{first.port}'"
        with pytest.raises(OSError, match=taken):
            LiveEndpoint(store, "127.0.0.1", first.port)
