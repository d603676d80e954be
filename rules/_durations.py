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
