"""``provider_silent``: no event from a registered provider for longer than its ``max_gap``.

**Detected** by the provider watch (every gate's facts meet there; silence sends no events,
so only the clock reveals it): :class:`Silence` judges every registered provider in scope on
every tick, against the newest origin of an accepted record any gate has seen (kept by the
watch, which exports it too); on a batch's arrival it judges only the providers of the batch
that hold an instance, so one that came back resolves at once (on the event clock, every
provider: its clock moved). A registered provider never seen is silent from the moment the
watch started. A provider whose venue is out of session is not silent; the condition began
when the gap crossed the threshold, not when it was noticed.

**Exported** as the seconds since the newest origin of each registered provider over every
gate (``max by (provider, venue)``, the scale-out aggregation point), above its ``max_gap``,
while its venue is in session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import Field, field_validator

from stampline._common import SECOND_NS, prometheus_duration
from stampline.alerting._kinds._kind import (
    Alert,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    ProviderClock,
    WatchContext,
    ceil15,
    dur,
    matcher,
    selector,
)
from stampline.alerting._lifecycle import Labels, Lifecycle, Transition

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile, ExpectedProvider
    from stampline.alerting._detectors import ProviderFacts


class ProviderSilent(Alert):
    """No event from a registered provider for longer than its ``max_gap`` (or ``threshold``).
    Resolves once events flow again (hysteresis: the gap must fall below ``clear``)."""

    kind: Literal["provider_silent"]
    threshold_ns: int | None = Field(default=None, alias="threshold")
    clear_ns: int | None = Field(default=None, alias="clear")

    @field_validator("threshold_ns", "clear_ns", mode="before")
    @classmethod
    def _opt(cls, v: Any) -> int | None:
        return None if v is None else dur(v)


# ------------------------------------------------------------------ detection


class Silence:
    """One ``provider_silent`` definition at the provider watch."""

    def __init__(self, d: ProviderSilent, context: WatchContext) -> None:
        if context.providers is None:
            raise ValueError("provider_silent is judged by the provider watch only")
        self.d = d
        self.definitions = context.definitions
        self.providers: ProviderClock = context.providers
        self.life = Lifecycle.of(
            d,
            context.severity(d.id, d.severity),
            # registered providers are few and must never be forgotten
            ttl_ns=2**62,
            max_instances=context.max_instances,
        )

    def add(self, _at_ns: int, facts: object) -> list[Transition]:
        """One batch's arrival: what :func:`reads` made of its facts."""
        now, seen = cast("tuple[int, Mapping[str, int]]", facts)
        if self.providers.event_clock:
            return self.judge(now)
        # resolve a provider that came back at once; the ticker finds new silences
        return self.judge(now, only=seen)

    def tick(self, now_ns: int) -> list[Transition]:
        return self.judge(now_ns)

    def judge(self, now: int, only: Mapping[str, int] | None = None) -> list[Transition]:
        """Every registered provider in scope (a provider absent from the facts is exactly
        the one that may be silent), or only those named in ``only`` that hold an instance."""
        life = self.life
        if only is not None and not life.instances:
            return []
        out: list[Transition] = []
        for p in self.definitions.providers:
            if only is not None and (
                p.provider not in only
                or ((("provider", p.provider), ("venue", p.venue)) not in life.instances)
            ):
                continue
            if not self.d.scope.matches(p.provider, p.venue):
                continue
            out += self._sample(p, now)
        return out

    def _sample(self, p: ExpectedProvider, now: int) -> list[Transition]:
        d, life, providers = self.d, self.life, self.providers
        labels: Labels = (("provider", p.provider), ("venue", p.venue))
        gap = providers.silence_ns(p.provider, now)
        threshold = d.threshold_ns if d.threshold_ns is not None else p.max_gap_ns
        clear = min(d.clear_ns, threshold) if d.clear_ns is not None else threshold
        held = labels in life.instances and life.instances[labels].cleared is None
        active = gap > (clear if held else threshold)
        if not providers.in_session(p, now):
            active = False  # a closed market is not a silent provider (evaluation step 1)
        # The condition began when the gap crossed the threshold, not when it was noticed.
        at = now
        if active and not held:  # never dated after now (the lifecycle's clock)
            at = min(providers.last_origin.get(p.provider, providers.started_ns) + threshold, now)
        figures = {
            "seconds_since_last_event": round(gap / SECOND_NS, 3),
            "last_event_ns": providers.last_origin.get(p.provider, 0),
            "max_gap_s": threshold / SECOND_NS,
        }
        out = life.observe(labels, at, active=active, value=gap / SECOND_NS, figures=figures)
        if active:
            out += life.tick(now)
        return out


