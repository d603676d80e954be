"""Origin times in every unit, and human durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.rules import OriginUnit, origin_ns, parse_duration_ns

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z, in seconds
UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
LAST_NS = 2**63 - 1  # the last instant DateTime64(9) can hold: 2262-04-11T23:47:16.854775807Z
STORABLE_NS = st.integers(min_value=0, max_value=LAST_NS)


class TestOriginNumbers:
    @pytest.mark.parametrize(
        ("value", "unit"),
        [
            (T0, "s"),
            (T0 * 1_000, "ms"),
            (T0 * 1_000_000, "us"),
            (T0 * 1_000_000_000, "ns"),
        ],
    )
    def test_integer_in_each_unit(self, value: int, unit: OriginUnit) -> None:
        """An integer origin is scaled from its unit to nanoseconds exactly."""
        assert origin_ns(value, unit) == T0 * 1_000_000_000

    def test_nanoseconds_are_kept_exactly(self) -> None:
        """A nanosecond origin beyond float precision keeps every digit."""
        assert origin_ns(1_700_000_000_123_456_789, "ns") == 1_700_000_000_123_456_789

    @pytest.mark.parametrize(
        ("value", "unit", "expected"),
        [
            (1.5, "s", 1_500_000_000),
            (0.25, "ms", 250_000),
            (0.001, "us", 1),
            (0.0004, "us", 0),
            (2.0, "ns", 2),
        ],
    )
    def test_float_in_each_unit(self, value: float, unit: OriginUnit, expected: int) -> None:
        """A float origin is scaled and rounded to the nearest nanosecond."""
        assert origin_ns(value, unit) == expected

    def test_storable_range_ends(self) -> None:
        """The epoch and the last nanosecond a signed 64-bit count can hold are accepted."""
        assert origin_ns(0, "ms") == 0
        assert origin_ns(LAST_NS, "ns") == LAST_NS
        assert origin_ns(LAST_NS // 1_000_000, "ms") == LAST_NS // 1_000_000 * 1_000_000

    @pytest.mark.parametrize(
        ("value", "unit"),
        [(-1, "s"), (-0.5, "ms"), (2**63, "ns"), (LAST_NS // 1_000_000 + 1, "ms"), (1e303, "ms")],
        ids=["before-1970", "negative-float", "int64-overflow", "ms-past-2262", "huge-float"],
    )
    def test_origins_the_trail_cannot_store_are_rejected(
        self, value: float, unit: OriginUnit
    ) -> None:
        """An origin before 1970 or after 2262 (outside DateTime64(9)) is a ValueError."""
        with pytest.raises(ValueError, match="is outside the range the trail can store") as caught:
            origin_ns(value, unit)
        assert str(caught.value).startswith(f"{value!r} {unit} ")

    @pytest.mark.parametrize("value", [True, False])
    @pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
    def test_booleans_are_rejected(self, value: bool, unit: OriginUnit) -> None:
        """A boolean is not taken as 1 or 0 of any unit."""
        with pytest.raises(ValueError, match=f"^{value!r} is not a number of {unit}$"):
            origin_ns(value, unit)

    @pytest.mark.parametrize("value", ["1700000000000", None, [1], {"ms": 1}])
    def test_non_numbers_are_rejected(self, value: object) -> None:
        """A string, None, a list or an object is not a number of milliseconds."""
        with pytest.raises(ValueError, match="is not a number of ms"):
            origin_ns(value, "ms")

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_non_finite_floats_are_rejected(self, value: float) -> None:
        """NaN and infinities are not origin times."""
        with pytest.raises(ValueError, match="is not finite"):
            origin_ns(value, "s")

    @settings(database=None)
    @given(st.integers(min_value=0, max_value=LAST_NS // 1_000_000))
    def test_integer_milliseconds_scale_exactly(self, ms: int) -> None:
        """For every storable integer, origin_ns(ms) is exactly ms * 1,000,000."""
        assert origin_ns(ms, "ms") == ms * 1_000_000

    @settings(database=None)
    @given(
        value=st.floats(min_value=1.0e12, max_value=2.0e12, allow_nan=False),
        unit=st.sampled_from(["ms", "s"]),
    )
    def test_float_origins_round_the_exact_value(self, value: float, unit: OriginUnit) -> None:
        """A present-day float origin (ms or s) is the float's exact value rounded to the ns."""
        if unit == "s":
            value /= 1_000
        exact = Fraction(value) * {"s": 10**9, "ms": 10**6}[unit]
        assert origin_ns(value, unit) == round(exact)

    @pytest.mark.parametrize(
        ("value", "unit", "expected"),
        [
            (1_700_000_000_123.0, "ms", 1_700_000_000_123_000_000),
            (1_700_000_000.25, "s", 1_700_000_000_250_000_000),
            (1_700_000_000_123.5, "ms", 1_700_000_000_123_500_000),
        ],
        ids=["whole-ms-as-float", "quarter-second", "half-ms"],
    )
    def test_exact_float_origins_convert_exactly(
        self, value: float, unit: OriginUnit, expected: int
    ) -> None:
        """A float origin that binary represents exactly converts to the exact nanosecond."""
        assert origin_ns(value, unit) == expected


