"""The whole gate on its compiled route against its reference route, over a large corpus.

    python bench/gate_differential.py [--records N] [--seed S] [--json]

Feeds N records (default 1,000,000; about 30 % hostile) through the real embedded broker
into a gate on the reference route and a gate on the compiled route, and compares what they
wrote record by record, row by row (bench/_gatediff.py says what the corpus holds, which
rules judge it and what is masked: only the times the gates took).
tests/collectors/test_gate_native.py runs 6,000 of them in the suite.

Figures: records, forwarded and dead-lettered per route, the records per path on the
compiled run (collectors/_gate.py's GATE_PATHS), and mismatches (must be 0; the first few are
printed). Exits 1 on any mismatch. Writes bench/results/gate_differential.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._gatediff import compare_routes, differences  # noqa: E402
from bench._machine import machine, write_result  # noqa: E402
from stampline.broker import EmbeddedBroker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    info = machine(records=args.records, seed=args.seed)
    began = time.perf_counter()
    print(f"{args.records:,} records through both routes (seed {args.seed})", file=sys.stderr)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        reference, compiled = compare_routes(
            broker.bootstrap_servers, Path(tmp), args.seed, args.records, keep=0
        )
    found = differences(reference, compiled)
    result: dict[str, Any] = {
        "benchmark": "gate_differential",
        "date": time.strftime("%Y-%m-%d"),
        "machine": info,
        "records": args.records,
        "reference_forwarded": reference.forwarded,
        "reference_dead_lettered": reference.dead_lettered,
        "compiled_forwarded": compiled.forwarded,
        "compiled_dead_lettered": compiled.dead_lettered,
        "trail_rows": sum(compiled.rows.values()),
        "warning_and_dead_letter_rows": sum(compiled.dead_rows.values()),
        "paths": compiled.paths,
        "mismatches": len(found),
        "first_mismatches": found[:10],
        "seconds": round(time.perf_counter() - began, 1),
    }
    for line in found[:10]:
        print(f"MISMATCH {line}", file=sys.stderr)
    write_result("gate_differential", result, args.json)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
