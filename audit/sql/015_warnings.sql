-- Migration 015: warn verdicts. A record that breaks only `warn` rules is forwarded (with the
-- `stampline.warn` header) and its observation row names the first broken warn rule; this
-- table keeps every broken warn rule of it with its version and reason (gap size, divergence
-- %), so `replay` and reports can show why. Idempotent per record and rule: a gate re-reading
-- after a crash writes the same rows again and the engine keeps one.
CREATE TABLE IF NOT EXISTS {db}.warnings
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
    written       DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received)
ORDER BY (topic, partition, offset, rule_id, rule_version)
TTL written + toIntervalSecond({raw_ttl_s})
