"""`stampline run` scale-out: total gate events/s with 1 worker and with 2, in one run.

Fills a raw topic of 4 partitions, then for each worker count starts `stampline run --config
FILE --workers K` (gates + recorder as supervised child processes, as a deployment runs) on
a fresh consumer group and output topics, and times how long the gates take to commit every
raw offset (committed offsets are exact on Tansu, whose watermarks are not). The figure that
matters is the ratio: on 2 cores the workers share them with the broker and the recorder,
so 2 workers cannot double the rate here.

    python bench/run.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import machine, write_result
from bench.gate import RULES, fill, log
from stampline.broker import EmbeddedBroker, ensure_topics
from stampline.collectors._kafka import consumer_config
from stampline.demo import rules_file

PARTITIONS = 4


def committed(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> int:
    """Records the group has committed on ``topic`` (sum of next offsets)."""
    c = Consumer(consumer_config(bootstrap, group))
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        c.close()


def run_workers(bootstrap: str, tmp: Path, rules: Path, raw: str, n: int, workers: int) -> float:
    """Start `stampline run --workers K`; events/s from start until every offset is committed."""
    u = uuid.uuid4().hex[:6]
    group = f"bench-run-{u}"
    config = tmp / f"run-{workers}.yaml"
    config.write_text(
        f"""version: 1
broker: {{bootstrap_servers: "{bootstrap}"}}
topics:
  raw: [{raw}]
  clean: {u}.clean
  dead_letter: {u}.dlq
  trail: {u}.trail
  trail_heads: {u}.heads
  partitions: {PARTITIONS}
gate: {{group_id: {group}}}
recorder: {{group_id: {group}-rec}}
store: {{backend: chdb, path: {tmp / f"store-{u}"}}}
rules: {{files: [{rules}]}}
"""
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stampline",
            "run",
            "--config",
            str(config),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"run-{workers}.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        done = 0
        while done < n:
            if proc.poll() is not None:
                raise SystemExit(
                    f"stampline run exited {proc.returncode}: see {tmp}/run-{workers}.log"
                )
            if time.monotonic() - started > 900:
                raise SystemExit(f"{workers} worker(s) committed {done:,} of {n:,} in 900 s")
            time.sleep(0.25)
            done = committed(bootstrap, group, raw)
        return n / (time.monotonic() - started)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (a few minutes)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    host = machine(broker="tansu (embedded, TCP)")
    n = 200_000 if args.quick else 600_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
    schema = Path(rules_file()).with_name("market_data.schema.json")
    rules = tmp / "bench.rules.yaml"
    rules.write_text(RULES.format(schema=schema))
    result: dict[str, object] = {"machine": host, "events": n, "raw_partitions": PARTITIONS}
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap_servers
        raw = f"{uuid.uuid4().hex[:6]}.raw"
        ensure_topics(bs, [raw], PARTITIONS)
        log(f"filling {raw} with {n:,} events")
        fill(bs, raw, n)
        # The start-up (processes, group join, store migration) counts in each figure alike.
        for workers in (1, 2):
            log(f"stampline run --workers {workers}")
            result[f"run_{workers}_workers_events_per_s"] = round(
                run_workers(bs, tmp, rules, raw, n, workers)
            )
    result["two_vs_one_worker"] = round(
        result["run_2_workers_events_per_s"] / result["run_1_workers_events_per_s"],
        3,  # type: ignore[operator]
    )
    write_result("run", result, args.json)


if __name__ == "__main__":
    main()
