"""Dead-letter headers, in Kafka Connect's ``__connect.errors.*`` convention.

Connect's names let existing DLQ tooling read stampline's dead letters; the
``stampline.*`` names add what Connect has no slot for (rule version). The record's
original key, value and headers are kept as they came, these are appended after them.
"""

from __future__ import annotations

from collectors._stamps import Headers

H_TOPIC = "__connect.errors.topic"
H_PARTITION = "__connect.errors.partition"
H_OFFSET = "__connect.errors.offset"
H_CLASS = "__connect.errors.exception.class.name"
H_MESSAGE = "__connect.errors.exception.message"
H_STAGE = "__connect.errors.stage"
H_CONNECTOR = "__connect.errors.connector.name"
H_RULE_ID = "stampline.rule.id"
H_RULE_VERSION = "stampline.rule.version"
H_REASON = "stampline.reason"

# Connect's stage names: failures to read the bytes are the converter's, the rest are rules.
_CONVERTER_RULES = frozenset({"record.size", "record.decode", "record.non_finite"})


def dead_letter_headers(
    original: Headers,
    *,
    topic: str,
    partition: int,
    offset: int,
    rule_id: str,
    rule_version: int,
    reason: str,
    collector: str,
) -> Headers:
    """``original``, then the headers saying where the record came from and why it failed."""
    stage = "VALUE_CONVERTER" if rule_id in _CONVERTER_RULES else "TRANSFORMATION"
    return [
        *original,
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_CLASS, f"stampline.RuleViolation[{rule_id}]".encode()),
        (H_MESSAGE, reason.encode()),
        (H_STAGE, stage.encode()),
        (H_CONNECTOR, collector.encode()),
        (H_RULE_ID, rule_id.encode()),
        (H_RULE_VERSION, str(rule_version).encode()),
        (H_REASON, reason.encode()),
    ]
