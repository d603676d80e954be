"""What an alert kind is: :class:`AlertKind`, everything the rest of ``alerting`` (and
``dashboards``) needs to know of one kind, as data. Each kind is one module beside this one
that builds its ``KIND``; the registry (``_kinds/__init__.py``) lists them.

Also here, because every kind's model builds on them: the base of an alert definition
(:class:`Alert`, :class:`RuleAlert`), its :class:`Scope`, and the PromQL parts
(:class:`PromSignal`) and ``promtool`` case (:class:`PromCase`) a kind renders into.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from importlib import import_module
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stampline._common import parse_duration_ns as duration_ns

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile, ExpectedProvider
    from stampline.alerting._detectors import ProviderFacts
    from stampline.alerting._lifecycle import SeverityFn, Transition

ALERT_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]
# Judged by Prometheus from the exported rule, over every sidecar's metrics at once.
PROMETHEUS = "prometheus"


def dur(v: Any) -> int:
    """A duration field's value in nanoseconds (the YAML spells it ``5s``, ``250ms``...)."""
    return duration_ns(v)


def positive_dur(v: Any) -> int:
    """A duration field that must be more than 0, in nanoseconds.

    Raises:
        ValueError: not a duration, or 0.
    """
    ns = dur(v)
    if ns <= 0:
        raise ValueError("must be more than 0")
    return ns


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Scope(Model):
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


