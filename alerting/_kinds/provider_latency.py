"""``provider_latency``: a provider's own latency (origin → broker) above its own baseline.

The latency of a record is the provider's part of its way: from its origin time to its
broker timestamp (when it reached the raw topic), so the time a record then waits on the
broker for a gate -- a stalled or backlogged gate -- is never blamed on the provider. A
record without a broker timestamp (none given by the broker) falls back to the gate's
intake time minus the origin, the gate's queue included. The broker timestamp is the
broker's clock on a topic with ``message.timestamp.type=LogAppendTime``, and the producer's
with ``CreateTime`` (Kafka's default: then the latency ends when the producer made the
record, and the network to the broker is outside it); docs/alerting.md says which to use.
The alert fires while a provider's recent ``quantile``
(p99 by default) over ``window`` is above ``factor`` × the ``baseline_quantile`` (the median
by default) of its own latency over the ``baseline`` before that window, for ``for``: a
provider that is always slow is its own normal; one that becomes slow is the fault.

Why the baseline is a median and not the same p99: a sustained slowdown enters the
baseline as it goes on, and the baseline's p99 absorbs it once 1 % of the baseline is slow
(36 s of an hour), so the alert would resolve while the provider is still slow; the median
absorbs it only after half the baseline.

**Detected** by the provider watch, where every gate's facts meet (one fault, one alert
whatever the number of gates): each gate summarises each batch (:func:`batch_facts`) as a
histogram per provider of the latencies of the records the rules *accepted* (a refused
record's origin time is not to be trusted; records without an origin time are left out),
in buckets of a quarter of a power of two (every value within 20 % of its bucket's upper
bound). The watch adds them into slots of a quarter of ``window`` per provider
(:class:`LatencyBaseline`) and judges a provider on each of its batches and on every
tick, at the time its gates took the batches in. Either side needs ``min_events`` records.

**Exported** over the gates' ``stampline_provider_latency_seconds`` histogram (the same
definition: origin → broker timestamp, else origin → gate): the recent quantile over
``window`` above ``factor`` × the baseline quantile over ``baseline`` offset by ``window``
(the Prometheus rule has no ``min_events``, as ``dlq_rate``'s has none).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from stampline._common import SECOND_NS, prometheus_duration
from stampline.alerting._kinds._kind import (
    Alert,
    AlertKind,
    BatchView,
    GrafanaRule,
    PromCase,
    PromSignal,
    WatchContext,
    ceil15,
    command,
    example_subject,
    matcher,
    positive_dur,
    selector,
)
from stampline.alerting._lifecycle import Labels, Lifecycle, Transition

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile

METRIC = "stampline_provider_latency_seconds"
SLOTS_PER_WINDOW = 4
# The least baseline a latency is compared with: broker timestamps (and most origin times)
# are whole milliseconds, so a provider whose records reach the broker within the
# millisecond they were born has a baseline of 0, and any 1 ms reading would be "over
# factor x 0". Below its resolution no latency is known to have grown.
RESOLUTION_NS = 1_000_000


class ProviderLatency(Alert):
    """A provider's recent origin → broker latency ``quantile`` over ``window`` above
    ``factor`` × the ``baseline_quantile`` of its own latency over the ``baseline`` before."""

    kind: Literal["provider_latency"]
    quantile: float = Field(default=0.99, gt=0, lt=1)
    factor: float = Field(default=5.0, gt=1, description="how many times the baseline")
    baseline_quantile: float = Field(default=0.5, gt=0, lt=1)
    window_ns: int = Field(default=60_000_000_000, alias="window")
    baseline_ns: int = Field(default=3_600_000_000_000, alias="baseline")
    min_events: int = Field(default=100, ge=1, description="records needed in each span")

    @field_validator("window_ns", "baseline_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int:
        return positive_dur(v)

    @model_validator(mode="after")
    def _longer_baseline(self) -> ProviderLatency:
        if self.baseline_ns <= self.window_ns:
            raise ValueError("baseline must be longer than window")
        return self


# ------------------------------------------------------------------ latency buckets


def bucket(latency_ns: int) -> int:
    """The bucket of a latency: 4 per power of two, by the two bits after the leading one."""
    if latency_ns < 4:
        return max(latency_ns, 0)
    top = latency_ns.bit_length() - 1
    return 4 * top + ((latency_ns >> (top - 2)) & 3) - 4


def upper_ns(b: int) -> int:
    """The largest latency (ns) of bucket ``b``."""
    if b < 4:
        return b
    top, sub = divmod(b + 4, 4)
    return ((5 + sub) << (top - 2)) - 1


def quantile_ns(counts: Mapping[int, int], q: float) -> int:
    """The ``q`` quantile of a bucket histogram, as its bucket's upper bound."""
    total = sum(counts.values())
    rank = q * total
    seen = 0
    for b in sorted(counts):
        seen += counts[b]
        if seen >= rank:
            return upper_ns(b)
    return upper_ns(max(counts))


