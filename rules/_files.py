"""The rule file format, validated with pydantic.

Version 1 has the kinds ``schema``, ``range`` and ``freshness``, every rule a reject.
Version 2 adds severities, scopes, shadow rules, topic contracts (JSON Schema or Avro,
versioned per record), the stateless kinds ``not_null``, ``enum``, ``regex``, ``compare``
and ``tick_size``, per-provider freshness windows, and the stateful kinds ``sequence``,
``stale`` and ``divergence``. A version-1 file reads unchanged under version 2.
"""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stampline._common import (
    YamlFileError,
    file_line,
    line_of,
    parse_duration_ns,
    read_yaml_file,
    shown_value,
)
from stampline.rules.exceptions import RuleFileError

RULE_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
Severity = Literal["reject", "warn", "observe"]
_V1_KINDS = frozenset({"schema", "range", "freshness"})
_V2_RULE_KEYS = frozenset({"severity", "scope", "shadow"})


def _duration(v: Any) -> int:
    return parse_duration_ns(v)


class Scope(BaseModel):
    """Which records a rule applies to: shell-style patterns, any one matching; empty = all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not (self.topics or self.providers or self.instruments)

    def matches(self, topic: str, provider: str, instrument: str) -> bool:
        return all(
            not patterns or any(fnmatchcase(value, p) for p in patterns)
            for patterns, value in (
                (self.topics, topic),
                (self.providers, provider),
                (self.instruments, instrument),
            )
        )


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RULE_ID_PATTERN, description="dotted, lower case, e.g. price.positive")
    version: int = Field(ge=1, description="bump on every change of meaning")
    description: str = ""
    reason: str | None = Field(
        default=None, description="template; {field}, {value}, {min}, {max} are filled in"
    )
    severity: Severity = "reject"
    scope: Scope = Scope()
    shadow: bool = Field(
        default=False, description="runs beside the live version of the same id, counted only"
    )


class SchemaRule(_Rule):
    """The record must match a JSON Schema contract."""

    kind: Literal["schema"]
    schema_path: Path = Field(alias="schema")


class RangeRule(_Rule):
    """A numeric field must lie within bounds. A missing field is left to the contract."""

    kind: Literal["range"]
    field: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False


class FreshnessRule(_Rule):
    """The origin time must lie within a window around the gate's clock, per provider."""

    kind: Literal["freshness"]
    max_past: int
    max_future: int
    providers: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="provider -> {max_past, max_future}"
    )

    @field_validator("max_past", "max_future", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> int:
        return _duration(v)

    @field_validator("providers", mode="before")
    @classmethod
    def _windows(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[Any, Any] = {}
        for name, window in v.items():
            if not isinstance(window, dict) or set(window) - {"max_past", "max_future"}:
                raise ValueError(f"provider {name!r}: give {{max_past, max_future}}")
            out[name] = (
                _duration(window.get("max_past", "0s")),
                _duration(window.get("max_future", "0s")),
            )
        return out


class NotNullRule(_Rule):
    """The field must be present and not null."""

    kind: Literal["not_null"]
    field: str = Field(min_length=1)


class EnumRule(_Rule):
    """The field must be one of ``values``. A missing field is left to ``not_null``."""

    kind: Literal["enum"]
    field: str = Field(min_length=1)
    values: tuple[str | int | float | bool, ...] = Field(min_length=1)


class RegexRule(_Rule):
    """A string field must contain a match of ``pattern`` (anchor it with ^ and $)."""

    kind: Literal["regex"]
    field: str = Field(min_length=1)
    pattern: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v


class CompareRule(_Rule):
    """Cross-field: ``left op right``, e.g. bid <= ask. Passes when either side is missing."""

    kind: Literal["compare"]
    left: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    right: str = Field(min_length=1)


class TickSizeRule(_Rule):
    """A price must be a whole multiple of the tick (within a billionth of a tick)."""

    kind: Literal["tick_size"]
    field: str = Field(min_length=1)
    tick: float = Field(gt=0)


class SequenceRule(_Rule):
    """Per key: sequence numbers go up by one; gaps, duplicates and late arrivals fail."""

    kind: Literal["sequence"]
    field: str = "seq"
    max_open_gaps: int = Field(default=16, ge=1, le=1024, description="per key, oldest dropped")


class StaleRule(_Rule):
    """Per key: the fields have not changed for ``max_updates`` updates or ``max_age``."""

    kind: Literal["stale"]
    fields: tuple[str, ...] = Field(min_length=1)
    max_updates: int | None = Field(default=None, ge=1)
    max_age: int | None = None

    @field_validator("max_age", mode="before")
    @classmethod
    def _age(cls, v: Any) -> int | None:
        return None if v is None else _duration(v)

    @model_validator(mode="after")
    def _one_limit(self) -> StaleRule:
        if self.max_updates is None and self.max_age is None:
            raise ValueError("give max_updates, max_age or both")
        return self


class DivergenceRule(_Rule):
    """A provider's price off the median of the other providers' by more than
    ``threshold_pct`` for at least ``sustain``; a single spike passes."""

    kind: Literal["divergence"]
    field: str = "price"
    threshold_pct: float = Field(gt=0)
    sustain: int
    align: int = Field(default=1_000_000_000, description="others' prices must be this recent")
    min_others: int = Field(default=1, ge=1)
    max_providers: int = Field(default=8, ge=2, le=64)

    @field_validator("sustain", "align", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> int:
        return _duration(v)


RuleSpec = Annotated[
    SchemaRule
    | RangeRule
    | FreshnessRule
    | NotNullRule
    | EnumRule
    | RegexRule
    | CompareRule
    | TickSizeRule
    | SequenceRule
    | StaleRule
    | DivergenceRule,
    Field(discriminator="kind"),
]


class VersionFrom(BaseModel):
    """Where a record says which contract version it follows: a header or a payload field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str | None = None
    field: str | None = None

    @model_validator(mode="after")
    def _one(self) -> VersionFrom:
        if (self.header is None) == (self.field is None):
            raise ValueError("give exactly one of header or field")
        return self


class Contract(BaseModel):
    """The schema versions records on matching topics must follow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RULE_ID_PATTERN)
    topics: tuple[str, ...] = Field(default=("*",), min_length=1)
    format: Literal["json", "avro"] = "json"
    version_from: VersionFrom | None = None
    default_version: int | None = Field(default=None, ge=1)
    versions: dict[int, Path] = Field(min_length=1)

    @model_validator(mode="after")
    def _avro_header(self) -> Contract:
        if self.format == "avro" and self.version_from and self.version_from.field:
            raise ValueError("an Avro record's version must come from a header")
        if self.default_version is not None and self.default_version not in self.versions:
            raise ValueError(f"default_version {self.default_version} is not among versions")
        return self

    def matches(self, topic: str) -> bool:
        return any(fnmatchcase(topic, p) for p in self.topics)


class StateConfig(BaseModel):
    """Bounds on the per-key state of stateful rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttl: int = 3_600_000_000_000
    max_keys: int = Field(default=100_000, ge=1)

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, v: Any) -> int:
        return _duration(v)


class RuleFile(BaseModel):
    """A YAML file of rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1, 2] = Field(description="rule file format version")
    contracts: list[Contract] = Field(default_factory=list)
    state: StateConfig = StateConfig()
    rules: list[RuleSpec]

    @model_validator(mode="after")
    def _v1_subset(self) -> RuleFile:
        if self.version == 1:
            if "contracts" in self.model_fields_set or "state" in self.model_fields_set:
                raise ValueError("contracts and state need rule file version 2")
            for i, rule in enumerate(self.rules):
                newer = sorted(_V2_RULE_KEYS & rule.model_fields_set)
                if rule.kind not in _V1_KINDS or newer or getattr(rule, "providers", None):
                    what = ", ".join(newer) or f"kind {rule.kind!r}"
                    raise ValueError(f"rules.{i}: {what} needs rule file version 2")
        return self


def load_rule_file(path: Path) -> RuleFile:
    """Parse and validate one rule file; relative schema paths resolve against its folder.

    Raises:
        RuleFileError: unreadable, not YAML, or invalid; the message names file, line, key
            and value.
    """
    return read_rule_file(path)[0]


def read_rule_file(path: Path) -> tuple[RuleFile, str]:
    """Like :func:`load_rule_file`, with the SHA-256 (hex) of the very bytes parsed: the
    file's identity at the moment its rules were loaded (an edit after the read is not in it).

    Raises:
        RuleFileError: as :func:`load_rule_file`.
    """
    try:
        doc = read_yaml_file(path)
    except YamlFileError as exc:
        raise RuleFileError(str(exc)) from None
    try:
        parsed = RuleFile.model_validate(doc.data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {file_line(path, line_of(doc.node, e['loc']))}: "
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {shown_value(e.get('input'))})"
            for e in exc.errors()
        )
        raise RuleFileError(f"{path}: invalid rule file:\n{problems}") from None
    live = [(r.id, r.shadow) for r in parsed.rules]
    dupes = sorted({i for i, s in live if live.count((i, s)) > 1})
    if dupes:
        raise RuleFileError(f"{path}: rules: duplicate rule id(s) {', '.join(dupes)}")
    orphans = sorted({i for i, s in live if s and (i, False) not in live})
    if orphans:
        raise RuleFileError(
            f"{path}: rules: shadow rule(s) {', '.join(orphans)} have no live version beside them"
        )
    resolved = [
        r.model_copy(update={"schema_path": path.parent / r.schema_path})
        if isinstance(r, SchemaRule)
        else r
        for r in parsed.rules
    ]
    contracts = [
        c.model_copy(update={"versions": {v: path.parent / p for v, p in c.versions.items()}})
        for c in parsed.contracts
    ]
    # read_yaml_file decoded the bytes as strict UTF-8, so encoding the text gives them back.
    sha256 = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
    return parsed.model_copy(update={"rules": resolved, "contracts": contracts}), sha256
