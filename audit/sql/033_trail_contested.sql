-- Migration 033: no chain's row shadows another's; a conflict between chains is shown, never
-- resolved. 029 picked one row per (event, stage) across chains by authority, then the
-- earliest `written`, then the chain id: every one of those a writer of the store chooses, so
-- a made-up chain named `a.forged/0`, or written a second earlier, still won. No tie-break
-- an insider can write can be trusted, so there is none to trust: the view keeps, per chain,
-- that chain's best row (highest authority, then its latest batch: a re-read written again),
-- shows one of them, and says whether the chains agree.
--
-- Two chains agree on an (event, stage) when their rows are the same sighting:
--   * the same content: every stored column but the bookkeeping (`chain_id`, `batch`,
--     `written`) equal -- a trail message written by two recorders across a repartition of
--     the trail topic, say; or
--   * a tap's reading (authority 1) of the stamp the stamper wrote itself (authority 2): the
--     tap copies the stamp from the record's headers, so both rows hold the same stamp
--     (`received`, `stage_ns`, `clock_err_ns`, `host`, `parents`) and differ only in what the
--     tap cannot know (provider, outcome, the topic it read, ...). The gate keys its trail
--     messages `<stage>@<host>` and the tap `<tap stage>@<host>`, so the two usually land
--     in different trail partitions, hence different chains.
-- Anything else is `contested = 1`: at least one chain holds a different row for the same
-- (event, stage). `chains` names every chain holding one (sorted). The row shown is the one of
-- the highest authority, then the first chain id: a choice, not a verdict -- readers
-- (`stampline replay`, the evidence report) mark a contested value and name the chains, and
-- `stampline audit verify` with the chains' heads tells a made-up chain from a real one.
-- A real double sighting in two chains (a gate on another host re-reading records after a
-- rebalance, under at-least-once) is contested too: two different times for one stamp are a
-- fact the reader must see.
--
-- The filter a reader puts on `event_id` reaches the table's primary index through the view
-- (replay and the evidence report read the trail only through it: one rule, here).
CREATE OR REPLACE VIEW {db}.trail AS
SELECT * EXCEPT (_content, _stamp, _top_content, _top_stamp, _top_authority, _agrees, _agree_all, _rank),
       NOT _agree_all AS contested
FROM (
    SELECT *, min(_agrees) OVER (PARTITION BY event_id, stage) AS _agree_all
    FROM (
        SELECT *,
               _content = _top_content
                   OR (_top_authority = 2 AND authority = 1 AND _stamp = _top_stamp) AS _agrees
        FROM (
            SELECT *,
                   first_value(_content) OVER best AS _top_content,
                   first_value(_stamp) OVER best AS _top_stamp,
                   first_value(authority) OVER best AS _top_authority,
                   row_number() OVER best AS _rank,
                   arraySort(groupArray(toString(chain_id)) OVER best) AS chains
            FROM (
                SELECT *, emitted, prev_emitted, ingested, broker_time,
                       cityHash64(prev_stage, received, stage_ns, hop_ns, origin, ingest_ns,
                                  clock_err_ns, prev_clock_err_ns, host, topic, partition, offset,
                                  broker_lag_ms, provider, instrument, seq,
                                  reinterpretAsUInt64(price), outcome, rule_id, rule_version,
                                  parents, authority, clock_source, warnings, rule_sha256,
                                  parent_stage, parent_emitted, parent_clock_err_ns,
                                  broker_time_type) AS _content,
                       cityHash64(received, stage_ns, clock_err_ns, host, parents) AS _stamp
                FROM {db}.observations
                ORDER BY event_id, stage, chain_id, authority DESC, batch DESC
                LIMIT 1 BY event_id, stage, chain_id
            )
            WINDOW best AS (PARTITION BY event_id, stage ORDER BY authority DESC, chain_id
                            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        )
    )
)
WHERE _rank = 1
