-- Migration 010: where each stamp's clock-error bound came from, and the warn verdicts.
-- `clock_source` is the stamping host's bound source as audit._clock.ClockBound.label() writes
-- it: 'configured', 'chrony offset_ns=… root_dispersion_ns=… root_delay_ns=…', or
-- 'fallback: <reason>' (chrony asked for but unusable, the configured bound used instead);
-- '' where the stamper did not say (a tap reading a stamp from headers, rows written before
-- this migration). `warnings` lists the warn rules a forwarded record broke, 'rule@vN' joined
-- by commas ('' for none). Both are digested by the batch ledger; a batch written before
-- this migration is verified over the columns its ledger entry names (audit/_ledger.py).
-- A sidecar's source and warn flags repeat from row to row, so they cost next to nothing.
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS clock_source LowCardinality(String) DEFAULT '' CODEC(ZSTD(1)) AFTER authority
;
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS warnings LowCardinality(String) DEFAULT '' CODEC(ZSTD(1)) AFTER clock_source
;
-- The trail view names its columns when it is created, so it is made again to show the new ones.
CREATE OR REPLACE VIEW {db}.trail AS
SELECT *, emitted, prev_emitted, ingested, broker_time FROM {db}.observations
ORDER BY event_id, stage, authority DESC, batch DESC
LIMIT 1 BY event_id, stage
