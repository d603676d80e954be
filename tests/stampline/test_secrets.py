"""No output, log line or error shows a secret's value, whichever way it arrived."""

from __future__ import annotations

import base64
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from stampline import _redact
from stampline._alerts import alertmanager_client
from stampline._redact import RedactingFormatter, is_secret_key, redact, remember, scrub
from stampline.alerting import AlertmanagerClient, Dispatcher, Lifecycle, parse_alerts
from stampline.cli import app
from stampline.config import load_config
from stampline.dashboards import grafana_alerting, push
from tests.alerting.conftest import FlakyServer
from tests.dashboards.grafana_api import RecordingGrafana
from tests.dashboards.test_alert_rules import DEFINITIONS
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
    (error,) = errors
    address = re.escape(f"127.0.0.1:{closed_port}")
    assert re.fullmatch(
        f"error: gate: cannot reach Kafka at {address} within 10 s: Broker transport failure; "
        f"the client's last error: sasl_plaintext://{address}/bootstrap: Connect to "
        f"ipv4#{address} failed: Connection refused \\(after \\d+ms in state CONNECT\\) "
        "\\(check broker.bootstrap_servers and broker.client\\)",
        error,
    ), error
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


PACKAGED_ALERTS = DEFINITIONS["packaged"]
GRAFANA_TOKEN = "glsa_secrets-test"
URL_SECRET = "Pw-in-the-URL"
URL_TOKEN = "tok-in-the-query"


def _hidden_url_secrets(*texts: str) -> None:
    for text in texts:
        assert URL_SECRET not in text
        assert URL_TOKEN not in text


def test_scrub_masks_url_user_info_and_token_parameters_without_remembering() -> None:
    """Any URL in a line has its password (also with an empty user) and token-like query
    parameters masked, whether or not the configuration brought them in."""
    line = f"at http://:{URL_SECRET}@am:9093/api?token={URL_TOKEN}&x=1 and http://u:{URL_SECRET}@h"
    assert scrub(line) == "at http://:***@am:9093/api?token=***&x=1 and http://u:***@h"


def test_alertmanager_basic_auth_from_the_url_and_from_settings(
    write_config: WriteConfig,
) -> None:
    """Credentials in the Alertmanager URL, or in alerting.alertmanager_username/password,
    reach Alertmanager as a basic Authorization header, and the request works."""
    server = FlakyServer()
    server.up("ok")
    try:
        port = server.url.rsplit(":", 1)[1]
        AlertmanagerClient(f"http://bob:{URL_SECRET}@127.0.0.1:{port}").post_alerts([{"a": 1}])
        path = write_config(
            _config(
                extra=(
                    f"alerting: {{alertmanager_url: 'http://127.0.0.1:{port}', "
                    f"alertmanager_username: ann, alertmanager_password: {URL_SECRET}}}\n"
                )
            )
        )
        client = alertmanager_client(load_config(path))
        assert client is not None
        client.post_alerts([{"a": 2}])
    finally:
        server.close()
    sent = [h.get("Authorization") for _m, _p, h, _b in server.requests]
    assert sent == [
        "Basic " + base64.b64encode(f"bob:{URL_SECRET}".encode()).decode(),
        "Basic " + base64.b64encode(f"ann:{URL_SECRET}".encode()).decode(),
    ]


def test_alert_delivery_logs_never_show_the_alertmanager_url_secrets(
    caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    """A gate's failed deliveries, and its re-sends to an Alertmanager that stopped
    answering, log the URL with its password and token masked."""
    defs = parse_alerts(
        "version: 1\nproviders: [{provider: a, venue: V, max_gap: 2s}]\n"
        "alerts: [{id: s, kind: provider_silent, severity: critical}]\n"
    )
    life = Lifecycle("s", "provider_silent", severity="critical")
    firing = life.observe((("provider", "a"), ("venue", "V")), 1, active=True, value=3.0)
    caplog.set_level(logging.WARNING, "stampline.alerting")
    down = f"http://:{URL_SECRET}@127.0.0.1:{closed_port}/?token={URL_TOKEN}"
    server = FlakyServer()
    server.up("ok")
    hangs = server.url.replace("http://", f"http://bob:{URL_SECRET}@") + f"/?token={URL_TOKEN}"
    dispatchers = [
        Dispatcher(
            defs,
            alertmanager=AlertmanagerClient(url, timeout_s=0.2),
            resend_s=0.1,
            retry_max_s=0.1,
        )
        for url in (down, hangs)
    ]
    for d in dispatchers:
        d(list(firing))
    try:
        assert dispatchers[1].flush(30)
        server.up("hang")
        deadline = time.monotonic() + 30
        while not any("re-send failed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no re-send logged"
            time.sleep(0.05)
    finally:
        for d in dispatchers:
            d.close(0.5)
        server.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("delivery failed" in ln and "127.0.0.1" in ln for ln in lines)
    assert any("re-send failed" in ln and "127.0.0.1" in ln for ln in lines)
    _hidden_url_secrets(*lines)


def test_grafana_export_writes_references_not_the_alertmanager_secrets(tmp_path: Path) -> None:
    """`grafana export --alertmanager-url` with a password and a token writes references
    Grafana resolves from its environment, never the values."""
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(PACKAGED_ALERTS)
    url = f"http://bo$b:{URL_SECRET}@alertmanager:9093/?token={URL_TOKEN}"
    result = runner.invoke(
        app, ["grafana", "export", str(tmp_path / "out"), "--alerts", str(alerts),
              "--alertmanager-url", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = [p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    _hidden_url_secrets(result.output, *written)
    notifications = yaml.safe_load(
        next((tmp_path / "out").rglob("stampline-notifications.yaml")).read_text()
    )
    (receiver,) = notifications["contactPoints"][0]["receivers"]
    assert receiver["settings"] == {
        "url": "http://alertmanager:9093/?token=$STAMPLINE_ALERTMANAGER_TOKEN",
        "basicAuthUser": "bo$$b",  # Grafana's literal $
        "basicAuthPassword": "$STAMPLINE_ALERTMANAGER_PASSWORD",
    }


def test_grafana_push_sends_the_alertmanager_password_itself() -> None:
    """Over the API, which expands no reference, the contact point gets the values, a `$`
    in them as it was."""
    url = f"http://bo$b:{URL_SECRET}$x@alertmanager:9093/?token={URL_TOKEN}"
    rendered = grafana_alerting(parse_alerts(PACKAGED_ALERTS), alertmanager_url=url)
    with RecordingGrafana(GRAFANA_TOKEN) as grafana:
        push(grafana.url, GRAFANA_TOKEN, alerting=rendered.sections)
        settings = grafana.state.contact_points["stampline-alertmanager"]["settings"]
    assert settings["basicAuthUser"] == "bo$b"
    assert settings["basicAuthPassword"] == URL_SECRET + "$x"
    assert settings["url"] == f"http://alertmanager:9093/?token={URL_TOKEN}"


def test_snooze_and_push_errors_do_not_show_a_url_password(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alerts snooze --alertmanager URL` and `grafana push --url URL` failing on an
    unreachable address print the URL with its password masked."""
    url = f"http://bob:{URL_SECRET}@127.0.0.1:{closed_port}/?token={URL_TOKEN}"
    snooze = runner.invoke(
        app, ["alerts", "snooze", "--reason", "r", "--alert", "x", "--alertmanager", url]
    )
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_x")
    push_ = runner.invoke(app, ["grafana", "push", "--url", url])
    for result in (snooze, push_):
        assert result.exit_code == 1, result.output
        assert "error:" in result.output
        _hidden_url_secrets(result.output)
