"""The compiled record checker's side of ``RuleSet.evaluate_records`` (docs/native.md).

One call into Rust per batch (``native/src/check.rs``, ``decode.rs``; the GIL released)
says which records are certainly clean — exactly one JSON object, read by orjson as the
Python path reads it, no key repeated in any object — and decodes their extraction fields,
and the top-level fields the rules read (``Typed``, rules/_columns.py), into columns.
Records it cannot vouch for take the Python path, which is the reference, one by one as
before; so does everything when ``stampline._native`` is absent. Each record's
path is counted in :data:`CHECK_PATHS`, so nothing diverges silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stampline.rules._columns import Typed

try:
    from stampline import _native
except ImportError:  # built without cargo (docs/native.md): the Python path judges all
    _native = None  # type: ignore[assignment]
else:
    if not hasattr(_native, "check_records"):  # built before the checker (`./dev setup`)
        _native = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from stampline.rules._ruleset import Extraction

log = logging.getLogger("stampline.rules")

# Records per path: "native" (checked and decoded in Rust), "native, <field> from python"
# (a clean record one of whose fields Python converted), or "python: <why>" (the record took
# the Python path). The differential test (tests/rules/test_checker_native.py) holds the two
# paths to identical results; a new reason is logged once.
CHECK_PATHS: Counter[str] = Counter()

# In the seq and origin columns: a clean record's field that Python must compute (no valid
# seq or origin is negative). Rust's decode::FROM_PYTHON.
FROM_PYTHON = -(2**63)

# Levels of objects and arrays a record may hold (the record itself is 1), Rust's
# check::MAX_DEPTH: deeper records are refused (record.decode) on the Python path, which the
# checker leaves them to. Python's own walks of a payload stop near 1,000 levels (its
# recursion limit), and orjson writes no more than 255 back.
MAX_DEPTH = 256

_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass(slots=True)
class Checked:
    """A batch's columns from the checker. Rows not clean hold what the Python path starts
    from: empty names, seq -1, origin 0."""

    clean: bytes  # 1: certainly clean and decoded; 0: the Python path judges the record
    providers: list[str]
    instruments: list[str]
    seqs: list[int]  # FROM_PYTHON where Python converts a clean record's seq
    origins: np.ndarray[Any, np.dtype[np.int64]]  # FROM_PYTHON likewise
    # Per record, the bits of its ``wants`` whose compiled schema the clean record certainly
    # passes (rules/_contract_check.py); zeros when no schema was given.
    passed: np.ndarray[Any, np.dtype[np.uint64]]
    # The fields asked for as ``typed``, decoded for the clean records (rules/_columns.py).
    typed: dict[str, Typed]


def available() -> bool:
    """Whether the compiled checker is there."""
    return _native is not None


def count(path: str, n: int = 1) -> None:
    """Count ``n`` records on ``path``; log a path's first use."""
    if n <= 0:
        return
    first = path not in CHECK_PATHS
    CHECK_PATHS[path] += n
    if first and path.startswith("python: "):
        log.info("records on the Python path: %s", path.removeprefix("python: "))


def compile_schema(text: str) -> tuple[Any, str]:
    """The JSON Schema ``text`` compiled for clean records (native/src/schema.rs), or None
    and why not: outside the subset Rust checks exactly as fastjsonschema, or no module."""
    if _native is None or not hasattr(_native, "Schema"):
        return None, "no compiled module"
    try:
        return _native.Schema(text), ""
    except ValueError as exc:
        return None, str(exc)


def check_batch(
    values: Sequence[bytes | None],
    ext: Extraction,
    schemas: Sequence[Any] = (),
    wants: Sequence[int] = (),
    typed: Sequence[str] = (),
) -> Checked | None:
    """The checker's columns for ``values`` (None in it: a record Python must judge), or
    None when there is no compiled module. ``schemas`` (from :func:`compile_schema`) and
    ``wants`` (per value, a bit mask over them): which of them each clean record passes.
    ``typed``: distinct top-level fields to decode into columns for the clean records."""
    n = len(values)
    if _native is None:
        count("python: no compiled module", n)
        return None
    clean, providers, instruments, seqs, origins, passed, columns = _native.check_records(
        values,
        (ext.provider_field, ext.instrument_field, ext.seq_field, ext.origin_field),
        _NS_PER_UNIT.get(ext.origin_unit, 0),  # 0: iso8601 origins are read in Python
        ext.max_message_bytes,
        ext.max_name_chars,
        list(schemas),
        list(wants),
        list(typed),
    )
    ok = clean.count(1)
    count("native", ok)
    count("python: the checker is not sure", n - ok)
    # A copy: the Python path writes its own rows' origins into it.
    origin_ns = np.frombuffer(origins, np.int64).copy()
    fields = {
        name: Typed(
            # a copy: the caller marks rows it reads itself after all
            np.frombuffer(kinds, np.uint8).copy(),
            np.frombuffer(numbers, "<f8"),
            np.frombuffer(integers, "<i8"),
            texts,
        )
        for name, (kinds, numbers, integers, texts) in zip(typed, columns, strict=True)
    }
    bits = np.frombuffer(passed, "<u8")
    return Checked(
        clean,
        providers,
        instruments,
        seqs,
        origin_ns,
        bits if len(bits) == n else np.zeros(n, np.uint64),
        fields,
    )
