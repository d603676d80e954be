"""The completeness detector on trail tables as the recorder hands them over: one alert per
provider and stage pair with the count of lost events, whatever order the stages' rows come
in; duplicates, dead letters, a lagging source and an idle stage handled; state bounded.

(`tests/collectors/test_recorder_alerts.py` runs it inside a recorder behind a real gate, an
SDK stage and a tap.)"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.alerting import CompletenessDetector, Transition, parse_alerts, render, write_history
from stampline.audit import ChdbStore, Observation, canonical_table

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


def test_a_refused_record_dated_a_day_ahead_moves_no_clock() -> None:
    """A dead letter whose time is a day ahead (a tap reads the producer's timestamp) does
    not become its stage's clock: after an idle pause, the events that follow are still
    judged and their 12 losses alerted, not held back for a day."""
    got: list[Transition] = []
    wall = Wall()
    d = detector(got, wall)
    gate, enrich = pipeline(600, drop=set(range(400, 412)))
    feed_in_step(d, gate[:300], enrich[:300])
    stray = (str(uuid.uuid4()), "gate", T0 + 86_400 * S, "gate-1", "alpha", "dead_lettered")
    d.observe_table(table([stray]))
    wall.ns += 6 * S  # both stages idle: what they sent so far is final
    d.tick()
    later = [(e, st, t + 10 * S, h, p, o) for e, st, t, h, p, o in gate[300:] + enrich[300:]]
    feed_in_step(d, later[:300], later[300:])  # the feed resumes 10 s later
    wall.ns += 6 * S
    d.tick()
    assert d.pairs[0].lost_total == 12
    assert [t.state for t in got] == ["pending", "firing", "resolved"]
    assert all(t.at_ns < T0 + 60 * S for t in got)


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


# ---------------------------------------------------------------------- restart (seeding)

CHAIN = "trail/0"  # the recorder's chain of trail partition 0


def store_rows(store: ChdbStore, rows: list[Row], chain: str = CHAIN) -> None:
    """Write trail rows as the recorder does (one ledgered batch in ``chain``)."""
    obs = [
        Observation(eid, stage, t, t + MS, t - 5 * MS, t - 4 * MS, 1000, host=host,
                    provider=provider, outcome=outcome)  # type: ignore[arg-type]
        for eid, stage, t, host, provider, outcome in rows
    ]  # fmt: skip
    store.write_batch("observations", canonical_table(obs), chain_id=chain)


def record(d: CompletenessDetector, store: ChdbStore, gate: list[Row], enrich: list[Row],
           per: int = 50) -> None:  # fmt: skip
    """What a recorder does: write each table, then hand it to the detector."""
    for i in range(0, max(len(gate), len(enrich)), per):
        for rows in (gate[i : i + per], enrich[i : i + per]):
            if rows:
                store_rows(store, rows)
                d.observe_table(table(rows))


def notify(store: ChdbStore, transitions: list[Transition]) -> None:
    """The history the first detector's delivery wrote."""
    defs = parse_alerts(DEFINITIONS)
    write_history(store, [render(defs, t, "recorder@test") for t in transitions])


def test_a_seeded_detector_holds_what_the_stopped_one_held(store: ChdbStore) -> None:
    """The stopped detector had ten lost events waiting (enrich had not passed them); the
    one seeded from the store holds the same, and raises the same alert, with lost=10, on
    the same rows afterwards."""
    got1: list[Transition] = []
    d1 = detector(got1, Wall())
    gate, enrich = pipeline(1000, drop=set(range(590, 600)))
    record(d1, store, gate[:600], enrich[:590])
    assert got1 == []
    assert d1.pending == 10
    got2: list[Transition] = []
    d2 = detector(got2, Wall())
    report = d2.seed(store, "trail/")
    assert report is not None
    assert (report.rows, report.truncated, report.delivered) == (1190, False, 0)
    assert report.history
    assert d2.pending == 10
    assert set(d2.pairs[0].pending) == set(d1.pairs[0].pending)
    p1, p2 = d1.pairs[0], d2.pairs[0]
    assert (p2.watermark, p2.judged_total, p2.lost_total) == (p1.watermark, p1.judged_total, 0)
    feed_in_step(d1, gate[600:], enrich[590:])
    feed_in_step(d2, gate[600:], enrich[590:])
    assert [t.state for t in got2] == ["pending", "firing", "resolved"]
    assert got2 == got1
    assert got2[1].figures["lost"] == 10


def test_alerts_notified_before_the_restart_are_not_raised_again(store: ChdbStore) -> None:
    """The stopped detector's alert fired (and is in the history): the seeded one replays
    it without delivering it, takes it as firing, and delivers only its resolve."""
    got1: list[Transition] = []
    d1 = detector(got1, Wall())
    gate, enrich = pipeline(800, drop=set(range(200, 212)))
    record(d1, store, gate[:400], enrich[:400])
    assert [t.state for t in got1] == ["pending", "firing"]
    notify(store, got1)
    got2: list[Transition] = []
    d2 = detector(got2, Wall())
    report = d2.seed(store, "trail/")
    assert report is not None
    assert report.delivered == 0
    assert report.suppressed >= 1
    assert got2 == []
    assert d2.pairs[0].lost_total == 12
    before = len(got1)
    feed_in_step(d1, gate[400:], enrich[400:])
    feed_in_step(d2, gate[400:], enrich[400:])
    assert [t.state for t in got2] == ["resolved"]
    assert [(t.at_ns, t.figures) for t in got2] == [(t.at_ns, t.figures) for t in got1[before:]]


def test_a_pending_instance_the_history_says_fired_is_held_as_firing(store: ChdbStore) -> None:
    """The history says the instance fired, the replay only gets it pending (the stopped
    detector judged further, e.g. once every source was idle): it is taken as firing, so
    it does not fire a second time; its resolve comes once."""
    got1: list[Transition] = []
    d1 = detector(got1, Wall())
    gate, enrich = pipeline(800, drop=set(range(200, 212)))
    record(d1, store, gate[:330], enrich[:330])
    (pending,) = got1
    assert pending.state == "pending"
    notify(store, [pending, replace(pending, state="firing", at_ns=pending.at_ns + 500 * MS)])
    got2: list[Transition] = []
    d2 = detector(got2, Wall())
    report = d2.seed(store, "trail/")
    assert report is not None
    assert (report.delivered, report.held) == (0, 1)
    feed_in_step(d2, gate[330:], enrich[330:])
    assert [t.state for t in got2] == ["resolved"]


def test_the_tail_judged_once_idle_is_not_raised_again(store: ChdbStore) -> None:
    """The stopped detector judged its last events once every source was idle, and its
    alert (no `for`) fired there; the seeded one judges them again after `idle` at the same
    event time: nothing is delivered a second time."""
    # no `for`, and a window longer than idle: the idle judging's one sample still sees the loss
    text = DEFINITIONS.replace("for: 500ms", "for: 0s").replace("window: 2s", "window: 10s")
    got1: list[Transition] = []
    wall1 = Wall()
    d1 = detector(got1, wall1, text)
    gate, enrich = pipeline(300, drop=set(range(295, 300)))
    record(d1, store, gate, enrich)
    wall1.ns += 6 * S
    d1.tick()
    assert [t.state for t in got1] == ["firing"]
    notify(store, got1)
    got2: list[Transition] = []
    wall2 = Wall()
    d2 = detector(got2, wall2, text)
    report = d2.seed(store, "trail/")
    assert report is not None
    assert report.delivered == 0
    assert d2.pending == 5
    wall2.ns += 6 * S
    d2.tick()
    assert d2.pairs[0].lost_total == 5
    assert got2 == []
    assert d2.suppressed == 1


def test_seeding_reads_the_horizon_of_this_trail_at_most_its_limit(store: ChdbStore) -> None:
    """Rows older than the horizon (idle + grace + window + for, behind the newest row),
    rows of another trail and rows past 2 x max_pending per pair are not replayed."""
    gate, enrich = pipeline(200, drop=set(), step=100 * MS)  # 20 s of events
    store_rows(store, gate + enrich)
    store_rows(store, [(str(uuid.UUID(int=10**6)), "gate", T0 + 19 * S, "g", "alpha",
                        "forwarded")], chain="other/0")  # fmt: skip
    d = detector([], Wall())
    # idle + grace + max(window + for, 3 x grace)
    assert d.seed_horizon_ns() == 5 * S + 1 * S + 3 * S
    report = d.seed(store, "trail/")
    assert report is not None
    newest = T0 + 199 * 100 * MS + 2 * MS
    inside = [r for r in gate + enrich if r[2] >= newest - d.seed_horizon_ns()]
    assert (report.rows, report.truncated) == (len(inside), False)
    small = detector([], Wall(), max_pending=10)
    report = small.seed(store, "trail/")
    assert report is not None
    assert (report.rows, report.truncated) == (20, True)
    assert small.pending <= 10


def test_instances_judged_together_come_in_provider_order() -> None:
    """Eight providers losing events at the same moments: the transitions of each moment come
    sorted by provider, not in a set's hash order (which differs from process to process)."""
    got: list[Transition] = []
    d = detector(got, Wall())
    names = ["hotel", "alpha", "golf", "charlie", "foxtrot", "bravo", "echo", "delta"]
    gate: list[Row] = []
    enrich: list[Row] = []
    for k, name in enumerate(names):
        g, e = pipeline(600, drop=set(range(200, 212)), provider=name)
        gate += [(str(uuid.UUID(int=(k + 1) << 64 | int(uuid.UUID(r[0])))), *r[1:]) for r in g]
        enrich += [(str(uuid.UUID(int=(k + 1) << 64 | int(uuid.UUID(r[0])))), *r[1:]) for r in e]
    gate.sort(key=lambda r: r[2])
    enrich.sort(key=lambda r: r[2])
    feed_in_step(d, gate, enrich, per=400)
    moments: dict[tuple[str, int], list[str]] = {}
    for t in got:
        moments.setdefault((t.state, t.at_ns), []).append(dict(t.labels)["provider"])
    assert {state for state, _ in moments} == {"pending", "firing", "resolved"}
    assert sorted(p for ps in moments.values() for p in ps) == sorted(names * 3)
    assert any(len(ps) > 1 for ps in moments.values()), "no two instances judged together"
    for providers in moments.values():
        assert providers == sorted(providers)
