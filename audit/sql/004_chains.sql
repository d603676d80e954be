-- Migration 004: one hash chain per writer (per trail partition), every evidence table chained.
-- Stores made before 004 are not verifiable afterwards (their batches were chained in
-- batch_ledger, which is left in place but no longer read): recreate them. The pre-004
-- dead_letters table is kept as dead_letters_pre004.

-- Which chain wrote a row: with `batch`, the ledger entry that digests it.
ALTER TABLE {db}.observations ADD COLUMN IF NOT EXISTS chain_id LowCardinality(String) DEFAULT '' CODEC(ZSTD(1)) AFTER batch
;
-- Dead letters become evidence too: digested per batch like observations. The sorting key
-- ends with the chain and batch so that merges never fold rows of two batches together (that
-- would change a batch's digest); the engine stays ReplacingMergeTree so readers' FINAL still
-- works. A re-read dead letter (a gate restarted without transactions) is kept once per
-- batch that wrote it: count source positions, uniqExact(topic, partition, offset).
RENAME TABLE IF EXISTS {db}.dead_letters TO {db}.dead_letters_pre004
;
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
    chain_id      LowCardinality(String),
    batch         UInt64,
    written       DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received)
ORDER BY (topic, partition, offset, chain_id, batch)
TTL written + toIntervalSecond({raw_ttl_s})
SETTINGS non_replicated_deduplication_window = 1000
;
-- The ledger: one row per written batch of one chain. Every field but `chain` is hashed into
-- the entry digest (audit/_ledger.py), and chain = SHA-256(prev_chain || entry digest), so
-- the write time and the expiry are evidence too: verification decides expiry from
-- `expires`, never from a field outside the chain. Append-only: a second row for a
-- (chain_id, seq) is itself a finding.
CREATE TABLE IF NOT EXISTS {db}.ledger
(
    chain_id       LowCardinality(String),      -- '<trail topic>/<partition>', or 'local'
    seq            UInt64,                      -- 1, 2, ... within the chain
    kind           LowCardinality(String),      -- observations | dead_letters
    source_offset  Int64,                       -- the trail message's offset, -1 if none
    written        DateTime64(6, 'UTC'),
    expires        DateTime64(6, 'UTC'),        -- written + raw retention at write time
    rows           UInt64,
    first_received DateTime64(9, 'UTC'),
    last_received  DateTime64(9, 'UTC'),
    digest         FixedString(64),             -- hex SHA-256 of the batch's canonical rows
    columns        Map(String, FixedString(64)),-- per column, to say what changed
    prev_chain     FixedString(64),
    chain          FixedString(64)
)
ENGINE = MergeTree
ORDER BY (chain_id, seq)
SETTINGS non_replicated_deduplication_window = 1000
