-- Migration 002: the batch ledger and the alert-state placeholder.

-- One row per written batch of observations, chained: chain = SHA-256(previous chain || digest)
-- where digest covers every column of every row of the batch (see audit/_ledger.py).
-- `stampline audit verify` recomputes digests from the stored rows and the chain from them.
CREATE TABLE IF NOT EXISTS {db}.batch_ledger
(
    seq           UInt64,                        -- the batch number, also stored on each row
    written       DateTime64(6, 'UTC'),
    rows          UInt64,
    first_received DateTime64(9, 'UTC'),         -- the batch's time range: TTL expiry, not tampering
    last_received DateTime64(9, 'UTC'),
    digest        FixedString(64),              -- hex SHA-256 of the batch's canonical rows
    columns       Map(String, FixedString(64)), -- per column, to say what changed
    prev_chain    FixedString(64),
    chain         FixedString(64)
)
ENGINE = ReplacingMergeTree
ORDER BY seq
;
-- Alert lifecycle state, owned by the alerting component; the store only keeps the table.
CREATE TABLE IF NOT EXISTS {db}.alert_state
(
    alert_id      String,
    kind          LowCardinality(String),
    subject       String,
    state         LowCardinality(String),
    since         DateTime64(3, 'UTC'),
    updated       DateTime64(3, 'UTC'),
    detail        String
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (kind, alert_id)
