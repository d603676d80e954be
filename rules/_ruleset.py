"""Rule files compiled into checks, and the verdict for each record.

A batch meets the checks in two passes. Record by record: size, decoding (JSON, or Avro
for an Avro contract's topics), finiteness, origin time, the contract (JSON Schema, its
version chosen per record); a record failing here stops. Then column by column over the
whole batch: every compiled stateless rule, then the stateful ones, each giving a column of
failures; all of them are evaluated, so a dead letter can list each rule the record broke.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import fastjsonschema
import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from stampline.rules import _checker
from stampline.rules._columns import (
    MISSING,
    T_UNREAD,
    UNREAD,
    BoolArray,
    Columns,
    FloatArray,
    Payloads,
    Typed,
    as_strings,
    get_field,
)
from stampline.rules._contract_check import NOT_CERTAIN, contract_check
from stampline.rules._contracts import CompiledContract, Headers, compile_json_schema, schema_reason
from stampline.rules._files import (
    DivergenceRule,
    SchemaRule,
    Scope,
    SequenceRule,
    StaleRule,
    StateConfig,
    read_rule_file,
)
from stampline.rules._keys import KeyIndex
from stampline.rules._origin import OriginUnit, origin_ns
from stampline.rules._stateful import DivergenceCheck, GapEvent, SequenceCheck, StaleCheck
from stampline.rules._stateless import TEMPLATE_SAMPLES, Check, Reason, compile_stateless, fill
from stampline.rules._verdict import Failure, Verdict
from stampline.rules.exceptions import RuleFileError

log = logging.getLogger("stampline.rules")

# Built-in checks every record meets before any rule file applies.
SIZE_RULE = ("record.size", 1)
DECODE_RULE = ("record.decode", 1)
NON_FINITE_RULE = ("record.non_finite", 1)
ORIGIN_RULE = ("record.origin", 1)
IDENTITY_RULE = ("record.identity", 1)
DUPLICATE_KEYS_RULE = ("record.duplicate_keys", 1)
BUILTIN_RULES = (
    SIZE_RULE,
    DECODE_RULE,
    NON_FINITE_RULE,
    ORIGIN_RULE,
    IDENTITY_RULE,
    DUPLICATE_KEYS_RULE,
)


@dataclass(frozen=True, slots=True)
class Extraction:
    """Where a record keeps the fields the gate needs, and how big it may be."""

    origin_field: str = "ts"
    origin_unit: OriginUnit = "ms"
    provider_field: str = "provider"
    instrument_field: str = "instrument"
    seq_field: str = "seq"
    max_message_bytes: int = 1_048_576
    # Provider and instrument names longer than this are refused (record.identity): every
    # name becomes state, metric labels and trail rows, so its length bounds their memory.
    max_name_chars: int = 256
    # "reject": a JSON object with a repeated key is refused (record.duplicate_keys), since
    # consumers disagree on which value wins; "allow": the last one wins, as in orjson.
    duplicate_keys: Literal["reject", "allow"] = "reject"


@dataclass(slots=True)
class CompiledRule:
    """A rule ready to run over a batch: a vectorised check, or a stateful one."""

    id: str
    version: int
    kind: str
    severity: str
    shadow: bool
    scope: Scope
    check: Check | None = None
    reason: Reason | None = None
    stateful: SequenceCheck | StaleCheck | DivergenceCheck | None = None
    spec: Any = None
    path: Path | None = None  # the schema file of a schema rule
    fields: tuple[str, ...] = ()  # the fields its reasons quote


@dataclass(slots=True)
class RuleStats:
    """Counts since the rule set was loaded: rows each rule saw, and rows it failed."""

    evaluated: Counter[tuple[str, int, bool]] = field(default_factory=Counter)
    violations: Counter[tuple[str, int, bool]] = field(default_factory=Counter)
    rule_errors: Counter[str] = field(default_factory=Counter)
    events: int = 0


@dataclass(slots=True)
class BatchResult:
    """Verdicts for a batch, kept as columns until someone asks for rows."""

    n: int
    early: dict[int, Failure]  # rows that failed before the columnar rules
    outcomes: list[tuple[CompiledRule, BoolArray, dict[int, str]]]
    identity: tuple[Any, Any, Any]  # provider, instrument, seq per row: lists or arrays
    origin_ns: Any
    payloads: Payloads | None = None
    columns: Columns | None = None  # what the rules read (evaluate_records)

    def numbers(self, field: str) -> FloatArray:
        """A top-level field per row as a float where it is a JSON number (booleans are
        not) in a payload that passed: NaN everywhere else. From the checker's columns where
        it typed the field (``evaluate_records(numbers=...)``), else from the payloads."""
        if self.columns is None or self.payloads is None:
            return np.full(self.n, np.nan)
        values, ok, _bad = self.columns.numeric(field)
        out = np.where(ok, values, np.nan)
        out[self.payloads.absent()] = np.nan
        return out

    def failing(self, row: int) -> list[Failure]:
        """Every failure of ``row`` in rule order (early failures first)."""
        if row in self.early:
            return [self.early[row]]
        return [
            Failure(r.id, r.version, reasons[row], _severity(r, reasons[row]), r.shadow)
            for r, mask, reasons in self.outcomes
            if mask[row]
        ]

    def failures(self) -> dict[int, list[Failure]]:
        """``failing(row)`` of every row that broke any rule, in row order: rule by rule, so
        a batch with few failures costs a few calls per rule rather than one per row and
        rule."""
        found: dict[int, list[Failure]] = {}
        early = self.early
        for r, mask, reasons in self.outcomes:
            for row in mask.nonzero()[0].tolist():
                if row not in early:
                    reason = reasons[row]
                    failure = Failure(r.id, r.version, reason, _severity(r, reason), r.shadow)
                    found.setdefault(row, []).append(failure)
        for row, failure in early.items():
            found[row] = [failure]
        return {row: found[row] for row in sorted(found)}

    def verdicts(self) -> list[Verdict]:
        providers, instruments = as_strings(self.identity[0]), as_strings(self.identity[1])
        seqs = [int(s) for s in self.identity[2]]
        bad = np.zeros(self.n, np.bool_)
        for _r, mask, _reasons in self.outcomes:
            bad |= mask
        out = []
        for row in range(self.n):
            failures = self.failing(row) if (bad[row] or row in self.early) else []
            out.append(
                Verdict(
                    tuple(f for f in failures if f.severity == "reject" and not f.shadow),
                    int(self.origin_ns[row]),
                    providers[row],
                    instruments[row],
                    seqs[row],
                    payload=self.payloads[row] if self.payloads is not None else None,
                    warnings=tuple(f for f in failures if f.severity == "warn" and not f.shadow),
                    observed=tuple(f for f in failures if f.severity == "observe" or f.shadow),
                )
            )
        return out


_RAISED = "rule raised "


def _severity(rule: CompiledRule, reason: str) -> Any:
    # A rule that raised rejects its record whatever its severity: the record was not checked.
    return "reject" if reason.startswith(_RAISED) and not rule.shadow else rule.severity


class RuleSet:
    """An immutable, compiled set of rules. Build with :meth:`load`."""

    def __init__(
        self,
        extraction: Extraction,
        contracts: Sequence[CompiledContract] = (),
        rules: Sequence[CompiledRule] = (),
        state: StateConfig | None = None,
        index: KeyIndex | None = None,
        instruments: KeyIndex | None = None,
        rule_files: Mapping[tuple[str, int], str] | None = None,
    ) -> None:
        self.extraction = extraction
        # (rule or contract id, version) -> SHA-256 of the rule file it was loaded from, as
        # read then: every verdict can name the exact file it was made under. Built-in rules
        # have no file and no entry.
        self.rule_files: Mapping[tuple[str, int], str] = dict(rule_files or {})
        self.contracts = tuple(contracts)
        # Schema rules check whole records one by one; the rest run over columns.
        self._all = tuple(rules)
        self._schemas = tuple(r for r in rules if r.kind == "schema")
        self.rules = tuple(r for r in rules if r.kind != "schema")
        # The order _run takes them in (stateless first), and each one's scope as the place
        # of its first equal among them: computed once, not hashed per rule and batch (a
        # scope is a pydantic model, whose hash is worked out anew at each call).
        self._order = sorted(
            range(len(self.rules)), key=lambda i: self.rules[i].stateful is not None
        )
        distinct: dict[Scope, int] = {}
        self._scope_at = [distinct.setdefault(r.scope, len(distinct)) for r in self.rules]
        self.state_config = state or StateConfig()
        cfg = self.state_config
        # "is None", not "or": an empty KeyIndex is falsy and the rules already hold this one
        self.index = index if index is not None else KeyIndex(cfg.max_keys, cfg.ttl)
        self.instruments = (
            instruments if instruments is not None else KeyIndex(cfg.max_keys, cfg.ttl)
        )
        self.stats = RuleStats()
        self._topic_contract: dict[str, CompiledContract | None] = {}
        # The contract check compiled for clean records (rules/_contract_check.py), built
        # anew with every rule set, so a reload compiles its schemas again.
        self._compiled_contract = contract_check([r.spec for r in self._schemas], self.contracts)
        # The top-level fields the columnar rules read: the compiled checker types them, so a
        # clean record's payload need not be read at all (rules/_columns.py).
        self._typed = _rule_fields(self.rules)

    @property
    def current(self) -> RuleSet:
        """This rule set: lets a gate hold a RuleSet or a reloading holder alike."""
        return self

    @classmethod
    def load(
        cls,
        files: Iterable[Path],
        extraction: Extraction | None = None,
        previous: RuleSet | None = None,
    ) -> RuleSet:
        """Compile every rule of ``files``. Stateful rules unchanged since ``previous`` keep
        its per-key state.

        Raises:
            RuleFileError: a file, or a schema it names, is unreadable or invalid; or two
                files define the same rule id.
        """
        ext = extraction or Extraction()
        contracts: list[CompiledContract] = []
        specs: list[tuple[Path, Any]] = []
        seen: dict[tuple[str, bool], Path] = {}
        state: StateConfig | None = None
        builtin = {r for r, _ in BUILTIN_RULES}
        hashes: dict[tuple[str, int], str] = {}
        for path in map(Path, files):
            parsed, sha256 = read_rule_file(path)
            for c in parsed.contracts:
                hashes.update(((c.id, v), sha256) for v in c.versions)
            hashes.update(((r.id, r.version), sha256) for r in parsed.rules)
            if "state" in parsed.model_fields_set:
                state = parsed.state
            for contract in parsed.contracts:
                if (contract.id, False) in seen or contract.id in builtin:
                    where = seen.get((contract.id, False), "the built-in rules")
                    raise RuleFileError(f"{path}: id {contract.id!r} is also defined in {where}")
                seen[(contract.id, False)] = path
                contracts.append(CompiledContract(contract))
            for rule in parsed.rules:
                if (rule.id, rule.shadow) in seen or rule.id in builtin:
                    where = seen.get((rule.id, rule.shadow), "the built-in rules")
                    raise RuleFileError(f"{path}: rule id {rule.id!r} is also defined in {where}")
                seen[(rule.id, rule.shadow)] = path
                specs.append((path, rule))
        live = {r.id: r.version for _p, r in specs if not r.shadow}
        for path, rule in specs:
            if rule.shadow and live.get(rule.id) == rule.version:
                raise RuleFileError(
                    f"{path}: shadow rule {rule.id} must have another version than the live one"
                )
        state = state or StateConfig()
        stateful = [r for _p, r in specs if isinstance(r, _STATEFUL)]
        reuse = (
            previous is not None
            and previous.state_config == state
            and [r.spec for r in previous.rules if r.stateful is not None] == stateful
        )
        index = previous.index if reuse and previous else KeyIndex(state.max_keys, state.ttl)
        instruments = (
            previous.instruments if reuse and previous else KeyIndex(state.max_keys, state.ttl)
        )
        old = {}
        if reuse and previous is not None:
            old = {(r.id, r.version, r.shadow): r.stateful for r in previous.rules}
        compiled = [
            _compile(path, rule, index, instruments, old.get((rule.id, rule.version, rule.shadow)))
            for path, rule in specs
        ]
        return cls(ext, contracts, compiled, state, index, instruments, hashes)

    @property
    def rule_ids(self) -> list[tuple[str, int]]:
        """(id, version) of every rule, built-in ones first."""
        return [
            *BUILTIN_RULES,
            *((c.id, v) for c in self.contracts for v in sorted(c.contract.versions)),
            *((r.id, r.version) for r in self._all),
        ]

    def evaluate(
        self, value: bytes | None, now_ns: int, topic: str = "", headers: Headers | None = None
    ) -> Verdict:
        """The verdict for one record's value. Never raises: a broken rule fails the record."""
        return self.evaluate_batch([value], now_ns, [topic], [headers])[0]

    def evaluate_batch(
        self,
        values: Sequence[bytes | None],
        now_ns: int,
        topics: Sequence[str] | None = None,
        headers: Sequence[Headers | None] | None = None,
    ) -> list[Verdict]:
        """One verdict per value, in order."""
        return self.evaluate_records(values, now_ns, topics, headers).verdicts()

    def evaluate_records(
        self,
        values: Sequence[bytes | None],
        now_ns: int,
        topics: Sequence[str] | None = None,
        headers: Sequence[Headers | None] | None = None,
        refused: Sequence[int] = (),
        numbers: Sequence[str] = (),
    ) -> BatchResult:
        """Columnar verdicts for a batch of raw records. ``refused``: rows the caller refuses
        whatever the rules say (the gate: oversized headers, broken stamps); they are judged
        as usual but move no stateful rule's state but a sequence rule's. ``numbers``:
        top-level fields the caller will read with :meth:`BatchResult.numbers` (the gate's
        trail price), decoded with the rules' own."""
        n = len(values)
        topics = topics if topics is not None else [""] * n
        early: dict[int, Failure] = {}
        payloads: list[dict[str, Any] | None] = [None] * n
        # What sequence rules read: the payload, or what could be read of a refused record
        # (a NaN price): it arrived, so its number is not missing.
        arrived: list[dict[str, Any] | None] = [None] * n
        ext = self.extraction
        # The compiled checker's columns (rules/_checker.py): its clean records skip the
        # duplicate-key count and the field extraction; every other record, and every record
        # when the module is absent, takes the Python path below, which is the reference.
        check_contract = bool(self._schemas or self.contracts)
        compiled = self._compiled_contract
        wants: list[int] = []
        if check_contract and compiled.schemas and _checker.available():
            by_topic = {t: compiled.wants(self._contract_for(t)) for t in set(topics)}
            wants = [by_topic[t] for t in topics]
        typed = [*self._typed, *(f for f in numbers if "." not in f and f not in self._typed)]
        checked = _checker.check_batch(
            self._checkable(values, topics), ext, compiled.schemas if wants else (), wants, typed
        )
        # What _contract would check, per topic where the record does not choose it.
        needs = {t: compiled.topic_need(self._contract_for(t)) for t in set(topics)}
        contract_checked = 0
        contract_python: Counter[str] = Counter()
        fields: dict[str, Typed] = {}
        if checked is not None:
            fields = checked.typed
            clean = checked.clean
            providers, instruments, seqs = checked.providers, checked.instruments, checked.seqs
            origins = checked.origins
            # the clean rows whose origin Python converts (a set: a NumPy scalar per row costs)
            python_origin = set((origins == _checker.FROM_PYTHON).nonzero()[0].tolist())
            _checker.count("native, origin from python", len(python_origin))
            _checker.count("native, seq from python", seqs.count(_checker.FROM_PYTHON))
        else:
            clean = bytes(n)
            providers, instruments, seqs = [""] * n, [""] * n, [-1] * n
            origins = np.zeros(n, np.int64)
            python_origin = set()
        from_python = _checker.FROM_PYTHON
        # The records the checker settled, found for the batch at once: clean, with nothing
        # to read from the payload (the rules read the checker's columns: it is read only if
        # something asks for it, see Payloads), and certain to pass every schema their
        # topic's contract needs. Only the others take the loop below, the reference.
        settled = np.zeros(n, np.bool_)
        if checked is not None and fields:
            need, known = _need_bits(topics, needs if check_contract else dict.fromkeys(needs, 0))
            settled = np.frombuffer(clean, np.uint8).astype(np.bool_)
            settled &= known & (checked.passed & need == need)
            settled &= checked.origins != from_python
            if seqs.count(from_python):
                settled &= np.fromiter((q != from_python for q in seqs), np.bool_, n)
            contract_checked = int(np.count_nonzero(need[settled]))
        unread: tuple[Any, Any] = (None, UNREAD)
        payloads = list(map(unread.__getitem__, settled.view(np.uint8).tobytes()))
        arrived = payloads.copy()
        # .nonzero()[0] rather than np.flatnonzero throughout the rules: the same rows without
        # its Python wrappers (about 1 µs a call, a dozen calls a batch, in every small batch)
        slow = (~settled).nonzero()[0].tolist()
        for i in slow:
            value = values[i]
            hdrs = headers[i] if headers is not None else None
            if clean[i]:
                payload = _clean_payload(value)
                if payload is not None:
                    failure = None
                    if seqs[i] == from_python:
                        seqs[i] = _identity(payload, ext)[2]
                    if i in python_origin:
                        origins[i], failure = _origin(payload, ext)
                    if failure is None and check_contract:
                        # Skipped when the compiled check says the record certainly passes
                        # every schema _contract would run; else _contract, the reference.
                        need_i = needs[topics[i]]
                        if need_i is None:
                            need_i = compiled.need(self._contract_for(topics[i]), hdrs, payload)
                        passed = int(checked.passed[i]) if checked is not None else 0
                        if type(need_i) is int and passed & need_i == need_i:
                            contract_checked += need_i != 0  # 0: nothing to check
                        else:
                            contract_python[need_i if type(need_i) is str else NOT_CERTAIN] += 1
                            failure = self._contract(payload, topics[i], hdrs)
                    if failure is not None:
                        early[i] = failure
                    payloads[i] = arrived[i] = payload
                    continue
                # orjson refused what the checker passed: never seen; the reference judges
                _checker.count("python: orjson refused a record the checker passed")
                providers[i], instruments[i], seqs[i], origins[i] = "", "", -1, 0
                for column in fields.values():
                    column.kinds[i] = T_UNREAD
            payload, failure, readable = self._decode(value, topics[i], hdrs)
            if readable is not None:
                # Identity is read wherever it can be, also from a refused record.
                providers[i], instruments[i], seqs[i] = _identity(readable, ext)
                if failure is None:
                    failure = _long_name(providers[i], instruments[i], ext)
                    if failure is not None:
                        payload = None  # its names must not become rule state
                        readable = None
                arrived[i] = readable
                providers[i] = providers[i][: ext.max_name_chars]
                instruments[i] = instruments[i][: ext.max_name_chars]
            if payload is not None:
                origins[i], origin_failure = _origin(payload, ext)
                failure = failure or origin_failure
                if failure is None:
                    failure = self._contract(payload, topics[i], hdrs)
            if failure is not None:
                early[i] = failure
            payloads[i] = payload
        _checker.count("native, contract checked", contract_checked)
        for path, count in contract_python.items():
            _checker.count(path, count)
        # A record refused by its contract, or whose payload could be read only leniently,
        # still arrived: sequence rules count it (as `completeness` and `providers compare`
        # do). Every other rule sees only the records that passed decoding and contract.
        # A settled record is both decoded and alive; the others say so themselves.
        seen = payloads.copy()
        decoded, alive = settled.copy(), settled.copy()
        for i in slow:
            alive[i] = payloads[i] is not None
            decoded[i] = arrived[i] is not None
            if not alive[i]:
                seen[i] = arrived[i]
        cols = Columns(
            n,
            payloads=Payloads(seen, values),
            topics=topics,
            origin_ns=origins,
            keys=(providers, instruments),
            typed=fields,
        )
        alive[list(early)] = False
        result = self._run(cols, alive, now_ns, decoded, refused)
        for i in early:
            payloads[i] = None  # a verdict carries only a payload that passed its contract
        identity = (providers, instruments, seqs)
        return BatchResult(n, early, result, identity, origins, Payloads(payloads, values), cols)

    def evaluate_table(self, table: pa.Table, now_ns: int, topic: str = "") -> BatchResult:
        """Columnar verdicts for records already decoded into an Arrow table.

        Only the columnar rules run: the table is taken to hold decoded, contract-checked
        records (the per-record stages belong to raw bytes).
        """
        n = table.num_rows
        ext = self.extraction

        def strings(name: str) -> pa.Array:
            if name not in table.column_names:
                return pa.nulls(n, pa.string())
            return table.column(name).combine_chunks()

        providers, instruments = strings(ext.provider_field), strings(ext.instrument_field)
        if ext.origin_field in table.column_names:
            factor = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}.get(ext.origin_unit, 1)
            raw = table.column(ext.origin_field).to_numpy(zero_copy_only=False)
            origins = np.asarray(raw, np.int64) * factor
        else:
            origins = np.zeros(n, np.int64)
        cols = Columns(
            n, table=table, topics=[topic] * n, origin_ns=origins, keys=(providers, instruments)
        )
        seqs = cols.integers(ext.seq_field)
        outcomes = self._run(cols, np.ones(n, np.bool_), now_ns)
        return BatchResult(n, {}, outcomes, (providers, instruments, seqs), origins)

    def _run(
        self,
        cols: Columns,
        alive: BoolArray,
        now_ns: int,
        decoded: BoolArray | None = None,
        refused_rows: Sequence[int] = (),
    ) -> list[tuple[CompiledRule, BoolArray, dict[int, str]]]:
        done: dict[int, tuple[CompiledRule, BoolArray, dict[int, str]]] = {}
        self.stats.events += cols.n
        slots = None
        scopes: dict[int, BoolArray] = {}
        # The stateless rules first: a record one of them refuses moves no stateful rule's
        # state (a price dated a day ahead must not break a divergence run, nor a negative
        # price enter the median), except a sequence rule's: the record arrived.
        refused = np.zeros(cols.n, np.bool_)
        refused[list(refused_rows)] = True
        for at in self._order:
            rule = self.rules[at]
            scope = self._scope_at[at]
            if scope not in scopes:
                scopes[scope] = alive & _scope_mask(rule.scope, cols)
            active = scopes[scope]
            if isinstance(rule.stateful, SequenceCheck) and decoded is not None:
                active = decoded & _scope_mask(rule.scope, cols)
            elif rule.stateful is not None:
                active = active & ~refused
            if rule.stateful is not None:
                if slots is None:
                    slots = self.index.slots(*cols.identity_arrays(), now_ns=now_ns)
                mask, reasons = self._stateful(rule, cols, active, slots, now_ns)
            else:
                mask, reasons = self._stateless(rule, cols, active, now_ns)
                if rule.severity == "reject" and not rule.shadow:
                    refused |= mask
            key = (rule.id, rule.version, rule.shadow)
            self.stats.evaluated[key] += int(np.count_nonzero(active))
            self.stats.violations[key] += len(reasons)
            done[at] = (rule, mask, reasons)
        outcomes = [done[at] for at in range(len(self.rules))]  # in the files' order
        if slots is not None:
            self.index.expire(now_ns)
            self.instruments.expire(now_ns)
        return outcomes

    def _stateless(
        self, rule: CompiledRule, cols: Columns, active: BoolArray, now: int
    ) -> tuple[BoolArray, dict[int, str]]:
        assert rule.check is not None
        assert rule.reason is not None
        try:
            mask = rule.check(cols, now) & active
        except Exception:  # find the rows that break it, one by one; the rest are judged
            mask = np.zeros(cols.n, np.bool_)
            reasons = {}
            for row in active.nonzero()[0].tolist():
                one = _one_row(cols, row)
                try:
                    mask[row] = bool(rule.check(one, now)[0])
                except Exception as exc:
                    reasons[row] = self._raised(rule, exc)
                    mask[row] = True
            for row in mask.nonzero()[0].tolist():
                if row not in reasons:
                    reasons[row] = self._reason(rule, cols, row, now)
            return mask, reasons
        failing = mask.nonzero()[0].tolist()
        cols.prefetch(rule.fields, failing)
        return mask, {r: self._reason(rule, cols, r, now) for r in failing}

    def _reason(self, rule: CompiledRule, cols: Columns, row: int, now: int) -> str:
        assert rule.reason is not None
        try:
            return rule.reason(cols, row, now)
        except Exception as exc:
            return self._raised(rule, exc)

    def _stateful(
        self, rule: CompiledRule, cols: Columns, active: BoolArray, slots: Any, now: int
    ) -> tuple[BoolArray, dict[int, str]]:
        assert rule.stateful is not None
        try:
            return rule.stateful.evaluate(cols, active, slots, now)
        except Exception as exc:  # state may be half-updated: every row it judged fails
            reason = self._raised(rule, exc)
            return active.copy(), dict.fromkeys(active.nonzero()[0].tolist(), reason)

    def _checkable(
        self, values: Sequence[bytes | None], topics: Sequence[str]
    ) -> Sequence[bytes | None]:
        """``values`` for the checker: None for records it must leave to the Python path
        (those of a topic with an Avro contract, which are not JSON)."""
        if not _checker.available() or not any(c.avro for c in self.contracts):
            return values
        avro = {t for t in set(topics) if (c := self._contract_for(t)) is not None and c.avro}
        _checker.count("python: an Avro contract", sum(t in avro for t in topics))
        return [None if t in avro else v for v, t in zip(values, topics, strict=True)]

    def _raised(self, rule: CompiledRule, exc: Exception) -> str:
        self.stats.rule_errors[rule.id] += 1
        log.warning("rule raised rule=%s version=%d error=%r", rule.id, rule.version, exc)
        return f"{_RAISED}{type(exc).__name__}: {exc}"

    def _decode(
        self, value: bytes | None, topic: str, headers: Headers | None
    ) -> tuple[dict[str, Any] | None, Failure | None, dict[str, Any] | None]:
        """The payload (None when refused), the failure, and whatever object could be read
        for identity fields even when the payload is refused."""
        ext = self.extraction
        if value is None or len(value) == 0:
            why = "empty value (a tombstone or an empty message)"
            return None, Failure(*DECODE_RULE, why), None
        if len(value) > ext.max_message_bytes:
            why = f"message is {len(value):,} bytes, over the limit of {ext.max_message_bytes:,}"
            return None, Failure(*SIZE_RULE, why), None
        contract = self._contract_for(topic)
        if contract is not None and contract.avro:
            record, failure = contract.decode_avro(value, headers)
            if failure is not None:
                return None, Failure(*DECODE_RULE, f"{contract.id}: {failure.reason}"), None
            return record, None, record
        payload, decoded, readable = _decode_json(value)
        # A record cannot hold more levels than it has brackets: most need no walk at all.
        if payload is not None and value.count(b"{") + value.count(b"[") > _checker.MAX_DEPTH:
            depth = _depth(payload)
            if depth > _checker.MAX_DEPTH:
                why = f"JSON nested {depth:,} levels deep, over the limit of {_checker.MAX_DEPTH}"
                return None, Failure(*DECODE_RULE, why), payload
        if payload is not None and ext.duplicate_keys == "reject":
            repeated = _repeated_key(value, payload)
            if repeated is not None:
                why = f"key {repeated!r} appears more than once in one JSON object"
                return None, Failure(*DUPLICATE_KEYS_RULE, why), payload
        return payload, decoded, readable

    def _contract(
        self, payload: dict[str, Any], topic: str, headers: Headers | None
    ) -> Failure | None:
        for rule in self._schemas:
            if rule.scope.everything or rule.scope.matches(
                topic, *_identity(payload, self.extraction)[:2]
            ):
                try:
                    rule.spec.validate(payload)
                except fastjsonschema.JsonSchemaValueException as exc:
                    return Failure(rule.id, rule.version, schema_reason(exc))
        contract = self._contract_for(topic)
        if contract is not None and not contract.avro:
            failure = contract.check_json(payload, headers)
            if failure is not None:
                return Failure(contract.id, failure.version, failure.reason)
        return None

    def _contract_for(self, topic: str) -> CompiledContract | None:
        if topic not in self._topic_contract:
            self._topic_contract[topic] = next(
                (c for c in self.contracts if c.contract.matches(topic)), None
            )
        return self._topic_contract[topic]

    def schema_files(self) -> set[Path]:
        """Every schema file the rules and contracts read."""
        files = {r.path for r in self._schemas if r.path is not None}
        for contract in self.contracts:
            files.update(contract.contract.versions.values())
        return files

    def drain_events(self) -> list[GapEvent]:
        """Gap-open and gap-close events since the last call."""
        events: list[GapEvent] = []
        for rule in self.rules:
            if isinstance(rule.stateful, SequenceCheck):
                events.extend(rule.stateful.events)
                rule.stateful.events.clear()
        return events

    def state_size(self) -> dict[str, int]:
        """Keys held by stateful rules and the bytes they take."""
        return {
            "keys": len(self.index),
            "open_gaps": sum(
                r.stateful.open_gaps() for r in self.rules if isinstance(r.stateful, SequenceCheck)
            ),
            "instruments": len(self.instruments),
            "bytes": self.index.state_bytes() + self.instruments.state_bytes(),
            "expired": self.index.expired,
            "evicted": self.index.evicted,
        }


