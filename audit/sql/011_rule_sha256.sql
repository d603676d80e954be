-- Migration 011: the rule file's hash at verdict time. `rule_sha256` names, for every rule a
-- row names (its `rule_id`, and each warn rule in `warnings`) that was loaded from a rule
-- file, the SHA-256 of that file's bytes as the gate read them when it made the verdict:
-- 'rule@vN=<64 hex>' joined by commas; '' when the row names no rule, or only built-in rules
-- (record.*), or was written before this migration. Digested by the batch ledger; a batch
-- written before it is verified over the columns its ledger entry names (audit/_ledger.py).
-- Only rows that broke a rule carry a value, and it repeats while the rules stay loaded.
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS rule_sha256 LowCardinality(String) DEFAULT '' CODEC(ZSTD(1)) AFTER warnings
;
-- The trail view names its columns when it is created, so it is made again to show the new one.
CREATE OR REPLACE VIEW {db}.trail AS
SELECT *, emitted, prev_emitted, ingested, broker_time FROM {db}.observations
ORDER BY event_id, stage, authority DESC, batch DESC
LIMIT 1 BY event_id, stage
