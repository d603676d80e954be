"""Live queries on the embedded store: a read-only endpoint in the process that holds chDB,
and a store backend other processes use to read through it.

chDB lets one process open a store. The recorder holds it, so it also serves queries: a
subset of ClickHouse's HTTP interface on 127.0.0.1 (``GET /ping``; ``GET``/``POST /`` with
the query in ``query`` and/or the body, ``param_<name>`` query parameters,
``default_format`` or a trailing ``FORMAT <name>``). Errors come back as ClickHouse's do:
a non-200 status, ``X-ClickHouse-Exception-Code`` and ``Code: N. DB::Exception: …``.

Read-only by construction, three ways: a statement must start with SELECT, WITH, SHOW,
DESCRIBE, DESC or EXISTS; it must be one statement (a ``;`` outside quotes and comments is
refused, since chDB would run a second one); SELECT/WITH queries run wrapped as
``SELECT * FROM (<query>) SETTINGS readonly = 1``, so ClickHouse itself refuses writes,
setting changes and table functions (``file()``, ``url()``, ``Python()``); the other reads
cannot be wrapped, so they may not hold a parenthesis (no table function to describe).

The process writes ``<store path>/.stampline-live.json`` (URL, database, pid) while it
serves; ``find_live`` reads it, so the query commands find the endpoint with the same
``--store``/``--config`` flags as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from stampline.audit._schema import MigrationReport, Retention, migrations
from stampline.audit._store import Store
from stampline.audit.exceptions import StoreError

log = logging.getLogger("stampline.live")

LIVE_FILE = ".stampline-live.json"
_READ_ONLY_CODE = 164  # ClickHouse's READONLY
_SYNTAX_CODE = 62
_WRAPPABLE = frozenset({"SELECT", "WITH"})
_READS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS"})
_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_FORMAT_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_PASSED_SETTINGS = frozenset({"output_format_json_quote_64bit_integers"})


class ReadOnlyError(StoreError):
    """The endpoint refused a statement that is not a single read."""


def code_outside_quotes(sql: str) -> str:
    """``sql`` with string literals and quoted names replaced by ``_`` and comments blanked
    out (same length). A literal is never blank: a statement ending in one keeps its end."""
    out = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            out.append("_" * (min(j, n - 1) - i + 1))
            i = j + 1
        elif sql.startswith("--", i) or c == "#":
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)[:n]


def read_only_statement(sql: str, fmt: str | None) -> tuple[str, str | None]:
    """The statement to run for ``sql`` on a read-only endpoint, and its output format.

    Raises:
        ReadOnlyError: ``sql`` is not a single read.
    """
    code = code_outside_quotes(sql).rstrip()
    body_end = len(code)
    m = _FORMAT.search(code)
    if m is not None:
        fmt = m.group(1)
        body_end = m.start()
    elif code.endswith(";"):
        body_end = len(code) - 1
    if ";" in code[:body_end]:
        raise ReadOnlyError("read-only endpoint: one statement per request (found ';')")
    words = code[:body_end].split()
    keyword = words[0].upper() if words else ""
    if keyword not in _READS:
        raise ReadOnlyError(
            f"read-only endpoint: {keyword or 'an empty query'} is not a read "
            f"(allowed: {', '.join(sorted(_READS))})"
        )
    if re.search(r"\bINTO\s+OUTFILE\b", code[:body_end], re.IGNORECASE):
        raise ReadOnlyError("read-only endpoint: INTO OUTFILE is not a read")
    if keyword not in _WRAPPABLE and "(" in code[:body_end]:
        raise ReadOnlyError(f"read-only endpoint: {keyword} may not call a table function")
    text = sql[:body_end].strip()
    if keyword in _WRAPPABLE:
        text = f"SELECT * FROM (\n{text}\n) SETTINGS readonly = 1"
    return text, fmt


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("live query %s", format % args)

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path.rstrip("/") == "/ping":
            self._send(200, b"Ok.\n", "text/plain; charset=UTF-8")
            return
        self._query(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._query(self.rfile.read(length) if length else b"")

    def do_PUT(self) -> None:
        self._error(405, _READ_ONLY_CODE, "read-only endpoint: PUT is not a read")

    def _query(self, body: bytes) -> None:
        url = urllib.parse.urlsplit(self.path)
        args = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        one = {k: v[-1] for k, v in args.items()}
        sql = " ".join(p for p in (one.get("query", ""), body.decode("utf-8", "replace")) if p)
        params = {k.removeprefix("param_"): v for k, v in one.items() if k.startswith("param_")}
        settings = {k: v for k, v in one.items() if k in _PASSED_SETTINGS}
        try:
            statement, fmt = read_only_statement(sql, one.get("default_format"))
        except ReadOnlyError as exc:
            self._error(403, _READ_ONLY_CODE, str(exc))
            return
        fmt = fmt or "TabSeparated"
        if not _FORMAT_NAME.match(fmt):
            self._error(400, _SYNTAX_CODE, f"unknown format {fmt!r}")
            return
        try:
            data = self.server.run(statement, params, fmt, settings)
        except Exception as exc:
            text = str(exc)
            m = re.search(r"Code: (\d+)", text)
            self._error(500, int(m.group(1)) if m else 1001, text)
            return
        self._send(200, data, "application/octet-stream", {"X-ClickHouse-Format": fmt})

    def _error(self, status: int, code: int, message: str) -> None:
        text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
        self._send(
            status,
            (text + "\n").encode(),
            "text/plain; charset=UTF-8",
            {"X-ClickHouse-Exception-Code": str(code)},
        )

    def _send(
        self, status: int, data: bytes, ctype: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], run: Any) -> None:
        super().__init__(address, _Handler)
        self.run = run


class LiveEndpoint:
    """Serves read-only queries on ``store`` (a ``ChdbStore``) until closed."""

    def __init__(
        self, store: Any, host: str = "127.0.0.1", port: int = 0, broker: str | None = None
    ) -> None:
        """Binds ``host:port`` (0: one the OS chooses). ``broker``: the bootstrap the serving
        process reads, named in the live file so that a client can send it what it must write
        (an alert action through the alerts topic), even on a private embedded broker.

        Raises:
            OSError: the address cannot be bound; its ``filename`` is ``host:port``.
        """
        self.store = store
        try:
            self._server = _Server((host, port), self._run)
        except OSError as exc:  # the socket's own error does not say which address
            raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from exc
        address = self._server.server_address
        self.host = str(address[0] if isinstance(address[0], str) else address[0].decode())
        self.port = int(address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="live-queries", daemon=True
        )
        self._file: Path | None = None
        self.broker = broker

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(
        self, sql: str, params: Mapping[str, str], fmt: str, settings: Mapping[str, str]
    ) -> bytes:
        if settings:
            sql += (" , " if "SETTINGS readonly" in sql else " SETTINGS ") + ", ".join(
                f"{k} = {int(v)}" for k, v in settings.items() if v.isdigit()
            )
        data: bytes = self.store.raw_query(sql, params, fmt)
        return data

    def start(self) -> LiveEndpoint:
        self._thread.start()
        path = getattr(self.store, "path", None)
        if path is not None:
            self._file = Path(path) / LIVE_FILE
            tmp = self._file.with_suffix(".tmp")
            info = {"url": self.url, "database": self.store.database, "pid": os.getpid()}
            tmp.write_text(json.dumps(info | ({"broker": self.broker} if self.broker else {})))
            tmp.replace(self._file)
        log.info("live queries on %s (read-only)", self.url)
        return self

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(FileNotFoundError):
                self._file.unlink()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LiveEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_live(path: str | Path) -> dict[str, Any] | None:
    """The live endpoint serving the chDB store at ``path``, if its process still runs."""
    file = Path(path) / LIVE_FILE
    try:
        info: dict[str, Any] = json.loads(file.read_text())
        pid = int(info["pid"])
        url = str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left behind by a killed process
    except PermissionError:
        pass  # alive, someone else's
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
            if r.status != 200:
                return None
    except (OSError, urllib.error.URLError):
        return None
    return info


class LiveStore(Store):
    """A store read through a live endpoint (or any ClickHouse HTTP interface). Read-only:
    writes raise ``StoreError``; ``migrate`` reports, since the serving process migrated."""

    backend = "live"

    def __init__(
        self,
        url: str,
        database: str = "stampline",
        retention: Retention | None = None,
        broker: str | None = None,
    ) -> None:
        super().__init__(database, retention)
        self.url = url.rstrip("/")
        self.path = url
        self.broker = broker  # the serving recorder's, when its live file names it

    def raw(self, sql: str, params: Mapping[str, Any] | None, fmt: str) -> bytes:
        query = {"default_format": fmt, "output_format_json_quote_64bit_integers": "0"}
        for k, v in (params or {}).items():
            query[f"param_{k}"] = _param_text(v)
        request = urllib.request.Request(
            f"{self.url}/?{urllib.parse.urlencode(query)}", data=sql.encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                data: bytes = r.read()
                return data
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").strip()
            exc.close()
            raise StoreError(f"live query failed: {detail}\n  in: {sql[:300]}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise StoreError(f"live endpoint {self.url} unreachable: {exc}") from None

    def _rows(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        data = self.raw(sql, params, "JSONEachRow")
        return [orjson.loads(line) for line in data.splitlines() if line]

    def _arrow(self, sql: str, params: Mapping[str, Any] | None) -> pa.Table:
        data = self.raw(sql, params, "ArrowStream")
        if not data:
            return pa.table({})
        with pa.ipc.open_stream(data) as reader:
            return reader.read_all()

    def _execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        raise StoreError(f"{self.url} is a read-only live endpoint: cannot run {sql[:60]!r}")

    def _insert(
        self, table_name: str, columns: str, select: str, table: pa.Table, token: str | None
    ) -> None:
        raise StoreError(f"{self.url} is a read-only live endpoint: cannot write {table_name}")

    def migrate(self) -> MigrationReport:
        """What is applied; the process serving the store applies migrations when it opens."""
        rows = self._rows(
            f"SELECT version FROM {self.database}.schema_migrations FINAL ORDER BY version", None
        )
        done = {int(r["version"]) for r in rows}
        labels = [(m.version, f"{m.version:03d}_{m.name}") for m in migrations()]
        pending = [label for v, label in labels if v not in done]
        if pending:
            raise StoreError(
                f"the store served at {self.url} lacks {', '.join(pending)}: stop the process "
                "serving it (the recorder) and run `stampline store migrate` on the folder"
            )
        return MigrationReport([], [label for _, label in labels])

    def close(self) -> None:
        return None

    def __enter__(self) -> LiveStore:
        return self


def _param_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    return str(value)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)