def batch_facts(batch: BatchView) -> dict[str, dict[str, int]]:
    """Per provider, the histogram of the accepted records' latencies, origin → broker
    timestamp (origin → the gate's intake for a record without one); bucket as text: the
    facts may cross the facts topic as JSON."""
    per: dict[str, Counter[int]] = {}
    received, origins, broker_ms = batch.received_ns, batch.origins, batch.broker_ms
    for row in batch.accepted():
        origin = origins[row]
        if origin:
            ms = broker_ms[row] if broker_ms else 0
            end = ms * 1_000_000 if ms > 0 else received
            per.setdefault(batch.providers[row], Counter())[bucket(end - origin)] += 1
    return {p: {str(b): n for b, n in c.items()} for p, c in per.items()}


# ------------------------------------------------------------------ detection


class LatencyBaseline:
    """One ``provider_latency`` definition at the provider watch: per provider, latency
    histograms in slots of ``window / 4`` of intake time, as far back as the baseline
    reaches; judged per provider against its own baseline."""

    def __init__(self, d: ProviderLatency, context: WatchContext) -> None:
        self.d = d
        self.definitions = context.definitions
        self.slot_ns = max(d.window_ns // SLOTS_PER_WINDOW, 1)
        self.slots: dict[str, dict[int, Counter[int]]] = {}  # provider -> slot start -> counts
        self.now = 0  # the newest intake time seen: only facts move it
        self.life = Lifecycle.of(
            d,
            context.severity(d.id, d.severity),
            ttl_ns=d.baseline_ns + d.window_ns,
            max_instances=context.max_instances,
        )

    def add(self, at_ns: int, facts: object) -> list[Transition]:
        """One gate batch's histograms; judges the providers in it.

        Raises:
            ValueError: ``facts`` is not what :func:`batch_facts` makes.
        """
        if not isinstance(facts, dict):
            raise ValueError(f"not latency facts: {type(facts).__name__}")
        slot = at_ns - at_ns % self.slot_ns
        self.now = max(self.now, at_ns)
        judged = []
        for provider, counts in facts.items():
            if not isinstance(provider, str) or not isinstance(counts, dict):
                raise ValueError("not latency facts: provider -> {bucket: count}")
            venue = self._venue(provider)
            if venue is None:
                continue
            # A batch may come late (from another gate): it goes into its own slot.
            into = self.slots.setdefault(provider, {}).setdefault(slot, Counter())
            for b, n in counts.items():
                into[int(b)] += int(n)
            judged.append((provider, venue))
        out: list[Transition] = []
        for provider, venue in judged:
            out += self._judge(provider, venue, self.now)
        return out

    def tick(self, now_ns: int) -> list[Transition]:
        """Judge every provider at ``now_ns`` (or the newest intake time, if later): a
        provider whose batches stopped loses its recent window, and resolves."""
        now = max(now_ns, self.now)
        out: list[Transition] = []
        for provider in list(self.slots):
            venue = self._venue(provider)
            if venue is not None:
                out += self._judge(provider, venue, now)
        out += self.life.tick(now)
        return out

    def _venue(self, provider: str) -> str | None:
        """The provider's venue, or None when it is outside the definition's scope."""
        reg = self.definitions.provider(provider)
        venue = reg.venue if reg is not None else ""
        return venue if self.d.scope.matches(provider, venue) else None

    def _judge(self, provider: str, venue: str, now: int) -> list[Transition]:
        d = self.d
        slots = self.slots[provider]
        recent_from = now - d.window_ns
        baseline_from = recent_from - d.baseline_ns
        for start in [s for s in slots if s + self.slot_ns <= baseline_from]:
            del slots[start]  # past the baseline: forgotten (memory stays bounded)
        if not slots:
            del self.slots[provider]
        recent: Counter[int] = Counter()
        baseline: Counter[int] = Counter()
        for start, counts in slots.items():
            (recent if start >= recent_from else baseline).update(counts)
        n, base_n = recent.total(), baseline.total()
        labels: Labels = (("provider", provider), ("venue", venue))
        if n < d.min_events or base_n < d.min_events:
            return self.life.observe(labels, now, active=False)
        latency = quantile_ns(recent, d.quantile)
        usual = quantile_ns(baseline, d.baseline_quantile)
        figures = {
            "latency_ms": latency / 1e6,
            "baseline_ms": usual / 1e6,
            "events": n,
            "baseline_events": base_n,
        }
        active = latency > d.factor * max(usual, RESOLUTION_NS)
        value = latency / SECOND_NS
        return self.life.observe(labels, now, active=active, value=value, figures=figures)


def watch(d: ProviderLatency, context: WatchContext) -> LatencyBaseline:
    return LatencyBaseline(d, context)


# ------------------------------------------------------------------ export


def _quantile(q: float, sel: str, span: str, offset: str = "") -> str:
    rate = f"rate({METRIC}_bucket{sel}[{span}]{offset})"
    return f"histogram_quantile({q:g}, sum by (le, provider) ({rate}))"


def signal(d: ProviderLatency) -> PromSignal:
    sel = selector(matcher("provider", d.scope.providers))
    window = prometheus_duration(d.window_ns)
    # The baseline ends where the recent window begins, as in stream.
    usual = _quantile(
        d.baseline_quantile, sel, prometheus_duration(d.baseline_ns), f" offset {window}"
    )
    floor = RESOLUTION_NS / SECOND_NS  # as in stream: no baseline below the resolution
    return PromSignal(
        value=_quantile(d.quantile, sel, window),
        op=">",
        by=("provider",),
        threshold_vector=f"{d.factor:g} * clamp_min({usual}, {floor:g})",
    )


def case(d: ProviderLatency, definitions: AlertsFile) -> PromCase | None:
    """100 records every 15 s, all under 10 ms for ``baseline`` (the median 5 ms), then
    all between 0.1 and 1 s (the recent quantile 0.1 + 0.9 × q s), ``factor`` × the
    baseline's median below it."""
    subject = example_subject(d, definitions)
    slow_s = 0.1 + 0.9 * d.quantile
    if subject is None or d.factor * 0.01 >= slow_s:  # the baseline is at most 10 ms
        return None
    provider = subject[0]
    slow_from = ceil15(d.baseline_ns / SECOND_NS)
    window_s = d.window_ns / SECOND_NS
    fire_at = ceil15(slow_from + window_s + d.for_ns / SECOND_NS)
    # The slow records enter the baseline's median only once they are half of it.
    if fire_at - window_s - slow_from >= d.baseline_ns / SECOND_NS / 2:
        return None
    fast, slow = slow_from // 15, (fire_at - slow_from) // 15 + 4
    ident = f'provider="{provider}"'
    return PromCase(
        {
            f'{METRIC}_bucket{{{ident},le="0.01"}}': f"0+100x{fast} {fast * 100}+0x{slow}",
            f'{METRIC}_bucket{{{ident},le="0.1"}}': f"0+100x{fast} {fast * 100}+0x{slow}",
            f'{METRIC}_bucket{{{ident},le="1"}}': f"0+100x{fast + slow}",
            f'{METRIC}_bucket{{{ident},le="+Inf"}}': f"0+100x{fast + slow}",
        },
        fire_at,
        {"provider": provider},
        slow_s,
        quiet_at_s=slow_from,
    )


KIND = AlertKind(
    name="provider_latency",
    model=ProviderLatency,
    example={"window": "1m", "baseline": "10m"},
    detected_by="stampline.alerting._kinds.provider_latency:LatencyBaseline",
    signal=signal,
    case=case,
    summary="{provider}: origin → broker latency {value:.3f}s, over {factor:g} × its usual",
    notice="{provider} ({venue}): origin → broker latency {latency_ms:.1f} ms, "
    "usually {baseline_ms:.1f} ms",
    summary_figures=lambda d: {"factor": d.factor},
    grafana=GrafanaRule(
        # Gates export the histogram from their first accepted record on: none at all means
        # no gate runs, which collector_down reports.
        no_data="OK",
        group="providers",
        panel=("stampline-providers", "Provider latency p50 / p99 (origin → broker)"),
        investigate=command("stampline providers compare --since 1h"),
    ),
    provider_level=True,
    batch_facts=batch_facts,
    watch=watch,
)
