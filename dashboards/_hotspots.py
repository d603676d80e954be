"""Pipeline hotspots (SRE): where is the pipeline slow or stuck right now?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, stat, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model

from stampline.dashboards._common import (
    CLICKHOUSE,
    PROMETHEUS,
    ClickHouseQuery,
    PanelSql,
    SqlRegistry,
    counted_once,
    grid,
    promql,
    to_dict,
    variables,
    where_filters,
)

UID = "stampline-hotspots"
TITLE = "Stampline · Pipeline hotspots"
SQL = SqlRegistry()


HEATMAP = SQL.add(
    PanelSql(
        UID,
        "Hop latency p99 by stage",
        f"""SELECT minute AS time, concat(prev_stage, ' → ', stage) AS hop,
       arrayElement(quantilesTDigestMerge(0.5, 0.99, 0.999)(latency), 2) / 1e6 AS p99_ms
FROM {{db}}.hop_latency_1m
WHERE $__timeFilter(minute) AND {where_filters("provider", "stage")}
  AND {counted_once("hop_latency_1m", "$__timeFilter(minute)")}
GROUP BY time, hop
ORDER BY time, hop""",
        ("time", "hop", "p99_ms"),
        "time_series",
    )
)
HOLD = SQL.add(
    PanelSql(
        UID,
        "Hold time per stage (out − in), p99",
        f"""SELECT minute AS time, stage,
       arrayElement(quantilesTDigestMerge(0.5, 0.99, 0.999)(hold), 2) / 1e6 AS hold_p99_ms
FROM {{db}}.stage_time_1m
WHERE $__timeFilter(minute) AND stage NOT LIKE 'tap:%'
  AND {where_filters("provider", "topic", "stage")}
  AND {counted_once("stage_time_1m", "$__timeFilter(minute)")}
GROUP BY time, stage
ORDER BY time, stage""",
        ("time", "stage", "hold_p99_ms"),
        "time_series",
    )
)
DECOMPOSITION = SQL.add(
    PanelSql(
        UID,
        "Where the end-to-end latency goes (means, which add up)",
        f"""SELECT stage, from_stage, n AS events,
       up / n / 1e6 AS upstream_ms, hop / n / 1e6 AS hop_ms, hold / n / 1e6 AS hold_ms,
       e2e / n / 1e6 AS end_to_end_ms, e2e - up - hop - hold AS unexplained_ns
FROM
(
    SELECT stage, prev_stage AS from_stage, sum(events) AS n, sum(upstream_sum_ns) AS up,
           sum(hop_sum_ns) AS hop, sum(hold_sum_ns) AS hold, sum(e2e_sum_ns) AS e2e
    FROM {{db}}.stage_time_1m
    WHERE $__timeFilter(minute) AND stage NOT LIKE 'tap:%'
      AND {where_filters("provider", "topic", "stage")}
      AND {counted_once("stage_time_1m", "$__timeFilter(minute)")}
    GROUP BY stage, from_stage
)
ORDER BY end_to_end_ms""",
        (
            "stage",
            "from_stage",
            "events",
            "upstream_ms",
            "hop_ms",
            "hold_ms",
            "end_to_end_ms",
            "unexplained_ns",
        ),
    )
)
# The window before has the same length as the dashboard's: [from - (to - from), from).
_BOTH_WINDOWS = """(minute >= toStartOfMinute($__fromTime)
            - toIntervalSecond(toUnixTimestamp($__toTime) - toUnixTimestamp($__fromTime))
        AND minute <= $__toTime)"""
HOTSPOTS = SQL.add(
    PanelSql(
        UID,
        "Hotspots: hops ranked by p99, trend against the window before",
        f"""SELECT prev_stage AS from_stage, stage AS to_stage,
       sumIf(hops, current) AS hops,
       arrayElement(quantilesTDigestMergeIf(0.5, 0.99, 0.999)(latency, current), 2) / 1e6
           AS p99_ms,
       arrayElement(quantilesTDigestMergeIf(0.5, 0.99, 0.999)(latency, NOT current), 2) / 1e6
           AS previous_p99_ms,
       if(previous_p99_ms > 0, round(p99_ms / previous_p99_ms, 3), NULL) AS trend,
       maxIf(bound_max_ns, current) / 1e6 AS clock_bound_ms,
       sumIf(within_bound, current) AS within_bound,
       sumIf(negative, current) AS negative
