"""``provider_silent``: no event from a registered provider for longer than its ``max_gap``.

Detected by the provider watch (every gate's facts meet there; silence sends no events, so
only the clock reveals it). Exported as the seconds since the newest origin of each
registered provider over every gate (``max by (provider, venue)``, the scale-out
aggregation point), above its ``max_gap``, while its venue is in session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from stampline._common import SECOND_NS, prometheus_duration
from stampline.alerting._kinds._kind import (
    Alert,
    AlertKind,
    GrafanaRule,
    PromCase,
    PromSignal,
    ceil15,
    dur,
    matcher,
    selector,
)

if TYPE_CHECKING:
    from stampline.alerting._definitions import AlertsFile


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
    detected_by="stampline.alerting._watch:ProviderWatch",
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
)
