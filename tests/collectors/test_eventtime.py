"""Event time: watermarks, lateness and clock-offset estimates (property tests)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stampline import _native  # ./dev test builds it (it needs cargo): its absence is a failure
from stampline.collectors import EventTime

ALLOWED = 1_000


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 10_000)), max_size=200))
def test_lateness_is_the_distance_behind_the_providers_watermark_at_arrival(
    events: list[tuple[str, int]],
) -> None:
    """Each event's lateness is how far its origin is behind (newest earlier origin of its own
    provider - allowed lateness), never negative, and every event is judged (none dropped)."""
    et = EventTime(allowed_lateness_ns=ALLOWED)
    newest: dict[str, int] = {}
    for provider, origin in events:
        expected = max(0, newest[provider] - ALLOWED - origin) if provider in newest else 0
        assert et.observe(provider, origin, origin + 5) == expected
        newest[provider] = max(newest.get(provider, origin), origin)
        assert et.watermark_ns(provider) == newest[provider] - ALLOWED


@given(st.lists(st.integers(-5_000, 5_000), min_size=1, max_size=100))
def test_clock_offset_is_the_smallest_ingest_minus_origin_in_the_window(
    offsets: list[int],
) -> None:
    """Within one window the estimate is the minimum of ingested - origin seen so far."""
    et = EventTime(skew_window_ns=10**12)
    for i, off in enumerate(offsets):
        ingested = 10**9 + i
        et.observe("p", ingested - off, ingested)
    assert et.clock_offset_ns("p") == min(offsets)


def test_clock_offset_forgets_samples_older_than_the_window() -> None:
    """A provider whose clock was fixed stops looking skewed once the window has passed."""
    et = EventTime(skew_window_ns=1_000, buckets=10)
    et.observe("p", 0, 50)  # offset 50, then 10: the minimum wins while both are in window
    et.observe("p", 1_000, 1_010)
    assert et.clock_offset_ns("p") == 10
    et.observe("p", 5_000, 5_030)
    assert et.clock_offset_ns("p") == 30


def test_unknown_provider_has_no_watermark_and_a_flood_of_providers_is_capped() -> None:
    """Before its first event a provider has no watermark; past the cap new providers are not
    tracked (their events are judged on time) so state cannot grow without bound."""
    et = EventTime(max_providers=2)
    assert et.watermark_ns("x") is None
    for name in "abc":
        et.observe(name, 10_000_000_000, 10_000_000_001)
    assert sorted(et.providers) == ["a", "b"]
    assert et.observe("c", 0, 1) == 0


INT64 = st.integers(-(2**63), 2**63 - 1)


@given(
    settings_=st.tuples(
        st.integers(0, 10**10), st.integers(1, 10**12), st.integers(1, 20), st.integers(1, 3)
    ),
    events=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d", ""]),
            st.one_of(st.integers(-(10**12), 10**12), INT64),
            st.one_of(st.integers(-(10**12), 10**12), INT64),
            st.booleans(),
        ),
        max_size=120,
    ),
)
def test_the_compiled_event_time_answers_as_the_reference(
    settings_: tuple[int, int, int, int], events: list[tuple[str, int, int, bool]]
) -> None:
    """The gate's compiled route keeps event time in Rust (native/src/eventtime.rs): over any
    events, int64's extremes among them, it gives every answer the Python reference gives —
    lateness asked and accounted, watermarks, clock offsets, and the provider cap."""
    allowed, window, buckets, cap = settings_
    reference = EventTime(allowed, window, buckets, cap)
    compiled = _native.EventTime(allowed, window, buckets, cap)
    for provider, origin, ingested, account in events:
        assert compiled.late_ns(provider, origin) == reference.late_ns(provider, origin)
        if account:
            got = compiled.observe(provider, origin, ingested)
            assert got == reference.observe(provider, origin, ingested)
        for p in "abcd":
            assert compiled.watermark_ns(p) == reference.watermark_ns(p)
            assert compiled.clock_offset_ns(p) == reference.clock_offset_ns(p)
        assert len(compiled) == len(reference)
