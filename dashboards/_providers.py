"""Providers (data teams): which provider is late, silent, gappy or wrong?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import dashboard as model

from stampline.dashboards._common import (
    CLICKHOUSE,
    ClickHouseQuery,
    PanelSql,
    SqlRegistry,
    counted_once,
    grid,
    to_dict,
    variables,
    where_filters,
)

UID = "stampline-providers"
TITLE = "Stampline · Providers"
SQL = SqlRegistry()
# Alert kinds link to this panel by its title (alerting/_kinds/stale.py, provider_latency.py).
LATENCY_TITLE = "Provider latency p50 / p99 (origin → broker)"

# Providers are "registered" by having sent anything in the 30 days before the range's end
# (read from the rollup, not the trail): a provider silent over the whole range is still a
# row, with zero events, instead of a series that is simply missing.
SILENCE = SQL.add(
    PanelSql(
        UID,
        "Silence and gaps per provider",
        f"""WITH
    toStartOfMinute($__fromTime) AS range_start,
    toStartOfMinute($__toTime) AS range_end,
    dateDiff('minute', range_start, range_end) + 1 AS range_minutes
SELECT known.provider AS provider,
       seen.n AS events,
       seen.active AS active_minutes,
       greatest(range_minutes - seen.active, 0) AS silent_minutes,
       if(seen.n = 0, NULL, seen.last) AS last_seen,
       if(seen.n = 0, dateDiff('second', range_start, $__toTime),
          greatest(dateDiff('second', seen.last + 60, $__toTime), 0)) AS silent_for_s,
       fine.gaps AS gaps,
       fine.longest_ns / 1e9 AS longest_gap_s,
       multiIf(seen.n = 0, 'silent', silent_minutes > 0 OR fine.gaps > 0, 'gaps', 'ok')
           AS status
FROM
(
    SELECT DISTINCT provider FROM {{db}}.stage_time_1m
    WHERE prev_stage = 'origin' AND provider != ''
      AND minute >= range_end - INTERVAL 30 DAY AND minute <= range_end
      AND {where_filters("provider", "topic")}
) AS known
LEFT JOIN
(
    SELECT provider, sum(events) AS n, uniqExact(minute) AS active, max(minute) AS last
    FROM {{db}}.stage_time_1m
    WHERE $__timeFilter(minute) AND prev_stage = 'origin' AND {where_filters("topic")}
      AND {counted_once("stage_time_1m", "$__timeFilter(minute)")}
    GROUP BY provider
) AS seen ON seen.provider = known.provider
LEFT JOIN
(
    -- Pauses at a second's resolution (migration 031): from one active second's last origin
    -- to the next one's first; a gap is a pause with at least one whole second of nothing.
    SELECT provider,
           arraySort(groupArray((second, first_ns, last_ns))) AS s,
           arrayMap((a, b) -> (b.2 - a.3, b.1 - a.1 > 1), arrayPopBack(s), arrayPopFront(s))
               AS pauses,
           arrayCount(p -> p.2, pauses) AS gaps,
           arrayMax(arrayPushBack(arrayMap(p -> p.1, pauses), 0)) AS longest_ns
    FROM
    (
        SELECT provider, toUInt32(second) AS second,
               toUnixTimestamp64Nano(min(first_origin)) AS first_ns,
               toUnixTimestamp64Nano(max(last_origin)) AS last_ns
        FROM {{db}}.provider_seconds_1s
        WHERE $__timeFilter(second) AND {where_filters("topic")}
        GROUP BY provider, second
    )
    GROUP BY provider
) AS fine ON fine.provider = known.provider
ORDER BY status = 'ok', silent_for_s DESC, provider""",
        (
            "provider",
            "events",
            "active_minutes",
            "silent_minutes",
            "last_seen",
            "silent_for_s",
            "gaps",
            "longest_gap_s",
            "status",
        ),
    )
)
RATE = SQL.add(
    PanelSql(
        UID,
        "Update rate per provider (events/s)",
        f"""SELECT minute AS time, provider, sum(events) / 60 AS updates_per_s
FROM {{db}}.stage_time_1m
WHERE $__timeFilter(minute) AND prev_stage = 'origin' AND provider != ''
  AND {where_filters("provider", "topic")}
  AND {counted_once("stage_time_1m", "$__timeFilter(minute)")}
GROUP BY time, provider
ORDER BY time, provider""",
        ("time", "provider", "updates_per_s"),
        "time_series",
    )
)
# The provider's part (origin -> the broker, migration 030) apart from the gate's queue
# (the broker -> the gate): a provider is never blamed for the gate's backlog. An event whose
# record had no broker time has only origin -> gate, counted as the provider's.
LATENCY = SQL.add(
    PanelSql(
        UID,
        LATENCY_TITLE,
        f"""SELECT time, provider,
       to_broker[1] / 1e6 AS to_broker_p50_ms, to_broker[2] / 1e6 AS to_broker_p99_ms,
       queue[2] / 1e6 AS gate_queue_p99_ms
