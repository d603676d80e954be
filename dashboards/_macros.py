"""Expand a panel's SQL as Grafana and grafana-clickhouse-datasource would before it runs.

Order, as in the plugin: ``$__conditionalAll(cond, $var)`` first (it needs to know whether
"All" is selected, which interpolation erases), then Grafana's template variables, then the
backend's macros (``pkg/macros/macros.go``): ``$__timeFilter(col)``, ``$__timeFilter_ms``,
``$__fromTime``/``$__toTime`` (``_ms``), ``$__timeInterval(col)``, ``$__interval_s``.
Used by the test suite to run every panel's SQL, and by anyone who wants to paste a panel's
query into clickhouse-client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from stampline.dashboards.exceptions import GrafanaError

ALL = "$__all"
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_FUNC = re.compile(r"\$__(timeFilter_ms|timeFilter|timeInterval_ms|timeInterval|dateFilter)\(")
_PLAIN = re.compile(r"\$__(fromTime_ms|toTime_ms|fromTime|toTime|interval_s)\b")


@dataclass(frozen=True, slots=True)
class TimeRange:
    """The dashboard's range in Unix milliseconds and the panel's interval in milliseconds."""

    from_ms: int
    to_ms: int
    interval_ms: int = 60_000


def _args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose ``(`` is at ``open_paren``, split at top-level commas."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        c = sql[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i].strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(sql[start:i].strip())
            start = i + 1
    raise GrafanaError(f"unbalanced parentheses in macro call at: {sql[open_paren - 20 :][:60]!r}")


def _conditional_all(sql: str, variables: Mapping[str, Sequence[str] | str]) -> str:
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:
        args, end = _args(sql, at + len(macro) - 1)
        if len(args) != 2:
            raise GrafanaError("macro $__conditionalAll takes 2 arguments: condition, $variable")
        m = re.search(r"\$\{?(\w+)", args[1])
        value = variables.get(m.group(1)) if m else None
        sql = sql[:at] + ("1=1" if value == ALL else args[0]) + sql[end:]
    return sql


def _format(name: str, values: Sequence[str], fmt: str | None, many: bool) -> str:
    if fmt == "percentencode":
        # Grafana's encodeURIComponentStrict: everything but [A-Za-z0-9-_.~] as %XX of the
        # UTF-8 bytes; a multi-value selection (a list, even of one) as one encoded "{a,b}".
        return quote("{" + ",".join(values) + "}" if many else values[0], safe="")
    if fmt == "csv" or (fmt is None and len(values) != 1):
        return ",".join(values)
    if fmt is None:
        return values[0]
    raise GrafanaError(f"variable format {fmt!r} of ${{{name}}} is not one the dashboards use")


def expand(
    sql: str,
    time_range: TimeRange,
    variables: Mapping[str, Sequence[str] | str] | None = None,
    all_values: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """``sql`` with every Grafana variable and plugin macro replaced.

    ``variables`` maps a variable to its selected values, or to ``ALL``; ``all_values`` gives
    what "All" stands for where a variable is used outside ``$__conditionalAll``.

    Raises:
        GrafanaError: a variable the query uses has no value, or a macro is malformed.
    """
    variables = variables or {}
    all_values = all_values or {}
    sql = _conditional_all(sql, variables)

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name.startswith("__"):
            return m.group(0)  # a macro, expanded below
        if name not in variables:
            raise GrafanaError(f"the query uses ${name}, which has no value")
        value = variables[name]
        if value == ALL:
            values = list(all_values.get(name, []))
        elif isinstance(value, str):
            values = [value]
        else:
            values = list(value)
        return _format(name, values, m.group(2), value == ALL or not isinstance(value, str))

    sql = _VAR.sub(var, sql)
    f_s, t_s = time_range.from_ms // 1000, time_range.to_ms // 1000

    while m := _FUNC.search(sql):
        args, end = _args(sql, m.end() - 1)
        if len(args) != 1:
            raise GrafanaError(f"macro $__{m.group(1)} takes 1 argument, got {len(args)}")
        col, kind = args[0], m.group(1)
        if kind == "timeFilter":
            text = f"{col} >= toDateTime({f_s}) AND {col} <= toDateTime({t_s})"
        elif kind == "timeFilter_ms":
            text = (
                f"{col} >= fromUnixTimestamp64Milli({time_range.from_ms}) AND "
                f"{col} <= fromUnixTimestamp64Milli({time_range.to_ms})"
            )
        elif kind == "timeInterval":
            secs = max(time_range.interval_ms // 1000, 1)
            text = f"toStartOfInterval(toDateTime({col}), INTERVAL {secs} second)"
        elif kind == "timeInterval_ms":
            ms = max(time_range.interval_ms, 1)
            text = f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {ms} millisecond)"
        else:
            raise GrafanaError(f"macro $__{kind} is not expanded here")
        sql = sql[: m.start()] + text + sql[end:]

    plain = {
        "fromTime": f"toDateTime({f_s})",
        "toTime": f"toDateTime({t_s})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({time_range.from_ms})",
        "toTime_ms": f"fromUnixTimestamp64Milli({time_range.to_ms})",
        "interval_s": str(max(time_range.interval_ms // 1000, 1)),
    }
    sql = _PLAIN.sub(lambda m: plain[m.group(1)], sql)
    if "$__" in sql:
        raise GrafanaError(f"unexpanded macro left in: {sql[sql.index('$__') :][:40]!r}")
    return sql
