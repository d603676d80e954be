"""The alert lifecycle: pending → firing → resolved with ``for``, hysteresis and
``keep_firing_for``, one instance per label set, bounded, on event time."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.alerting import Lifecycle, Transition

S = 1_000_000_000
KEY = (("provider", "alpha"),)

samples = st.lists(
    st.tuples(st.integers(0, 3 * S), st.booleans()), min_size=1, max_size=60
)  # (time since the previous sample, condition holds)


def run(
    life: Lifecycle, steps: list[tuple[int, bool]], key: tuple[tuple[str, str], ...] = KEY
) -> tuple[list[Transition], list[tuple[int, bool]]]:
    """Feed ``steps`` as samples; returns the transitions and the samples' absolute times."""
    out: list[Transition] = []
    t, timed = 0, []
    for dt, active in steps:
        t += dt
        timed.append((t, active))
        out += life.observe(key, t, active=active)
    return out, timed


def active_runs(timed: list[tuple[int, bool]]) -> list[tuple[int, int | None]]:
    """(start, end) of each maximal run of active samples; end is the first inactive one."""
    runs: list[tuple[int, int | None]] = []
    start = None
    for t, active in timed:
        if active and start is None:
            start = t
        elif not active and start is not None:
            runs.append((start, t))
            start = None
    if start is not None:
        runs.append((start, None))
    return runs


@settings(max_examples=300, deadline=None)
@given(samples, st.integers(0, 4 * S), st.integers(0, 4 * S))
def test_states_alternate_and_fire_only_after_for(
    steps: list[tuple[int, bool]], for_ns: int, keep_ns: int
) -> None:
    """Per instance: firing and resolved alternate, and each firing comes exactly ``for``
    after a condition start whose run lasted at least that long."""
    life = Lifecycle("a", "k", for_ns=for_ns, keep_firing_for_ns=keep_ns)
    out, timed = run(life, steps)
    states = [tr.state for tr in out if tr.state != "pending"]
    assert all(a != b for a, b in itertools.pairwise(states))
    assert not states or states[0] == "firing"
    runs = active_runs(timed)
    for tr in out:
        if tr.state == "firing":
            assert tr.at_ns == tr.started_ns + for_ns
            run_end = next(end for start, end in runs if start == tr.started_ns)
            assert run_end is None or run_end - tr.started_ns >= for_ns


@settings(max_examples=300, deadline=None)
@given(samples, st.integers(1, 4 * S))
def test_runs_shorter_than_for_never_fire(steps: list[tuple[int, bool]], for_ns: int) -> None:
    """A condition that never holds for ``for`` (a spike) raises no alert, even after ticks."""
    life = Lifecycle("a", "k", for_ns=for_ns)
    out, timed = run(life, [*steps, (0, False)])
    out += life.tick(timed[-1][0] + 10 * for_ns)
    long_runs = [r for r in active_runs(timed) if r[1] is not None and r[1] - r[0] >= for_ns]
    assert sum(tr.state == "firing" for tr in out) == len(long_runs)


@settings(max_examples=300, deadline=None)
@given(samples)
def test_one_alert_per_fault_without_for(steps: list[tuple[int, bool]]) -> None:
    """With no ``for`` and no ``keep_firing_for``, each run of the condition is one alert,
    resolved at the first sample after it that says the condition cleared."""
    life = Lifecycle("a", "k")
    out, timed = run(life, steps)
    runs = active_runs(timed)
    firing = [tr for tr in out if tr.state == "firing"]
    resolved = [tr for tr in out if tr.state == "resolved"]
    assert [tr.started_ns for tr in firing] == [start for start, _ in runs]
    assert [tr.at_ns for tr in resolved] == [end for _, end in runs if end is not None]


@settings(max_examples=300, deadline=None)
@given(samples, st.integers(1, 4 * S))
def test_keep_firing_for_bridges_short_clears(steps: list[tuple[int, bool]], keep: int) -> None:
    """A clear shorter than ``keep_firing_for`` does not resolve: fewer or as many alerts as
    runs, and a resolve comes ``keep_firing_for`` after its clear."""
    life = Lifecycle("a", "k", keep_firing_for_ns=keep)
    out, timed = run(life, steps)
    firing = [tr for tr in out if tr.state == "firing"]
    assert len(firing) <= len(active_runs(timed))
    clears = [t for t, a in timed if not a]
    for tr in out:
        if tr.state == "resolved":
            assert tr.at_ns - keep in clears


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=80))
def test_hysteresis_counts_only_real_crossings(values: list[float]) -> None:
    """Above the threshold fires, only at or below ``clear`` resolves: wobbling between the
    two never raises a second alert."""
    life = Lifecycle("a", "k", threshold=60.0, clear=40.0)
    out: list[Transition] = []
    for i, v in enumerate(values):
        out += life.observe(KEY, i, value=v)
    on, expected = False, 0
    for v in values:
        if not on and v > 60.0:
            on, expected = True, expected + 1
        elif on and v <= 40.0:
            on = False
    assert sum(tr.state == "firing" for tr in out) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, S)), min_size=1, max_size=200))
def test_instances_are_bounded(samples_: list[tuple[int, int]]) -> None:
    """Never more than ``max_instances`` instances; a tick past the TTL empties the state and
    resolves whatever was firing."""
    life = Lifecycle("a", "k", max_instances=8, ttl_ns=10 * S)
    t = 0
    fired = resolved = 0
    for key, dt in samples_:
        t += dt
        for tr in life.observe((("instrument", str(key)),), t, active=True):
            fired += tr.state == "firing"
            resolved += tr.state == "resolved"
        assert len(life.instances) <= 8
    end = life.tick(t + 10 * S)
    assert not life.instances
    assert fired == resolved + len(end)


def test_silence_fires_on_tick_at_the_crossing_time() -> None:
    """With no samples at all, a tick fires a pending instance at start + ``for`` exactly."""
    life = Lifecycle("silent", "provider_silent", for_ns=2 * S, severity="critical")
    assert [tr.state for tr in life.observe(KEY, 10 * S, active=True)] == ["pending"]
    assert life.tick(11 * S) == []
    (tr,) = life.tick(15 * S)
    assert (tr.state, tr.at_ns, tr.severity, tr.label("provider")) == (
        "firing",
        12 * S,
        "critical",
        "alpha",
    )


def test_late_sample_does_not_reopen_the_past() -> None:
    """A sample older than the instance's last one counts at the last one's time."""
    life = Lifecycle("a", "k", keep_firing_for_ns=5 * S)
    life.observe(KEY, 100 * S, active=True)
    life.observe(KEY, 101 * S, active=False)
    (tr,) = life.observe(KEY, 50 * S, active=False) or life.tick(106 * S)
    assert (tr.state, tr.at_ns) == ("resolved", 106 * S)


def test_a_held_pending_instance_is_firing_without_a_transition() -> None:
    """``hold`` takes a pending instance as firing (notified before a restart): it never
    fires again, and resolves once its condition clears; a firing or unknown one is left."""
    life = Lifecycle("a", "k", for_ns=2 * S)
    assert [t.state for t in life.observe(KEY, 0, active=True)] == ["pending"]
    assert life.hold(KEY)
    assert not life.hold(KEY)
    assert not life.hold((("provider", "beta"),))
    assert life.firing() == [KEY]
    assert life.observe(KEY, 3 * S, active=True) == []
    assert [t.state for t in life.observe(KEY, 4 * S, active=False)] == ["resolved"]
