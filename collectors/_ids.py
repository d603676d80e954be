"""Event ids: UUIDs, deterministic where a retry must find the same id again."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Sequence

import orjson


def source_event_id(topic: str, partition: int, offset: int, timestamp_ms: int) -> str:
    """The id the gate gives an unstamped record: a UUIDv8 hashed from where it was read.

    Deterministic, so a record re-read after a crash gets the same id and the trail
    replaces its row instead of adding a second one. The broker timestamp keeps ids apart
    when a topic is deleted and re-created and offsets start again.
    """
    digest = bytearray(
        hashlib.blake2b(
            f"{topic}\x00{partition}\x00{offset}\x00{timestamp_ms}".encode(), digest_size=16
        ).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom (RFC 9562)
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))


def new_event_id() -> str:
    """A fresh, time-ordered id (UUIDv7, RFC 9562) for an event born in a stage."""
    ms = time.time_ns() // 1_000_000
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def trace_id_of(event_id: str) -> str:
    """The W3C trace id for an event: its UUID's 32 hex digits, so traces and trail join."""
    return event_id.replace("-", "")


def key_event_id(values: Sequence[object]) -> str:
    """The id a tap gives an event no producer stamped: a UUIDv8 hashed from the values of
    the configured key fields (say provider, instrument and sequence), so taps on different
    topics derive the same id for the same event without a header to carry it.
    """
    digest = bytearray(
        hashlib.blake2b(
            orjson.dumps(list(values)), digest_size=16, person=b"stampline-key"
        ).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))
