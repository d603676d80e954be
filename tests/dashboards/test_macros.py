"""`expand`: panel SQL as Grafana and grafana-clickhouse-datasource turn it into a query."""

from __future__ import annotations

import pytest

from stampline.audit import ChdbStore
from stampline.dashboards import (
    ALL,
    GrafanaError,
    TimeRange,
    expand,
)

WINDOW = TimeRange(from_ms=1_700_000_000_123, to_ms=1_700_003_600_456, interval_ms=30_000)


def test_time_macros_expand_as_the_plugin_does() -> None:
    """$__timeFilter, _ms, $__fromTime/$__toTime and $__timeInterval give the plugin's text."""
    sql = expand(
        "SELECT $__timeInterval(t) FROM x WHERE $__timeFilter(t) AND $__timeFilter_ms(u)"
        " AND a >= $__fromTime AND b <= $__toTime_ms LIMIT $__interval_s",
        WINDOW,
    )
    assert sql == (
        "SELECT toStartOfInterval(toDateTime(t), INTERVAL 30 second) FROM x WHERE "
        "t >= toDateTime(1700000000) AND t <= toDateTime(1700003600) AND "
        "u >= fromUnixTimestamp64Milli(1700000000123) AND "
        "u <= fromUnixTimestamp64Milli(1700003600456) AND a >= toDateTime(1700000000) "
        "AND b <= fromUnixTimestamp64Milli(1700003600456) LIMIT 30"
    )


def test_conditional_all_is_1_eq_1_for_all_and_the_condition_otherwise() -> None:
    """With "All" the filter disappears; with chosen values it stays, values single-quoted."""
    sql = (
        "WHERE $__conditionalAll(p IN (${p:singlequote}), $p)"
        " AND $__conditionalAll(s IN (${s:singlequote}), $s)"
    )
    assert expand(sql, WINDOW, {"p": ALL, "s": ["a", "o'b"]}) == (
        "WHERE 1=1 AND s IN ('a','o\\'b')"
    )


def test_all_outside_conditional_all_stands_for_every_value() -> None:
    """A variable used bare with "All" becomes all its values, as Grafana does without allValue."""
    assert expand("IN (${p:singlequote})", WINDOW, {"p": ALL}, {"p": ["x", "y"]}) == "IN ('x','y')"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("WHERE p = $p", r"uses \$p, which has no value"),
        ("WHERE $__timeFilter(t", "unbalanced parentheses"),
        ("WHERE $__timeFilter(a, b)", "takes 1 argument, got 2"),
        ("WHERE $__conditionalAll(x)", "takes 2 arguments"),
        ("WHERE ${p:json}", "format 'json'"),
        ("WHERE $__dateFilter(d)", "not expanded here"),
        ("WHERE $__unknownMacro", "unexpanded macro"),
    ],
)
def test_malformed_queries_name_the_problem(sql: str, message: str) -> None:
    """A missing variable, a bad macro call or an unknown format is an error that says which."""
    with pytest.raises(GrafanaError, match=message):
        expand(sql, WINDOW, {"p": ["v"]} if "json" in sql else {})


@pytest.mark.parametrize("values", [["alpha"], ["o'brien", "x y"], ["a,b", "'", "SYM001"]])
def test_single_quoted_values_reach_clickhouse_intact(store: ChdbStore, values: list[str]) -> None:
    """Values formatted with :singlequote read back from ClickHouse exactly as chosen."""
    sql = expand("SELECT [${v:singlequote}] AS got", WINDOW, {"v": values})
    assert store.query(sql) == [{"got": values}]
