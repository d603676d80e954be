-- Migration 028: the per-minute stage-time rollup (migration 025) made again with `authority`
-- as a key, for the reason migration 027 gives for the hop rollup: a stamp the gate recorded
-- itself (authority 2) is also read from headers by a tap (authority 1), and counting both
-- doubled every gate row's `events` (the means stayed right, the counts did not). Readers take,
-- per stage pair and minute, only the rows of the highest authority present. Dropped and
-- re-created: no deployment existed before it (the raw trail keeps every row).
DROP VIEW IF EXISTS {db}.stage_time_1m_mv
;
DROP TABLE IF EXISTS {db}.stage_time_1m
;
CREATE TABLE IF NOT EXISTS {db}.stage_time_1m
(
    minute          DateTime('UTC'),
    stage           LowCardinality(String),
    prev_stage      LowCardinality(String),
    provider        LowCardinality(String),
    topic           LowCardinality(String),
    authority       UInt8,  -- of the rows counted: 2 the stamper's own, 1 a tap's reading
    events          SimpleAggregateFunction(sum, UInt64),
    upstream_sum_ns SimpleAggregateFunction(sum, Int64),
    hop_sum_ns      SimpleAggregateFunction(sum, Int64),
    hold_sum_ns     SimpleAggregateFunction(sum, Int64),
    e2e_sum_ns      SimpleAggregateFunction(sum, Int64),
    hold            AggregateFunction(quantilesTDigest(0.5, 0.99, 0.999), Int64),
    e2e             AggregateFunction(quantilesTDigest(0.5, 0.99, 0.999), Int64),
    written         SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (stage, prev_stage, authority, provider, topic, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.stage_time_1m_mv TO {db}.stage_time_1m AS
SELECT
    toStartOfMinute(received) AS minute,
    stage,
    prev_stage,
    provider,
    topic,
    authority,
    count() AS events,
    sum(upstream_ns) AS upstream_sum_ns,
    sum(hop_part_ns) AS hop_sum_ns,
    sum(stage_ns) AS hold_sum_ns,
    sum(e2e_ns) AS e2e_sum_ns,
    quantilesTDigestState(0.5, 0.99, 0.999)(stage_ns) AS hold,
    quantilesTDigestState(0.5, 0.99, 0.999)(e2e_ns) AS e2e,
    now() AS written
FROM
(
    SELECT received, stage, prev_stage, provider, topic, authority, stage_ns,
           toUnixTimestamp64Nano(received) AS r, toUnixTimestamp64Nano(origin) AS o,
           if(prev_stage = '', toInt64(0), toInt64(r - hop_ns - o)) AS upstream_ns,
           if(prev_stage = '', toInt64(0), hop_ns) AS hop_part_ns,
           if(prev_stage = '', stage_ns, toInt64(r + stage_ns - o)) AS e2e_ns
    FROM {db}.observations
    -- a record without an origin time has no end-to-end latency to decompose
    WHERE outcome != 'dead_lettered' AND toUnixTimestamp64Nano(origin) > 0
)
GROUP BY minute, stage, prev_stage, provider, topic, authority
