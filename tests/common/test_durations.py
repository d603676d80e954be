"""One duration parser and its two spellings back, in the leaf package, for every component."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stampline.alerting
import stampline.rules
from stampline._common import (
    SECOND_NS,
    format_duration,
    parse_duration_ns,
    prometheus_duration,
)


def test_the_components_export_the_one_parser() -> None:
    """The rules' and alerting's public duration names are the leaf's functions, not copies."""
    assert stampline.rules.parse_duration_ns is parse_duration_ns
    assert stampline.rules.format_duration is format_duration
    assert stampline.alerting.duration_ns is parse_duration_ns
    assert stampline.alerting.prometheus_duration is prometheus_duration


@pytest.mark.parametrize("value", [Fraction(1, 2), True, False, None, [1], {"s": 1}, b"5s"])
def test_only_numbers_and_text_are_durations(value: object) -> None:
    """A value that is neither an int, a float nor a text (a Fraction, a bool) is refused."""
    with pytest.raises(ValueError, match=r"is not a duration \(use e\.g\. 250ms, 5m, 1h\)$"):
        parse_duration_ns(value)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999))
def test_a_number_of_seconds_and_its_text_agree(whole: int, milli: int) -> None:
    """A number of seconds reads the same as a number, as its text, and with the unit ``s``."""
    text = f"{whole}.{milli:03d}"
    expected = whole * SECOND_NS + milli * 1_000_000
    assert parse_duration_ns(text) == parse_duration_ns(f"{text}s") == expected
    assert parse_duration_ns(whole) == whole * SECOND_NS


def test_prometheus_spelling_round_trips() -> None:
    """A whole-millisecond duration written the Prometheus way parses back to itself."""
    for text in ("1m30s", "250ms", "2h", "1d1ms"):
        assert prometheus_duration(parse_duration_ns(text)) == text


def test_prometheus_spelling_has_no_sub_millisecond_part() -> None:
    """Below a millisecond Prometheus cannot say it: the duration rounds to milliseconds."""
    assert prometheus_duration(0) == "0s"
    assert prometheus_duration(400_000) == "0s"
    assert prometheus_duration(1_600_000) == "2ms"
