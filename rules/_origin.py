"""Reading the origin time a provider put in its payload."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Literal

OriginUnit = Literal["s", "ms", "us", "ns", "iso8601"]

_FACTOR = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# datetime keeps six fractional digits; the rest are read by hand to keep nanoseconds.
_ISO_FRACTION = re.compile(r"\.(\d+)")


def origin_ns(value: object, unit: OriginUnit) -> int:
    """Nanoseconds since the epoch for an origin value in ``unit``.

    Raises:
        ValueError: the value is missing, of the wrong type, or not finite.
    """
    if unit == "iso8601":
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not an ISO-8601 string")
        return _iso_ns(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number of {unit}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not finite")
        return round(value * _FACTOR[unit])
    return value * _FACTOR[unit]


def _iso_ns(text: str) -> int:
    fraction = 0
    m = _ISO_FRACTION.search(text)
    if m:
        digits = m.group(1)
        fraction = int(digits[:9].ljust(9, "0"))
        text = text[: m.start()] + text[m.end() :]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; origin times must say which")
    return int(dt.timestamp()) * 1_000_000_000 + fraction
