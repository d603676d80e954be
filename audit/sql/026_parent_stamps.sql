-- Migration 026: lineage hops without a join. A derived event (a decision an SDK stage made
-- from inputs) carries, aligned with `parents`, where each parent last left a stage: the
-- `stampline.parent_stamps` header, which the SDK writes from the inputs' own stamps. Its
-- birth row (the first stamp, `prev_stage = ''`) stores them here: the stage, its `emitted`
-- time and that stamp's clock-error bound per parent ('' / epoch / 0 where not known). Every
-- other row, and rows written before this migration, hold empty arrays. The ledger digests
-- the three as one canonical column, `parent_stamps` ("stage/emitted_ns/err_ns" or "-" per
-- parent, joined by commas); a batch written before it is verified over the columns its
-- ledger entry names (audit/_ledger.py). Only derived events' birth rows carry values.
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS parent_stage Array(LowCardinality(String)) CODEC(ZSTD(1)) AFTER rule_sha256
;
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS parent_emitted Array(DateTime64(9, 'UTC')) CODEC(ZSTD(1)) AFTER parent_stage
;
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS parent_clock_err_ns Array(UInt64) CODEC(ZSTD(1)) AFTER parent_emitted
;
-- The trail view names its columns when it is created, so it is made again to show the new ones.
CREATE OR REPLACE VIEW {db}.trail AS
SELECT *, emitted, prev_emitted, ingested, broker_time FROM {db}.observations
ORDER BY event_id, stage, authority DESC, batch DESC
LIMIT 1 BY event_id, stage
