"""The lifecycle of alert instances: pending → firing → resolved, on event time.

One :class:`Lifecycle` per alert definition holds one instance per fault (per label set:
provider, instrument...), never one per record. Samples say whether the condition holds for
a label set at an event time; :meth:`Lifecycle.tick` lets time pass without samples (a
silent provider sends none).

- ``for``: an active condition is *pending* until it has held that long, then *firing*. A
  condition that clears while pending raises nothing (a single-tick spike).
- Hysteresis: with a numeric ``threshold`` and ``clear`` (≤ threshold), a condition turns
  active above ``threshold`` and clears only at or below ``clear``.
- ``keep_firing_for``: a firing instance whose condition cleared stays firing that long; if
  the condition returns meanwhile it simply goes on firing (no second alert).
- Bounded: at most ``max_instances``; an instance not sampled for ``ttl`` is dropped (a
  firing one is resolved with ``why="expired"``); past the cap the least recently sampled
  instance goes (a firing one resolved with ``why="evicted"``), counted in ``evicted``.

Times never run backwards per instance: a sample older than the instance's last one is
taken at the last one's time (late data does not reopen the past).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

State = Literal["pending", "firing", "resolved"]
Labels = tuple[tuple[str, str], ...]


def fingerprint(alert_id: str, labels: Labels) -> str:
    """A stable identifier of one alert instance: its alert id and its identifying labels."""
    text = alert_id + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert instance changed state. Times are event-time nanoseconds."""

    alert_id: str
    kind: str
    state: State
    labels: Labels  # identifying labels (provider, venue, instrument...), sorted
    severity: str
    at_ns: int  # when this transition happened
    started_ns: int  # when the condition began (the pending start)
    value: float = 0.0
    figures: Mapping[str, object] = field(default_factory=dict)
    why: str = ""  # for a resolve: "cleared", "expired" or "evicted"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.alert_id, self.labels)

    def label(self, name: str) -> str:
        return dict(self.labels).get(name, "")


@dataclass(slots=True)
class _Instance:
    phase: State  # pending or firing
    since: int
    last: int
    value: float
    figures: Mapping[str, object]
    severity: str
    cleared: int | None = None  # firing, condition false since then (keep_firing_for)


SeverityFn = Callable[[Labels, int], str]


