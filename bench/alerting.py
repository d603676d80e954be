"""Alerting: provider-gap alert latency to a real Alertmanager's webhook, the detectors'
cost on gate throughput, and alert-state memory.

    python bench/alerting.py [--quick] [--json]

Figures, all from one run:
    silence_to_webhook_p50_ms/p99  time from a threshold crossed (event time of a provider's
                                   last event + its max_gap) to the firing alert arriving at
                                   Alertmanager's webhook receiver, over many injected
                                   silences. Path: provider watch (ticking every 100 ms, wall
                                   clock) -> dispatcher -> POST /api/v2/alerts -> Alertmanager
                                   (group_wait 0s) -> webhook. The gate only feeds the watch
                                   facts; a silence is the absence of them, so the gate adds
                                   nothing to this path and is not in it.
    gate_events_per_s_without/with the same topic through a gate without and with the
                                   detectors (per-key kinds, provider facts to an in-process
                                   watch), alternated, best of 2 (quick) or 3 runs each;
                                   gate_with_vs_without is their ratio.
    detector_us_per_1000_rows      the detectors' own cost per 1,000-row batch, in process.
    alert_state_mb_10k_keys        memory held by 10,000 firing alert instances plus the
                                   detectors' open-key map (tracemalloc, Python objects).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._machine import machine, write_result  # noqa: E402
from bench.gate import RULES, fill  # noqa: E402
from stampline.alerting import (  # noqa: E402
    AlertmanagerClient,
    Dispatcher,
    KeyDetectors,
    Lifecycle,
    ProviderFacts,
    ProviderWatch,
    WatchTicker,
    parse_alerts,
)
from stampline.audit import ChdbStore  # noqa: E402
from stampline.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stampline.collectors import Gate, GateSettings  # noqa: E402
from stampline.demo import rules_file  # noqa: E402
from stampline.rules import RuleSet  # noqa: E402

MAX_GAP_S = 0.5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Alertmanager's webhook: the first arrival time of each firing provider."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.time_ns()
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for a in body["alerts"]:
                    if a["status"] == "firing":
                        receiver.first.setdefault(a["labels"]["provider"], now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_alertmanager(folder: Path, hook: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        raise SystemExit("prometheus-alertmanager is not installed (apt-get install it)")
    (folder / "am.yml").write_text(
        "route: {receiver: hook, group_by: [alertname, provider], group_wait: 0s, "
        "group_interval: 1s, repeat_interval: 1h}\n"
        f"receivers: [{{name: hook, webhook_configs: [{{url: '{hook}'}}]}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--config.file=am.yml", f"--storage.path={folder / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1):
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("Alertmanager did not start") from None
            time.sleep(0.1)


def silence_latency(folder: Path, silences: int) -> list[float]:
    """Milliseconds from each injected silence's threshold crossing to its webhook arrival."""
    hook = Receiver()
    proc, am_url = start_alertmanager(folder, hook.url)
    providers = [f"p{i:04d}" for i in range(silences)]
    registry = "\n".join(
        f"  - {{provider: {p}, venue: X, max_gap: {MAX_GAP_S}s}}" for p in providers
    )
    definitions = parse_alerts(
        f"version: 1\nproviders:\n{registry}\n"
        "alerts: [{id: provider.silent, kind: provider_silent}]\n"
    )
    dispatcher = Dispatcher(definitions, alertmanager=AlertmanagerClient(am_url))
    watch = ProviderWatch(definitions, dispatcher)
    ticker = WatchTicker(watch).start()
    active = set(providers)
    last: dict[str, int] = {}
    stop = threading.Event()

    def feed() -> None:  # what the gates would hand the watch: every 10 ms
        while not stop.wait(0.01):
            now = time.time_ns()
            live = list(active)
            for p in live:
                last[p] = now
            watch.add(ProviderFacts(now, dict.fromkeys(live, now), dict.fromkeys(live, 1)))

    threading.Thread(target=feed, daemon=True).start()
    time.sleep(1.0)
    for p in providers:  # one provider goes silent every 150 ms
        active.discard(p)
        time.sleep(0.15)
    deadline = time.monotonic() + 30
    while len(hook.first) < silences and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    ticker.stop()
    dispatcher.close()
    proc.terminate()
    proc.wait(10)
    hook.server.shutdown()
    missing = [p for p in providers if p not in hook.first]
    if missing:
        raise SystemExit(f"no webhook notification for {len(missing)} silence(s)")
    return [(hook.first[p] - (last[p] + int(MAX_GAP_S * 1e9))) / 1e6 for p in providers]


