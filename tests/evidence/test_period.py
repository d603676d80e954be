"""Clock compliance over a period, on a trail with a known excursion beyond the tier."""

from __future__ import annotations

import re
import shlex
import time
import uuid
from pathlib import Path

import fastjsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stampline.alerting import parse_alerts
from stampline.audit import ChdbStore, ClockBound, Observation, format_ns
from stampline.cli import app
from stampline.dashboards import (
    GrafanaSettings,
    grafana_alerting,
)
from stampline.evidence import (
    EVIDENCE_JSON_SCHEMA,
    Context,
    parse_period,
    period_evidence,
    regime_tier,
    render_html,
)

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
MS = 1_000_000
CHRONY = ClockBound(200_000, "chrony", "", 150_000, 30_000, 40_000).label()
PERIOD = "2023-11-14T22:13:20Z..2023-11-14T22:13:21Z"

runner = CliRunner()


def _stamps(
    host: str, bounds: list[int], source: str, emitted_extra: int, t0: int = T0
) -> list[Observation]:
    return [
        Observation(
            str(uuid.uuid4()), "gate", t0 + i * 10 * MS, t0 + i * 10 * MS + emitted_extra,
            t0 + i * 10 * MS - MS, t0 + i * 10 * MS, bound, host=host, clock_source=source,
            outcome="forwarded",
        )
        for i, bound in enumerate(bounds)
    ]  # fmt: skip


@pytest.fixture
def clocks(store: ChdbStore) -> ChdbStore:
    """gw-1: 100 stamps 10 ms apart, 50 µs bounds except stamps 30-49 (3 ms, 5 ms at 40);
    gw-2: 10 stamps within the tier from chrony; gw-3: its last 3 of 10 stamps out."""
    gw1 = [50_000] * 100
    gw1[30:50] = [3 * MS] * 20
    gw1[40] = 5 * MS
    store.write_observations(_stamps("gw-1", gw1, "configured", 1_234))
    store.write_observations(_stamps("gw-2", [200_000] * 10, CHRONY, 1_000))
    store.write_observations(
        _stamps("gw-3", [50_000] * 7 + [2 * MS] * 3, "fallback: chronyc not found", 7)
    )
    return store


def _ctx() -> Context:
    reg, tier = regime_tier("rts25/2017/574", "other")
    return Context("stampline test", reg, tier, "--store x")


def _clock(doc: dict, host: str) -> dict:  # type: ignore[type-arg]
    return next(c for c in doc["clocks"] if c["host"] == host)


def test_the_known_excursion_is_reported_with_its_span_and_peak(clocks: ChdbStore) -> None:
    """gw-1's bound exceeds 1 ms from stamp 30 to 49: one excursion, 300 ms to 500 ms, peak
    5 ms; 80% of stamps within the tier, and all but 200 ms of the 990 ms they cover."""
    lo, hi = parse_period(PERIOD)
    doc = period_evidence(clocks, lo, hi, _ctx()).to_dict()
    gw1 = _clock(doc, "gw-1")
    assert gw1["excursions"] == [
        {
            "start": format_ns(T0 + 300 * MS),
            "start_ns": T0 + 300 * MS,
            "end": format_ns(T0 + 500 * MS),
            "end_ns": T0 + 500 * MS,
            "duration_ns": 200 * MS,
            "peak_ns": 5 * MS,
            "stamps": 20,
            "ongoing_at_last_stamp": False,
        }
    ]
    assert gw1["stamps"] == 100
    assert gw1["within_tier_stamps_share"] == pytest.approx(0.8)
    # over what the stamps cover, first (0 ms) to last (990 ms)
    assert gw1["within_tier_time_share"] == pytest.approx(1 - 200 / 990)
    # quantileExact takes the value at floor(0.99 * 100): the 100th of 100, the peak
    assert gw1["bound_ns"] == {"min": 50_000, "p50": 50_000, "p99": 5 * MS, "max": 5 * MS}
    assert gw1["observed_granularity_ns"] == 1
    assert gw1["sources"] == [{"kind": "configured", "stamps": 100, "max_bound_ns": 5 * MS}]


def test_a_clean_host_has_no_excursion_and_its_chrony_source_is_listed(clocks: ChdbStore) -> None:
    """gw-2 stays within the tier; its stamps show microsecond granularity and chrony."""
    lo, hi = parse_period(PERIOD)
    gw2 = _clock(period_evidence(clocks, lo, hi, _ctx()).to_dict(), "gw-2")
    assert gw2["excursions"] == []
    assert gw2["within_tier_time_share"] == 1.0
    assert gw2["observed_granularity_ns"] == 1_000
    assert gw2["sources"] == [
        {"kind": "chrony", "stamps": 10, "max_bound_ns": 200_000, "offset_ns": 150_000}
    ]


