"""Alert definitions: one YAML file holding the expected-provider registry, the venue
calendars and the alerts. Renderer-neutral: the same objects feed the in-stream detectors,
the exported Prometheus and Alertmanager files and (elsewhere) Grafana-managed rules.

Every duration is stored in nanoseconds (``*_ns``); the YAML spells it ``5s``, ``250ms``...
"""

from __future__ import annotations

import operator
import re
from datetime import datetime
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from stampline._common import (
    YamlFileError,
    file_line,
    line_of,
    parse_yaml,
    read_yaml_file,
    shown_value,
)
from stampline.alerting._kinds import KINDS
from stampline.alerting._kinds._kind import (
    NAME_PATTERN,
    Alert,
    Model,
    dur,
)
from stampline.alerting.exceptions import DefinitionError

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"\A([01]\d|2[0-3]):([0-5]\d)\Z")


class Window(Model):
    """A weekly window in a calendar's time zone: these days, from ``start`` to ``end``
    (``end`` before ``start`` runs past midnight into the next day)."""

    days: tuple[str, ...] = Field(default=_DAYS[:5], min_length=1)
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if d.lower() not in _DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {', '.join(bad)}; use {', '.join(_DAYS)}")
        return tuple(d.lower() for d in v)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if v != "24:00" and not _HHMM.match(v):
            raise ValueError(f"{v!r} is not a time of day HH:MM")
        return v

    def minutes(self) -> tuple[int, int]:
        def m(text: str) -> int:
            h, mm = text.split(":")
            return int(h) * 60 + int(mm)

        return m(self.start), m(self.end)


class ScheduledEvent(Model):
    """A dated window (a central-bank announcement): alerts inside it are downgraded."""

    name: str = Field(min_length=1)
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-11-05T12:00:00Z)")
        return v

    @model_validator(mode="after")
    def _order(self) -> ScheduledEvent:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Calendar(Model):
    """A venue's trading sessions, scheduled events and quiet periods."""

    timezone: str = "UTC"
    sessions: tuple[Window, ...] = Field(default=(Window(),), min_length=1)
    events: tuple[ScheduledEvent, ...] = ()
    quiet: tuple[Window, ...] = Field(
        default=(), description="periods where an alert is unusual: escalated one level"
    )
    ical: Path | None = Field(default=None, description="an iCalendar file of extra events")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            why = f"unknown time zone {v!r} (use an IANA name, e.g. Europe/London)"
            raise ValueError(why) from None
        return v


class ExpectedProvider(Model):
    """A provider that must keep publishing: silence past ``max_gap`` (inside its venue's
    session) is an alert, including a provider that never showed up."""

    provider: str = Field(pattern=NAME_PATTERN)
    venue: str = Field(default="", pattern=r"^[A-Za-z0-9_.:-]{0,64}$")
    max_gap_ns: int = Field(alias="max_gap")
    calendar: str | None = None

    @field_validator("max_gap_ns", mode="before")
    @classmethod
    def _gap(cls, v: Any) -> int:
        ns = dur(v)
        if ns <= 0:
            raise ValueError("max_gap must be more than 0")
        return ns


# The union of the registered kinds' models, told apart by ``kind``. Type checkers see the
# common base (narrow it with isinstance); pydantic sees the discriminated union.
if TYPE_CHECKING:
    AlertDefinition: TypeAlias = Alert
else:
    AlertDefinition = Annotated[
        reduce(operator.or_, (k.model for k in KINDS.values())), Field(discriminator="kind")
    ]


class Dismissals(Model):
    """How "dismiss and learn" downgrades a pattern dismissed as expected."""

    downgrade_after: int = Field(default=3, ge=1)
    volatile_rate_ratio: float = Field(
        default=2.0, gt=1, description="update rate vs its baseline that counts as volatile"
    )


class AlertsFile(Model):
    """A YAML file of alert definitions."""

    version: Literal[1]
    providers: tuple[ExpectedProvider, ...] = ()
    calendars: dict[str, Calendar] = Field(default_factory=dict)
    dismissals: Dismissals = Dismissals()
    alerts: tuple[AlertDefinition, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> AlertsFile:
        ids = [a.id for a in self.alerts]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate alert id(s) {', '.join(dupes)}")
        names = [p.provider for p in self.providers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"provider(s) registered twice: {', '.join(twice)}")
        for p in self.providers:
            if p.calendar is not None and p.calendar not in self.calendars:
                known = ", ".join(sorted(self.calendars)) or "none defined"
                raise ValueError(f"provider {p.provider!r} names calendar {p.calendar!r} ({known})")
        return self

    def alert(self, alert_id: str) -> AlertDefinition:
        for a in self.alerts:
            if a.id == alert_id:
                return a
        raise KeyError(alert_id)

    def provider(self, name: str) -> ExpectedProvider | None:
        return next((p for p in self.providers if p.provider == name), None)


def load_alerts(path: Path | str) -> AlertsFile:
    """Parse and validate an alert definitions file; relative iCalendar paths resolve
    against its folder.

    Raises:
        DefinitionError: unreadable, not YAML, or invalid; each problem names
            ``file:line: key: message (got value)``.
    """
    path = Path(path)
    try:
        doc = read_yaml_file(path)
    except YamlFileError as exc:
        raise DefinitionError(path, [str(exc)]) from None
    return _validate(doc.data, doc.node, path)


def parse_alerts(text: str, path: Path | str = "<alerts>") -> AlertsFile:
    """Validate the text of an alert definitions file (see :func:`load_alerts`).

    Raises:
        DefinitionError: not YAML, or invalid.
    """
    try:
        raw, node = parse_yaml(text, path)
    except YamlFileError as exc:
        raise DefinitionError(path, [str(exc)]) from None
    return _validate(raw, node, path)


def _validate(raw: Any, node: yaml.Node | None, path: Path | str) -> AlertsFile:
    if not isinstance(raw, dict):
        got = type(raw).__name__
        raise DefinitionError(path, [f"{path}: the file must hold a mapping (got {got})"])
    try:
        parsed = AlertsFile.model_validate(raw)
    except ValidationError as exc:
        raise DefinitionError(path, [_problem(path, node, e) for e in exc.errors()]) from None
    base = Path(path).parent
    calendars = {
        name: c.model_copy(update={"ical": base / c.ical})
        if c.ical is not None and not c.ical.is_absolute()
        else c
        for name, c in parsed.calendars.items()
    }
    return parsed.model_copy(update={"calendars": calendars})


def _problem(path: Path | str, node: yaml.Node | None, error: Any) -> str:
    # pydantic names discriminator tags and validator kinds in the path; people think in keys.
    loc = tuple(
        p
        for p in error["loc"]
        if not (isinstance(p, str) and (p.startswith(("function-", "tagged-")) or p in KINDS))
    )
    key = ".".join(str(p) for p in loc) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] == "union_tag_invalid":  # pydantic's own text repeats the whole tag
        ctx = error["ctx"]
        message = f"unknown kind {shown_value(ctx['tag'])} (expected one of {ctx['expected_tags']})"
    got = "" if error["type"] == "missing" else f" (got {shown_value(error.get('input'))})"
    if isinstance(error.get("input"), dict) and error["type"] not in {"dict_type", "model_type"}:
        got = ""
    return f"{file_line(path, line_of(node, loc))}: {key}: {message}{got}"
