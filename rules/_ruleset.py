"""Rule files compiled into checks, and the verdict for each record.

A record meets the checks in this order, stopping at the first group that fails:
size, decoding, finiteness, origin time, the contract (JSON Schema), then every business
rule (all of them are evaluated, so a dead letter can list each rule the record broke).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from rules._files import FreshnessRule, RangeRule, SchemaRule, load_rule_file
from rules._origin import OriginUnit, origin_ns
from rules._verdict import Failure, Verdict
from rules.exceptions import RuleFileError

# Built-in checks every record meets before any rule file applies.
SIZE_RULE = ("record.size", 1)
DECODE_RULE = ("record.decode", 1)
NON_FINITE_RULE = ("record.non_finite", 1)
ORIGIN_RULE = ("record.origin", 1)
BUILTIN_RULES = (SIZE_RULE, DECODE_RULE, NON_FINITE_RULE, ORIGIN_RULE)


@dataclass(frozen=True, slots=True)
class Extraction:
    """Where a record keeps the fields the gate needs, and how big it may be."""

    origin_field: str = "ts"
    origin_unit: OriginUnit = "ms"
    provider_field: str = "provider"
    instrument_field: str = "instrument"
    seq_field: str = "seq"
    max_message_bytes: int = 1_048_576


# A compiled business rule: (payload, origin_ns, now_ns) -> reason, or None when it passes.
_CheckFn = Callable[[dict[str, Any], int, int], str | None]


@dataclass(frozen=True, slots=True)
class _Check:
    rule_id: str
    version: int
    fn: _CheckFn


class RuleSet:
    """An immutable, compiled set of rules. Build with :meth:`load`."""

    def __init__(
        self,
        extraction: Extraction,
        contracts: Sequence[tuple[str, int, Callable[[Any], Any]]] = (),
        checks: Sequence[_Check] = (),
    ) -> None:
        self.extraction = extraction
        self._contracts = tuple(contracts)
        self._checks = tuple(checks)

    @classmethod
    def load(cls, files: Iterable[Path], extraction: Extraction | None = None) -> RuleSet:
        """Compile every rule of ``files``.

        Raises:
            RuleFileError: a file, or a schema it names, is unreadable or invalid; or two
                files define the same rule id.
        """
        ext = extraction or Extraction()
        contracts: list[tuple[str, int, Callable[[Any], Any]]] = []
        checks: list[_Check] = []
        seen: dict[str, Path] = {}
        for path in files:
            for rule in load_rule_file(Path(path)).rules:
                if rule.id in seen or rule.id in {r for r, _ in BUILTIN_RULES}:
                    where = seen.get(rule.id, "the built-in rules")
                    raise RuleFileError(f"{path}: rule id {rule.id!r} is also defined in {where}")
                seen[rule.id] = Path(path)
                if isinstance(rule, SchemaRule):
                    contracts.append((rule.id, rule.version, _compile_schema(rule)))
                elif isinstance(rule, RangeRule):
                    _check_template(path, rule.id, rule.reason, field="f", value=1.5, min=0, max=1)
                    checks.append(_Check(rule.id, rule.version, _range_check(rule)))
                elif isinstance(rule, FreshnessRule):
                    _check_template(path, rule.id, rule.reason, age="1s", ahead="1s", value=1)
                    checks.append(_Check(rule.id, rule.version, _freshness_check(rule)))
        return cls(ext, contracts, checks)

    @property
    def rule_ids(self) -> list[tuple[str, int]]:
        """(id, version) of every rule, built-in ones first."""
        return [
            *BUILTIN_RULES,
            *((rid, ver) for rid, ver, _ in self._contracts),
            *((c.rule_id, c.version) for c in self._checks),
        ]

    def evaluate_batch(self, values: Sequence[bytes | None], now_ns: int) -> list[Verdict]:
        """One verdict per value, in order."""
        return [self.evaluate(v, now_ns) for v in values]

    def evaluate(self, value: bytes | None, now_ns: int) -> Verdict:
        """The verdict for one record's value. Never raises: a broken rule fails the record."""
        ext = self.extraction
        if value is None or len(value) == 0:
            return _reject(DECODE_RULE, "empty value (a tombstone or an empty message)")
        if len(value) > ext.max_message_bytes:
            return _reject(
                SIZE_RULE,
                f"message is {len(value):,} bytes, over the limit of {ext.max_message_bytes:,}",
            )
        payload, problem = _decode(value)
        if problem is not None:
            return _reject(*problem)
        assert payload is not None  # _decode returns one or the other
        ids = _identity(payload, ext)
        try:
            origin = origin_ns(_get(payload, ext.origin_field), ext.origin_unit)
        except (KeyError, ValueError, TypeError) as exc:
            why = "is missing" if isinstance(exc, KeyError) else f"is invalid: {exc}"
            return _reject(ORIGIN_RULE, f"origin field {ext.origin_field!r} {why}", ids)
        for rid, ver, validate in self._contracts:
            try:
                validate(payload)
            except fastjsonschema.JsonSchemaValueException as exc:
                return _reject((rid, ver), _schema_reason(exc), ids, origin)
        failures = []
        for check in self._checks:
            try:
                reason = check.fn(payload, origin, now_ns)
            except Exception as exc:  # a broken rule must fail the record, not the gate
                reason = f"rule raised {type(exc).__name__}: {exc}"
            if reason is not None:
                failures.append(Failure(check.rule_id, check.version, reason))
        return Verdict(tuple(failures), origin, *ids, payload=payload)


def _reject(
    rule: tuple[str, int],
    reason: str,
    ids: tuple[str, str, int] = ("", "", -1),
    origin: int = 0,
) -> Verdict:
    return Verdict((Failure(rule[0], rule[1], reason),), origin, *ids)


