"""The gate on the rules engine, over the real broker: warn flags, hot reload, broken rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stampline.audit import ChdbStore
from stampline.collectors import GateSettings
from stampline.rules import RulesHolder
from tests.helpers import GateRun, produce, read_all
from tests.rules.conftest import raw

RULES = (
    "version: 2\nrules:\n"
    "  - {id: qty.max, version: 1, kind: range, field: quantity, max: 1000}\n"
    "  - {id: price.tick, version: 1, kind: tick_size, field: price, tick: 0.01, severity: warn}\n"
    "  - {id: qty.obs, version: 1, kind: range, field: quantity, max: 10, severity: observe}\n"
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.slow
def test_warn_forwards_flagged_reload_applies_and_broken_edit_is_refused(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    store: ChdbStore,
    tmp_path: Path,
    uid: str,
) -> None:
    """A warn verdict is forwarded with the stampline.warn header, observe only counts; an
    edit reaches the running gate and its dead letters name the new version; a broken edit
    leaves the old rules running; the trail rows record the warn verdict and the bound's source."""
    raw_topic, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    path = tmp_path / "live.rules.yaml"
    path.write_text(RULES, "utf-8")
    holder = RulesHolder([path], interval_s=0)
    run = GateRun(
        GateSettings(
            bootstrap,
            (raw_topic,),
            clean,
            dlq,
            group_id=f"{uid}-g",
            clock_source="fallback: chronyc not found",
        ),
        holder,
        store,
    )
    try:
        produce(
            bootstrap,
            raw_topic,
            [
                (b"k1", raw(ts=now_ms(), price=10.005, quantity=50)),  # warn + observe
                (b"k2", raw(ts=now_ms(), quantity=5000, seq=2)),  # reject under v1
            ],
        )
        run.wait_for(2)
        path.write_text(
            RULES.replace("max: 1000}", "max: 100}").replace(
                "id: qty.max, version: 1", "id: qty.max, version: 2"
            ),
            "utf-8",
        )
        produce(bootstrap, raw_topic, [(b"k3", raw(ts=now_ms(), quantity=500, seq=3))])
        run.wait_for(3)
        path.write_text("version: 2\nrules:\n  - {id: qty.max, version: 3, kind: range, max: 1}\n")
        produce(bootstrap, raw_topic, [(b"k4", raw(ts=now_ms(), quantity=500, seq=4))])
        run.wait_for(4)
    finally:
        run.stop()
    forwarded = read_all(bootstrap, clean, 1)
    assert [(r.key, r.header("stampline.warn")) for r in forwarded] == [(b"k1", b"price.tick@v1")]
    dead = read_all(bootstrap, dlq, 3)
    assert [
        (r.key, r.header("stampline.rule.id"), r.header("stampline.rule.version")) for r in dead
    ] == [
        (b"k2", b"qty.max", b"1"),
        (b"k3", b"qty.max", b"2"),
        (b"k4", b"qty.max", b"2"),  # the broken v3 edit was refused
    ]
    assert holder.rejected == 1
    assert "rules.0.range.field: Field required" in (holder.last_error or "")
    assert run.gate.stats.warned["price.tick"] == 1
    counted = holder.current.stats.violations
    assert counted[("qty.obs", 1, False)] == 2  # k3 and k4, judged by the reloaded set
    rows = store.query("SELECT rule_id, rule_version FROM {db}.dead_letters FINAL ORDER BY offset")
    assert [(r["rule_id"], r["rule_version"]) for r in rows] == [
        ("qty.max", 1),
        ("qty.max", 2),
        ("qty.max", 2),
    ]
    trail = store.query(
        "SELECT toString(outcome) AS outcome, warnings, clock_source FROM {db}.trail "
        "ORDER BY offset"
    )
    assert [(r["outcome"], r["warnings"]) for r in trail] == [
        ("forwarded", "price.tick@v1"),
        ("dead_lettered", ""),
        ("dead_lettered", ""),
        ("dead_lettered", ""),
    ]
    assert {r["clock_source"] for r in trail} == {"fallback: chronyc not found"}
