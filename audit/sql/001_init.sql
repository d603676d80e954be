-- Stampline audit store, schema v1. `{db}` is replaced by the configured database.
-- Statements are separated by lines holding only ';' so the loader needs no SQL parser.
-- Every statement is idempotent (IF NOT EXISTS): the store applies this file at start-up.

CREATE DATABASE IF NOT EXISTS {db}
;
-- One row per sighting of an event by a stage (long format, any number of stages).
-- ReplacingMergeTree keyed on (event_id, stage): a batch re-written after a crash replaces
-- its rows instead of duplicating them; readers that must be exact use FINAL. Of two rows
-- for one key the higher `authority` wins: the collector that stamped (2) over a tap that
-- only read the stamp back from headers (1), so a tap never erases what the gate knew.
CREATE TABLE IF NOT EXISTS {db}.observations
(
    event_id      UUID,
    stage         LowCardinality(String),
    received      DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),   -- stage took the event in
    emitted       DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),   -- stage stamped / let it go
    origin        DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),   -- born at the source
    ingested      DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),   -- stampline first took custody
    clock_err_ns  UInt64 CODEC(T64, ZSTD(1)),                   -- stamping host's clock-error bound
    host          LowCardinality(String),
    topic         LowCardinality(String),
    partition     Int32 CODEC(T64, ZSTD(1)),
    offset        Int64 CODEC(Delta, ZSTD(1)),
    broker_time   DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),   -- record timestamp on the topic read
    provider      LowCardinality(String),
    instrument    LowCardinality(String),
    seq           Int64 CODEC(Delta, ZSTD(1)),                   -- provider sequence, -1 if none
    outcome       Enum8('forwarded' = 1, 'dead_lettered' = 2, 'observed' = 3),
    rule_id       LowCardinality(String),                        -- '' unless dead-lettered
    rule_version  UInt32,
    parents       Array(UUID),                                   -- lineage of a derived event
    authority     UInt8,
    INDEX idx_received received TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(authority)
PARTITION BY toYYYYMMDD(received)
ORDER BY (event_id, stage)
;
-- What the gate rejected, with the reason; the original bytes travel on the DLQ topic.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    event_id      UUID,
    received      DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    topic         LowCardinality(String),
    partition     Int32,
    offset        Int64,
    provider      LowCardinality(String),
    rule_id       LowCardinality(String),
    rule_version  UInt32,
    reason        String,
    value_size    UInt64,
    value_head    String CODEC(ZSTD(3))                          -- first bytes of the payload, for a glance
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received)
ORDER BY (topic, partition, offset)
