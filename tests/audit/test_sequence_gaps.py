"""Sequence gaps per key, as a property: whatever numbers arrive, in whatever order and with
repeats, `completeness` finds exactly the missing runs and the repeats a plain count finds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.audit import PREV_ORIGIN, ChdbStore, Observation, completeness

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
HOUR = 3600 * 10**9

# per instrument: the numbers that arrive, in arrival order (repeats allowed)
feeds = st.dictionaries(
    st.sampled_from(["I0", "I1", "I2"]),
    st.lists(st.integers(0, 60), min_size=1, max_size=40),
    min_size=1,
)


def expected_gaps(numbers: list[int]) -> list[tuple[int, int]]:
    """(first missing, size) of each run missing between the lowest and highest number."""
    seen = sorted(set(numbers))
    return [(a + 1, b - a - 1) for a, b in pairwise(seen) if b - a > 1]


@pytest.fixture(scope="module")
def shared(chdb_dir: Path) -> Iterator[ChdbStore]:
    """One store for every example (each writes its own provider): a database each is slow."""
    with ChdbStore(chdb_dir, f"gaps_{uuid.uuid4().hex[:10]}") as store:
        yield store


@settings(max_examples=30, deadline=None)
@given(feed=feeds)
def test_every_gap_and_repeat_per_key_is_found(
    shared: ChdbStore, feed: dict[str, list[int]]
) -> None:
    """Gaps (first missing, size), lost and duplicated per key match a count done by hand."""
    provider = f"p{uuid.uuid4().hex[:8]}"
    rows = []
    t = T0
    for instrument, numbers in feed.items():
        for n in numbers:
            t += MS
            rows.append(
                Observation(
                    str(uuid.uuid4()),
                    "gate",
                    t,
                    t + 1000,
                    t - MS,
                    t,
                    1000,
                    provider=provider,
                    instrument=instrument,
                    seq=n,
                    outcome="forwarded",
                    prev_stage=PREV_ORIGIN,
                    prev_emitted_ns=t - MS,
                )
            )
    shared.write_observations(rows)
    result = completeness(shared, HOUR, grace_ns=0, gap_limit=100_000)
    got = sorted(
        (g["key"]["instrument"], g["first_missing"], g["size"])
        for g in result["sequence_gaps"]
        if g["key"]["provider"] == provider
    )
    want = sorted((i, *gap) for i, numbers in feed.items() for gap in expected_gaps(numbers))
    assert got == want
    (row,) = [r for r in result["rows"] if r["provider"] == provider]
    assert row["keys"] == len(feed)
    assert row["lost"] == sum(size for _i, _f, size in want)
    assert row["duplicated"] == sum(len(n) - len(set(n)) for n in feed.values())
