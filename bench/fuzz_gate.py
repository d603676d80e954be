"""A long fuzz run: hundreds of thousands of hostile and careless records through one gate.

    python bench/fuzz_gate.py [--quick] [--records N] [--seed S] [--json]

The test suite's Hypothesis test (tests/collectors/test_fuzz.py) explores a few hundred
records per run; this drives a running gate with many more, drawn from a seeded generator of
the kinds of input that stopped gates before: random bytes, JSON with wrong types, NaN, huge
numbers, repeated keys and endless names, hostile stamp and dead-letter headers, big keys.
About 70 % of the records are good quotes, so the gate is also doing its ordinary work.

Figures (one run; the broker is the embedded Tansu, the store chDB in a temp folder):
    records, forwarded, dead_lettered   counts (in = forwarded + dead-lettered must hold)
    by_rule                             dead letters per rule
    invariants                          each checked, True when it held
    fuzz_events_per_s                   gate throughput on the fuzzed feed
    good_events_per_s                   the same gate on good quotes only (same-run baseline)
    fuzz_vs_good                        their ratio
Exits 1 when an invariant does not hold.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._corpus import produce_all, quote, record  # noqa: E402
from bench._machine import machine  # noqa: E402
from stampline.audit import ChdbStore  # noqa: E402
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import H_REASON, H_RULE_ID, Gate, GateSettings  # noqa: E402
from stampline.demo import rules_file  # noqa: E402
from stampline.rules import RuleSet  # noqa: E402


def count_topic(bootstrap: str, topic: str) -> tuple[int, int]:
    """Records in ``topic``, and how many lack a rule id or reason header."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-count", "enable.auto.commit": False}
    )
    n = unexplained = 0
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        last = time.monotonic()
        while time.monotonic() - last < 2.0:
            for m in consumer.consume(5000, 0.2):
                if m.error() is not None:
                    continue
                n += 1
                last = time.monotonic()
                names = {k for k, v in (m.headers() or []) if v}
                if not {H_RULE_ID, H_REASON} <= names:
                    unexplained += 1
    finally:
        consumer.close()
    return n, unexplained


def run_gate(
    bootstrap: str, store: ChdbStore, raw: str, clean: str, dlq: str, n: int, group: str
) -> tuple[Gate, float, BaseException | None]:
    gate = Gate(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=group),
        RuleSet.load([rules_file()]),
        store,
    )
    stop = threading.Event()
    error: list[BaseException] = []

    def body() -> None:
        try:
            gate.run(stop)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    began = 0.0
    thread.start()
    while gate.stats.events_in < n and thread.is_alive():
        if gate.stats.events_in and not began:
            began = time.perf_counter()
        time.sleep(0.01)
    elapsed = time.perf_counter() - (began or time.perf_counter())
    stop.set()
    thread.join(120)
    return gate, n / elapsed if elapsed else 0.0, error[0] if error else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50,000 records instead of 300,000")
    ap.add_argument("--records", type=int, help="how many fuzzed records")
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    n = args.records or (50_000 if args.quick else 300_000)
    rnd = random.Random(args.seed)
    now_ms = int(time.time() * 1000)
    info = machine(records=n, seed=args.seed)
    print(f"generating {n:,} records (seed {args.seed})", file=sys.stderr)
    fuzzed = [record(rnd, now_ms, i) for i in range(n)]
    good = [(None, orjson.dumps(quote(rnd, now_ms, i)), []) for i in range(n)]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        b = broker.bootstrap_servers
        uid = uuid.uuid4().hex[:8]
        topics = {k: f"{uid}.{k}" for k in ("raw", "clean", "dlq", "good", "gclean", "gdlq")}
        ensure_topics(b, topics.values(), 2)
        print("producing", file=sys.stderr)
        produce_all(b, topics["raw"], fuzzed)
        produce_all(b, topics["good"], good)
        with ChdbStore(Path(tmp), "fuzz") as store:
            print("gate over the good feed (baseline)", file=sys.stderr)
            _g, good_rate, good_error = run_gate(
                b, store, topics["good"], topics["gclean"], topics["gdlq"], n, f"{uid}-good"
            )
            print("gate over the fuzzed feed", file=sys.stderr)
            gate, fuzz_rate, error = run_gate(
                b, store, topics["raw"], topics["clean"], topics["dlq"], n, f"{uid}-fuzz"
            )
            # Every record read has its own observation row (a record that claims another's
            # event id shares that event's row in the `trail` view, as a re-sent event should,
            # but its observation is kept): count them by where they were read.
            (trail,) = store.query(
                "SELECT uniqExact(partition, offset) AS records FROM {db}.observations "
                f"WHERE topic = '{topics['raw']}' AND stage = 'gate'"
            )
        clean_n, _ = count_topic(b, topics["clean"])
        dlq_n, unexplained = count_topic(b, topics["dlq"])
    s = gate.stats
    invariants = {
        "gate did not raise": error is None and good_error is None,
        "every record taken in": s.events_in == n,
        "in = forwarded + dead-lettered": s.events_in == s.forwarded + s.dead_lettered_total,
        "topics hold each record once": (clean_n, dlq_n) == (s.forwarded, s.dead_lettered_total),
        "every dead letter has a rule and reason": unexplained == 0,
        "an observation for every record": trail == {"records": n},
    }
    result = {
        "machine": info,
        "records": n,
        "forwarded": s.forwarded,
        "dead_lettered": s.dead_lettered_total,
        "by_rule": dict(s.dead_lettered.most_common()),
        "invariants": invariants,
        "error": repr(error) if error else None,
        "observed_records": trail["records"],
        "fuzz_events_per_s": round(fuzz_rate),
        "good_events_per_s": round(good_rate),
        "fuzz_vs_good": round(fuzz_rate / good_rate, 3) if good_rate else None,
    }
    out = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    (results / "fuzz_gate.json").write_text(out + "\n")
    if args.json:
        print(out)
    else:
        print(f"{'figure':<42} value")
        figures = ("records", "forwarded", "dead_lettered", "fuzz_events_per_s")
        for k in (*figures, "good_events_per_s", "fuzz_vs_good"):
            v = result[k]
            print(f"{k:<42} {v:,}" if isinstance(v, int) else f"{k:<42} {v}")
        for rule, count in result["by_rule"].items():
            print(f"  dead letters {rule:<28} {count:,}")
        for name, held in invariants.items():
            print(f"  {'held  ' if held else 'BROKEN'} {name}")
    sys.exit(0 if all(invariants.values()) else 1)


if __name__ == "__main__":
    main()
