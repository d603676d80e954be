"""The gate's per-batch metrics work, and a histogram fed per batch against one fed per value.

    python bench/metrics.py [--json]

Each figure for batches of 5,000 records from 5 providers and from 1,000 (a batch of a feed
with many providers: every label set is fed in the same pass), process CPU time per record:
``count_us_per_record``: ``Gate._count`` over the batch's trail rows, with the columns it
reads taken from them (``_counted``; one in ten dead-lettered; every latency histogram fed).
``count_only_us_per_record``: ``Gate._count`` alone, given those columns.
``histogram_per_value_us`` / ``histogram_batched_us``: the three latencies of a record
observed into prometheus_client ``Histogram``s one value at a time (``labels(...).observe``)
and into ``BatchHistogram``s a batch at a time, the same values in the same run. Writes
bench/results/metrics.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._machine import machine, write_result  # noqa: E402
from stampline.audit import trail_row  # noqa: E402
from stampline.collectors import Gate, GateSettings, SidecarMetrics, TrailTopic  # noqa: E402
from stampline.collectors._gate import _counted  # noqa: E402
from stampline.collectors._metrics import BatchHistogram  # noqa: E402
from stampline.rules import Extraction, RuleSet  # noqa: E402

ROWS = 5000
ROUNDS = 40
BUCKETS = (0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0)


def _rows(now: int, providers: int) -> list[tuple[object, ...]]:
    return [
        trail_row(
            f"id{i}",
            "gate",
            "",
            now,
            now + 50_000 + i,
            now - 2_000_000,
            now - 3_000_000,
            now,
            1000,
            0,
            "h",
            "raw",
            0,
            i,
            now // 10**6 - 1,
            f"p{i % providers}",
            f"SYM{i % 50}",
            i,
            1.5,
            "forwarded" if i % 10 else "dead_lettered",
            "" if i % 10 else "price.positive",
            0 if i % 10 else 1,
            "",
            1,
            "configured",
            "",
            "",
            "",
            "CreateTime",
        )
        for i in range(ROWS)
    ]


def _cpu_per_record(run: object, rounds: int = ROUNDS) -> float:
    assert callable(run)
    run()  # warm
    t0 = time.process_time()
    for _ in range(rounds):
        run()
    return (time.process_time() - t0) / rounds / ROWS * 1e6


def _figures(n: int) -> dict[str, float]:
    """The figures for batches from ``n`` providers."""
    gate = Gate(
        GateSettings("unused:9092", ("raw",), "clean", "dlq"),
        RuleSet(Extraction()),
        TrailTopic(),
        SidecarMetrics(),
    )
    rows = _rows(time.time_ns(), n)
    # the reference route's rows alone: no compiled route's records (no batch to read)
    count = _cpu_per_record(lambda: gate._count(ROWS, _counted(rows, None, None)))  # type: ignore[arg-type]
    routed = _counted(rows, None, None)  # type: ignore[arg-type]
    count_only = _cpu_per_record(lambda: gate._count(ROWS, routed))

    rng = np.random.default_rng(5)
    values = rng.lognormal(-7, 2, (3, ROWS))
    providers = [f"p{i % n}" for i in range(ROWS)]
    one = [Histogram(f"h{k}", "h", ["provider"], buckets=BUCKETS, registry=CollectorRegistry())
           for k in range(3)]  # fmt: skip
    many = [BatchHistogram(f"h{k}", "h", ["provider"], BUCKETS, CollectorRegistry())
            for k in range(3)]  # fmt: skip
    sets = [(f"p{i}",) for i in range(n)]
    which = np.arange(ROWS) % n

    def per_value() -> None:
        for k, h in enumerate(one):
            for p, v in zip(providers, values[k].tolist(), strict=True):
                h.labels(p).observe(v)

    def batched() -> None:
        for k, h in enumerate(many):
            h.observe_many(sets, which, values[k])

    return {
        "count_us_per_record": round(count, 3),
        "count_only_us_per_record": round(count_only, 3),
        "histogram_per_value_us": round(_cpu_per_record(per_value, 10), 3),
        "histogram_batched_us": round(_cpu_per_record(batched), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    host = machine()
    result: dict[str, object] = {"benchmark": "metrics", "rows_per_batch": ROWS}
    for n in (5, 1000):
        result[f"{n}_providers"] = _figures(n)
    result["machine"] = host
    write_result("metrics", result, args.json)


if __name__ == "__main__":
    main()