def test_an_excursion_still_open_at_the_last_stamp_ends_there(clocks: ChdbStore) -> None:
    """gw-3's last three stamps are out: the excursion runs from stamp 7 to stamp 9, the last
    one seen (after it the clock's state is not known, so not counted either way)."""
    lo, hi = parse_period(PERIOD)
    doc = period_evidence(clocks, lo, hi, _ctx(), host="gw-3").to_dict()
    assert [c["host"] for c in doc["clocks"]] == ["gw-3"]
    (x,) = doc["clocks"][0]["excursions"]
    assert (x["start_ns"], x["end_ns"], x["ongoing_at_last_stamp"]) == (
        T0 + 70 * MS,
        T0 + 90 * MS,
        True,
    )
    assert doc["clocks"][0]["within_tier_time_share"] == pytest.approx(1 - 20 / 90)
    assert doc["clocks"][0]["sources"][0] == {
        "kind": "fallback",
        "stamps": 10,
        "max_bound_ns": 2 * MS,
        "reason": "chronyc not found",
    }


def test_a_period_outside_the_trail_reports_no_clocks(clocks: ChdbStore) -> None:
    """Nothing stamped in the period: an empty report, not an error."""
    lo, hi = parse_period("2020-01-01T00:00:00Z..2020-01-02T00:00:00Z")
    assert period_evidence(clocks, lo, hi, _ctx()).to_dict()["clocks"] == []


