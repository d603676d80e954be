"""Human durations, as people write them in configuration, rule and alert files (``250ms``,
``5m``, ``1h30m``, or a number of seconds), and as stampline writes them back: short for a
person (:func:`format_duration`), or in Prometheus' syntax (:func:`prometheus_duration`).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

SECOND_NS = 1_000_000_000
"""Nanoseconds in a second: every duration is held in whole nanoseconds."""

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": SECOND_NS,
    "m": 60 * SECOND_NS,
    "h": 3_600 * SECOND_NS,
    "d": 86_400 * SECOND_NS,
}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_HINT = "(use e.g. 250ms, 5m, 1h)"


def parse_duration_ns(value: object) -> int:
    """Nanoseconds in ``value``: a text with units (``1h30m``, ``250ms``), or a number of
    seconds (an ``int``, a ``float``, or a text such as ``"5"``, as environment values come).

    Raises:
        ValueError: ``value`` is negative, empty, not finite, or not a duration; the message
            quotes it.
    """
    if isinstance(value, bool):  # YAML's yes/no: a bool is an int to Python, not a duration
        raise ValueError(f"{value!r} is not a duration {_HINT}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"duration {value!r} is not finite")
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        return int(Fraction(value) * SECOND_NS)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration {_HINT}")
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
        raise ValueError(f"{value!r} is not a duration {_HINT}")
    return total


def format_duration(ns: int) -> str:
    """A short human duration: ``850µs``, ``12.3ms``, ``4.2s``, ``3m20s``, ``2h05m``, ``3d4h``."""
    a = abs(ns)
    sign = "-" if ns < 0 else ""
    # Compare after rounding, so 999.9996µs reads "1.0ms", never "1000µs".
    if round(a / 1_000) < 1_000:
        return f"{sign}{a / 1_000:.0f}µs"
    if round(a / 1_000_000, 1) < 1_000:
        return f"{sign}{a / 1_000_000:.1f}ms"
    s = a / SECOND_NS
    if round(s, 1) < 60:
        return f"{sign}{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{sign}{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{sign}{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{sign}{d}d{h}h"


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
