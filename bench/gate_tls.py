"""The gate on a broker it reaches over TLS, on each route, against the same on plain TCP.

    python bench/gate_tls.py [--events N] [--rounds R] [--json]

A cluster that asks for TLS is stood in for by the embedded Tansu behind a socat TLS
terminator (tests/tlsbroker.py). Each run is a process of its own: a fresh broker (TLS or
plain), N of bench/gate.py's events (10,000 providers, one in a hundred refused) produced to
it, then bench/gate.py's gate over them (its ``run_gate``), on the compiled route or the
reference (``compiled: false``). Figures per run, as bench/gate.py's: the process's CPU time
per event (the gate's threads and librdkafka's, TLS included, not the broker's nor socat's)
and events/s. The four kinds alternate, ``--rounds`` times, since this machine's speed moves
between runs. Writes bench/results/gate_tls.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import gate as bench_gate  # noqa: E402
from bench._machine import machine, write_result  # noqa: E402
from stampline._common import use_system_memory_pool  # noqa: E402
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import TrailTopic  # noqa: E402
from stampline.rules import RuleSet  # noqa: E402
from tests.tlsbroker import tls_broker  # noqa: E402

KINDS = [(tls, compiled) for tls in (True, False) for compiled in (True, False)]


@contextmanager
def _broker(tls: bool, folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh broker: its bootstrap address and the client settings that reach it."""
    if tls:
        with tls_broker(folder) as broker:
            yield broker.bootstrap, broker.client
    else:
        with EmbeddedBroker() as plain:
            yield plain.bootstrap_servers, {}


def one(tls: bool, compiled: bool, events: int) -> dict[str, Any]:
    """One run (in this process): the gate over ``events`` records; its figures."""
    use_system_memory_pool()  # as bench/gate.py's gate and `stampline gate` run
    folder = Path(tempfile.mkdtemp(prefix="stampline-gate-tls-"))
    rules = folder / "bench.rules.yaml"
    schema = Path(bench_gate.rules_file()).with_name("market_data.schema.json")
    rules.write_text(bench_gate.RULES.format(schema=schema))
    with _broker(tls, folder / "tls") as (bootstrap, client):
        u = uuid.uuid4().hex[:6]
        raw, clean, dlq, trail = (f"{u}.{t}" for t in ("raw", "clean", "dlq", "trail"))
        ensure_topics(bootstrap, [raw, clean, dlq, trail], 3, client=client)
        bench_gate.fill(bootstrap, raw, events, client=client)
        rate, cpu, gate = bench_gate.run_gate(
            bootstrap,
            TrailTopic(trail, "bench"),
            RuleSet.load([rules]),
            raw,
            clean,
            dlq,
            events,
            consumer=client,
            producer=client,
            compiled=compiled,
        )
        return {
            "tls": tls,
            "path": gate.path,
            "cpu_us_per_event": round(cpu, 2),
            "events_per_s": round(rate),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="records per run (200,000)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each kind (2)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # tls compiled
    args = ap.parse_args()
    if args.one:
        sys.stdout.write(orjson.dumps(one(*map(bool, args.one), args.events)).decode())
        return
    host = machine(events=args.events, rounds=args.rounds)
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for tls, compiled in KINDS:
            name = f"{'tls' if tls else 'plain'}_{'compiled' if compiled else 'reference'}"
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            flags = (str(int(tls)), str(int(compiled)))
            out = subprocess.run(
                [sys.executable, __file__, "--events", str(args.events), "--one", *flags],
                check=True,
                capture_output=True,
            )
            runs.setdefault(name, []).append(orjson.loads(out.stdout))
    result: dict[str, Any] = {"benchmark": "gate_tls"}
    for name, done in runs.items():
        result[name] = {
            "path": done[0]["path"],
            "cpu_us_per_event": " / ".join(f"{d['cpu_us_per_event']}" for d in done),
            "events_per_s": " / ".join(f"{d['events_per_s']:,}" for d in done),
        }
    result["machine"] = host
    write_result("gate_tls", result, args.json)


if __name__ == "__main__":
    main()
