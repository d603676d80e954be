"""The scale-out trap: two gates in one consumer group, each seeing one provider's partition.
One fault raises exactly one alert; judging silence per gate would raise false ones."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from stampline.alerting import (
    FactsPublisher,
    FactsSubscriber,
    KeyDetectors,
    ProviderWatch,
    Transition,
    parse_alerts,
)
from stampline.audit import ChdbStore
from stampline.collectors import GateSettings
from stampline.rules import RuleSet
from tests.alerting.feed import Faults, chunks, feed, t0_ms
from tests.alerting.test_faults import RULES, rule_kinds
from tests.helpers import GateRun, produce

DEFINITIONS = """\
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 2s}
  - {provider: beta, venue: XLON, max_gap: 2s}
alerts:
  - {id: provider.silent, kind: provider_silent}
  - {id: sequence.gap, kind: sequence_gap}
"""


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_gates_raise_one_alert_per_fault(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """With alpha on one gate's partition and beta on the other's, beta's silence and alpha's
    gap each raise one alert through the one watch; per-gate watches would cry wolf."""
    raw, clean, dlq, facts_topic = make_topics("raw", "clean", "dlq", "facts", partitions=2)
    definitions = parse_alerts(DEFINITIONS)
    rules = [RuleSet.load([RULES]), RuleSet.load([RULES])]  # one rule set per gate process
    start = t0_ms()
    got: list[Transition] = []
    watch = ProviderWatch(definitions, got.extend, event_clock=True, started_ns=start * 10**6)
    subscriber = FactsSubscriber(bootstrap, facts_topic, watch).start()
    seen: list[set[str]] = [set(), set()]  # providers each gate's facts named lately
    naive: list[list[Transition]] = [[], []]  # what a watch inside each gate would say
    naive_watches = [
        ProviderWatch(definitions, naive[g].extend, event_clock=True, started_ns=start * 10**6)
        for g in range(2)
    ]
    runs = []
    publishers: list[FactsPublisher] = []
    for g in range(2):
        publisher = FactsPublisher(bootstrap, facts_topic)
        publishers.append(publisher)

        def both(facts: object, publisher: FactsPublisher = publisher, g: int = g) -> None:
            seen[g].update(facts.last_origin)  # type: ignore[attr-defined]
            publisher(facts)  # type: ignore[arg-type]
            naive_watches[g].add(facts)  # type: ignore[arg-type]

        detectors = KeyDetectors(
            definitions, rule_kinds(rules[g]), got.extend, both, source=f"gate{g}"
        )
        settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g")
        runs.append(GateRun(settings, rules[g], store, detectors=detectors))
    # Warm up until the group has settled: a round of one record per partition reaches
    # each gate from one provider only (consumer calls from this thread would block).
    for round_ in range(600):
        for names in seen:
            names.clear()
        before = sum(r.gate.stats.events_in for r in runs)
        for partition, provider in ((0, "alpha"), (1, "beta")):
            warm = {
                "provider": provider,
                "instrument": "WARM",
                "seq": round_,
                "ts": start - 1000,
                "type": "quote",
                "price": 1.0,
                "quantity": 1,
            }
            produce(bootstrap, raw, [(b"w", orjson.dumps(warm))], partition=partition)
        wait(lambda: sum(r.gate.stats.events_in for r in runs) >= before + 2, "warm-up")  # noqa: B023
        if all(len(names) == 1 for names in seen) and seen[0] != seen[1]:
            break
    else:
        pytest.fail("the two gates never settled on one partition each")
    wait(subscriber.ready.is_set, "the facts subscriber")
    faults = Faults(silent=("beta", 3000, 7000), gap=("alpha", "SYM001", 5000, 4))
    records = [r for r in feed(start, 10_000, faults) if not r[0].startswith(b"gamma")]
    sent = sum(r.gate.stats.events_in for r in runs)
    for chunk in chunks(records, 5 * 9):
        for partition, tag in ((0, b"alpha"), (1, b"beta")):
            mine = [r for r in chunk if r[0].startswith(tag)]
            if mine:
                produce(bootstrap, raw, mine, partition=partition)
        sent += len(chunk)
        wait(lambda: sum(r.gate.stats.events_in for r in runs) >= sent, "the gates")  # noqa: B023
    last = max(int(r[1].split(b'"ts":')[1].split(b",")[0]) for r in records) * 10**6
    wait(lambda: watch.last_origin.get("alpha", 0) >= last, "the last facts")
    for run in runs:
        run.stop()
    for publisher in publishers:
        publisher.close()
    subscriber.stop()
    fired = sorted((t.alert_id, t.label("provider")) for t in got if t.state == "firing")
    assert fired == [("provider.silent", "beta"), ("sequence.gap", "alpha")]
    assert [t.state for t in got if t.alert_id == "provider.silent"] == ["firing", "resolved"]
    assert {g for r in runs for g in [r.gate.stats.events_in]} != {0}
    # The trap: each gate alone thinks the provider on the other partition is silent.
    wrong = {t.label("provider") for n in naive for t in n if t.state == "firing"}
    assert wrong == {"alpha", "beta"}
