"""The floor of the gate's hot loop: Python passthrough, a Python stamping loop, the compiled one.

    python bench/native_loop.py [--quick] [--json] [--no-latency]

Four loops over the same records (bench/gate.py's events) on the embedded Tansu broker, in
one run (issue 22):

    passthrough     bench/gate.py's baseline: consume -> produce, no processing, no commit
    python_stamped  a Python consume -> produce loop that adds the gate's 7 stamp headers to
                    each record (event ids and traceparents made per batch with NumPy, as the
                    gate makes them), counts deliveries per batch and commits a batch's
                    offsets once it was delivered: the floor of a Python per-record loop
    compiled        native/src/kafka.rs: the same work in Rust, one thread, GIL released
    passthrough_of_stamped
                    the passthrough again, over records that already carry the 7 headers:
                    the Kafka path's own cost for the bytes a stamping gate writes

Each run has a fresh embedded broker of its own (it keeps every record in memory and slows
as it fills: on a shared one, whichever loop ran first was favoured).

Figures: events/s (first record taken to the last delivery or commit), the ratio to the
passthrough, process CPU µs per event: this process's CPU time over all its threads,
librdkafka's included (not the broker's, which runs in a process of its own), divided by the
events, and the loop thread's own share of it (``..._loop_thread_cpu_us_per_event``: the
calling thread, which runs each loop; the rest is librdkafka's threads), and the broker
process's CPU per event in the same time (``..._broker_cpu_us_per_event``: on 2 cores the
broker competes with the loop it serves). All include each loop's client set-up, a few ms.
``compiled_enqueued_per_s``: records the compiled loop took, stamped and handed to
librdkafka per second, before the wait for the last deliveries.
With latency (the default): added p50/p99 at 10,000 events/s of the compiled loop over a
passthrough forwarder, with bench/gate.py's harness (each in a process of its own, each on
a fresh broker).

The compiled loop needs the extension built with the `kafka` feature. When the installed
`stampline._native` lacks it, this builds the crate with `--features python,kafka` into
native/target/kafka (minutes the first time: librdkafka is compiled from source) and loads
that module instead.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # bench/rules.py would shadow the rules package (see bench/gate.py)

from bench._machine import machine, write_result  # noqa: E402
from bench.gate import (  # noqa: E402
    KEYS,
    LOW_LATENCY,
    LOW_LATENCY_FETCH,
    event,
    fill,
    forward_loop,
    paced_latency,
    passthrough,
    pct,
)
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import consumer_config, producer_config  # noqa: E402
from stampline.collectors._ids import traced_source_ids  # noqa: E402

STAGE = "gate"
HOST = socket.gethostname()
CLOCK_ERR_NS = 1_000_000
PARTITIONS = 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def native_module() -> tuple[ModuleType, str]:
    """A `_native` module with `kafka_stamp_loop`, and the path of its file."""
    try:
        from stampline import _native

        if hasattr(_native, "kafka_stamp_loop"):
            return _native, str(_native.__file__)
    except ImportError:
        pass
    crate = ROOT / "native"
    target = crate / "target" / "kafka"
    log("building native/ with --features python,kafka into native/target/kafka")
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "PYO3_PYTHON": sys.executable}
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--features", "python,kafka"],
        cwd=crate,
        env=env,
        check=True,
    )
    return load(str(target / "release" / "lib_native.so")), str(target / "release")


def load(path: str) -> ModuleType:
    """Load the extension at ``path`` as a top-level ``_native`` (its init is PyInit__native)."""
    if Path(path).is_dir():
        path = str(Path(path) / "lib_native.so")
    loader = importlib.machinery.ExtensionFileLoader("_native", path)
    spec = importlib.util.spec_from_file_location("_native", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def python_stamped(bootstrap: str, src: str, dst: str, n: int) -> float:
    """The Python floor: consume -> 7 stamp headers -> produce, commit after delivery."""
    consumer = Consumer(consumer_config(bootstrap, f"py-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(src, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    producer = Producer(producer_config(bootstrap))
    rng = np.random.default_rng()
    version = ("stampline.v", b"1")
    err_header = ("stampline.clock_err_ns", str(CLOCK_ERR_NS).encode())
    tail = f";err={CLOCK_ERR_NS};host={HOST}".encode()
    pending: dict[int, int] = {}  # batch number -> records not yet delivered
    in_flight: list[tuple[int, list[TopicPartition]]] = []
    failed: list[str] = []
    done = 0
    number = 0
    t0 = 0.0

    def commit_delivered() -> None:
        while in_flight and pending[in_flight[0][0]] == 0:
            first, offsets = in_flight.pop(0)
            del pending[first]
            consumer.commit(offsets=offsets, asynchronous=True)

    while done < n:
        batch: list[Message] = [m for m in consumer.consume(1000, 1.0) if m.error() is None]
        if not batch:
            continue
        if not t0:
            t0 = time.perf_counter()
        received = time.time_ns()
        received_text = str(received).encode()
        topics = [m.topic() or "" for m in batch]
        partitions = [m.partition() or 0 for m in batch]
        offsets = [m.offset() or 0 for m in batch]
        stamps = [m.timestamp()[1] for m in batch]
        k = len(batch)
        spans = rng.integers(0, 256, (k, 8), np.uint8)
        ids, trace_text = traced_source_ids(topics, partitions, offsets, stamps, spans)
        head = f"stage={STAGE};in=".encode() + received_text + b";out="
        ingest = ("stampline.ingest_ns", received_text)
        me = number
        pending[me] = k

        def delivered(err: Any, _msg: Any, me: int = me) -> None:
            if err is not None:
                failed.append(str(err))
            else:
                pending[me] -= 1

        last: dict[int, int] = {}
        for i, m in enumerate(batch):
            ts = stamps[i]
            stamp_headers: list[tuple[str, Any]] = [
                version,
                ("stampline.event_id", ids[i].encode()),
                ("stampline.origin_ns", str(ts * 1_000_000 if ts > 0 else 0).encode()),
                ingest,
                err_header,
                ("traceparent", trace_text[i * 55 : i * 55 + 55]),
                ("stampline.stamp", head + str(time.time_ns()).encode() + tail),
            ]
            headers = m.headers()
            out: list[tuple[str, Any]] = [*headers, *stamp_headers] if headers else stamp_headers
            while True:
                try:
                    producer.produce(dst, m.value(), m.key(), headers=out, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.01)
            last[partitions[i]] = offsets[i]
        in_flight.append((me, [TopicPartition(src, p, o + 1) for p, o in last.items()]))
        number += 1
        done += k
        producer.poll(0)
        commit_delivered()
        if failed:
            raise SystemExit(f"delivery failed: {failed[0]}")
    producer.flush(60)
    commit_delivered()
    elapsed = time.perf_counter() - t0
    consumer.close()
    return n / elapsed


BROKER_PID = [0]  # the embedded broker's process, whose CPU time is read from /proc


def broker_cpu_s() -> float:
    """The broker process's CPU time (user + system, all its threads), in seconds."""
    fields = Path(f"/proc/{BROKER_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill_stamped(bootstrap: str, topic: str, n: int) -> None:
    """``n`` of bench/gate.py's events, each with the 7 headers of a first stamp."""
    producer = Producer(producer_config(bootstrap, {"linger.ms": 20, "batch.size": 1_000_000}))
    now = time.time_ns()
    tail = f";err={CLOCK_ERR_NS};host={HOST}".encode()
    for i in range(n):
        event_id = str(uuid.uuid4())
        headers: list[tuple[str, Any]] = [
            ("stampline.v", b"1"),
            ("stampline.event_id", event_id.encode()),
            ("stampline.origin_ns", str(now).encode()),
            ("stampline.ingest_ns", str(now).encode()),
            ("stampline.clock_err_ns", str(CLOCK_ERR_NS).encode()),
            ("traceparent", f"00-{event_id.replace('-', '')}-{i:016x}-01".encode()),
            ("stampline.stamp", f"stage={STAGE};in={now};out={now + i}".encode() + tail),
        ]
        while True:
            try:
                producer.produce(topic, event(i), f"k{i % KEYS}".encode(), headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def cpu_run(what: str, fn: Any, *args: Any) -> tuple[float, float, float, float]:
    """(events/s from ``fn``, process CPU µs per event over the whole call, the same for the
    calling thread alone (the loop's own thread; the rest is librdkafka's threads), and the
    broker's CPU µs per event in the same time)."""
    log(what)
    n = args[-1]
    cpu0, thread0, broker0 = time.process_time(), time.thread_time(), broker_cpu_s()
    rate = fn(*args)
    return (
        rate,
        (time.process_time() - cpu0) / n * 1e6,
        (time.thread_time() - thread0) / n * 1e6,
        (broker_cpu_s() - broker0) / n * 1e6,
    )


ENQUEUED: dict[str, float] = {}  # the compiled run's records handed to librdkafka per second


def compiled(native: ModuleType, bootstrap: str, src: str, dst: str, n: int) -> float:
    got = native.kafka_stamp_loop(
        bootstrap,
        f"rs-{uuid.uuid4().hex[:6]}",
        src,
        dst,
        stage=STAGE,
        host=HOST,
        clock_err_ns=CLOCK_ERR_NS,
        max_events=n,
    )
    if got["delivered"] != n:
        raise SystemExit(f"the compiled loop delivered {got['delivered']} of {n}")
    ENQUEUED["compiled_enqueued_per_s"] = n / got["producing_s"]
    return float(n / got["elapsed_s"])


def compiled_process(path: str, bootstrap: str, src: str, dst: str, events: int) -> None:
    """The compiled loop with low-latency client settings, in a process of its own."""
    load(path).kafka_stamp_loop(
        bootstrap,
        f"lat-{uuid.uuid4().hex[:6]}",
        src,
        dst,
        stage=STAGE,
        host=HOST,
        clock_err_ns=CLOCK_ERR_NS,
        max_events=events,
        idle_ms=5000,
        consumer={k: str(v) for k, v in LOW_LATENCY_FETCH.items()},
        producer={k: str(v) for k, v in LOW_LATENCY.items()},
    )


def latency(path: str, seconds: float) -> dict[str, float]:
    """Added latency at 10,000 events/s of the compiled loop over a Python forwarder."""
    spawn = multiprocessing.get_context("spawn")
    rate, warmup = 10_000, 2.0
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap_servers
        ensure_topics(bs, ["pt.in", "pt.out"], PARTITIONS)
        stop = spawn.Event()
        fw = spawn.Process(target=forward_loop, args=(bs, "pt.in", "pt.out", stop))
        fw.start()
        time.sleep(2)
        base = paced_latency(bs, "pt.in", "pt.out", rate, seconds, warmup)
        stop.set()
        fw.join(60)
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap_servers
        ensure_topics(bs, ["raw", "clean"], PARTITIONS)
        events = int(rate * (seconds + warmup))  # what paced_latency sends
        cp = spawn.Process(target=compiled_process, args=(path, bs, "raw", "clean", events))
        cp.start()
        time.sleep(2)
        holds: list[float] = []
        through = paced_latency(bs, "raw", "clean", rate, seconds, warmup, holds=holds)
        cp.join(60)
        if cp.exitcode != 0:
            raise SystemExit(f"the compiled loop's process ended with {cp.exitcode}")
    return {
        "passthrough_latency_p50_ms": round(pct(base, 0.5), 3),
        "passthrough_latency_p99_ms": round(pct(base, 0.99), 3),
        "compiled_latency_p50_ms": round(pct(through, 0.5), 3),
        "compiled_latency_p99_ms": round(pct(through, 0.99), 3),
        "compiled_added_latency_p50_ms": round(pct(through, 0.5) - pct(base, 0.5), 3),
        "compiled_added_latency_p99_ms": round(pct(through, 0.99) - pct(base, 0.99), 3),
        "compiled_hold_p50_ms": round(pct(holds, 0.5), 3),
        "compiled_hold_p99_ms": round(pct(holds, 0.99), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 events, 3 s of latency")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    args = ap.parse_args()
    native, path = native_module()
    host = machine(broker="tansu (embedded, TCP)")  # before any work: the load is other programs'
    n = 100_000 if args.quick else 300_000
    result: dict[str, Any] = {"machine": host, "events": n, "compiled_module": path}
    # Each run on a broker of its own: the embedded broker keeps every record in memory and
    # slows as it fills, which favoured whichever loop ran first on a shared one.
    variants: list[tuple[str, str, Any]] = [
        ("passthrough", "passthrough (consume -> produce)", passthrough),
        ("python_stamped", "Python: 7 stamp headers, commit after delivery", python_stamped),
        ("compiled", "compiled loop: the same in Rust", lambda *a: compiled(native, *a)),
        # The same passthrough over records that already carry the 7 headers: the Kafka
        # path's own cost for the bytes a stamping gate writes.
        ("passthrough_of_stamped", "passthrough of stamped records", passthrough),
    ]
    runs: dict[str, tuple[float, float, float, float]] = {}
    for name, what, fn in variants:
        with EmbeddedBroker() as broker:
            bs = broker.bootstrap_servers
            assert broker._proc is not None
            BROKER_PID[0] = broker._proc.pid
            ensure_topics(bs, ["raw", "out"], PARTITIONS)
            log(f"filling raw with {n:,} events")
            if name == "passthrough_of_stamped":
                fill_stamped(bs, "raw", n)
            else:
                fill(bs, "raw", n)
            runs[name] = cpu_run(what, fn, bs, "raw", "out", n)
    base = runs["passthrough"][0]
    for name, (rate, cpu, thread, broker_cpu) in runs.items():
        result[f"{name}_events_per_s"] = round(rate)
        result[f"{name}_vs_passthrough"] = round(rate / base, 3)
        result[f"{name}_cpu_us_per_event"] = round(cpu, 2)
        result[f"{name}_loop_thread_cpu_us_per_event"] = round(thread, 2)
        result[f"{name}_broker_cpu_us_per_event"] = round(broker_cpu, 2)
    result["compiled_enqueued_per_s"] = round(ENQUEUED["compiled_enqueued_per_s"])
    if not args.no_latency:
        seconds = 3.0 if args.quick else 10.0
        log(f"latency at 10,000 events/s for {seconds:.0f} s: forwarder, then the compiled loop")
        result.update(latency(path, seconds))
    result["targets"] = {"gate_vs_passthrough": 0.5, "gate_cpu_us_per_event": 4.0}
    write_result("native_loop", result, args.json)


if __name__ == "__main__":
    main()
