"""``dlq_rate``: dead letters as a fraction of a provider's records over ``window``, per rule.

**Detected** by the provider watch (a provider's records spread over every gate):
:class:`DeadLetterRate` keeps the per-provider counts of records and dead letters that every
gate's facts carry, and on each tick samples, per provider in scope and dead-lettering rule,
the rate over ``window`` into the lifecycle (a provider needs ``min_events`` records in it);
an instance whose rule dead-lettered nothing in the window samples 0.

**Exported** as dead letters per provider and rule over all records of the provider.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import Field, field_validator, model_validator

from stampline._common import SECOND_NS, UNNAMED_PROVIDER, prometheus_duration
from stampline.alerting._kinds._kind import (
    Alert,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    WatchContext,
    ceil15,
    command,
    dur,
    matcher,
    selector,
)
from stampline.alerting._lifecycle import Labels, Lifecycle, Transition

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile
    from stampline.alerting._detectors import ProviderFacts

# What a batch's facts hold for the rate: records per provider, dead letters per (provider,
# rule).
Counts = tuple[Mapping[str, int], Mapping[tuple[str, str], int]]


class DlqRate(Alert):
    """Dead letters as a fraction of a provider's records over ``window``, per rule."""

    kind: Literal["dlq_rate"]
    threshold: float = Field(gt=0, le=1, description="fraction of records, e.g. 0.05")
    clear: float | None = Field(default=None, ge=0, le=1)
    window_ns: int = Field(default=60_000_000_000, alias="window")
    min_events: int = Field(default=20, ge=1)

    @field_validator("window_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int:
        return dur(v)

    @model_validator(mode="after")
    def _clear_below(self) -> DlqRate:
        if self.clear is not None and self.clear > self.threshold:
            raise ValueError("clear must not exceed threshold (it is the hysteresis floor)")
        return self


# ------------------------------------------------------------------ detection


class DeadLetterRate:
    """One ``dlq_rate`` definition at the provider watch: the counts of recent batches (in
    arrival order), sampled per provider and rule on each tick."""

    def __init__(self, d: DlqRate, context: WatchContext) -> None:
        self.d = d
        self.definitions = context.definitions
        # Counts are kept for the longest dlq_rate window of the file, not this one's: every
        # definition then samples the same batches, even on a tick dated before the last
        # one (a wall clock stepped back).
        self.keep_ns = max(
            a.window_ns for a in context.definitions.alerts if isinstance(a, DlqRate)
        )
        self.window: deque[tuple[int, Counts]] = deque()  # (intake time, counts)
        self.life = Lifecycle.of(
            d,
            context.severity(d.id, d.severity),
            ttl_ns=max(d.window_ns * 2, d.keep_firing_for_ns + d.window_ns),
            max_instances=context.max_instances,
        )

    def add(self, at_ns: int, facts: object) -> list[Transition]:
        """One batch's counts (what :func:`reads` made of its facts): judged on the tick."""
        self.window.append((at_ns, cast(Counts, facts)))
        return []

    def tick(self, now: int) -> list[Transition]:
        d, life, window = self.d, self.life, self.window
        while window and now - window[0][0] > self.keep_ns:
            window.popleft()
        events: dict[str, int] = {}
        dead: dict[tuple[str, str], int] = {}
        for at, (batch_events, batch_dead) in window:
            if now - at > d.window_ns:
                continue
            for p, n in batch_events.items():
                events[p] = events.get(p, 0) + n
            for k, n in batch_dead.items():
                dead[k] = dead.get(k, 0) + n
        out: list[Transition] = []
        seen: set[Labels] = set()
        for (p, rule), n in dead.items():
            reg = self.definitions.provider(p)
            if not d.scope.matches(p, reg.venue if reg else ""):
                continue
            total = events.get(p, 0)
            if total < d.min_events:
                continue
            # a record too broken to name its provider still has a provider label
            labels: Labels = (("provider", p or UNNAMED_PROVIDER), ("rule", rule))
            seen.add(labels)
            rate = n / total
            figures = {"dead_letters": n, "events": total, "rate": round(rate, 4)}
            out += life.observe(labels, now, value=rate, figures=figures)
        for labels in list(life.instances):
            if labels not in seen:  # no dead letters left in the window
                out += life.observe(labels, now, value=0.0)
        out += life.tick(now)
        return out


def watch(d: DlqRate, context: WatchContext) -> DeadLetterRate:
    return DeadLetterRate(d, context)


def reads(facts: ProviderFacts, _now_ns: int) -> Counts:
    """What :class:`DeadLetterRate` is handed of a batch: the counts every gate's facts
    carry (records of every outcome per provider: the rate's denominator)."""
    return facts.events, facts.dead


# ------------------------------------------------------------------ export


def signal(d: DlqRate) -> PromSignal:
    w = prometheus_duration(d.window_ns)
    sel = selector(matcher("provider", d.scope.providers))
    return PromSignal(
        value=(
            f"sum by (provider, reason) (rate(stampline_events_dead_lettered_total{sel}[{w}]))"
            f" / on (provider) group_left sum by (provider)"
            f" (rate(stampline_events_in_total{sel}[{w}]))"
        ),
        op=">",
        by=("provider", "reason"),
        threshold=d.threshold,
    )


def case(d: DlqRate, _definitions: AlertsFile) -> PromCase | None:
    if d.scope.providers:
        return None  # the example provider would be out of scope
    # 100 records and 50 dead letters every 15 s: half dead-lettered.
    fire_at = ceil15(d.window_ns / SECOND_NS + d.for_ns // SECOND_NS + 15)
    n = fire_at // 15 + 4
    return PromCase(
        {
            'stampline_events_in_total{provider="example"}': f"0+100x{n}",
            'stampline_events_dead_lettered_total{provider="example",reason="price.positive"}': (
                f"0+50x{n}"
            ),
        },
        fire_at,
        {"provider": "example", "reason": "price.positive"},
        0.5,
    )


KIND = AlertKind(
    name="dlq_rate",
    model=DlqRate,
    example={"threshold": 0.05},
    detected_by="stampline.alerting._kinds.dlq_rate:DeadLetterRate",
    signal=signal,
    case=case,
    summary="{provider}: {value:.2%} of records dead-lettered by {reason}",
    notice="{provider}: {rate:.1%} dead-lettered by {rule}",
    value_figures=("rate",),
    label_figures={"rule": "reason"},  # the notice's name for the dead-lettering rule
    grafana=GrafanaRule(
        no_data="OK",  # the series exist once dead letters were counted
        group="providers",
        panel=("stampline-providers", "Dead letters by rule and provider"),
        investigate=command(
            "stampline replay EVENT_ID (the id is in a dead letter's stamp headers); "
            "per provider: stampline providers compare --since 1h"
        ),
    ),
    provider_level=True,
    watch=watch,
    watch_reads=reads,
)