_STATEFUL = (SequenceRule, StaleRule, DivergenceRule)


def _compile(
    path: Path,
    rule: Any,
    index: KeyIndex,
    instruments: KeyIndex,
    kept: SequenceCheck | StaleCheck | DivergenceCheck | None,
) -> CompiledRule:
    base = CompiledRule(rule.id, rule.version, rule.kind, rule.severity, rule.shadow, rule.scope)
    if isinstance(rule, SchemaRule):
        base.spec = compile_json_schema(rule.id, rule.schema_path)
        base.path = rule.schema_path
        return base
    base.spec = rule
    if isinstance(rule, _STATEFUL):
        if kept is not None:
            base.stateful = kept
        elif isinstance(rule, SequenceRule):
            base.stateful = SequenceCheck(rule, index)
        elif isinstance(rule, StaleRule):
            base.stateful = StaleCheck(rule, index)
        else:
            base.stateful = DivergenceCheck(rule, index, instruments)
        return base
    _check_template(path, rule.id, rule.reason, **TEMPLATE_SAMPLES[rule.kind])
    names = (getattr(rule, a, None) for a in ("field", "left", "right"))
    base.fields = tuple(n for n in names if isinstance(n, str))
    base.check, base.reason = compile_stateless(rule)
    return base


def _rule_fields(rules: Sequence[CompiledRule]) -> list[str]:
    """The distinct top-level fields the columnar rules read, in rule order."""
    names: dict[str, None] = {}
    for rule in rules:
        for attr in ("field", "left", "right", "fields"):
            value = getattr(rule.spec, attr, None)
            for name in value if isinstance(value, tuple | list) else (value,):
                if isinstance(name, str) and "." not in name:
                    names[name] = None
    return list(names)


