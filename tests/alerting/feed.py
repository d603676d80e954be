"""A market-data feed with faults injected at known event times, for the alerting tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

PROVIDERS = ("alpha", "beta", "gamma")
INSTRUMENTS = ("SYM001", "SYM002", "SYM003")
STEP_MS = 50  # each key updates every 50 ms of event time


@dataclass
class Faults:
    """Which faults to inject (all off: a clean feed of the same length)."""

    silent: tuple[str, int, int] | None = None  # provider, from ms, to ms (event time offsets)
    gap: tuple[str, str, int, int] | None = None  # provider, instrument, at ms, numbers skipped
    divergence: tuple[str, str, int, int] | None = None  # provider, instrument, from, to ms
    spike: tuple[str, str, int] | None = None  # provider, instrument, at ms: one record off
    notes: dict[str, object] = field(default_factory=dict)


def feed(t0_ms: int, length_ms: int, faults: Faults) -> list[tuple[bytes, bytes]]:
    """(key, value) records in event-time order; the key is provider/instrument, so each
    key lands on one partition. Send it in :func:`chunks` to play it as a live feed."""
    out: list[tuple[bytes, bytes]] = []
    seq = {(p, i): 0 for p in PROVIDERS for i in INSTRUMENTS}
    for step in range(length_ms // STEP_MS):
        at = step * STEP_MS
        for p in PROVIDERS:
            if (
                faults.silent
                and p == faults.silent[0]
                and faults.silent[1] <= at < faults.silent[2]
            ):
                continue
            for i in INSTRUMENTS:
                price = 100.0 + (step % 40) * 0.05  # every provider agrees; bid/ask move
                div = faults.divergence
                if div and (p, i) == div[:2] and div[2] <= at < div[3]:
                    price *= 1.10
                if faults.spike and (p, i, at) == faults.spike:
                    price *= 1.10
                if faults.gap and (p, i, at) == faults.gap[:3]:
                    seq[(p, i)] += faults.gap[3]
                record = {
                    "provider": p,
                    "instrument": i,
                    "seq": seq[(p, i)],
                    "ts": t0_ms + at,
                    "type": "quote",
                    "price": round(price, 2),
                    "bid": round(price - 0.01, 2),
                    "ask": round(price + 0.01, 2),
                    "quantity": 100,
                }
                seq[(p, i)] += 1
                out.append((f"{p}/{i}".encode(), orjson.dumps(record)))
    return out


def t0_ms() -> int:
    """An event-time start a minute ago: inside the rules' freshness window."""
    return int(time.time() * 1000) - 60_000


def chunks(records: list[tuple[bytes, bytes]], per: int) -> list[list[tuple[bytes, bytes]]]:
    """The feed cut in slices of ``per`` records (a live feed arrives a little at a time, so
    no partition runs seconds of event time ahead of another)."""
    return [records[i : i + per] for i in range(0, len(records), per)]
