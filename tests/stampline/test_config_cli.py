"""`stampline config check FILE [--json]`: exit status, problem lines and JSON output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from stampline.cli import app
from stampline.config import ENV_PREFIX, check_config
from tests.stampline.conftest import EXAMPLE, MARKET_RULES, REPO, WriteConfig

STAMPLINE = Path(sys.executable).parent / "stampline"

GOOD = f"""\
version: 1
broker:
  bootstrap_servers: localhost:9092
topics:
  raw: [md.raw]
  clean: md.clean
  dead_letter: md.dlq
rules:
  files: [{MARKET_RULES}]
"""

# Four mistakes, reported at lines 2 (broker), 4 (topics), 9 and 10.
BAD = f"""\
version: 1
broker:
  client: {{}}
topics:
  raw: [md.raw]
  clean: md.raw
  dead_letter: md.dlq
store:
  flush_rows: lots
  colour: red
rules:
  files: [{MARKET_RULES}]
"""


def check(*args: str, env: dict[str, str] | None = None, columns: int = 80) -> Result:
    """Run ``stampline config check ARGS`` in-process with a terminal ``columns`` wide.

    80 columns is narrower than most problem lines: they must not be wrapped.
    """
    return CliRunner().invoke(
        app, ["config", "check", *args], env={"COLUMNS": str(columns), **(env or {})}
    )


def run_stampline(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``stampline`` command with piped output and no terminal width set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.pop("COLUMNS", None)
    return subprocess.run(
        [str(STAMPLINE), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def as_json(result: Result) -> dict[str, Any]:
    parsed = orjson.loads(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


class TestOk:
    def test_example_file_is_ok(self) -> None:
        """The example file exits 0 with one ok line summarising topics, store and rules."""
        result = check(str(EXAMPLE))
        assert result.exit_code == 0, result.output
        assert result.stdout == (
            f"{EXAMPLE}: ok — raw md.raw → clean md.clean, dead letters md.dlq, "
            f"store chdb at {REPO / 'stampline-data'}, 1 rule file(s)\n"
        )
        assert result.stderr == ""

    def test_installed_command_checks_the_example(self) -> None:
        """The installed ``stampline`` script exits 0 for the example, run from the repo root."""
        completed = subprocess.run(
            [str(STAMPLINE), "config", "check", "examples/stampline.yaml"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)},
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.startswith(
            "examples/stampline.yaml: ok — raw md.raw → clean md.clean"
        )
        assert completed.stderr == ""

    def test_ok_line_reflects_env_overrides(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An environment override is what the check validates and summarises."""
        monkeypatch.setenv("STAMPLINE_TOPICS__CLEAN", "md.validated")
        result = check(str(EXAMPLE))
        assert result.exit_code == 0, result.output
        assert "→ clean md.validated," in result.stdout

    def test_json_for_an_ok_file(self) -> None:
        """--json prints file, ok true and an empty problem list, and exits 0."""
        result = check(str(EXAMPLE), "--json")
        assert result.exit_code == 0
        assert as_json(result) == {"file": str(EXAMPLE), "ok": True, "problems": []}
        assert result.stderr == ""


