"""Batch digest benchmark: the compiled digest (native/) against the Python reference.

    python bench/digest.py [--quick] [--json] [--rows N] [--repeat R]

Digests the same canonical tables (bench/store.py's generator, 100k rows each, the
recorder's batch size order) on both paths in one run and reports process CPU time (all
threads) and wall time per batch, and the compiled path's speed-up. The row order (Arrow's
sort, shared by both paths) is timed apart, as is the whole ``digest_batch`` (sort +
compiled digest), which is what the recorder pays per batch.
--quick: 3 batches; default 10.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path[0] = str(Path(__file__).resolve().parents[1])

import bench.store as gen  # noqa: E402
from bench._machine import machine, write_result  # noqa: E402
from stampline import _native  # noqa: E402
from stampline.audit._ledger import (  # noqa: E402
    _HASH_THREADS,
    CANONICAL,
    DIGEST_PATHS,
    SORT_KEYS,
    _digest_python,
    digest_batch,
)


def _timed(tables: list[pa.Table], step: Callable[[pa.Table], Any]) -> dict[str, float]:
    """CPU and wall milliseconds per table of ``step``, best of two passes over all tables."""
    best = (float("inf"), float("inf"))
    for _ in range(2):
        cpu, wall = time.process_time(), time.perf_counter()
        for t in tables:
            step(t)
        took = (time.process_time() - cpu, time.perf_counter() - wall)
        best = min(best, took)
    per = len(tables)
    return {"cpu_ms": round(best[0] * 1e3 / per, 2), "wall_ms": round(best[1] * 1e3 / per, 2)}


def _order(t: pa.Table) -> pa.Array:
    return pc.sort_indices(t, [(k, "ascending") for k in SORT_KEYS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 batches instead of 10")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--rows", type=int, default=100_000, help="rows per batch")
    ap.add_argument("--repeat", type=int, help="batches (overrides --quick)")
    args = ap.parse_args()
    host = machine()  # before any work: the load is other programs'
    batches = args.repeat or (3 if args.quick else 10)
    rng = np.random.default_rng(7)
    events = args.rows // len(gen.STAGES)
    gen.TOTAL_EVENTS = events * batches
    tables = [gen.generate(events, i * events, rng, 0) for i in range(batches)]
    orders = {id(t): _order(t) for t in tables}
    columns = [(name, kind) for name, _, kind in CANONICAL]

    def native(t: pa.Table) -> Any:
        order = pa.table([orders[id(t)]], names=["order"])
        return _native.digest_table(t, order, columns, _HASH_THREADS)

    for t in tables:  # the figures below are only worth having if both agree
        assert native(t)[1] == _digest_python(t, CANONICAL, orders[id(t)])
    before = DIGEST_PATHS["native"]
    figures = {
        "sort": _timed(tables, _order),
        "python_digest": _timed(tables, lambda t: _digest_python(t, CANONICAL, orders[id(t)])),
        "native_digest": _timed(tables, native),
        "digest_batch": _timed(tables, digest_batch),
    }
    # The same rows already in canonical order: the compiled path hashes whole runs.
    tables = [t.take(orders[id(t)]) for t in tables]
    orders = {id(t): _order(t) for t in tables}
    figures["python_digest_in_order"] = _timed(
        tables, lambda t: _digest_python(t, CANONICAL, orders[id(t)])
    )
    figures["native_digest_in_order"] = _timed(tables, native)
    assert DIGEST_PATHS["native"] > before, "digest_batch did not take the compiled path"
    py, rs = figures["python_digest"], figures["native_digest"]
    result = {
        "machine": host,
        "rows_per_batch": tables[0].num_rows,
        "batches": batches,
        **figures,
        "speedup": {
            "cpu": round(py["cpu_ms"] / max(rs["cpu_ms"], 1e-3), 2),
            "wall": round(py["wall_ms"] / max(rs["wall_ms"], 1e-3), 2),
        },
        "native_rows_per_cpu_s": round(tables[0].num_rows / max(rs["cpu_ms"], 1e-3) * 1e3),
    }
    write_result("digest", result, args.json)


if __name__ == "__main__":
    main()
