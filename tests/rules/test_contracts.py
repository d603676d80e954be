"""Topic contracts (JSON Schema and Avro, version per record) and check-compat."""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
import pytest

from stampline.rules import RuleFileError, RuleSet, check_compat
from tests.rules.conftest import T0_NS, event, raw

DATA = Path(str(resources.files("stampline").joinpath("data")))
FULL = DATA / "market_data_full.rules.yaml"
CONTRACTS = DATA / "contracts"


def avro(record: dict[str, Any], version: int) -> bytes:
    schema = fastavro.parse_schema(json.loads((CONTRACTS / f"quote.v{version}.avsc").read_text()))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def quote(**fields: Any) -> dict[str, Any]:
    base = event(**fields)
    base.setdefault("bid", None)
    base.setdefault("ask", None)
    return base


@pytest.fixture(scope="module")
def full() -> RuleSet:
    return RuleSet.load([FULL])


class TestJsonContract:
    def test_version_from_header_selects_the_schema(self, full: RuleSet) -> None:
        """A v2-only field value passes under v2 and fails v2's enum, naming the version."""
        v2 = [("schema-version", b"2")]
        assert full.evaluate(raw(side="buy"), T0_NS, "md.raw", v2).ok
        bad = full.evaluate(raw(side="hold"), T0_NS, "md.raw", v2)
        assert (bad.first.rule_id, bad.first.rule_version) == ("contract.market_data", 2)
        assert bad.first.reason.startswith("contract: side must be one of")

    def test_default_version_when_no_header(self, full: RuleSet) -> None:
        """A record without the header is checked against the default version 1."""
        bad = full.evaluate(raw(price="1"), T0_NS, "md.raw")
        assert (bad.first.rule_id, bad.first.rule_version) == ("contract.market_data", 1)

    def test_unknown_version_is_rejected_with_the_known_ones(self, full: RuleSet) -> None:
        """A header naming a version the contract lacks is rejected listing the versions."""
        bad = full.evaluate(raw(), T0_NS, "md.raw", [("schema-version", b"7")])
        assert bad.first.reason == (
            "contract: schema version 7 in header 'schema-version' is not one of 1, 2"
        )

    def test_version_that_is_not_a_number(self, full: RuleSet) -> None:
        """A header that is not a whole number is rejected quoting it."""
        bad = full.evaluate(raw(), T0_NS, "md.raw", [("schema-version", b"two")])
        assert "schema version 'two' in header 'schema-version' is not a whole number" in (
            bad.first.reason
        )

    def test_contract_applies_only_to_its_topics(self, full: RuleSet) -> None:
        """Records on a topic no contract names skip the contract."""
        assert full.evaluate(raw(price="1"), T0_NS, "other").first.rule_id != "contract.market_data"

    def test_version_from_field(self, tmp_path: Path) -> None:
        """A contract can read the version from a payload field."""
        path = tmp_path / "f.yaml"
        path.write_text(
            "version: 2\ncontracts:\n  - id: c.md\n    version_from: {field: v}\n"
            f"    versions: {{1: {CONTRACTS / 'market_data.v1.schema.json'},"
            f" 2: {CONTRACTS / 'market_data.v2.schema.json'}}}\nrules: []\n"
        )
        rules = RuleSet.load([path])
        assert rules.evaluate(raw(v=2, side="sell"), T0_NS).ok
        assert rules.evaluate(raw(v=2, side="x"), T0_NS).first.rule_version == 2
        assert "no schema version in field 'v'" in rules.evaluate(raw(), T0_NS).first.reason


