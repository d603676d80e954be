"""Dead-letter headers, in Kafka Connect's ``__connect.errors.*`` convention.

Connect's names let existing DLQ tooling read stampline's dead letters; the
``stampline.*`` names add what Connect has no slot for (rule version). The record's
original key, value and headers are kept as they came, these are appended after them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from stampline.collectors._stamps import Headers

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
# On a dead letter too large for its topic: what was cut, and how to recognise the original.
H_TRUNCATED = "stampline.truncated"  # comma-separated: value, headers, key
H_ORIGINAL_SIZE = "stampline.original.value_bytes"
H_ORIGINAL_SHA256 = "stampline.original.value_sha256"
H_ORIGINAL_HEADERS = "stampline.original.headers"  # count=N;bytes=M;sha256=HEX
H_ORIGINAL_KEY = "stampline.original.key"  # bytes=M;sha256=HEX

MAX_REASON = 1000  # characters of a reason in headers: reasons may quote hostile values

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
    reason = reason[:MAX_REASON]
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


def fit_dead_letter(
    key: bytes | None,
    value: bytes | None,
    original: Headers,
    added: Headers,
    limit: int,
    size_of: Callable[[bytes | None, bytes | None, Headers], int],
) -> tuple[bytes | None, bytes | None, Headers]:
    """A dead letter that fits in ``limit`` bytes: whole when it fits, else cut down in this
    order — the value, then the original headers, then the key — each cut part replaced by
    headers naming its size and SHA-256. ``added`` (where it came from, why it failed) is
    always kept whole: the original stays at the source offset those headers name.
    """
    headers = [*original, *added]
    if size_of(key, value, headers) <= limit:
        return key, value, headers
    cut: list[str] = ["value"]
    body = value or b""
    notes: Headers = [
        (H_ORIGINAL_SIZE, str(len(body)).encode()),
        (H_ORIGINAL_SHA256, hashlib.sha256(body).hexdigest().encode()),
    ]
    kept: Headers = list(original)
    for step in ("headers", "key"):
        worst = (H_TRUNCATED, b"value,headers,key")
        room = limit - size_of(key, b"", [*kept, *added, *notes, worst])
        if room >= 0:
            break
        if step == "headers" and kept:
            blob = b"".join(k.encode() + b"\0" + (v or b"") + b"\0" for k, v in kept)
            notes.append(
                (
                    H_ORIGINAL_HEADERS,
                    f"count={len(kept)};bytes={len(blob)};sha256={hashlib.sha256(blob).hexdigest()}".encode(),
                )
            )
            kept = []
            cut.append("headers")
        elif step == "key" and key:
            notes.append(
                (
                    H_ORIGINAL_KEY,
                    f"bytes={len(key)};sha256={hashlib.sha256(key).hexdigest()}".encode(),
                )
            )
            key = None
            cut.append("key")
    notes.append((H_TRUNCATED, ",".join(cut).encode()))
    room = limit - size_of(key, b"", [*kept, *added, *notes])
    return key, body[: max(0, room)], [*kept, *added, *notes]
