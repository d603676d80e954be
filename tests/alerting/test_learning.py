"""Dismiss and learn in the running detectors: a pattern dismissed as expected is downgraded
one level, and re-escalated while its provider's update rate is far above its baseline."""

from __future__ import annotations

from stampline.alerting import (
    DismissalBook,
    KeyDetectors,
    Transition,
    UpdateRates,
    fingerprint,
    parse_alerts,
    read_actions,
    write_action,
)
from stampline.audit import ChdbStore
from stampline.rules import Failure

S = 1_000_000_000
DEFS = parse_alerts(
    """\
version: 1
dismissals: {downgrade_after: 2, volatile_rate_ratio: 3}
alerts:
  - {id: price.divergence, kind: divergence, severity: warning, scope: {instrument: true}}
"""
)
LABELS = (("instrument", "SYM1"), ("provider", "beta"), ("venue", ""))


def fire(book: DismissalBook | None, rates_per_batch: list[int]) -> Transition:
    """Batches of ``n`` records from beta, 1 s apart; the last one's first row diverges."""
    got: list[Transition] = []
    detectors = KeyDetectors(DEFS, {"price.div": "divergence"}, got.extend, dismissals=book)
    for i, n in enumerate(rates_per_batch):
        last = i == len(rates_per_batch) - 1
        failing = {0: [Failure("price.div", 1, "off")]} if last else {}
        detectors.observe_batch(
            i * S, ["beta"] * n, ["SYM1"] * n, list(range(n)), [i * S] * n, {}, failing
        )
    (fired,) = [t for t in got if t.state == "firing"]
    return fired


def test_dismissed_as_expected_is_downgraded() -> None:
    """Below ``downgrade_after`` dismissals the defined severity holds; at it, one level down."""
    fp = fingerprint("price.divergence", LABELS)
    steady = [10] * 30
    assert fire(DismissalBook({fp: 1}), steady).severity == "warning"
    assert fire(DismissalBook({fp: 2}), steady).severity == "info"
    assert fire(None, steady).severity == "warning"


def test_volatile_market_restores_the_severity() -> None:
    """A provider publishing many times its baseline rate is volatile: no downgrade."""
    fp = fingerprint("price.divergence", LABELS)
    burst = [10] * 60 + [200] * 10  # 20 times the rate for the last 10 s
    assert fire(DismissalBook({fp: 5}), burst).severity == "warning"


def test_rates_ratio() -> None:
    """The short-window rate over the long baseline rises with a burst and is 1 unseeded."""
    rates = UpdateRates(short_s=5, long_s=300)
    assert rates.ratio("x") == 1.0
    for i in range(60):
        rates.add({"x": 10}, i * S)
    assert 0.8 < rates.ratio("x") < 1.2
    for i in range(60, 70):
        rates.add({"x": 100}, i * S)
    assert rates.ratio("x") > 3


def test_book_reads_dismissals_from_the_store(store: ChdbStore) -> None:
    """Only dismissals with verdict expected count, per fingerprint."""
    for verdict in ("expected", "expected", "fixed"):
        write_action(store, at_ns=S, action="dismiss", fingerprint="abc", verdict=verdict)
    assert len(read_actions(store)) == 3
    book = DismissalBook.from_store(store)
    assert (book.count("abc"), book.count("other")) == (2, 0)
