"""No output, log line or error shows a secret's value, whichever way it arrived."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest
from typer.testing import CliRunner

from stampline import _redact
from stampline._redact import RedactingFormatter, is_secret_key, redact, remember, scrub
from stampline.cli import app
from tests.stampline.conftest import MARKET_RULES, WriteConfig

runner = CliRunner()
SECRET = "S3cr3t-Value"
STAMPLINE = [sys.executable, "-m", "stampline"]


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    """Each test starts with no remembered secret, so one test's secrets cannot hide another's."""
    _redact.forget_all()
    yield
    _redact.forget_all()


def _config(
    broker: str = "bootstrap_servers: 127.0.0.1:9", client: str = "{}", extra: str = ""
) -> str:
    return (
        f"version: 1\nbroker:\n  {broker}\n  client: {client}\n"
        "topics: {raw: [md.raw], clean: md.clean, dead_letter: md.dlq}\n"
        f"rules: {{files: [{MARKET_RULES}]}}\n{extra}"
    )


def _assert_hidden(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert SECRET[:-1] not in text  # nor a recognisable part of it


@pytest.mark.parametrize(
    "env_value",
    [
        f'{{"sasl.password": "{SECRET}",}}',  # malformed JSON: a trailing comma
        f'{{"sasl.password": "{SECRET}"',  # unterminated
        f"{{'sasl.password': '{SECRET}'}}",  # single quotes
        f'{{"sasl.username": "bob", "sasl.password": {SECRET}}}',  # an unquoted value
    ],
)
def test_malformed_client_json_in_the_environment_never_shows_the_password(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, env_value: str
) -> None:
    """`config check`, its --json and `gate` name the bad variable but not the password."""
    path = write_config(_config())
    monkeypatch.setenv("STAMPLINE_BROKER__CLIENT", env_value)
    text = runner.invoke(app, ["config", "check", str(path)])
    as_json = runner.invoke(app, ["config", "check", "--json", str(path)])
    gate = runner.invoke(app, ["gate", "--config", str(path)])
    for result in (text, as_json, gate):
        assert result.exit_code == 1
        _assert_hidden(result.stdout, result.stderr)
    assert "STAMPLINE_BROKER__CLIENT" in text.stderr
    (problem,) = orjson.loads(as_json.stdout)["problems"]
    assert problem["env"] == "STAMPLINE_BROKER__CLIENT"


def test_a_secret_in_the_file_is_masked_in_every_problem(write_config: WriteConfig) -> None:
    """A bad secret value in the file is reported by key with its value masked, and a
    problem elsewhere in the file never shows a valid one."""
    path = write_config(
        _config(
            client=f"{{sasl.password: {SECRET}, sasl.oauthbearer.config: [{SECRET}x]}}",
            extra=f"store: {{password: [{SECRET}], flush_rows: 0}}\n",
        )
    )
    text = runner.invoke(app, ["config", "check", str(path)])
    as_json = runner.invoke(app, ["config", "check", "--json", str(path)])
    assert text.exit_code == as_json.exit_code == 1
    _assert_hidden(text.stderr, as_json.stdout)
    problems = {p["key"]: p for p in orjson.loads(as_json.stdout)["problems"]}
    assert problems["store.password"]["value"] == "***"
    assert "store.flush_rows" in problems
    assert "sasl.oauthbearer.config" in text.stderr  # the key is named, its value is not


def test_a_yaml_syntax_error_on_a_secret_line_does_not_quote_it(write_config: WriteConfig) -> None:
    """A YAML error points at line and column without quoting the text around it."""
    path = write_config(_config(extra=f'store:\n  password: "{SECRET}\n  user: x: y\n'))
    result = runner.invoke(app, ["config", "check", "--json", str(path)])
    assert result.exit_code == 1
    _assert_hidden(result.stdout)
    (problem,) = orjson.loads(result.stdout)["problems"]
    assert "not valid YAML" in problem["message"]
    assert problem["line"] is not None


def test_a_secret_from_an_environment_variable_is_hidden_when_echoed(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password given as STAMPLINE_STORE__PASSWORD is masked in the problem it causes."""
    path = write_config(_config(extra="store: {backend: clickhouse, url: 'http://x:1'}\n"))
    monkeypatch.setenv("STAMPLINE_STORE__PASSWORD", '["' + SECRET + '"]')
    result = runner.invoke(app, ["config", "check", "--json", str(path)])
    _assert_hidden(result.stdout, result.stderr)


