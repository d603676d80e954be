"""Injected faults through a real gate: each fault raises exactly one alert with the right
labels and figures, a one-record spike none, and a clean feed of the same length none."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import orjson
import pytest

from stampline.alerting import (
    KeyDetectors,
    ProviderFacts,
    ProviderWatch,
    Transition,
    parse_alerts,
)
from stampline.audit import ChdbStore
from stampline.collectors import GateSettings
from stampline.rules import RuleSet
from tests.alerting.feed import Faults, chunks, feed, t0_ms
from tests.helpers import GateRun, produce

RULES = Path(str(resources.files("stampline").joinpath("data", "market_data_full.rules.yaml")))
DEFINITIONS = """\
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 2s}
  - {provider: beta, venue: XLON, max_gap: 2s}
  - {provider: gamma, venue: XNYS, max_gap: 2s}
alerts:
  - {id: provider.silent, kind: provider_silent, severity: critical}
  - {id: sequence.gap, kind: sequence_gap, scope: {instrument: true}}
  - {id: quote.stale, kind: stale}
  - {id: price.divergence, kind: divergence, scope: {instrument: true}}
"""
LENGTH_MS = 12_000


def rule_kinds(rules: RuleSet) -> dict[str, str]:
    """Rule id -> kind, as the wiring gives them to the detectors."""
    return {r.id: r.kind for r in rules.rules}


def run_feed(
    faults: Faults,
    bootstrap: str,
    store: ChdbStore,
    make_topics: Callable[..., list[str]],
    uid: str,
) -> tuple[list[Transition], int]:
    """Send the feed through one gate with detectors; returns every transition and t0."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=2)
    rules = RuleSet.load([RULES])
    definitions = parse_alerts(DEFINITIONS)
    got: list[Transition] = []
    start = t0_ms()
    watch = ProviderWatch(definitions, got.extend, event_clock=True, started_ns=start * 10**6)
    detectors = KeyDetectors(definitions, rule_kinds(rules), got.extend, watch.add)
    records = feed(start, LENGTH_MS, faults)
    settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g")
    run = GateRun(settings, rules, store, detectors=detectors)
    sent = 0
    for chunk in chunks(records, 5 * 9):  # 250 ms of event time at a time
        produce(bootstrap, raw, chunk)
        sent += len(chunk)
        run.wait_for(sent)
    run.stop()
    watch.tick()
    assert detectors.errors == 0
    return got, start


def firing(got: list[Transition]) -> list[Transition]:
    return [t for t in got if t.state == "firing"]


