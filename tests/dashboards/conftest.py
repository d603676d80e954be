"""Shared fixtures of the dashboards tests.

- ``demo_store``: one real demo run (embedded broker, gate, SDK stage, tap) into a chDB store:
  the panels' SQL runs against what the real pipeline wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stampline._feed import FeedPlan
from stampline.audit import ChdbStore
from stampline.dashboards import (
    TimeRange,
)
from stampline.demo import DemoResult, run_demo

PLAN = FeedPlan(rounds=24, silent_rounds=(8, 14), bad_per_kind=1)


@dataclass(frozen=True, slots=True)
class DemoStore:
    store: ChdbStore
    result: DemoResult
    window: TimeRange  # a dashboard range that covers the whole run


@pytest.fixture(scope="package")
def demo_store(
    bootstrap: str, chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoStore]:
    """The demo's trail, with a dashboard time range around it. The demo's recorder is a
    child process that holds the chDB folder while it runs, so the store is opened here
    only afterwards, and closed with the package (before another demo needs the folder)."""
    result = run_demo(
        chdb_dir,
        database="grafana_demo",
        fresh=False,
        data_dir=tmp_path_factory.mktemp("grafana-demo"),
        plan=PLAN,
        bootstrap=bootstrap,
        topic_prefix="grafana-demo.",
    )
    with ChdbStore(chdb_dir, "grafana_demo") as store:
        (span,) = store.query(
            "SELECT toUnixTimestamp(min(minute)) * 1000 AS lo,"
            " toUnixTimestamp(max(minute)) * 1000 AS hi FROM {db}.hop_latency_1m"
        )
        yield DemoStore(store, result, TimeRange(int(span["lo"]), int(span["hi"]) + 60_000))
