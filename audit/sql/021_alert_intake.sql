-- Migration 021 (alerting): where each alert history row and action came from on the alerts
-- topic, so the recorder (the store's one writer) writes each alerts message exactly once.
-- `src` is "<topic>/<partition>" and `src_offset` the message's offset; rows written directly
-- (a process holding the store, without an alerts topic) keep '' and -1. A re-read message
-- is skipped when its table already holds a row from that partition at or past its offset.
ALTER TABLE {db}.alert_history ADD COLUMN IF NOT EXISTS src String DEFAULT ''
;
ALTER TABLE {db}.alert_history ADD COLUMN IF NOT EXISTS src_offset Int64 DEFAULT -1
;
ALTER TABLE {db}.alert_actions ADD COLUMN IF NOT EXISTS src String DEFAULT ''
;
ALTER TABLE {db}.alert_actions ADD COLUMN IF NOT EXISTS src_offset Int64 DEFAULT -1
