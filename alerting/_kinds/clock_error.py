"""``clock_error``: a host's clock-error bound past the RTS 25 tier's limit (or an explicit
threshold). Judged by Prometheus from the bound each sidecar reports (read at start and
re-read while it runs, from its configuration or chrony).
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
    dur,
)

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile

# MiFID II RTS 25 (Delegated Regulation (EU) 2017/574): the maximum divergence from UTC.
RTS25_TIERS_NS = {"hft": 100_000, "other": 1_000_000, "voice": 1_000_000_000}
INVESTIGATE_LOOKBACK_NS = 3_600_000_000_000  # how far back an `investigate` command looks


class ClockError(Alert):
    """A host's clock-error bound past the RTS 25 tier's limit (or an explicit threshold)."""

    kind: Literal["clock_error"]
    tier: Literal["hft", "other", "voice"] = "other"
    threshold_ns: int | None = Field(default=None, alias="threshold")

    @field_validator("threshold_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int | None:
        return None if v is None else dur(v)

    @property
    def limit_ns(self) -> int:
        return self.threshold_ns if self.threshold_ns is not None else RTS25_TIERS_NS[self.tier]


def signal(d: ClockError) -> PromSignal:
    return PromSignal(
        "max by (host, stage) (stampline_clock_error_bound_seconds)",
        ">",
        ("host", "stage"),
        threshold=d.limit_ns / SECOND_NS,
    )


def case(d: ClockError, _definitions: AlertsFile) -> PromCase:
    bound = d.limit_ns / SECOND_NS * 2
    fire_at = ceil15(d.for_ns // SECOND_NS + 15)
    return PromCase(
        {
            'stampline_clock_error_bound_seconds{host="gate-1",stage="gate"}': (
                f"{bound:g}+0x{fire_at // 15 + 4}"
            )
        },
        fire_at,
        {"host": "gate-1", "stage": "gate"},
        bound,
    )


def investigate(d: ClockError, _definitions: AlertsFile) -> str:
    # Annotation templates see labels and values, never a time: the period is relative to
    # when the command runs, reaching back an hour beyond `for` (when the excursion began,
    # for a command run within the hour of the alert firing).
    lookback = prometheus_duration(INVESTIGATE_LOOKBACK_NS + d.for_ns)
    return (
        f"stampline evidence --period now-{lookback}..now"
        + " --host {{ $labels.host }}"
        + f" --tier {d.tier}"
    )


KIND = AlertKind(
    name="clock_error",
    model=ClockError,
    example={"tier": "hft"},
    detected_by=PROMETHEUS,
    signal=signal,
    case=case,
    summary="{host} ({stage}): clock-error bound above the RTS 25 limit",
    grafana=GrafanaRule(
        no_data="OK",  # metrics of running sidecars: none means none runs (collector_down)
        group="pipeline",
        panel=("stampline-compliance", "Clock-error bound per host vs the RTS 25 tiers"),
        investigate=investigate,
    ),
)