def _decode(
    value: bytes,
) -> tuple[dict[str, Any] | None, tuple[tuple[str, int], str] | None]:
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN and Infinity; the standard library reads them, which tells a
        # provider's non-finite number apart from bytes that are simply not JSON.
        try:
            lenient = json.loads(value)
        except (ValueError, RecursionError):
            return None, (DECODE_RULE, f"not valid JSON: {exc}")
        path = _non_finite_path(lenient)
        if path is not None:
            return None, (NON_FINITE_RULE, f"field {path!r} is not a finite number")
        return None, (DECODE_RULE, f"not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return None, (DECODE_RULE, f"JSON {type(payload).__name__} where an object was expected")
    return payload, None


def _non_finite_path(value: Any, path: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(value)"
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _get(payload: dict[str, Any], dotted: str) -> Any:
    value: Any = payload
    for part in dotted.split("."):
        if not isinstance(value, dict):
            raise KeyError(dotted)
        value = value[part]
    return value


def _identity(payload: dict[str, Any], ext: Extraction) -> tuple[str, str, int]:
    provider = payload.get(ext.provider_field)
    instrument = payload.get(ext.instrument_field)
    seq = payload.get(ext.seq_field)
    if isinstance(seq, float) and seq.is_integer():
        seq = int(seq)  # JSON Schema's "integer" admits 1.0; keep the number
    return (
        provider if isinstance(provider, str) else "",
        instrument if isinstance(instrument, str) else "",
        # The trail stores seq as Int64; anything else is "no sequence", not a crash later.
        seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63 else -1,
    )


def _compile_schema(rule: SchemaRule) -> Callable[[Any], Any]:
    try:
        schema = orjson.loads(rule.schema_path.read_bytes())
    except OSError as exc:
        raise RuleFileError(
            f"rule {rule.id}: schema: cannot read {rule.schema_path}: {exc.strerror}"
        ) from exc
    except orjson.JSONDecodeError as exc:
        raise RuleFileError(
            f"rule {rule.id}: schema: {rule.schema_path} is not JSON: {exc}"
        ) from exc
    try:
        validate: Callable[[Any], Any] = fastjsonschema.compile(schema)
        return validate
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise RuleFileError(
            f"rule {rule.id}: schema: {rule.schema_path} is not a valid JSON Schema: {exc}"
        ) from exc


def _schema_reason(exc: fastjsonschema.JsonSchemaValueException) -> str:
    # fastjsonschema calls the record "data": "data.price must be number".
    message = exc.message
    if message.startswith("data."):
        message = message[len("data.") :]
    elif message.startswith("data "):
        message = "record " + message[len("data ") :]
    whole_record = len(exc.path) <= 1
    if exc.rule in {"required", "additionalProperties"} or whole_record:
        return f"contract: {message}"
    return f"contract: {message} (got {exc.value!r})"[:500]


def _check_template(path: Path, rule_id: str, template: str | None, **sample: Any) -> None:
    """Fail at load, not on some record later, if a reason template cannot be filled."""
    if template is None:
        return
    try:
        _fill(template, **sample)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise RuleFileError(
            f"{path}: rule {rule_id}: reason template {template!r} cannot be filled: {exc}"
        ) from None


def _fill(template: str, **values: Any) -> str:
    class _Keep(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    return template.format_map(_Keep(values))


def _range_check(rule: RangeRule) -> _CheckFn:
    lo, hi = rule.min, rule.max
    lo_ex, hi_ex = rule.min_exclusive, rule.max_exclusive

    def check(payload: dict[str, Any], _origin: int, _now: int) -> str | None:
        try:
            value = _get(payload, rule.field)
        except KeyError:
            return None  # whether the field must exist is the contract's business
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{rule.field} {value!r} is not a number"
        if lo is not None and (value <= lo if lo_ex else value < lo):
            default = "{field} {value} is below the minimum " + ("(exclusive) " if lo_ex else "")
            default += "{min}"
        elif hi is not None and (value >= hi if hi_ex else value > hi):
            default = "{field} {value} is above the maximum " + ("(exclusive) " if hi_ex else "")
            default += "{max}"
        else:
            return None
        return _fill(rule.reason or default, field=rule.field, value=value, min=lo, max=hi)

    return check


def _freshness_check(rule: FreshnessRule) -> _CheckFn:
    past, future = rule.max_past, rule.max_future
    window = f"allowed: {format_duration(past)} past to {format_duration(future)} future"

    def check(_payload: dict[str, Any], origin: int, now: int) -> str | None:
        age = now - origin
        if age > past:
            default = "origin time is {age} in the past; " + window
        elif -age > future:
            default = "origin time is {ahead} in the future; " + window
        else:
            return None
        return _fill(
            rule.reason or default,
            age=format_duration(age),
            ahead=format_duration(-age),
            value=origin,
        )

    return check


def format_duration(ns: int) -> str:
    """A short human duration: ``850µs``, ``12.3ms``, ``4.2s``, ``3m20s``, ``2h05m``, ``3d4h``."""
    a = abs(ns)
    sign = "-" if ns < 0 else ""
    # Compare after rounding, so 999.9996µs reads "1.0ms", never "1000µs".
    if round(a / 1_000) < 1_000:
        return f"{sign}{a / 1_000:.0f}µs"
    if round(a / 1_000_000, 1) < 1_000:
        return f"{sign}{a / 1_000_000:.1f}ms"
    s = a / 1_000_000_000
    if round(s, 1) < 60:
        return f"{sign}{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{sign}{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{sign}{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{sign}{d}d{h}h"
