"""Calendar semantics: is a venue in session, inside a scheduled event, in a quiet period;
and the severity an alert is delivered with.

Evaluation order (documented in docs/alerting.md, tested):

1. ``provider_silent`` outside every session of the provider's venue: the condition is
   false (a closed market is not a silent provider). Nothing below applies.
2. Dismiss and learn: a pattern dismissed as ``expected`` ``downgrade_after`` times is
   downgraded one level...
3. ...unless the market is volatile (update rate ≥ ``volatile_rate_ratio`` × baseline),
   which restores the defined severity.
4. Inside a scheduled event window (a central-bank announcement): one level down.
5. Inside a quiet period: one level up.

Levels are info < warning < critical and never leave that range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from stampline.alerting._definitions import Calendar, ScheduledEvent, Window
from stampline.alerting._kinds._kind import SEVERITIES
from stampline.alerting.exceptions import DefinitionError

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _local(calendar: Calendar, at_ns: int) -> datetime:
    return datetime.fromtimestamp(at_ns / 1e9, UTC).astimezone(ZoneInfo(calendar.timezone))


def _in_window(window: Window, local: datetime) -> bool:
    start, end = window.minutes()
    minute = local.hour * 60 + local.minute
    day = _DAYS[local.weekday()]
    if start <= end:
        return day in window.days and start <= minute < end
    # Past midnight: the evening part belongs to the listed day, the morning to the next.
    yesterday = _DAYS[(local.weekday() - 1) % 7]
    return (day in window.days and minute >= start) or (yesterday in window.days and minute < end)


def in_session(calendar: Calendar, at_ns: int) -> bool:
    """Whether the venue trades at ``at_ns`` (UTC nanoseconds)."""
    local = _local(calendar, at_ns)
    return any(_in_window(w, local) for w in calendar.sessions)


def in_quiet(calendar: Calendar, at_ns: int) -> bool:
    local = _local(calendar, at_ns)
    return any(_in_window(w, local) for w in calendar.quiet)


def event_at(
    calendar: Calendar, at_ns: int, extra: tuple[ScheduledEvent, ...] = ()
) -> ScheduledEvent | None:
    """The scheduled event (from the YAML or the iCalendar file) covering ``at_ns``, if any."""
    at = datetime.fromtimestamp(at_ns / 1e9, UTC)
    for event in (*calendar.events, *extra):
        if event.start <= at < event.end:
            return event
    return None


def shift(severity: str, levels: int) -> str:
    """``severity`` moved ``levels`` up (positive) or down, clamped to info..critical."""
    i = SEVERITIES.index(severity) + levels
    return SEVERITIES[max(0, min(len(SEVERITIES) - 1, i))]


@dataclass(frozen=True, slots=True)
class SeverityDecision:
    severity: str
    why: tuple[str, ...]  # the steps that changed it, in order


def decide_severity(
    defined: str,
    *,
    calendar: Calendar | None,
    at_ns: int,
    dismissed_expected: int = 0,
    downgrade_after: int = 3,
    volatile: bool = False,
    extra_events: tuple[ScheduledEvent, ...] = (),
) -> SeverityDecision:
    """Steps 2-5 of the evaluation order in the module docstring."""
    severity, why = defined, []
    if dismissed_expected >= downgrade_after:
        if volatile:
            why.append("volatile market: dismissal downgrade not applied")
        else:
            severity = shift(severity, -1)
            why.append(f"dismissed as expected {dismissed_expected} times")
    if calendar is not None:
        event = event_at(calendar, at_ns, extra_events)
        if event is not None:
            severity = shift(severity, -1)
            why.append(f"during scheduled event {event.name}")
        elif in_quiet(calendar, at_ns):
            severity = shift(severity, +1)
            why.append("in a quiet period")
    return SeverityDecision(severity, tuple(why))


_ICS_LINE = re.compile(r"^([A-Z-]+)(;[^:]*)?:(.*)$")


def read_ical(path: Path) -> tuple[ScheduledEvent, ...]:
    """The VEVENTs of an iCalendar file as scheduled events (DTSTART, DTEND or DURATION-less
    one-hour default, SUMMARY). Times without ``Z`` or TZID are read as UTC.

    Raises:
        DefinitionError: the file is unreadable or an event has no usable DTSTART.
    """
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        problem = f"{path}: cannot read iCalendar file: {exc.strerror}"
        raise DefinitionError(path, [problem]) from None
    # Unfold continuation lines (RFC 5545 3.1).
    lines = re.sub(r"\r?\n[ \t]", "", text).splitlines()
    events: list[ScheduledEvent] = []
    current: dict[str, tuple[str, str]] | None = None
    for number, line in enumerate(lines, 1):
        if line == "BEGIN:VEVENT":
            current = {"_line": (str(number), "")}
        elif line == "END:VEVENT" and current is not None:
            events.append(_event(path, current))
            current = None
        elif current is not None:
            m = _ICS_LINE.match(line)
            if m:
                current[m.group(1)] = (m.group(2) or "", m.group(3))
    return tuple(events)


def _event(path: Path, props: dict[str, tuple[str, str]]) -> ScheduledEvent:
    line = props["_line"][0]
    try:
        start = _ics_time(*props["DTSTART"])
        end = _ics_time(*props["DTEND"]) if "DTEND" in props else start + timedelta(hours=1)
        name = props.get("SUMMARY", ("", ""))[1] or "event"
        return ScheduledEvent(name=name, start=start, end=end)
    except (KeyError, ValueError) as exc:
        raise DefinitionError(
            path, [f"{path}:{line}: VEVENT: no usable DTSTART/DTEND ({exc})"]
        ) from None


def _ics_time(params: str, value: str) -> datetime:
    tz = UTC
    m = re.search(r"TZID=([^;:]+)", params)
    if m:
        tz = ZoneInfo(m.group(1))  # type: ignore[assignment]
    if len(value) == 8:  # a whole day
        return datetime.strptime(value, "%Y%m%d").replace(tzinfo=tz)
    parsed = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
    return parsed.replace(tzinfo=UTC if value.endswith("Z") else tz)
