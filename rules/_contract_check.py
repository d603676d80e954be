"""Which compiled schemas a clean record must pass for ``RuleSet._contract`` to find nothing
(docs/native.md, "The contract check").

``_contract`` runs every ``kind: schema`` rule whose scope takes the record — live, shadow or
warn alike: its first failure is the record's — then the topic's JSON contract at the version
the record asks for (``CompiledContract.version_of``). A record that passes *every* schema
rule passes whichever of them its scope picks; so the compiled check asks a clean record to
pass all of them, and the topic contract's version chosen by ``version_of`` itself. When it
does (native/src/schema.rs says it certainly does), ``_contract`` would return None and is
skipped; in every other case it runs and is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stampline.rules._contracts import CompiledContract, Headers, JsonSchema

# Bits in the masks Rust reads (u64).
MAX_SCHEMAS = 64

NOT_COMPILED = "python: contract not compiled"
NOT_CERTAIN = "python: contract not certain"


@dataclass(frozen=True, slots=True)
class ContractCheck:
    """A rule set's compiled schemas, numbered for the masks, and what needs which."""

    schemas: tuple[Any, ...]  # native Schemas; bit i of a mask is schemas[i]
    rules: int | None  # the bits of every schema rule; None: one is not compiled
    versions: Mapping[tuple[str, int], int]  # (contract id, version) -> its bit, if compiled

    def wants(self, contract: CompiledContract | None) -> int:
        """The bits Rust checks for a record of a topic with ``contract``: every schema rule
        and every compiled version of the contract (which one applies is Python's to say)."""
        if self.rules is None:
            return 0  # no record is certain: nothing to check
        wanted = self.rules
        if contract is not None and not contract.avro:
            for version in contract.json:
                wanted |= self.versions.get((contract.id, version), 0)
        return wanted

    def topic_need(self, contract: CompiledContract | None) -> int | str | None:
        """:meth:`need` for every record of a topic with ``contract``, when it does not depend
        on the record (None when it does: the contract's version comes from the record)."""
        if self.rules is None:
            return NOT_COMPILED
        if contract is None or contract.avro:
            return self.rules
        if contract.contract.version_from is not None:
            return None
        return self.need(contract, None, {})  # version_of reads neither headers nor payload

    def need(
        self,
        contract: CompiledContract | None,
        headers: Headers | None,
        payload: dict[str, Any],
    ) -> int | str:
        """The bits a record must have passed for its contract check to find nothing, or the
        CHECK_PATHS reason it must take the Python path."""
        if self.rules is None:
            return NOT_COMPILED
        if contract is None or contract.avro:
            return self.rules
        version, _why = contract.version_of(headers, payload)
        if version is None:
            return NOT_CERTAIN  # no version it can name: a failure Python writes
        bit = self.versions.get((contract.id, version))
        return NOT_COMPILED if bit is None else self.rules | bit


def contract_check(
    schema_rules: Sequence[JsonSchema], contracts: Sequence[CompiledContract]
) -> ContractCheck:
    """The compiled check of ``schema_rules`` (every ``kind: schema`` rule's schema) and the
    JSON ``contracts``: a schema outside the subset leaves its records to Python."""
    schemas: list[Any] = []

    def bit(schema: JsonSchema) -> int | None:
        if schema.native is None or len(schemas) == MAX_SCHEMAS:
            return None
        schemas.append(schema.native)
        return 1 << (len(schemas) - 1)

    rules: int | None = 0
    for schema in schema_rules:
        got = bit(schema)
        rules = None if got is None or rules is None else rules | got
    versions: dict[tuple[str, int], int] = {}
    for contract in contracts:
        for version, schema in contract.json.items():
            if (got := bit(schema)) is not None:
                versions[(contract.id, version)] = got
    return ContractCheck(tuple(schemas), rules, versions)
