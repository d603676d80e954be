-- Migration 025: per-minute rollups the Grafana dashboards read (dashboards/), kept as long as
-- the other rollups. A dashboard's time range then costs minutes x keys rows, never a scan of
-- the raw trail. `topic` is the feed topic a row was read from: the dashboards' "venue"
-- (one feed topic per venue is the usual layout).

-- Stage time decomposed, per stage, provider and venue. For one observation
--   end-to-end (origin -> this stage let it go) = upstream + hop + hold
-- where upstream = origin -> previous stamp, hop = previous stamp -> received here,
-- hold = received -> emitted here. An event born at this stage (a decision an SDK stage
-- derived: no previous stamp, origin = emitted) has only its hold, which is its decision
-- latency (inputs received -> decision emitted). The parts are kept as *sums*: means add up,
-- so the decomposition panel's parts sum to the end-to-end exactly, where per-hop
-- percentiles added together would not (they overstate it). Dead-lettered events are left
-- out: their origin is often what was wrong with them.
CREATE TABLE IF NOT EXISTS {db}.stage_time_1m
(
    minute          DateTime('UTC'),
    stage           LowCardinality(String),
    prev_stage      LowCardinality(String),
    provider        LowCardinality(String),
    topic           LowCardinality(String),
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
ORDER BY (stage, prev_stage, provider, topic, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.stage_time_1m_mv TO {db}.stage_time_1m AS
SELECT
    toStartOfMinute(received) AS minute,
    stage,
    prev_stage,
    provider,
    topic,
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
    SELECT received, stage, prev_stage, provider, topic, stage_ns,
           toUnixTimestamp64Nano(received) AS r, toUnixTimestamp64Nano(origin) AS o,
           if(prev_stage = '', toInt64(0), toInt64(r - hop_ns - o)) AS upstream_ns,
           if(prev_stage = '', toInt64(0), hop_ns) AS hop_part_ns,
           if(prev_stage = '', stage_ns, toInt64(r + stage_ns - o)) AS e2e_ns
    FROM {db}.observations
    -- a record without an origin time has no end-to-end latency to decompose
    WHERE outcome != 'dead_lettered' AND toUnixTimestamp64Nano(origin) > 0
)
GROUP BY minute, stage, prev_stage, provider, topic
;
-- Dead letters per rule, provider and venue (the trail row carries the rule that failed).
CREATE TABLE IF NOT EXISTS {db}.dead_letters_1m
(
    minute        DateTime('UTC'),
    provider      LowCardinality(String),
    topic         LowCardinality(String),
    rule_id       LowCardinality(String),
    events        SimpleAggregateFunction(sum, UInt64),
    written       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (rule_id, provider, topic, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dead_letters_1m_mv TO {db}.dead_letters_1m AS
SELECT toStartOfMinute(received) AS minute, provider, topic, rule_id,
       count() AS events, now() AS written
FROM {db}.observations
WHERE outcome = 'dead_lettered'
GROUP BY minute, provider, topic, rule_id
;
-- Each provider's last price per instrument and minute (by origin time), for the
-- cross-provider price ratio.
CREATE TABLE IF NOT EXISTS {db}.provider_price_1m
(
    minute        DateTime('UTC'),
    instrument    LowCardinality(String),
    provider      LowCardinality(String),
    topic         LowCardinality(String),
    updates       SimpleAggregateFunction(sum, UInt64),
    last_price    AggregateFunction(argMax, Float64, DateTime64(9, 'UTC')),
    written       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (instrument, provider, topic, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.provider_price_1m_mv TO {db}.provider_price_1m AS
SELECT toStartOfMinute(received) AS minute, instrument, provider, topic,
       count() AS updates, argMaxState(price, origin) AS last_price, now() AS written
FROM {db}.observations
WHERE outcome = 'forwarded' AND isFinite(price) AND price > 0
GROUP BY minute, instrument, provider, topic
;
-- The clock-error bound each stamping host declared, per minute (compliance: RTS 25).
CREATE TABLE IF NOT EXISTS {db}.clock_bound_1m
(
    minute        DateTime('UTC'),
    host          LowCardinality(String),
    stage         LowCardinality(String),
    stamps        SimpleAggregateFunction(sum, UInt64),
    bound_max_ns  SimpleAggregateFunction(max, UInt64),
    written       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (host, stage, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.clock_bound_1m_mv TO {db}.clock_bound_1m AS
SELECT toStartOfMinute(received) AS minute, host, stage,
       count() AS stamps, max(clock_err_ns) AS bound_max_ns, now() AS written
FROM {db}.observations  -- each row's bound is that of the host that stamped its stage
GROUP BY minute, host, stage
