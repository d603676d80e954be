"""Live queries on the embedded store: a read-only endpoint in the process that holds chDB,
and a store backend other processes use to read through it.

chDB lets one process open a store. The recorder holds it, so it also serves queries: a
subset of ClickHouse's HTTP interface (``GET /ping``; ``GET``/``POST /`` with the query in
``query`` and/or the body, ``param_<name>`` query parameters, ``default_format`` or a
``FORMAT <name>`` clause). Errors come back as ClickHouse's do: a non-200 status,
``X-ClickHouse-Exception-Code`` and ``Code: N. DB::Exception: …``.

What a request may do is ``_readonly``'s to decide (one SELECT, judged by ClickHouse's own
parser and an allow-list, run on a read-only session of its own with limits). Every
request but ``/ping`` carries the endpoint's token (``Authorization: Bearer``, or as the
password of Basic auth or ``X-ClickHouse-Key``, as ClickHouse clients send it).

The process writes ``<store path>/.stampline-live.json`` (URL, database, pid) and, readable
by its owner only, ``.stampline-live.token`` while it serves; ``find_live`` reads both, so
the query commands find the endpoint with the same ``--store``/``--config`` flags as before.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
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

from stampline.audit._readonly import LiveReader, QueryLimits, ReadOnlyError
from stampline.audit._schema import MigrationReport, Retention, migrations
from stampline.audit._store import Store
from stampline.audit.exceptions import StoreError

log = logging.getLogger("stampline.live")

LIVE_FILE = ".stampline-live.json"
TOKEN_FILE = ".stampline-live.token"
MAX_BODY = 1 << 20  # a query is text; ClickHouse's own max_query_size is 256 KiB
_AUTH_CODE = 516  # ClickHouse's AUTHENTICATION_FAILED
_SYNTAX_CODE = 62
_STATUS = {62: 400, 73: 400, 164: 403, 202: 503, 210: 503, 497: 403, 516: 401}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stops sending in the middle of a request is dropped

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("live query %s", format % args)

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path.rstrip("/") == "/ping":
            self._send(200, b"Ok.\n", "text/plain; charset=UTF-8")
            return
        if self._authorised():
            self._query(b"")

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, "send the query with a Content-Length (no chunked bodies)")
            return
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            self._refuse(400, f"bad Content-Length {text[:40]!r}")
            return
        if int(text) > MAX_BODY:
            self._refuse(413, f"a query body is at most {MAX_BODY:,} bytes")
            return
        if not self._authorised():
            self.close_connection = True  # the body is left unread
            return
        self._query(self.rfile.read(int(text)))

    def do_PUT(self) -> None:
        self._refuse(405, "read-only endpoint: PUT is not a read", 164)

    def _refuse(self, status: int, message: str, code: int = _SYNTAX_CODE) -> None:
        self.close_connection = True  # whatever body came is left unread
        self._error(status, code, message)

    def _authorised(self) -> bool:
        offered = _offered_token(self.headers)
        if offered is not None and hmac.compare_digest(
            offered.encode(), self.server.token.encode()
        ):
            return True
        self.close_connection = True
        self._error(401, _AUTH_CODE, "live endpoint: a valid token is required", auth=True)
        return False

    def _query(self, body: bytes) -> None:
        url = urllib.parse.urlsplit(self.path)
        args = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        one = {k: v[-1] for k, v in args.items()}
        sql = " ".join(p for p in (one.get("query", ""), body.decode("utf-8", "replace")) if p)
        params = {k.removeprefix("param_"): v for k, v in one.items() if k.startswith("param_")}
        try:
            data, fmt = self.server.reader.answer(
                sql, params, one.get("default_format") or "TabSeparated", self.connection
            )
        except ReadOnlyError as exc:
            self._error(_STATUS.get(exc.code, 403), exc.code, str(exc))
            return
        except StoreError as exc:
            text = str(exc)
            m = re.search(r"Code: (\d+)", text)
            self._error(500, int(m.group(1)) if m else 1001, text)
            return
        self._send(200, data, "application/octet-stream", {"X-ClickHouse-Format": fmt})

    def _error(self, status: int, code: int, message: str, *, auth: bool = False) -> None:
        text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
        headers = {"X-ClickHouse-Exception-Code": str(code)}
        if auth:
            headers["WWW-Authenticate"] = 'Bearer realm="stampline live queries"'
        self._send(status, (text + "\n").encode(), "text/plain; charset=UTF-8", headers)

    def _send(
        self, status: int, data: bytes, ctype: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _offered_token(headers: Any) -> str | None:
    """The token a request carries: Bearer, the password of Basic, or X-ClickHouse-Key."""
    key = headers.get("X-ClickHouse-Key")
    if key:
        return str(key)
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of clients waits in the backlog, not reset

    def __init__(self, address: tuple[str, int], reader: LiveReader, token: str) -> None:
        super().__init__(address, _Handler)
        self.reader = reader
        self.token = token

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that breaks off (reset, timeout) is not the endpoint's failure: no trace
        import sys

        exc = sys.exc_info()[1]
        log.info("live query from %s broke off: %s", client_address[0], type(exc).__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is only reachable from this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class LiveEndpoint:
    """Serves read-only queries on ``store`` (a ``ChdbStore``) until closed.

    ``token`` is what every request must carry; without one a random token is made. Both
    are written, owner-readable only, beside the live file. Binding an address other
    machines reach needs a token given (they cannot read that file). ``broker``: the
    bootstrap the serving process reads, named in the live file so that a client can send
    it what it must write (an alert action through the alerts topic), even on a private
    embedded broker.

    Raises:
        StoreError: a non-loopback ``host`` without a ``token``.
        OSError: the address cannot be bound; its ``filename`` is ``host:port``.
    """

    def __init__(
        self,
        store: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        limits: QueryLimits | None = None,
        broker: str | None = None,
    ) -> None:
        if token is None and not is_loopback(host):
            raise StoreError(
                f"the live endpoint binds {host}, which other machines reach: set "
                "recorder.query_token (a secret clients send) or bind 127.0.0.1"
            )
        self.store = store
        self.token = token or secrets.token_urlsafe(32)
        self._reader = LiveReader(store.open_session, limits or QueryLimits())
        try:
            self._server = _Server((host, port), self._reader, self.token)
        except OSError as exc:  # the socket's own error does not say which address
            self._reader.close()
            raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from exc
        address = self._server.server_address
        self.host = str(address[0] if isinstance(address[0], str) else address[0].decode())
        self.port = int(address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="live-queries", daemon=True
        )
        self._files: list[Path] = []
        self.broker = broker

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LiveEndpoint:
        self._thread.start()
        path = getattr(self.store, "path", None)
        if path is not None:
            folder = Path(path)
            _write_private(folder / TOKEN_FILE, self.token)
            info = {"url": self.url, "database": self.store.database, "pid": os.getpid()}
            if self.broker:
                info["broker"] = self.broker
            _write_private(folder / LIVE_FILE, json.dumps(info))
            self._files = [folder / LIVE_FILE, folder / TOKEN_FILE]
        log.info("live queries on %s (read-only, token required)", self.url)
        return self

    def close(self) -> None:
        """Stop serving: forget the files, kill the queries still running, close."""
        for file in self._files:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
        self._server.shutdown()
        self._server.server_close()
        self._reader.close()

    def __enter__(self) -> LiveEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only (0600 from its creation), atomically."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def find_live(path: str | Path) -> dict[str, Any] | None:
    """The live endpoint serving the chDB store at ``path``, if its process still runs:
    its ``url``, ``database``, ``pid`` and ``token`` (None if this user cannot read it)."""
    file = Path(path) / LIVE_FILE
    try:
        info: dict[str, Any] = json.loads(file.read_text())
        pid = int(info["pid"])
        url = str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        info["token"] = (Path(path) / TOKEN_FILE).read_text().strip()
    except OSError:
        info["token"] = None
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
        *,
        token: str | None = None,
        broker: str | None = None,
    ) -> None:
        super().__init__(database, retention)
        self.url = url.rstrip("/")
        self.path = url
        self._token = token
        self.broker = broker  # the serving recorder's, when its live file names it

    @classmethod
    def found(cls, live: Mapping[str, Any], database: str) -> LiveStore:
        """The store behind an endpoint ``find_live`` found."""
        return cls(live["url"], database, token=live.get("token"), broker=live.get("broker"))

    def raw(self, sql: str, params: Mapping[str, Any] | None, fmt: str) -> bytes:
        query = {"default_format": fmt}
        for k, v in (params or {}).items():
            query[f"param_{k}"] = _param_text(v)
        request = urllib.request.Request(
            f"{self.url}/?{urllib.parse.urlencode(query)}", data=sql.encode(), method="POST"
        )
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
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
