"""Clock-error bounds: configured, or read from chrony where it runs.

chrony's own bound on the system clock's error is |offset| + root dispersion + root delay / 2
(the "maximum error" of chrony's documentation), all read from ``chronyc tracking``.

Every trail row records where its bound came from as ``ClockBound.label()``:

- ``configured``: the deployment's configured value, as asked;
- ``chrony offset_ns=N root_dispersion_ns=N root_delay_ns=N``: read from chrony, with the
  three terms it was computed from at that time; ``chrony`` alone where only the kind is
  known (a stage stamp's ``src=chrony``: the stamp does not carry the terms);
- ``fallback: <reason>``: chrony was asked for but could not be used, so the configured
  value stands in (a bound nobody measured: the evidence report flags it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

ClockSource = Literal["configured", "chrony"]
BoundKind = Literal["configured", "chrony", "fallback", "unknown"]

_FIELD = re.compile(r"^\s*(System time|Root delay|Root dispersion|Leap status)\s*:\s*(.+?)\s*$")
_CHRONY_LABEL = re.compile(
    r"^chrony offset_ns=(-?\d+) root_dispersion_ns=(\d+) root_delay_ns=(\d+)$"
)


@dataclass(frozen=True, slots=True)
class ClockBound:
    """A host's clock-error bound and where it came from."""

    bound_ns: int
    kind: BoundKind
    reason: str = ""  # why a fallback happened
    offset_ns: int | None = None  # chrony's terms, when read from chrony
    root_dispersion_ns: int | None = None
    root_delay_ns: int | None = None

    def label(self) -> str:
        """The text a trail row's ``clock_source`` holds (see the module docstring)."""
        if self.kind == "chrony":
            if self.offset_ns is None:
                return "chrony"  # the kind without its terms (read from a stage stamp)
            return (
                f"chrony offset_ns={self.offset_ns} root_dispersion_ns={self.root_dispersion_ns}"
                f" root_delay_ns={self.root_delay_ns}"
            )
        if self.kind == "fallback":
            return f"fallback: {self.reason}"
        return "configured" if self.kind == "configured" else ""

    @classmethod
    def from_label(cls, label: str, bound_ns: int) -> ClockBound:
        """Read back a ``clock_source`` value; anything unrecognised is kind ``unknown``."""
        if label == "configured":
            return cls(bound_ns, "configured")
        if label == "chrony":
            return cls(bound_ns, "chrony")
        if label.startswith("fallback: "):
            return cls(bound_ns, "fallback", reason=label[len("fallback: ") :])
        m = _CHRONY_LABEL.match(label)
        if m:
            return cls(bound_ns, "chrony", "", int(m[1]), int(m[2]), int(m[3]))
        return cls(bound_ns, "unknown", reason=label)


def _tracking_fields(text: str) -> dict[str, str]:
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
    return fields


def _seconds(fields: dict[str, str], name: str) -> Fraction:
    words = fields[name].split()
    try:
        value = Fraction(words[0])
    except (ValueError, IndexError):
        raise ValueError(f"chronyc tracking: {name} {fields[name]!r} is not a number") from None
    # "System time : 0.000001234 seconds slow of NTP time": slow means the clock is behind.
    return -value if len(words) > 2 and words[2] == "slow" else value


def parse_chrony_bound(text: str) -> ClockBound:
    """The clock-error bound from ``chronyc tracking`` output, with the terms it came from.

    Raises:
        ValueError: the text lacks a field, or chrony says the clock is not synchronised.
    """
    fields = _tracking_fields(text)
    offset = _seconds(fields, "System time")
    dispersion = abs(_seconds(fields, "Root dispersion"))
    delay = abs(_seconds(fields, "Root delay"))
    bound = abs(offset) + dispersion + delay / 2
    ns = 1_000_000_000
    return ClockBound(
        int(bound * ns), "chrony", "", int(offset * ns), int(dispersion * ns), int(delay * ns)
    )


def parse_chronyc_tracking(text: str) -> int:
    """The clock-error bound in nanoseconds from ``chronyc tracking`` output.

    Raises:
        ValueError: the text lacks a field, or chrony says the clock is not synchronised.
    """
    return parse_chrony_bound(text).bound_ns


def read_clock_bound(
    source: ClockSource, configured_ns: int, chronyc: str | None = None
) -> ClockBound:
    """This host's clock-error bound and where it came from.

    With source "chrony", ``chronyc tracking`` is asked; when the binary is missing or its
    answer is unusable the configured value is used as a ``fallback`` naming the reason.
    """
    if source == "configured":
        return ClockBound(configured_ns, "configured")
    binary = chronyc or shutil.which("chronyc")
    if binary is None:
        return ClockBound(configured_ns, "fallback", reason="chronyc not found")
    try:
        done = subprocess.run(
            [binary, "tracking"], capture_output=True, text=True, timeout=5, check=True
        )
        return parse_chrony_bound(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return ClockBound(configured_ns, "fallback", reason=f"chrony unusable: {exc}")


def clock_error_bound(
    source: ClockSource, configured_ns: int, chronyc: str | None = None
) -> tuple[int, str]:
    """This host's clock-error bound and where it came from, as (bound, label)."""
    b = read_clock_bound(source, configured_ns, chronyc)
    return b.bound_ns, b.label()
