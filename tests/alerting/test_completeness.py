"""The completeness detector on trail tables as the recorder hands them over: one alert per
provider and stage pair with the count of lost events, whatever order the stages' rows come
in; duplicates, dead letters, a lagging source and an idle stage handled; state bounded.

(`tests/collectors/test_recorder_alerts.py` runs it inside a recorder behind a real gate, an
SDK stage and a tap.)"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting import CompletenessDetector, Transition, parse_alerts

MS = 1_000_000
S = 1_000_000_000
T0 = 1_800_000_000 * S
DEFINITIONS = """\
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 5s}
alerts:
  - id: events.lost
    kind: completeness
    from_stage: gate
    to_stage: enrich
    threshold: 0.001
    grace: 1s
    window: 2s
    for: 500ms
"""


class Wall:
    """A wall clock the test moves (the detector's idleness is judged on it)."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


Row = tuple[str, str, int, str, str, str]


def table(rows: list[Row]) -> pa.Table:
    """Trail rows (event id, stage, received, host, provider, outcome)."""
    names = ("event_id", "stage", "received", "host", "provider", "outcome")
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    return pa.table(
        {
            n: pa.array(c, pa.int64() if n == "received" else pa.string())
            for n, c in zip(names, cols, strict=True)
        }
    )


def pipeline(
    n: int, drop: set[int], provider: str = "alpha", step: int = 10 * MS, hop: int = 2 * MS
) -> tuple[list[Row], list[Row]]:
    """``n`` events every ``step`` at the gate and, but for ``drop``, at enrich ``hop`` later."""
    gate, enrich = [], []
    for i in range(n):
        eid = str(uuid.UUID(int=i + 1))
        t = T0 + i * step
        gate.append((eid, "gate", t, "gate-1", provider, "forwarded"))
        if i not in drop:
            enrich.append((eid, "enrich", t + hop, "enrich-1", "", "observed"))
    return gate, enrich


def detector(
    got: list[Transition], wall: Wall, text: str = DEFINITIONS, max_pending: int = 200_000
) -> CompletenessDetector:
    return CompletenessDetector(
        parse_alerts(text), got.extend, wall=wall, idle_ns=5 * S, max_pending=max_pending
    )


def feed_in_step(
    d: CompletenessDetector, gate: list[Row], enrich: list[Row], per: int = 50
) -> None:
    """Both stages' rows, a slice at a time, each stage's slice in its own table."""
    for i in range(0, max(len(gate), len(enrich)), per):
        d.observe_table(table(gate[i : i + per]))
        d.observe_table(table(enrich[i : i + per]))


def test_lost_events_raise_one_alert_with_their_count() -> None:
    """Twelve events dropped between gate and enrich: one instance (provider and stage pair)
    fires with lost=12 and resolves once the loss leaves the window; the count is exact."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, enrich = pipeline(600, drop=set(range(200, 212)))
    feed_in_step(d, gate, enrich)
    states = [(t.state, t.labels) for t in got]
    labels = (("from_stage", "gate"), ("provider", "alpha"), ("to_stage", "enrich"),
              ("venue", "XLON"))  # fmt: skip
    assert states == [("pending", labels), ("firing", labels), ("resolved", labels)]
    pending, firing, resolved = got
    assert firing.figures["lost"] == 12
    assert resolved.figures["lost"] == 12  # the last count while it held
    # The condition began at the frontier that first judged a loss: its first lost event's
    # time + grace at the latest; it fired `for` later.
    assert pending.at_ns <= T0 + 212 * 10 * MS + 1 * S
    assert firing.at_ns == pending.at_ns + 500 * MS
    assert d.pairs[0].lost_total == 12


def test_clean_run_raises_nothing() -> None:
    """Every event reaches enrich: no transition at all, every event judged once idle."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, enrich = pipeline(600, drop=set())
    feed_in_step(d, gate, enrich)
    wall.ns += 6 * S  # both stages idle: the rest is final
    d.tick()
    assert got == []
    assert (d.pairs[0].judged_total, d.pairs[0].lost_total, d.pending) == (600, 0, 0)


def test_order_of_arrival_does_not_matter_and_duplicates_count_once() -> None:
    """Enrich's rows before the gate's, and a second gate row per event (a tap reading the
    gate's stamp back, in the same table as its enrich row): still exactly the lost ones."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, enrich = pipeline(400, drop={50, 51, 52})
    tap_copies = [(e, "gate", t, "gate-1", "", "observed") for e, _s, t, _h, _p, _o in gate]
    for i in range(0, 400, 40):
        d.observe_table(table(enrich[i : i + 40]))
        both = [r for r in tap_copies[i : i + 40] if r[0] in {e[0] for e in enrich}]
        d.observe_table(table(both + enrich[i : i + 40]))  # the tap's table: stamp + sighting
        d.observe_table(table(gate[i : i + 40]))
    wall.ns += 6 * S
    d.tick()
    assert d.pairs[0].lost_total == 3
    assert d.pairs[0].judged_total == 400
    assert [t.state for t in got] == ["pending", "firing", "resolved"]


def test_dead_lettered_events_are_not_expected_downstream() -> None:
    """Events the gate dead-lettered never reach enrich, and are not lost."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, enrich = pipeline(300, drop=set(range(100, 120)))
    gate = [(*r[:5], "dead_lettered") if 100 <= i < 120 else r for i, r in enumerate(gate)]
    feed_in_step(d, gate, enrich)
    wall.ns += 6 * S
    d.tick()
    assert got == []
    assert d.pairs[0].lost_total == 0


def test_a_lagging_source_holds_judging_back_and_an_idle_one_is_left_out() -> None:
    """Enrich's rows late by seconds (its trail partition lags): nothing is judged lost
    meanwhile; a stage that stopped reporting is left out once idle, and its events then
    count as lost."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, enrich = pipeline(500, drop=set())
    d.observe_table(table(gate))  # five seconds of the gate first
    wall.ns += 1 * S
    d.tick()
    assert got == []
    assert d.pairs[0].lost_total == 0
    d.observe_table(table(enrich))
    assert got == []
    assert d.pairs[0].lost_total == 0
    # Now enrich stops for good while the gate goes on.
    more, _ = pipeline(800, drop=set())
    d.observe_table(table(more[500:600]))
    wall.ns += 6 * S  # enrich idle; the gate still moving
    d.observe_table(table(more[600:700]))
    d.observe_table(table(more[700:800]))
    assert d.pairs[0].lost_total > 0
    assert [t.state for t in got][:2] == ["pending", "firing"]


def test_a_stage_never_seen_waits_then_counts_as_idle() -> None:
    """Right after start, a stage not heard from yet holds judging; after `idle` it does
    not (a stage that never reports must not hide losses forever)."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, _ = pipeline(300, drop=set())
    d.observe_table(table(gate))
    assert d.pairs[0].judged_total == 0
    wall.ns += 6 * S
    d.tick()
    assert d.pairs[0].lost_total == 300


def test_state_is_bounded() -> None:
    """Past `max_pending` the oldest waiting event is dropped unjudged (counted, not lost)."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall, max_pending=100)
    gate, _ = pipeline(1000, drop=set())
    d.observe_table(table(gate))
    assert d.pending == 100
    assert d.unjudged == 900
    assert d.pairs[0].lost_total == 0


def test_scope_and_stage_names() -> None:
    """A definition scoped to other providers ignores these; rows of other stages are not
    read."""
    got: list[Transition] = []
    wall = Wall()
    text = DEFINITIONS.replace("for: 500ms", "for: 500ms\n    scope: {providers: [beta]}")
    d = detector(got, wall, text)
    gate, enrich = pipeline(300, drop=set(range(10, 20)))
    other = [(e, "risk", t, "r", "alpha", "forwarded") for e, _s, t, _h, _p, _o in gate]
    feed_in_step(d, gate + other, enrich)
    wall.ns += 6 * S
    d.tick()
    assert got == []
    assert d.pairs[0].lost_total == 10  # judged, but alpha is not this alert's provider


@settings(max_examples=25, deadline=None)
@given(
    drop=st.sets(st.integers(0, 299), max_size=40),
    seed=st.integers(0, 2**16),
    per=st.integers(7, 80),
)
def test_lost_count_is_exact_for_any_arrival_order(drop: set[int], seed: int, per: int) -> None:
    """Rows of both stages shuffled within a lateness well under the grace, cut into tables
    of any size: the count of lost events is exactly the number dropped."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, enrich = pipeline(300, drop=drop)
    rows = gate + enrich
    rng = random.Random(seed)
    # Each row may come up to 200 ms (of its own time) late: sort by a jittered time.
    rows.sort(key=lambda r: r[2] + rng.randrange(0, 200 * MS))
    for i in range(0, len(rows), per):
        d.observe_table(table(rows[i : i + per]))
    wall.ns += 6 * S
    d.tick()
    assert d.pairs[0].lost_total == len(drop)
    assert d.pairs[0].judged_total == 300
    fired = [t for t in got if t.state == "firing"]
    assert len(fired) <= 1 if drop else fired == []
