"""Stateless rules compiled to vectorised checks over a batch's columns.

Each compiled rule gives a boolean column of failures; reasons are written only for the
rows that failed, which are few, so the cost per event is a handful of NumPy or Arrow
operations shared by the whole batch.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stampline._common import format_duration
from stampline.rules._columns import MISSING, BoolArray, Columns
from stampline.rules._files import (
    CompareRule,
    EnumRule,
    FreshnessRule,
    NotNullRule,
    RangeRule,
    RegexRule,
    TickSizeRule,
)

# The fewest things a check needs: the columns, the gate's clock.
Check = Callable[[Columns, int], BoolArray]
Reason = Callable[[Columns, int, int], str]


class _Keep(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **values: Any) -> str:
    """``template`` with the values it names filled in; unknown names are kept as written."""
    return template.format_map(_Keep(values))


StatelessSpec = (
    NotNullRule | RangeRule | EnumRule | RegexRule | CompareRule | TickSizeRule | FreshnessRule
)


def compile_stateless(rule: StatelessSpec) -> tuple[Check, Reason]:
    """The vectorised check and the reason writer for one rule."""
    if isinstance(rule, RangeRule):
        return _range(rule)
    if isinstance(rule, NotNullRule):
        return _not_null(rule)
    if isinstance(rule, EnumRule):
        return _enum(rule)
    if isinstance(rule, RegexRule):
        return _regex(rule)
    if isinstance(rule, CompareRule):
        return _compare(rule)
    if isinstance(rule, TickSizeRule):
        return _tick(rule)
    return _freshness(rule)


# Sample values each kind's reason template must accept; checked when the rule loads.
TEMPLATE_SAMPLES: dict[str, dict[str, Any]] = {
    "range": {"field": "f", "value": 1.5, "min": 0, "max": 1},
    "freshness": {"age": "1s", "ahead": "1s", "value": 1, "provider": "p"},
    "not_null": {"field": "f", "value": None},
    "enum": {"field": "f", "value": "x", "values": ["a"]},
    "regex": {"field": "f", "value": "x", "pattern": "^a$"},
    "compare": {"left": "bid", "right": "ask", "op": "<=", "left_value": 2, "right_value": 1},
    "tick_size": {"field": "f", "value": 1.005, "tick": 0.01},
}


def _range(rule: RangeRule) -> tuple[Check, Reason]:
    lo, hi = rule.min, rule.max
    lo_ex, hi_ex = rule.min_exclusive, rule.max_exclusive

    def check(cols: Columns, _now: int) -> BoolArray:
        values, ok, bad = cols.numeric(rule.field)
        out = np.zeros(cols.n, np.bool_)
        # (a comparison with NaN is False and never warns: no errstate needed)
        if lo is not None:
            out |= (values <= lo) if lo_ex else (values < lo)
        if hi is not None:
            out |= (values >= hi) if hi_ex else (values > hi)
        out &= ok
        out |= bad
        return out

    def reason(cols: Columns, row: int, _now: int) -> str:
        value = cols.value(rule.field, row)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{rule.field} {value!r} is not a number"
        if lo is not None and (value <= lo if lo_ex else value < lo):
            default = "{field} {value} is below the minimum " + ("(exclusive) " if lo_ex else "")
            default += "{min}"
        else:
            default = "{field} {value} is above the maximum " + ("(exclusive) " if hi_ex else "")
            default += "{max}"
        return fill(rule.reason or default, field=rule.field, value=value, min=lo, max=hi)

    return check, reason


def _not_null(rule: NotNullRule) -> tuple[Check, Reason]:
    def check(cols: Columns, _now: int) -> BoolArray:
        return ~cols.present(rule.field)

    def reason(cols: Columns, row: int, _now: int) -> str:
        value = cols.value(rule.field, row)
        default = "{field} is missing" if value is MISSING else "{field} is null"
        return fill(rule.reason or default, field=rule.field, value=None)

    return check, reason


def _enum(rule: EnumRule) -> tuple[Check, Reason]:
    allowed = set(rule.values)
    all_strings = all(isinstance(v, str) for v in rule.values)
    value_set = pa.array(list(rule.values), pa.string()) if all_strings else None

    def check(cols: Columns, _now: int) -> BoolArray:
        present = cols.present(rule.field)
        if value_set is not None:
            texts, not_text = cols.strings(rule.field)
            inside = np.asarray(
                pc.fill_null(pc.is_in(texts, value_set=value_set), False), dtype=np.bool_
            )
            out: BoolArray = (present & ~inside) | not_text
            return out
        raw = cols.raw(rule.field)
        members = np.fromiter((_member(v, allowed) for v in raw), np.bool_, cols.n)
        missing: BoolArray = present & ~members
        return missing

    def reason(cols: Columns, row: int, _now: int) -> str:
        value = cols.value(rule.field, row)
        return fill(
            rule.reason or "{field} {value!r} is not one of {values}",
            field=rule.field,
            value=value,
            values=list(rule.values),
        )

    return check, reason


def _member(value: Any, allowed: set[Any]) -> bool:
    try:
        # True == 1 in Python; a boolean must not pass for the number 1, nor the reverse.
        return value in allowed and any(
            type(a) is type(value) or (not isinstance(a, bool) and not isinstance(value, bool))
            for a in allowed
            if a == value
        )
    except TypeError:  # unhashable: a list or an object is never a member
        return False


def _regex(rule: RegexRule) -> tuple[Check, Reason]:
    def check(cols: Columns, _now: int) -> BoolArray:
        texts, not_text = cols.strings(rule.field)
        matched = np.asarray(
            pc.fill_null(pc.match_substring_regex(texts, rule.pattern), True), dtype=np.bool_
        )
        return ~matched | not_text

    def reason(cols: Columns, row: int, _now: int) -> str:
        value = cols.value(rule.field, row)
        default = (
            "{field} {value!r} does not match {pattern}"
            if isinstance(value, str)
            else "{field} {value!r} is not a string"
        )
        return fill(rule.reason or default, field=rule.field, value=value, pattern=rule.pattern)

    return check, reason


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _compare(rule: CompareRule) -> tuple[Check, Reason]:
    op = _OPS[rule.op]

    def check(cols: Columns, _now: int) -> BoolArray:
        left, left_ok, left_bad = cols.numeric(rule.left)
        right, right_ok, right_bad = cols.numeric(rule.right)
        with np.errstate(invalid="ignore"):
            holds = np.asarray(op(left, right), dtype=np.bool_)
        return (left_ok & right_ok & ~holds) | left_bad | right_bad

    def reason(cols: Columns, row: int, _now: int) -> str:
        lv, rv = cols.value(rule.left, row), cols.value(rule.right, row)
        for name, v in ((rule.left, lv), (rule.right, rv)):
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"{name} {v!r} is not a number"
        return fill(
            rule.reason or "{left} {left_value} is not {op} {right} {right_value}",
            left=rule.left,
            right=rule.right,
            op=rule.op,
            left_value=lv,
            right_value=rv,
        )

    return check, reason


def _tick(rule: TickSizeRule) -> tuple[Check, Reason]:
    def check(cols: Columns, _now: int) -> BoolArray:
        values, ok, bad = cols.numeric(rule.field)
        # a value beyond float range in ticks (1e308 / 0.01) is inf, and inf - inf is NaN: not
        # off the grid, as no float that large has a fraction; numpy need not warn of either
        with np.errstate(invalid="ignore", over="ignore"):
            ticks = values / rule.tick
            # a billionth of a tick absorbs binary rounding (100.01 / 0.01 = 10000.999...)
            off = np.abs(ticks - np.rint(ticks)) > 1e-9 * np.maximum(1.0, np.abs(ticks))
        return (ok & off) | bad

    def reason(cols: Columns, row: int, _now: int) -> str:
        value = cols.value(rule.field, row)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{rule.field} {value!r} is not a number"
        return fill(
            rule.reason or "{field} {value} is not a multiple of the tick {tick}",
            field=rule.field,
            value=value,
            tick=rule.tick,
        )

    return check, reason


def _freshness(rule: FreshnessRule) -> tuple[Check, Reason]:
    def windows(cols: Columns) -> tuple[Any, Any]:
        if not rule.providers:
            return rule.max_past, rule.max_future
        providers = cols.identity()[0]
        past = np.fromiter(
            (rule.providers.get(p, (rule.max_past, 0))[0] for p in providers), np.int64, cols.n
        )
        future = np.fromiter(
            (rule.providers.get(p, (0, rule.max_future))[1] for p in providers), np.int64, cols.n
        )
        return past, future

    def check(cols: Columns, now: int) -> BoolArray:
        past, future = windows(cols)
        age = now - cols.origin_ns
        return np.asarray((age > past) | (-age > future), dtype=np.bool_)

    def reason(cols: Columns, row: int, now: int) -> str:
        provider = cols.identity()[0][row] if rule.providers else ""
        past, future = rule.providers.get(provider, (rule.max_past, rule.max_future))
        window = f"allowed: {format_duration(past)} past to {format_duration(future)} future"
        if rule.providers and provider in rule.providers:
            window += f" for provider {provider}"
        origin = int(cols.origin_ns[row])
        age = now - origin
        if age > past:
            default = "origin time is {age} in the past; " + window
        else:
            default = "origin time is {ahead} in the future; " + window
        return fill(
            rule.reason or default,
            age=format_duration(age),
            ahead=format_duration(-age),
            value=origin,
            provider=provider,
        )

    return check, reason
