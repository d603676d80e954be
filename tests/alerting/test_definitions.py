"""Alert definitions files: what loads, and the errors (file:line, key, value) for what does not."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from stampline._feed import FeedPlan
from stampline.alerting import (
    AlertsFile,
    DefinitionError,
    ProviderSilent,
    SequenceGap,
    decide_severity,
    in_session,
    load_alerts,
    parse_alerts,
    read_ical,
)

PACKAGED = Path(str(resources.files("stampline").joinpath("data", "market_data.alerts.yaml")))

GOOD = """\
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 5s, calendar: lse}
calendars:
  lse:
    timezone: Europe/London
    sessions: [{days: [mon, tue, wed, thu, fri], start: "08:00", end: "16:30"}]
alerts:
  - id: provider.silent
    kind: provider_silent
    for: 1s
    keep_firing_for: 500ms
  - {id: seq.gap, kind: sequence_gap, rule: seq.*, min_missing: 2}
"""


def errors(text: str) -> list[str]:
    """The problems ``parse_alerts`` reports for ``text``."""
    with pytest.raises(DefinitionError) as caught:
        parse_alerts(text, "a.yaml")
    return caught.value.problems


def test_packaged_definitions_load() -> None:
    """The demo's packaged alerts file parses, one definition per kind it lists, and expects
    exactly the providers the demo feed (`stampline demo-feed`) publishes."""
    parsed = load_alerts(PACKAGED)
    assert {a.kind for a in parsed.alerts} >= {"provider_silent", "sequence_gap", "divergence"}
    assert tuple(p.provider for p in parsed.providers) == FeedPlan().providers
    assert all(p.venue for p in parsed.providers)


def test_durations_and_kinds_are_parsed() -> None:
    """Durations become nanoseconds and each kind its own model."""
    parsed = parse_alerts(GOOD)
    assert isinstance(parsed, AlertsFile)
    silent, gap = parsed.alerts
    assert isinstance(silent, ProviderSilent)
    assert (silent.for_ns, silent.keep_firing_for_ns) == (1_000_000_000, 500_000_000)
    assert isinstance(gap, SequenceGap)
    assert (gap.rule, gap.min_missing) == ("seq.*", 2)
    assert parsed.providers[0].max_gap_ns == 5_000_000_000


def test_bad_duration_names_line_key_and_value() -> None:
    """A bad duration is reported with its file:line, key path and the value given."""
    text = GOOD.replace("for: 1s", "for: soon")
    (problem,) = errors(text)
    assert problem.startswith("a.yaml:11: alerts.0.for: ")
    assert "'soon'" in problem


def test_unknown_key_and_kind_are_named() -> None:
    """An unknown key and an unknown kind each name the key and the bad value."""
    problems = errors(GOOD.replace("min_missing: 2", "min_missing: 2, colour: red"))
    assert any("alerts.1.colour: unknown key" in p and ":13:" in p for p in problems)
    problems = errors(GOOD.replace("kind: sequence_gap", "kind: sequence_gaps"))
    assert any("alerts.1" in p and "'sequence_gaps'" in p for p in problems)


def test_missing_calendar_and_duplicates_are_refused() -> None:
    """A provider naming an undefined calendar, and a repeated alert id, are problems."""
    (problem,) = errors(GOOD.replace("calendar: lse", "calendar: nyse"))
    assert "calendar 'nyse'" in problem
    twice = GOOD + "  - {id: seq.gap, kind: stale}\n"
    assert any("duplicate alert id(s) seq.gap" in p for p in errors(twice))


def test_bad_time_zone_and_time_of_day() -> None:
    """A calendar's unknown time zone and a malformed session time are named with the value."""
    problems = errors(GOOD.replace("Europe/London", "Mars/Olympus"))
    assert any("calendars.lse.timezone" in p and "Mars/Olympus" in p for p in problems)
    problems = errors(GOOD.replace('"16:30"', '"16h30"'))
    assert any("calendars.lse.sessions.0.end" in p and "16h30" in p for p in problems)
    problems = errors(GOOD.replace('"16:30"', '"16:30\\n"'))  # `$` once let it in
    assert any("calendars.lse.sessions.0.end" in p and "16:30\\n" in p for p in problems)


