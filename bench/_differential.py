"""The differential harness of the compiled record checker (native/src/check.rs), shared by
tests/rules/test_checker_native.py and bench/differential.py: the same batches judged by
``RuleSet.evaluate_records`` with the fast path on and forced off (``stampline._native``
hidden from rules/_checker.py), everything the results say compared record by record.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from stampline.demo import rules_file
from stampline.rules import Extraction, RuleSet, _checker

NOW = 1_765_000_000_000_000_000
PRICE = "price"  # the gate's trail price, read with BatchResult.numbers
FULL_RULES = rules_file().with_name("market_data_full.rules.yaml")
# Topics in turn: a JSON contract's (md.*), an Avro contract's (avro.*: JSON there is a
# decode failure, and the checker is not asked), and one without a contract.
TOPICS = ("raw.quotes", "md.quotes", "avro.quotes")

# (name, extraction, rule files): the packaged rules with contracts (a JSON contract of two
# versions chosen by a header: the compiled contract check), stateful rules, scopes and a
# shadow rule; the market-data rules with their `kind: schema` rule (bench/gate.py's
# contract); then only the built-in checks under other extraction settings (a dotted origin
# in ns, short names, repeated keys allowed; seconds and a small size limit; ISO-8601
# origins, which the checker leaves to Python).
CONFIGS: list[tuple[str, Extraction, list[Any]]] = [
    ("full rules", Extraction(), [FULL_RULES]),
    ("market-data schema rule", Extraction(), [rules_file()]),
    (
        "dotted origin in ns, 8-char names, repeats allowed",
        Extraction(
            origin_field="deep.k", origin_unit="ns", max_name_chars=8, duplicate_keys="allow"
        ),
        [],
    ),
    ("seconds, small messages", Extraction(origin_unit="s", max_message_bytes=2_000), []),
    ("iso8601", Extraction(origin_unit="iso8601"), []),
]

Value = tuple[bytes | None, list[tuple[str, bytes | None]]]


@dataclass
class Outcome:
    """What a differential run found."""

    records: int = 0
    batches: int = 0
    raised_batches: int = 0  # batches on which evaluate_records raised (on both paths alike)
    mismatches: int = 0
    first_mismatches: list[str] = field(default_factory=list)
    paths: Counter[str] = field(default_factory=Counter)  # CHECK_PATHS of the fast runs
    cpu_s: dict[str, float] = field(default_factory=lambda: {"fast": 0.0, "python": 0.0})


def summary(result: Any) -> list[Any]:
    """Everything a batch result says, in comparable form: verdicts (failures with reasons,
    warnings, identity, origin), early failures, identity values with their types, origins,
    payloads as their JSON bytes (so -0.0 and 0.0 differ), the gate's trail price bit for bit."""
    prices = result.numbers(PRICE)
    return [
        (
            verdict,
            result.early.get(row),
            [(type(c[row]), c[row]) for c in result.identity],
            int(result.origin_ns[row]),
            _payload(result.payloads[row]),
            prices[row : row + 1].tobytes(),
        )
        for row, verdict in enumerate(result.verdicts())
    ]


def _payload(payload: dict[str, Any] | None) -> bytes | str | None:
    if payload is None:
        return None
    try:
        return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # deeper than orjson writes (255): made by orjson from the same bytes
        return "a deep payload"


def _judge(rules: RuleSet, chunk: list[Value], topics: list[str]) -> list[Any]:
    """A batch judged as the gate judges it: when evaluate_records raises, one record at a
    time, each record's exception kept. (No record is known to make it raise: the two that
    did, nesting near 1,000 levels and a lone surrogate in the name of a record refused but
    read leniently, are a dead letter and an escaped name now; the test asserts no batch
    raised.)"""
    vals = [v for v, _ in chunk]
    hdrs = [h for _, h in chunk]
    try:
        return summary(rules.evaluate_records(vals, NOW, topics, hdrs, numbers=(PRICE,)))
    except Exception as exc:
        out: list[Any] = [("batch raised", repr(exc))]
        for value, topic, headers in zip(vals, topics, hdrs, strict=True):
            try:
                one = rules.evaluate_records([value], NOW, [topic], [headers], numbers=(PRICE,))
                out.extend(summary(one))
            except Exception as e:
                out.append(("record raised", repr(e)))
        return out


def _batches(corpus: Iterable[Value], batch: int) -> Iterator[list[Value]]:
    it = iter(corpus)
    while chunk := list(islice(it, batch)):
        yield chunk


def compare(
    extraction: Extraction,
    files: list[Any],
    corpus: Iterable[Value],
    batch: int = 500,
    progress: Callable[[Outcome, int], None] | None = None,
) -> Outcome:
    """Judge ``corpus`` batch by batch with two rule sets, one on each path, and compare;
    ``progress`` is called with the outcome so far and the records judged, every 100
    batches."""
    native = _checker._native
    fast_rules = RuleSet.load(files, extraction) if files else RuleSet(extraction)
    slow_rules = RuleSet.load(files, extraction) if files else RuleSet(extraction)
    out = Outcome()
    start_paths = Counter(_checker.CHECK_PATHS)
    offset = 0
    try:
        for chunk in _batches(corpus, batch):
            topics = [TOPICS[(offset + i) % len(TOPICS)] for i in range(len(chunk))]
            before = time.process_time()
            fast = _judge(fast_rules, chunk, topics)
            between = time.process_time()
            fast_paths = Counter(_checker.CHECK_PATHS)
            _checker._native = None
            slow = _judge(slow_rules, chunk, topics)
            _checker._native = native
            out.cpu_s["fast"] += between - before
            out.cpu_s["python"] += time.process_time() - between
            _checker.CHECK_PATHS.clear()
            _checker.CHECK_PATHS.update(fast_paths)
            out.raised_batches += bool(fast) and fast[0][0] == "batch raised"
            if len(fast) != len(slow):
                out.mismatches += 1
                out.first_mismatches.append(f"batch at {offset}: {len(fast)} vs {len(slow)}")
            for at, (f, s) in enumerate(zip(fast, slow, strict=False)):
                if f != s:
                    out.mismatches += 1
                    if len(out.first_mismatches) < 10:
                        what = f"batch at {offset}, entry {at}: {f!r} vs {s!r}"
                        out.first_mismatches.append(what[:2000])
            offset += len(chunk)
            out.batches += 1
            if progress is not None and out.batches % 100 == 0:
                progress(out, offset)
        state = (fast_rules.stats, fast_rules.state_size())
        if state != (slow_rules.stats, slow_rules.state_size()):
            out.mismatches += 1
            out.first_mismatches.append("rule stats or state differ")
    finally:
        _checker._native = native
    out.records = offset
    out.paths = Counter(_checker.CHECK_PATHS) - start_paths
    return out
