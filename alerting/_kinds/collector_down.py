"""``collector_down``: a sidecar's metrics endpoint stopped answering Prometheus
(``up == 0`` for the sidecars' scrape job). While it fires, provider-level alerts are
inhibited: a dead collector makes every provider look silent.
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


class CollectorDown(Alert):
    """A sidecar's metrics endpoint stopped answering Prometheus."""

    kind: Literal["collector_down"]
    job: str = Field(default="stampline", min_length=1)


def signal(d: CollectorDown) -> PromSignal:
    return PromSignal(f'up{{job="{d.job}"}}', "==", ("job", "instance"), threshold=0)


def case(d: CollectorDown, _definitions: AlertsFile) -> PromCase:
    fire_at = ceil15(30 + d.for_ns // SECOND_NS + 1)
    return PromCase(
        {f'up{{job="{d.job}",instance="gate-1:9464"}}': f"1 1 0+0x{fire_at // 15 + 4}"},
        fire_at,
        {"job": d.job, "instance": "gate-1:9464"},
        0,
        quiet_at_s=15,
    )


KIND = AlertKind(
    name="collector_down",
    model=CollectorDown,
    example={"job": "gates"},
    detected_by=PROMETHEUS,
    signal=signal,
    case=case,
    summary="{instance} is down",
    grafana=GrafanaRule(
        no_data="NoData",  # no `up` series for the job: Prometheus scrapes no sidecar of it
        group="pipeline",
        panel=("stampline-hotspots", "Gate throughput (events/s)"),
        investigate=command("stampline completeness --since 15m"),
    ),
    inhibits=True,
)
