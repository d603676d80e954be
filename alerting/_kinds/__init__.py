"""The alert kinds: one module each, and :data:`KINDS`, the one registry of them.

Definitions (the discriminated union), the exported Prometheus rules and their ``promtool``
tests, the summaries, the in-stream detectors and the Grafana-managed rules all iterate
this registry instead of naming kinds. A new kind is one module here holding its
``KIND`` (see ``_kind.AlertKind``) and one line below.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from stampline.alerting._kinds import (
    clock_error,
    collector_down,
    completeness,
    divergence,
    dlq_rate,
    latency_slo,
    provider_latency,
    provider_silent,
    sequence_gap,
    stale,
    trail_lag,
)
from stampline.alerting._kinds._kind import AlertKind

# In the order a definition's error lists the kinds.
KINDS: Mapping[str, AlertKind] = MappingProxyType(
    {
        k.name: k
        for k in (
            provider_silent.KIND,
            sequence_gap.KIND,
            stale.KIND,
            divergence.KIND,
            latency_slo.KIND,
            dlq_rate.KIND,
            completeness.KIND,
            clock_error.KIND,
            trail_lag.KIND,
            collector_down.KIND,
            provider_latency.KIND,
        )
    }
)
