"""Schema evolution: is a new schema version backward, forward or fully compatible?

Backward: readers on the new schema can read every record written with the old one.
Forward: readers still on the old schema can read records written with the new one.
Full: both. Avro follows Avro's schema resolution rules; JSON Schema compares what each
version accepts, property by property (the keywords contracts use: type, enum, required,
minimum/maximum, additionalProperties).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stampline.rules.exceptions import RuleFileError

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


@dataclass(frozen=True, slots=True)
class Compatibility:
    """The verdict of ``check-compat``: each direction, and what breaks it."""

    format: str
    backward: list[str] = field(default_factory=list)  # changes that break backward
    forward: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        if not self.backward and not self.forward:
            return "full"
        if not self.backward:
            return "backward"
        if not self.forward:
            return "forward"
        return "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "compatibility": self.level,
            "backward": not self.backward,
            "forward": not self.forward,
            "full": not self.backward and not self.forward,
            "breaking": {"backward": self.backward, "forward": self.forward},
        }


def check_compat(old: Path, new: Path) -> Compatibility:
    """Compare two versions of a schema (both JSON Schema, or both Avro ``.avsc``).

    Raises:
        RuleFileError: a file is unreadable or not JSON, or the two are of different kinds.
    """
    a, b = _read(old), _read(new)
    kinds = {_kind(old, a), _kind(new, b)}
    if len(kinds) != 1:
        raise RuleFileError(f"{old} and {new}: one is Avro, the other JSON Schema")
    if kinds == {"avro"}:
        # backward: new reads old data, so the reader is new, the writer old
        return Compatibility("avro", _avro(b, a, "", {}), _avro(a, b, "", {}))
    return Compatibility("json-schema", _json(a, b, ""), _json(b, a, ""))


def _read(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise RuleFileError(f"{path}: not JSON: {exc}") from exc


def _kind(path: Path, schema: Any) -> str:
    if path.suffix == ".avsc" or (isinstance(schema, dict) and schema.get("type") == "record"):
        return "avro"
    return "json"


# ---- Avro -------------------------------------------------------------------------------


def _avro_type(schema: Any, names: dict[str, Any]) -> Any:
    if isinstance(schema, str) and schema in names:
        return names[schema]
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
        names[schema["name"]] = schema
    if (
        isinstance(schema, dict)
        and isinstance(schema.get("type"), (str, list, dict))
        and (schema["type"] not in ("record", "enum", "fixed", "array", "map"))
    ):
        return _avro_type(schema["type"], names)
    return schema


def _avro_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema.get("type"))


def _avro(reader: Any, writer: Any, where: str, names: dict[str, Any]) -> list[str]:
    """What stops ``reader`` reading data written with ``writer``."""
    reader, writer = _avro_type(reader, names), _avro_type(writer, names)
    at = where or "(record)"
    if isinstance(writer, list):  # every branch the writer may use must be readable
        return [p for branch in writer for p in _avro(reader, branch, where, names)]
    if isinstance(reader, list):
        if any(not _avro(branch, writer, where, names) for branch in reader):
            return []
        return [f"{at}: {_avro_name(writer)} is not among the reader's union branches"]
    rt, wt = _avro_name(reader), _avro_name(writer)
    if rt != wt and rt not in _PROMOTIONS.get(wt, {wt}):
        return [f"{at}: type changed from {wt} to {rt}"]
    if rt == "record":
        problems = []
        writer_fields = {f["name"]: f for f in writer.get("fields", [])}
        for f in reader.get("fields", []):
            path = f"{where}.{f['name']}" if where else f["name"]
            if f["name"] in writer_fields:
                problems += _avro(f["type"], writer_fields[f["name"]]["type"], path, names)
            elif "default" not in f:
                problems.append(f"{path}: field only in the reader's schema and has no default")
        return problems
    if rt == "enum":
        missing = sorted(set(writer.get("symbols", [])) - set(reader.get("symbols", [])))
        if missing and "default" not in reader:
            return [f"{at}: enum symbol(s) {', '.join(missing)} unknown to the reader"]
        return []
    if rt == "array":
        return _avro(reader["items"], writer["items"], f"{where}[]", names)
    if rt == "map":
        return _avro(reader["values"], writer["values"], f"{where}{{}}", names)
    if rt == "fixed" and reader.get("size") != writer.get("size"):
        return [f"{at}: fixed size changed from {writer.get('size')} to {reader.get('size')}"]
    return []


# ---- JSON Schema --------------------------------------------------------------------------


def _types(schema: dict[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None  # anything
    types = {t} if isinstance(t, str) else set(t)
    if "number" in types:
        types.add("integer")
    return types


def _json(old: Any, new: Any, where: str) -> list[str]:
    """What data ``old`` accepts that ``new`` refuses (each a breaking change)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    at = where or "(record)"
    problems = []
    old_types, new_types = _types(old), _types(new)
    if new_types is not None and (old_types is None or not old_types <= new_types):
        was = "any type" if old_types is None else "/".join(sorted(old_types))
        problems.append(f"{at}: type narrowed from {was} to {'/'.join(sorted(new_types))}")
    if "enum" in new:
        dropped = [v for v in old.get("enum", []) if v not in new["enum"]]
        if "enum" not in old:
            problems.append(f"{at}: now restricted to {new['enum']}")
        elif dropped:
            problems.append(f"{at}: enum value(s) {dropped} removed")
    # A larger minimum or a smaller maximum refuses values the old version accepted.
    for bound, sign in (("minimum", 1), ("maximum", -1), ("minLength", 1), ("maxLength", -1)):
        if bound in new and (bound not in old or sign * (new[bound] - old[bound]) > 0):
            problems.append(f"{at}: {bound} tightened to {new[bound]}")
    added = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    problems += [f"{_join(where, name)}: now required" for name in added]
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    closed = new.get("additionalProperties") is False
    for name, schema in old_props.items():
        if name in new_props:
            problems += _json(schema, new_props[name], _join(where, name))
        elif closed:
            problems.append(f"{_join(where, name)}: removed and extra properties are refused")
    if closed and old.get("additionalProperties") is not False:
        problems.append(f"{at}: additional properties now refused")
    # Old data may carry a newly defined name with any value, which the new type may refuse.
    open_before = old.get("additionalProperties") is not False
    problems += [
        f"{_join(where, name)}: added with a type; old records could carry any value"
        for name in sorted(set(new_props) - set(old_props))
        if open_before and _types(new_props[name]) is not None
    ]
    return problems


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
