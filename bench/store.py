"""Store benchmark: insert rate, bytes per observation, replay p99, compare and hotspots.

    python bench/store.py [--quick] [--json] [--rows N] [--path DIR]

Generates realistic observations -- 4 providers, 4,000 instruments, 5 stages (gate, norm,
enrich, risk, publish), lognormal jittered hops, nanosecond times over one day -- and writes
them through the store's columnar write path (digest, ledger, dedup token, rollup views
included) in 1M-row batches. Baseline in the same run: a plain INSERT of the same Arrow
table into an unindexed MergeTree with no views and no ledger. --quick: 10M observations;
default: 100M (long; needs ~15 GB of disk).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

# Run as a script, sys.path[0] is this folder, where bench/rules.py would shadow the rules
# package: import from the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._machine import machine, write_result  # noqa: E402
from stampline.audit import ChdbStore, hotspots, providers_compare, replay_event  # noqa: E402
from stampline.audit._store import _OBS_COLUMNS, _OBS_SELECT, CANONICAL_SCHEMA  # noqa: E402
from stampline.collectors import source_event_id  # noqa: E402

STAGES = ("gate", "norm", "enrich", "risk", "publish")
PROVIDERS = ("lse", "nyse", "tse", "cme")
INSTRUMENTS = 4_000
DAY_NS = 86_400 * 10**9
BATCH_EVENTS = 200_000  # 1M observations per batch


def generate(events: int, first: int, rng: np.random.Generator, t0: int) -> pa.Table:
    """``events`` events (5 observations each), event numbers from ``first``."""
    n = events
    idx = np.arange(first, first + n)
    origin = t0 + (idx * (DAY_NS // max(1, TOTAL_EVENTS))) + rng.integers(0, 10**6, n)
    provider = rng.integers(0, len(PROVIDERS), n)
    instrument = rng.integers(0, INSTRUMENTS, n)
    price = np.round(100 + instrument * 0.01 + rng.normal(0, 0.02, n), 4)
    # Ids as the gate makes them: from the raw record's coordinates and broker time, which
    # falls between the origin and the gate's receipt -- so they are time-ordered.
    raw_ms = (origin + rng.integers(0, 200_000, n)) // 10**6
    coords = zip((instrument % 12).tolist(), (idx // 12).tolist(), raw_ms.tolist(), strict=True)
    eid = [source_event_id("md.raw", p, o, ms) for p, o, ms in coords]
    cols: dict[str, list[np.ndarray]] = {k: [] for k in CANONICAL_SCHEMA.names}
    prev_out = origin.copy()
    prev_stage = np.array(["origin"] * n, dtype=object)
    prev_err = np.zeros(n, dtype=np.int64)
    for s, stage in enumerate(STAGES):
        hop = rng.lognormal(np.log(200_000 * (s + 1)), 0.6, n).astype(np.int64)  # 0.2-1 ms
        hold = rng.lognormal(np.log(50_000), 0.8, n).astype(np.int64)
        received = prev_out + hop
        emitted = received + hold
        err = np.full(n, 1_000_000 if s == 0 else 100_000, dtype=np.int64)
        cols["event_id"].append(np.array(eid, dtype=object))
        cols["stage"].append(np.array([stage] * n, dtype=object))
        cols["prev_stage"].append(prev_stage)
        cols["received"].append(received)
        cols["emitted"].append(emitted)
        cols["prev_emitted"].append(prev_out)
        cols["origin"].append(origin)
        cols["ingested"].append(origin + hop if s == 0 else cols["ingested"][0])
        cols["clock_err_ns"].append(err)
        cols["prev_clock_err_ns"].append(prev_err)
        cols["host"].append(np.array([f"{stage}-{h}" for h in instrument % 3], dtype=object))
        cols["topic"].append(np.array([f"md.{stage}"] * n, dtype=object))
        cols["partition"].append(instrument % 12)
        cols["offset"].append(idx // 12)
        cols["broker_time"].append(emitted // 10**6)
        cols["provider"].append(np.array(PROVIDERS, dtype=object)[provider])
        cols["instrument"].append(np.array([f"SYM{i:04d}" for i in instrument], dtype=object))
        cols["seq"].append(idx)
        cols["price"].append((price if s == 0 else np.full(n, np.nan)).astype("<f8").view("<i8"))
        cols["outcome"].append(np.array(["forwarded" if s == 0 else "observed"] * n, dtype=object))
        cols["rule_id"].append(np.array([""] * n, dtype=object))
        cols["rule_version"].append(np.zeros(n, dtype=np.int64))
        cols["parents"].append(np.array([""] * n, dtype=object))
        cols["authority"].append(np.full(n, 2, dtype=np.int64))
        # A sidecar stamps with one bound source; warn flags are rare.
        cols["clock_source"].append(np.array(["configured"] * n, dtype=object))
        cols["warnings"].append(np.where(idx % 500 == 0, "price.tick@v1", "").astype(object))
        # no rule file hashes (nothing broke a file's rule) and no derived events
        cols["rule_sha256"].append(np.array([""] * n, dtype=object))
        cols["parent_stamps"].append(np.array([""] * n, dtype=object))
        # producers set the record's time (the broker's default, CreateTime)
        cols["broker_time_type"].append(np.array(["CreateTime"] * n, dtype=object))
        prev_out, prev_stage, prev_err = emitted, np.array([stage] * n, dtype=object), err
    arrays = {
        k: pa.array(np.concatenate(v), CANONICAL_SCHEMA.field(k).type) for k, v in cols.items()
    }
    return pa.table(arrays, schema=CANONICAL_SCHEMA)


TOTAL_EVENTS = 0


def main() -> None:
    global TOTAL_EVENTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10M observations instead of 100M")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--rows", type=int, help="observations to write (overrides --quick)")
    ap.add_argument("--path", type=Path, help="store folder (default: a temporary one)")
    args = ap.parse_args()
    host = machine()  # before any work: the load is other programs'
    rows = args.rows or (10_000_000 if args.quick else 100_000_000)
    TOTAL_EVENTS = rows // len(STAGES)
    path = args.path or Path(tempfile.mkdtemp(prefix="stampline-bench-"))
    if path.exists() and args.path:
        shutil.rmtree(path)

    def say(msg: str) -> None:
        print(f"bench/store: {msg}", file=sys.stderr, flush=True)

    rng = np.random.default_rng(7)
    t0 = (time.time_ns() // DAY_NS - 1) * DAY_NS  # yesterday, midnight UTC
    store = ChdbStore(path, "bench")
    store.query("SELECT 1")
    store._execute(
        "CREATE TABLE bench.baseline AS bench.observations ENGINE = MergeTree ORDER BY tuple()"
    )
    insert_s = baseline_s = 0.0
    sample_ids: list[str] = []
    written = 0
    while written < rows:
        events = min(BATCH_EVENTS, (rows - written) // len(STAGES))
        table = generate(events, written // len(STAGES), rng, t0)
        sample_ids.extend(
            table.column("event_id").slice(0, events).to_pylist()[:: max(1, events // 50)]
        )
        started = time.perf_counter()
        store.write_observation_table(table)
        insert_s += time.perf_counter() - started
        if written < 2_000_000:  # the baseline on the first batches only: same data, no extras
            started = time.perf_counter()
            store._insert(
                "baseline", _OBS_COLUMNS, _OBS_SELECT.format(batch=0, chain_id="''"), table, None
            )
            baseline_s += time.perf_counter() - started
            baseline_rows = written + table.num_rows
        written += table.num_rows
        say(f"written {written:,}/{rows:,} ({written / insert_s:,.0f} rows/s)")
    say("merging parts (OPTIMIZE FINAL) so the sizes are the settled ones")
    store._execute("OPTIMIZE TABLE bench.observations FINAL")
    cols = store.query(
        """SELECT name, data_compressed_bytes AS c, data_uncompressed_bytes AS u
           FROM system.columns WHERE database = 'bench' AND table = 'observations'"""
    )
    total_bytes = sum(c["c"] for c in cols)
    (parts,) = store.query(
        "SELECT sum(bytes_on_disk) AS disk FROM system.parts "
        "WHERE database = 'bench' AND table = 'observations' AND active"
    )
    say("replaying 300 random events")
    lat = []
    for eid in (sample_ids * 3)[:300]:
        started = time.perf_counter()
        replay_event(store, eid)
        lat.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    compare = providers_compare(store, DAY_NS)
    compare_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    hot = hotspots(store, 15 * 60 * 10**9)
    hotspots_ms = (time.perf_counter() - started) * 1000
    result = {
        "benchmark": "store",
        "observations": written,
        "insert_rows_per_s": round(written / insert_s),
        "baseline_insert_rows_per_s": round(baseline_rows / baseline_s),
        "insert_vs_baseline": round((written / insert_s) / (baseline_rows / baseline_s), 3),
        "bytes_per_observation": round(total_bytes / written, 2),
        "disk_bytes_per_observation": round(parts["disk"] / written, 2),
        "bytes_per_column": {
            c["name"]: round(c["c"] / written, 3) for c in sorted(cols, key=lambda c: -c["c"])
        },
        "replay_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "replay_ms_p99": round(float(np.percentile(lat, 99)), 2),
        "compare_ms": round(compare_ms, 1),
        "compare_providers": len(compare["rows"]),
        "hotspots_ms": round(hotspots_ms, 1),
        "hotspot_pairs": len(hot["rows"]),
        "store_path": str(path),
        "machine": host,
    }
    store.close()
    write_result("store", result, args.json)


if __name__ == "__main__":
    main()
