-- Migration 032: whose clock `broker_time` is. The Kafka record timestamp comes with a type:
-- CreateTime is the producer's clock when it made the record, LogAppendTime the broker's when
-- it appended it (the topic's `message.timestamp.type`). Which one it is decides what the
-- provider's half of the first hop (origin -> kafka:<topic>, migration 030) measures: with
-- LogAppendTime, born -> on the broker, against the broker's clock; with CreateTime, born ->
-- handed to the producer, against the producer's clock (the network to the broker is then in
-- the gate's queue half). '' where the record carried no timestamp, and on every row written
-- before this migration (not recorded).
-- An Enum8, not a String: Kafka defines exactly these three, a row holds one byte, and a
-- name outside them cannot be stored by mistake (audit.check_batch refuses such a batch
-- before the insert, as it does an unknown outcome). The ledger digests it as its name
-- (audit/_ledger.py); batches chained before it name no such column and verify without it.
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS broker_time_type Enum8('' = 0, 'CreateTime' = 1, 'LogAppendTime' = 2)
        DEFAULT '' CODEC(ZSTD(1)) AFTER parent_clock_err_ns
;
-- The trail view names its columns when it is created, so it is made again (as 029 made it)
-- to show the new one.
CREATE OR REPLACE VIEW {db}.trail AS
SELECT * FROM (
    SELECT *, emitted, prev_emitted, ingested, broker_time FROM {db}.observations
    ORDER BY event_id, stage, chain_id, authority DESC, batch DESC
    LIMIT 1 BY event_id, stage, chain_id
)
ORDER BY event_id, stage, authority DESC, written, chain_id
LIMIT 1 BY event_id, stage
