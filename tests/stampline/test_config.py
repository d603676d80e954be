"""The deployment configuration: loading, path resolution, environment overrides, problems."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stampline.config import (
    Config,
    ConfigError,
    Problem,
    build_rules,
    check_config,
    load_config,
)
from tests.stampline.conftest import EXAMPLE, MARKET_RULES, REPO, WriteConfig

# A valid configuration; line numbers below refer to this text.
GOOD = f"""\
version: 1
broker:
  bootstrap_servers: localhost:9092
topics:
  raw: [md.raw]
  clean: md.clean
  dead_letter: md.dlq
store:
  path: data
  flush_rows: 500
gate:
  max_message_bytes: 4096
rules:
  files: [{MARKET_RULES}]
"""


def problems_of(path: Path) -> list[Problem]:
    """The problems load_config reports for ``path``."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == path
    return caught.value.problems


def only_problem(path: Path) -> Problem:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


class TestExample:
    def test_example_file_loads(self) -> None:
        """The shipped example configuration loads with the values it spells out."""
        config = load_config(EXAMPLE)
        assert isinstance(config, Config)
        assert config.broker.bootstrap_servers == "localhost:9092"
        assert config.broker.embedded is False
        assert config.topics.raw == ["md.raw"]
        assert (config.topics.clean, config.topics.dead_letter) == ("md.clean", "md.dlq")
        assert config.store.flush_rows == 10_000
        assert config.store.flush_interval_ns == 500_000_000
        assert config.gate.clock_error_ns == 1_000_000
        assert config.gate.max_message_bytes == 65_536
        assert (config.gate.origin.field, config.gate.origin.unit) == ("ts", "ms")
        assert [(s.name, s.input, s.output) for s in config.stages] == [
            ("risk", "md.clean", "decisions")
        ]

    def test_example_paths_resolve_against_its_folder(self) -> None:
        """The example's relative store and rule paths resolve against examples/."""
        config = load_config(EXAMPLE)
        assert config.store.path == REPO / "stampline-data"
        assert config.rules.files == [REPO / "stampline" / "data" / "market_data.rules.yaml"]
        assert config.rules.files[0].samefile(MARKET_RULES)

    def test_example_passes_the_full_check(self) -> None:
        """check_config finds nothing wrong with the example, rule files included."""
        config, problems = check_config(EXAMPLE)
        assert problems == []
        assert config is not None
        assert config == load_config(EXAMPLE)

    def test_example_rules_compile_with_the_gate_extraction(self) -> None:
        """The example's rules compile with the extraction its gate section describes."""
        rules = build_rules(load_config(EXAMPLE))
        assert rules.extraction.max_message_bytes == 65_536
        assert rules.extraction.origin_field == "ts"
        assert ("contract.market_data", 1) in rules.rule_ids

    def test_embedded_example_taps_the_decisions_the_demo_feed_writes(self) -> None:
        """examples/embedded.yaml passes the full check and its tap observes the decisions
        topic (where `demo-feed`'s risk stage writes), so decisions reach the store."""
        embedded = REPO / "examples" / "embedded.yaml"
        config, problems = check_config(embedded)
        assert problems == []
        assert config is not None
        assert config.broker.embedded
        assert config.topics.decisions in config.tap.topics

    def test_config_is_frozen(self) -> None:
        """A loaded configuration cannot be changed in place."""
        config = load_config(EXAMPLE)
        with pytest.raises(ValueError, match="frozen"):
            config.topics.partitions = 7
        with pytest.raises(ValueError, match="frozen"):
            config.stages = []


