"""Event ids: UUIDs, time-ordered, and deterministic where a retry must find the same id again.

Both kinds of id start with a millisecond Unix time in their first 48 bits (the UUIDv7
layout, RFC 9562), so ids sort by time: the store, which orders its trail by event id, keeps
an event's neighbours in time together, and its time columns and ids compress well.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Sequence

import numpy as np
import orjson

_MS_MASK = (1 << 48) - 1

_Bytes = np.ndarray[tuple[int, int], np.dtype[np.uint8]]  # one row of bytes per record


def source_event_id(topic: str, partition: int, offset: int, timestamp_ms: int) -> str:
    """The id the gate gives an unstamped record: a time-ordered UUIDv8 of where it was read.

    Layout (RFC 9562 version 8, custom): the broker timestamp in milliseconds in the first
    48 bits, as UUIDv7 has it, so ids sort by broker time; the remaining 74 bits from a
    BLAKE2b hash of (topic, partition, offset, timestamp). Deterministic, so a record re-read
    after a crash gets the same id and the trail replaces its row instead of adding a second
    one. The broker timestamp keeps ids apart when a topic is deleted and re-created and
    offsets start again. A record without a timestamp (Kafka gives -1) gets time 0.
    """
    digest = hashlib.blake2b(
        f"{topic}\x00{partition}\x00{offset}\x00{timestamp_ms}".encode(), digest_size=10
    ).digest()
    raw = bytearray((max(timestamp_ms, 0) & _MS_MASK).to_bytes(6, "big") + digest)
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom (RFC 9562)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


def source_event_ids(
    topics: Sequence[str],
    partitions: Sequence[int],
    offsets: Sequence[int],
    timestamps_ms: Sequence[int],
) -> tuple[list[str], _Bytes]:
    """``source_event_id`` for a batch, plus the ids' 16 bytes each (one row per record).

    The same ids, made with one hash call per record and the rest over the whole batch:
    the layout bits and the hex text are set column-wise instead of through ``uuid.UUID``.
    """
    n = len(offsets)
    blake = hashlib.blake2b
    digests = b"".join(
        [
            blake(f"{t}\x00{p}\x00{o}\x00{ts}".encode(), digest_size=10).digest()
            for t, p, o, ts in zip(topics, partitions, offsets, timestamps_ms, strict=True)
        ]
    )
    raw = np.empty((n, 16), np.uint8)
    ms = np.maximum(np.asarray(timestamps_ms, np.int64).reshape(n), 0) & _MS_MASK
    raw[:, :6] = ms.astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
    raw[:, 6:] = np.frombuffer(digests, np.uint8).reshape(n, 10)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x80  # version 8: custom (RFC 9562)
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return uuid_strings(raw), raw


def traced_source_ids(
    topics: Sequence[str],
    partitions: Sequence[int],
    offsets: Sequence[int],
    timestamps_ms: Sequence[int],
    spans: _Bytes,
) -> tuple[list[str], bytes]:
    """``source_event_ids`` and each record's W3C traceparent, made for the batch at once:
    "00-<32 hex digits of the id>-<16 hex digits of its span>-01", 55 bytes a record, one
    row of 8 bytes of ``spans`` each. The reference for the gate's ``_native.event_ids``."""
    ids, id_bytes = source_event_ids(topics, partitions, offsets, timestamps_ms)
    trace = np.empty((len(ids), 55), np.uint8)
    trace[:, :3] = np.frombuffer(b"00-", np.uint8)
    trace[:, 3:35] = hex_digits(id_bytes)
    trace[:, 35] = ord("-")
    trace[:, 36:52] = hex_digits(spans)
    trace[:, 52:] = np.frombuffer(b"-01", np.uint8)
    return ids, trace.tobytes()


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
# Where each of a UUID's 32 hex digits goes in its 36-character text form.
_UUID_POS = np.array([i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20) for i in range(32)])


def hex_digits(
    raw: _Bytes,
) -> _Bytes:
    """Each row's bytes as lowercase ASCII hex digits, two per byte."""
    out = np.empty((raw.shape[0], raw.shape[1] * 2), np.uint8)
    out[:, 0::2] = _HEX_DIGITS[raw >> 4]
    out[:, 1::2] = _HEX_DIGITS[raw & 0x0F]
    return out


def uuid_strings(raw: _Bytes) -> list[str]:
    """Rows of 16 bytes as UUID text, exactly as ``str(uuid.UUID(bytes=row))`` writes it."""
    n = raw.shape[0]
    text = np.full((n, 36), ord("-"), np.uint8)
    text[:, _UUID_POS] = hex_digits(raw)
    joined = text.tobytes().decode("ascii")
    return [joined[i : i + 36] for i in range(0, 36 * n, 36)]


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
