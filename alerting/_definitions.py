"""Alert definitions: one YAML file holding the expected-provider registry, the venue
calendars and the alerts. Renderer-neutral: the same objects feed the in-stream detectors,
the exported Prometheus and Alertmanager files and (elsewhere) Grafana-managed rules.

Every duration is stored in nanoseconds (``*_ns``); the YAML spells it ``5s``, ``250ms``...
"""

from __future__ import annotations

import re
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stampline._common import (
    YamlFileError,
    file_line,
    line_of,
    parse_duration_ns,
    parse_yaml,
    read_yaml_file,
)
from stampline.alerting.exceptions import DefinitionError

ALERT_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]
Kind = Literal[
    "provider_silent",
    "sequence_gap",
    "stale",
    "divergence",
    "latency_slo",
    "dlq_rate",
    "completeness",
    "clock_error",
    "trail_lag",
    "collector_down",
]
# MiFID II RTS 25 (Delegated Regulation (EU) 2017/574): the maximum divergence from UTC.
RTS25_TIERS_NS = {"hft": 100_000, "other": 1_000_000, "voice": 1_000_000_000}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _dur(v: Any) -> int:
    return parse_duration_ns(v)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(_Model):
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


class ScheduledEvent(_Model):
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


class Calendar(_Model):
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


class ExpectedProvider(_Model):
    """A provider that must keep publishing: silence past ``max_gap`` (inside its venue's
    session) is an alert, including a provider that never showed up."""

    provider: str = Field(pattern=NAME_PATTERN)
    venue: str = Field(default="", pattern=r"^[A-Za-z0-9_.:-]{0,64}$")
    max_gap_ns: int = Field(alias="max_gap")
    calendar: str | None = None

    @field_validator("max_gap_ns", mode="before")
    @classmethod
    def _gap(cls, v: Any) -> int:
        ns = _dur(v)
        if ns <= 0:
            raise ValueError("max_gap must be more than 0")
        return ns


class Scope(_Model):
    """Which subjects an alert watches (shell patterns, empty = all) and which labels it
    carries. ``instrument: true`` makes the instrument a label (opt-in: cardinality)."""

    providers: tuple[str, ...] = ()
    venues: tuple[str, ...] = ()
    stage: str | None = None
    instrument: bool = False

    def matches(self, provider: str, venue: str = "") -> bool:
        return (not self.providers or any(fnmatchcase(provider, p) for p in self.providers)) and (
            not self.venues or any(fnmatchcase(venue, p) for p in self.venues)
        )


