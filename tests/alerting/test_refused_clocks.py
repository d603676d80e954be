"""Refused records move no alert clock: a record dated a day ahead or a day behind (refused
by the rules) and one the gate itself refuses (broken stamp headers, dated within the rules'
window), sent before, during and after a real fault through a real gate, leave exactly the
fault's own alerts, each resolved no later than the newest accepted record."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from stampline._common import UNNAMED_PROVIDER
from stampline.alerting import (
    KeyDetectors,
    ProviderFacts,
    ProviderWatch,
    Transition,
    parse_alerts,
)
from stampline.audit import ChdbStore
from stampline.collectors import GateSettings, SidecarMetrics
from stampline.rules import RuleSet
from tests.alerting.feed import DAY_MS, Faults, Stray
from tests.alerting.test_faults import LENGTH_MS, RULES, rule_kinds, run_feed
from tests.helpers import GateRun, produce

MS = 1_000_000
# Within origin.window's minute ahead: the rules accept it, the gate refuses its stamps.
GATE_REFUSED_MS = 50_000


def strays(provider: str, instrument: str, *at: int) -> tuple[Stray, ...]:
    """A day ahead, a day behind and a gate-refused record of one key at each time in ``at``."""
    return tuple(
        Stray(provider, instrument, when, shift, broken)
        for when in at
        for shift, broken in ((DAY_MS, False), (-DAY_MS, False), (GATE_REFUSED_MS, True))
    )


def outline(got: list[Transition]) -> list[tuple[str, str, str, str]]:
    """(alert, provider, instrument, state) of every transition, in order."""
    return [(t.alert_id, t.label("provider"), t.label("instrument"), t.state) for t in got]


def assert_decided_in_the_past(got: list[Transition], t0_ms: int) -> None:
    """Every transition is dated within the feed: never after its newest accepted record."""
    newest = (t0_ms + LENGTH_MS - 50) * MS
    for t in got:
        assert t0_ms * MS <= t.at_ns <= newest, t
    assert newest < time.time_ns()


@pytest.mark.slow
def test_refused_records_around_a_silence_leave_one_silence_alert(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """gamma silent from 2 s to 6 s, with refused gamma records before, during and after:
    one silence alert for gamma, from 2 s after its last accepted record until it resumes;
    no other provider is taken for silent."""
    faults = Faults(
        silent=("gamma", 2000, 6000), strays=strays("gamma", "SYM001", 1000, 4000, 8000)
    )
    got, t0 = run_feed(faults, bootstrap, store, make_topics, uid)
    assert outline(got) == [
        ("provider.silent", "gamma", "", "firing"),
        ("provider.silent", "gamma", "", "resolved"),
    ]
    fired, resolved = got
    assert fired.at_ns == (t0 + 1950 + 2000) * MS
    assert (t0 + 6000) * MS <= resolved.at_ns <= (t0 + 6500) * MS
    assert_decided_in_the_past(got, t0)


@pytest.mark.slow
def test_refused_records_around_a_sequence_gap_leave_one_gap_alert(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Three numbers skipped on alpha/SYM002 at 5 s, refused records of that key before,
    right after the gap and later: one gap alert (3 missing), ended by the key's next
    accepted record, not by a refused one."""
    faults = Faults(
        gap=("alpha", "SYM002", 5000, 3), strays=strays("alpha", "SYM002", 4000, 5000, 6000)
    )
    got, t0 = run_feed(faults, bootstrap, store, make_topics, uid)
    assert outline(got) == [
        ("sequence.gap", "alpha", "SYM002", "firing"),
        ("sequence.gap", "alpha", "SYM002", "resolved"),
    ]
    fired, resolved = got
    assert fired.figures["missing"] == 3
    assert fired.at_ns == (t0 + 5000) * MS
    assert resolved.at_ns == (t0 + 5050) * MS
    assert_decided_in_the_past(got, t0)


@pytest.mark.slow
def test_refused_records_around_a_divergence_leave_one_divergence_alert(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """beta/SYM003 10 % off from 7 s to 11 s, refused records of that key (priced as its
    accepted ones) before, during and after: one divergence alert, firing once sustained,
    resolved when the price returns; it neither expires nor opens twice."""
    faults = Faults(
        divergence=("beta", "SYM003", 7000, 11000),
        strays=strays("beta", "SYM003", 6000, 9500, 11500),
    )
    got, t0 = run_feed(faults, bootstrap, store, make_topics, uid)
    assert outline(got) == [
        ("price.divergence", "beta", "SYM003", "firing"),
        ("price.divergence", "beta", "SYM003", "resolved"),
    ]
    fired, resolved = got
    assert fired.at_ns >= (t0 + 7000 + 2000) * MS
    assert (t0 + 11000) * MS <= resolved.at_ns <= (t0 + 11500) * MS
    assert resolved.why == "cleared"
    assert_decided_in_the_past(got, t0)


@pytest.mark.slow
def test_records_naming_no_provider_are_alerted_under_a_provider_label(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Records too broken to name their provider (not JSON), dead-lettered through a real
    gate: the dlq.rate alert and the gate's dead-letter counter carry provider="(unnamed)",
    never an empty provider (which Prometheus and Alertmanager drop as no label at all)."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    rules = RuleSet.load([RULES])
    definitions = parse_alerts(
        "version: 1\nalerts:\n  - {id: dlq.rate, kind: dlq_rate, threshold: 0.2, window: 30s}\n"
    )
    got: list[Transition] = []
    watch = ProviderWatch(definitions, got.extend)
    detectors = KeyDetectors(definitions, rule_kinds(rules), got.extend, watch.add)
    metrics = SidecarMetrics()
    run = GateRun(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g"),
        rules,
        store,
        metrics,
        detectors,
    )
    produce(bootstrap, raw, [(None, b"not json at all") for _ in range(30)])
    run.wait_for(30)
    run.stop()
    watch.tick()
    assert [(t.alert_id, t.labels, t.state) for t in got] == [
        ("dlq.rate", (("provider", UNNAMED_PROVIDER), ("rule", "record.decode")), "firing")
    ]
    counted = metrics.registry.get_sample_value(
        "stampline_events_dead_lettered_total",
        {"provider": UNNAMED_PROVIDER, "reason": "record.decode"},
    )
    assert counted == 30


def test_an_origin_ahead_of_the_gate_counts_as_taken_in_on_the_wall_clock() -> None:
    """An accepted record dated 30 s ahead (inside the rules' window) counts in the wall-clock
    watch as of when the gate took it in: the provider's silence and the exported gauge
    never go negative, and a real silence after it fires max_gap later, not 30 s later."""
    definitions = parse_alerts(
        "version: 1\nproviders:\n  - {provider: alpha, venue: XLON, max_gap: 2s}\n"
        "alerts:\n  - {id: provider.silent, kind: provider_silent}\n"
    )
    got: list[Transition] = []
    now = [1_800_000_000 * 10**9]
    watch = ProviderWatch(definitions, got.extend, clock=lambda: now[0])
    taken = now[0]
    watch.add(ProviderFacts(taken, last_origin={"alpha": taken + 30 * 10**9}))
    assert watch.last_origin["alpha"] == taken
    assert watch.silence_ns("alpha", now[0]) == 0
    now[0] += 3 * 10**9
    watch.tick()
    assert [(t.state, t.at_ns) for t in got] == [("firing", taken + 2 * 10**9)]