def _check_template(path: Path, rule_id: str, template: str | None, **sample: Any) -> None:
    """Fail at load, not on some record later, if a reason template cannot be filled."""
    if template is None:
        return
    try:
        fill(template, **sample)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise RuleFileError(
            f"{path}: rule {rule_id}: reason template {template!r} cannot be filled: {exc}"
        ) from None


def _scope_mask(scope: Scope, cols: Columns) -> BoolArray:
    if scope.everything:
        return np.ones(cols.n, np.bool_)
    providers, instruments = cols.identity()
    verdict: dict[tuple[str, str, str], bool] = {}
    out = np.empty(cols.n, np.bool_)
    for i, key in enumerate(zip(cols.topics, providers, instruments, strict=True)):
        hit = verdict.get(key)
        if hit is None:
            hit = verdict[key] = scope.matches(*key)
        out[i] = hit
    return out


def _one_row(cols: Columns, row: int) -> Columns:
    providers, instruments = cols.identity()
    payloads = cols._payloads  # noqa: SLF001  (same module family: a one-row view)
    return Columns(
        1,
        payloads=[payloads[row]] if payloads is not None else None,
        table=cols._table.slice(row, 1) if cols._table is not None else None,  # noqa: SLF001
        topics=[cols.topics[row]],
        origin_ns=cols.origin_ns[row : row + 1],
        keys=([providers[row]], [instruments[row]]),
    )