class Alert(Model):
    """What every alert definition has; a kind's model adds its own keys and ``kind``."""

    kind: str
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
        return dur(v)

    @field_validator("runbook_url", "dashboard_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://\S+$", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class RuleAlert(Alert):
    """A kind raised by the verdicts of a rule (``AlertKind.rule_kind``)."""

    rule: str | None = Field(
        default=None, description="the rule id (shell pattern) whose verdicts raise it"
    )


def matcher(name: str, patterns: tuple[str, ...]) -> str:
    """A PromQL label matcher for shell ``patterns`` ("" for none: every value)."""
    if not patterns:
        return ""
    regex = "|".join(re.escape(p).replace(r"\*", ".*").replace(r"\?", ".") for p in patterns)
    return f'{name}=~"{regex}"'


def selector(*parts: str) -> str:
    """``{a,b}`` of the non-empty matchers, "" when there are none."""
    inner = ",".join(p for p in parts if p)
    return "{" + inner + "}" if inner else ""


@dataclass(frozen=True, slots=True)
class PromSignal:
    """One definition's PromQL in the parts both renderers use, so they cannot drift.

    Prometheus compares them in one expression (:meth:`promql`):
    ``value op threshold [and on (by) (session == 1)]``. Grafana (``dashboards``) queries
    ``value`` per instance and judges it with a threshold expression; where the threshold
    is per instance (``threshold_vector``) or a session applies, it queries the difference
    instead, so every instance stays a series whatever its state.
    """

    value: str  # the measured value per instance: what a summary's value shows
    op: Literal[">", "=="]
    by: tuple[str, ...]  # the labels that tell instances apart
    threshold: float | None = None  # a number...
    threshold_vector: str | None = None  # ...or one per instance, matched on `by`
    session: str | None = None  # 1 while the instance's venue trades, else 0

    def promql(self) -> str:
        """The Prometheus alerting expression."""
        on = f"on ({', '.join(self.by)}) "
        vector = self.threshold_vector
        limit = f"{self.threshold:g}" if vector is None else on + vector
        expr = f"{self.value} {self.op} {limit}"
        if self.session is not None:
            expr += f" and {on}({self.session} == 1)"
        return expr


@dataclass(frozen=True, slots=True)
class PromCase:
    """A ``promtool test rules`` case for one definition's rule: synthetic series sampled
    every 15 s (series → promtool's values notation), a time the rule must not fire yet
    (``quiet_at_s``, optional) and a time it fires, with the instance's labels (beyond
    ``alertname``, ``severity`` and ``kind``) and its value then (for the summary)."""

    series: Mapping[str, str]
    fire_at_s: int
    labels: Mapping[str, str]
    value: float
    quiet_at_s: int | None = None


def ceil15(seconds: float) -> int:
    """``seconds`` rounded up to promtool's 15 s evaluation steps."""
    return int(-(-seconds // 15) * 15)


NoDataState = Literal["NoData", "OK", "Alerting", "KeepLast"]


@dataclass(frozen=True, slots=True)
class GrafanaRule:
    """How ``dashboards`` renders a Grafana-managed rule of the kind.

    ``no_data``: what an evaluation returning no series at all means; ``group``: the rule
    group (``providers`` every 10 s, ``pipeline`` every 30 s); ``panel``: (dashboard uid,
    panel title) where a person looks first; ``investigate``: the stampline command that
    shows the fault from the store, for a definition (and its file)."""

    no_data: NoDataState
    group: Literal["providers", "pipeline"]
    panel: tuple[str, str]
    investigate: Callable[[Any, AlertsFile], str]


def command(text: str) -> Callable[[Any, AlertsFile], str]:
    """An ``investigate`` that is the same command for every definition of the kind."""

    def investigate(_d: Any, _definitions: AlertsFile) -> str:
        return text

    return investigate


@dataclass(frozen=True, slots=True)
class BatchView:
    """One gate batch as a plug-in detector reads it: the identity columns, the time the
    gate took it in, the rows the rules refused (row index -> the broken rules) and each
    record's broker timestamp in ms (0 where it has none; empty when none were given)."""

    received_ns: int
    providers: Sequence[str]
    instruments: Sequence[str]
    origins: Sequence[int]
    rejects: Mapping[int, Sequence[object]]
    broker_ms: Sequence[int] = ()

    def accepted(self) -> list[int]:
        """The rows the rules accepted: only these move a clock or a baseline."""
        return [r for r in range(len(self.providers)) if r not in self.rejects]


class ProviderClock(Protocol):
    """What the provider watch knows of the registered providers, read live by the detectors
    it builds: the newest origin of an accepted record of each (``last_origin``), the time
    the watch started (``started_ns``: a registered provider never seen counts from then),
    whether its clock is the event clock (the newest origin seen) and whether a provider's
    venue trades at a time (its calendar's sessions; always, without a calendar)."""

    @property
    def event_clock(self) -> bool: ...
    @property
    def started_ns(self) -> int: ...
    @property
    def last_origin(self) -> Mapping[str, int]: ...

    def silence_ns(self, provider: str, now_ns: int) -> int: ...

    def in_session(self, provider: ExpectedProvider, now_ns: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class WatchContext:
    """What the provider watch gives a plug-in detector it builds (``providers``: the watch
    itself, for a kind judged against every registered provider; None outside a watch)."""

    definitions: AlertsFile
    severity: Callable[[str, str], SeverityFn]  # (alert id, defined severity) -> decider
    max_instances: int
    providers: ProviderClock | None = None


class WatchDetector(Protocol):
    """A provider-wide detector run by the provider watch (the one aggregation point, so
    one fault raises one alert whatever the number of gates): it is handed its kind's part
    of every gate's per-batch facts (:meth:`AlertKind.watched`) with the time the gate took
    the batch in, judges, and is ticked with the watch's clock."""

    def add(self, at_ns: int, facts: object) -> list[Transition]: ...

    def tick(self, now_ns: int) -> list[Transition]: ...


class GapLike(Protocol):
    """What a per-key kind reads of a sequence gap event (the rules component's
    ``GapEvent``)."""

    @property
    def kind(self) -> str: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def key(self) -> tuple[str, ...]: ...
    @property
    def first(self) -> int: ...
    @property
    def last(self) -> int: ...


@dataclass(frozen=True, slots=True)
class KeyBatch:
    """One gate batch as a per-key definition reads it: the identity columns, the rules
    that raise the definition (``rules``), the rows that broke one of them (``broken``), the
    rows refused for another rule (``foreign``: no evidence of this fault either way; left
    out of ``broken``) and the rules' gap events."""

    providers: Sequence[str]
    instruments: Sequence[str]
    rules: frozenset[str]
    broken: set[int]
    foreign: set[int]
    gaps: Sequence[GapLike]


# What a per-key kind makes of a batch: the rows that open (or feed) their key's fault, and
# per (provider, instrument) the value and figures of its fault (default: 1 and none).
KeyFaults = tuple[set[int], Mapping[tuple[str, str], tuple[float, Mapping[str, object]]]]


def broken_rows(_d: Any, batch: KeyBatch) -> KeyFaults:
    """The default of a per-key kind: every row that broke the definition's rules is a
    fault of its key."""
    return batch.broken, {}


@dataclass(frozen=True, slots=True)
class StageLoss:
    """How the recorder's stage-pair engine judges one definition: an event seen at stage
    ``a`` and not at stage ``b`` within ``grace_ns`` of it (event time) is lost; a provider's
    lost fraction over ``window_ns`` is the sample its lifecycle judges."""

    a: str
    b: str
    grace_ns: int
    window_ns: int


def _no_figures(_d: Any) -> Mapping[str, float]:
    return {}


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One alert kind, whole: its definition model, where it is detected, its PromQL and
    ``promtool`` case, its summaries and its Grafana rule.

    - ``name``: the ``kind:`` of a definition; ``model``: its pydantic model (its ``kind``
      field is ``Literal[name]``); ``example``: the keys of a minimal valid definition
      (beyond ``id`` and ``kind``; the registry's completeness test renders one per kind).
    - ``detected_by``: ``PROMETHEUS``, or ``"module:Class"`` of the in-stream detector that
      judges it (:meth:`detector` resolves it).
    - ``signal``: the definition's PromSignal; ``case``: its promtool case, given the
      definitions file (None: the definition has none, e.g. a scope the case cannot meet).
    - ``summary``: the default summary of the exported rules and Grafana (``str.format``
      syntax, see ``_summary``); ``notice``: the default of the in-process notice, which
      also has the detector's figures; ``summary_figures``: constants of the definition a
      summary may name (``max_gap_s``...); ``value_figures``: figures that are the rule's
      value; ``label_figures``: figures that are a label of the rule (figure -> label).
    - ``grafana``: the Grafana-managed rule's data.
    - ``firing_gauge``: judged in stream, and the exported rule re-publishes the detector's
      ``stampline_alert_firing`` gauge (so its value is 1, not the notice's value).
    - ``provider_level``: a fault of a provider (routed by venue; inhibited while a
      collector is down); ``inhibits``: while it fires, provider-level alerts are inhibited.
    - ``rule_kind``: the rules component's kind whose verdicts raise it, per key, in the gate;
      ``key_faults``: which rows of a batch are a key's fault, with its value and figures
      (default :func:`broken_rows`).
    - ``registered``: for a kind judged against the provider registry, the thresholds (ns)
      of the registered providers a definition watches (none: nothing to judge).
    - ``batch_facts`` and ``watch``: a provider-wide detector: ``batch_facts`` summarises
      one gate batch (JSON-able: it may cross the facts topic), ``watch`` builds, per
      definition, the detector the provider watch hands those summaries to; a kind that
      reads what every gate's facts hold already (per provider: newest origin, records,
      dead letters) has no ``batch_facts`` and says in ``watch_reads`` what it is handed.
    - ``stage_loss``: for a kind judged by the recorder's stage-pair engine
      (``CompletenessDetector``), the stages, grace and window of a definition.
    """

    name: str
    model: type[Alert]
    example: Mapping[str, object]
    detected_by: str
    signal: Callable[[Any], PromSignal]
    summary: str
    grafana: GrafanaRule
    case: Callable[[Any, AlertsFile], PromCase | None]
    notice: str = "{alertname}"
    summary_figures: Callable[[Any], Mapping[str, float]] = _no_figures
    value_figures: tuple[str, ...] = ()
    label_figures: Mapping[str, str] = field(default_factory=dict)
    firing_gauge: bool = False
    provider_level: bool = False
    inhibits: bool = False
    rule_kind: str | None = None
    key_faults: Callable[[Any, KeyBatch], KeyFaults] = broken_rows
    registered: Callable[[Any, AlertsFile], list[int]] | None = None
    batch_facts: Callable[[BatchView], object] | None = None
    watch: Callable[[Any, WatchContext], WatchDetector] | None = None
    watch_reads: Callable[[ProviderFacts, int], object] | None = None
    stage_loss: Callable[[Any], StageLoss] | None = None

    def watched(self, facts: ProviderFacts, now_ns: int) -> object | None:
        """What the kind's watch detector is handed of one batch's facts, given the watch's
        clock on their arrival: what ``watch_reads`` reads, else what the kind's
        ``batch_facts`` made (None: nothing for it in this batch)."""
        if self.watch_reads is not None:
            return self.watch_reads(facts, now_ns)
        return facts.kinds.get(self.name)

    def detector(self) -> type | None:
        """The class that judges the kind in stream, or None when Prometheus does."""
        if self.detected_by == PROMETHEUS:
            return None
        module, _, name = self.detected_by.partition(":")
        found = getattr(import_module(module), name)
        assert isinstance(found, type), self.detected_by
        return found


def example_subject(d: Alert, definitions: AlertsFile) -> tuple[str, str] | None:
    """(provider, venue) of a promtool case for ``d``: the first registered provider in its
    scope, else an example one when the scope names no provider or venue (else None)."""
    p = next((p for p in definitions.providers if d.scope.matches(p.provider, p.venue)), None)
    if p is not None:
        return p.provider, p.venue
    if d.scope.providers or d.scope.venues:
        return None
    return "example", "XEXA"


def firing_signal(d: Alert, *labels: str) -> PromSignal:
    """The signal of a kind judged in stream: the detector's ``stampline_alert_firing``
    gauge, per provider and venue (and instrument, when scoped so, and ``labels``)."""
    keep = ("provider", "venue", *(("instrument",) if d.scope.instrument else ()), *labels)
    sel = selector(
        f'alertname="{d.id}"',
        matcher("provider", d.scope.providers),
        matcher("venue", d.scope.venues),
    )
    return PromSignal(
        f"max by ({', '.join(keep)}) (stampline_alert_firing{sel})", ">", keep, threshold=0
    )


def firing_case(d: Alert, definitions: AlertsFile, **labels: str) -> PromCase | None:
    """The promtool case of a kind judged in stream: its firing gauge turns 1 at 30 s."""
    subject = example_subject(d, definitions)
    if subject is None:
        return None
    every = {"provider": subject[0], "venue": subject[1], **labels}
    if d.scope.instrument:
        every["instrument"] = "SYM001"
    fire_at = ceil15(30 + d.for_ns // 1_000_000_000 + 1)
    ident = ",".join(f'{k}="{v}"' for k, v in {"alertname": d.id, **every}.items())
    return PromCase(
        {f"stampline_alert_firing{{{ident}}}": f"0 0 1+0x{fire_at // 15 + 4}"},
        fire_at,
        every,
        1.0,
        quiet_at_s=15,
    )


def per_key(
    model: type[RuleAlert],
    rule_kind: str,
    *,
    summary: str,
    notice: str,
    panel: str,
    investigate: str,
    example: Mapping[str, object],
    faults: Callable[[Any, KeyBatch], KeyFaults] = broken_rows,
) -> AlertKind:
    """A kind raised by a rule's verdicts per (provider, instrument) key, judged in the gate
    that owns the key (``KeyDetectors``: the rule keeps its state per key, which lives on
    one partition, so exactly one gate sees each fault); exported as its firing gauge;
    rendered in Grafana's ``providers`` group, on the Providers dashboard's ``panel``.
    ``faults``: which rows of a batch are a key's fault (``AlertKind.key_faults``)."""
    name = get_args(model.model_fields["kind"].annotation)[0]
    return AlertKind(
        name=name,
        model=model,
        example=example,
        detected_by="stampline.alerting._detectors:KeyDetectors",
        signal=firing_signal,
        case=firing_case,
        summary=summary,
        notice=notice,
        grafana=GrafanaRule(
            no_data="OK",  # the firing gauge exists only while something fires
            group="providers",
            panel=("stampline-providers", panel),
            investigate=command(investigate),
        ),
        firing_gauge=True,
        provider_level=True,
        rule_kind=rule_kind,
        key_faults=faults,
    )
