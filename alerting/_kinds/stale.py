"""``stale``: a stale rule fails a key's records; see ``_kind.per_key``."""

from __future__ import annotations

from typing import Literal

from stampline.alerting._kinds._kind import RuleAlert, per_key


class Stale(RuleAlert):
    """A stale rule fails a key's records."""

    kind: Literal["stale"]


KIND = per_key(
    Stale,
    "stale",
    example={},
    summary="{provider}: stale quotes",
    notice="{provider}: stale quotes",
    panel="Provider latency p50 / p99 (origin → broker)",
    investigate="stampline providers compare --since 1h",
)
