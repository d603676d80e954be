"""Rule files (format version 1): what loads, and the errors for what does not."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from stampline.rules import (
    FreshnessRule,
    RangeRule,
    RuleFile,
    RuleFileError,
    RulesError,
    RuleSet,
    SchemaRule,
    load_rule_file,
)

DATA = resources.files("stampline").joinpath("data")
MARKET_RULES = Path(str(DATA.joinpath("market_data.rules.yaml")))
MARKET_SCHEMA = Path(str(DATA.joinpath("market_data.schema.json")))

RANGE = "  - {id: price.positive, version: 1, kind: range, field: price, min: 0}\n"


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write ``text`` to ``tmp_path / name`` and return the path."""

    def write_file(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, "utf-8")
        return path

    return write_file


def load_error(*paths: Path) -> str:
    """The message of the RuleFileError that loading ``paths`` raises."""
    with pytest.raises(RuleFileError) as caught:
        RuleSet.load(paths)
    return str(caught.value)


class TestValidFiles:
    def test_packaged_market_data_rules_load(self) -> None:
        """The packaged market-data rule file parses into one rule of each kind, in file order."""
        parsed = load_rule_file(MARKET_RULES)
        assert isinstance(parsed, RuleFile)
        assert parsed.version == 1
        assert [(r.id, r.version, r.kind) for r in parsed.rules] == [
            ("contract.market_data", 1, "schema"),
            ("quantity.non_negative", 1, "range"),
            ("price.positive", 1, "range"),
            ("origin.window", 1, "freshness"),
        ]

    def test_schema_path_resolves_against_the_rule_file_folder(self) -> None:
        """A relative schema path is resolved against the folder of the rule file naming it."""
        contract = load_rule_file(MARKET_RULES).rules[0]
        assert isinstance(contract, SchemaRule)
        assert contract.schema_path == MARKET_RULES.parent / "market_data.schema.json"
        assert contract.schema_path.samefile(MARKET_SCHEMA)

    def test_rules_carry_their_fields(self) -> None:
        """Range and freshness rules keep bounds, exclusivity, reasons and durations in ns."""
        _, quantity, price, window = load_rule_file(MARKET_RULES).rules
        assert isinstance(quantity, RangeRule)
        assert (quantity.field, quantity.min, quantity.max) == ("quantity", 0, None)
        assert quantity.reason == "quantity {value} is negative"
        assert isinstance(price, RangeRule)
        assert (price.min_exclusive, price.max_exclusive) == (True, False)
        assert isinstance(window, FreshnessRule)
        assert (window.max_past, window.max_future) == (300_000_000_000, 60_000_000_000)

    def test_copied_rule_file_loads_from_another_folder(self, tmp_path: Path) -> None:
        """A rule file copied elsewhere with its contract compiles, finding the schema beside it."""
        shutil.copy(MARKET_RULES, tmp_path)
        shutil.copy(MARKET_SCHEMA, tmp_path)
        rs = RuleSet.load([tmp_path / MARKET_RULES.name])
        assert ("contract.market_data", 1) in rs.rule_ids

    def test_durations_as_numbers_are_seconds(self, write: Callable[..., Path]) -> None:
        """A freshness window given as a bare number is read in seconds."""
        path = write(
            "fresh.yaml",
            "version: 1\nrules:\n"
            "  - {id: fresh, version: 1, kind: freshness, max_past: 90, max_future: 0.5}\n",
        )
        (rule,) = load_rule_file(path).rules
        assert isinstance(rule, FreshnessRule)
        assert (rule.max_past, rule.max_future) == (90_000_000_000, 500_000_000)

    def test_an_empty_rule_list_is_valid(self, write: Callable[..., Path]) -> None:
        """A rule file with no rules is valid and adds nothing to the built-in rules."""
        path = write("none.yaml", "version: 1\nrules: []\n")
        assert load_rule_file(path).rules == []

    def test_rule_file_error_is_a_rules_error(self) -> None:
        """RuleFileError sits under the component's root RulesError."""
        assert issubclass(RuleFileError, RulesError)


