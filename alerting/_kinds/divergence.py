"""``divergence``: a divergence rule fails a key's records (already sustained by the rule's
own ``sustain``: a single spike never fails); see ``_kind.per_key``."""

from __future__ import annotations

from typing import Literal

from stampline.alerting._kinds._kind import RuleAlert, per_key


class Divergence(RuleAlert):
    """A divergence rule (already sustained by its own ``sustain``) fails a key's records."""

    kind: Literal["divergence"]


KIND = per_key(
    Divergence,
    "divergence",
    example={"scope": {"instrument": True}},
    summary="{provider}: diverging prices",
    notice="{provider}: price off the other providers' median",
    panel="Price ratio to the cross-provider median, per instrument",
    investigate="stampline providers compare --since 1h --by instrument",
)
