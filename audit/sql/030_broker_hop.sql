-- Migration 030: the first hop split at the broker, so the gate's backlog is its own hop.
-- The per-minute hop rollup's main view is made again; the table and the lineage view are
-- kept (rollup minutes written before this count the first hop whole, as `origin -> gate`;
-- rows written between the drop and the create, if a recorder writes during the migration,
-- miss the rollup: the raw trail and `stampline hotspots` keep them).
--
-- A stamper's own first stamp (prev_stage 'origin', authority 2) read from a topic with a
-- broker timestamp is two hops, as `stampline hotspots` counts them:
--   origin -> kafka:<topic>      the provider's: born -> on the broker (the record's
--                                timestamp: CreateTime is the producer's clock, LogAppendTime
--                                the broker's)
--   kafka:<topic> -> <stage>     the gate's queue: on the broker -> the stage took it in
-- The broker time has millisecond resolution and no known clock-error bound: each half's
-- bound is its stamping host's plus 1 ms. A tap's reading of the same stamp cannot be split
-- (its broker time is the topic the tap read), and is counted once as before: readers keep,
-- per stage and minute, only the rows of the highest authority present.
DROP VIEW IF EXISTS {db}.hop_latency_1m_mv
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.hop_latency_1m_mv TO {db}.hop_latency_1m AS
SELECT
    toStartOfMinute(received) AS minute,
    part.1 AS prev_stage,
    part.2 AS stage,
    provider,
    authority,
    count() AS hops,
    countIf(part.3 < 0) AS negative,
    countIf(abs(part.3) <= part.4) AS within_bound,
    max(part.4) AS bound_max_ns,
    quantilesTDigestState(0.5, 0.99, 0.999)(part.3) AS latency,
    now() AS written
FROM
(
    SELECT received, provider, authority,
           toUnixTimestamp64Nano(received)
               - toInt64(toUnixTimestamp64Milli(broker_time)) * 1000000 AS queue_ns,
           if(prev_stage = 'origin' AND authority = 2 AND topic != ''
                  AND toUnixTimestamp64Milli(broker_time) > 0,
              [('origin', concat('kafka:', topic), hop_ns - queue_ns,
                toUInt64(prev_clock_err_ns + 1000000)),
               (concat('kafka:', topic), toString(stage), queue_ns,
                toUInt64(clock_err_ns + 1000000))],
              [(toString(prev_stage), toString(stage), hop_ns,
                toUInt64(clock_err_ns + prev_clock_err_ns))]) AS parts
    FROM {db}.observations
    WHERE prev_stage != '' AND outcome != 'dead_lettered'
)
ARRAY JOIN parts AS part
GROUP BY minute, prev_stage, stage, provider, authority
