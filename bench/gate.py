"""Gate and tap throughput, the gate's added latency, and its memory, against a raw passthrough.

    python bench/gate.py [--quick] [--json] [--latency-only]

Broker: the embedded Tansu over TCP. It is not the bottleneck: one consumer reads ~1.1M
msg/s from it, several times what a Python gate can process, so the passthrough baseline
(consume -> produce, no processing) measures the Kafka client path itself. librdkafka's
mock cluster is unsuitable: its fetch path delivers ~6,000 msg/s per partition.

Figures, all from one run:
    passthrough_events_per_s  raw consume -> produce, no processing (same-run baseline)
    gate_events_per_s         JSON ~150 B, 8 rules, stamps, DLQ, trail rows produced to the
                              trail topic (the gate holds no store: the recorder writes it)
    gate_vs_passthrough       their ratio
    gate_cpu_us_per_event     this process's CPU time per event in that run (the gate's threads
                              and librdkafka's, not the broker's): on a shared, busy machine a
                              steadier figure than the rate
    gate_path                 the route it ran: compiled, or reference
                              (STAMPLINE_GATE_REFERENCE=1 forces the reference)
    bad_feed_gate_events_per_s / bad_feed_gate_cpu_us_per_event
                              the same gate over as many events of which one in three
                              breaks a rule (a provider gone bad): what dead-lettering
                              costs, when the gate is needed most (on a fresh broker: the
                              embedded one slows as it fills, so a run on the first broker
                              after the others would be slowed by them)
    metrics_gate_events_per_s / metrics_gate_cpu_us_per_event
                              the same gate over as many good events with its Prometheus
                              metrics computed (SidecarMetrics: what `stampline
                              gate` does with metrics.enabled; the runs above are a gate
                              without, as metrics.enabled's default false builds it; on a
                              fresh broker too)
    tap_observations_per_s    the tap over the gate's stamped output, rows to the trail topic
                              (two per record: its own sighting and the gate's stamp);
                              tap_records_per_s is the same run counted in records;
                              tap_cpu_us_per_record the CPU time per record, likewise;
                              tap_path the loop it ran (STAMPLINE_TAP_REFERENCE=1: the reference)
    added_latency_p50_ms/p99  at a fixed 10,000 events/s: end-to-end through the gate minus
                              end-to-end through a passthrough forwarder (same producer and
                              reader; the gate and the forwarder each in a process of their
                              own, as deployed, each on a fresh broker; the first 2 s of
                              each run are warm-up)
    gate_hold_p50_ms/p99      the gate's own hold per event in the latency run (out - in of
                              its stamp), apart from the broker's hops
    rss_mb                    peak RSS of this process after the gate held 10,000 provider keys
                              (no ClickHouse engine is loaded: this process opens no store)
    gate_process_rss_mb       peak RSS of the latency run's gate process, as deployed (it sees
                              all 10,000 provider keys): the figure the 300 MB target is for
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

# Run as a script, sys.path[0] is this folder, where bench/rules.py would shadow the rules
# package: import from the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._machine import machine, write_result  # noqa: E402
from stampline._common import use_system_memory_pool  # noqa: E402
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import (  # noqa: E402
    Gate,
    GateSettings,
    SidecarMetrics,
    Tap,
    TapSettings,
    TrailTopic,
    consumer_config,
    producer_config,
    take,
)
from stampline.demo import rules_file  # noqa: E402
from stampline.rules import RuleSet  # noqa: E402

KEYS = 10_000
# The latency runs use the same client settings on every path: a short producer linger and a
# short fetch wait (Tansu answers a fetch only when its wait expires). Not the shortest: with
# linger.ms 0.5 and fetch.wait.max.ms 1 the four clients' requests kept the embedded broker at
# a full core, and the passthrough itself fell behind within seconds (2026-12-07, 10 s at
# 10,000 events/s: p50 19-31 ms, p99 26-30 s). With 2 and 5 it held p50 9 ms, p99 16-17 ms
# over the whole run; 1 and 2, 1 and 5, 0.5 and 5, 5 and 10, 2 and 10 all did worse.
LOW_LATENCY = {"linger.ms": 2}
LOW_LATENCY_FETCH = {"fetch.wait.max.ms": 5}
RULES = """\
version: 1
rules:
  - {{id: contract.market_data, version: 1, kind: schema, schema: {schema}}}
  - {{id: quantity.non_negative, version: 1, kind: range, field: quantity, min: 0}}
  - {{id: quantity.max, version: 1, kind: range, field: quantity, max: 10000000}}
  - {{id: price.positive, version: 1, kind: range, field: price, min: 0, min_exclusive: true}}
  - {{id: price.max, version: 1, kind: range, field: price, max: 1000000}}
  - {{id: seq.non_negative, version: 1, kind: range, field: seq, min: 0}}
  - {{id: bid.non_negative, version: 1, kind: range, field: bid, min: 0}}
  - {{id: origin.window, version: 1, kind: freshness, max_past: 1h, max_future: 1m}}
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def event(i: int, refused_every: int = 100) -> bytes:
    """A ~150-byte quote; every ``refused_every``-th breaks a rule so the DLQ path runs too."""
    return orjson.dumps(
        {
            "provider": f"p{i % KEYS:05d}",
            "instrument": f"SYM{i % 500:04d}",
            "seq": i,
            "ts": int(time.time() * 1000),
            "type": "quote",
            "price": 101.25 + (i % 7),
            "bid": 101.0,
            "quantity": -1 if i % refused_every == 0 else 300,
        }
    )


