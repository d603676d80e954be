"""Stamp-header reading: the compiled reader (native/src/stamps.rs) against the Python reference.

    python bench/stamps.py [--quick] [--json] [--records N] [--repeat R]

Reads the same records' stamp headers both ways in one run, in batches of 5,000 (the tap's
consume batch), and reports process CPU time per record (steadier than wall time on a busy
machine; best and median of R repeats):

    read_python_us / read_compiled_us     read_stamps per record / read_stamps_batch per batch
    tap_python_us / tap_compiled_us       the tap's whole per-record work (Tap._observe: stamps,
                                          event id, one trail row per stamp and its own sighting),
                                          the compiled reader forced off / on

over two corpora (tests/collectors/stampcorpus.py): ``gate``, what the gate writes on a
forwarded event (7 headers, one stage stamp: what bench/gate.py's tap reads), and ``mixed``,
what every stampline stamper writes (the SDK's derived events with parents and parent stamps,
up to 64 stages, a producer's own headers first). --quick: 20,000 records, 3 repeats.

The corpus (100,000 header lists and their messages, a few million objects) is frozen out of
the garbage collector's reach (``gc.freeze()``) before timing: otherwise the collections
that the objects both paths make trigger spend their time scanning the corpus, which a tap
does not hold (it cost the compiled path, whose results live for a whole batch, 2-3 µs a
record here).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._machine import machine, write_result  # noqa: E402
from stampline.collectors import Tap, TapSettings, TrailTopic, _stamps, read_stamps  # noqa: E402
from stampline.collectors._stamps import STAMP_PATHS, read_stamps_batch  # noqa: E402
from tests.collectors.stampcorpus import gate_written, message, written  # noqa: E402

BATCH = 5000


def cpu_us(work: Callable[[], Any], records: int, repeat: int) -> tuple[float, float]:
    """(best, median) process CPU µs per record of ``work`` over ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        t0 = time.process_time()
        work()
        runs.append((time.process_time() - t0) / records * 1e6)
    return round(min(runs), 3), round(statistics.median(runs), 3)


def reference(batches: list[list[Any]]) -> None:
    for batch in batches:
        for headers in batch:
            read_stamps(headers)  # both corpora are valid: nothing raises


def compiled(batches: list[list[Any]]) -> None:
    for batch in batches:
        read_stamps_batch(batch)


def tap(batches: list[list[Any]], fast: bool) -> None:
    native = _stamps._native
    if not fast:
        _stamps._native = None  # type: ignore[assignment]
    try:
        t = Tap(TapSettings("unused:9092", ("md.clean",), host="tap-1"), TrailTopic())
        for batch in batches:
            t._observe(batch, [])
    finally:
        _stamps._native = native


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--records", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=0)
    args = ap.parse_args()
    n = args.records or (20_000 if args.quick else 100_000)
    repeat = args.repeat or (3 if args.quick else 5)
    result: dict[str, Any] = {"machine": machine(), "records": n, "batch": BATCH}
    for name, make in (("gate", gate_written), ("mixed", written)):
        records = make(22, n)
        batches = [records[i : i + BATCH] for i in range(0, n, BATCH)]
        messages = [
            [message(h, i + j) for j, h in enumerate(b)]
            for i, b in zip(range(0, n, BATCH), batches, strict=True)
        ]
        gc.collect()
        gc.freeze()
        before = STAMP_PATHS["native"]
        compiled(batches)
        assert STAMP_PATHS["native"] - before == n, "every record must take the compiled path"
        py_best, py_median = cpu_us(lambda b=batches: reference(b), n, repeat)
        rs_best, rs_median = cpu_us(lambda b=batches: compiled(b), n, repeat)
        tap_py = cpu_us(lambda m=messages: tap(m, fast=False), n, repeat)
        tap_rs = cpu_us(lambda m=messages: tap(m, fast=True), n, repeat)
        result[name] = {
            "headers_per_record": round(sum(len(h) for h in records) / n, 1),
            "read_python_us": py_best,
            "read_python_us_median": py_median,
            "read_compiled_us": rs_best,
            "read_compiled_us_median": rs_median,
            "read_speedup": round(py_best / rs_best, 2),
            "tap_python_us": tap_py[0],
            "tap_compiled_us": tap_rs[0],
            "tap_speedup": round(tap_py[0] / tap_rs[0], 2),
        }
        del records, batches, messages
        gc.unfreeze()
    write_result("stamps", result, args.json)


if __name__ == "__main__":
    main()