class _Alert(_Model):
    id: str = Field(pattern=ALERT_ID_PATTERN, description="dotted, lower case")
    severity: Severity = "warning"
    for_ns: int = Field(default=0, alias="for")
    keep_firing_for_ns: int = Field(default=0, alias="keep_firing_for")
    scope: Scope = Scope()
    runbook_url: str = ""
    dashboard_url: str = ""
    summary: str = ""
    description: str = ""

    @field_validator("for_ns", "keep_firing_for_ns", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> int:
        return _dur(v)

    @field_validator("runbook_url", "dashboard_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://\S+$", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class ProviderSilent(_Alert):
    """No event from a registered provider for longer than its ``max_gap`` (or ``threshold``).
    Resolves once events flow again (hysteresis: the gap must fall below ``clear``)."""

    kind: Literal["provider_silent"]
    threshold_ns: int | None = Field(default=None, alias="threshold")
    clear_ns: int | None = Field(default=None, alias="clear")

    @field_validator("threshold_ns", "clear_ns", mode="before")
    @classmethod
    def _opt(cls, v: Any) -> int | None:
        return None if v is None else _dur(v)


class _RuleAlert(_Alert):
    rule: str | None = Field(
        default=None, description="the rule id (shell pattern) whose verdicts raise it"
    )


class SequenceGap(_RuleAlert):
    """A sequence rule saw numbers skipped on a key; figures: first, last and missing."""

    kind: Literal["sequence_gap"]
    min_missing: int = Field(default=1, ge=1)


class Stale(_RuleAlert):
    """A stale rule fails a key's records."""

    kind: Literal["stale"]


class Divergence(_RuleAlert):
    """A divergence rule (already sustained by its own ``sustain``) fails a key's records."""

    kind: Literal["divergence"]


class LatencySlo(_Alert):
    """A stage's hold time at ``quantile`` over ``window`` above ``threshold``."""

    kind: Literal["latency_slo"]
    quantile: float = Field(default=0.99, gt=0, lt=1)
    threshold_ns: int = Field(alias="threshold")
    window_ns: int = Field(default=300_000_000_000, alias="window")

    @field_validator("threshold_ns", "window_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int:
        return _dur(v)


class DlqRate(_Alert):
    """Dead letters as a fraction of a provider's records over ``window``, per rule."""

    kind: Literal["dlq_rate"]
    threshold: float = Field(gt=0, le=1, description="fraction of records, e.g. 0.05")
    clear: float | None = Field(default=None, ge=0, le=1)
    window_ns: int = Field(default=60_000_000_000, alias="window")
    min_events: int = Field(default=20, ge=1)

    @field_validator("window_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int:
        return _dur(v)

    @model_validator(mode="after")
    def _clear_below(self) -> DlqRate:
        if self.clear is not None and self.clear > self.threshold:
            raise ValueError("clear must not exceed threshold (it is the hysteresis floor)")
        return self


class Completeness(_Alert):
    """Events lost between two stages: seen at ``from_stage`` and not at ``to_stage`` within
    ``grace`` (of the ``from_stage`` sighting, in event time); fires while the lost fraction
    of a provider's events over ``window`` is above ``threshold``. Judged by the recorder,
    which sees every stage's trail rows."""

    kind: Literal["completeness"]
    from_stage: str = Field(pattern=NAME_PATTERN)
    to_stage: str = Field(pattern=NAME_PATTERN)
    threshold: float = Field(gt=0, le=1, description="fraction of the events, e.g. 0.001")
    window_ns: int = Field(default=300_000_000_000, alias="window")
    grace_ns: int = Field(default=5_000_000_000, alias="grace")

    @field_validator("window_ns", "grace_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int:
        ns = _dur(v)
        if ns <= 0:
            raise ValueError("must be more than 0")
        return ns

    @model_validator(mode="after")
    def _two_stages(self) -> Completeness:
        if self.from_stage == self.to_stage:
            raise ValueError("from_stage and to_stage must differ")
        return self


class ClockError(_Alert):
    """A host's clock-error bound past the RTS 25 tier's limit (or an explicit threshold)."""

    kind: Literal["clock_error"]
    tier: Literal["hft", "other", "voice"] = "other"
    threshold_ns: int | None = Field(default=None, alias="threshold")

    @field_validator("threshold_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int | None:
        return None if v is None else _dur(v)

    @property
    def limit_ns(self) -> int:
        return self.threshold_ns if self.threshold_ns is not None else RTS25_TIERS_NS[self.tier]


class TrailLag(_Alert):
    """The recorder (or a gate) behind its input by more than ``threshold`` records."""

    kind: Literal["trail_lag"]
    threshold: int = Field(ge=1, description="records behind the partition end")


class CollectorDown(_Alert):
    """A sidecar's metrics endpoint stopped answering Prometheus."""

    kind: Literal["collector_down"]
    job: str = Field(default="stampline", min_length=1)


AlertDefinition = Annotated[
    ProviderSilent
    | SequenceGap
    | Stale
    | Divergence
    | LatencySlo
    | DlqRate
    | Completeness
    | ClockError
    | TrailLag
    | CollectorDown,
    Field(discriminator="kind"),
]


class Dismissals(_Model):
    """How "dismiss and learn" downgrades a pattern dismissed as expected."""

    downgrade_after: int = Field(default=3, ge=1)
    volatile_rate_ratio: float = Field(
        default=2.0, gt=1, description="update rate vs its baseline that counts as volatile"
    )


class AlertsFile(_Model):
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
        if not (isinstance(p, str) and (p.startswith(("function-", "tagged-")) or p in _KINDS))
    )
    key = ".".join(str(p) for p in loc) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    got = "" if error["type"] == "missing" else f" (got {error.get('input')!r})"
    if isinstance(error.get("input"), dict) and error["type"] not in {"dict_type", "model_type"}:
        got = ""
    return f"{file_line(path, line_of(node, loc))}: {key}: {message}{got}"


_KINDS = frozenset(Kind.__args__)  # type: ignore[attr-defined]
