"""``completeness``: events lost between two stages.

**Detected** by the recorder, which sees every stage's trail rows: its stage-pair engine
(``alerting/_completeness.py``, ``CompletenessDetector``) matches each event's sightings at
two stages under per-source watermarks, judges it lost past a grace, and samples the lost
fraction per provider over a window. The engine stays outside this module because it is
the detection itself, not a decision of the kind: watermarks over the trail's sources,
bounded matching state, and a restart that replays the stored trail and reconciles with the
alert history (the store and Arrow, which no kind module needs). What is this kind's is the
:func:`stage_loss` of a definition: which two stages, how long an event may take between
them, and over how long the fraction is taken; the lifecycle's ``threshold`` is the
definition's.

**Exported** as the recorder's firing gauge, per provider, venue and stage pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from stampline._common import SECOND_NS
from stampline.alerting._kinds._kind import (
    NAME_PATTERN,
    Alert,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    StageLoss,
    command,
    firing_case,
    firing_signal,
    positive_dur,
)

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile


class Completeness(Alert):
    """Events lost between two stages: seen at ``from_stage`` and not at ``to_stage`` within
    ``grace`` (of the ``from_stage`` sighting, in event time); fires while the lost fraction
    of a provider's events over ``window`` is above ``threshold``. Judged by the recorder,
    which sees every stage's trail rows."""

    kind: Literal["completeness"]
    from_stage: str = Field(pattern=NAME_PATTERN)
    to_stage: str = Field(pattern=NAME_PATTERN)
    threshold: float = Field(gt=0, le=1, description="fraction of the events, e.g. 0.001")
    window_ns: int = Field(default=300_000_000_000, alias="window")
    grace_ns: int = Field(default=5_000_000_000, alias="grace")

    @field_validator("window_ns", "grace_ns", mode="before")
    @classmethod
    def _d(cls, v: Any) -> int:
        return positive_dur(v)

    @model_validator(mode="after")
    def _two_stages(self) -> Completeness:
        if self.from_stage == self.to_stage:
            raise ValueError("from_stage and to_stage must differ")
        return self


def signal(d: Completeness) -> PromSignal:
    return firing_signal(d, "from_stage", "to_stage")


def case(d: Completeness, definitions: AlertsFile) -> PromCase | None:
    return firing_case(d, definitions, from_stage=d.from_stage, to_stage=d.to_stage)


def stage_loss(d: Completeness) -> StageLoss:
    """An event seen at ``from_stage`` and not at ``to_stage`` within ``grace`` is lost; the
    lost fraction is taken over ``window``."""
    return StageLoss(d.from_stage, d.to_stage, d.grace_ns, d.window_ns)


def figures(d: Completeness) -> dict[str, float]:
    return {"window_s": d.window_ns / SECOND_NS, "grace_s": d.grace_ns / SECOND_NS}


KIND = AlertKind(
    name="completeness",
    model=Completeness,
    example={"from_stage": "gate", "to_stage": "risk", "threshold": 0.01},
    detected_by="stampline.alerting._completeness:CompletenessDetector",
    signal=signal,
    case=case,
    summary="{provider}: events lost between {from_stage} and {to_stage}",
    notice="{provider}: {lost} of {judged} events lost between {from_stage} and {to_stage}",
    summary_figures=figures,
    grafana=GrafanaRule(
        no_data="OK",  # the recorder's firing gauge: a series only while events are lost
        group="pipeline",
        panel=(
            "stampline-hotspots",
            "Hotspots: hops ranked by p99, trend against the window before",
        ),
        investigate=command("stampline completeness --since 1h"),
    ),
    firing_gauge=True,
    provider_level=True,
    stage_loss=stage_loss,
)