def test_not_yaml_and_not_a_mapping() -> None:
    """Text that is not YAML names its line; a list at the top is refused."""
    (problem,) = errors("version: 1\nalerts: [\n")
    assert problem.startswith("a.yaml:")
    assert "not valid YAML" in problem
    (problem,) = errors("- 1\n")
    assert "mapping" in problem


def test_unreadable_file(tmp_path: Path) -> None:
    """A file that does not exist is a DefinitionError naming it."""
    with pytest.raises(DefinitionError, match="cannot read"):
        load_alerts(tmp_path / "nope.yaml")


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1e9)


class TestCalendars:
    def test_session_in_venue_time_zone(self) -> None:
        """A London session is judged in London time (BST in summer, GMT in winter)."""
        cal = parse_alerts(GOOD).calendars["lse"]
        assert in_session(cal, _ns("2026-07-01T07:30:00+00:00"))  # 08:30 BST
        assert not in_session(cal, _ns("2026-01-07T07:30:00+00:00"))  # 07:30 GMT
        assert not in_session(cal, _ns("2026-07-04T10:00:00+00:00"))  # a Saturday

    def test_overnight_session(self) -> None:
        """A session ending before it starts runs past midnight into the next day."""
        text = GOOD.replace('start: "08:00", end: "16:30"', 'start: "22:00", end: "02:00"')
        cal = parse_alerts(text).calendars["lse"]
        assert in_session(cal, _ns("2026-01-06T01:00:00+00:00"))  # Tuesday 01:00, Monday's
        assert not in_session(cal, _ns("2026-01-05T01:00:00+00:00"))  # Monday 01:00: Sunday's

    def test_evaluation_order(self) -> None:
        """Dismissals downgrade unless volatile; an event downgrades; a quiet period escalates."""
        text = GOOD.replace(
            'end: "16:30"}]',
            'end: "16:30"}]\n    quiet: [{start: "12:00", end: "13:00"}]\n'
            '    events: [{name: Fed, start: "2026-01-07T19:00:00Z", end: "2026-01-07T19:30:00Z"}]',
        )
        cal = parse_alerts(text).calendars["lse"]
        plain = _ns("2026-01-07T10:00:00+00:00")
        assert decide_severity("warning", calendar=cal, at_ns=plain).severity == "warning"
        quiet = _ns("2026-01-07T12:15:00+00:00")
        assert decide_severity("warning", calendar=cal, at_ns=quiet).severity == "critical"
        fed = _ns("2026-01-07T19:10:00+00:00")
        assert decide_severity("warning", calendar=cal, at_ns=fed).severity == "info"
        learned = decide_severity(
            "critical", calendar=cal, at_ns=plain, dismissed_expected=3, downgrade_after=3
        )
        assert learned.severity == "warning"
        volatile = decide_severity(
            "critical", calendar=cal, at_ns=plain, dismissed_expected=3, volatile=True
        )
        assert volatile.severity == "critical"
        both = decide_severity("critical", calendar=cal, at_ns=fed, dismissed_expected=5)
        assert both.severity == "info"  # two steps down, clamped at info
        assert len(both.why) == 2

    def test_ical_events(self, tmp_path: Path) -> None:
        """VEVENTs of an iCalendar file become scheduled events with their summaries."""
        ics = tmp_path / "cb.ics"
        ics.write_text(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:FOMC state\r\n ment\r\n"
            "DTSTART:20260128T190000Z\r\nDTEND:20260128T193000Z\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n"
        )
        (event,) = read_ical(ics)
        assert event.name == "FOMC statement"
        assert event.start == datetime(2026, 1, 28, 19, tzinfo=UTC)
        ics.write_text("BEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\n")
        with pytest.raises(DefinitionError, match=r"cb.ics:1: VEVENT"):
            read_ical(ics)
