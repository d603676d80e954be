-- Migration 027: the per-minute hop rollup made again, so that each hop counts once and a
-- derived event's lineage hops are in it. Dropped and re-created: no deployment existed
-- before it, so nothing is lost but rollup minutes of test stores (the raw trail keeps
-- every row; the rollup fills again from the next write).
--
-- Why it changed (migration 003 made the first version):
-- 1. One stamp can have two rows: the stamper's own (the gate writes one, authority 2) and a
--    tap's reading of the same stamp from headers (authority 1). Counting both counted every
--    origin -> gate hop twice. The rollup now keeps `authority` as a key; a reader takes, per
--    stage pair and minute, only the rows of the highest authority present (both copies of a
--    stamp fall in the same minute: they share `received`). A stage stamped only by the SDK
--    has only tap readings, which are then the highest present.
-- 2. Dead-lettered rows make no hop (their origin is often why they were rejected), as in
--    `stampline hotspots`.
-- 3. A derived event is born at its stage (no previous stamp). Its inbound hops run from
--    where each parent last left a stage (`parent_stage`, `parent_emitted`, migration 026)
--    to its `received`: one hop per known parent, from a second view into the same table.
DROP VIEW IF EXISTS {db}.hop_latency_1m_mv
;
DROP TABLE IF EXISTS {db}.hop_latency_1m
;
CREATE TABLE IF NOT EXISTS {db}.hop_latency_1m
(
    minute        DateTime('UTC'),
    prev_stage    LowCardinality(String),
    stage         LowCardinality(String),
    provider      LowCardinality(String),
    authority     UInt8,  -- of the rows counted: 2 the stamper's own, 1 a tap's reading
    hops          SimpleAggregateFunction(sum, UInt64),
    negative      SimpleAggregateFunction(sum, UInt64),
    within_bound  SimpleAggregateFunction(sum, UInt64),
    bound_max_ns  SimpleAggregateFunction(max, UInt64),
    latency       AggregateFunction(quantilesTDigest(0.5, 0.99, 0.999), Int64),
    written       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (prev_stage, stage, authority, provider, minute)
TTL written + toIntervalSecond({rollup_ttl_s})
;
-- Hop latency = received at this stage - emitted by the previous stamp; the bound is the two
-- stamping hosts' clock-error bounds added up; hops inside it (or negative) are counted apart.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.hop_latency_1m_mv TO {db}.hop_latency_1m AS
SELECT
    toStartOfMinute(received) AS minute,
    prev_stage,
    stage,
    provider,
    authority,
    count() AS hops,
    countIf(hop < 0) AS negative,
    countIf(abs(hop) <= bound) AS within_bound,
    max(bound) AS bound_max_ns,
    quantilesTDigestState(0.5, 0.99, 0.999)(hop) AS latency,
    now() AS written
FROM
(
    SELECT received, prev_stage, stage, provider, authority,
           hop_ns AS hop,  -- stored: received - prev_emitted
           clock_err_ns + prev_clock_err_ns AS bound
    FROM {db}.observations
    WHERE prev_stage != '' AND outcome != 'dead_lettered'
)
GROUP BY minute, prev_stage, stage, provider, authority
;
-- Lineage hops: one per parent of a derived event whose last stage is known.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.hop_latency_1m_lineage_mv TO {db}.hop_latency_1m AS
SELECT
    toStartOfMinute(received) AS minute,
    from_stage AS prev_stage,
    stage,
    provider,
    authority,
    count() AS hops,
    countIf(hop < 0) AS negative,
    countIf(abs(hop) <= bound) AS within_bound,
    max(bound) AS bound_max_ns,
    quantilesTDigestState(0.5, 0.99, 0.999)(hop) AS latency,
    now() AS written
FROM
(
    SELECT received, from_stage, stage, provider, authority,
           toUnixTimestamp64Nano(received) - toUnixTimestamp64Nano(left_at) AS hop,
           clock_err_ns + left_err AS bound
    FROM {db}.observations
    ARRAY JOIN parent_stage AS from_stage, parent_emitted AS left_at,
               parent_clock_err_ns AS left_err
    WHERE from_stage != '' AND outcome != 'dead_lettered'
)
GROUP BY minute, from_stage, stage, provider, authority
