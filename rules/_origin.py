"""Reading the origin time a provider put in its payload."""

from __future__ import annotations

import math
import re
from datetime import datetime
from fractions import Fraction
from typing import Literal

OriginUnit = Literal["s", "ms", "us", "ns", "iso8601"]

_FACTOR = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# Origins are stored as DateTime64(9): signed 64-bit nanoseconds since 1970.
MAX_ORIGIN_NS = 2**63
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
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not finite")
    if isinstance(value, int):  # exact already, and the common case: keep it cheap
        return _storable(value * _FACTOR[unit], value, unit)
    # Exact arithmetic: a float product would land tens of ns off a representable origin.
    return _storable(round(Fraction(value) * _FACTOR[unit]), value, unit)


def _storable(ns: int, value: object, unit: str = "") -> int:
    if not 0 <= ns < MAX_ORIGIN_NS:
        # Formatted only here: this runs for every record, the message almost never.
        what = f"{value!r} {unit}" if unit else repr(value)
        raise ValueError(f"{what} is outside the range the trail can store (1970 to 2262)")
    return ns


def _iso_ns(original: str) -> int:
    text = original
    fraction = 0
    m = _ISO_FRACTION.search(text)
    if m:
        digits = m.group(1)
        fraction = int(digits[:9].ljust(9, "0"))
        text = text[: m.start()] + text[m.end() :]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{original!r} is not an ISO-8601 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{original!r} has no time zone; origin times must say which")
    return _storable(int(dt.timestamp()) * 1_000_000_000 + fraction, original)
