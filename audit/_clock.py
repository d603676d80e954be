"""Clock-error bounds: configured, or read from chrony where it runs.

chrony's own bound on the system clock's error is |offset| + root dispersion + root delay / 2
(the "maximum error" of chrony's documentation), all read from ``chronyc tracking``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from fractions import Fraction
from typing import Literal

ClockSource = Literal["configured", "chrony"]

_FIELD = re.compile(r"^\s*(System time|Root delay|Root dispersion|Leap status)\s*:\s*(.+?)\s*$")


def parse_chronyc_tracking(text: str) -> int:
    """The clock-error bound in nanoseconds from ``chronyc tracking`` output.

    Raises:
        ValueError: the text lacks a field, or chrony says the clock is not synchronised.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = _FIELD.match(line)
        if m:
            fields[m.group(1)] = m.group(2)
    missing = {"System time", "Root delay", "Root dispersion"} - fields.keys()
    if missing:
        raise ValueError(f"chronyc tracking output lacks {', '.join(sorted(missing))}")
    if fields.get("Leap status", "Normal").lower().startswith("not synchron"):
        raise ValueError("chrony reports the clock is not synchronised")

    def seconds(name: str) -> Fraction:
        number = fields[name].split()[0]
        try:
            return abs(Fraction(number))
        except ValueError:
            raise ValueError(f"chronyc tracking: {name} {fields[name]!r} is not a number") from None

    bound = seconds("System time") + seconds("Root dispersion") + seconds("Root delay") / 2
    return int(bound * 1_000_000_000)


def clock_error_bound(
    source: ClockSource, configured_ns: int, chronyc: str | None = None
) -> tuple[int, str]:
    """This host's clock-error bound and where it came from ("configured" or "chrony").

    With source "chrony", ``chronyc tracking`` is asked; when the binary is missing or its
    answer is unusable the configured value is used, and the second item says why.
    """
    if source == "configured":
        return configured_ns, "configured"
    binary = chronyc or shutil.which("chronyc")
    if binary is None:
        return configured_ns, "configured (chronyc not found)"
    try:
        done = subprocess.run(
            [binary, "tracking"], capture_output=True, text=True, timeout=5, check=True
        )
        return parse_chronyc_tracking(done.stdout), "chrony"
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return configured_ns, f"configured (chrony unusable: {exc})"
