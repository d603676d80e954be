"""Contract tests: example events with the verdict each must get.

An examples folder holds ``*.jsonl`` files. Each line is one example::

    {"event": {...}, "expect": "pass"}
    {"event": {...}, "expect": ["price.positive"], "topic": "md.raw", "headers": {"v": "2"}}
    {"value": "not json", "expect": ["record.decode"]}

``expect`` is ``"pass"`` or the ids of every rule the event must break (reject, warn and
observe alike; shadow rules are left out). ``now_ms`` sets the gate's clock, by default
the event's own origin time. Each file is replayed in order through fresh rules, so
stateful rules (a sequence gap, a stale quote) can be shown with a few lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stampline.rules._columns import get_field
from stampline.rules._origin import origin_ns
from stampline.rules._ruleset import Extraction, RuleSet
from stampline.rules.exceptions import RuleFileError


@dataclass(frozen=True, slots=True)
class ExampleOutcome:
    """One example's expected and actual failing rule ids."""

    where: str  # file:line
    expected: tuple[str, ...]
    actual: tuple[str, ...]
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass(slots=True)
class ExampleReport:
    outcomes: list[ExampleOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ExampleOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": len(self.outcomes),
            "passed": len(self.outcomes) - len(self.failed),
            "failed": [
                {
                    "where": o.where,
                    "expected": list(o.expected) or "pass",
                    "actual": list(o.actual) or "pass",
                    "reasons": list(o.reasons),
                }
                for o in self.failed
            ],
        }


def run_examples(
    rule_files: Iterable[Path], examples: Path, extraction: Extraction | None = None
) -> ExampleReport:
    """Replay every example file through the rules.

    Raises:
        RuleFileError: the rules do not load, the folder holds no examples, or an example
            line is malformed (named by file:line).
    """
    files = sorted(examples.glob("**/*.jsonl")) if examples.is_dir() else [examples]
    if not files or not all(f.is_file() for f in files):
        raise RuleFileError(f"{examples}: no *.jsonl example files")
    rule_files = list(rule_files)
    ext = extraction or Extraction()
    report = ExampleReport()
    for path in files:
        rules = RuleSet.load(rule_files, ext)
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("//"):
                continue
            where = f"{path}:{number}"
            example = _parse(where, line)
            value, now = _value(example, ext)
            headers = [(k, str(v).encode()) for k, v in (example.get("headers") or {}).items()]
            verdict = rules.evaluate(value, now, example.get("topic", ""), headers)
            broken = [*verdict.failures, *verdict.warnings, *verdict.observed]
            broken = [f for f in broken if not f.shadow]
            expect = example["expect"]
            report.outcomes.append(
                ExampleOutcome(
                    where,
                    tuple(sorted(set(expect))) if expect != "pass" else (),
                    tuple(sorted({f.rule_id for f in broken})),
                    tuple(f"{f.rule_id}@v{f.rule_version}: {f.reason}" for f in broken),
                )
            )
    return report


def _parse(where: str, line: str) -> dict[str, Any]:
    try:
        example = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RuleFileError(f"{where}: not JSON: {exc}") from None
    if not isinstance(example, dict):
        raise RuleFileError(f"{where}: an example is a JSON object")
    unknown = set(example) - {"event", "value", "expect", "topic", "headers", "now_ms", "note"}
    if unknown:
        raise RuleFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    expect = example.get("expect")
    if expect != "pass" and not (
        isinstance(expect, list) and expect and all(isinstance(e, str) for e in expect)
    ):
        raise RuleFileError(f'{where}: expect: give "pass" or a list of rule ids (got {expect!r})')
    if ("event" in example) == ("value" in example):
        raise RuleFileError(f"{where}: give exactly one of event (an object) or value (text)")
    return example


def _value(example: dict[str, Any], ext: Extraction) -> tuple[bytes, int]:
    if "value" in example:
        value = str(example["value"]).encode()
        event: Any = None
    else:
        event = example["event"]
        value = orjson.dumps(event)
    if "now_ms" in example:
        return value, int(example["now_ms"]) * 1_000_000
    try:
        return value, origin_ns(get_field(event, ext.origin_field), ext.origin_unit)
    except (ValueError, TypeError):  # the record's origin is broken: its rule will say so
        return value, 0