def _decode_json(
    value: bytes,
) -> tuple[dict[str, Any] | None, Failure | None, dict[str, Any] | None]:
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN and Infinity; the standard library reads them, which tells a
        # provider's non-finite number apart from bytes that are simply not JSON.
        try:
            lenient = json.loads(value)
        except (ValueError, RecursionError):
            return None, Failure(*DECODE_RULE, f"not valid JSON: {exc}"), None
        path = _non_finite_path(lenient)
        readable = lenient if isinstance(lenient, dict) else None
        if path is not None:
            why = f"field {path!r} is not a finite number"
            return None, Failure(*NON_FINITE_RULE, why), readable
        return None, Failure(*DECODE_RULE, f"not valid JSON: {exc}"), readable
    if not isinstance(payload, dict):
        why = f"JSON {type(payload).__name__} where an object was expected"
        return None, Failure(*DECODE_RULE, why), None
    return payload, None, payload


# A key's closing quote, then optional white space and the colon. Every key in a JSON text
# matches once; a string value matches only where it holds an escaped quote before a colon.
_KEY_END = re.compile(rb'"\s*:')


def _repeated_key(value: bytes, payload: dict[str, Any]) -> str | None:
    """A key that appears twice in one object of the JSON text ``value``, else None.

    orjson keeps the last of repeated keys and says nothing. Counting key ends in the text
    (an upper bound on the keys written) against keys parsed (after repeats collapsed) is
    exact when they agree, and costs about a microsecond; only when they differ is the text
    parsed again, slowly, to find the repeat (or to find the count was a string's colon).
    """
    if len(_KEY_END.findall(value)) == _count_keys(payload):
        return None
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for k, _v in items:
            if k in seen and not repeated:
                repeated.append(k)
            seen.add(k)
        return dict(items)

    try:
        json.loads(value, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return repeated[0][:200] if repeated else None


def _depth(payload: dict[str, Any]) -> int:
    """How many levels of objects and arrays ``payload`` holds (itself is 1), walked without
    recursion: the record it came from may be nested deeper than Python's stack."""
    deepest = 1
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        children = value.values() if type(value) is dict else value
        stack.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)
    return deepest