def watch(d: ProviderSilent, context: WatchContext) -> Silence:
    return Silence(d, context)


def reads(facts: ProviderFacts, now_ns: int) -> tuple[int, Mapping[str, int]]:
    """What :class:`Silence` is handed of a batch: the watch's clock on its arrival and the
    providers it names (only accepted records name one)."""
    return now_ns, facts.last_origin


# ------------------------------------------------------------------ export


def signal(d: ProviderSilent) -> PromSignal:
    sel = selector(matcher("provider", d.scope.providers), matcher("venue", d.scope.venues))
    by = "max by (provider, venue)"
    gap = f"{by} (stampline_provider_expected_max_gap_seconds{sel})"
    return PromSignal(
        # Never negative: the gauge moves only on accepted records and never past the
        # intake time, and clamp_min keeps a host clock behind the gate's at 0 s of silence.
        value=(
            f"clamp_min(time() - {by} "
            f"(stampline_provider_last_event_origin_timestamp_seconds{sel}), 0)"
        ),
        op=">",
        by=("provider", "venue"),
        threshold=None if d.threshold_ns is None else d.threshold_ns / SECOND_NS,
        threshold_vector=gap if d.threshold_ns is None else None,
        session=f"{by} (stampline_provider_in_session{sel})",
    )


def case(d: ProviderSilent, definitions: AlertsFile) -> PromCase:
    p = next((p for p in definitions.providers if d.scope.matches(p.provider, p.venue)), None)
    provider, venue = (p.provider, p.venue) if p else ("example", "XEXA")
    gap_ns = (
        d.threshold_ns if d.threshold_ns is not None else (p.max_gap_ns if p else 60 * SECOND_NS)
    )
    gap_s = gap_ns / SECOND_NS
    ident = f'{{provider="{provider}",venue="{venue}"}}'
    # Events until 60 s, then none: silent from 60 s on.
    fire_at = ceil15(60 + gap_s + d.for_ns // SECOND_NS + 1)
    steps = fire_at // 15 + 4
    last = "stampline_provider_last_event_origin_timestamp_seconds"
    return PromCase(
        {
            f"{last}{ident}": f"0+15x4 60+0x{steps}",
            f"stampline_provider_expected_max_gap_seconds{ident}": f"{gap_s:g}+0x{steps + 4}",
            f"stampline_provider_in_session{ident}": f"1+0x{steps + 4}",
        },
        fire_at,
        {"provider": provider, "venue": venue},
        fire_at - 60,
        quiet_at_s=45,
    )


def registered(d: ProviderSilent, definitions: AlertsFile) -> list[int]:
    """The thresholds (ns) of the registered providers ``d`` watches."""
    return [
        d.threshold_ns if d.threshold_ns is not None else p.max_gap_ns
        for p in definitions.providers
        if d.scope.matches(p.provider, p.venue)
    ]


def investigate(d: ProviderSilent, definitions: AlertsFile) -> str:
    gap = prometheus_duration(min(registered(d, definitions)))
    return f"stampline providers compare --since 1h --gap {gap}"


def figures(d: ProviderSilent) -> dict[str, float]:
    return {} if d.threshold_ns is None else {"max_gap_s": d.threshold_ns / SECOND_NS}


KIND = AlertKind(
    name="provider_silent",
    model=ProviderSilent,
    example={},
    detected_by="stampline.alerting._kinds.provider_silent:Silence",
    signal=signal,
    case=case,
    summary="{provider} ({venue}) silent for {value:.1f}s",
    notice="{provider} silent for {value:.1f}s",
    summary_figures=figures,
    value_figures=("seconds_since_last_event",),
    grafana=GrafanaRule(
        # The watch exports a series for every registered provider while it runs: none at
        # all means no watch is exported, so nobody judges silence. Grafana then raises its
        # own DatasourceNoData alert naming the rule, which says exactly that (Alerting would
        # claim a silent provider and carry no provider label).
        no_data="NoData",
        group="providers",
        panel=("stampline-providers", "Silence and gaps per provider"),
        investigate=investigate,
    ),
    provider_level=True,
    registered=registered,
    watch=watch,
    watch_reads=reads,
)