class TestPaths:
    def test_relative_paths_resolve_against_the_file_not_the_cwd(
        self, tmp_path: Path, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """store.path and rules.files are relative to the config file's folder."""
        text = GOOD.replace(str(MARKET_RULES), "rules/md.yaml").replace(
            "path: data", "path: ../trail"
        )
        path = write_config(text, "deploy/conf/stampline.yaml")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        config = load_config(path)
        assert config.store.path == tmp_path / "deploy" / "trail"
        assert config.rules.files == [tmp_path / "deploy" / "conf" / "rules" / "md.yaml"]

    def test_relative_config_path_is_resolved_too(
        self, tmp_path: Path, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A config path given relative to the cwd still yields absolute resolved paths."""
        write_config(GOOD, "conf/stampline.yaml")
        monkeypatch.chdir(tmp_path)
        config = load_config("conf/stampline.yaml")
        assert config.store.path == tmp_path / "conf" / "data"
        assert config.store.path.is_absolute()

    def test_absolute_paths_are_kept(self, tmp_path: Path, write_config: WriteConfig) -> None:
        """Absolute store and rule paths are used as written."""
        text = GOOD.replace("path: data", f"path: {tmp_path / 'abs-trail'}")
        config = load_config(write_config(text, "sub/stampline.yaml"))
        assert config.store.path == tmp_path / "abs-trail"
        assert config.rules.files == [MARKET_RULES]

    def test_several_rule_files_keep_their_order(self, write_config: WriteConfig) -> None:
        """rules.files keeps the order the file gives, each path resolved."""
        text = GOOD.replace(f"[{MARKET_RULES}]", "[b.yaml, a/c.yaml]")
        path = write_config(text)
        assert load_config(path).rules.files == [
            path.parent / "b.yaml",
            path.parent / "a" / "c.yaml",
        ]


class TestDefaults:
    def test_minimal_file_gets_defaults(self, write_config: WriteConfig) -> None:
        """A file with only the required sections gets the documented defaults."""
        path = write_config(
            "broker: {embedded: true}\n"
            "topics: {raw: [feed], clean: feed.clean, dead_letter: feed.dlq}\n"
            "rules: {files: [r.yaml]}\n"
        )
        config = load_config(path)
        assert config.version == 1
        assert config.broker.embedded is True
        assert config.broker.bootstrap_servers is None
        assert config.topics.decisions == "decisions"
        assert config.topics.partitions == 3
        assert config.store.backend == "chdb"
        assert config.store.path == path.parent / "stampline-data"
        assert config.store.database == "stampline"
        assert config.gate.stage == "gate"
        assert config.gate.clock_error_ns == 1_000_000
        assert config.stages == []


class TestEnvironment:
    def test_env_overrides_a_value_in_the_file(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """STAMPLINE_BROKER__BOOTSTRAP_SERVERS wins over broker.bootstrap_servers in the file."""
        monkeypatch.setenv("STAMPLINE_BROKER__BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
        config = load_config(write_config(GOOD))
        assert config.broker.bootstrap_servers == "kafka-1:9092,kafka-2:9092"

    def test_nested_env_override_keeps_sibling_keys(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """STAMPLINE_STORE__FLUSH_ROWS overrides one key; the section's other keys stay."""
        monkeypatch.setenv("STAMPLINE_STORE__FLUSH_ROWS", "25")
        path = write_config(GOOD)
        config = load_config(path)
        assert config.store.flush_rows == 25
        assert config.store.path == path.parent / "data"
        assert config.broker.bootstrap_servers == "localhost:9092"

    def test_doubly_nested_and_aliased_env_keys(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Env vars reach keys two sections deep, and duration keys by their file name."""
        monkeypatch.setenv("STAMPLINE_GATE__ORIGIN__UNIT", "iso8601")
        monkeypatch.setenv("STAMPLINE_STORE__FLUSH_INTERVAL", "2s")
        monkeypatch.setenv("STAMPLINE_TOPICS__RAW", '["a.raw", "b.raw"]')
        config = load_config(write_config(GOOD))
        assert config.gate.origin.unit == "iso8601"
        assert config.gate.origin.field == "ts"
        assert config.store.flush_interval_ns == 2_000_000_000
        assert config.topics.raw == ["a.raw", "b.raw"]

    def test_env_can_supply_a_section_missing_from_the_file(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A required broker section may come entirely from the environment."""
        text = GOOD.replace("broker:\n  bootstrap_servers: localhost:9092\n", "")
        monkeypatch.setenv("STAMPLINE_BROKER__BOOTSTRAP_SERVERS", "kafka:9092")
        assert load_config(write_config(text)).broker.bootstrap_servers == "kafka:9092"

    def test_unrelated_stampline_variables_are_ignored(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """STAMPLINE_CONFIG and variables naming no key do not count as unknown keys."""
        monkeypatch.setenv("STAMPLINE_CONFIG", "/somewhere/else.yaml")
        monkeypatch.setenv("STAMPLINE_NOT_A_KEY", "1")
        assert load_config(write_config(GOOD)).topics.clean == "md.clean"

    def test_bad_env_value_names_the_variable(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad value from the environment is reported with the variable it came from."""
        monkeypatch.setenv("STAMPLINE_STORE__FLUSH_ROWS", "lots")
        path = write_config(GOOD)
        problem = only_problem(path)
        assert problem.key == "store.flush_rows"
        assert problem.value == "lots"
        assert problem.env == "STAMPLINE_STORE__FLUSH_ROWS"
        assert problem.render(path).endswith("(got 'lots') [from $STAMPLINE_STORE__FLUSH_ROWS]")

    def test_bad_env_value_for_a_key_absent_from_the_file(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad env value for a key the file does not set still names key and variable."""
        monkeypatch.setenv("STAMPLINE_GATE__ORIGIN__UNIT", "fortnights")
        problem = only_problem(write_config(GOOD))
        assert (problem.key, problem.value) == ("gate.origin.unit", "fortnights")
        assert problem.env == "STAMPLINE_GATE__ORIGIN__UNIT"

    def test_bad_value_in_the_file_is_not_blamed_on_the_env(
        self, write_config: WriteConfig
    ) -> None:
        """A bad value written in the file carries no environment variable."""
        problem = only_problem(write_config(GOOD.replace("flush_rows: 500", "flush_rows: lots")))
        assert problem.env is None
        assert "[from $" not in problem.render("f.yaml")

    def test_comma_separated_env_list(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A list key set from the environment may be comma-separated or JSON."""
        monkeypatch.setenv("STAMPLINE_TOPICS__RAW", "md.a, md.b")
        assert load_config(write_config(GOOD)).topics.raw == ["md.a", "md.b"]
        monkeypatch.setenv("STAMPLINE_TOPICS__RAW", '["md.c"]')
        assert load_config(write_config(GOOD)).topics.raw == ["md.c"]

    def test_undecodable_env_value_names_the_variable(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A mapping key given non-JSON text in the environment is a problem naming the variable."""
        monkeypatch.setenv("STAMPLINE_BROKER__CLIENT", "{acks: all")
        problem = only_problem(write_config(GOOD))
        assert problem.env == "STAMPLINE_BROKER__CLIENT"
        assert problem.key == "broker.client"
        assert problem.line is None


class TestBadFiles:
    def test_unknown_key(self, write_config: WriteConfig) -> None:
        """An unknown key is reported with its key path, its line and its value."""
        path = write_config(
            GOOD.replace("  flush_rows: 500\n", "  flush_rows: 500\n  colour: red\n")
        )
        problem = only_problem(path)
        assert (problem.key, problem.message, problem.value, problem.line) == (
            "store.colour",
            "unknown key",
            "red",
            11,
        )
        assert problem.render(path) == f"{path}:11: store.colour: unknown key (got 'red')"

    def test_unknown_top_level_section(self, write_config: WriteConfig) -> None:
        """An unknown top-level section is reported at its line."""
        problem = only_problem(write_config(GOOD + "alerts:\n  slack: yes\n"))
        assert (problem.key, problem.message, problem.line) == ("alerts", "unknown key", 15)

    @pytest.mark.parametrize("section", ["broker", "topics", "rules"])
    def test_missing_required_section(self, write_config: WriteConfig, section: str) -> None:
        """A missing required section is reported by name."""
        lines = GOOD.splitlines(keepends=True)
        start = lines.index(f"{section}:\n")
        end = next(
            (i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines)
        )
        problem = only_problem(write_config("".join(lines[:start] + lines[end:])))
        assert (problem.key, problem.message, problem.value) == (
            section,
            "required key is missing",
            None,
        )

    def test_missing_required_key_in_a_section(self, write_config: WriteConfig) -> None:
        """A missing key in a section is reported with its full key path and the section line."""
        problem = only_problem(write_config(GOOD.replace("  clean: md.clean\n", "")))
        assert (problem.key, problem.message, problem.line) == (
            "topics.clean",
            "required key is missing",
            4,
        )

    @pytest.mark.parametrize(
        ("old", "new", "key", "value"),
        [
            ("flush_rows: 500", "flush_rows: lots", "store.flush_rows", "lots"),
            ("flush_rows: 500", "flush_rows: 0", "store.flush_rows", 0),
            ("max_message_bytes: 4096", "max_message_bytes: [1]", "gate.max_message_bytes", [1]),
            ("raw: [md.raw]", "raw: 7", "topics.raw", 7),
            ("raw: [md.raw]", "raw: []", "topics.raw", []),
            ("version: 1", "version: 2", "version", 2),
        ],
        ids=[
            "int-as-text",
            "below-minimum",
            "list-for-int",
            "number-for-list",
            "empty-list",
            "ver",
        ],
    )
    def test_wrong_type_or_value_shows_the_value(
        self, write_config: WriteConfig, old: str, new: str, key: str, value: object
    ) -> None:
        """A value of the wrong type or out of range is reported with the bad value."""
        path = write_config(GOOD.replace(old, new))
        problem = only_problem(path)
        assert (problem.key, problem.value) == (key, value)
        assert f": {key}: " in problem.render(path)
        assert problem.render(path).endswith(f"(got {value!r})")

    @pytest.mark.parametrize("topic", ["md clean", "md/clean", "", "x" * 250])
    def test_invalid_topic_name(self, write_config: WriteConfig, topic: str) -> None:
        """A topic name Kafka would refuse is reported with the name."""
        problem = only_problem(write_config(GOOD.replace("clean: md.clean", f"clean: '{topic}'")))
        assert (problem.key, problem.value, problem.line) == ("topics.clean", topic, 6)
        assert "should match pattern" in problem.message

    @pytest.mark.parametrize(
        ("key", "text", "message"),
        [
            ("rules.files", f"files: [{MARKET_RULES}]", "no rule files: name at least one"),
            ("topics.raw", "raw: [md.raw]", "no topics: name at least one"),
        ],
    )
    def test_empty_list_says_what_to_list(
        self, write_config: WriteConfig, key: str, text: str, message: str
    ) -> None:
        """An empty list that needs an item names its key and what to put in it."""
        empty = text.split(":")[0] + ": []"
        problem = only_problem(write_config(GOOD.replace(text, empty)))
        assert (problem.key, problem.message, problem.value) == (key, message, [])

    def test_invalid_raw_topic_in_a_list(self, write_config: WriteConfig) -> None:
        """A bad topic inside topics.raw is reported with its index."""
        problem = only_problem(write_config(GOOD.replace("raw: [md.raw]", "raw: [md.raw, 'a b']")))
        assert (problem.key, problem.value) == ("topics.raw.1", "a b")

    @pytest.mark.parametrize("output", ["clean", "dead_letter"])
    def test_output_topic_equal_to_a_raw_topic_is_a_loop(
        self, write_config: WriteConfig, output: str
    ) -> None:
        """A clean or dead-letter topic that is also a raw topic is refused as a loop."""
        old = {"clean": "clean: md.clean", "dead_letter": "dead_letter: md.dlq"}[output]
        text = GOOD.replace("raw: [md.raw]", "raw: [md.raw, md.other]").replace(
            old, f"{output}: md.other"
        )
        problem = only_problem(write_config(text))
        assert problem.key == "topics"
        assert problem.message == (
            f"{output} topic 'md.other' is also a raw topic: the gate would loop"
        )
        assert problem.line == 4

    def test_clean_equal_to_dead_letter(self, write_config: WriteConfig) -> None:
        """Clean and dead-letter topics must differ."""
        problem = only_problem(
            write_config(GOOD.replace("dead_letter: md.dlq", "dead_letter: md.clean"))
        )
        assert problem.message == "clean and dead_letter are the same topic 'md.clean'"

    @pytest.mark.parametrize(
        "broker",
        ["broker: {}\n", "broker:\n  embedded: false\n", "broker: {bootstrap_servers: null}\n"],
    )
    def test_neither_bootstrap_servers_nor_embedded(
        self, write_config: WriteConfig, broker: str
    ) -> None:
        """A broker section with neither bootstrap_servers nor embedded: true is refused."""
        text = GOOD.replace("broker:\n  bootstrap_servers: localhost:9092\n", broker)
        problem = only_problem(write_config(text))
        assert problem.key == "broker"
        assert problem.message == "set bootstrap_servers (host:port,...) or embedded: true"
        assert problem.line == 2

    def test_embedded_broker_needs_no_servers(self, write_config: WriteConfig) -> None:
        """embedded: true alone is a valid broker section."""
        text = GOOD.replace("bootstrap_servers: localhost:9092", "embedded: true")
        assert load_config(write_config(text)).broker.embedded is True

    @pytest.mark.parametrize(
        ("section", "field"), [("store", "flush_interval"), ("gate", "clock_error")]
    )
    def test_bad_duration(self, write_config: WriteConfig, section: str, field: str) -> None:
        """A duration like '5 parsecs' is reported with its key and the value."""
        text = GOOD.replace(f"{section}:\n", f"{section}:\n  {field}: 5 parsecs\n")
        problem = only_problem(write_config(text))
        assert (problem.key, problem.value) == (f"{section}.{field}", "5 parsecs")
        assert problem.message == "'5 parsecs' is not a duration (use e.g. 250ms, 5m, 1h)"

    def test_negative_duration(self, write_config: WriteConfig) -> None:
        """A negative flush interval is refused with the value."""
        text = GOOD.replace("  flush_rows: 500\n", "  flush_rows: 500\n  flush_interval: -1\n")
        problem = only_problem(write_config(text))
        assert (problem.key, problem.value) == ("store.flush_interval", -1)
        assert "negative" in problem.message

    def test_infinite_duration(self, write_config: WriteConfig) -> None:
        """A YAML .inf duration is a ConfigError naming the key."""
        text = GOOD.replace("  flush_rows: 500\n", "  flush_rows: 500\n  flush_interval: .inf\n")
        problem = only_problem(write_config(text))
        assert (problem.key, problem.value) == ("store.flush_interval", float("inf"))
        assert problem.message == "duration inf is not finite"

    @pytest.mark.parametrize("name", ["drop-table;", "1st", "stamp line", "a.b"])
    def test_bad_database_name(self, write_config: WriteConfig, name: str) -> None:
        """A database name that would need quoting in DDL is refused with the name."""
        text = GOOD.replace("  path: data\n", f"  path: data\n  database: '{name}'\n")
        problem = only_problem(write_config(text))
        assert (problem.key, problem.value, problem.line) == ("store.database", name, 10)
        assert "must be letters, digits and underscores" in problem.message

    def test_bad_origin_unit(self, write_config: WriteConfig) -> None:
        """An origin unit that does not exist is refused with the choices."""
        text = GOOD.replace("gate:\n", "gate:\n  origin: {field: ts, unit: weeks}\n")
        problem = only_problem(write_config(text))
        assert (problem.key, problem.value, problem.line) == ("gate.origin.unit", "weeks", 12)
        assert "'iso8601'" in problem.message

    def test_bad_stage(self, write_config: WriteConfig) -> None:
        """A stage entry with a bad name is reported with its index in the list."""
        text = (
            GOOD + "stages:\n  - {name: risk, input: md.clean}\n  - {name: 'bad name', input: x}\n"
        )
        problem = only_problem(write_config(text))
        assert (problem.key, problem.value, problem.line) == ("stages.1.name", "bad name", 17)

    def test_yaml_syntax_error_has_a_line(self, write_config: WriteConfig) -> None:
        """A YAML syntax error is reported with the line the parser stopped at."""
        text = GOOD.replace("  raw: [md.raw]\n", "  raw: [md.raw\n")
        path = write_config(text)
        problem = only_problem(path)
        assert problem.key == ""
        assert problem.message.startswith("not valid YAML: ")
        assert problem.line == 6
        assert problem.render(path).startswith(f"{path}:6: (top level): not valid YAML: ")

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("- broker\n- topics\n", ["broker", "topics"]),
            ("just words\n", "just words"),
            ("42\n", 42),
        ],
        ids=["list", "string", "number"],
    )
    def test_file_that_is_not_a_mapping(
        self, write_config: WriteConfig, text: str, value: object
    ) -> None:
        """A file holding a list or a scalar is refused, showing what it holds."""
        path = write_config(text)
        problem = only_problem(path)
        assert (problem.key, problem.message, problem.value) == (
            "",
            "the file must hold a mapping of keys",
            value,
        )
        assert problem.render(path) == (
            f"{path}: (top level): the file must hold a mapping of keys (got {value!r})"
        )

    def test_empty_file_lists_every_missing_section(self, write_config: WriteConfig) -> None:
        """An empty file is reported as missing each required section."""
        problems = problems_of(write_config("# nothing yet\n"))
        assert [(p.key, p.message) for p in problems] == [
            ("broker", "required key is missing"),
            ("topics", "required key is missing"),
            ("rules", "required key is missing"),
        ]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is reported with the system's reason."""
        path = tmp_path / "absent.yaml"
        problem = only_problem(path)
        assert (problem.key, problem.message) == ("", "cannot read: No such file or directory")
        assert str(ConfigError(path, [problem])) == (
            f"{path}: (top level): cannot read: No such file or directory"
        )

    def test_folder_instead_of_a_file(self, tmp_path: Path) -> None:
        """A folder given as the config file is reported as unreadable."""
        assert only_problem(tmp_path).message == "cannot read: Is a directory"

    @pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file"
    )
    def test_unreadable_file(self, write_config: WriteConfig) -> None:
        """A file without read permission is reported as unreadable."""
        path = write_config(GOOD)
        path.chmod(0)
        try:
            assert only_problem(path).message == "cannot read: Permission denied"
        finally:
            path.chmod(0o600)

    def test_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        """A file with bytes that are not UTF-8 is a ConfigError, not a crash."""
        path = tmp_path / "latin1.yaml"
        path.write_bytes(GOOD.encode() + b"# caf\xe9\n")
        problem = only_problem(path)
        assert problem.key == ""
        assert (
            problem.message == f"not UTF-8 text (byte {len(GOOD) + 5}): invalid continuation byte"
        )

    def test_every_problem_is_reported_at_once(self, write_config: WriteConfig) -> None:
        """A file with many mistakes reports all of them in one ConfigError, each with its line."""
        text = """\
version: 1
broker:
  client: {}
topics:
  raw: [md.raw]
  clean: md.raw
  dead_letter: md.dlq
store:
  flush_rows: 0
  colour: red
  database: 'my-db'
gate:
  clock_error: soon
  origin: {unit: weeks}
rules:
  files: []
"""
        path = write_config(text)
        problems = problems_of(path)
        found = {(p.key, p.line) for p in problems}
        assert found == {
            ("broker", 2),
            ("topics", 4),
            ("store.flush_rows", 9),
            ("store.colour", 10),
            ("store.database", 11),
            ("gate.clock_error", 13),
            ("gate.origin.unit", 14),
            ("rules.files", 16),
        }
        rendered = str(ConfigError(path, problems)).splitlines()
        assert len(rendered) == len(problems)
        assert f"{path}:10: store.colour: unknown key (got 'red')" in rendered


class TestProblem:
    def test_render_with_everything(self) -> None:
        """A problem renders as FILE:LINE: key: message (got value) [from $ENV]."""
        problem = Problem(
            "store.flush_rows", "too small", 0, line=9, env="STAMPLINE_STORE__FLUSH_ROWS"
        )
        assert problem.render("conf.yaml") == (
            "conf.yaml:9: store.flush_rows: too small (got 0) [from $STAMPLINE_STORE__FLUSH_ROWS]"
        )

    def test_render_without_line_or_value(self) -> None:
        """Without a line the file stands alone; without a value nothing is shown as got."""
        assert (
            Problem("", "cannot read").render(Path("a.yaml")) == "a.yaml: (top level): cannot read"
        )

    def test_to_dict_makes_values_json_friendly(self) -> None:
        """to_dict has the five documented keys and turns non-JSON values into text."""
        assert Problem("store.path", "bad", Path("/x"), 3).to_dict() == {
            "key": "store.path",
            "message": "bad",
            "value": "PosixPath('/x')",
            "line": 3,
            "env": None,
        }
        assert Problem("k", "m", ("a", {1: [2]})).to_dict()["value"] == ["a", {"1": [2]}]


class TestCheckConfig:
    def test_missing_rule_file_is_reported(self, write_config: WriteConfig) -> None:
        """A configuration whose rule file does not exist is reported under rules.files."""
        path = write_config(GOOD.replace(str(MARKET_RULES), "missing.rules.yaml"))
        config, problems = check_config(path)
        assert config is not None
        assert [p.key for p in problems] == ["rules.files"]
        assert str(path.parent / "missing.rules.yaml") in problems[0].message
        assert "cannot read: " in problems[0].message

    def test_invalid_rule_file_is_reported(self, write_config: WriteConfig) -> None:
        """A rule file with a bad rule is reported with the rule's key path."""
        write_config(
            "version: 1\nrules:\n  - {id: a.b, version: 1, kind: nope}\n", "bad.rules.yaml"
        )
        path = write_config(GOOD.replace(str(MARKET_RULES), "bad.rules.yaml"))
        _, problems = check_config(path)
        assert len(problems) == 1
        assert problems[0].key == "rules.files"
        assert "bad.rules.yaml:3: rules.0:" in problems[0].message

    def test_missing_rule_file_is_reported_beside_other_problems(
        self, write_config: WriteConfig
    ) -> None:
        """A missing rule file and a missing alert definitions file are reported with their
        lines even when the configuration has other problems."""
        text = GOOD.replace(str(MARKET_RULES), "missing.rules.yaml")
        text = text.replace("flush_rows: 500", "flush_rows: x")
        path = write_config(text + "alerting:\n  definitions: gone.alerts.yaml\n")
        config, problems = check_config(path)
        assert config is None
        assert [(p.key, p.line) for p in problems] == [
            ("store.flush_rows", 10), ("rules.files.0", 14), ("alerting.definitions", 16),
        ]  # fmt: skip
        assert problems[1].message == f"{path.parent / 'missing.rules.yaml'}: cannot read: " + (
            "no such file"
        )

    def test_rule_and_definition_problems_are_reported_together(
        self, write_config: WriteConfig
    ) -> None:
        """A loadable configuration with a missing rule file and a missing definitions file
        reports both."""
        text = GOOD.replace(str(MARKET_RULES), "missing.rules.yaml")
        path = write_config(text + "alerting:\n  definitions: gone.alerts.yaml\n")
        _, problems = check_config(path)
        assert [p.key for p in problems] == ["rules.files", "alerting.definitions"]

    def test_config_problems_are_returned_not_raised(self, write_config: WriteConfig) -> None:
        """check_config returns the problems of an invalid file and no configuration."""
        config, problems = check_config(
            write_config(GOOD.replace("flush_rows: 500", "flush_rows: x"))
        )
        assert config is None
        assert [p.key for p in problems] == ["store.flush_rows"]