class TestInvalidFiles:
    def test_unknown_key_in_a_rule(self, write: Callable[..., Path]) -> None:
        """An unknown key in a rule is reported with the file, its key path and its value."""
        path = write(
            "unknown.yaml",
            "version: 1\nrules:\n"
            "  - {id: price.positive, version: 1, kind: range, field: price, colour: red}\n",
        )
        message = load_error(path)
        assert message.startswith(f"{path}: invalid rule file:")
        assert (
            f"{path}:3: rules.0.range.colour: Extra inputs are not permitted (got 'red')" in message
        )

    def test_unknown_top_level_key(self, write: Callable[..., Path]) -> None:
        """An unknown top-level key is reported with its name and value."""
        path = write("top.yaml", "version: 1\nowner: team-md\nrules: []\n")
        message = load_error(path)
        assert f"{path}:2: owner: Extra inputs are not permitted (got 'team-md')" in message

    @pytest.mark.parametrize("missing", ["id", "version"])
    def test_rule_without_id_or_version(self, write: Callable[..., Path], missing: str) -> None:
        """A rule lacking its id or version is reported as a missing field at its key path."""
        fields = {"id": "id: price.positive", "version": "version: 1"}
        del fields[missing]
        path = write(
            f"no_{missing}.yaml",
            f"version: 1\nrules:\n  - {{{', '.join(fields.values())}, kind: range, field: p}}\n",
        )
        message = load_error(path)
        assert f"{path}:3: rules.0.range.{missing}: Field required" in message

    def test_file_without_format_version(self, write: Callable[..., Path]) -> None:
        """A rule file without its format version is rejected naming the ``version`` key."""
        path = write("nover.yaml", "rules:\n" + RANGE)
        assert f"{path}:1: version: Field required" in load_error(path)

    def test_unsupported_format_version(self, write: Callable[..., Path]) -> None:
        """A rule file of format version 3 is rejected with the version shown, at its line."""
        path = write("v3.yaml", "version: 3\nrules:\n" + RANGE)
        assert f"{path}:1: version: Input should be 1 or 2 (got 3)" in load_error(path)

    def test_bad_kind(self, write: Callable[..., Path]) -> None:
        """An unknown rule kind is reported with the bad kind and the kinds that exist."""
        path = write(
            "kind.yaml",
            "version: 1\nrules:\n  - {id: price.positive, version: 1, kind: telepathy, field: p}\n",
        )
        message = load_error(path)
        assert f"{path}:3: rules.0: " in message
        assert "'telepathy'" in message
        assert "'schema', 'range', 'freshness', 'not_null', 'enum', 'regex'" in message

    def test_rule_without_kind(self, write: Callable[..., Path]) -> None:
        """A rule without a kind is rejected at its position in the rules list."""
        path = write("nokind.yaml", "version: 1\nrules:\n  - {id: a.b, version: 1, field: p}\n")
        message = load_error(path)
        assert f"{path}:3: rules.0: " in message
        assert "'kind'" in message

    def test_bad_duration(self, write: Callable[..., Path]) -> None:
        """A duration like '5 parsecs' is reported with its key path and the bad value."""
        path = write(
            "dur.yaml",
            "version: 1\nrules:\n"
            "  - {id: fresh, version: 1, kind: freshness, max_past: 5 parsecs, max_future: 1m}\n",
        )
        message = load_error(path)
        assert f"{path}:3: rules.0.freshness.max_past: " in message
        assert "'5 parsecs' is not a duration" in message
        assert "(got '5 parsecs')" in message

    def test_negative_duration(self, write: Callable[..., Path]) -> None:
        """A negative freshness bound is rejected with the key and the value."""
        path = write(
            "neg.yaml",
            "version: 1\nrules:\n"
            "  - {id: fresh, version: 1, kind: freshness, max_past: 5m, max_future: -1}\n",
        )
        message = load_error(path)
        assert f"{path}:3: rules.0.freshness.max_future: " in message
        assert "(got -1)" in message

    def test_infinite_duration(self, write: Callable[..., Path]) -> None:
        """A YAML .inf duration is a RuleFileError naming the key, not an OverflowError."""
        path = write(
            "inf.yaml",
            "version: 1\nrules:\n"
            "  - {id: fresh, version: 1, kind: freshness, max_past: .inf, max_future: 1m}\n",
        )
        message = load_error(path)
        assert f"{path}:3: rules.0.freshness.max_past: " in message
        assert "duration inf is not finite (got inf)" in message

    def test_bad_rule_id(self, write: Callable[..., Path]) -> None:
        """A rule id that is not dotted lower case is rejected with the id shown."""
        path = write(
            "id.yaml",
            "version: 1\nrules:\n  - {id: Price-Positive, version: 1, kind: range, field: p}\n",
        )
        message = load_error(path)
        assert f"{path}:3: rules.0.range.id: String should match pattern" in message
        assert "(got 'Price-Positive')" in message

    def test_rule_version_must_be_positive(self, write: Callable[..., Path]) -> None:
        """A rule version of 0 is rejected with the value shown."""
        path = write(
            "v0.yaml", "version: 1\nrules:\n  - {id: a.b, version: 0, kind: range, field: p}\n"
        )
        message = load_error(path)
        assert (
            f"{path}:3: rules.0.range.version: Input should be greater than or equal to 1"
            in message
        )
        assert "(got 0)" in message

    def test_every_problem_in_a_file_is_listed(self, write: Callable[..., Path]) -> None:
        """Several invalid rules in one file are all reported in one error."""
        path = write(
            "many.yaml",
            "version: 1\nrules:\n"
            "  - {id: a.b, version: 0, kind: range, field: p}\n"
            "  - {id: c.d, version: 1, kind: freshness, max_past: soon, max_future: 1m}\n",
        )
        message = load_error(path)
        assert "rules.0.range.version" in message
        assert "rules.1.freshness.max_past" in message
        assert "(got 'soon')" in message

    def test_duplicate_rule_id_in_one_file(self, write: Callable[..., Path]) -> None:
        """Two rules with the same id in one file are rejected, naming the file and the id."""
        path = write(
            "dupe.yaml",
            "version: 1\nrules:\n" + RANGE + "  - {id: price.positive, version: 2, kind: range,"
            " field: bid, min: 0}\n",
        )
        assert load_error(path) == f"{path}: rules: duplicate rule id(s) price.positive"

    def test_duplicate_rule_id_across_two_files(self, write: Callable[..., Path]) -> None:
        """A rule id defined in two files is rejected, naming both files and the id."""
        first = write("first.yaml", "version: 1\nrules:\n" + RANGE)
        second = write("second.yaml", "version: 1\nrules:\n" + RANGE)
        assert load_error(first, second) == (
            f"{second}: rule id 'price.positive' is also defined in {first}"
        )

    def test_same_file_twice_is_a_duplicate(self) -> None:
        """Naming the same rule file twice is reported as a duplicate rule id."""
        message = load_error(MARKET_RULES, MARKET_RULES)
        assert "rule id 'contract.market_data' is also defined in" in message

    @pytest.mark.parametrize("builtin", ["record.size", "record.decode", "record.origin"])
    def test_rule_id_clashing_with_a_builtin(
        self, write: Callable[..., Path], builtin: str
    ) -> None:
        """A rule reusing a built-in rule id is rejected, naming the file and the id."""
        path = write(
            "builtin.yaml",
            f"version: 1\nrules:\n  - {{id: {builtin}, version: 1, kind: range, field: p}}\n",
        )
        assert load_error(path) == (
            f"{path}: rule id {builtin!r} is also defined in the built-in rules"
        )

    def test_missing_schema_file(self, write: Callable[..., Path], tmp_path: Path) -> None:
        """A schema rule naming a missing file is rejected with the rule id and the schema path."""
        path = write(
            "contract.yaml",
            "version: 1\nrules:\n"
            "  - {id: contract.x, version: 1, kind: schema, schema: gone.json}\n",
        )
        # The file itself is valid; the contract is read when the rules are compiled.
        assert load_rule_file(path).rules[0].id == "contract.x"
        assert load_error(path) == (
            f"rule contract.x: schema: cannot read {tmp_path / 'gone.json'}: "
            "No such file or directory"
        )

    def test_schema_file_that_is_not_json(self, write: Callable[..., Path], tmp_path: Path) -> None:
        """A schema file that is not JSON is rejected with the rule id and the schema path."""
        write("broken.json", '{"type": "object",')
        path = write(
            "contract.yaml",
            "version: 1\nrules:\n"
            "  - {id: contract.x, version: 1, kind: schema, schema: broken.json}\n",
        )
        message = load_error(path)
        assert message.startswith(
            f"rule contract.x: schema: {tmp_path / 'broken.json'} is not JSON: "
        )

    @pytest.mark.parametrize(
        ("schema", "detail"),
        [
            ('{"type": "frobnicate"}', "Unknown type"),
            ('{"properties": {"a": {"minLength": "five"}}}', "minLength must be a number"),
        ],
        ids=["unknown-type", "bad-keyword-value"],
    )
    def test_schema_that_is_not_a_valid_json_schema(
        self, write: Callable[..., Path], tmp_path: Path, schema: str, detail: str
    ) -> None:
        """A JSON file that is not a valid JSON Schema is rejected with the schema path and why."""
        write("bad.schema.json", schema)
        path = write(
            "contract.yaml",
            "version: 1\nrules:\n"
            "  - {id: contract.x, version: 1, kind: schema, schema: bad.schema.json}\n",
        )
        assert load_error(path) == (
            f"rule contract.x: schema: {tmp_path / 'bad.schema.json'} is not a valid JSON Schema: "
            f"{detail}"
        )

    def test_yaml_syntax_error(self, write: Callable[..., Path]) -> None:
        """A YAML syntax error is reported as file:line, at the line the parser stopped at."""
        path = write("syntax.yaml", "version: 1\nrules:\n  - {id: a.b, version: 1\n  kind: [\n")
        message = load_error(path)
        assert message.startswith(f"{path}:4: not valid YAML: ")
        assert message.endswith("(line 4, column 7)")

    @pytest.mark.parametrize(
        ("text", "shown"), [("- 1\n- 2\n", "[1, 2]"), ("", "None"), ("just text\n", "'just text'")]
    )
    def test_file_that_is_not_a_mapping(
        self, write: Callable[..., Path], text: str, shown: str
    ) -> None:
        """A rule file holding a list, nothing, or a scalar is rejected showing what it holds."""
        path = write("notmap.yaml", text)
        message = load_error(path)
        assert message.startswith(f"{path}: invalid rule file:")
        assert f"(got {shown})" in message

    def test_missing_rule_file(self, tmp_path: Path) -> None:
        """A missing rule file is reported with its path and the system's reason."""
        path = tmp_path / "nowhere.yaml"
        assert load_error(path) == f"{path}: cannot read: No such file or directory"

    def test_folder_instead_of_a_rule_file(self, tmp_path: Path) -> None:
        """A folder given as a rule file is reported as unreadable."""
        assert load_error(tmp_path) == f"{tmp_path}: cannot read: Is a directory"

    @pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file"
    )
    def test_unreadable_rule_file(self, write: Callable[..., Path]) -> None:
        """A rule file without read permission is reported with its path."""
        path = write("secret.yaml", "version: 1\nrules: []\n")
        path.chmod(0)
        try:
            assert load_error(path) == f"{path}: cannot read: Permission denied"
        finally:
            path.chmod(0o600)

    def test_rule_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        """A rule file with bytes that are not UTF-8 is a RuleFileError naming the file."""
        path = tmp_path / "latin1.yaml"
        path.write_bytes(b"version: 1\nrules: []\n# caf\xe9\n")
        assert load_error(path) == f"{path}: not UTF-8 text (byte 26): invalid continuation byte"