FROM
(
    SELECT minute AS time, provider,
           quantilesTDigestMergeIf(0.5, 0.99, 0.999)(latency, prev_stage = 'origin')
               AS to_broker,
           quantilesTDigestMergeIf(0.5, 0.99, 0.999)(latency, startsWith(prev_stage, 'kafka:'))
               AS queue
    FROM {{db}}.hop_latency_1m
    WHERE $__timeFilter(minute) AND provider != ''
      AND (prev_stage = 'origin' OR startsWith(prev_stage, 'kafka:'))
      AND {where_filters("provider")}
      AND {counted_once("hop_latency_1m", "$__timeFilter(minute)")}
    GROUP BY time, provider
)
ORDER BY time, provider""",
        ("time", "provider", "to_broker_p50_ms", "to_broker_p99_ms", "gate_queue_p99_ms"),
        "time_series",
    )
)
DEAD = SQL.add(
    PanelSql(
        UID,
        "Dead letters by rule and provider",
        f"""SELECT rule_id, if(provider = '', '(unidentified)', provider) AS provider,
       topic, sum(events) AS dead_letters
FROM {{db}}.dead_letters_1m
WHERE $__timeFilter(minute) AND {where_filters("provider", "topic")}
GROUP BY rule_id, provider, topic
ORDER BY dead_letters DESC, rule_id, provider""",
        ("rule_id", "provider", "topic", "dead_letters"),
    )
)
# The reference is the median of every provider's last price in the minute (the provider
# filter applies after it, so choosing one provider does not make it its own reference).
RATIO = SQL.add(
    PanelSql(
        UID,
        "Price ratio to the cross-provider median, per instrument",
        f"""WITH per AS
(
    SELECT minute, instrument, provider, argMaxMerge(last_price) AS price
    FROM {{db}}.provider_price_1m
    WHERE $__timeFilter(minute) AND {where_filters("instrument", "topic")}
    GROUP BY minute, instrument, provider
),
ref AS
(
    SELECT minute, instrument, median(price) AS mid FROM per
    GROUP BY minute, instrument HAVING count() >= 2
)
SELECT per.minute AS time, concat(per.provider, ' ', per.instrument) AS series,
       per.price / ref.mid AS ratio
FROM per INNER JOIN ref ON per.minute = ref.minute AND per.instrument = ref.instrument
WHERE {where_filters("provider")}
ORDER BY time, series""",
        ("time", "series", "ratio"),
        "time_series",
    )
)
# The label the provider alert rules carry (stampline.dashboards._alert_rules sets it on
# every rule).
ALERT_LABEL_FILTER = 'stampline_dashboard="stampline-providers"'


def build(database: str = "stampline") -> dict[str, Any]:
    """The Providers dashboard as Grafana JSON."""
    dash = (
        db.Dashboard(TITLE)
        .uid(UID)
        .description("Which provider is late, silent, gappy or wrong? Reads the rollups.")
        .tags(["stampline", "providers"])
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(variables(database))
    )
    dash.with_panel(
        table.Panel()
        .title(SILENCE.panel)
        .description(
            "Every provider seen in the last 30 days is a row, even with no data in the range "
            "(status `silent`). Silent minutes count whole minutes with nothing; `gaps` and "
            "`longest_gap_s` come from origin times at a second's resolution: any pause of a "
            "second or more, measured exactly. Shorter ones: `stampline providers compare`."
        )
        .grid_pos(grid(0, 0, 12, 9))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(SILENCE, database))
    )
    dash.with_panel(
        db.Panel()
        .type("alertlist")
        .title("Provider alerts")
        .description("Firing and pending provider alerts (silence, gaps, latency, divergence).")
        .grid_pos(grid(12, 0, 12, 9))
        .options(
            {
                "viewMode": "list",
                "groupMode": "default",
                "maxItems": 50,
                "sortOrder": 1,
                "dashboardAlerts": False,
                # The label alone: the rules' folder has a uid only when pushed (a provisioning
                # file names it by title, and Grafana gives it one of its own).
                "alertInstanceLabelFilter": "{" + ALERT_LABEL_FILTER + "}",
                "stateFilter": {
                    "firing": True,
                    "pending": True,
                    "noData": True,
                    "error": True,
                    "normal": False,
                },
            }
        )
    )
    dash.with_panel(
        timeseries.Panel()
        .title(RATE.panel)
        .grid_pos(grid(0, 9, 12, 8))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(RATE, database))
        .unit("reqps")
    )
    dash.with_panel(
        timeseries.Panel()
        .title(LATENCY.panel)
        .description(
            "The provider's part: its origin time to the record's broker timestamp (p50, p99); "
            "and the gate's queue apart: broker timestamp to the gate's receipt (p99). A "
            "backlog at the gate shows in the queue, never as the provider's latency. The "
            "broker timestamp is the broker's clock on a feed topic with "
            "message.timestamp.type=LogAppendTime, the producer's with CreateTime (Kafka's "
            "default: the network to the broker then falls in the queue); `stampline "
            "providers compare` and `replay` say which for each record."
        )
        .grid_pos(grid(12, 9, 12, 8))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(LATENCY, database))
        .unit("ms")
    )
    dash.with_panel(
        table.Panel()
        .title(DEAD.panel)
        .grid_pos(grid(0, 17, 8, 9))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(DEAD, database))
    )
    dash.with_panel(
        timeseries.Panel()
        .title(RATIO.panel)
        .description(
            "Each provider's last price per minute ÷ the median across providers (1 = agree). "
            "A single spike is noise; a ratio that stays off 1 is a real difference."
        )
        .grid_pos(grid(8, 17, 16, 9))
        .datasource(CLICKHOUSE)
        .with_target(ClickHouseQuery(RATIO, database))
    )
    return to_dict(dash)
