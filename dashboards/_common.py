"""What every dashboard shares: data source references, the ClickHouse query, the variables.

The foundation SDK has no builder for the ClickHouse plugin's query, so ``ClickHouseQuery``
is one: the plugin's query JSON (``editorType: sql``, ``rawSql``, ``format``,
``queryType``), carried as an SDK ``Dataquery`` so panels take it like any other target.
Each query is registered with the columns its panel reads, so the test suite can run every
panel's SQL against chDB and check them.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
PROMETHEUS_TYPE = "prometheus"
CLICKHOUSE_UID = "stampline-clickhouse"
PROMETHEUS_UID = "stampline-prometheus"
FOLDER_UID = "stampline"
FOLDER_TITLE = "Stampline"
CLICKHOUSE = common.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)
PROMETHEUS = common.DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)

# The plugin's numeric format enum (src/types.ts): 0 time series, 1 table.
_FORMATS = {"time_series": 0, "table": 1}
_QUERY_TYPES = {"time_series": "timeseries", "table": "table"}


@dataclass(frozen=True, slots=True)
class PanelSql:
    """One panel target's SQL, with the columns the panel reads from its result."""

    dashboard: str
    panel: str
    sql: str  # `{db}` stands for the database; Grafana macros are left for the plugin
    columns: tuple[str, ...]
    format: Literal["time_series", "table"] = "table"


@dataclass(slots=True)
class SqlRegistry:
    """Every ClickHouse query the dashboards hold, for `export` and for the tests."""

    queries: list[PanelSql] = field(default_factory=list)

    def add(self, q: PanelSql) -> PanelSql:
        self.queries.append(q)
        return q


class ClickHouseTarget(cogvariants.Dataquery):
    """The grafana-clickhouse-datasource query model (SQL editor)."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: Literal["time_series", "table"]) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.fmt = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": CLICKHOUSE.to_json(),
            "editorType": "sql",
            "rawSql": self.raw_sql,
            "format": _FORMATS[self.fmt],
            "queryType": _QUERY_TYPES[self.fmt],
        }


class ClickHouseQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder for ``ClickHouseTarget``: a panel's SQL for the configured database."""

    def __init__(self, q: PanelSql, database: str, ref_id: str = "A") -> None:
        self._target = ClickHouseTarget(ref_id, q.sql.replace("{db}", database), q.format)

    def build(self) -> cogvariants.Dataquery:
        return self._target


def promql(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    """A Prometheus target on the stampline Prometheus data source."""
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
    )


# Template variables. A filter is written `$__conditionalAll(<col is selected>, $v)`: with
# "All" selected the plugin replaces it by `1=1`, so a value with no data in the variable's
# lookup window still shows (a silent provider is a row, not a missing series).
VARIABLE_LOOKBACK = "INTERVAL 30 DAY"


def _query_variable(name: str, label: str, sql: str, database: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(CLICKHOUSE)
        .query(sql.replace("{db}", database))
        .definition(sql.replace("{db}", database))
        .multi(True)
        .include_all(True)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


VARIABLE_SQL: dict[str, str] = {
    "provider": (
        "SELECT DISTINCT provider FROM {db}.stage_time_1m "
        f"WHERE minute >= now() - {VARIABLE_LOOKBACK} AND provider != '' ORDER BY provider"
    ),
    # The feed topic an event arrived on. Not called a venue: venues are the alert
    # definitions' (a provider's exchange), which the trail does not know.
    "topic": (
        "SELECT DISTINCT topic FROM {db}.stage_time_1m "
        f"WHERE minute >= now() - {VARIABLE_LOOKBACK} AND prev_stage = 'origin' ORDER BY topic"
    ),
    "stage": (
        "SELECT DISTINCT stage FROM {db}.stage_time_1m "
        f"WHERE minute >= now() - {VARIABLE_LOOKBACK} ORDER BY stage"
    ),
    "instrument": (
        "SELECT DISTINCT instrument FROM {db}.provider_price_1m "
        f"WHERE minute >= now() - {VARIABLE_LOOKBACK} ORDER BY instrument"
    ),
}
_LABELS = {
    "provider": "Provider",
    "topic": "Feed topic",
    "stage": "Stage",
    "instrument": "Instrument",
}


def variables(database: str) -> list[cogbuilder.Builder[model.VariableModel]]:
    """provider, topic, stage, instrument: multi-select with "All", from the rollups."""
    return [_query_variable(n, _LABELS[n], sql, database) for n, sql in VARIABLE_SQL.items()]


def selected(column: str, name: str) -> str:
    """The ClickHouse condition "``column`` is one of the values selected in ``$name``".

    Names come from the data (a provider may be called ``evil\\`` or ``') OR 1=1 --``), so
    they never reach the SQL as written: Grafana's ``singlequote`` and ``sqlstring`` formats
    leave ``\\`` alone, which ClickHouse reads as an escape. ``percentencode`` is the one
    format whose output holds only ``[A-Za-z0-9-_.~%]``, so it cannot leave the literal;
    several values arrive as one encoded ``{a,b}``, split at the encoded comma and decoded
    here. (A name holding a comma cannot be told from two names in a multiple selection:
    it then matches too much, never breaks out.)
    """
    v = f"'${{{name}:percentencode}}'"
    parts = (
        f"if(startsWith({v}, '%7B') AND endsWith({v}, '%7D'), "
        f"splitByString('%2C', substring({v}, 4, length({v}) - 6)), [{v}])"
    )
    return f"has(arrayMap(x -> decodeURLComponent(x), {parts}), {column})"


def where_filters(*names: str) -> str:
    """``AND``-joined conditional filters on the named variables (column = variable name,
    except venue, which is the ``topic`` column)."""
    column = {"venue": "topic"}
    return " AND ".join(f"$__conditionalAll({selected(column.get(n, n), n)}, ${n})" for n in names)


def counted_once(table: str, time_filter: str) -> str:
    """The condition that keeps, per stage and minute, only the rows of ``table`` (a
    per-minute rollup keyed by ``authority``) of the highest authority present: a stamp the
    gate recorded itself is also read from headers by a tap (lower authority), and must count
    once. Both copies share ``received``, so they fall in the same minute; a stage only the
    SDK stamps has only tap readings, which are then the highest present. Per stage, not per
    stage pair: the gate's own first hop is split at the broker (``kafka:<topic> → gate``,
    migration 030) while a tap's reading of it cannot be (``origin → gate``)."""
    return f"""(stage, minute, authority) IN (
          SELECT stage, minute, max(authority) FROM {{db}}.{table}
          WHERE {time_filter} GROUP BY stage, minute)"""


def to_dict(dash: cogbuilder.Builder[Any]) -> dict[str, Any]:
    """A built SDK object as the plain JSON Grafana takes."""
    built = dash.build()
    out = typing.cast(dict[str, Any], json.loads(json.dumps(built, cls=JSONEncoder)))
    # Stable panel ids (links like `viewPanel=N` and alert annotations point at them).
    for n, panel in enumerate(out.get("panels", []), start=1):
        panel.setdefault("id", n)
    return out


def grid(x: int, y: int, w: int, h: int) -> model.GridPos:
    """A panel's place on the dashboard's 24-column grid."""
    return model.GridPos(h=h, w=w, x=x, y=y)


def text_panel(title: str, markdown: str, w: int = 24, h: int = 6) -> db.Panel:
    """A markdown panel (explanations, how-tos); no query."""
    return (
        db.Panel()
        .type("text")
        .title(title)
        .grid_pos(model.GridPos(h=h, w=w, x=0, y=0))
        .options({"mode": "markdown", "content": markdown})
    )
