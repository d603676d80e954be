"""``trail_lag``: the recorder (or a gate) behind its input by more than ``threshold``
records. Judged by Prometheus from the sidecars' ``stampline_consumer_lag`` gauges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from stampline._common import SECOND_NS
from stampline.alerting._kinds._kind import (
    PROMETHEUS,
    Alert,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    ceil15,
    command,
)

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile


class TrailLag(Alert):
    """The recorder (or a gate) behind its input by more than ``threshold`` records."""

    kind: Literal["trail_lag"]
    threshold: int = Field(ge=1, description="records behind the partition end")


def signal(d: TrailLag) -> PromSignal:
    return PromSignal(
        "max by (topic, partition) (stampline_consumer_lag)",
        ">",
        ("topic", "partition"),
        threshold=d.threshold,
    )


def case(d: TrailLag, _definitions: AlertsFile) -> PromCase:
    fire_at = ceil15(30 + d.for_ns // SECOND_NS + 1)
    lag = d.threshold * 2
    return PromCase(
        {'stampline_consumer_lag{topic="trail",partition="0"}': f"0 0 {lag}+0x{fire_at // 15 + 4}"},
        fire_at,
        {"topic": "trail", "partition": "0"},
        lag,
        quiet_at_s=15,
    )


KIND = AlertKind(
    name="trail_lag",
    model=TrailLag,
    example={"threshold": 10_000},
    detected_by=PROMETHEUS,
    signal=signal,
    case=case,
    summary="{topic}[{partition}]: consumer lag above the limit",
    grafana=GrafanaRule(
        no_data="OK",  # metrics of running sidecars: none means none runs (collector_down)
        group="pipeline",
        panel=("stampline-hotspots", "Consumer lag in seconds (records behind ÷ intake rate)"),
        investigate=command("stampline completeness --since 15m"),
    ),
)
