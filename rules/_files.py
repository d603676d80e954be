"""The rule file format (version 1), validated with pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rules._durations import parse_duration_ns
from rules.exceptions import RuleFileError

RULE_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RULE_ID_PATTERN, description="dotted, lower case, e.g. price.positive")
    version: int = Field(ge=1, description="bump on every change of meaning")
    description: str = ""
    reason: str | None = Field(
        default=None, description="template; {field}, {value}, {min}, {max} are filled in"
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
    """The origin time must lie within a window around the gate's clock."""

    kind: Literal["freshness"]
    max_past: int
    max_future: int

    @field_validator("max_past", "max_future", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> int:
        return parse_duration_ns(v)


RuleSpec = Annotated[SchemaRule | RangeRule | FreshnessRule, Field(discriminator="kind")]


class RuleFile(BaseModel):
    """A YAML file of rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(description="rule file format version")
    rules: list[RuleSpec]


def load_rule_file(path: Path) -> RuleFile:
    """Parse and validate one rule file; relative schema paths resolve against its folder.

    Raises:
        RuleFileError: unreadable, not YAML, or invalid; the message names file, key and value.
    """
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read rule file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{path}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{path}: not valid YAML: {exc}") from exc
    try:
        parsed = RuleFile.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise RuleFileError(f"{path}: invalid rule file:\n{problems}") from None
    ids = [r.id for r in parsed.rules]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RuleFileError(f"{path}: rules: duplicate rule id(s) {', '.join(dupes)}")
    resolved = [
        r.model_copy(update={"schema_path": path.parent / r.schema_path})
        if isinstance(r, SchemaRule)
        else r
        for r in parsed.rules
    ]
    return parsed.model_copy(update={"rules": resolved})
