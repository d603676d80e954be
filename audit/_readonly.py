"""One read of the store per request, judged by ClickHouse's own parser and run so that it
can neither write, reach outside the store, nor hold up the recorder.

How a request becomes a query (nothing here tokenises SQL):

1. ClickHouse's ``formatQuery`` parses the text, handed to it as a bound parameter: more
   than one statement, or anything that does not parse, is refused by the engine's rules.
   What runs is the engine's own rendering of that one statement.
2. ``EXPLAIN AST`` of that rendering (with the request's parameters bound) gives its tree:
   it must be a SELECT (``SelectWithUnionQuery``) with no ``INTO OUTFILE`` and no
   ``SETTINGS``; every function it calls, scalar or table function, must be on an
   allow-list of what stampline's own queries use; system tables only from a short list.
3. It runs on a reader session of its own (not the writer's): readonly = 1 and the limits
   (``max_execution_time``, result rows/bytes, memory) are that session's settings, which
   a read-only session cannot change. A query whose client hung up, and every query still
   running when the endpoint closes, is killed (``KILL QUERY`` by a marker the statement
   carries).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import select
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from stampline.audit.exceptions import StoreError

log = logging.getLogger("stampline.live")

# What stampline's live queries call (replay, hotspots, heatmap, providers compare,
# completeness, latency flags, audit verify/validate, evidence, alert history and learning,
# store migrate) and what clickhouse-connect asks when it connects, plus the operators
# their syntax stands for. Nothing here reads a file, the network, a process or a
# dictionary. tests/audit/test_live.py sends every query of those commands through it.
ALLOWED_FUNCTIONS = frozenset(
    {
        # operators and syntax
        "and", "or", "not", "equals", "notEquals", "less", "greater", "lessOrEquals",
        "greaterOrEquals", "plus", "minus", "multiply", "divide", "intDiv", "modulo",
        "negate", "in", "notIn", "globalIn", "globalNotIn", "like", "notLike", "ilike",
        "notILike", "isNull", "isNotNull", "tuple", "array", "arrayElement", "tupleElement",
        "lambda", "if", "multiIf", "CAST", "_CAST", "coalesce", "ifNull", "nullIf",
        "toIntervalSecond", "toIntervalMillisecond", "toIntervalMinute", "toIntervalHour",
        "toIntervalDay",
        # conversion and time
        "toString", "toInt64", "toUInt64", "toUInt32", "toInt32", "toFloat64", "toUUID",
        "toDateTime", "toDateTime64", "toDate", "toStartOfInterval", "toStartOfMinute",
        "toStartOfHour", "toStartOfDay", "toUnixTimestamp", "toUnixTimestamp64Micro",
        "toUnixTimestamp64Milli", "toUnixTimestamp64Nano", "fromUnixTimestamp64Micro",
        "fromUnixTimestamp64Milli", "fromUnixTimestamp64Nano", "now", "now64",
        "reinterpretAsFloat64", "reinterpretAsInt64", "timezone", "version", "currentDatabase",
        # strings
        "concat", "length", "empty", "notEmpty", "startsWith", "endsWith", "lower", "upper",
        "substring", "splitByChar", "splitByString", "replaceAll", "position",
        "base64Decode", "base64Encode", "hex", "format",
        # numbers
        "abs", "greatest", "least", "round", "floor", "ceil", "isFinite", "isNaN", "sqrt",
        # arrays and maps
        "arrayJoin", "arrayMap", "arrayFilter", "arrayCount", "arrayDifference", "arrayMax",
        "arrayMin", "arraySum", "arraySort", "arrayZip", "arrayPopBack", "arrayPopFront",
        "arrayPushBack", "arrayStringConcat", "arrayDistinct", "arrayConcat", "has",
        "indexOf", "range", "map", "mapFromArrays", "mapKeys", "mapValues",
        # aggregates (with the combinators the queries use) and windows
        "count", "countIf", "sum", "sumIf", "avg", "avgIf", "min", "minIf", "max", "maxIf",
        "any", "anyIf", "anyLast", "argMax", "argMaxIf", "argMin", "argMinIf", "median",
        "quantile", "quantiles", "quantileExact", "quantilesExact", "quantileExactIf",
        "quantilesExactIf", "uniq", "uniqExact", "uniqExactIf", "groupArray", "groupArrayIf",
        "groupUniqArray", "lag", "lagInFrame", "leadInFrame", "row_number", "rank",
    }
)  # fmt: skip
# Table functions a live query may read (none reaches outside the engine).
ALLOWED_TABLE_FUNCTIONS = frozenset({"numbers", "one"})
# Tables of the engine's own databases a live query may read: what clients ask on connect.
ALLOWED_SYSTEM_TABLES = frozenset({"system.one", "system.settings", "system.functions"})
_SYSTEM_DATABASES = frozenset({"system", "information_schema"})
# Output formats a client may ask for (chDB's own pseudo formats, and formats that read a
# schema file, are not among them).
OUTPUT_FORMATS = frozenset(
    {
        "TabSeparated", "TabSeparatedRaw", "TabSeparatedWithNames",
        "TabSeparatedWithNamesAndTypes", "TSV", "TSVRaw", "TSVWithNames",
        "TSVWithNamesAndTypes", "CSV", "CSVWithNames", "CSVWithNamesAndTypes", "JSON",
        "JSONCompact", "JSONEachRow", "JSONCompactEachRow", "JSONStringsEachRow",
        "JSONCompactEachRowWithNamesAndTypes", "Native", "RowBinary",
        "RowBinaryWithNamesAndTypes", "Arrow", "ArrowStream", "Parquet", "Values", "Pretty",
        "PrettyCompact", "Null",
    }
)  # fmt: skip

_ACCESS_DENIED = 497  # ClickHouse's ACCESS_DENIED
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NODE = re.compile(r"^( *)(\S+)(?: (.*))?$")
_MARKER = "/* stampline-live {} */\n"


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What one live query may take: ClickHouse settings of the reader sessions."""

    timeout_s: float = 60.0
    max_result_rows: int = 10_000_000
    max_result_bytes: int = 1 << 30
    max_memory_usage: int = 2 << 30
    readers: int = 4  # sessions, so queries run side by side

    def settings(self) -> dict[str, Any]:
        """The reader sessions' settings: read-only, bounded, and unchangeable by a query."""
        return {
            "readonly": 1,
            "max_execution_time": max(1, round(self.timeout_s)),
            "timeout_overflow_mode": "throw",
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_usage,
            # nanosecond times come back as numbers, as the store's own reads have them
            "output_format_json_quote_64bit_integers": 0,
        }


