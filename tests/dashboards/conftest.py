"""One real demo run (embedded broker, gate, SDK stage, tap) into a chDB store, shared by the
dashboard tests: the panels' SQL runs against what the real pipeline wrote."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit import ChdbStore
from dashboards import TimeRange
from stampline._feed import FeedPlan
from stampline.demo import DemoResult, run_demo

PLAN = FeedPlan(rounds=24, silent_rounds=(8, 14), bad_per_kind=1)


@dataclass(frozen=True, slots=True)
class DemoStore:
    store: ChdbStore
    result: DemoResult
    window: TimeRange  # a dashboard range that covers the whole run


@pytest.fixture(scope="session")
def demo_store(bootstrap: str, chdb_dir: Path) -> Iterator[DemoStore]:
    """The demo's trail, with a dashboard time range around it."""
    with ChdbStore(chdb_dir, "grafana_demo") as store:
        result = run_demo(store, plan=PLAN, bootstrap=bootstrap, topic_prefix="grafana-demo.")
        (span,) = store.query(
            "SELECT toUnixTimestamp(min(minute)) * 1000 AS lo,"
            " toUnixTimestamp(max(minute)) * 1000 AS hi FROM {db}.hop_latency_1m"
        )
        yield DemoStore(store, result, TimeRange(int(span["lo"]), int(span["hi"]) + 60_000))
