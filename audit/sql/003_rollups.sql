-- Migration 003: per-minute rollups, kept longer than the raw trail (`{rollup_ttl_s}`).
-- Dashboards, `hotspots` and `providers compare` read these, not the raw trail.

-- Hop latency = received at this stage - emitted by the previous stamp, per stage pair and
-- provider. The bound is the two stamping hosts' clock-error bounds added up; hops inside
-- their bound (or negative) are counted apart so nobody mistakes them for facts.
CREATE TABLE IF NOT EXISTS {db}.hop_latency_1m
(
    minute        DateTime('UTC'),
    prev_stage    LowCardinality(String),
    stage         LowCardinality(String),
    provider      LowCardinality(String),
    hops          SimpleAggregateFunction(sum, UInt64),
    negative      SimpleAggregateFunction(sum, UInt64),
    within_bound  SimpleAggregateFunction(sum, UInt64),
    bound_max_ns  SimpleAggregateFunction(max, UInt64),
    latency       AggregateFunction(quantilesTDigest(0.5, 0.99, 0.999), Int64),
    written       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (prev_stage, stage, provider, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.hop_latency_1m_mv TO {db}.hop_latency_1m AS
SELECT
    toStartOfMinute(received) AS minute,
    prev_stage,
    stage,
    provider,
    count() AS hops,
    countIf(hop < 0) AS negative,
    countIf(abs(hop) <= bound) AS within_bound,
    max(bound) AS bound_max_ns,
    quantilesTDigestState(0.5, 0.99, 0.999)(hop) AS latency,
    now() AS written
FROM
(
    SELECT received, prev_stage, stage, provider, hop_ns AS hop,  -- stored: received - prev_emitted
           clock_err_ns + prev_clock_err_ns AS bound
    FROM {db}.observations
    WHERE prev_stage != ''
)
GROUP BY minute, prev_stage, stage, provider
;
-- What each provider sent per minute, as the gate saw it (rows that carry an outcome).
CREATE TABLE IF NOT EXISTS {db}.provider_activity_1m
(
    minute        DateTime('UTC'),
    provider      LowCardinality(String),
    events        SimpleAggregateFunction(sum, UInt64),
    dead_lettered SimpleAggregateFunction(sum, UInt64),
    instruments   AggregateFunction(uniq, String),
    bound_max_ns  SimpleAggregateFunction(max, UInt64),
    latency       AggregateFunction(quantilesTDigest(0.5, 0.99, 0.999), Int64),
    written       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (provider, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.provider_activity_1m_mv TO {db}.provider_activity_1m AS
SELECT
    toStartOfMinute(ingested) AS minute,
    provider,
    count() AS events,
    countIf(outcome = 'dead_lettered') AS dead_lettered,
    uniqState(toString(instrument)) AS instruments,
    max(clock_err_ns) AS bound_max_ns,
    -- ingestion latency (ingested - origin, stored as ingest_ns) of what passed: the
    -- provider's own delay
    quantilesTDigestStateIf(0.5, 0.99, 0.999)(ingest_ns, outcome = 'forwarded') AS latency,
    now() AS written
FROM {db}.observations
WHERE outcome != 'observed'
GROUP BY minute, provider
