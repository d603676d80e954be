"""`expand`: panel SQL as Grafana and grafana-clickhouse-datasource turn it into a query."""

from __future__ import annotations

import base64

import pytest

from stampline.audit import ChdbStore
from stampline.dashboards import (
    ALL,
    GrafanaError,
    TimeRange,
    expand,
)
from stampline.dashboards._common import selected

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
    """With "All" the filter disappears; with chosen values it stays, values percent-encoded
    as Grafana's percentencode does (a list as one encoded "{a,b}")."""
    sql = (
        "WHERE $__conditionalAll(p = '${p:percentencode}', $p)"
        " AND $__conditionalAll(s = '${s:percentencode}', $s)"
    )
    assert expand(sql, WINDOW, {"p": ALL, "s": ["a", "o'b"]}) == (
        "WHERE 1=1 AND s = '%7Ba%2Co%27b%7D'"
    )


def test_all_outside_conditional_all_stands_for_every_value() -> None:
    """A variable used bare with "All" becomes all its values, as Grafana does without allValue."""
    assert expand("'${p:percentencode}'", WINDOW, {"p": ALL}, {"p": ["x", "y"]}) == "'%7Bx%2Cy%7D'"


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


HOSTILE = [
    "evil\\",
    ") OR 1=1 --",
    "x' OR 1=1 --",
    "o'brien",
    "x y",
    "\u00e9t\u00e9",
    "{x}",
    "a%2Cb",
]


@pytest.mark.parametrize(
    "chosen",
    [["alpha"], "evil\\", ["evil\\"], [") OR 1=1 --", "x' OR 1=1 --"], ["o'brien", "{x}"], HOSTILE],
)
def test_a_selection_matches_exactly_its_names_however_hostile(
    store: ChdbStore, chosen: list[str] | str
) -> None:
    """The panels' filter (`selected`, through Grafana's percentencode) keeps exactly the
    chosen names on ClickHouse, whatever quotes, backslashes or SQL they hold."""
    names = ["alpha", "beta", *HOSTILE]
    literal = ",".join(f"base64Decode('{base64.b64encode(n.encode()).decode()}')" for n in names)
    sql = expand(
        f"SELECT name FROM (SELECT arrayJoin([{literal}]) AS name) WHERE {selected('name', 'v')}",
        WINDOW,
        {"v": chosen},
    )
    want = [chosen] if isinstance(chosen, str) else chosen
    assert sorted(r["name"] for r in store.query(sql)) == sorted(want)
