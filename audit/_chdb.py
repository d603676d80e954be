"""The embedded backend: chDB (in-process ClickHouse) on a local directory.

chDB allows one data directory per process at a time, so tests share one directory and
isolate themselves by database name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from stampline.audit._schema import Retention
from stampline.audit._store import Store, insert_settings
from stampline.audit.exceptions import StoreError

# JSON 64-bit integers unquoted: nanosecond times must come back as numbers.
_JSON_SETTINGS = "SETTINGS output_format_json_quote_64bit_integers = 0"


class ChdbStore(Store):
    """Audit store on chDB. Opening it applies any pending migration.

    The trail holds the first bytes of every rejected payload, so by default (``private``)
    a store folder this creates is 0700 and the files chDB writes in it 0600: chDB writes
    from its own threads at any time (inserts, merges), so the only lever on their modes is
    the process umask, which opening a private store tightens to 077 for the rest of the
    process. An existing folder keeps its mode. ``private=False`` leaves both to the umask.
    """

    backend = "chdb"

    def __init__(
        self,
        path: str | Path,
        database: str = "stampline",
        retention: Retention | None = None,
        *,
        migrate: bool = True,
        private: bool = True,
    ) -> None:
        from chdb import session  # imported late: loading the engine takes ~1 s

        super().__init__(database, retention)
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if private:
                _private_folder(self.path)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
            self._session = session.Session(str(self.path))
        except Exception as exc:
            raise StoreError(f"cannot open chDB store at {self.path}: {exc}") from exc
        if migrate:
            self.migrate()

    def _run(self, sql: str, params: Mapping[str, Any] | None = None, fmt: str = "CSV") -> Any:
        with self._lock:
            try:
                if params:
                    return self._session.query(sql, fmt, params=_param_text(params))
                return self._session.query(sql, fmt)
            except Exception as exc:
                raise StoreError(f"chDB query failed: {exc}\n  in: {sql[:300]}") from exc

    def open_session(self, settings: Mapping[str, Any]) -> Any:
        """Another chDB session on this store, with ``settings`` as its own (the live
        endpoint's readers: ``readonly = 1`` there holds for every query it runs). It runs
        beside this store's session: a query on it never waits for a write, nor a write
        for it. Close it before the store."""
        from urllib.parse import urlencode

        from chdb import session

        try:
            return session.Session(f"{self.path}?{urlencode(settings)}")
        except Exception as exc:
            raise StoreError(f"cannot open a reader on chDB store {self.path}: {exc}") from exc

    def _execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        self._run(sql + _settings_clause(settings))

    def _rows(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        result = self._run(sql + "\n" + _JSON_SETTINGS, params, fmt="JSONEachRow")
        return [orjson.loads(line) for line in result.bytes().splitlines() if line]

    def _arrow(self, sql: str, params: Mapping[str, Any] | None) -> pa.Table:
        table: pa.Table = self._run(sql, params, fmt="ArrowTable")
        return table

    def _insert(
        self, table_name: str, columns: str, select: str, table: pa.Table, token: str | None
    ) -> None:
        settings = insert_settings(token)
        # chDB's Python() table function resolves `table` from the calling frames' locals.
        self._run(
            f"INSERT INTO {self.database}.{table_name} ({columns}) "
            f"{_settings_clause(settings)} SELECT {select} FROM Python(table)"
        )

    def close(self) -> None:
        """Release the engine; the directory stays and can be reopened."""
        with self._lock:
            self._session.close()

    def __enter__(self) -> ChdbStore:
        return self


def store_holder(path: str | Path) -> int | None:
    """The process id of another process that has the chDB store at ``path`` open, else None.

    chDB, like ClickHouse, holds an exclusive ``flock`` on ``<path>/status`` while it has the
    folder open and writes its pid there; the lock is the proof, the pid only names the
    holder (-1 when unreadable). This process's own hold does not count: it shares the
    engine.
    """
    try:
        fd = os.open(Path(path) / "status", os.O_RDONLY)
    except OSError:
        return None  # no status file: nobody has the folder open
    try:
        m = re.search(rb"PID: (\d+)", os.read(fd, 4096))
        pid = int(m.group(1)) if m else -1
        if pid == os.getpid():
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return pid
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _private_folder(path: Path) -> None:
    """Tighten the umask to 077, and create ``path`` (if missing) readable by its owner only."""
    old = os.umask(0o077)
    os.umask(old | 0o077)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask; say it outright


def _settings_clause(settings: Mapping[str, Any] | None) -> str:
    if not settings:
        return ""
    return " SETTINGS " + ", ".join(f"{k} = {_literal(v)}" for k, v in settings.items())


def _param_text(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters in ClickHouse's text format (chDB would render a list as Python does)."""
    return {k: _literal(v) if isinstance(v, list | tuple) else v for k, v in params.items()}


def _literal(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)
