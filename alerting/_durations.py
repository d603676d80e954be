"""Durations in alert definitions (``250ms``, ``5m``, ``1h30m`` or a number of seconds), and
their Prometheus spelling for exported rules.

The parser is deliberately the same as ``rules``' ``parse_duration_ns``, and kept here as a
copy: ``alerting`` may import only ``audit``, and ``rules`` and ``audit`` import nothing of
ours, so no package both may import exists to hold one parser (moving it into ``audit``
would make ``rules`` break the import direction). ``tests/alerting/test_durations.py`` pins
the two to the same answers so they cannot drift apart.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
SECOND_NS = 1_000_000_000


def duration_ns(value: object) -> int:
    """Nanoseconds in ``value``.

    Raises:
        ValueError: ``value`` is negative, empty, not finite, or not a duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. 250ms, 5m, 1h)")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"duration {value!r} is not finite")
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        return int(Fraction(value) * SECOND_NS)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration (use e.g. 250ms, 5m, 1h)")
    text = value.strip().replace(" ", "")
    if _NUMBER.fullmatch(text):
        return int(Fraction(text) * SECOND_NS)
    pos, total = 0, 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += int(Fraction(m.group(1)) * _UNITS_NS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration (use e.g. 250ms, 5m, 1h)")
    return total


def prometheus_duration(ns: int) -> str:
    """``ns`` in Prometheus' duration syntax (whole milliseconds at least: ``1m30s``, ``250ms``)."""
    ms = max(0, round(ns / 1_000_000))
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


def seconds(ns: int) -> float:
    return ns / SECOND_NS
