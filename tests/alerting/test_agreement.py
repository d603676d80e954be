"""Alerts and reports agree on what is missing: through a real gate, three numbers skipped
on one key and one record refused on another (a NaN price: not JSON, yet it names its
number) give the same count from the sequence-gap alert, `stampline completeness` and
`stampline providers compare`; the refused record is missing from none of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from stampline.audit import ChdbStore
from stampline.cli import app
from tests.alerting.feed import Faults
from tests.alerting.test_faults import run_feed


def cli(store: ChdbStore, chdb_dir: Path, *args: str) -> Any:
    result = CliRunner().invoke(
        app, [*args, "--json", "--store", str(chdb_dir), "--database", store.database]
    )
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


@pytest.mark.slow
def test_the_gap_alert_completeness_and_providers_compare_count_the_same(
    bootstrap: str,
    store: ChdbStore,
    chdb_dir: Path,
    make_topics: Callable[..., list[str]],
    uid: str,
) -> None:
    """alpha/SYM002 skips 3 numbers, alpha/SYM001's record at 3 s has a NaN price: one gap
    alert (3 missing, on SYM002); completeness and providers compare say 3 missing on
    SYM002 and none on SYM001."""
    faults = Faults(gap=("alpha", "SYM002", 5000, 3), nan_price=("alpha", "SYM001", 3000))
    got, _t0 = run_feed(faults, bootstrap, store, make_topics, uid)
    fired = [t for t in got if t.state == "firing"]
    assert [(t.alert_id, t.label("instrument"), t.figures["missing"]) for t in fired] == [
        ("sequence.gap", "SYM002", 3)
    ]
    gap = fired[0].figures
    (dead,) = store.query("SELECT rule_id FROM {db}.dead_letters")
    assert dead["rule_id"] == "record.non_finite"  # refused, not lost

    report = cli(store, chdb_dir, "completeness", "--grace", "0s")
    assert [
        (k["key"]["provider"], k["key"]["instrument"], k["lost"]) for k in report["sequence_keys"]
    ] == [("alpha", "SYM002", 3)]
    assert [(g["first_missing"], g["size"]) for g in report["sequence_gaps"]] == [
        (gap["first"], gap["missing"])
    ]

    compare = cli(store, chdb_dir, "providers", "compare", "--by", "instrument")
    missing = {
        (r["provider"], r["instrument"]): r["sequence_missing"]
        for r in compare["rows"]
        if r["sequence_missing"]
    }
    assert missing == {("alpha", "SYM002"): 3}
