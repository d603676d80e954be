"""In-stream detectors that run inside each gate, once per batch.

Where a kind is detected is its module's choice (``AlertKind``), made so that one fault
raises one alert whatever the number of gates (a gate sees only the partitions it was given):

- Per-key kinds (a ``rule_kind``) are judged here, by :class:`KeyDetectors`, in the gate
  that owns the key: the stateful rules keep their state per (provider, instrument), which
  lives on one partition, so exactly one gate sees each fault. The kind's ``key_faults``
  says which rows of a batch are a fault of their key.
- Provider-wide kinds (a ``watch``) are *not* judged here: a provider absent from one gate's
  partitions is not silent. Each gate hands a compact per-batch summary
  (:class:`ProviderFacts`, with what each such kind's ``batch_facts`` makes of the batch) to
  one aggregation point, :class:`~alerting.ProviderWatch` (in process for a single gate;
  over the facts topic for several).
- Kinds of events lost between stages (a ``stage_loss``) need every stage's rows: the
  recorder judges them (:class:`~alerting.CompletenessDetector`).
- The other kinds are exported as Prometheus rules, evaluated by Prometheus over every
  sidecar's metrics at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

from stampline.alerting._calendar import decide_severity
from stampline.alerting._definitions import AlertsFile, Calendar
from stampline.alerting._kinds import KINDS
from stampline.alerting._kinds._kind import BatchView, GapLike, KeyBatch, KeyFaults, RuleAlert
from stampline.alerting._learning import DismissalBook, UpdateRates
from stampline.alerting._lifecycle import Labels, Lifecycle, Transition, fingerprint

log = logging.getLogger("stampline.alerting")


class FailureLike(Protocol):
    """What the detectors read of a rule failure (the rules component's ``Failure``)."""

    @property
    def rule_id(self) -> str: ...


class BatchObserver(Protocol):
    """What the gate calls once per batch (``Gate(detectors=...)``)."""

    def observe_batch(
        self,
        received_ns: int,
        providers: Sequence[str],
        instruments: Sequence[str],
        seqs: Sequence[int],
        origins: Sequence[int],
        rejects: Mapping[int, Sequence[FailureLike]],
        warnings: Mapping[int, Sequence[FailureLike]],
        gaps: Sequence[GapLike] = (),
        broker_ms: Sequence[int] = (),
    ) -> None: ...


@dataclass(slots=True)
class ProviderFacts:
    """One gate's view of one batch, per provider: what the provider-wide detectors need."""

    at_ns: int  # when the gate took the batch in
    last_origin: dict[str, int] = field(default_factory=dict)  # origin of the last record
    events: dict[str, int] = field(default_factory=dict)
    dead: dict[tuple[str, str], int] = field(default_factory=dict)  # (provider, rule) -> n
    source: str = ""
    # kind -> what its plug-in detector's `batch_facts` made of the batch (JSON-able)
    kinds: dict[str, object] = field(default_factory=dict)
    # the earliest origin of an accepted record in the batch (0: none): where an event-time
    # watch's clock starts, so a registered provider that never sends is silent from the
    # feed's first record, not from the end of the first batch
    first_origin: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "at_ns": self.at_ns,
            "last_origin": self.last_origin,
            "events": self.events,
            "dead": [[p, r, n] for (p, r), n in self.dead.items()],
            "source": self.source,
            "kinds": self.kinds,
            "first_origin": self.first_origin,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> ProviderFacts:
        """Read back :meth:`to_json`.

        Raises:
            ValueError: a field is missing or of the wrong type.
        """
        try:
            dead_rows, last, events = obj.get("dead", []), obj["last_origin"], obj.get("events", {})
            at, kinds = obj["at_ns"], obj.get("kinds", {})
            first = obj.get("first_origin", 0)  # absent from facts written before it
            # Checked, not asserted: these come off a topic, and `python -O` drops asserts.
            if not (
                isinstance(dead_rows, list)
                and isinstance(last, dict)
                and isinstance(events, dict)
                and isinstance(kinds, dict)
                and isinstance(at, int)
                and isinstance(first, int)
            ):
                raise TypeError("a field of the wrong type")
            return cls(
                at,
                {str(k): int(v) for k, v in last.items()},
                {str(k): int(v) for k, v in events.items()},
                {(str(p), str(r)): int(n) for p, r, n in dead_rows},
                str(obj.get("source", "")),
                {str(k): v for k, v in kinds.items()},
                first,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not provider facts: {exc!r}") from None


_TICK_NS = 100_000_000


def severity_fn(
    alert_id: str,
    defined: str,
    definitions: AlertsFile,
    calendar_of: Callable[[str], Calendar | None],
    dismissals: DismissalBook | None,
    rates: UpdateRates,
) -> Callable[[Labels, int], str]:
    """The severity an instance fires with: the evaluation order of ``_calendar`` with the
    instance's dismissals-as-expected and its provider's volatility."""
    learn = definitions.dismissals

    def decide(labels: Labels, at_ns: int) -> str:
        provider = dict(labels).get("provider", "")
        dismissed = dismissals.count(fingerprint(alert_id, labels)) if dismissals else 0
        volatile = dismissed > 0 and rates.ratio(provider) >= learn.volatile_rate_ratio
        return decide_severity(
            defined,
            calendar=calendar_of(provider),
            at_ns=at_ns,
            dismissed_expected=dismissed,
            downgrade_after=learn.downgrade_after,
            volatile=volatile,
        ).severity

    return decide


Deliver = Callable[[list[Transition]], None]


class Judging:
    """What every detector of a definitions file holds: the definitions, where its
    transitions go, and how an instance's severity is decided (the provider's calendar,
    what was dismissed as expected, the providers' update rates)."""

    def __init__(
        self, definitions: AlertsFile, deliver: Deliver, dismissals: DismissalBook | None
    ) -> None:
        self.definitions = definitions
        self.deliver = deliver
        self.dismissals = dismissals
        self.rates = UpdateRates()
        self._calendar: Mapping[str, Calendar] = {
            p.provider: definitions.calendars[p.calendar]
            for p in definitions.providers
            if p.calendar is not None
        }

    def _severity_fn(self, alert_id: str, defined: str) -> Callable[[Labels, int], str]:
        return severity_fn(
            alert_id, defined, self.definitions, self._calendar.get, self.dismissals, self.rates
        )


class _KeyAlert:
    """One per-key definition: which rules raise it, which rows of a batch are its faults
    (its kind's ``key_faults``), and its open instruments per label set."""

    def __init__(
        self,
        definition: RuleAlert,
        rules: frozenset[str],
        life: Lifecycle,
        faults: Callable[[RuleAlert, KeyBatch], KeyFaults],
    ) -> None:
        self.definition = definition
        self.rules = rules
        self.life = life
        self.faults = faults
        self.open: dict[Labels, set[str]] = {}  # label set -> instruments in fault


class KeyDetectors(Judging):
    """The per-key kinds of one gate, plus the provider facts it hands on.

    ``observe_batch`` is the gate's one call per batch; it never raises into the gate (a
    detector bug is logged and counted) and costs a pass over the batch's identity columns.
    """

    def __init__(
        self,
        definitions: AlertsFile,
        rule_kinds: Mapping[str, str],
        deliver: Deliver,
        facts: Callable[[ProviderFacts], None] | None = None,
        *,
        source: str = "gate",
        ttl_ns: int = 3_600_000_000_000,
        max_instances: int = 10_000,
        dismissals: DismissalBook | None = None,
    ) -> None:
        super().__init__(definitions, deliver, dismissals)
        self.facts = facts
        self.source = source
        self.errors = 0
        self.now_ns = 0  # the newest origin of an accepted record
        self._ticked = 0
        self._venue = {p.provider: p.venue for p in definitions.providers}
        self.alerts: list[_KeyAlert] = []
        for d in definitions.alerts:
            kind = KINDS[d.kind]
            want = kind.rule_kind
            if want is None or not isinstance(d, RuleAlert):
                continue
            rules = frozenset(
                r for r, k in rule_kinds.items() if k == want and fnmatchcase(r, d.rule or "*")
            )
            life = Lifecycle.of(
                d,
                self._severity_fn(d.id, d.severity),
                ttl_ns=ttl_ns,
                max_instances=max_instances,
            )
            self.alerts.append(_KeyAlert(d, rules, life, kind.key_faults))
        # The plug-in provider-wide kinds defined here: each summarises every batch for the
        # provider watch (their detectors run there, where every gate's facts meet).
        defined = {d.kind for d in definitions.alerts}
        self._batch_facts = {
            k.name: k.batch_facts
            for k in KINDS.values()
            if k.batch_facts is not None and k.name in defined
        }

    def labels(self, alert: _KeyAlert, provider: str, instrument: str) -> Labels:
        out = [("provider", provider), ("venue", self._venue.get(provider, ""))]
        if alert.definition.scope.instrument:
            out.append(("instrument", instrument))
        return tuple(sorted(out))

    def observe_batch(
        self,
        received_ns: int,
        providers: Sequence[str],
        instruments: Sequence[str],
        seqs: Sequence[int],
        origins: Sequence[int],
        rejects: Mapping[int, Sequence[FailureLike]],
        warnings: Mapping[int, Sequence[FailureLike]],
        gaps: Sequence[GapLike] = (),
        broker_ms: Sequence[int] = (),
    ) -> None:
        """One gate batch: identity columns, the broken rules of each row, gap events, and
        each record's broker timestamp in ms (0 where it has none; empty: none known)."""
        try:
            out = self._observe(
                received_ns, providers, instruments, origins, rejects, warnings, gaps, broker_ms
            )
        except Exception:  # the gate must never stop for an alerting bug
            self.errors += 1
            log.exception("detector failed on a batch")
            return
        if out:
            self.deliver(out)

    def _observe(
        self,
        received_ns: int,
        providers: Sequence[str],
        instruments: Sequence[str],
        origins: Sequence[int],
        rejects: Mapping[int, Sequence[FailureLike]],
        warnings: Mapping[int, Sequence[FailureLike]],
        gaps: Sequence[GapLike],
        broker_ms: Sequence[int] = (),
    ) -> list[Transition]:
        out: list[Transition] = []
        # Only accepted records move a clock: ``rejects`` holds every refusal (the rules' and
        # the gate's own), and a refused record dated a day ahead must not make the watch
        # or the lifecycles believe a day has passed.
        if rejects:
            accepted = [o for row, o in enumerate(origins) if row not in rejects]
        else:
            accepted = list(origins)
        self.now_ns = max(self.now_ns, max(accepted, default=0))
        facts = ProviderFacts(received_ns, source=self.source) if self.facts else None
        if facts is not None:
            # C-speed passes: the origin of each provider's last accepted record in arrival
            # order (the watch keeps the maximum across batches), and the count per provider
            # (every record that arrived, refused or not: the dead-letter rate's denominator).
            if rejects:
                facts.last_origin = {
                    p: o for row, (p, o) in enumerate(zip(providers, origins, strict=True))
                    if row not in rejects
                }  # fmt: skip
            else:
                facts.last_origin = dict(zip(providers, origins, strict=True))
            facts.first_origin = min((o for o in accepted if o > 0), default=0)
            facts.events = dict(Counter(providers))
            for row, failures in rejects.items():
                key = (providers[row], failures[0].rule_id)
                facts.dead[key] = facts.dead.get(key, 0) + 1
            if self._batch_facts:
                view = BatchView(received_ns, providers, instruments, origins, rejects, broker_ms)
                for kind, summarise in self._batch_facts.items():
                    facts.kinds[kind] = summarise(view)
        broken: dict[str, list[int]] = {}
        for table in (rejects, warnings):
            for row, failures in table.items():
                for f in failures:
                    broken.setdefault(f.rule_id, []).append(row)
        # "Now" for the lifecycles: the newest accepted origin so far (the wall clock while
        # none carried one). A transition is never dated after it.
        now = self.now_ns or received_ns
        for alert in self.alerts:
            self._judge(alert, broken, gaps, providers, instruments, origins, rejects, now, out)
        if now - self._ticked >= _TICK_NS:  # a pass over every instance, so not every batch
            self._ticked = now
            for alert in self.alerts:
                out += alert.life.tick(now)
                for labels in [k for k in alert.open if k not in alert.life.instances]:
                    del alert.open[labels]  # expired or evicted by the lifecycle
        if self.dismissals is not None:  # the volatility measure is needed only to learn
            self.rates.add(facts.events if facts else dict(Counter(providers)), received_ns)
        if facts is not None and self.facts is not None:
            self.facts(facts)
        return out

    def _judge(
        self,
        alert: _KeyAlert,
        broken: Mapping[str, list[int]],
        gaps: Sequence[GapLike],
        providers: Sequence[str],
        instruments: Sequence[str],
        origins: Sequence[int],
        rejects: Mapping[int, Sequence[FailureLike]],
        now: int,
        out: list[Transition],
    ) -> None:
        d = alert.definition
        rules = alert.rules
        # A refused record is evidence of this alert's fault only when refused for it alone
        # (by one of its own rules); refused for anything else, it neither opens a fault nor
        # ends one.
        foreign = {row for row, fs in rejects.items() if any(f.rule_id not in rules for f in fs)}
        broken_here: set[int] = set()
        for rule in rules:
            broken_here.update(broken.get(rule, ()))
        broken_here -= foreign
        batch = KeyBatch(providers, instruments, rules, broken_here, foreign, gaps)
        failing, faults = alert.faults(d, batch)
        if not failing and not alert.open:
            return
        # In arrival order: a failing row opens (or feeds) its key's fault, a passing row of
        # a key in fault ends it.
        scope, venue = d.scope, self._venue
        for row, (p, i) in enumerate(zip(providers, instruments, strict=True)):
            if row in failing:
                if not scope.matches(p, venue.get(p, "")):
                    continue
                labels = self.labels(alert, p, i)
                alert.open.setdefault(labels, set()).add(i)
                value, figures = faults.get((p, i), (1.0, {}))
                fig = dict(figures)
                fig["instruments"] = len(alert.open[labels])
                at = min(origins[row] or now, now)
                out += alert.life.observe(labels, at, active=True, value=value, figures=fig)
                continue
            if not alert.open or row in rejects:
                continue
            labels = self.labels(alert, p, i)
            held = alert.open.get(labels)
            if held is None or i not in held:
                continue
            held.discard(i)
            if not held:
                del alert.open[labels]
                out += alert.life.observe(labels, min(origins[row] or now, now), active=False)
