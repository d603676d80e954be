"""Human durations in rule files: ``250ms``, ``5m``, ``1h30m``, or a number of seconds."""

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
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


def parse_duration_ns(value: object) -> int:
    """Nanoseconds in ``value``.

    Raises:
        ValueError: ``value`` is negative, empty, or not a duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float | Fraction):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"duration {value!r} is not finite")
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        return int(Fraction(value) * 1_000_000_000)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration (use e.g. 250ms, 5m, 1h)")
    text = value.strip().replace(" ", "")
    if _NUMBER.fullmatch(text):  # a bare number is seconds, as in YAML (environment values)
        return parse_duration_ns(Fraction(text))
    pos, total = 0, 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += int(Fraction(m.group(1)) * _UNITS_NS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration (use e.g. 250ms, 5m, 1h)")
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
    s = a / 1_000_000_000
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
