"""Rules engine vs Great Expectations, and the stateful rules' throughput.

    python bench/rules.py [--quick] [--json]

1. The same batch of market-data events (1M; 100k with --quick), already decoded into
   columns, judged by the same eight stateless rules: stampline's compiled evaluators over
   Arrow columns against Great Expectations over the same data as a pandas DataFrame (the
   GX suite is exported from the same rule file). Both produce per-row verdicts (GX with
   result_format COMPLETE); the verdicts are compared row by row. Decoding is not timed
   for either; the JSON path (bytes in, verdicts out) is timed separately.
2. Sequence-gap + staleness + divergence rules over 10,000 (provider, instrument) keys in
   micro-batches, and the state they keep per key.
3. The compiled record checker (docs/native.md): ``evaluate_records`` over 100,000 quotes
   (~150 B of JSON each, batches of 1,000) with the fast path on and forced off, process CPU
   µs per record, best of 3 alternating runs; with only the built-in checks, with the
   eight stateless rules, and with bench/gate.py's contract (the market-data schema as a
   ``kind: schema`` rule), also with its compiled contract check off (the schema loaded
   with the module hidden, the checker on). ``--only checker`` runs just this part.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# Run as a script, sys.path[0] is this folder, where bench/rules.py would shadow the rules
# package: import from the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._corpus import quote  # noqa: E402
from bench._machine import machine, write_result  # noqa: E402
from stampline.rules import Extraction, RuleSet, _checker, export_gx  # noqa: E402
from stampline.rules._gx import gx_batch  # noqa: E402
from stampline.rules._synthetic import market_batch  # noqa: E402

STATELESS = ROOT / "stampline" / "data" / "market_data_stateless.rules.yaml"
STATEFUL = """version: 2
state: {ttl: 1h, max_keys: 20000}
rules:
  - {id: seq.contiguous, version: 1, kind: sequence, field: seq, severity: warn}
  - {id: quote.stale, version: 1, kind: stale, fields: [bid, ask], max_updates: 50,
     max_age: 30s, severity: warn}
  - {id: price.divergence, version: 1, kind: divergence, field: price, threshold_pct: 5,
     sustain: 2s, align: 1s, severity: warn}
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def failing_rows_ours(result: Any) -> dict[int, set[str]]:
    rows: dict[int, set[str]] = {}
    for rule, mask, _reasons in result.outcomes:
        for i in np.flatnonzero(mask).tolist():
            rows.setdefault(i, set()).add(rule.id)
    return rows


def stateless(n: int, repeats: int) -> dict[str, Any]:
    log(f"stateless: building {n:,} events")
    table = market_batch(n, keys=10_000)
    frame = table.to_pandas()
    rules = RuleSet.load([STATELESS])
    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = rules.evaluate_table(table, 0)
        best = min(best, time.perf_counter() - start)
    log(f"stampline: {best:.3f}s")
    exported = export_gx(rules)
    batch, suite = gx_batch(exported, frame)
    gx_best = float("inf")
    gx_result = None
    for _ in range(repeats):
        start = time.perf_counter()
        gx_result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        gx_best = min(gx_best, time.perf_counter() - start)
    log(f"GX (COMPLETE, row verdicts): {gx_best:.3f}s")
    start = time.perf_counter()
    batch.validate(suite, result_format={"result_format": "BOOLEAN_ONLY"})
    gx_bool = time.perf_counter() - start
    log(f"GX (BOOLEAN_ONLY, no row verdicts): {gx_bool:.3f}s")
    theirs: dict[int, set[str]] = {}
    assert gx_result is not None
    for outcome in gx_result.results:
        rid = outcome.expectation_config.meta["stampline_rule_id"]
        for i in outcome.result.get("unexpected_index_list") or ():
            theirs.setdefault(int(i), set()).add(rid)
    ours = failing_rows_ours(result)
    equal = ours == theirs
    log(f"verdicts equal: {equal} ({len(ours):,} failing rows)")
    # The whole path from raw JSON bytes: decode, origin, identity, then the same rules.
    sample = table.slice(0, min(n, 200_000)).to_pylist()
    values = [orjson.dumps(e) for e in sample]
    start = time.perf_counter()
    rules.evaluate_records(values, 1_700_000_000_000_000_000)
    json_s = time.perf_counter() - start
    return {
        "events": n,
        "rules": 8,
        "stampline_events_per_s": round(n / best),
        "gx_events_per_s": round(n / gx_best),
        "speedup_vs_gx": round(gx_best / best, 2),
        "gx_boolean_only_events_per_s": round(n / gx_bool),
        "verdicts_equal": equal,
        "failing_rows": len(ours),
        "json_path_events_per_s": round(len(values) / json_s),
    }