def _count_keys(value: dict[str, Any] | list[Any]) -> int:
    """Keys in every object of a value orjson made (exact ``dict`` and ``list`` types: a
    ``type`` test is several times cheaper than ``isinstance`` here, and this runs per record)."""
    if type(value) is dict:
        n = len(value)
        items: Iterable[Any] = value.values()
    else:
        n, items = 0, value
    for v in items:
        if type(v) is dict or type(v) is list:
            n += _count_keys(v)
    return n


def _long_name(provider: str, instrument: str, ext: Extraction) -> Failure | None:
    for field_name, name in ((ext.provider_field, provider), (ext.instrument_field, instrument)):
        if len(name) > ext.max_name_chars:
            why = (
                f"field {field_name!r} is {len(name):,} characters, over the limit of "
                f"{ext.max_name_chars:,}"
            )
            return Failure(*IDENTITY_RULE, why)
    return None


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


def _need_bits(
    topics: Sequence[str], needs: Mapping[str, object]
) -> tuple[npt.NDArray[np.uint64], BoolArray]:
    """Per record, the bits of the compiled schemas its topic's contract needs, and whether
    they are known for the topic (they are not where a record chooses its contract, or where
    a schema has no compiled check: such records take the reference)."""
    n = len(topics)

    def known(need: object) -> bool:
        return type(need) is int and 0 <= need < 2**64

    if len(needs) == 1:
        (need,) = needs.values()
        ok = known(need)
        return np.full(n, need if ok else 0, np.uint64), np.full(n, ok)
    bits = {t: need if known(need) else 0 for t, need in needs.items()}
    oks = {t: known(need) for t, need in needs.items()}
    return (
        np.fromiter(map(bits.__getitem__, topics), np.uint64, n),
        np.fromiter(map(oks.__getitem__, topics), np.bool_, n),
    )