def test_a_password_in_a_url_is_hidden_when_the_url_is_reported(
    write_config: WriteConfig,
) -> None:
    """A ClickHouse URL carrying user:password is refused without showing the password."""
    path = write_config(
        _config(extra=f"store: {{backend: clickhouse, url: ['http://bob:{SECRET}@ch:8123']}}\n")
    )
    result = runner.invoke(app, ["config", "check", "--json", str(path)])
    assert result.exit_code == 1
    _assert_hidden(result.stdout)
    (problem,) = orjson.loads(result.stdout)["problems"]
    assert problem["value"] == ["http://bob:***@ch:8123"]


def test_a_librdkafka_error_quoting_a_secret_value_is_scrubbed(write_config: WriteConfig) -> None:
    """librdkafka refusing a secret-looking setting echoes its value; `gate` prints it masked."""
    path = write_config(
        _config(client=f"{{security.protocol: SASL_PLAINTEXT, sasl.mechanism: {SECRET}}}")
    )
    result = runner.invoke(app, ["gate", "--config", str(path)])
    assert result.exit_code == 1
    assert "error: gate:" in result.stderr
    assert "Unsupported SASL mechanism: ***" in result.stderr
    _assert_hidden(result.stdout, result.stderr)


def test_gate_on_an_unreachable_broker_logs_no_secret_even_verbose(
    write_config: WriteConfig, closed_port: int
) -> None:
    """`stampline -v gate` with SASL settings against a closed port: one error line naming
    the address, exit 1, librdkafka's lines only through logging, no secret anywhere."""
    path = write_config(
        _config(
            broker=f"bootstrap_servers: 127.0.0.1:{closed_port}",
            client=(
                "{security.protocol: SASL_PLAINTEXT, sasl.mechanism: PLAIN, "
                f"sasl.username: bob, sasl.password: {SECRET}}}"
            ),
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    proc = subprocess.run(
        [*STAMPLINE, "-v", "gate", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    _assert_hidden(proc.stdout, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: gate: cannot reach Kafka at 127.0.0.1:{closed_port} within 10 s: Broker "
        "transport failure (check broker.bootstrap_servers and broker.client)"
    ]
    assert "Traceback" not in proc.stderr
    assert not any(ln.startswith("%") for ln in proc.stderr.splitlines())
    assert "INFO stampline.kafka" in proc.stderr  # librdkafka's own lines, through logging


def test_log_lines_carry_no_remembered_secret_and_no_control_codes() -> None:
    """The CLI's log formatter masks a known secret, escapes a terminal escape, and keeps a
    message with a newline from data on one line."""
    remember([SECRET])
    record = logging.LogRecord(
        "stampline.x", logging.WARNING, __file__, 1, "auth failed for %s\x1b[2J", (SECRET,), None
    )
    text = RedactingFormatter("%(message)s").format(record)
    assert text == "auth failed for ***\\x1b[2J"
    forged = logging.LogRecord(
        "stampline.x", logging.WARNING, __file__, 1, "bad name %s", ("a\nERROR forged",), None
    )
    assert RedactingFormatter("%(message)s").format(forged) == "bad name a\\x0aERROR forged"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("store.password", True),
        ("broker.client.sasl.password", True),
        ("sasl.username", True),
        ("sasl.oauthbearer.client.secret", True),
        ("ssl.key.password", True),
        ("ssl.key.pem", True),
        ("api_key", True),
        ("token", True),
        ("ssl.ca.location", False),
        ("bootstrap.servers", False),
        ("store.user", False),
        ("gate.max_message_bytes", False),
    ],
)
def test_secret_keys_are_recognised(key: str, secret: bool) -> None:
    """Credential keys (password, secret, token, sasl.*, ssl.key.*) are secret; others not."""
    assert is_secret_key(key) is secret


def test_redact_masks_nested_secret_entries_and_scrub_longest_first() -> None:
    """A mapping keeps its keys with secret values masked; a secret containing another is
    hidden whole."""
    assert redact("broker.client", {"sasl.password": "p", "acks": "all"}) == {
        "sasl.password": "***",
        "acks": "all",
    }
    remember(["abcd", "abcdef"])
    assert scrub("x abcdef y abcd") == "x *** y ***"
