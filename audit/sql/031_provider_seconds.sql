-- Migration 031: per provider, feed topic and second of origin time, the first and last
-- origin accepted, so the dashboards see silences shorter than a minute. The Providers
-- dashboard's "Silence and gaps" table used only per-minute rollups, where any pause inside
-- a minute that had an event was invisible. A pause is measured from one active second's
-- last origin to the next active second's first: exact for any pause that crosses a second
-- boundary, so every pause of a second or more is seen. Only forwarded records count: a
-- refused record (a far-future origin, say) moves no clock. Fills from when it is created.
CREATE TABLE IF NOT EXISTS {db}.provider_seconds_1s
(
    second        DateTime('UTC'),
    provider      LowCardinality(String),
    topic         LowCardinality(String),
    events        SimpleAggregateFunction(sum, UInt64),
    first_origin  SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_origin   SimpleAggregateFunction(max, DateTime64(9, 'UTC')),
    written       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(second)
ORDER BY (provider, topic, second)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.provider_seconds_1s_mv TO {db}.provider_seconds_1s AS
SELECT
    toDateTime(origin, 'UTC') AS second,
    provider,
    topic,
    count() AS events,
    min(origin) AS first_origin,
    max(origin) AS last_origin,
    now() AS written
FROM {db}.observations
WHERE outcome = 'forwarded' AND provider != '' AND toUnixTimestamp64Nano(origin) > 0
GROUP BY second, provider, topic
