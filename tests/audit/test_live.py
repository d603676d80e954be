"""Live queries: the process holding a chDB store serves read-only queries on 127.0.0.1, and
other readers (`LiveStore`, the CLI) read through it; nothing can write through it."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stampline.audit import (
    LIVE_FILE,
    TOKEN_FILE,
    ChdbStore,
    ClickHouseStore,
    LiveEndpoint,
    LiveStore,
    QueryLimits,
    StoreError,
    find_live,
    replay_event,
)
from stampline.audit._readonly import _hung_up
from tests.audit.test_store_suite import pipeline


@pytest.fixture
def live(store: ChdbStore) -> Iterator[tuple[ChdbStore, LiveStore]]:
    store.write_observations(pipeline(5))
    with LiveEndpoint(store) as endpoint:
        yield store, LiveStore(endpoint.url, store.database, token=endpoint.token)


def post(
    remote: LiveStore, sql: str, token: str | None = None, **headers: str
) -> tuple[int, bytes]:
    """POST ``sql`` to the endpoint with ``token`` (the endpoint's own unless given)."""
    auth = {"Authorization": f"Bearer {token if token is not None else remote._token}"}
    request = urllib.request.Request(
        f"{remote.url}/", data=sql.encode(), method="POST", headers={**auth, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, body


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


HEREDOC = (  # the `;` hide from a splitter that does not know $$…$$ strings
    "SELECT $$'$$ AS a) ; ALTER TABLE {db}.observations DELETE WHERE 1 SETTINGS "
    "mutations_sync=2 ; SELECT * FROM (SELECT 1 -- '"
)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("INSERT INTO {db}.observations (stage) VALUES ('x')", "only SELECT"),
        ("ALTER TABLE {db}.observations DELETE WHERE 1", "only SELECT"),
        ("DROP TABLE {db}.observations", "only SELECT"),
        ("CREATE TABLE {db}.x (a UInt8) ENGINE = Memory", "only SELECT"),
        ("SELECT 1; DROP TABLE {db}.observations", "Multi-statements are not allowed"),
        ("SELECT 1 /* ; */; TRUNCATE TABLE {db}.observations", "Multi-statements"),
        (HEREDOC, "Syntax error"),
        ("SELECT $t$;$t$; ALTER TABLE {db}.observations DELETE WHERE 1", "Multi-statements"),
        ("SELECT file('/etc/hostname')", "function 'file' is not allowed"),
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "function 'file'"),
        ("INSERT INTO FUNCTION file('/tmp/x.csv') SELECT 1", "only SELECT"),
        ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", "function 'url'"),
        ("SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')", "function 's3'"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "function 'remote'"),
        ("SELECT * FROM executable('id', 'TSV', 'a String')", "function 'executable'"),
        ("SELECT * FROM Python(x)", "function 'Python'"),
        ("SELECT dictGet('d', 'a', 1)", "function 'dictGet'"),
        ("SELECT FILE('/etc/hostname')", "'FILE' is not allowed"),
        ("SELECT * FROM (SELECT 1 SETTINGS readonly = 0)", "SETTINGS"),
        ("SELECT count() FROM numbers(10) SETTINGS max_execution_time = 0", "SETTINGS"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
        ("SELECT query FROM system.processes", "table 'system.processes'"),
        ("SELECT 1 WHERE 1 IN system.processes", "table 'system.processes'"),
        ("DESCRIBE TABLE file('/etc/hostname')", "only SELECT"),
        ("  ", "empty query"),
    ],
)
def test_writes_and_escapes_are_refused(
    live: tuple[ChdbStore, LiveStore], sql: str, why: str, tmp_path: Path
) -> None:
    """Every write, a second statement however hidden, functions reaching outside the store,
    setting changes, files and the engine's process tables are refused, and the store is
    unchanged."""
    store, remote = live
    before = store.query("SELECT count() AS n FROM {db}.observations")
    with pytest.raises(StoreError, match=why):
        remote.query(sql.replace("/tmp/", f"{tmp_path}/"))
    assert store.query("SELECT count() AS n FROM {db}.observations") == before
    assert list(tmp_path.iterdir()) == []


def test_a_query_without_the_token_is_refused(live: tuple[ChdbStore, LiveStore]) -> None:
    """No token, a wrong one, or a wrong Basic password get 401; the token as Bearer or as
    the Basic password (what ClickHouse clients send) is answered; /ping needs none."""
    _store, remote = live
    assert post(remote, "SELECT 1", token="")[0] == 401
    assert post(remote, "SELECT 1", token="wrong")[0] == 401
    request = urllib.request.Request(f"{remote.url}/?query=SELECT%201")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    info.value.close()
    assert info.value.code == 401
    assert post(remote, "SELECT 1 AS x") == (200, b"1\n")
    basic = base64.b64encode(f"default:{remote._token}".encode()).decode()
    assert post(remote, "SELECT 2", token="", Authorization=f"Basic {basic}") == (200, b"2\n")
    with urllib.request.urlopen(f"{remote.url}/ping", timeout=60) as r:
        assert r.read() == b"Ok.\n"


def test_the_token_is_beside_the_live_file_for_its_owner_only(store: ChdbStore) -> None:
    """The endpoint's token is written 0600 beside the live file, `find_live` hands it on,
    and both files go when the endpoint closes."""
    with LiveEndpoint(store) as endpoint:
        token_file = store.path / TOKEN_FILE
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert (store.path / LIVE_FILE).stat().st_mode & 0o777 == 0o600
        found = find_live(store.path)
        assert found is not None
        assert found["token"] == endpoint.token
        assert endpoint.token not in (store.path / LIVE_FILE).read_text()
    assert not token_file.exists()


def test_a_non_loopback_bind_needs_a_token(store: ChdbStore) -> None:
    """An endpoint on an address other machines reach refuses to start without a configured
    token, and serves with one."""
    with pytest.raises(StoreError, match="query_token"):
        LiveEndpoint(store, "0.0.0.0")
    with LiveEndpoint(store, "0.0.0.0", token="s3cret-token") as endpoint:
        remote = LiveStore(
            f"http://127.0.0.1:{endpoint.port}", store.database, token="s3cret-token"
        )
        assert remote.query("SELECT 1 AS x") == [{"x": 1}]


def _raw(remote: LiveStore, request: bytes) -> bytes:
    host, port = remote.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def test_malformed_http_is_answered_not_dropped(
    live: tuple[ChdbStore, LiveStore], caplog: pytest.LogCaptureFixture
) -> None:
    """A bad Content-Length gets 400, a body past the limit 413, chunked 411, each an answer
    with no traceback logged; the endpoint answers the next query."""
    _store, remote = live
    auth = f"Authorization: Bearer {remote._token}\r\n".encode()
    for length, status in ((b"abc", b"400"), (b"-5", b"400"), (b"99999999999", b"413")):
        answer = _raw(
            remote, b"POST / HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: " + length
            + b"\r\n\r\nSELECT 1"
        )  # fmt: skip
        assert answer.startswith(b"HTTP/1.0 " + status) or answer.startswith(b"HTTP/1.1 " + status)
    answer = _raw(remote, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")
    assert "Traceback" not in caplog.text
    assert post(remote, "SELECT 1 AS x") == (200, b"1\n")


def test_480_concurrent_queries_are_all_answered(live: tuple[ChdbStore, LiveStore]) -> None:
    """A burst of 480 clients at once: every one gets its answer, none a reset."""
    _store, remote = live
    with ThreadPoolExecutor(480) as pool:
        answers = list(pool.map(lambda i: post(remote, f"SELECT {i}"), range(480)))
    assert answers == [(200, f"{i}\n".encode()) for i in range(480)]


def test_a_waiting_client_on_a_high_descriptor_is_not_taken_for_gone() -> None:
    """A busy endpoint's sockets pass descriptor 1024, which select() cannot watch: a client
    there that still waits is not judged hung up (its query was killed once), and one that
    closed is."""
    ours, theirs = socket.socketpair()
    high = socket.socket(fileno=os.dup2(ours.fileno(), 1500))
    try:
        assert not _hung_up(high)
        theirs.close()
        assert _hung_up(high)
    finally:
        high.close()
        ours.close()


def slow_query(remote: LiveStore) -> socket.socket:
    """A never-ending query sent and left running (its answer never read)."""
    host, port = remote.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sql = b"SELECT count() FROM numbers(1000000000000)"
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + remote._token.encode()
        + b"\r\nContent-Length: " + str(len(sql)).encode() + b"\r\n\r\n" + sql
    )  # fmt: skip
    return sock


def _running(store: ChdbStore) -> int:
    (row,) = store.query(
        "SELECT count() AS n FROM system.processes WHERE query LIKE '%stampline-live%numbers%'"
        " AND query NOT LIKE '%system.processes%'"
    )
    return int(row["n"])


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_slow_query_never_holds_up_the_writer_and_dies_with_its_client(
    live: tuple[ChdbStore, LiveStore],
) -> None:
    """While a never-ending live query runs, the store writes and reads as usual; when its
    client hangs up the query is killed."""
    store, remote = live
    sock = slow_query(remote)
    _until(lambda: _running(store) == 1, "the slow query to start")
    store.write_observations(pipeline(2))
    assert store.query("SELECT count() AS n FROM {db}.observations") == [{"n": 21}]
    assert remote.query("SELECT count() AS n FROM {db}.observations") == [{"n": 21}]
    sock.close()
    _until(lambda: _running(store) == 0, "the slow query to be killed")


def test_closing_the_endpoint_kills_the_queries_still_running(store: ChdbStore) -> None:
    """An endpoint closed while a never-ending query runs returns (its queries killed), and
    the store is usable after."""
    endpoint = LiveEndpoint(store).start()
    sock = slow_query(LiveStore(endpoint.url, store.database, token=endpoint.token))
    try:
        _until(lambda: _running(store) == 1, "the slow query to start")
        done = threading.Thread(target=endpoint.close)
        done.start()
        done.join(60)
        assert not done.is_alive(), "close waited for the never-ending query"
    finally:
        sock.close()
    assert _running(store) == 0
    store.write_observations(pipeline(1))


def test_a_query_past_its_deadline_is_stopped(store: ChdbStore) -> None:
    """A query running past the endpoint's timeout is stopped by the engine with an error."""
    with LiveEndpoint(store, limits=QueryLimits(timeout_s=1)) as endpoint:
        remote = LiveStore(endpoint.url, store.database, token=endpoint.token)
        status, body = post(remote, "SELECT count() FROM numbers(1000000000000)")
    assert (status, b"TIMEOUT_EXCEEDED" in body) == (500, True), body


def test_writes_through_the_live_store_are_refused(live: tuple[ChdbStore, LiveStore]) -> None:
    """The live store cannot write: a batch of observations is refused with a clear error."""
    _store, remote = live
    with pytest.raises(StoreError, match="read-only live endpoint"):
        remote.write_observations(pipeline(1))


def test_the_endpoint_speaks_clickhouse_http(live: tuple[ChdbStore, LiveStore]) -> None:
    """/ping answers Ok., a query in the URL with default_format answers in that format, and
    an error carries X-ClickHouse-Exception-Code as ClickHouse's does."""
    _store, remote = live
    auth = {"Authorization": f"Bearer {remote._token}"}
    with urllib.request.urlopen(f"{remote.url}/ping") as r:
        assert r.read() == b"Ok.\n"
    query = f"{remote.url}/?query=SELECT%201%20AS%20x%20FORMAT%20CSV"
    with urllib.request.urlopen(urllib.request.Request(query, headers=auth)) as r:
        assert (r.read(), r.headers["X-ClickHouse-Format"]) == (b"1\n", "CSV")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            urllib.request.Request(f"{remote.url}/?query=DROP%20TABLE%20x", headers=auth)
        )
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
    server = ClickHouseStore(remote.url, store.database, password=remote._token, migrate=False)
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
