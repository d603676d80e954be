"""The gate's evaluator alone: CPU per event by batch size, on both routes in one run.

    python bench/gate_batch.py [--quick] [--json] [--events N]

bench/gate.py measures the whole gate process (its consumer, evaluator and writer threads,
librdkafka's own) against a passthrough; on this 2-core machine those threads and the
embedded broker compete for the cores, and the evaluator's figure moves with them. This
script takes the evaluator's work out of that contest: bench/gate.py's events (8 rules, a
schema contract, 10,000 providers, one in a hundred refused) are consumed from the real
broker once, then handed to ``Gate._process`` batch by batch on this one thread, each
route's gate producing to the real broker, and the thread's CPU time is divided by the
events. Batch sizes 10, 100 and 1,000: what a gate sees at 10,000 events/s with a short
fetch wait, and under a backlog. A batch's fixed cost (each rule's columns, the route's
set-up) is what decides latency at small batches, where it dominates.

Figures, per route and batch size (the reference is ``GateSettings.compiled=False``, the
same as STAMPLINE_GATE_REFERENCE=1):

    <route>_<batch>_cpu_us_per_event    the evaluator thread's CPU per event
    <route>_<batch>_cpu_us_per_batch    the same per batch
    compiled_vs_reference_<batch>       compiled / reference CPU (below 1: cheaper)

Writes bench/results/gate_batch.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[1])

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition  # noqa: E402

from bench._machine import machine, write_result  # noqa: E402
from bench.gate import RULES, fill, log  # noqa: E402
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import Gate, GateSettings, TrailTopic  # noqa: E402
from stampline.collectors._kafka import consumer_config, producer_config  # noqa: E402
from stampline.demo import rules_file  # noqa: E402
from stampline.rules import RuleSet  # noqa: E402

BATCHES = (10, 100, 1000)


def consume_all(bootstrap: str, topic: str, n: int) -> list[Message]:
    consumer = Consumer(consumer_config(bootstrap, "gate-batch", {}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    out: list[Message] = []
    while len(out) < n:
        out += [m for m in consumer.consume(1000, 1.0) if m.error() is None]
    consumer.close()
    return out[:n]


def evaluator_cpu(
    bootstrap: str, rules_path: Path, messages: list[Message], batch: int, compiled: bool
) -> tuple[float, str]:
    """The evaluator thread's CPU µs per event over ``messages`` in batches of ``batch``,
    and the route the gate took."""
    settings = GateSettings(bootstrap, ("raw",), "clean", "dlq", compiled=compiled)
    gate = Gate(settings, RuleSet.load([rules_path]), TrailTopic("trail", "bench"))
    # The evaluator alone: no consumer thread, no writer (its rows stay pending).
    producer: Any = gate._new_producer(producer_config(bootstrap, {}))
    gate._producer = producer
    start = time.thread_time()
    for at in range(0, len(messages), batch):
        gate._process(messages[at : at + batch])
    cpu = time.thread_time() - start
    producer.flush(30)
    return cpu / len(messages) * 1e6, gate.path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.events
    result: dict[str, Any] = {"machine": machine(broker="tansu (embedded, TCP)"), "events": n}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        bootstrap = broker.bootstrap_servers
        schema = Path(rules_file()).with_name("market_data.schema.json")
        rules_path = Path(tmp) / "bench.rules.yaml"
        rules_path.write_text(RULES.format(schema=schema))
        ensure_topics(bootstrap, ["raw", "clean", "dlq", "trail"], 3)
        log(f"filling raw with {n:,} events")
        fill(bootstrap, "raw", n)
        messages = consume_all(bootstrap, "raw", n)
        for batch in BATCHES:
            cpu: dict[str, float] = {}
            for compiled in (True, False):  # the same events, each route on a fresh gate
                log(f"batches of {batch:,}, {'compiled' if compiled else 'reference'} route")
                us, path = evaluator_cpu(bootstrap, rules_path, messages, batch, compiled)
                route = "compiled" if compiled else "reference"
                if path != route:
                    raise SystemExit(f"the {route} gate took the {path} route")
                cpu[route] = us
                result[f"{route}_{batch}_cpu_us_per_event"] = round(us, 2)
                result[f"{route}_{batch}_cpu_us_per_batch"] = round(us * batch, 1)
            ratio = cpu["compiled"] / cpu["reference"]
            result[f"compiled_vs_reference_{batch}"] = round(ratio, 3)
    write_result("gate_batch", result, args.json)


if __name__ == "__main__":
    main()
