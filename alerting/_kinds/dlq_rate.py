"""``dlq_rate``: dead letters as a fraction of a provider's records over ``window``, per rule.

Detected by the provider watch (a provider's records spread over every gate); exported as
dead letters per provider and rule over all records of the provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from stampline._common import SECOND_NS, prometheus_duration
from stampline.alerting._kinds._kind import (
    Alert,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    ceil15,
    command,
    dur,
    matcher,
    selector,
)

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile


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
    detected_by="stampline.alerting._watch:ProviderWatch",
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
)