def _clean_payload(value: bytes | None) -> dict[str, Any] | None:
    """The payload of a record the checker called clean (None if orjson disagrees)."""
    try:
        payload = orjson.loads(value or b"")  # clean: never None nor empty
    except orjson.JSONDecodeError:
        return None
    return payload if type(payload) is dict else None


def _origin(payload: dict[str, Any], ext: Extraction) -> tuple[int, Failure | None]:
    """The origin in ns of a decoded payload (0 and the failure when it is refused)."""
    try:
        return origin_ns(get_field(payload, ext.origin_field), ext.origin_unit), None
    except (ValueError, TypeError) as exc:
        why = (
            "is missing"
            if get_field(payload, ext.origin_field) is MISSING
            else f"is invalid: {exc}"
        )
        return 0, Failure(*ORIGIN_RULE, f"origin field {ext.origin_field!r} {why}")


def _utf8(name: str) -> str:
    """``name`` as text UTF-8 can hold: a lone surrogate (``"\\ud800"``, which Python's json
    reads in a record refused but read leniently) shown as its escape, since the rule state,
    the trail and the headers are all UTF-8."""
    if name.isascii():
        return name
    try:
        name.encode()
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode()
    return name


def _identity(payload: dict[str, Any], ext: Extraction) -> tuple[str, str, int]:
    provider = payload.get(ext.provider_field)
    instrument = payload.get(ext.instrument_field)
    seq = payload.get(ext.seq_field)
    if isinstance(seq, float) and seq.is_integer():
        seq = int(seq)  # JSON Schema's "integer" admits 1.0; keep the number
    return (
        _utf8(provider) if isinstance(provider, str) else "",
        _utf8(instrument) if isinstance(instrument, str) else "",
        # The trail stores seq as Int64; anything else is "no sequence", not a crash later.
        seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63 else -1,
    )