class TestOriginIso8601:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2023-11-14T22:13:20Z", T0 * 10**9),
            ("2023-11-14T22:13:20+00:00", T0 * 10**9),
            ("2023-11-14T23:13:20+01:00", T0 * 10**9),
            ("2023-11-14T16:43:20-05:30", T0 * 10**9),
            ("2023-11-14T22:13:20.5Z", T0 * 10**9 + 500_000_000),
            ("2023-11-14T22:13:20.123456Z", T0 * 10**9 + 123_456_000),
            ("2023-11-14T22:13:20.123456789Z", T0 * 10**9 + 123_456_789),
            ("2023-11-15T00:13:20.000000001+02:00", T0 * 10**9 + 1),
            ("1970-01-01T00:00:00Z", 0),
            ("2262-04-11T23:47:16.854775807Z", LAST_NS),
        ],
        ids=[
            "z",
            "utc-offset",
            "plus-one",
            "minus-half-hour",
            "tenths",
            "micros",
            "nanos",
            "nanos-offset",
            "epoch",
            "last-storable",
        ],
    )
    def test_iso_times(self, text: str, expected: int) -> None:
        """An ISO-8601 time with 'Z' or an offset is read to the nanosecond."""
        assert origin_ns(text, "iso8601") == expected

    def test_more_than_nine_fraction_digits_are_cut_to_nanoseconds(self) -> None:
        """Fraction digits past the ninth are dropped, not rounded."""
        assert origin_ns("2023-11-14T22:13:20.1234567899Z", "iso8601") == T0 * 10**9 + 123_456_789

    @pytest.mark.parametrize(
        "text", ["1969-12-31T23:59:59.5Z", "1900-01-01T00:00:00+00:00", "2262-04-11T23:47:17Z"]
    )
    def test_iso_time_outside_the_storable_range_is_rejected(self, text: str) -> None:
        """An ISO-8601 time before 1970 or after 2262-04-11 is refused."""
        with pytest.raises(ValueError, match="is outside the range the trail can store"):
            origin_ns(text, "iso8601")

    @pytest.mark.parametrize("text", ["2023-11-14T22:13:20", "2023-11-14T22:13:20.123456789"])
    def test_iso_time_without_zone_is_rejected(self, text: str) -> None:
        """An ISO-8601 time that does not say its zone is refused."""
        with pytest.raises(ValueError, match="has no time zone"):
            origin_ns(text, "iso8601")

    @pytest.mark.parametrize("text", ["yesterday", "", "2023-13-40T99:00:00Z", "1700000000"])
    def test_text_that_is_not_iso_is_rejected(self, text: str) -> None:
        """Text that is not an ISO-8601 time is refused."""
        with pytest.raises(ValueError, match="is not an ISO-8601 time"):
            origin_ns(text, "iso8601")

    @pytest.mark.parametrize("value", [T0, 1.5, True, None])
    def test_iso_unit_wants_a_string(self, value: object) -> None:
        """With unit iso8601, numbers and booleans are refused."""
        with pytest.raises(ValueError, match="is not an ISO-8601 string"):
            origin_ns(value, "iso8601")

    @settings(database=None)
    @given(
        ns=STORABLE_NS, offset_minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59)
    )
    def test_iso_text_round_trips_to_the_nanosecond(self, ns: int, offset_minutes: int) -> None:
        """Any instant written as ISO-8601 with nine fraction digits, in any offset, reads back."""
        seconds, fraction = divmod(ns, 10**9)
        zone = timezone(timedelta(minutes=offset_minutes))
        moment = datetime.fromtimestamp(seconds, UTC).astimezone(zone)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}" + moment.strftime("%z")
        assert origin_ns(text, "iso8601") == ns
        if offset_minutes == 0:
            assert origin_ns(text[:-5] + "Z", "iso8601") == ns


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("250ms", 250_000_000),
            ("5m", 300_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1h 30m", 5_400_000_000_000),
            ("1.5s", 1_500_000_000),
            ("2d", 172_800_000_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            ("0s", 0),
            (" 2s ", 2_000_000_000),
            ("1m30s250ms", 90_250_000_000),
            ("0.071m", 4_260_000_000),
            ("0.3s", 300_000_000),
        ],
    )
    def test_duration_strings(self, text: str, expected: int) -> None:
        """Durations with units, compound or fractional, are read in nanoseconds."""
        assert parse_duration_ns(text) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [(5, 5_000_000_000), (0, 0), (0.25, 250_000_000), (1.5, 1_500_000_000)],
    )
    def test_numbers_are_seconds(self, value: float, expected: int) -> None:
        """A bare number is a number of seconds."""
        assert parse_duration_ns(value) == expected

    @pytest.mark.parametrize("value", [-1, -0.5, "-5s", "-1m"])
    def test_negative_durations_are_rejected(self, value: object) -> None:
        """Negative durations are refused, as numbers or as text."""
        with pytest.raises(ValueError, match=r"negative|is not a duration"):
            parse_duration_ns(value)

    def test_bare_number_text_is_seconds(self) -> None:
        """A number written as text (as environment variables are) means seconds, as in YAML."""
        assert parse_duration_ns("5") == 5_000_000_000
        assert parse_duration_ns(" 0.25 ") == 250_000_000

    @pytest.mark.parametrize(
        "value",
        [
            "5 parsecs",
            "",
            "   ",
            "abc",
            "-5",
            "1.5.5s",
            "s",
            "1e3s",
            "5m later",
            "ms5",
            True,
            None,
            [1],
        ],
    )
    def test_garbage_is_rejected(self, value: object) -> None:
        """Anything that is not a number or a duration with units is refused, naming the value."""
        with pytest.raises(ValueError, match="is not a duration") as caught:
            parse_duration_ns(value)
        assert repr(value) in str(caught.value)

    @pytest.mark.parametrize("value", [float("inf"), float("nan")])
    def test_non_finite_numbers_are_rejected(self, value: float) -> None:
        """An infinite or NaN duration is refused with ValueError."""
        with pytest.raises(ValueError, match=f"^duration {value!r} is not finite$"):
            parse_duration_ns(value)

    @settings(database=None)
    # Up to a million of any unit (2,700 years in days): within float-exact range of the parser.
    @given(n=st.integers(min_value=0, max_value=10**6), unit=st.sampled_from(sorted(UNIT_NS)))
    def test_whole_number_of_a_unit_round_trips(self, n: int, unit: OriginUnit) -> None:
        """For every whole n and unit, '<n><unit>' is n times the unit in nanoseconds."""
        assert parse_duration_ns(f"{n}{unit}") == n * UNIT_NS[unit]

    @settings(database=None)
    @given(
        h=st.integers(min_value=0, max_value=10_000),
        m=st.integers(min_value=0, max_value=59),
        s=st.integers(min_value=0, max_value=59),
        ms=st.integers(min_value=0, max_value=999),
    )
    def test_compound_duration_is_the_sum_of_its_parts(
        self, h: int, m: int, s: int, ms: int
    ) -> None:
        """'<h>h<m>m<s>s<ms>ms' is the sum of its parts."""
        expected = h * UNIT_NS["h"] + m * UNIT_NS["m"] + s * UNIT_NS["s"] + ms * UNIT_NS["ms"]
        assert parse_duration_ns(f"{h}h{m}m{s}s{ms}ms") == expected
