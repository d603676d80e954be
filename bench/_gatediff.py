"""The whole gate on its two routes, compared through the real broker (issue 22).

One seeded corpus goes through a gate on the reference route (``compiled=False``) and a gate
on the compiled route, each into its own clean, dead-letter and trail topics, and what they
wrote is compared: every clean and dead-letter record (key, value, headers) and every trail
row and dead-letter row, as multisets (a keyless record's output partition is the
partitioner's random pick). Only the times the gates took are left out: any integer in a
header value or a row that falls inside the runs' own time window (the stamp's ``in=`` and
``out=``, the ingest time of a new event, the rows' received and emitted times) is masked,
and so are the random span of a traceparent and the age a freshness reason gives (the
origin against the gate's clock). The input topic has one partition, so both gates
see the records in one order and event time and stateful rules move alike.

The corpus: quotes with a sequence number per provider and instrument (gaps, duplicates and
late numbers among them), event time moving 2 ms a record, late events (born 30 s behind),
price spikes and a provider that stays off its instruments' level (divergence), records
stamped upstream (with stage stamps, parents and lineage), records with headers of their
own, and about 30 % hostile records from bench/_corpus.py's generator. The rules: the
market-data example set (every rule kind, warn and observe rules, a shadow rule, versioned
contracts) with its freshness windows widened, so the wall clock decides nothing.

Used by tests/collectors/test_gate_native.py (a slice) and bench/gate_differential.py (a
million records).
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench._corpus import Record, hostile, produce_all
from stampline.audit import decode_trail_message
from stampline.broker import ensure_topics
from stampline.collectors import Gate, GateSettings, StageStamp, Stamps, TrailTopic
from stampline.collectors._gate import GATE_PATHS
from stampline.rules import RuleSet

_DATA = Path(__file__).resolve().parents[1] / "stampline" / "data"
_RULES = "market_data_full.rules.yaml"
_NUMBER = re.compile(rb"\d{16,19}")
_SPAN = re.compile(rb"^(00-[0-9a-f]{32}-)[0-9a-f]{16}(-0[0-9a-f])$")
# A freshness reason measures the origin against the gate's clock when it judged the record
_AGE = re.compile(rb"origin time is .+? in the (past|future)")


def rules(folder: Path) -> RuleSet:
    """The market-data example set, copied into ``folder`` with its freshness windows
    widened to days (the gate's clock must decide nothing)."""
    target = folder / "rules"
    shutil.copytree(_DATA, target, dirs_exist_ok=True)
    path = target / _RULES
    text = path.read_text()
    text = re.sub(r"max_past: \w+", "max_past: 240h", text)
    text = re.sub(r"max_future: \w+", "max_future: 24h", text)
    path.write_text(text)
    return RuleSet.load([path])


def corpus(seed: int, n: int, now_ms: int) -> list[Record]:
    """``n`` records, seeded (see the module doc)."""
    rnd = random.Random(seed)
    instruments = max(50, n // 1_500)
    seqs: Counter[tuple[str, str]] = Counter()
    upstream = [
        Stamps(
            event_id=str(uuid.UUID(int=rnd.getrandbits(128))),
            origin_ns=(now_ms - 2_000) * 1_000_000,
            ingest_ns=(now_ms - 1_900) * 1_000_000,
            clock_err_ns=500_000,
            stages=(
                StageStamp("feed", (now_ms - 1_900) * 1_000_000, (now_ms - 1_800) * 1_000_000,
                           500_000, "feed-1", "configured"),
            ),
            parents=tuple(str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(k % 3)),
            traceparent=f"00-{rnd.getrandbits(128):032x}-{rnd.getrandbits(64):016x}-01",
        )
        for k in range(200)
    ]  # fmt: skip
    out: list[Record] = []
    for i in range(n):
        kind = rnd.random()
        if kind < 0.30:
            out.append(hostile(rnd, now_ms, i))
            continue
        # ~150 quotes a key, prices near the instrument's level, a spread that moves: the
        # warn rules (gaps, divergence, stale quotes) fire on some, as in a real feed
        which = rnd.randrange(instruments)
        # (not the hostile records' P0-P9, whose seq is their index: that would be a feed
        # whose every key is out of sequence)
        provider, instrument = f"Q{rnd.randint(0, 9)}", f"SYM{which:03d}"
        key = (provider, instrument)
        seqs[key] += 1
        step = rnd.random()
        seq = seqs[key]
        if step < 0.01:
            seqs[key] += 3  # a gap opens
        elif step < 0.02:
            seq -= 1  # a duplicate
        # 2 ms of event time a record; late: 30 s behind
        ts = now_ms + 2 * i - (30_000 if rnd.random() < 0.02 else 0)
        level = 10 + 7.3 * which
        price = round(level * rnd.uniform(0.995, 1.005), 2)
        if rnd.random() < 0.01 or (provider == "Q9" and which % 20 == 0):
            price = round(level * 1.3, 2)  # a spike, or a provider that stays off (divergence)
        quote = {
            "provider": provider,
            "instrument": instrument,
            "seq": seq,
            "ts": ts,
            "type": "quote",
            "price": price,
            "bid": round(price - rnd.uniform(0.01, 0.05), 2),
            "ask": round(price + rnd.uniform(0.01, 0.05), 2),
            "quantity": rnd.randint(1, 1000),
        }
        headers: list[tuple[str, bytes | None]] = []
        if kind < 0.40:
            headers = list(upstream[i % len(upstream)].headers())
        elif kind < 0.45:
            headers = [("x-app", b"feed-7"), ("x-null", None), ("schema-version", b"1")]
        key_bytes = provider.encode() if kind < 0.60 else None
        out.append((key_bytes, orjson.dumps(quote), headers))
    return out


@dataclass
class Outputs:
    """What one gate wrote, masked, as multisets of digests (and a readable sample)."""

    clean: Counter[bytes] = field(default_factory=Counter)
    dead: Counter[bytes] = field(default_factory=Counter)
    rows: Counter[bytes] = field(default_factory=Counter)
    dead_rows: Counter[bytes] = field(default_factory=Counter)
    shown: dict[bytes, Any] = field(default_factory=dict)
    forwarded: int = 0
    dead_lettered: int = 0
    paths: dict[str, int] = field(default_factory=dict)


@dataclass
class Window:
    """The runs' time window, in ns: integers inside it are times a gate took."""

    start: int
    end: int = 0

    def masked(self, raw: bytes) -> bytes:
        def mask(m: re.Match[bytes]) -> bytes:
            return b"<t>" if self.start <= int(m.group()) <= self.end else m.group()

        raw = _AGE.sub(rb"origin time is <t> in the \1", raw)
        return _SPAN.sub(rb"\1<span>\2", _NUMBER.sub(mask, raw))

    def value(self, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool) and self.start <= v <= self.end:
            return "<t>"
        if isinstance(v, str):
            return self.masked(v.encode()).decode()
        return v


def run_gate(
    bootstrap: str, raw: str, rule_set: RuleSet, n: int, compiled: bool, tag: str
) -> tuple[Gate, tuple[str, str, str]]:
    """A gate over ``raw`` until it took in ``n`` records, stopped (flushed, committed)."""
    uid = f"{tag}-{uuid.uuid4().hex[:8]}"
    topics = (f"{uid}.clean", f"{uid}.dlq", f"{uid}.trail")
    ensure_topics(bootstrap, topics, 2)
    gate = Gate(
        GateSettings(
            bootstrap, (raw,), topics[0], topics[1], group_id=uid, host="gw-1", compiled=compiled
        ),
        rule_set,
        TrailTopic(topics[2], "gate"),
    )
    stop, error = threading.Event(), []

    def body() -> None:
        try:
            gate.run(stop)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    deadline = time.monotonic() + max(120, n / 2_000)
    while gate.stats.events_in < n and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(120)
    if error:
        raise error[0]
    assert gate.stats.events_in == n, f"the gate took in {gate.stats.events_in} of {n}"
    return gate, topics


def _read(bootstrap: str, topic: str, expect: int) -> Iterable[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        got, idle = 0, time.monotonic()
        while got < expect or time.monotonic() - idle < 1.0:
            if time.monotonic() - idle > 60:
                raise AssertionError(f"read {got} of {expect} records from {topic}")
            for m in consumer.consume(1000, 0.1):
                assert m.error() is None, m.error()
                got += 1
                idle = time.monotonic()
                yield m
    finally:
        consumer.close()


def _digest(item: Any) -> bytes:
    return hashlib.blake2b(orjson.dumps(item, option=orjson.OPT_PASSTHROUGH_DATACLASS,
                                        default=repr), digest_size=16).digest()  # fmt: skip


def outputs(
    bootstrap: str, gate: Gate, topics: tuple[str, str, str], window: Window, keep: int
) -> Outputs:
    """What the gate wrote to its topics, masked by ``window``; ``keep`` items of each kind
    are kept readable, to show a mismatch."""
    out = Outputs(
        forwarded=gate.stats.forwarded,
        dead_lettered=gate.stats.dead_lettered_total,
    )
    clean, dlq, trail = topics

    def add(counter: Counter[bytes], item: Any, where: str) -> None:
        d = _digest(item)
        counter[d] += 1
        out.shown[d] = item if len(out.shown) < keep else where

    for topic, counter, expect in (
        (clean, out.clean, out.forwarded),
        (dlq, out.dead, out.dead_lettered),
    ):
        for m in _read(bootstrap, topic, expect):
            headers = [
                (k, None if v is None else window.masked(v).hex()) for k, v in m.headers() or []
            ]
            named = dict(m.headers() or [])
            where = (
                f"event {named.get('stampline.event_id')!r}, source offset "
                f"{named.get('__connect.errors.offset')!r}, reason "
                f"{(named.get('stampline.reason') or b'')[:80]!r}"
            )
            record = ((m.key() or b"").hex(), (m.value() or b"").hex(), headers)
            add(counter, record, where)
    for m in _read(bootstrap, trail, 1):
        kind, table = decode_trail_message(m.value(), m.headers())
        counter = out.rows if kind == "observations" else out.dead_rows
        names = table.column_names
        for row in zip(*(table.column(c).to_pylist() for c in names), strict=True):
            add(counter, [v.hex() if isinstance(v, bytes) else window.value(v) for v in row],
                f"event {row[0]!r}, source offset {row[names.index('offset')]}")  # fmt: skip
    return out


def differences(a: Outputs, b: Outputs, limit: int = 5) -> list[str]:
    """What one side wrote and the other did not, per kind (empty: identical)."""
    found: list[str] = []
    for kind in ("clean", "dead", "rows", "dead_rows"):
        left, right = getattr(a, kind), getattr(b, kind)
        for name, only in (("reference only", left - right), ("compiled only", right - left)):
            for d in list(only)[:limit]:
                shown = a.shown.get(d) or b.shown.get(d) or d.hex()
                found.append(f"{kind}, {name} (x{only[d]}): {str(shown)[:600]}")
    if (a.forwarded, a.dead_lettered) != (b.forwarded, b.dead_lettered):
        found.append(
            f"counts: reference {a.forwarded} forwarded {a.dead_lettered} dead-lettered, "
            f"compiled {b.forwarded} forwarded {b.dead_lettered} dead-lettered"
        )
    return found


def compare_routes(
    bootstrap: str, folder: Path, seed: int, n: int, keep: int = 50
) -> tuple[Outputs, Outputs]:
    """Both routes over one corpus of ``n`` records: (reference, compiled)."""
    now_ms = int(time.time() * 1000)
    raw = f"md.diff-{uuid.uuid4().hex[:8]}.raw"  # md.*: the contracts' topics
    ensure_topics(bootstrap, [raw], 1)
    produce_all(bootstrap, raw, corpus(seed, n, now_ms))
    window = Window(time.time_ns())
    sides = []
    for compiled in (False, True):
        GATE_PATHS.clear()
        gate, topics = run_gate(
            bootstrap, raw, rules(folder), n, compiled, "c" if compiled else "r"
        )
        sides.append((gate, topics, dict(GATE_PATHS)))
    window.end = time.time_ns()
    results = []
    for gate, topics, paths in sides:
        o = outputs(bootstrap, gate, topics, window, keep)
        o.paths = paths
        results.append(o)
    return results[0], results[1]
