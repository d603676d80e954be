"""Topic contracts: JSON Schema or Avro, the schema version chosen per record.

A record names its version in a header (``schema-version: 2``) or, for JSON, in a payload
field; a record that names none gets the contract's ``default_version``. Avro records are
decoded with the writer schema of their version (Avro binary carries no field names, so a
wrong version is a decode failure, not a contract one).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import fastjsonschema
import orjson

from stampline.rules import _checker
from stampline.rules._columns import MISSING, get_field
from stampline.rules._files import Contract
from stampline.rules.exceptions import RuleFileError

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class JsonSchema:
    """A JSON Schema compiled twice from one reading of its file: ``validate``
    (fastjsonschema, the reference, which writes the reasons) and ``native``, the compiled
    check of clean records (rules/_checker.py; None when the schema is outside its subset or
    there is no compiled module, ``why_not`` saying which)."""

    validate: Callable[[Any], Any]
    native: Any
    why_not: str


def compile_json_schema(rule_id: str, path: Path) -> JsonSchema:
    """The JSON Schema at ``path``, compiled.

    Raises:
        RuleFileError: the file is unreadable, not JSON, or not a valid JSON Schema.
    """
    try:
        text = path.read_bytes()
        schema = orjson.loads(text)
    except OSError as exc:
        why = f"rule {rule_id}: schema: cannot read {path}: {exc.strerror}"
        raise RuleFileError(why) from exc
    except orjson.JSONDecodeError as exc:
        raise RuleFileError(f"rule {rule_id}: schema: {path} is not JSON: {exc}") from exc
    try:
        validate: Callable[[Any], Any] = fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise RuleFileError(
            f"rule {rule_id}: schema: {path} is not a valid JSON Schema: {exc}"
        ) from exc
    # orjson read the text, so it is UTF-8; the compiled check reads the same text.
    native, why_not = _checker.compile_schema(text.decode())
    return JsonSchema(validate, native, why_not)


def load_avro_schema(rule_id: str, path: Path) -> Any:
    """The parsed Avro schema at ``path``.

    Raises:
        RuleFileError: unreadable, not JSON, or not a valid Avro schema.
    """
    try:
        return fastavro.parse_schema(orjson.loads(path.read_bytes()))
    except OSError as exc:
        raise RuleFileError(f"contract {rule_id}: cannot read {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise RuleFileError(f"contract {rule_id}: {path} is not JSON: {exc}") from exc
    except (fastavro.schema.SchemaParseException, ValueError, KeyError, TypeError) as exc:
        why = f"contract {rule_id}: {path} is not a valid Avro schema: {exc}"
        raise RuleFileError(why) from exc


def schema_reason(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """A contract failure in words: the field, what it must be, and what it was."""
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


@dataclass(frozen=True, slots=True)
class ContractFailure:
    version: int
    reason: str


class CompiledContract:
    """One contract with every version compiled."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.id = contract.id
        self.json: dict[int, JsonSchema] = {}
        self._avro: dict[int, Any] = {}
        for version, path in sorted(contract.versions.items()):
            if contract.format == "json":
                self.json[version] = compile_json_schema(contract.id, path)
            else:
                self._avro[version] = load_avro_schema(contract.id, path)

    @property
    def avro(self) -> bool:
        return self.contract.format == "avro"

    def version_of(
        self, headers: Headers | None, payload: dict[str, Any] | None
    ) -> tuple[int | None, str]:
        """The version a record asks for, or (None, why not)."""
        source = self.contract.version_from
        raw: Any = MISSING
        where = ""
        if source is not None and source.header is not None:
            where = f"header {source.header!r}"
            for name, value in headers or ():
                if name == source.header:
                    raw = (value or b"").decode("utf-8", "replace").strip()
        elif source is not None and source.field is not None and payload is not None:
            where = f"field {source.field!r}"
            raw = get_field(payload, source.field)
        if raw is MISSING or raw is None:
            if self.contract.default_version is not None:
                return self.contract.default_version, ""
            if source is None and len(self.contract.versions) == 1:
                return next(iter(self.contract.versions)), ""
            return None, f"no schema version in {where or 'the record'} and no default_version"
        try:
            version = int(raw)
        except (TypeError, ValueError):
            return None, f"schema version {raw!r} in {where} is not a whole number"
        if version not in self.contract.versions:
            known = ", ".join(str(v) for v in sorted(self.contract.versions))
            return None, f"schema version {version} in {where} is not one of {known}"
        return version, ""

    def decode_avro(
        self, value: bytes, headers: Headers | None
    ) -> tuple[Any, ContractFailure | None]:
        version, why = self.version_of(headers, None)
        if version is None:
            return None, ContractFailure(0, f"contract: {why}")
        stream = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(stream, self._avro[version], None)
        except Exception as exc:  # fastavro raises many types for bytes that are not its record
            reason = f"not an Avro record of schema version {version}: {type(exc).__name__}: {exc}"
            return None, ContractFailure(version, reason)
        if stream.tell() != len(value):
            extra = len(value) - stream.tell()
            reason = f"not an Avro record of schema version {version}: {extra} bytes left over"
            return None, ContractFailure(version, reason)
        if not isinstance(record, dict):
            return None, ContractFailure(version, "Avro value is not a record")
        return record, None

    def check_json(
        self, payload: dict[str, Any], headers: Headers | None
    ) -> ContractFailure | None:
        version, why = self.version_of(headers, payload)
        if version is None:
            return ContractFailure(0, f"contract: {why}")
        try:
            self.json[version].validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            return ContractFailure(version, schema_reason(exc))
        return None
