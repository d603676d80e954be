"""Configuration and rule files are read within limits (size, nesting, aliases), and `config
check` refuses every value the runtime cannot hold, naming the key and the value."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stampline._common import YamlLimitError, load_yaml
from stampline._common._yaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH
from stampline.cli import app
from stampline.config import ConfigError, load_config
from tests.stampline.conftest import MARKET_RULES, WriteConfig

runner = CliRunner()

BASE = (
    "version: 1\nbroker: {embedded: true}\n"
    "topics: {raw: [md.raw], clean: md.clean, dead_letter: md.dlq}\n"
)
RULES = f"rules: {{files: [{MARKET_RULES}]}}\n"


def _laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        name, prev = chr(97 + i), chr(96 + i)
        text += f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n"
    return text


def _check(path: Path) -> list[dict[str, object]]:
    result = runner.invoke(app, ["config", "check", "--json", str(path)])
    assert result.exit_code == 1, result.output
    problems: list[dict[str, object]] = orjson.loads(result.stdout)["problems"]
    return problems


HOSTILE = {
    "billion laughs": _laughs(),
    "deep lists": "x: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "deep mappings": "x: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n",
    "deep block": "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 70 + "v\n",
    "many aliases": "a: &a 1\nb: [" + ",".join(["*a"] * (MAX_ALIASES + 1)) + "]\n",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_config_file_is_one_clear_problem(write_config: WriteConfig, kind: str) -> None:
    """Exponential aliases, 20,000-deep nesting and too many aliases each give one problem
    naming the limit and the line, not MemoryError or RecursionError."""
    path = write_config(BASE + RULES + HOSTILE[kind])
    (problem,) = _check(path)
    message = str(problem["message"])
    assert message.startswith("YAML past a limit: "), message
    assert problem["line"] is not None


def test_an_oversized_config_file_is_refused_without_reading_it_all(
    write_config: WriteConfig,
) -> None:
    """A file over the size limit is one problem saying so."""
    path = write_config(BASE + RULES + "# " + "x" * MAX_BYTES + "\n")
    (problem,) = _check(path)
    assert "larger than 1,048,576 bytes" in str(problem["message"])


@pytest.mark.parametrize(
    ("kind", "says"),
    [("billion laughs", "more than 100,000 values"), ("deep lists", "nested more than 64")],
)
def test_a_hostile_rule_file_is_one_clear_problem(
    write_config: WriteConfig, tmp_path: Path, kind: str, says: str
) -> None:
    """A rule file named by the configuration is read within the same limits."""
    rules = tmp_path / "hostile.rules.yaml"
    rules.write_text("version: 1\nrules: []\n" + HOSTILE[kind])
    path = write_config(BASE + f"rules: {{files: [{rules}]}}\n")
    (problem,) = _check(path)
    assert problem["key"] == "rules.files"
    assert says in str(problem["message"])


def test_a_hostile_alerts_file_is_one_clear_problem(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """The alert definitions file a configuration names is read within the same limits."""
    alerts = tmp_path / "hostile.alerts.yaml"
    alerts.write_text("version: 1\n" + HOSTILE["many aliases"])
    path = write_config(BASE + RULES + f"alerting: {{definitions: {alerts}}}\n")
    (problem,) = _check(path)
    assert problem["key"] == "alerting.definitions"
    assert f"{alerts}:3: YAML past a limit: more than 100 aliases" in str(problem["message"])


# (section, key, value as written in YAML, what the message says)
BOUNDS = [
    ("store", "flush_interval", "1.0e+308", "at most 1h00m"),
    ("store", "flush_interval", "2h", "at most 1h00m"),
    ("gate", "clock_error", "1000000000000", "at most 1m00s"),
    ("gate", "clock_error", "'10**12'", "not a duration"),
    ("gate", "allowed_lateness", "30d", "at most 7d"),
    ("rules", "reload_interval", "400d", "at most 24h00m"),
    ("recorder", "query_timeout", "0.5", "at least 1.0s"),
    ("recorder", "query_timeout", "2d", "at most 24h00m"),
    ("store.retention", "raw", "1000y", "not a duration"),
    ("store.retention", "raw", "9999999999", "at most"),
    ("store.retention", "rollups", "30m", "at least 1h"),
    ("store", "flush_rows", "1.0e+308", "integer"),
    ("store", "flush_rows", "0", "greater than or equal to 1"),
    ("gate", "max_message_bytes", "1.0e+308", "integer"),
    ("gate", "consume_batch", "10000000", "less than or equal"),
    ("gate", "queue_batches", "-1", "greater than or equal"),
    ("gate", "batch_bytes", "1000", "greater than or equal to 65536"),
    ("gate", "batch_bytes", "1.0e+308", "integer"),
    ("tap", "consume_batch", "0", "greater than or equal"),
    ("topics", "partitions", "100000", "less than or equal"),
    ("metrics", "port", "70000", "less than or equal"),
    ("metrics", "max_label_values", "1.0e+308", "integer"),
]


@pytest.mark.parametrize(("section", "key", "value", "says"), BOUNDS)
def test_config_check_refuses_values_the_runtime_cannot_hold(
    write_config: WriteConfig, section: str, key: str, value: str, says: str
) -> None:
    """Each numeric setting has bounds; a value past them is a problem naming key and value."""
    data = yaml.safe_load(BASE + RULES)
    node = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = yaml.safe_load(value)
    path = write_config(yaml.safe_dump(data))
    (problem,) = _check(path)
    assert problem["key"] == f"{section}.{key}"
    assert says in str(problem["message"])
    assert problem["value"] is not None


def test_an_environment_value_past_a_bound_names_the_variable(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STAMPLINE_STORE__FLUSH_INTERVAL=1e308 is refused, naming the variable."""
    path = write_config(BASE + RULES)
    monkeypatch.setenv("STAMPLINE_STORE__FLUSH_INTERVAL", "100000000")
    (problem,) = _check(path)
    assert problem["env"] == "STAMPLINE_STORE__FLUSH_INTERVAL"
    assert "at most" in str(problem["message"])


