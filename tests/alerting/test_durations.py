"""The alerting duration parser is a copy of the rules' one (the import direction leaves no
shared home for it): the two must give the same answer, or the same refusal, for any input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stampline.alerting import duration_ns, prometheus_duration
from stampline.rules import parse_duration_ns

UNITS = ("ns", "us", "µs", "ms", "s", "m", "h", "d")
SAMPLES = [
    "250ms", "5m", "1h30m", "1.5s", "0", "0s", "7", "2.25", " 1 h 30 m ", "1d2h3m4s5ms6us7ns",
    "", "soon", "5 parsecs", "-1s", "1s-", "s", "1.s", ".5s", "1e3", "inf", "1ss",
    0, 1, 2.5, -1, float("inf"), float("nan"), True, None, [1], {"s": 1},
]  # fmt: skip


def outcome(parse: object, value: object) -> object:
    """What a parser makes of ``value``: nanoseconds, or that it refused."""
    try:
        return parse(value)  # type: ignore[operator]
    except ValueError:
        return "refused"


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_same_answer_as_the_rules_parser(value: object) -> None:
    """Known spellings, bad strings and non-strings: the same nanoseconds or both refuse."""
    assert outcome(duration_ns, value) == outcome(parse_duration_ns, value)


@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False),
            st.sampled_from(UNITS),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_same_answer_for_generated_durations(parts: list[tuple[object, str]]) -> None:
    """Any run of number+unit parts parses to the same nanoseconds in both."""
    text = "".join(f"{n}{u}" for n, u in parts)
    assert outcome(duration_ns, text) == outcome(parse_duration_ns, text)


def test_prometheus_spelling_round_trips() -> None:
    """A whole-millisecond duration written the Prometheus way parses back to itself."""
    for text in ("1m30s", "250ms", "2h", "1d1ms"):
        assert prometheus_duration(duration_ns(text)) == text
