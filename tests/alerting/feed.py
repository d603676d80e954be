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
    nan_price: tuple[str, str, int] | None = None  # provider, instrument, at ms: price NaN
    strays: tuple[Stray, ...] = ()  # records that must be refused, sent among the others
    notes: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Stray:
    """One more record of a key, sent right after the key's record at ``at`` ms (also while
    its provider is silent), dated ``shift`` ms off: a day ahead or behind is refused by the
    rules (``origin.window``); ``broken_stamps`` makes the gate itself refuse it (a record
    whose dating is within the window). It takes the key's next sequence number: it
    arrived, so nothing is missing."""

    provider: str
    instrument: str
    at: int
    shift: int
    broken_stamps: bool = False


DAY_MS = 86_400_000
Record = tuple[bytes, bytes] | tuple[bytes, bytes, list[tuple[str, bytes]]]


def feed(t0_ms: int, length_ms: int, faults: Faults) -> list[Record]:
    """(key, value[, headers]) records in event-time order; the key is provider/instrument,
    so each key lands on one partition. Send it in :func:`chunks` to play it as a live feed."""
    out: list[Record] = []
    seq = {(p, i): 0 for p in PROVIDERS for i in INSTRUMENTS}

    def price_of(p: str, i: str, step: int, at: int) -> float:
        price = 100.0 + (step % 40) * 0.05  # every provider agrees; bid/ask move
        div = faults.divergence
        if div and (p, i) == div[:2] and div[2] <= at < div[3]:
            price *= 1.10
        return price

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
                price = price_of(p, i, step, at)
                if faults.spike and (p, i, at) == faults.spike:
                    price *= 1.10
                if faults.gap and (p, i, at) == faults.gap[:3]:
                    seq[(p, i)] += faults.gap[3]
                record = quote(p, i, seq[(p, i)], t0_ms + at, price)
                seq[(p, i)] += 1
                value = orjson.dumps(record)
                if faults.nan_price and (p, i, at) == faults.nan_price:
                    # not JSON (orjson refuses it), yet it names its sequence number
                    value = value.replace(
                        b'"price":' + orjson.dumps(record["price"]), b'"price":NaN'
                    )
                out.append((f"{p}/{i}".encode(), value))
        for stray in (s for s in faults.strays if s.at == at):
            p, i = stray.provider, stray.instrument
            price = price_of(p, i, step, at)
            record = quote(p, i, seq[(p, i)], t0_ms + at + stray.shift, price)
            seq[(p, i)] += 1
            key, value = f"{p}/{i}".encode(), orjson.dumps(record)
            if stray.broken_stamps:
                headers = [("stampline.event_id", b"stray"), ("stampline.stamp", b"garbage")]
                out.append((key, value, headers))
            else:
                out.append((key, value))
    return out


def quote(p: str, i: str, seq: int, ts_ms: int, price: float) -> dict[str, object]:
    """One quote record of the feed."""
    return {
        "provider": p,
        "instrument": i,
        "seq": seq,
        "ts": ts_ms,
        "type": "quote",
        "price": round(price, 2),
        "bid": round(price - 0.01, 2),
        "ask": round(price + 0.01, 2),
        "quantity": 100,
    }


def t0_ms() -> int:
    """An event-time start a minute ago: inside the rules' freshness window."""
    return int(time.time() * 1000) - 60_000


def chunks(records: list[Record], per: int) -> list[list[Record]]:
    """The feed cut in slices of ``per`` records (a live feed arrives a little at a time, so
    no partition runs seconds of event time ahead of another)."""
    return [records[i : i + per] for i in range(0, len(records), per)]
