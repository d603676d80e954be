"""The floor of the gate's hot loop: Python passthrough, a Python stamping loop, the compiled one.

    python bench/native_loop.py [--quick] [--json] [--no-latency]

Three loops over the same records on the embedded Tansu broker, in one run (issue 22):

    passthrough     bench/gate.py's baseline: consume -> produce, no processing, no commit
    python_stamped  a Python consume -> produce loop that adds the gate's 7 stamp headers to
                    each record (event ids and traceparents made per batch with NumPy, as the
                    gate makes them), counts deliveries per batch and commits a batch's
                    offsets once it was delivered: the floor of a Python per-record loop
    compiled        native/src/kafka.rs: the same work in Rust, one thread, GIL released

Figures: events/s (first record taken to the last delivery or commit), the ratio to the
passthrough, and process CPU µs per event: this process's CPU time over all its threads,
librdkafka's included (not the broker's, which runs in a process of its own), divided by the
events; it includes each loop's client set-up, a few ms. With latency (the default): added
p50/p99 at 10,000 events/s of a forwarder and of the compiled loop over a passthrough
forwarder, with bench/gate.py's harness (each in a process of its own, each on a fresh
broker).

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
    LOW_LATENCY,
    LOW_LATENCY_FETCH,
    fill,
    forward_loop,
    paced_latency,
    passthrough,
    pct,
)
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import consumer_config, producer_config  # noqa: E402
from stampline.collectors._ids import hex_digits, source_event_ids  # noqa: E402

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
        ids, id_bytes = source_event_ids(topics, partitions, offsets, stamps)
        k = len(batch)
        trace = np.empty((k, 55), np.uint8)
        trace[:, :3] = np.frombuffer(b"00-", np.uint8)
        trace[:, 3:35] = hex_digits(id_bytes)
        trace[:, 35] = ord("-")
        trace[:, 36:52] = hex_digits(rng.integers(0, 256, (k, 8), np.uint8))
        trace[:, 52:] = np.frombuffer(b"-01", np.uint8)
        trace_text = trace.tobytes()
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


def cpu_run(what: str, fn: Any, *args: Any) -> tuple[float, float]:
    """(events/s from ``fn``, process CPU µs per event over the whole call)."""
    log(what)
    n = args[-1]
    cpu0 = time.process_time()
    rate = fn(*args)
    return rate, (time.process_time() - cpu0) / n * 1e6


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
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap_servers
        u = uuid.uuid4().hex[:6]
        raw, pt, py, rs = (f"{u}.{t}" for t in ("raw", "pt", "py", "rs"))
        ensure_topics(bs, [raw, pt, py, rs], PARTITIONS)
        log(f"filling {raw} with {n:,} events")
        fill(bs, raw, n)
        runs = {
            "passthrough": cpu_run("passthrough (consume -> produce)", passthrough, bs, raw, pt, n),
            "python_stamped": cpu_run(
                "Python: 7 stamp headers, commit after delivery", python_stamped, bs, raw, py, n
            ),
            "compiled": cpu_run(
                "compiled loop: the same in Rust", lambda *a: compiled(native, *a), bs, raw, rs, n
            ),
        }
    base = runs["passthrough"][0]
    for name, (rate, cpu) in runs.items():
        result[f"{name}_events_per_s"] = round(rate)
        result[f"{name}_vs_passthrough"] = round(rate / base, 3)
        result[f"{name}_cpu_us_per_event"] = round(cpu, 2)
    if not args.no_latency:
        seconds = 3.0 if args.quick else 10.0
        log(f"latency at 10,000 events/s for {seconds:.0f} s: forwarder, then the compiled loop")
        result.update(latency(path, seconds))
    result["targets"] = {"gate_vs_passthrough": 0.5, "gate_cpu_us_per_event": 4.0}
    write_result("native_loop", result, args.json)


if __name__ == "__main__":
    main()