FROM
(
    SELECT *, minute >= toStartOfMinute($__fromTime) AS current
    FROM {{db}}.hop_latency_1m
    WHERE {_BOTH_WINDOWS}
      AND {where_filters("provider", "stage")}
      AND {counted_once("hop_latency_1m", _BOTH_WINDOWS)}
)
GROUP BY from_stage, to_stage
HAVING hops > 0
ORDER BY p99_ms DESC""",
        (
            "from_stage",
            "to_stage",
            "hops",
            "p99_ms",
            "previous_p99_ms",
            "trend",
            "clock_bound_ms",
            "within_bound",
            "negative",
        ),
    )
)

# PromQL of the gate health row: (title, unit, [(expr, legend)]).
PROMETHEUS_PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Gate throughput (events/s)",
        "reqps",
        [
            (
                'sum by (provider) (rate(stampline_events_in_total{provider=~"$provider"}'
                "[$__rate_interval]))",
                "in {{provider}}",
            ),
            ("sum(rate(stampline_events_out_total[$__rate_interval]))", "forwarded"),
        ],
    ),
    (
        "Backpressure (1 = consumption paused)",
        "none",
        [("max(stampline_backpressure)", "paused")],
    ),
    (
        "Consumer lag in seconds (records behind ÷ intake rate)",
        "s",
        [
            (
                "sum(stampline_consumer_lag)"
                " / clamp_min(sum(rate(stampline_events_in_total[5m])), 1)",
                "seconds behind",
            )
        ],
    ),
    (
        "Trail writes: p99 write time, queue depth, failed writes",
        "s",
        [
            (
                "histogram_quantile(0.99, sum by (le) "
                "(rate(stampline_store_write_seconds_bucket[$__rate_interval])))",
                "write p99",
            ),
            ("max by (queue) (stampline_queue_depth)", "queue {{queue}}"),
            ("sum(rate(stampline_store_write_errors_total[$__rate_interval]))", "errors/s"),
        ],
    ),
    (
        "Dead letters by reason (per s)",
        "reqps",
        [
            (
                "sum by (reason) (rate(stampline_events_dead_lettered_total"
                '{provider=~"$provider"}[$__rate_interval]))',
                "{{reason}}",
            )
        ],
    ),
]


def build(database: str = "stampline") -> dict[str, Any]:
    """The Pipeline hotspots dashboard as Grafana JSON."""
    dash = (
        db.Dashboard(TITLE)
        .uid(UID)
        .description("Where is the pipeline slow or stuck right now? Reads the store's rollups.")
        .tags(["stampline", "sre"])
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(variables(database))
    )
    dash.with_panel(
        heatmap.Panel()
        .title(HEATMAP.panel)
        .description(
            "One row per hop (previous stamp → stage, or a decision's input → the stage that "
            "made it), one cell per minute, coloured by the hop's p99 in ms (hop_latency_1m). "
            "A hot row that lights up is where time goes."
        )
        .grid_pos(grid(0, 0, 24, 9))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(HEATMAP, database))
        .calculate(False)
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_model.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
        )
        .unit("ms")
    )
    dash.with_panel(
        timeseries.Panel()
        .title(HOLD.panel)
        .description("How long each stage held an event (stamp out − stamp in), p99 per minute.")
        .grid_pos(grid(0, 9, 12, 8))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(HOLD, database))
        .unit("ms")
    )
    dash.with_panel(
        table.Panel()
        .title(DECOMPOSITION.panel)
        .description(
            "Per stage: mean time from origin to the previous stamp (upstream), the hop to this "
            "stage, and this stage's hold. Means add up: upstream + hop + hold = end-to-end, "
            "and `unexplained_ns` shows the residual (0). Percentiles do not add up: summing "
            "per-hop p99s overstates the end-to-end p99."
        )
        .grid_pos(grid(12, 9, 12, 8))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(DECOMPOSITION, database))
    )
    dash.with_panel(
        table.Panel()
        .title(HOTSPOTS.panel)
        .description(
            "Hops ranked by p99 over the dashboard range, against the same length of time "
            "before it (trend > 1: slower); each hop counted once, the same hops as "
            "`stampline hotspots` (a decision's lineage hops included). Latencies inside the "
            "clock-error bound or negative are counted apart: they are not facts."
        )
        .grid_pos(grid(0, 17, 24, 8))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(HOTSPOTS, database))
    )
    y = 25
    for i, (title, unit, exprs) in enumerate(PROMETHEUS_PANELS):
        panel: Any = stat.Panel() if unit == "none" else timeseries.Panel()
        panel = (
            panel.title(title)
            .datasource(PROMETHEUS)
            .grid_pos(grid((i % 3) * 8, y + (i // 3) * 7, 8, 7))
            .unit(unit)
        )
        for j, (expr, legend) in enumerate(exprs):
            panel = panel.with_target(promql(expr, legend, chr(ord("A") + j)))
        dash.with_panel(panel)
    return to_dict(dash)