class Defined(Protocol):
    """What a lifecycle reads of an alert definition (any kind's model)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def for_ns(self) -> int: ...
    @property
    def keep_firing_for_ns(self) -> int: ...


class Lifecycle:
    """Alert instances of one definition. Not thread-safe: one caller thread (the detectors')."""

    def __init__(
        self,
        alert_id: str,
        kind: str,
        *,
        for_ns: int = 0,
        keep_firing_for_ns: int = 0,
        threshold: float | None = None,
        clear: float | None = None,
        severity: str | SeverityFn = "warning",
        ttl_ns: int = 3_600_000_000_000,
        max_instances: int = 10_000,
    ) -> None:
        if clear is not None and threshold is not None and clear > threshold:
            raise ValueError("clear must not exceed threshold")
        self.alert_id = alert_id
        self.kind = kind
        self.for_ns = for_ns
        self.keep_ns = keep_firing_for_ns
        self.threshold = threshold
        self.clear = threshold if clear is None else clear
        self._severity = severity
        self.ttl_ns = ttl_ns
        self.max_instances = max_instances
        self.instances: OrderedDict[Labels, _Instance] = OrderedDict()  # least recent first
        self.evicted = 0
        self.expired = 0

    @classmethod
    def of(
        cls, d: Defined, severity: str | SeverityFn, *, ttl_ns: int, max_instances: int
    ) -> Lifecycle:
        """The lifecycle of definition ``d``: its id, kind, ``for`` and ``keep_firing_for``,
        and its ``threshold`` and ``clear`` levels where its kind has them (a rate's)."""
        return cls(
            d.id,
            d.kind,
            for_ns=d.for_ns,
            keep_firing_for_ns=d.keep_firing_for_ns,
            threshold=getattr(d, "threshold", None),
            clear=getattr(d, "clear", None),
            severity=severity,
            ttl_ns=ttl_ns,
            max_instances=max_instances,
        )

    def severity(self, labels: Labels, at_ns: int) -> str:
        s = self._severity
        return s if isinstance(s, str) else s(labels, at_ns)

    def is_active(self, labels: Labels, value: float) -> bool:
        """The condition for a numeric sample, with hysteresis around the thresholds."""
        assert self.threshold is not None
        assert self.clear is not None
        if labels in self.instances and self.instances[labels].cleared is None:
            return value > self.clear
        return value > self.threshold

    def observe(
        self,
        labels: Labels,
        at_ns: int,
        *,
        active: bool | None = None,
        value: float = 0.0,
        figures: Mapping[str, object] | None = None,
    ) -> list[Transition]:
        """One sample for ``labels`` at event time ``at_ns``. ``active=None`` judges ``value``
        against the threshold (with hysteresis)."""
        if active is None:
            active = self.is_active(labels, value)
        out: list[Transition] = []
        inst = self.instances.get(labels)
        if inst is None:
            if not active:
                return out
            self._make_room(at_ns, out)
            inst = _Instance(
                "pending", at_ns, at_ns, value, figures or {}, self.severity(labels, at_ns)
            )
            self.instances[labels] = inst
            if self.for_ns > 0:
                out.append(self._transition(labels, inst, "pending", at_ns))
        else:
            at_ns = max(at_ns, inst.last)
            self.instances.move_to_end(labels)
        inst.last = at_ns
        if active:
            inst.value = value
            if figures:
                inst.figures = figures
            inst.cleared = None
        self._advance(labels, inst, at_ns, active, out)
        return out

    def _advance(
        self, labels: Labels, inst: _Instance, now: int, active: bool, out: list[Transition]
    ) -> None:
        if inst.phase == "pending":
            # The condition is taken to hold from its start until a sample says otherwise,
            # so the outcome does not depend on when ticks happen to run.
            if now - inst.since >= self.for_ns:
                inst.phase = "firing"
                fired_at = inst.since + self.for_ns
                inst.severity = self.severity(labels, fired_at)
                out.append(self._transition(labels, inst, "firing", fired_at))
            elif not active:
                del self.instances[labels]  # cleared before `for`: never an alert
                return
            else:
                return
        if active:
            return
        if inst.cleared is None:
            inst.cleared = now
        if now - inst.cleared >= self.keep_ns:
            del self.instances[labels]
            out.append(
                self._transition(labels, inst, "resolved", inst.cleared + self.keep_ns, "cleared")
            )

    def tick(self, now_ns: int) -> list[Transition]:
        """Let event time reach ``now_ns``: pending instances whose condition still holds may
        fire, cleared firing ones may resolve, unsampled ones expire."""
        out: list[Transition] = []
        for labels, inst in list(self.instances.items()):
            if now_ns - inst.last >= self.ttl_ns:
                del self.instances[labels]
                self.expired += 1
                if inst.phase == "firing":
                    out.append(self._transition(labels, inst, "resolved", now_ns, "expired"))
                continue
            if now_ns <= inst.last:
                continue
            self._advance(labels, inst, now_ns, inst.cleared is None, out)
        return out

    def hold(self, labels: Labels) -> bool:
        """Take a pending instance as firing, without a transition: its firing was notified
        before (a detector rebuilding its state after a restart). Returns whether it was
        pending."""
        inst = self.instances.get(labels)
        if inst is None or inst.phase != "pending":
            return False
        inst.phase = "firing"
        return True

    def firing(self) -> list[Labels]:
        return [k for k, v in self.instances.items() if v.phase == "firing"]

    def _make_room(self, now: int, out: list[Transition]) -> None:
        while len(self.instances) >= self.max_instances:
            victim = next((k for k, v in self.instances.items() if v.phase != "firing"), None)
            if victim is None:
                victim = next(iter(self.instances))
            inst = self.instances.pop(victim)
            self.evicted += 1
            if inst.phase == "firing":
                out.append(self._transition(victim, inst, "resolved", now, "evicted"))

    def _transition(
        self, labels: Labels, inst: _Instance, state: State, at: int, why: str = ""
    ) -> Transition:
        return Transition(
            self.alert_id,
            self.kind,
            state,
            labels,
            inst.severity,
            at,
            inst.since,
            inst.value,
            inst.figures,
            why,
        )