@pytest.mark.slow
def test_each_fault_raises_exactly_one_alert(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Silence, a gap of 3, and a sustained divergence raise one alert each with their
    labels and figures; a one-record spike raises none; each resolves when it ends."""
    faults = Faults(
        silent=("gamma", 2000, 6000),
        gap=("alpha", "SYM002", 5000, 3),
        divergence=("beta", "SYM003", 7000, 11000),
        spike=("alpha", "SYM001", 3000),
    )
    got, t0 = run_feed(faults, bootstrap, store, make_topics, uid)
    fired = {(t.alert_id, t.labels): t for t in firing(got)}
    assert len(firing(got)) == 3, [(t.alert_id, t.labels, t.state) for t in got]
    silent = fired["provider.silent", (("provider", "gamma"), ("venue", "XNYS"))]
    # gamma's last event before the gap was at 1950 ms: the alert starts 2 s after it.
    assert silent.at_ns == (t0 + 1950 + 2000) * 10**6
    assert silent.severity == "critical"
    gap = fired[
        "sequence.gap", (("instrument", "SYM002"), ("provider", "alpha"), ("venue", "XLON"))
    ]
    assert (gap.figures["missing"], gap.figures["last"] - gap.figures["first"]) == (3, 2)  # type: ignore[operator]
    div = fired[
        "price.divergence", (("instrument", "SYM003"), ("provider", "beta"), ("venue", "XLON"))
    ]
    assert div.at_ns >= (t0 + 7000 + 2000) * 10**6  # only once sustained for the rule's 2 s
    resolved = {(t.alert_id, t.labels) for t in got if t.state == "resolved"}
    assert resolved == set(fired)


@pytest.mark.slow
def test_clean_feed_raises_none(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The same feed without faults raises no alert at all."""
    got, _t0 = run_feed(Faults(), bootstrap, store, make_topics, uid)
    assert got == []


@pytest.mark.slow
def test_a_provider_that_never_sends_is_silent_from_the_feeds_first_record(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """On the event clock, with no start given (as a deployment's watch has none), a
    registered provider that never sends is silent from the first accepted record's origin:
    its alert starts exactly max_gap after it, however much event time the gate's first
    batch spans (it once counted from the newest origin of that batch)."""
    (raw, clean, dlq) = make_topics("raw", "clean", "dlq", partitions=1)
    rules = RuleSet.load([RULES])
    delta = "  - {provider: delta, venue: XNYS, max_gap: 2s}\n"
    definitions = parse_alerts(
        DEFINITIONS.replace("  - {provider: gamma", delta + "  - {provider: gamma")
    )
    got: list[Transition] = []
    watch = ProviderWatch(definitions, got.extend, event_clock=True)
    detectors = KeyDetectors(definitions, rule_kinds(rules), got.extend, watch.add)
    start = t0_ms()
    records = feed(start, 4_000, Faults())
    settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g")
    run = GateRun(settings, rules, store, detectors=detectors)
    # the first 1.5 s of event time at once: the gate's first batch spans it
    produce(bootstrap, raw, records[: 30 * 9])
    run.wait_for(30 * 9)
    produce(bootstrap, raw, records[30 * 9 :])
    run.wait_for(len(records))
    run.stop()
    watch.tick()
    silent = [t for t in firing(got) if t.alert_id == "provider.silent"]
    assert [t.labels for t in silent] == [(("provider", "delta"), ("venue", "XNYS"))]
    assert silent[0].at_ns == (start + 2000) * 10**6


def test_the_first_origin_crosses_the_facts_topic() -> None:
    """A gate's facts carry their first accepted origin through their JSON form (several
    gates' watch reads them from the facts topic); facts written before it read as 0."""
    facts = ProviderFacts(10, {"alpha": 9}, {"alpha": 2}, first_origin=7)
    assert ProviderFacts.from_json(orjson.loads(orjson.dumps(facts.to_json()))) == facts
    old = {k: v for k, v in facts.to_json().items() if k != "first_origin"}
    assert ProviderFacts.from_json(old).first_origin == 0


@pytest.mark.parametrize("optimized", [False, True])
def test_facts_of_the_wrong_shape_are_refused_by_name_even_optimized(optimized: bool) -> None:
    """Facts read off the topic with a field of the wrong type or missing are a ValueError
    naming "not provider facts", also under ``python -O`` (which drops asserts)."""
    good = ProviderFacts(10, {"alpha": 9}, {"alpha": 2}, first_origin=7).to_json()
    bad = [
        {**good, "last_origin": ["alpha", 9]},
        {**good, "events": 3},
        {**good, "dead": {"alpha": 1}},
        {**good, "kinds": []},
        {**good, "at_ns": "10"},
        {**good, "first_origin": None},
        {k: v for k, v in good.items() if k != "at_ns"},
    ]
    script = (
        "import sys, orjson\n"
        "from stampline.alerting import ProviderFacts\n"
        "for obj in orjson.loads(sys.stdin.buffer.read()):\n"
        "    try:\n"
        "        ProviderFacts.from_json(obj)\n"
        "    except ValueError as exc:\n"
        "        print(str(exc).startswith('not provider facts'))\n"
        "    else:\n"
        "        print('accepted')\n"
    )
    flags = ["-O"] if optimized else []
    done = subprocess.run(
        [sys.executable, *flags, "-c", script],
        input=orjson.dumps(bad),
        capture_output=True,
        check=True,
    )
    assert done.stdout.decode().split() == ["True"] * len(bad)