def test_cli_period_writes_the_folder_with_the_excursion(clocks: ChdbStore, tmp_path: Path) -> None:
    """`evidence --period FROM..TO --host gw-1` writes JSON and HTML naming the excursion."""
    out = tmp_path / "clock"
    result = runner.invoke(
        app,
        [
            "evidence", "--period", PERIOD, "--host", "gw-1", "--out", str(out), "--no-pdf",
            "--store", str(clocks.path), "--database", clocks.database, "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["subject"]["kind"] == "period"
    doc = orjson.loads((out / "evidence.json").read_bytes())
    assert [c["host"] for c in doc["clocks"]] == ["gw-1"]
    html = (out / "report.html").read_text()
    assert format_ns(T0 + 300 * MS) in html
    assert "5.000 ms" in html
    assert html.count('class="excursion"') == 1


_hosts = iter(range(10**6))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bounds=st.lists(
        st.sampled_from([10_000, 900_000, 1_000_000, 1_000_001, 7 * MS]), min_size=1, max_size=30
    )
)
def test_excursions_are_the_maximal_runs_over_the_tier(store: ChdbStore, bounds: list[int]) -> None:
    """For any sequence of bounds, the excursions are exactly the maximal runs of stamps over
    1 ms: starting at the first stamp out, ending at the next stamp back in (or at the run's
    last stamp when none follows), with the run's peak and length."""
    host = f"h{next(_hosts)}"
    store.write_observations(_stamps(host, bounds, "configured", 1))
    lo, hi = parse_period(PERIOD)
    (clock,) = period_evidence(store, lo, hi, _ctx(), host=host).to_dict()["clocks"]
    want = []
    i = 0
    while i < len(bounds):
        if bounds[i] > MS:
            j = i
            while j < len(bounds) and bounds[j] > MS:
                j += 1
            end = T0 + (j if j < len(bounds) else j - 1) * 10 * MS
            want.append((T0 + i * 10 * MS, end, max(bounds[i:j]), j - i))
            i = j
        else:
            i += 1
    got = [(x["start_ns"], x["end_ns"], x["peak_ns"], x["stamps"]) for x in clock["excursions"]]
    assert got == want
    within = sum(b <= MS for b in bounds) / len(bounds)
    assert clock["within_tier_stamps_share"] == pytest.approx(within)


NOW = 1_800_000_000_000_000_000
S = 1_000_000_000


def test_a_period_may_be_relative_to_now() -> None:
    """`now` and `now-DURATION` (the alert definitions' durations) count back from the time
    the period is read; they mix with absolute times."""
    assert parse_period("now-1h..now", NOW) == (NOW - 3600 * S, NOW)
    assert parse_period("now-1h30m..now-15m", NOW) == (NOW - 5400 * S, NOW - 900 * S)
    assert parse_period(" 2023-11-14T22:13:20Z .. now ", NOW) == (T0, NOW)
    before = time.time_ns()
    lo, hi = parse_period("now-1m..now")
    assert before <= hi <= time.time_ns()
    assert hi - lo == 60 * S


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("now-soon..now", "'now-soon' is not now-DURATION (e.g. now-1h, now-90m)"),
        ("now+1h..now", "'now+1h' is not an ISO-8601 time, now or now-DURATION"),
        ("now..now-1h", "period 'now..now-1h' ends before it starts"),
        ("now-0s..now", "period 'now-0s..now' ends before it starts"),
        ("now-1h", "period 'now-1h' is not FROM..TO"),
    ],
)
def test_a_bad_relative_period_says_why(text: str, message: str) -> None:
    """A relative end that is not `now` or `now-DURATION`, or a period that does not move
    forward, is refused with the reason."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_period(text, NOW)


@given(a=st.integers(1, 10**7), b=st.integers(0, 10**7))
def test_relative_ends_are_now_minus_their_duration(a: int, b: int) -> None:
    """For any two look-backs, `now-As..now-Bs` is [now - A s, now - B s), refused exactly
    when it does not move forward."""
    text = f"now-{a}s..now-{b}s"
    if a <= b:
        with pytest.raises(ValueError, match="ends before it starts"):
            parse_period(text, NOW)
    else:
        assert parse_period(text, NOW) == (NOW - a * S, NOW - b * S)


def test_a_clock_alerts_investigate_command_runs(store: ChdbStore, tmp_path: Path) -> None:
    """The Grafana rule of a clock_error alert names a command that runs as written (its
    host label filled in, store options added): its period, read by the CLI's own parser,
    covers an excursion of the last minutes on that host."""
    definitions = parse_alerts(
        "version: 1\nalerts: [{id: clock.rts25, kind: clock_error, for: 2m}]"
    )
    ((rule,),) = [
        [r for g in s.document(GrafanaSettings())["groups"] for r in g["rules"]]
        for s in grafana_alerting(definitions).sections
        if s.name == "stampline-rules"
    ]
    command = rule["annotations"]["investigate"]
    assert command == (
        "stampline evidence --period now-1h2m..now --host {{ $labels.host }} --tier other"
    )
    args = shlex.split(command.replace("{{ $labels.host }}", "gw-live"))
    assert args[0] == "stampline"
    recent = time.time_ns() - 10 * 60 * S
    store.write_observations(_stamps("gw-live", [50_000, 3 * MS, 50_000], "configured", 1, recent))
    store.write_observations(_stamps("gw-other", [3 * MS], "configured", 1, recent))
    out = tmp_path / "clock"
    result = runner.invoke(
        app,
        [*args[1:], "--out", str(out), "--no-pdf", "--store", str(store.path),
         "--database", store.database, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = orjson.loads((out / "evidence.json").read_bytes())
    (clock,) = doc["clocks"]
    assert clock["host"] == "gw-live"
    (excursion,) = clock["excursions"]
    assert excursion["start_ns"] == recent + 10 * MS


def test_a_forged_chain_with_other_times_leaves_the_period_figures_and_says_so(
    clocks: ChdbStore, tmp_path: Path
) -> None:
    """gw-2's stamps copied into a made-up chain at batch 1000000, 3 ms later and with 5 ms
    bounds, change no figure silently: they are contested, left out of every figure (gw-2's
    own included), listed with the time every chain's rows span, and the page opens with the
    CONTESTED STAMPS banner; the other hosts' figures are as before."""
    lo, hi = parse_period(PERIOD)
    before = period_evidence(clocks, lo, hi, _ctx()).to_dict()
    db = clocks.database
    clocks._execute(
        f"INSERT INTO {db}.observations SELECT * REPLACE ('trail.topic/9' AS chain_id, "
        "1000000 AS batch, received + toIntervalMillisecond(3) AS received, "
        f"{5 * MS} AS clock_err_ns) FROM (SELECT * FROM {db}.observations WHERE host = 'gw-2')"
    )
    assert clocks.query(
        "SELECT count() AS n FROM {db}.observations WHERE chain_id = 'trail.topic/9'"
    ) == [{"n": 10}]
    doc = period_evidence(clocks, lo, hi, _ctx()).to_dict()
    assert [c for c in doc["clocks"] if c["host"] != "gw-2"] == [
        c for c in before["clocks"] if c["host"] != "gw-2"
    ]
    assert [c["host"] for c in doc["clocks"]] == ["gw-1", "gw-3"]
    assert doc["contested"] == [
        {
            "stage": "gate",
            "stamps": 10,
            "chains": ["local", "trail.topic/9"],
            "first": format_ns(T0),
            "first_ns": T0,
            "last": format_ns(T0 + 93 * MS),
            "last_ns": T0 + 93 * MS,
        }
    ]
    html = render_html(doc)
    assert html.index('id="contested"') < html.index("Clock-accuracy regime")
    assert "CONTESTED STAMPS" in html
    assert 'class="contested"' in html
    fastjsonschema.compile(EVIDENCE_JSON_SCHEMA)(orjson.loads(orjson.dumps(doc)))