def stateful_table(n: int, keys: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    providers = np.array(["xnas", "xnys", "bats", "arca", "edgx"], dtype=object)
    key = rng.integers(0, keys, n)
    order = np.argsort(key, kind="stable")
    sk = key[order]
    starts = np.r_[True, sk[1:] != sk[:-1]]
    idx = np.arange(n)
    first_of = np.maximum.accumulate(np.where(starts, idx, 0))
    seq = np.empty(n, np.int64)
    seq[order] = idx - first_of  # each key counts 0, 1, 2, ... in arrival order
    inst = key // len(providers)
    mid = 50.0 + (inst % 997) * 0.5
    price = np.round(mid * (1 + rng.normal(0, 0.002, n)), 2)
    changes = rng.random(n) < 0.7
    bid = np.where(changes, price - 0.01, np.round(mid - 0.01, 2))
    ask = bid + 0.02
    return pa.table(
        {
            "provider": pa.array(providers[key % len(providers)], pa.string()),
            "instrument": pa.array([f"I{i:05d}" for i in inst.tolist()], pa.string()),
            "seq": seq,
            "ts": 1_700_000_000_000 + idx // 50,  # 50k events per second of event time
            "price": price,
            "bid": bid,
            "ask": ask,
        }
    )


def stateful(n: int, keys: int, batch: int) -> dict[str, Any]:
    log(f"stateful: {n:,} events over {keys:,} keys, batches of {batch:,}")
    table = stateful_table(n, keys)
    path = HERE / "results" / "_stateful.rules.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(STATEFUL)
    rules = RuleSet.load([path])
    now = 1_700_000_000_000_000_000
    failures = 0
    start = time.perf_counter()
    for offset in range(0, n, batch):
        result = rules.evaluate_table(table.slice(offset, batch), now)
        failures += sum(len(reasons) for _r, _m, reasons in result.outcomes)
    elapsed = time.perf_counter() - start
    size = rules.state_size()
    log(f"stateful: {elapsed:.3f}s, {failures:,} flags, state {size}")
    return {
        "events": n,
        "keys": size["keys"],
        "batch": batch,
        "stateful_events_per_s": round(n / elapsed),
        "state_bytes_per_key": round(size["bytes"] / max(size["keys"], 1)),
        "flags": failures,
    }


def schema_rules() -> Path:
    """bench/gate.py's contract alone: the market-data schema as a ``kind: schema`` rule."""
    path = HERE / "results" / "_schema.rules.yaml"
    path.parent.mkdir(exist_ok=True)
    schema = ROOT / "stampline" / "data" / "market_data.schema.json"
    path.write_text(
        f"version: 1\nrules:\n  - {{id: contract.market_data, version: 1, kind: schema, "
        f"schema: {schema}}}\n"
    )
    return path


def checker(n: int = 100_000, batch: int = 1_000) -> dict[str, Any]:
    rnd = random.Random(7)
    values = [orjson.dumps(quote(rnd, 1_765_000_000_000, i)) for i in range(n)]
    native = _checker._native
    out: dict[str, Any] = {"checker_records": n, "checker_batch": batch}
    if native is None:
        log("checker: no compiled module (stampline._native): nothing to compare")
        return out

    def cpu_us(rules: RuleSet, on: bool) -> float:
        _checker._native = native if on else None
        try:
            start = time.process_time()
            for at in range(0, n, batch):
                rules.evaluate_records(values[at : at + batch], 1_765_000_000_000_000_000)
            return (time.process_time() - start) / n * 1e6
        finally:
            _checker._native = native

    def uncompiled() -> RuleSet:
        """The schema rule loaded with the module hidden: its contract is not compiled (every
        record runs fastjsonschema), while the checker runs."""
        _checker._native = None
        try:
            return RuleSet.load([schema_rules()])
        finally:
            _checker._native = native

    for label, load in (
        ("builtin", lambda: RuleSet(Extraction())),
        ("8_rules", lambda: RuleSet.load([STATELESS])),
        ("schema", lambda: RuleSet.load([schema_rules()])),
    ):
        runs: dict[bool, list[float]] = {False: [], True: []}
        contract_off: list[float] = []
        for _ in range(3):
            for on in (False, True):
                runs[on].append(cpu_us(load(), on))
            if label == "schema":
                contract_off.append(cpu_us(uncompiled(), True))
        python, fast = min(runs[False]), min(runs[True])
        log(f"checker {label}: python {python:.2f} us/record, fast path {fast:.2f}")
        out[f"checker_{label}_python_cpu_us_per_record"] = round(python, 2)
        out[f"checker_{label}_fast_cpu_us_per_record"] = round(fast, 2)
        out[f"checker_{label}_saved_cpu_us_per_record"] = round(python - fast, 2)
        if contract_off:
            off = min(contract_off)
            log(f"checker {label}: fast path with the contract not compiled {off:.2f} us/record")
            out[f"checker_{label}_contract_not_compiled_cpu_us_per_record"] = round(off, 2)
    start = time.process_time()
    for at in range(0, n, batch):
        native.check_records(
            values[at : at + batch], ("provider", "instrument", "seq", "ts"), 10**6, 2**20, 256
        )
    out["checker_call_alone_cpu_us_per_record"] = round((time.process_time() - start) / n * 1e6, 2)
    start = time.process_time()
    for v in values:
        orjson.loads(v)
    out["orjson_loads_cpu_us_per_record"] = round((time.process_time() - start) / n * 1e6, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--only", choices=["checker"], help="run only the checker's part")
    args = parser.parse_args()
    host = machine()  # before any work: the load is other programs'
    if args.only == "checker":
        report = {"benchmark": "rules", "date": time.strftime("%Y-%m-%d"), "machine": host}
        write_result("rules_checker", {**report, **checker()}, args.json)
        return
    n = 100_000 if args.quick else 1_000_000
    report: dict[str, Any] = {
        "benchmark": "rules",
        "date": time.strftime("%Y-%m-%d"),
        "machine": host,
        **stateless(n, 1 if args.quick else 3),
        **stateful(n, 10_000, 100_000 if not args.quick else 20_000),
        **checker(),
    }
    report["targets"] = {
        "speedup_vs_gx": ">= 3",
        "stateful_events_per_s": ">= 1,000,000",
    }
    write_result("rules", report, args.json)


if __name__ == "__main__":
    main()
