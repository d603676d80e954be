"""A synthetic market-data feed with known faults, for the demo and the tests.

Providers quote the same instruments, numbered per provider and instrument. Injected:
one provider goes silent for a stretch, one runs with a skewed clock, one skips sequence
numbers on one instrument, one quotes one instrument far off the others for a stretch (a
sustained divergence) and another for a single round (a spike, which must not alert), and
bad records of ten kinds arrive, each with the rule id that must dead-letter it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

# kind -> the rule id the gate must file it under (see stampline/data/market_data.rules.yaml)
BAD_KINDS: dict[str, str] = {
    "malformed_json": "record.decode",
    "wrong_type": "contract.market_data",
    "nan_price": "record.non_finite",
    "infinite_quantity": "record.non_finite",
    "negative_quantity": "quantity.non_negative",
    "zero_price": "price.positive",
    "future_origin": "origin.window",
    "past_origin": "origin.window",
    "oversized": "record.size",
    "missing_origin": "record.origin",
}


@dataclass(frozen=True, slots=True)
class FeedPlan:
    providers: tuple[str, ...] = ("alpha", "bravo", "charlie")
    instruments: int = 50
    rounds: int = 40
    round_interval_s: float = 0.05
    silent_provider: str = "bravo"
    # [from, to) rounds with nothing from it: 12 rounds of 50 ms, past the demo's 500 ms gap.
    silent_rounds: tuple[int, int] = (10, 22)
    skewed_provider: str = "charlie"
    skew_ms: int = 250  # its clock runs ahead: origin later than truth
    # (provider, instrument index, round, numbers skipped): a sequence gap; None for none
    gap: tuple[str, int, int, int] | None = ("charlie", 5, 15, 3)
    # (provider, instrument index, from round, to round): prices 10% off the others' for
    # [from, to), 8 rounds (400 ms): longer than the divergence rule's sustain
    divergence: tuple[str, int, int, int] | None = ("alpha", 10, 25, 33)
    # (provider, instrument index, round): one price 10% off, one round only
    spike: tuple[str, int, int] | None = ("alpha", 20, 27)
    bad_per_kind: int = 2
    max_message_bytes: int = 16_384
    seed: int = 7


@dataclass(frozen=True, slots=True)
class FeedRecord:
    key: bytes
    value: bytes
    provider: str
    bad_kind: str | None  # None for a good record


def instrument_names(n: int) -> list[str]:
    return [f"SYM{i:03d}" for i in range(n)]


def generate(
    plan: FeedPlan,
    round_no: int,
    now_ms: int,
    rng: random.Random,
    state: dict[str, int],
    bad_slots: dict[tuple[int, str, int], str],
) -> Iterator[FeedRecord]:
    """The records of one round, stamped with origin ``now_ms`` (skewed where planned)."""
    for provider in plan.providers:
        lo, hi = plan.silent_rounds
        if provider == plan.silent_provider and lo <= round_no < hi:
            continue
        for i, instrument in enumerate(instrument_names(plan.instruments)):
            # Numbered per instrument, as market-data feeds usually are (and as the
            # sequence rule and `stampline completeness` key them by default).
            slot = f"{provider}/{instrument}"
            seq = state.get(slot, 0)
            if plan.gap is not None and (provider, i, round_no) == plan.gap[:3]:
                seq += plan.gap[3]  # numbers the provider never sent
            state[slot] = seq + 1
            origin = now_ms + (plan.skew_ms if provider == plan.skewed_provider else 0)
            mid = 100 + i + rng.random()
            if _off(plan, provider, i, round_no):
                mid *= 1.10
            event = {
                "provider": provider,
                "instrument": instrument,
                "seq": seq,
                "ts": origin,
                "type": "quote",
                "price": round(mid, 4),
                "quantity": rng.randint(1, 500) * 100,
                "bid": round(mid - 0.01, 4),
                "ask": round(mid + 0.01, 4),
            }
            kind = bad_slots.get((round_no, provider, i))
            key = f"{provider}:{instrument}".encode()
            yield FeedRecord(
                key, _spoil(event, kind, plan) if kind else orjson.dumps(event), provider, kind
            )


def _off(plan: FeedPlan, provider: str, i: int, round_no: int) -> bool:
    """Whether this quote is priced off the others' (the divergence or the spike)."""
    d, s = plan.divergence, plan.spike
    return (d is not None and (provider, i) == d[:2] and d[2] <= round_no < d[3]) or (
        s is not None and (provider, i, round_no) == s
    )


def faulty_keys(plan: FeedPlan) -> set[tuple[str, int]]:
    """(provider, instrument index) of the gap, the divergence and the spike."""
    return {f[:2] for f in (plan.gap, plan.divergence, plan.spike) if f is not None}


def plan_bad_slots(plan: FeedPlan, rng: random.Random) -> dict[tuple[int, str, int], str]:
    """Where each bad record goes: (round, provider, instrument index) -> kind. Never on a
    key that carries another fault (a bad record there would change what that fault shows)."""
    slots: dict[tuple[int, str, int], str] = {}
    lo, hi = plan.silent_rounds
    busy = faulty_keys(plan)
    candidates = [
        (r, p, i)
        for r in range(2, plan.rounds)
        for p in plan.providers
        if not (p == plan.silent_provider and lo <= r < hi)
        for i in range(plan.instruments)
        if (p, i) not in busy
    ]
    picks = rng.sample(candidates, plan.bad_per_kind * len(BAD_KINDS))
    for n, slot in enumerate(picks):
        slots[slot] = list(BAD_KINDS)[n % len(BAD_KINDS)]
    return slots


def _spoil(event: dict[str, object], kind: str, plan: FeedPlan) -> bytes:
    if kind == "malformed_json":
        return orjson.dumps(event)[:-7]  # cut off mid-record, as a broken serializer does
    if kind == "wrong_type":
        return orjson.dumps({**event, "price": str(event["price"])})
    if kind == "nan_price":
        return orjson.dumps(event).replace(
            b'"price":' + orjson.dumps(event["price"]), b'"price":NaN'
        )
    if kind == "infinite_quantity":
        return orjson.dumps(event).replace(
            b'"quantity":' + orjson.dumps(event["quantity"]), b'"quantity":Infinity'
        )
    if kind == "negative_quantity":
        return orjson.dumps({**event, "quantity": -abs(int(str(event["quantity"])))})
    if kind == "zero_price":
        return orjson.dumps({**event, "price": 0})
    if kind == "future_origin":
        return orjson.dumps({**event, "ts": int(str(event["ts"])) + 2 * 3_600_000})
    if kind == "past_origin":
        return orjson.dumps({**event, "ts": int(str(event["ts"])) - 3 * 86_400_000})
    if kind == "oversized":
        return orjson.dumps({**event, "venue": "X" * (plan.max_message_bytes + 1024)})
    if kind == "missing_origin":
        return orjson.dumps({k: v for k, v in event.items() if k != "ts"})
    raise ValueError(f"unknown bad-record kind {kind!r}")