class TestAvroContract:
    def test_records_of_each_version_decode_and_pass(self, full: RuleSet) -> None:
        """Avro records of v1 and v2 decode with their writer schema and pass the rules."""
        v1 = full.evaluate(avro(quote(), 1), T0_NS, "avro.md")
        v2 = full.evaluate(
            avro({**quote(), "venue": "XNAS"}, 2), T0_NS, "avro.md", [("schema-version", b"2")]
        )
        assert v1.ok, v1.failures
        assert v2.ok, v2.failures
        assert (v2.provider, v2.instrument, v2.seq) == ("xnas", "AAPL", 1)

    def test_business_rules_run_on_avro_records(self, full: RuleSet) -> None:
        """A decoded Avro record meets the same rules as a JSON one."""
        bad = full.evaluate(avro(quote(quantity=-3.0), 1), T0_NS, "avro.md")
        assert bad.first.rule_id == "quantity.non_negative"

    def test_bytes_of_the_wrong_version_are_a_decode_failure(self, full: RuleSet) -> None:
        """A v2 record read as v1 leaves bytes over and is dead-lettered as undecodable."""
        value = avro({**quote(), "venue": "XNAS"}, 2)
        bad = full.evaluate(value, T0_NS, "avro.md")
        assert bad.first.rule_id == "record.decode"
        assert bad.first.reason.startswith(
            "contract.quote_avro: not an Avro record of schema version 1"
        )

    def test_garbage_is_a_decode_failure(self, full: RuleSet) -> None:
        """Bytes that are not Avro at all are dead-lettered with the decoder's complaint."""
        bad = full.evaluate(b"\xff\xff\xff", T0_NS, "avro.md")
        assert bad.first.rule_id == "record.decode"

    def test_invalid_avro_schema_is_refused_at_load(self, tmp_path: Path) -> None:
        """An Avro contract whose schema is not Avro is refused naming the contract and file."""
        bad = tmp_path / "bad.avsc"
        bad.write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}')
        path = tmp_path / "r.yaml"
        path.write_text(
            "version: 2\ncontracts:\n  - {id: c.av, format: avro, versions: {1: bad.avsc}}\n"
            "rules: []\n"
        )
        with pytest.raises(RuleFileError, match=r"contract c\.av: .*bad\.avsc is not a valid Avro"):
            RuleSet.load([path])

    def test_avro_version_from_a_field_is_refused(self, tmp_path: Path) -> None:
        """Avro cannot name its version inside the record; the file is refused saying so."""
        path = tmp_path / "r.yaml"
        path.write_text(
            "version: 2\ncontracts:\n  - {id: c.av, format: avro, version_from: {field: v},"
            " versions: {1: x.avsc}}\nrules: []\n"
        )
        with pytest.raises(RuleFileError, match="must come from a header"):
            RuleSet.load([path])


class TestCheckCompat:
    def test_avro_added_optional_field_is_fully_compatible(self) -> None:
        """Adding a field with a default is backward and forward compatible."""
        result = check_compat(CONTRACTS / "quote.v1.avsc", CONTRACTS / "quote.v2.avsc")
        assert result.level == "full"

    def test_avro_breaking_changes_are_listed(self) -> None:
        """A type change and a field without default are listed per direction."""
        result = check_compat(CONTRACTS / "quote.v1.avsc", CONTRACTS / "quote.v3-breaking.avsc")
        assert result.level == "none"
        assert result.backward == [
            "type: type changed from string to int",
            "side: field only in the reader's schema and has no default",
        ]
        assert result.forward == ["type: type changed from int to string"]

    def test_avro_promotion_and_enum_symbols(self, tmp_path: Path) -> None:
        """int widens to long (backward only); a removed enum symbol breaks backward."""

        def rec(qty: str, symbols: list[str]) -> Path:
            path = tmp_path / f"{qty}{len(symbols)}.avsc"
            path.write_text(
                json.dumps(
                    {
                        "type": "record",
                        "name": "R",
                        "fields": [
                            {"name": "q", "type": qty},
                            {
                                "name": "s",
                                "type": {"type": "enum", "name": "S", "symbols": symbols},
                            },
                        ],
                    }
                )
            )
            return path

        widened = check_compat(rec("int", ["A", "B"]), rec("long", ["A", "B"]))
        assert (widened.backward, widened.forward) == ([], ["q: type changed from long to int"])
        fewer = check_compat(rec("int", ["A", "B"]), rec("int", ["A"]))
        assert fewer.backward == ["s: enum symbol(s) B unknown to the reader"]
        assert fewer.forward == []

    def test_json_schema_changes(self) -> None:
        """A tightened maxLength breaks backward only; the v1 → v2 contract is forward."""
        result = check_compat(
            CONTRACTS / "market_data.v1.schema.json", CONTRACTS / "market_data.v2.schema.json"
        )
        assert result.to_dict()["compatibility"] == "forward"
        assert result.backward == ["venue: maxLength tightened to 16"]

    def test_json_schema_required_and_type(self, tmp_path: Path) -> None:
        """A newly required field and a narrowed type each break backward compatibility."""
        old, new = tmp_path / "o.json", tmp_path / "n.json"
        old.write_text(json.dumps({"type": "object", "properties": {"p": {"type": "number"}}}))
        new.write_text(
            json.dumps(
                {"type": "object", "required": ["p"], "properties": {"p": {"type": "integer"}}}
            )
        )
        result = check_compat(old, new)
        assert result.backward == [
            "p: now required",
            "p: type narrowed from integer/number to integer",
        ]
        assert result.forward == []

    def test_mixed_kinds_are_refused(self) -> None:
        """Comparing an Avro schema with a JSON Schema is refused naming both files."""
        with pytest.raises(RuleFileError, match="one is Avro"):
            check_compat(CONTRACTS / "quote.v1.avsc", CONTRACTS / "market_data.v1.schema.json")