def test_values_at_the_bounds_are_accepted(write_config: WriteConfig) -> None:
    """The largest allowed values load: the bounds refuse nothing a deployment may need."""
    path = write_config(
        BASE
        + RULES
        + "store: {flush_interval: 1h, retention: {raw: 36500d, rollups: 1h}}\n"
        + "gate: {clock_error: 1m, allowed_lateness: 7d}\n"
    )
    config = load_config(path)
    assert config.gate.clock_error_ns == 60 * 10**9
    assert config.store.flush_interval_ns == 3600 * 10**9


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]{}&*:,- \n\tab1'\"!|>#%@")), max_size=400))
def test_the_loader_raises_only_yaml_errors(text: str) -> None:
    """Any text either loads or raises a YAML error; never RecursionError or another crash."""
    with contextlib.suppress(yaml.YAMLError):
        load_yaml(text)


def test_a_config_past_a_limit_is_a_config_error(write_config: WriteConfig) -> None:
    """load_config turns a limit into ConfigError, so every command reports it the same way."""
    path = write_config(BASE + RULES + HOSTILE["billion laughs"])
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert isinstance(caught.value.problems[0].message, str)


def test_the_limit_error_is_a_yaml_error() -> None:
    """YamlLimitError is a yaml.YAMLError, so existing YAML handlers report it."""
    with pytest.raises(YamlLimitError):
        load_yaml(HOSTILE["deep lists"])


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("STAMPLINE_BROKER__CLIENT", '{"a": ' + "[" * 20_000 + "]" * 20_000 + "}", "nested"),
        ("STAMPLINE_TOPICS__RAW", "[" * 20_000 + "]" * 20_000, "nested"),
        ("STAMPLINE_STORE", '{"a":' * 5_000 + "1" + "}" * 5_000, "nested"),
        ("STAMPLINE_GATE__GROUP_ID", "g" * 70_000, "longer than 65,536 characters"),
    ],
)
def test_a_hostile_environment_value_is_one_clear_problem(
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    says: str,
) -> None:
    """20,000-deep JSON or a 70 kB value in a STAMPLINE_ variable is a problem naming the
    variable, not a RecursionError."""
    path = write_config(BASE + RULES)
    monkeypatch.setenv(variable, value)
    (problem,) = _check(path)
    assert problem["env"] == variable
    assert says in str(problem["message"])
    assert problem["value"] is None


def test_brackets_inside_json_strings_do_not_count_as_nesting(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client setting whose string value holds many brackets is not refused as deep."""
    path = write_config(BASE + RULES)
    monkeypatch.setenv("STAMPLINE_BROKER__CLIENT", '{"client.id": "' + "[" * 100 + '\\""}')
    config = load_config(path)
    assert config.broker.client["client.id"] == "[" * 100 + '"'


ENDLESS = "x" * 100_000


def test_an_endless_value_is_echoed_cut_short(write_config: WriteConfig, tmp_path: Path) -> None:
    """A refused value of 100,000 characters in the configuration, a rule file or the alert
    definitions is echoed as its first 200 characters and its length: the error is one
    readable line, not 100 KB of terminal."""
    rules = tmp_path / "endless.rules.yaml"
    rules.write_text(f"version: 1\nrules:\n  - {{id: {ENDLESS}, kind: not_a_kind}}\n")
    alerts = tmp_path / "endless.alerts.yaml"
    alerts.write_text(f"version: 1\nproviders: []\nalerts:\n  - {{id: a, kind: {ENDLESS}}}\n")
    cases = {
        "config": write_config(BASE.replace("md.clean", ENDLESS) + RULES, "a.yaml"),
        "rules": write_config(BASE + f"rules: {{files: [{rules}]}}\n", "b.yaml"),
        "alerts": write_config(BASE + RULES + f"alerting: {{definitions: {alerts}}}\n", "c.yaml"),
    }
    for name, path in cases.items():
        result = runner.invoke(app, ["config", "check", str(path)])
        assert result.exit_code == 1, (name, result.output[:500])
        text = result.stderr
        assert re.search(r"x{150}… \(100,0\d\d characters\)", text), (name, text[:1000])
        assert len(text) < 2_000, (name, len(text))
