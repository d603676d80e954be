"""Compliance: when exactly did we receive, process and decide, within what clock error?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from stampline.dashboards._common import (
    CLICKHOUSE,
    ClickHouseQuery,
    PanelSql,
    SqlRegistry,
    counted_once,
    grid,
    text_panel,
    to_dict,
    variables,
    where_filters,
)

UID = "stampline-compliance"
TITLE = "Stampline · Compliance"
SQL = SqlRegistry()

# MiFID II RTS 25 maximum divergence from UTC: 100 µs for high-frequency algorithmic
# trading, 1 ms for other algorithmic or voice trading.
RTS25_HFT_US = 100
RTS25_OTHER_US = 1000

BOUND = SQL.add(
    PanelSql(
        UID,
        "Clock-error bound per host vs the RTS 25 tiers",
        f"""SELECT minute AS time, host, max(bound_max_ns) / 1e3 AS bound_us
FROM {{db}}.clock_bound_1m
WHERE $__timeFilter(minute) AND {where_filters("stage")}
GROUP BY time, host
ORDER BY time, host""",
        ("time", "host", "bound_us"),
        "time_series",
    )
)
HOSTS = SQL.add(
    PanelSql(
        UID,
        "Hosts: worst bound in the range and the tier it meets",
        f"""SELECT host, groupUniqArray(stage) AS stages, sum(stamps) AS stamps,
       max(bound_max_ns) / 1e3 AS worst_bound_us,
       multiIf(worst_bound_us <= {RTS25_HFT_US}, 'HFT (≤ 100 µs)',
               worst_bound_us <= {RTS25_OTHER_US}, 'other trading (≤ 1 ms)',
               'outside RTS 25') AS tier
FROM {{db}}.clock_bound_1m
WHERE $__timeFilter(minute) AND {where_filters("stage")}
GROUP BY host
ORDER BY worst_bound_us DESC, host""",
        ("host", "stages", "stamps", "worst_bound_us", "tier"),
    )
)
# A decision is an event born at a stage (an SDK stage's derived event: no previous stamp);
# its latency is its hold there, from the inputs received to the decision emitted.
DECISIONS = SQL.add(
    PanelSql(
        UID,
        "Decision latency (inputs received → decision), p50 / p99 / p99.9",
        f"""SELECT time, stage, q[1] / 1e6 AS p50_ms, q[2] / 1e6 AS p99_ms, q[3] / 1e6 AS p999_ms
FROM
(
    SELECT minute AS time, stage, quantilesTDigestMerge(0.5, 0.99, 0.999)(hold) AS q
    FROM {{db}}.stage_time_1m
    WHERE $__timeFilter(minute) AND prev_stage = ''
      AND {where_filters("stage")}
      AND {counted_once("stage_time_1m", "$__timeFilter(minute)")}
    GROUP BY time, stage
)
ORDER BY time, stage""",
        ("time", "stage", "p50_ms", "p99_ms", "p999_ms"),
        "time_series",
    )
)
DISTRIBUTION = SQL.add(
    PanelSql(
        UID,
        "Decision latency distribution over the range",
        f"""SELECT stage, decisions, mean_ms,
       q[1] / 1e6 AS p50_ms, q[2] / 1e6 AS p99_ms, q[3] / 1e6 AS p999_ms
FROM
(
    SELECT stage, sum(events) AS decisions, sum(hold_sum_ns) / sum(events) / 1e6 AS mean_ms,
           quantilesTDigestMerge(0.5, 0.99, 0.999)(hold) AS q
    FROM {{db}}.stage_time_1m
    WHERE $__timeFilter(minute) AND prev_stage = ''
      AND {where_filters("stage")}
      AND {counted_once("stage_time_1m", "$__timeFilter(minute)")}
    GROUP BY stage
)
ORDER BY stage""",
        ("stage", "decisions", "mean_ms", "p50_ms", "p99_ms", "p999_ms"),
    )
)
EVIDENCE_HOWTO = """\
**A decision's evidence.** Every decision's lineage is in the trail: the quotes it was made
from, each with its origin, ingestion and stage stamps and the clock-error bound of the host
that stamped it.

1. Find the decision's event id: the `stampline.event_id` header of the decision record (or
   of the record the tap observed on the decisions topic).
2. Replay it: `stampline replay --decision <id> --config stampline.yaml` (add `--json` for a
   machine-readable timeline).
3. Verify the trail has not changed since it was written: `stampline audit verify --config
   stampline.yaml`.

Latencies inside the combined clock-error bound are flagged as not distinguishable from
zero; a bound above the RTS 25 tier line above makes a host's stamps unfit as evidence.
"""


def build(database: str = "stampline") -> dict[str, Any]:
    """The Compliance dashboard as Grafana JSON."""
    tiers = (
        db.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                model.Threshold(value=None, color="green"),
                model.Threshold(value=RTS25_HFT_US, color="orange"),
                model.Threshold(value=RTS25_OTHER_US, color="red"),
            ]
        )
    )
    dash = (
        db.Dashboard(TITLE)
        .uid(UID)
        .description("Clock-error bounds against RTS 25, decision latency, and evidence.")
        .tags(["stampline", "compliance"])
        .time("now-24h", "now")
        .refresh("5m")
        .variables(variables(database))
    )
    dash.with_panel(
        timeseries.Panel()
        .title(BOUND.panel)
        .description(
            "The clock-error bound each stamping host declared (worst per minute). Lines: "
            f"{RTS25_HFT_US} µs (high-frequency trading) and {RTS25_OTHER_US} µs (other "
            "trading), MiFID II RTS 25."
        )
        .grid_pos(grid(0, 0, 16, 9))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(BOUND, database))
        .unit("µs")
        .thresholds(tiers)
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
    )
    dash.with_panel(
        table.Panel()
        .title(HOSTS.panel)
        .grid_pos(grid(16, 0, 8, 9))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(HOSTS, database))
    )
    dash.with_panel(
        timeseries.Panel()
        .title(DECISIONS.panel)
        .grid_pos(grid(0, 9, 16, 8))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(DECISIONS, database))
        .unit("ms")
    )
    dash.with_panel(
        table.Panel()
        .title(DISTRIBUTION.panel)
        .grid_pos(grid(16, 9, 8, 8))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(DISTRIBUTION, database))
    )
    dash.with_panel(text_panel("How to produce an evidence report", EVIDENCE_HOWTO, h=8))
    return to_dict(dash)
