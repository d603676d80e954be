"""Recorder benchmark: trail topic -> store, rows/s into chDB, against a plain insert.

    python bench/recorder.py [--quick] [--json] [--rows N] [--partitions P]

Generates realistic observations (bench/store.py's generator), produces them to a trail
topic on the embedded broker as trail messages (Arrow IPC, LZ4, ~768 KiB each), then runs
one recorder over the topic into a fresh chDB store and times it until every row is
written (decode, digest, ledger chain per partition, dedup token, rollup views included).
Baselines in the same run, on the same Arrow data in the recorder's insert size: a plain
INSERT into an unindexed MergeTree with no views and no ledger, and the store's own
ledgered write without Kafka (so what the topic and decoding add shows). Each also gives the
process's CPU time per row (all its threads: chDB's, librdkafka's, and for the recorder the
background merges that run meanwhile), steadier than the rates when other work shares the
machine.
Then the trail lag while a gate runs at its full rate: a raw topic is filled, a gate (in a
process of its own, as deployed) forwards it as fast as it can while the recorder writes its
trail; the recorder's lag (age of the oldest trail message not yet written) is sampled every
100 ms, and the time the store needs after the gate has committed everything is reported.
--quick: 1M rows and 100k gate events; default 5M and 400k.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path[0] = str(Path(__file__).resolve().parents[1])

import bench.store as gen  # noqa: E402
from bench._machine import machine, write_result  # noqa: E402
from stampline._common import use_system_memory_pool  # noqa: E402
from stampline.audit import ChdbStore, decode_trail_message, encode_trail_messages  # noqa: E402
from stampline.audit._store import _OBS_COLUMNS, _OBS_SELECT  # noqa: E402
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import Recorder, RecorderSettings, producer_config  # noqa: E402


def _gate(
    bootstrap: str, topics: tuple[str, str, str, str], rules: str, group: str, stop: Any
) -> None:
    """A gate in a process of its own, at its full rate, until ``stop``."""
    from stampline.collectors import Gate, GateSettings, TrailTopic
    from stampline.rules import RuleSet

    raw, clean, dlq, trail = topics
    gate = Gate(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=group),
        RuleSet.load([Path(rules)]),
        TrailTopic(trail, "bench-gate"),
    )
    gate.run(stop)


def lag_under_gate(bootstrap: str, store: ChdbStore, tmp: Path, n: int, say: Any) -> dict[str, Any]:
    """Trail lag while a gate forwards ``n`` events at its full rate (see the module doc)."""
    from bench.gate import RULES, fill
    from bench.run import committed
    from stampline.demo import rules_file

    raw, clean, dlq, trail = (f"lag.{t}" for t in ("raw", "clean", "dlq", "trail"))
    ensure_topics(bootstrap, [raw, clean, dlq], 4)
    ensure_topics(bootstrap, [trail], 2)
    rules = tmp / "lag.rules.yaml"
    rules.write_text(RULES.format(schema=Path(rules_file()).with_name("market_data.schema.json")))
    say(f"filling {raw} with {n:,} events")
    fill(bootstrap, raw, n)
    recorder = Recorder(
        RecorderSettings(bootstrap, trail, group_id="lag-rec", heads_topic=None), store
    )
    stop_rec = threading.Event()
    rec_thread = threading.Thread(target=recorder.run, args=(stop_rec,), daemon=True)
    rec_thread.start()
    recorder.ready.wait(60)
    spawn = multiprocessing.get_context("spawn")
    stop_gate = spawn.Event()
    group = "lag-gate"
    gp = spawn.Process(
        target=_gate, args=(bootstrap, (raw, clean, dlq, trail), str(rules), group, stop_gate)
    )
    say("gate at full rate, recorder writing its trail")
    started = time.perf_counter()
    gp.start()
    samples: list[float] = []
    gate_s = store_s = 0.0
    try:
        while True:
            time.sleep(0.1)
            samples.append(recorder.stats.lag_s)
            assert rec_thread.is_alive(), "the recorder stopped"
            if not gate_s and committed(bootstrap, group, raw, 4) >= n:
                gate_s = time.perf_counter() - started
            if (
                gate_s
                and store.query(
                    "SELECT count() AS n FROM {db}.observations WHERE chain_id LIKE 'lag.trail/%'"
                )[0]["n"]
                >= n
            ):
                store_s = time.perf_counter() - started
                break
            if time.perf_counter() - started > 900:
                raise SystemExit("the gate and recorder did not finish in 900 s")
    finally:
        stop_gate.set()
        gp.join(60)
        stop_rec.set()
        rec_thread.join(60)
    ordered = sorted(samples)
    return {
        "lag_events": n,
        "lag_gate_events_per_s": round(n / gate_s),
        "lag_trail_lag_max_s": round(ordered[-1], 3),
        "lag_trail_lag_p50_s": round(ordered[len(ordered) // 2], 3),
        "lag_store_behind_gate_s": round(store_s - gate_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1M rows instead of 5M")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--rows", type=int, help="rows to write (overrides --quick)")
    ap.add_argument("--partitions", type=int, default=2, help="trail topic partitions")
    args = ap.parse_args()
    use_system_memory_pool()  # as in every sidecar (stampline/cli/_start.py)
    host = machine()
    rows = args.rows or (1_000_000 if args.quick else 5_000_000)

    def say(msg: str) -> None:
        print(f"bench/recorder: {msg}", file=sys.stderr, flush=True)

    gen.TOTAL_EVENTS = rows // len(gen.STAGES)
    rng = np.random.default_rng(11)
    t0 = (time.time_ns() // gen.DAY_NS - 1) * gen.DAY_NS
    tables = []
    made = 0
    while made < rows:
        events = min(gen.BATCH_EVENTS, (rows - made) // len(gen.STAGES))
        tables.append(gen.generate(events, made // len(gen.STAGES), rng, t0))
        made += tables[-1].num_rows
    table = pa.concat_tables(tables)
    say(f"generated {table.num_rows:,} rows")
    from confluent_kafka import Producer

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        bootstrap = broker.bootstrap_servers
        topic = "bench.trail"
        ensure_topics(bootstrap, [topic], args.partitions)
        messages = encode_trail_messages("observations", table, "bench")
        producer = Producer(producer_config(bootstrap, {"linger.ms": 20}))
        started = time.perf_counter()
        for m in messages:
            while True:
                try:
                    producer.produce(topic, m.value, b"bench", headers=m.headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        assert producer.flush(120) == 0
        produce_s = time.perf_counter() - started
        say(f"produced {len(messages):,} trail messages in {produce_s:.1f}s")

        store = ChdbStore(Path(tmp) / "store", "bench")
        store._execute(
            "CREATE TABLE bench.baseline AS bench.observations ENGINE = MergeTree ORDER BY tuple()"
        )
        # Baselines on the same rows, in the recorder's insert size (max_batch_rows).
        step = RecorderSettings(bootstrap).max_batch_rows
        sample = table.slice(0, min(table.num_rows, 4 * step))
        chunks = [sample.slice(i, step) for i in range(0, sample.num_rows, step)]
        started, cpu = time.perf_counter(), time.process_time()
        for part in chunks:
            store._insert(
                "baseline", _OBS_COLUMNS, _OBS_SELECT.format(batch=0, chain_id="''"), part, None
            )
        baseline = sample.num_rows / (time.perf_counter() - started)
        baseline_cpu = (time.process_time() - cpu) / sample.num_rows
        started, cpu = time.perf_counter(), time.process_time()
        for i, part in enumerate(chunks):
            store.write_batch("observations", part, chain_id="bench/direct", source_offset=i)
        direct = sample.num_rows / (time.perf_counter() - started)
        direct_cpu = (time.process_time() - cpu) / sample.num_rows
        say(f"baseline plain insert {baseline:,.0f} rows/s; ledgered write {direct:,.0f} rows/s")
        decode_started = time.perf_counter()
        for m in messages:
            decode_trail_message(m.value, m.headers)
        decode_rate = table.num_rows / (time.perf_counter() - decode_started)

        recorder = Recorder(
            RecorderSettings(bootstrap, topic, group_id="bench-rec", heads_topic=None), store
        )
        stop = threading.Event()
        thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
        thread.start()
        while not recorder.ready.is_set():
            time.sleep(0.01)
        started, cpu = time.perf_counter(), time.process_time()
        while recorder.stats.rows < table.num_rows:
            time.sleep(0.01)
            assert thread.is_alive(), "the recorder stopped"
        recorder_s = time.perf_counter() - started
        recorder_cpu = (time.process_time() - cpu) / table.num_rows
        stop.set()
        thread.join(60)
        ok = store.verify().ok
        lag = lag_under_gate(bootstrap, store, Path(tmp), 100_000 if args.quick else 400_000, say)
        store.close()
    result = {
        "benchmark": "recorder",
        "rows": table.num_rows,
        "trail_messages": len(messages),
        "trail_partitions": args.partitions,
        "bytes_per_message_avg": round(sum(len(m.value) for m in messages) / len(messages)),
        "produce_rows_per_s": round(table.num_rows / produce_s),
        "recorder_rows_per_s": round(table.num_rows / recorder_s),
        "ledgered_write_rows_per_s": round(direct),
        "decode_rows_per_s": round(decode_rate),
        "baseline_insert_rows_per_s": round(baseline),
        "recorder_vs_baseline": round(table.num_rows / recorder_s / baseline, 3),
        "recorder_cpu_ns_per_row": round(recorder_cpu * 1e9),
        "ledgered_write_cpu_ns_per_row": round(direct_cpu * 1e9),
        "baseline_insert_cpu_ns_per_row": round(baseline_cpu * 1e9),
        "recorder_vs_baseline_cpu": round(baseline_cpu / recorder_cpu, 3),
        "verified": ok,
        **lag,
        "machine": host,
    }
    write_result("recorder", result, args.json)


if __name__ == "__main__":
    main()
