"""Clock-accuracy regimes: the tiers a stamp's bound and granularity are judged against.

A regime is versioned by the text that defines it, so a new RTS (or another regulator's
rule) is added as a new entry, and a report names the one it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tier:
    """One row of a regime: the largest divergence from UTC and the coarsest granularity."""

    name: str
    max_divergence_ns: int
    granularity_ns: int
    applies_to: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.name,
            "max_divergence_ns": self.max_divergence_ns,
            "granularity_ns": self.granularity_ns,
            "applies_to": self.applies_to,
        }


@dataclass(frozen=True, slots=True)
class Regime:
    id: str
    version: str
    title: str
    tiers: tuple[Tier, ...]

    def tier(self, name: str) -> Tier:
        """The tier called ``name``.

        Raises:
            ValueError: the regime has no such tier (the message lists those it has).
        """
        for t in self.tiers:
            if t.name == name:
                return t
        raise ValueError(
            f"regime {self.id}/{self.version} has no tier {name!r}; "
            f"choose one of {', '.join(t.name for t in self.tiers)}"
        )


# Commission Delegated Regulation (EU) 2017/574 (MiFID II RTS 25), Annex, Tables 1 and 2.
RTS25_2017 = Regime(
    id="rts25",
    version="2017/574",
    title="MiFID II RTS 25, Commission Delegated Regulation (EU) 2017/574",
    tiers=(
        Tier("hft", 100_000, 1_000, "high-frequency algorithmic trading technique"),
        Tier("other", 1_000_000, 1_000_000, "other trading activity"),
        Tier(
            "voice",
            1_000_000_000,
            1_000_000_000,
            "voice trading, request-for-quote with human intervention, "
            "non-algorithmic trading activity",
        ),
    ),
)

REGIMES: dict[str, Regime] = {f"{RTS25_2017.id}/{RTS25_2017.version}": RTS25_2017}
DEFAULT_REGIME = "rts25/2017/574"
DEFAULT_TIER = "other"


def regime(key: str) -> Regime:
    """The regime registered under ``key`` (``id/version``).

    Raises:
        ValueError: no such regime (the message lists the known ones).
    """
    try:
        return REGIMES[key]
    except KeyError:
        raise ValueError(f"unknown regime {key!r}; known: {', '.join(REGIMES)}") from None


# A Kafka timestamp is whole milliseconds: a time read from one (a tap's own sighting) has the
# broker's granularity, and the tap adds this much to its bound for it (collectors/_tap.py).
BROKER_RESOLUTION_NS = 1_000_000


def observed_granularity_ns(time_ns: int) -> int:
    """The coarsest granularity a stamp is consistent with: 10^k where its last k digits are 0.

    A stamp ending in ...123 ns proves its clock resolves nanoseconds; one ending in ...000
    could come from a microsecond clock. Over many stamps the smallest value is the evidence.
    """
    k = 0
    while k < 9 and time_ns % 10 ** (k + 1) == 0:
        k += 1
    return int(10**k)


def regime_tier(key: str, tier: str) -> tuple[Regime, Tier]:
    """The regime registered as ``key`` and its tier ``tier``.

    Raises:
        ValueError: either is unknown (the message lists the known ones).
    """
    r = regime(key)
    return r, r.tier(tier)