class ReadOnlyError(StoreError):
    """The endpoint refused a request that is not one allowed read; ``code`` is
    ClickHouse's error code for it."""

    def __init__(self, message: str, code: int = _ACCESS_DENIED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement the engine parsed and the allow-lists passed."""

    sql: str
    fmt: str | None  # the statement's own FORMAT clause, if any


class LiveReader:
    """Reader sessions on a chDB store: ``prepare`` judges a request, ``run`` answers it.

    ``open_session(settings)`` opens a session on the store with those settings (one per
    reader, and a control session that only kills queries).
    """

    def __init__(
        self, open_session: Callable[[Mapping[str, Any]], Any], limits: QueryLimits
    ) -> None:
        self.limits = limits
        self._pool: queue.Queue[Any] = queue.Queue()
        self._sessions = [open_session(limits.settings()) for _ in range(max(1, limits.readers))]
        for s in self._sessions:
            self._pool.put(s)
        # readonly = 2: it may run KILL QUERY (and nothing that writes)
        self._control = open_session({"readonly": 2})
        self._running: dict[str, socket.socket | None] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._functions = self._function_names()
        self._watchdog = threading.Thread(target=self._watch, name="live-watchdog", daemon=True)
        self._watchdog.start()

    def _function_names(self) -> dict[str, str]:
        """Each function's name (lower-cased too, when case-insensitive) -> its canonical
        name, so ``COUNT`` and ``substr`` are judged as ``count`` and ``substring``."""
        data = self._control.query(
            "SELECT name, alias_to, case_insensitive FROM system.functions", "JSONCompactEachRow"
        ).bytes()
        names: dict[str, str] = {}
        for line in data.splitlines():
            name, alias, ci = orjson.loads(line)
            canonical = alias or name
            names[name] = canonical
            if ci:
                names.setdefault(name.lower(), canonical)
        return names

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        try:
            s = self._pool.get(timeout=self.limits.timeout_s)
        except queue.Empty:
            raise ReadOnlyError("live endpoint busy: every reader is taken", 202) from None
        try:
            yield s
        finally:
            self._pool.put(s)

    def answer(
        self,
        sql: str,
        params: Mapping[str, str],
        fmt: str,
        client: socket.socket | None = None,
    ) -> tuple[bytes, str]:
        """Judge ``sql`` and run it; its result in format ``fmt`` (or the statement's own
        FORMAT), and that format. ``client`` is the requester's socket: if it closes, the
        query is killed.

        Raises:
            ReadOnlyError: the request is not one allowed read.
            StoreError: the engine refused or failed the query.
        """
        if self._closed.is_set():
            raise ReadOnlyError("live endpoint is closing", 210)
        with self._session() as s:
            statement = self.prepare(s, sql, params)
            fmt = statement.fmt or fmt
            if fmt not in OUTPUT_FORMATS:
                raise ReadOnlyError(f"output format {fmt!r} is not served", 73)
            marker = _MARKER.format(uuid.uuid4().hex)
            with self._lock:
                self._running[marker] = client
            try:
                data: bytes = _query(s, marker + statement.sql, fmt, params).bytes()
            finally:
                with self._lock:
                    self._running.pop(marker, None)
            return data, fmt

    def prepare(self, s: Any, sql: str, params: Mapping[str, str]) -> Statement:
        """The one statement ``sql`` is, as the engine renders it, if it is an allowed read.

        Raises:
            ReadOnlyError: not one statement, not a SELECT, or it calls what is not allowed.
        """
        if not sql.strip():
            raise ReadOnlyError("empty query", 62)
        text = _one_statement(s, sql)
        # The rendering parses as one statement too, so EXPLAIN below cannot run a second.
        _one_statement(s, text)
        tree = _ast(_query(s, f"EXPLAIN AST {text}", "TabSeparatedRaw", params).bytes())
        return Statement(text, self._judge(tree))

    def _judge(self, tree: list[tuple[int, str, str]]) -> str | None:
        """The statement's FORMAT, if ``tree`` (``EXPLAIN AST``) is an allowed read."""
        if not tree or tree[0][1] != "SelectWithUnionQuery":
            kind = tree[0][1] if tree else "nothing"
            raise ReadOnlyError(f"only SELECT is served (the request is {kind})", 164)
        fmt = None
        parent: list[str] = []
        for depth, node, rest in tree:
            del parent[depth:]
            if depth == 1 and node != "ExpressionList":
                if node != "Identifier":
                    what = {"Literal": "INTO OUTFILE", "Set": "SETTINGS"}.get(node, node)
                    raise ReadOnlyError(f"{what} is not allowed on the live endpoint", 164)
                fmt = rest
            elif node == "Set":  # a subquery's SETTINGS too: the session's limits hold
                raise ReadOnlyError("SETTINGS is not allowed on the live endpoint", 164)
            elif node == "Function":
                self._check_function(rest, table=bool(parent) and parent[-1] == "TableExpression")
            elif node in ("TableIdentifier", "Identifier"):
                _check_table(rest)
            parent.append(node)
        return fmt

    def _check_function(self, name: str, *, table: bool) -> None:
        allowed = ALLOWED_TABLE_FUNCTIONS if table else ALLOWED_FUNCTIONS
        canonical = name if table else self._functions.get(name, self._functions.get(
            name.lower(), name))  # fmt: skip
        if not _NAME.match(name) or (name not in allowed and canonical not in allowed):
            kind = "table function" if table else "function"
            raise ReadOnlyError(f"{kind} {name!r} is not allowed on the live endpoint")

    def _watch(self) -> None:
        """Kill a query whose client has hung up: nobody waits for it."""
        while not self._closed.wait(0.25):
            with self._lock:
                running = list(self._running.items())
            gone = [m for m, sock in running if sock is not None and _hung_up(sock)]
            for marker in gone:
                log.info("live query killed: its client hung up %s", marker)
                self._kill(marker)

    def _kill(self, marker: str) -> None:
        try:
            _query(
                self._control,
                "KILL QUERY WHERE startsWith(query, {m:String}) ASYNC",
                "TabSeparated",
                {"m": _escaped(marker)},
            )
        except StoreError as exc:
            log.warning("cannot kill a live query: %s", exc)

    def close(self) -> None:
        """Kill what still runs, then close every session (each waits for its query)."""
        self._closed.set()
        with self._lock:
            markers = list(self._running)
        for marker in markers:
            self._kill(marker)
        for s in [*self._sessions, self._control]:
            s.close()


def _query(s: Any, sql: str, fmt: str, params: Mapping[str, str] | None = None) -> Any:
    try:
        return s.query(sql, fmt, params=dict(params or {}))
    except Exception as exc:
        raise StoreError(str(exc).strip()) from None


def _one_statement(s: Any, sql: str) -> str:
    """The engine's rendering of ``sql``, which it parsed as exactly one statement.

    Raises:
        ReadOnlyError: the engine's parser refused it (syntax, or more than one statement).
    """
    try:
        data = _query(
            s, "SELECT formatQuery({q:String})", "JSONCompactEachRow", {"q": _escaped(sql)}
        )
    except StoreError as exc:
        raise ReadOnlyError(_engine_message(exc), 62) from None
    (text,) = orjson.loads(data.bytes())
    return str(text)


def _escaped(value: str) -> str:
    """A parameter value as ClickHouse reads it (escaped text: a backslash starts an escape)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _engine_message(exc: StoreError) -> str:
    """The engine's refusal without the ``In scope SELECT formatQuery(…)`` echo."""
    return re.sub(r"[:.]? *In scope SELECT formatQuery\(.*", "", str(exc), flags=re.DOTALL)


def _ast(text: bytes) -> list[tuple[int, str, str]]:
    """``EXPLAIN AST`` output as (depth, node type, the rest of the line) rows. Literals in
    it are escaped, so each line is one node."""
    rows = []
    for line in text.decode().splitlines():
        m = _NODE.match(line)
        if m is not None:
            # the name is the first word: "Function count (alias n)"; a name with a space
            # in it names nothing the engine has, so the query fails there anyway
            rows.append((len(m.group(1)), m.group(2), (m.group(3) or "").split(" ", 1)[0]))
    return rows


def _check_table(name: str) -> None:
    database, _, table = name.partition(".")
    if table and database.lower() in _SYSTEM_DATABASES and name not in ALLOWED_SYSTEM_TABLES:
        raise ReadOnlyError(f"table {name!r} is not allowed on the live endpoint")


def _hung_up(sock: socket.socket) -> bool:
    """Whether the peer closed ``sock``: readable with nothing to read. (A timeout-mode
    socket's ``recv`` waits for data whatever its flags, so ask ``poll`` first.)"""
    try:
        # poll, not select: select cannot watch a descriptor numbered 1024 or more, which a
        # busy endpoint's sockets reach (and its error read as "hung up" killed live queries)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True
