-- Migration 020 (alerting): the alert history and the actions people took on alerts.
-- Both are append-only and kept without TTL: compliance shows from them why an alert fired,
-- was quiet (a snooze: who, when, why, until) or was dismissed.

-- One row per lifecycle transition (pending, firing, resolved) of an alert instance.
CREATE TABLE IF NOT EXISTS {db}.alert_history
(
    at           DateTime64(9, 'UTC'),            -- event time of the transition
    alert_id     LowCardinality(String),
    kind         LowCardinality(String),
    state        LowCardinality(String),          -- pending | firing | resolved
    fingerprint  String,                          -- the instance: alert id + identifying labels
    severity     LowCardinality(String),
    labels       Map(String, String),
    annotations  Map(String, String),
    value        Float64,
    started      DateTime64(9, 'UTC'),            -- when the condition began
    why          LowCardinality(String),          -- resolve reason: cleared | expired | evicted
    source       String,                          -- the process that detected it
    written      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (at, fingerprint, state)
;
-- Snoozes, unsnoozes, dismissals: who did what to which alerts, and why.
CREATE TABLE IF NOT EXISTS {db}.alert_actions
(
    at           DateTime64(3, 'UTC'),
    action       LowCardinality(String),          -- snooze | unsnooze | dismiss
    alert_id     String,                          -- empty when matchers name the alerts
    fingerprint  String,
    matchers     Map(String, String),
    until        DateTime64(3, 'UTC'),
    by           String,
    reason       String,
    verdict      LowCardinality(String),          -- dismiss: expected | false_positive | fixed
    silence_id   String                           -- the Alertmanager silence, for a snooze
)
ENGINE = MergeTree
ORDER BY at