class TestProblems:
    def test_every_problem_is_listed_and_exit_is_1(self, write_config: WriteConfig) -> None:
        """A bad file exits 1 and lists every problem as FILE:LINE: key: message (got value)."""
        path = write_config(BAD)
        result = check(str(path))
        assert result.exit_code == 1
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert lines == [
            f"{path}:2: broker: set bootstrap_servers (host:port,...) or embedded: true",
            f"{path}:4: topics: clean topic 'md.raw' is also a raw topic: the gate would loop",
            f"{path}:9: store.flush_rows: Input should be a valid integer, unable to parse "
            "string as an integer (got 'lots')",
            f"{path}:10: store.colour: unknown key (got 'red')",
            f"4 problem(s) in {path}",
        ]

    def test_problem_lines_match_check_config(self, write_config: WriteConfig) -> None:
        """The printed lines are exactly the rendered problems check_config finds."""
        path = write_config(BAD)
        _, problems = check_config(path)
        result = check(str(path))
        assert result.stderr.splitlines()[:-1] == [p.render(path) for p in problems]

    def test_bad_env_value_names_the_variable(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad value from the environment is printed with the variable it came from."""
        monkeypatch.setenv("STAMPLINE_STORE__FLUSH_ROWS", "many")
        path = write_config(GOOD)
        result = check(str(path))
        assert result.exit_code == 1
        assert result.stderr.splitlines()[0].endswith(
            "store.flush_rows: Input should be a valid integer, unable to parse string as an "
            "integer (got 'many') [from $STAMPLINE_STORE__FLUSH_ROWS]"
        )

    def test_missing_rule_file_is_reported(self, write_config: WriteConfig) -> None:
        """A config whose rule file does not exist fails the check, naming the rule file."""
        path = write_config(GOOD.replace(str(MARKET_RULES), "gone.rules.yaml"))
        result = check(str(path))
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            f"{path}: rules.files: {path.parent / 'gone.rules.yaml'}: cannot read: "
            "No such file or directory",
            f"1 problem(s) in {path}",
        ]

    def test_invalid_rule_file_is_reported(self, write_config: WriteConfig) -> None:
        """A rule file with a bad rule fails the check with the rule file's own message."""
        write_config(
            "version: 1\nrules:\n  - {id: a.b, version: 1, kind: range, field: p, colour: red}\n",
            "bad.rules.yaml",
        )
        path = write_config(GOOD.replace(str(MARKET_RULES), "bad.rules.yaml"))
        result = check(str(path))
        assert result.exit_code == 1
        assert f"{path}: rules.files: {path.parent / 'bad.rules.yaml'}: invalid rule file:" in (
            result.stderr
        )
        assert "rules.0.range.colour: Extra inputs are not permitted (got 'red')" in result.stderr

    def test_missing_config_file(self, tmp_path: Path) -> None:
        """A config file that does not exist is a problem, not a crash."""
        path = tmp_path / "absent.yaml"
        result = check(str(path))
        assert result.exit_code == 1
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.stderr.splitlines()[0] == (
            f"{path}: (top level): cannot read: No such file or directory"
        )

    def test_yaml_syntax_error_shows_the_line(self, write_config: WriteConfig) -> None:
        """A YAML syntax error exits 1 with the file and line in front."""
        path = write_config(GOOD.replace("raw: [md.raw]", "raw: [md.raw"))
        result = check(str(path))
        assert result.exit_code == 1
        assert result.stderr.startswith(f"{path}:6: (top level): not valid YAML: ")

    def test_config_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        """A config file with bytes that are not UTF-8 is a problem line, not a traceback."""
        path = tmp_path / "latin1.yaml"
        path.write_bytes(b"version: 1\n# caf\xe9\n")
        result = check(str(path))
        assert result.exit_code == 1
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.stderr.splitlines()[0] == (
            f"{path}: (top level): not UTF-8 text (byte 16): invalid continuation byte"
        )

    def test_file_argument_is_required(self) -> None:
        """Without a FILE argument the command is a usage error (exit 2)."""
        result = check()
        assert result.exit_code == 2

    def test_piped_problem_lines_are_not_wrapped(self, write_config: WriteConfig) -> None:
        """With stderr piped, each problem stays on one line that starts with FILE:LINE:."""
        path = write_config(BAD)
        completed = run_stampline("config", "check", str(path))
        assert completed.returncode == 1
        lines = completed.stderr.splitlines()
        assert len(lines) == 5, lines
        assert all(line.startswith(f"{path}:") for line in lines[:-1]), lines


class TestJson:
    def test_json_shape_and_content(self, write_config: WriteConfig) -> None:
        """--json prints file, ok and each problem's key, message, value, line and env."""
        path = write_config(BAD)
        result = check(str(path), "--json")
        assert result.exit_code == 1
        assert result.stderr == ""
        report = as_json(result)
        assert set(report) == {"file", "ok", "problems"}
        assert report["file"] == str(path)
        assert report["ok"] is False
        for problem in report["problems"]:
            assert set(problem) == {"key", "message", "value", "line", "env"}
        assert [(p["key"], p["line"], p["value"]) for p in report["problems"]] == [
            ("broker", 2, None),
            ("topics", 4, None),
            ("store.flush_rows", 9, "lots"),
            ("store.colour", 10, "red"),
        ]
        assert report["problems"][3]["message"] == "unknown key"
        assert all(p["env"] is None for p in report["problems"])

    def test_json_matches_check_config(self, write_config: WriteConfig) -> None:
        """The JSON problems are check_config's problems as dictionaries."""
        path = write_config(BAD)
        _, problems = check_config(path)
        assert as_json(check(str(path), "--json"))["problems"] == [p.to_dict() for p in problems]

    def test_json_names_the_env_variable(
        self, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In JSON, a problem from the environment carries the variable's name."""
        monkeypatch.setenv("STAMPLINE_GATE__ORIGIN__UNIT", "weeks")
        result = check(str(write_config(GOOD)), "--json")
        assert result.exit_code == 1
        (problem,) = as_json(result)["problems"]
        assert (problem["key"], problem["value"], problem["env"]) == (
            "gate.origin.unit",
            "weeks",
            "STAMPLINE_GATE__ORIGIN__UNIT",
        )

    def test_json_reports_a_missing_rule_file(self, write_config: WriteConfig) -> None:
        """In JSON, a missing rule file is a rules.files problem and ok is false."""
        path = write_config(GOOD.replace(str(MARKET_RULES), "gone.rules.yaml"))
        result = check(str(path), "--json")
        assert result.exit_code == 1
        report = as_json(result)
        assert report["ok"] is False
        (problem,) = report["problems"]
        assert problem["key"] == "rules.files"
        assert str(path.parent / "gone.rules.yaml") in problem["message"]
        assert (problem["value"], problem["line"], problem["env"]) == (None, None, None)

    def test_json_value_of_a_list_file(self, write_config: WriteConfig) -> None:
        """In JSON, a file holding a list shows that list as the bad value."""
        result = check(str(write_config("- a\n- 1\n")), "--json")
        assert result.exit_code == 1
        (problem,) = as_json(result)["problems"]
        assert (problem["key"], problem["value"]) == ("", ["a", 1])


def test_the_file_is_also_given_as_config_or_from_the_environment(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config check` takes its file as every other command does too (`--config`, or
    $STAMPLINE_CONFIG); two different files, or none, are a usage error naming the cause."""
    good, bad = write_config(GOOD, "good.yaml"), write_config(BAD, "bad.yaml")
    runner = CliRunner()
    assert runner.invoke(app, ["config", "check", "--config", str(good)]).exit_code == 0
    assert runner.invoke(app, ["config", "check", "-c", str(bad)]).exit_code == 1
    both = runner.invoke(app, ["config", "check", "-c", str(good), str(bad)])
    assert (both.exit_code, "two files to check" in both.stderr) == (2, True)
    none = runner.invoke(app, ["config", "check"])
    assert (none.exit_code, "no configuration" in none.stderr) == (2, True)
    monkeypatch.setenv("STAMPLINE_CONFIG", str(bad))
    from_env = runner.invoke(app, ["config", "check"])
    assert (from_env.exit_code, str(bad) in from_env.stderr) == (1, True)
