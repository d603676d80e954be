-- Stampline audit store, migration 001: the trail. `{db}`, `{raw_ttl_s}` are filled in by the
-- loader. Statements are separated by lines holding only ';' so the loader needs no SQL parser.
-- A migration runs once per database (recorded in schema_migrations); the statements are
-- idempotent anyway, so a migration interrupted halfway can simply run again.

CREATE DATABASE IF NOT EXISTS {db}
;
-- One row per sighting of an event by a stage (long format, any number of stages).
-- Append-only MergeTree: nothing written is ever rewritten or removed except by TTL, which is
-- what lets the batch ledger prove the trail unchanged. A retried batch is dropped at insert
-- (deduplication token = the batch's digest, and the ledger is consulted first); a second
-- *different* sighting of the same (event, stage) -- a gate re-reading after a crash, a tap
-- reading back a stamp the gate wrote itself -- is kept as evidence, and readers pick one
-- per key through the `trail` view (highest authority, then the latest write).
-- Sorted by event id: the primary index is the lookup path for replay (`event_id = x` and
-- `event_id IN (...)` use it), and an event's rows sit together, so the id and the per-event
-- columns compress across its stages. Event ids start with a millisecond time (UUIDv7 / the
-- gate's time-ordered UUIDv8), so sorting by the id's bytes is also close to time order:
-- batches, write times and sequence numbers compress to little. (The key is UUIDToNum, the
-- id's bytes in written order: ClickHouse sorts the UUID type by its second half first.)
-- Only `received` and `origin` are stored as absolute times; the other times are stored as
-- signed offsets (the stage's own time, the hop, the ingestion delay, the broker's lag), which
-- take far fewer bits than a second absolute nanosecond time, and read back exactly through
-- ALIAS columns under their contract names (Int64 arithmetic wraps, so any value round-trips).
-- Codecs were chosen per column with bench/store.py on generated market data (README,
-- "Performance"): Delta for `received`, T64 for the jittered offsets, plain ZSTD where an
-- event's five rows repeat a value.
CREATE TABLE IF NOT EXISTS {db}.observations
(
    event_id           UUID CODEC(ZSTD(1)),
    stage              LowCardinality(String) CODEC(ZSTD(1)),
    prev_stage         LowCardinality(String) CODEC(ZSTD(1)),     -- 'origin', an upstream stage, or ''
    received           DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)), -- stage took the event in
    stage_ns           Int64 CODEC(T64, ZSTD(1)),                  -- emitted - received
    hop_ns             Int64 CODEC(T64, ZSTD(1)),                  -- received - prev_emitted
    origin             DateTime64(9, 'UTC') CODEC(ZSTD(1)),        -- born at the source
    ingest_ns          Int64 CODEC(ZSTD(1)),                       -- ingested - origin
    clock_err_ns       UInt64 CODEC(T64, ZSTD(1)),                 -- this stamping host's bound
    prev_clock_err_ns  UInt64 CODEC(T64, ZSTD(1)),                 -- the previous stamp's bound
    host               LowCardinality(String) CODEC(ZSTD(1)),
    topic              LowCardinality(String) CODEC(ZSTD(1)),
    partition          Int32 CODEC(T64, ZSTD(1)),
    offset             Int64 CODEC(ZSTD(1)),
    broker_lag_ms      Int64 CODEC(T64, ZSTD(1)),                  -- broker_time - received, in ms
    provider           LowCardinality(String) CODEC(ZSTD(1)),
    instrument         LowCardinality(String) CODEC(ZSTD(1)),
    seq                Int64 CODEC(ZSTD(1)),                       -- provider sequence, -1 if none
    price              Float64 CODEC(ZSTD(3)),                     -- the record's price, nan if none
    outcome            Enum8('forwarded' = 1, 'dead_lettered' = 2, 'observed' = 3) CODEC(ZSTD(1)),
    rule_id            LowCardinality(String) CODEC(ZSTD(1)),      -- '' unless dead-lettered
    rule_version       UInt32 CODEC(ZSTD(1)),
    parents            Array(UUID) CODEC(ZSTD(1)),                 -- lineage of a derived event
    authority          UInt8 CODEC(ZSTD(1)),                       -- 2 the stamper itself, 1 a tap
    batch              UInt64 CODEC(ZSTD(1)),                      -- ledger sequence number of the write
    written            DateTime('UTC') DEFAULT now() CODEC(Delta, ZSTD(1)), -- when the store took it
    -- The stamps under their contract names, exact, computed from the stored offsets.
    emitted            DateTime64(9, 'UTC') ALIAS                  -- stage stamped / let it go
        fromUnixTimestamp64Nano(toUnixTimestamp64Nano(received) + stage_ns, 'UTC'),
    prev_emitted       DateTime64(9, 'UTC') ALIAS                  -- previous stamp (hop start)
        fromUnixTimestamp64Nano(toUnixTimestamp64Nano(received) - hop_ns, 'UTC'),
    ingested           DateTime64(9, 'UTC') ALIAS                  -- stampline first took custody
        fromUnixTimestamp64Nano(toUnixTimestamp64Nano(origin) + ingest_ns, 'UTC'),
    broker_time        DateTime64(3, 'UTC') ALIAS                  -- record timestamp on the topic read
        fromUnixTimestamp64Milli(intDiv(toUnixTimestamp64Nano(received), 1000000) + broker_lag_ms, 'UTC'),
    INDEX idx_received received TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(received)
ORDER BY (UUIDToNum(event_id), stage)
-- Retention counts from the write, not from event times a skewed clock may have set.
TTL written + toIntervalSecond({raw_ttl_s})
SETTINGS non_replicated_deduplication_window = 1000
;
-- The trail as readers see it: one row per (event, stage). Filter inside a query of your own
-- where the table is large; this view is for small questions and tests.
-- (`*` leaves out ALIAS columns, so the stamps are named.)
CREATE VIEW IF NOT EXISTS {db}.trail AS
SELECT *, emitted, prev_emitted, ingested, broker_time FROM {db}.observations
ORDER BY event_id, stage, authority DESC, batch DESC
LIMIT 1 BY event_id, stage
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
    value_head    String CODEC(ZSTD(3)),                         -- first bytes of the payload, for a glance
    written       DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received)
ORDER BY (topic, partition, offset)
TTL written + toIntervalSecond({raw_ttl_s})
