"""The compiled record checker against the Python path, over a large seeded corpus.

    python bench/differential.py [--records N] [--seed S] [--batch B] [--only NAME] [--json]

Feeds N records (default 1,000,000; about 30 % hostile: bench/fuzz_gate.py's generator, the
careless-field generator and the hand-written hostile cases of bench/_corpus.py) through
``RuleSet.evaluate_records`` twice per batch, with the fast path on and forced off, under
each extraction configuration of bench/_differential.py (the packaged rules with contracts
and stateful rules; the market-data rules with their schema rule; a dotted origin; seconds;
ISO-8601), or those named by ``--only``, and compares everything the results say record by
record (tests/rules/test_checker_native.py runs 25,000 of them).

Figures per configuration: records, mismatches (must be 0), the records per path (the fast
runs' rules._checker.CHECK_PATHS), and each path's process CPU time over the corpus (big
padded records dominate it: bench/rules.py's ``checker`` figures are the per-quote cost).
Exits 1 on any mismatch. Writes bench/results/differential.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._corpus import iter_values  # noqa: E402
from bench._differential import CONFIGS, compare  # noqa: E402
from bench._machine import machine, write_result  # noqa: E402


def _progress(o: Any, records: int) -> None:
    cpu = o.cpu_s["fast"] + o.cpu_s["python"]
    print(f"  {records:,} records, {o.mismatches} mismatches, {cpu:.0f} s CPU", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--batch", type=int, default=1_000, help="records per evaluate_records")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument(
        "--only", action="append", default=[], help="run the configurations named so (repeatable)"
    )
    args = ap.parse_args()
    info = machine(records=args.records, seed=args.seed, batch=args.batch)
    result: dict[str, Any] = {"benchmark": "differential", "date": time.strftime("%Y-%m-%d")}
    result["machine"] = info
    total = 0
    began = time.perf_counter()
    # Overflow warnings of rules over hostile prices: the same on both paths, and compared.
    with np.errstate(all="ignore"):
        for name, extraction, files in CONFIGS:
            if args.only and name not in args.only:
                continue
            print(f"{name}: {args.records:,} records", file=sys.stderr, flush=True)
            o = compare(
                extraction, files, iter_values(args.seed, args.records), args.batch, _progress
            )
            total += o.mismatches
            result[name] = {
                "records": o.records,
                "mismatches": o.mismatches,
                "batches_that_raised_on_both_paths": o.raised_batches,
                **{f"path {k}": v for k, v in sorted(o.paths.items())},
                "cpu_s_fast_path": round(o.cpu_s["fast"], 2),
                "cpu_s_python_path": round(o.cpu_s["python"], 2),
            }
            for line in o.first_mismatches:
                print(f"  MISMATCH {line}", file=sys.stderr)
    result["mismatches"] = total
    result["wall_s"] = round(time.perf_counter() - began, 1)
    write_result("differential", result, args.json)
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
