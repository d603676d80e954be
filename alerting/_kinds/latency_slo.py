"""``latency_slo``: a stage's hold time at ``quantile`` over ``window`` above ``threshold``.

Judged by Prometheus from the sidecars' ``stampline_stage_latency_seconds`` histograms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from stampline._common import SECOND_NS, prometheus_duration
from stampline.alerting._kinds._kind import (
    PROMETHEUS,
    Alert,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    ceil15,
    command,
    dur,
    example_subject,
    matcher,
    selector,
)

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile


class LatencySlo(Alert):
    """A stage's hold time at ``quantile`` over ``window`` above ``threshold``."""

    kind: Literal["latency_slo"]
    quantile: float = Field(default=0.99, gt=0, lt=1)
    threshold_ns: int = Field(alias="threshold")
    window_ns: int = Field(default=300_000_000_000, alias="window")

    @field_validator("threshold_ns", "window_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int:
        return dur(v)


def signal(d: LatencySlo) -> PromSignal:
    w = prometheus_duration(d.window_ns)
    stage = f'stage="{d.scope.stage}"' if d.scope.stage else ""
    sel = selector(stage, matcher("provider", d.scope.providers))
    return PromSignal(
        value=(
            f"histogram_quantile({d.quantile:g}, sum by (le, stage, provider)"
            f" (rate(stampline_stage_latency_seconds_bucket{sel}[{w}])))"
        ),
        op=">",
        by=("stage", "provider"),
        threshold=d.threshold_ns / SECOND_NS,
    )


def case(d: LatencySlo, definitions: AlertsFile) -> PromCase | None:
    subject = example_subject(d, definitions)
    if subject is None:
        return None
    labels = {"stage": d.scope.stage or "gate", "provider": subject[0]}
    ident = ",".join(f'{k}="{v}"' for k, v in labels.items())
    t = d.threshold_ns / SECOND_NS
    fire_at = ceil15(60 + d.for_ns // SECOND_NS)
    n = fire_at // 15 + 4
    # Every event held between the threshold and 4 × it: any quantile is above it.
    bucket = "stampline_stage_latency_seconds_bucket"
    return PromCase(
        {
            f'{bucket}{{{ident},le="{t:g}"}}': f"0+0x{n}",
            f'{bucket}{{{ident},le="{4 * t:g}"}}': f"0+10x{n}",
            f'{bucket}{{{ident},le="+Inf"}}': f"0+10x{n}",
        },
        fire_at,
        labels,
        t + 3 * t * d.quantile,
    )


KIND = AlertKind(
    name="latency_slo",
    model=LatencySlo,
    example={"threshold": "250ms", "scope": {"stage": "gate"}},
    detected_by=PROMETHEUS,
    signal=signal,
    case=case,
    summary="{provider}: stage {stage} hold time above the SLO",
    grafana=GrafanaRule(
        no_data="OK",  # metrics of running sidecars: none means none runs (collector_down)
        group="pipeline",
        panel=("stampline-hotspots", "Hold time per stage (out − in), p99"),
        investigate=command("stampline hotspots --since 15m"),
    ),
)