def gate_rate(
    bootstrap: str, store: ChdbStore, rules_path: Path, raw: str, n: int, detectors: bool
) -> float:
    """Events per second of a gate over the first ``n`` records of ``raw``."""
    u = uuid.uuid4().hex[:6]
    clean, dlq = f"{u}.clean", f"{u}.dlq"
    ensure_topics(bootstrap, [clean, dlq], 3)
    rules = RuleSet.load([rules_path])
    observer = None
    if detectors:
        definitions = parse_alerts(
            "version: 1\nproviders: [{provider: p00000, venue: X, max_gap: 5s}]\n"
            "alerts:\n  - {id: silent, kind: provider_silent}\n"
            "  - {id: gap, kind: sequence_gap}\n  - {id: div, kind: divergence}\n"
        )
        sink: list[Any] = []
        watch = ProviderWatch(definitions, sink.extend)
        kinds = {r.id: r.kind for r in rules.rules}
        observer = KeyDetectors(definitions, kinds, sink.extend, watch.add)
    settings = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"bench-{u}", flush_rows=50_000)
    gate = Gate(settings, rules, store, None, observer)
    stop = threading.Event()
    thread = threading.Thread(target=gate.run, args=(stop,))
    thread.start()
    while gate.stats.events_in == 0:
        time.sleep(0.001)
    t0 = time.perf_counter()
    while gate.stats.events_in < n:
        time.sleep(0.005)
    stop.set()
    thread.join()
    return n / (time.perf_counter() - t0)


def detector_cost() -> float:
    """Microseconds of one ``observe_batch`` over 1,000 rows of 1,000 providers (the gate's
    per-batch call, provider facts included), averaged over 500 batches."""
    definitions = parse_alerts(
        "version: 1\nproviders: [{provider: p00000, venue: X, max_gap: 5s}]\n"
        "alerts:\n  - {id: silent, kind: provider_silent}\n  - {id: gap, kind: sequence_gap}\n"
    )
    sink: list[Any] = []
    watch = ProviderWatch(definitions, sink.extend)
    detectors = KeyDetectors(definitions, {"seq": "sequence"}, sink.extend, watch.add)
    providers = [f"p{i:05d}" for i in range(1000)]
    instruments = [f"SYM{i % 500:04d}" for i in range(1000)]
    seqs = list(range(1000))
    now = time.time_ns()
    origins = [now] * 1000
    t0 = time.perf_counter()
    for _ in range(500):
        detectors.observe_batch(now, providers, instruments, seqs, origins, {}, {}, [])
    return (time.perf_counter() - t0) / 500 * 1e6


def state_memory(keys: int) -> float:
    """MB held by ``keys`` firing instances and the detectors' open-key map."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    life = Lifecycle("gap", "sequence_gap", max_instances=keys)
    open_keys: dict[Any, set[str]] = {}
    for i in range(keys):
        labels = (("instrument", f"SYM{i:05d}"), ("provider", "alpha"), ("venue", "XLON"))
        life.observe(labels, i, active=True, value=3.0, figures={"missing": 3, "first": i})
        open_keys[labels] = {f"SYM{i:05d}"}
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(life.instances) == keys
    return held / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    host = machine(broker="tansu (embedded, TCP)")
    silences = 30 if args.quick else 150
    n = 50_000 if args.quick else 200_000
    pairs = 2 if args.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerting-"))
    result: dict[str, Any] = {"machine": host, "silences": silences, "gate_events": n}
    log(f"{silences} injected silences -> Alertmanager -> webhook")
    lat = silence_latency(tmp, silences)
    result["silence_to_webhook_p50_ms"] = round(pct(lat, 0.5), 1)
    result["silence_to_webhook_p99_ms"] = round(pct(lat, 0.99), 1)
    result["silence_to_webhook_max_ms"] = round(max(lat), 1)
    schema = Path(rules_file()).with_name("market_data.schema.json")
    rules_path = tmp / "bench.rules.yaml"
    rules_path.write_text(RULES.format(schema=schema))
    with EmbeddedBroker() as broker, ChdbStore(tmp / "chdb", "bench") as store:
        bs = broker.bootstrap_servers
        raw = f"{uuid.uuid4().hex[:6]}.raw"
        ensure_topics(bs, [raw], 3)
        log(f"filling {raw} with {n:,} events")
        fill(bs, raw, n)
        # Alternated and best-of, so a burst of other work on a shared machine does not land
        # on one side only.
        runs: dict[bool, list[float]] = {False: [], True: []}
        for i in range(pairs):
            for detectors in (False, True):
                log(f"gate {'with' if detectors else 'without'} detectors ({i + 1}/{pairs})")
                runs[detectors].append(gate_rate(bs, store, rules_path, raw, n, detectors))
    without, with_ = max(runs[False]), max(runs[True])
    result["gate_events_per_s_without"] = round(without)
    result["gate_events_per_s_with"] = round(with_)
    result["gate_with_vs_without"] = round(with_ / without, 3)
    result["detector_us_per_1000_rows"] = round(detector_cost(), 1)
    result["alert_state_mb_10k_keys"] = round(state_memory(10_000), 1)
    result["targets"] = {"silence_to_webhook_p99_ms": 1000, "alert_state_mb_10k_keys": 300}
    write_result("alerting", result, args.json)


if __name__ == "__main__":
    main()