def fill(
    bootstrap: str,
    topic: str,
    n: int,
    refused_every: int = 100,
    client: dict[str, Any] | None = None,
) -> None:
    """``n`` of :func:`event`'s records into ``topic``; ``client``: more producer settings."""
    producer = Producer(
        producer_config(bootstrap, {"linger.ms": 20, "batch.size": 1_000_000, **(client or {})})
    )
    for i in range(n):
        while True:
            try:
                producer.produce(topic, event(i, refused_every), f"k{i % KEYS}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def passthrough(bootstrap: str, src: str, dst: str, n: int) -> float:
    """Raw consume -> produce of ``n`` records; events per second."""
    consumer = Consumer(consumer_config(bootstrap, f"pt-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(src, p, OFFSET_BEGINNING) for p in range(3)])
    producer = Producer(producer_config(bootstrap))
    done = 0
    t0 = 0.0
    while done < n:
        batch = consumer.consume(1000, 1.0)
        if batch and not t0:
            t0 = time.perf_counter()
        for m in batch:
            if m.error() is None:
                while True:
                    try:
                        producer.produce(dst, m.value(), m.key(), headers=m.headers())
                        break
                    except BufferError:
                        producer.poll(0.01)
                done += 1
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - t0
    consumer.close()
    return n / elapsed


def run_gate(
    bootstrap: str,
    trail: TrailTopic,
    rules: RuleSet,
    raw: str,
    clean: str,
    dlq: str,
    n: int,
    metrics: SidecarMetrics | None = None,
    **more: Any,
) -> tuple[float, float, Gate]:
    """The gate over ``n`` records: (events per second, CPU µs per event, the gate);
    ``more``: further GateSettings (client settings, the route)."""
    settings = GateSettings(
        bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        flush_rows=50_000,
        **more,
    )
    gate = Gate(settings, rules, trail, metrics)
    stop = threading.Event()
    thread = threading.Thread(target=gate.run, args=(stop,))
    thread.start()
    while gate.stats.events_in == 0:
        time.sleep(0.001)
    t0, cpu0, in0 = time.perf_counter(), time.process_time(), gate.stats.events_in
    while gate.stats.events_in < n:
        time.sleep(0.005)
    cpu = (time.process_time() - cpu0) / (gate.stats.events_in - in0) * 1e6
    stop.set()
    thread.join()  # includes the last flush: producer acks, trail rows, commit
    return n / (time.perf_counter() - t0), cpu, gate


def run_tap(
    bootstrap: str, trail: TrailTopic, topic: str, n: int
) -> tuple[float, float, float, str]:
    """The tap over ``n`` stamped records: (observations per second, records per second, CPU µs
    per record, the loop it ran: "compiled" or "reference", see STAMPLINE_TAP_REFERENCE).

    Each gate-stamped record gives two observations: the tap's own sighting and the gate's
    stamp read from the headers.
    """
    tap = Tap(
        TapSettings(
            bootstrap, (topic,), group_id=f"tap-{uuid.uuid4().hex[:6]}", flush_rows=100_000
        ),
        trail,
    )
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    while tap.stats.records == 0:
        time.sleep(0.001)
    t0, cpu0, in0 = time.perf_counter(), time.process_time(), tap.stats.records
    while tap.stats.records < n:
        time.sleep(0.005)
    cpu = (time.process_time() - cpu0) / (tap.stats.records - in0) * 1e6
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - t0
    return tap.stats.observations / elapsed, n / elapsed, cpu, tap.path


def paced_latency(
    bootstrap: str,
    src: str,
    dst: str,
    rate: int,
    seconds: float,
    warmup_s: float = 2.0,
    holds: list[float] | None = None,
) -> list[float]:
    """Produce to ``src`` at ``rate``/s with a send-time header; ms from send to read on ``dst``.

    The first ``warmup_s`` of sending is not counted: a new producer's and consumer's
    connection set-up would otherwise be the whole p99. The reader takes what is fetched
    without waiting for a full batch (``take``), so it adds no batching delay of its own.
    """
    consumer = Consumer(
        consumer_config(bootstrap, f"lat-{uuid.uuid4().hex[:6]}", LOW_LATENCY_FETCH)
    )
    meta = consumer.list_topics(dst, timeout=10).topics[dst]
    consumer.assign([TopicPartition(dst, p, OFFSET_BEGINNING) for p in meta.partitions])
    producer = Producer(producer_config(bootstrap, LOW_LATENCY))
    n = int(rate * (seconds + warmup_s))
    counted_from = time.time_ns() + int(warmup_s * 1e9)  # sends before this are warm-up
    got: list[float] = []
    seen = [0]

    def read() -> None:
        deadline = time.monotonic() + seconds + warmup_s + 30
        while seen[0] < n - n // 100 and time.monotonic() < deadline:
            for m in take(consumer, 1000, 0.05):
                if m.error() is None:
                    now = time.time_ns()
                    seen[0] += 1
                    headers = dict(m.headers() or [])
                    sent = headers.get("bench.sent_ns")
                    if sent and int(sent) >= counted_from:
                        got.append((now - int(sent)) / 1e6)
                        stamp = headers.get("stampline.stamp")
                        if holds is not None and isinstance(stamp, bytes):
                            fields = dict(f.split("=", 1) for f in stamp.decode().split(";"))
                            holds.append((int(fields["out"]) - int(fields["in"])) / 1e6)

    reader = threading.Thread(target=read)
    reader.start()
    start = time.perf_counter()
    tick = 0.001  # produce in 1 ms ticks and sleep between: a busy loop would hog the GIL
    per_tick = max(1, int(rate * tick))
    for i in range(0, n, per_tick):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        for j in range(i, min(n, i + per_tick)):
            sent = str(time.time_ns()).encode()
            producer.produce(src, event(j), headers=[("bench.sent_ns", sent)])
        producer.poll(0)
    producer.flush(30)
    reader.join()
    consumer.close()
    return got


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def peak_rss_mb() -> float:
    """This process's peak RSS since it started its program, in MB.

    Not ``ru_maxrss`` in a spawned child: the child is forked from this benchmark before it
    execs Python, and Linux keeps the fork's high-water mark (the parent's whole RSS) across
    exec, so ``ru_maxrss`` reported the parent's size, 340-350 MB, for a gate of ~200 MB.
    ``VmHWM`` belongs to the memory map exec made."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def gate_process(
    bootstrap: str,
    topics: tuple[str, str, str],
    rules_path: str,
    trail_topic: str,
    ready: Any,
    stop: Any,
    rss_mb: Any,
) -> None:
    """A gate with low-latency client settings, in a process of its own, until ``stop``."""
    use_system_memory_pool()
    raw, clean, dlq = topics
    settings = GateSettings(
        bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"lat-{uuid.uuid4().hex[:6]}",
        producer=dict(LOW_LATENCY),
        consumer=dict(LOW_LATENCY_FETCH),
    )
    gate = Gate(settings, RuleSet.load([Path(rules_path)]), TrailTopic(trail_topic, "bench"))
    done = threading.Event()
    thread = threading.Thread(target=gate.run, args=(done,))
    thread.start()
    gate.ready.wait(60)
    ready.set()
    stop.wait()
    done.set()
    thread.join()
    rss_mb.value = peak_rss_mb()


def forward_loop(bootstrap: str, src: str, dst: str, stop: Any) -> None:
    consumer = Consumer(consumer_config(bootstrap, f"fw-{uuid.uuid4().hex[:6]}", LOW_LATENCY_FETCH))
    consumer.assign([TopicPartition(src, p, OFFSET_BEGINNING) for p in range(3)])
    producer = Producer(producer_config(bootstrap, LOW_LATENCY))
    while not stop.is_set():
        for m in take(consumer, 1000, 0.1):
            if m.error() is None:
                producer.produce(dst, m.value(), m.key(), headers=m.headers())
        producer.poll(0)
    producer.flush(10)
    consumer.close()


def latency(rules_path: Path, seconds: float) -> dict[str, float]:
    """Added latency at 10,000 events/s: a passthrough forwarder, then the gate, each on a
    broker of its own. The embedded broker keeps every record in memory and slows as it
    fills: after the throughput runs' million records on it, its hops grew to seconds, which
    measured the broker rather than the gate (and favoured whichever path ran first)."""
    # The forwarder and the gate each run in a process of their own, as in production:
    # in this one they would share the GIL with the paced producer and the reader.
    spawn = multiprocessing.get_context("spawn")
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap_servers
        ensure_topics(bs, ["pt.in", "pt.out"], 3)
        stop_fw = spawn.Event()
        fw = spawn.Process(target=forward_loop, args=(bs, "pt.in", "pt.out", stop_fw))
        fw.start()
        time.sleep(2)
        base = paced_latency(bs, "pt.in", "pt.out", 10_000, seconds)
        stop_fw.set()
        fw.join(60)
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap_servers
        ensure_topics(bs, ["raw", "clean", "dlq", "trail"], 3)
        ready, stop_gate, gate_rss = spawn.Event(), spawn.Event(), spawn.Value("d", 0.0)
        args = (bs, ("raw", "clean", "dlq"), str(rules_path), "trail", ready, stop_gate, gate_rss)
        gp = spawn.Process(target=gate_process, args=args)
        gp.start()
        if not ready.wait(90):
            raise SystemExit("the latency gate did not get its partitions in 90 s")
        time.sleep(0.5)
        holds: list[float] = []
        through = paced_latency(bs, "raw", "clean", 10_000, seconds, holds=holds)
        stop_gate.set()
        gp.join(60)
    return {
        "gate_process_rss_mb": round(gate_rss.value, 1),
        "gate_hold_p50_ms": round(pct(holds, 0.5), 3),
        "gate_hold_p99_ms": round(pct(holds, 0.99), 3),
        "passthrough_latency_p50_ms": round(pct(base, 0.5), 3),
        "passthrough_latency_p99_ms": round(pct(base, 0.99), 3),
        "gate_latency_p50_ms": round(pct(through, 0.5), 3),
        "gate_latency_p99_ms": round(pct(through, 0.99), 3),
        "added_latency_p50_ms": round(pct(through, 0.5) - pct(base, 0.5), 3),
        "added_latency_p99_ms": round(pct(through, 0.99) - pct(base, 0.99), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="only the latency run (the added_latency, gate_hold and gate_process_rss figures; "
        "written to bench/results/gate_latency.json)",
    )
    args = ap.parse_args()
    use_system_memory_pool()  # as in every sidecar (stampline/cli/_start.py)
    host = machine(broker="tansu (embedded, TCP)")  # before any work: the load is other programs'
    n = 100_000 if args.quick else 400_000
    lat_s = 3.0 if args.quick else 10.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    schema = Path(rules_file()).with_name("market_data.schema.json")
    rules_path = tmp / "bench.rules.yaml"
    rules_path.write_text(RULES.format(schema=schema))
    rules = RuleSet.load([rules_path])
    result: dict[str, Any] = {"machine": host, "rules": 8}
    if args.latency_only:
        log(f"latency at 10,000 events/s for {lat_s:.0f} s: passthrough, then gate")
        result.update(latency(rules_path, lat_s))
        result["targets"] = {"added_latency_p99_ms": 2.0, "gate_process_rss_mb": 300}
        write_result("gate_latency", result, args.json)
        return
    result["events"] = n
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap_servers
        u = uuid.uuid4().hex[:6]
        raw, clean, dlq, pt, trail = (f"{u}.{t}" for t in ("raw", "clean", "dlq", "pt", "trail"))
        ensure_topics(bs, [raw, clean, dlq, pt, trail], 3)
        log(f"filling {raw} with {n:,} events")
        fill(bs, raw, n)
        log("passthrough (consume -> produce)")
        result["passthrough_events_per_s"] = round(passthrough(bs, raw, pt, n))
        log("gate (8 rules, stamps, DLQ, trail to the trail topic)")
        gate_rate, gate_cpu, gate = run_gate(
            bs, TrailTopic(trail, "bench"), rules, raw, clean, dlq, n
        )
        result["gate_events_per_s"] = round(gate_rate)
        result["gate_cpu_us_per_event"] = round(gate_cpu, 2)
        result["gate_vs_passthrough"] = round(gate_rate / result["passthrough_events_per_s"], 3)
        result["gate_path"] = gate.path
        result["provider_keys"] = len(gate.event_time)
        result["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

        log("tap over the gate's stamped output")
        tap_rows, tap_records, tap_cpu, tap_path = run_tap(
            bs, TrailTopic(trail, "tap"), clean, gate.stats.forwarded
        )
        result["tap_observations_per_s"] = round(tap_rows)
        result["tap_records_per_s"] = round(tap_records)
        result["tap_cpu_us_per_record"] = round(tap_cpu, 2)
        result["tap_path"] = tap_path

    def again(name: str, refused_every: int, metrics: SidecarMetrics | None) -> Gate:
        """The gate over ``n`` fresh events, with fresh rules, on a broker of its own, into
        figures ``name_*``."""
        with EmbeddedBroker() as broker:
            bs = broker.bootstrap_servers
            raw, clean, dlq, trail = (f"{name}.{t}" for t in ("raw", "clean", "dlq", "trail"))
            ensure_topics(bs, [raw, clean, dlq, trail], 3)
            fill(bs, raw, n, refused_every)
            rate, cpu, again_gate = run_gate(
                bs, TrailTopic(trail, "bench"), RuleSet.load([rules_path]), raw, clean, dlq, n,
                metrics,
            )  # fmt: skip
        result[f"{name}_gate_events_per_s"] = round(rate)
        result[f"{name}_gate_cpu_us_per_event"] = round(cpu, 2)
        return again_gate

    log(f"the gate again, over {n:,} events of which one in three breaks a rule")
    bad_gate = again("bad_feed", 3, None)
    assert bad_gate.stats.dead_lettered_total >= n // 3, bad_gate.stats
    log(f"the gate again, over {n:,} events, with its metrics")
    again("metrics", 100, SidecarMetrics())

    log(f"latency at 10,000 events/s for {lat_s:.0f} s: passthrough, then gate")
    result.update(latency(rules_path, lat_s))
    result["targets"] = {
        "gate_events_per_s": 250_000,
        "gate_vs_passthrough": 0.5,
        "gate_cpu_us_per_event": 4.0,
        "tap_observations_per_s": 500_000,
        "added_latency_p99_ms": 2.0,
        "gate_process_rss_mb": 300,
    }
    write_result("gate", result, args.json)


if __name__ == "__main__":
    main()
