"""A part that cannot be reached or named ends a command with one clear line and exit 1 (or 2
for a bad option), never a traceback or librdkafka's retry log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stampline.audit import ChdbStore
from stampline.cli import app
from tests.stampline.conftest import MARKET_RULES, WriteConfig

runner = CliRunner()
STAMPLINE = [sys.executable, "-m", "stampline"]


def _config(broker: str, store: str = "{}") -> str:
    return (
        f"version: 1\nbroker: {{{broker}}}\n"
        "topics: {raw: [md.raw], clean: md.clean, dead_letter: md.dlq}\n"
        f"rules: {{files: [{MARKET_RULES}]}}\nstore: {store}\ntap: {{topics: [md.clean]}}\n"
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    return subprocess.run([*STAMPLINE, *args], capture_output=True, text=True, env=env, timeout=120)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    assert not any(ln.startswith("%") for ln in stderr.splitlines()), stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", ["gate", "tap"])
def test_sidecar_on_an_unreachable_broker_says_so_in_one_line(
    command: str, write_config: WriteConfig, closed_port: int, tmp_path: Path
) -> None:
    """gate and tap against a closed port exit 1 with one line naming the address."""
    path = write_config(
        _config(f"bootstrap_servers: '127.0.0.1:{closed_port}'", f"{{path: {tmp_path / 's'}}}")
    )
    proc = _run(command, "--config", str(path))
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert line.startswith(f"error: {command}: cannot reach Kafka at 127.0.0.1:{closed_port}")


def test_recorder_on_an_unreachable_clickhouse_says_so_in_one_line(
    bootstrap: str, write_config: WriteConfig, closed_port: int, uid: str
) -> None:
    """The recorder (the store's one writer; the gate never opens the store) whose ClickHouse
    URL refuses connections exits 1 naming the URL in one line (the broker is the real one,
    so the store is the only missing part)."""
    path = write_config(
        _config(
            f"bootstrap_servers: '{bootstrap}'",
            f"{{backend: clickhouse, url: 'http://127.0.0.1:{closed_port}'}}",
        ).replace("md.", f"{uid}.")
    )
    proc = _run("recorder", "--config", str(path))
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert line.startswith("error: ")
    assert f"cannot connect to ClickHouse at http://127.0.0.1:{closed_port}" in line


def test_a_query_on_an_unreachable_clickhouse_says_so_in_one_line(
    write_config: WriteConfig, closed_port: int
) -> None:
    """`replay` and `providers compare` on a configured ClickHouse that is down: one line."""
    path = write_config(
        _config("embedded: true", f"{{backend: clickhouse, url: 'http://127.0.0.1:{closed_port}'}}")
    )
    for args in (["replay", "some-id"], ["providers", "compare"]):
        proc = _run(*args, "--config", str(path))
        assert proc.returncode == 1
        line = _one_error_line(proc.stderr)
        assert f"cannot connect to ClickHouse at http://127.0.0.1:{closed_port}" in line


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "some-id"],
        ["providers", "compare"],
        ["hotspots"],
        ["completeness"],
        ["store", "migrate"],
        ["audit", "verify"],
    ],
)
def test_an_injected_database_name_is_a_usage_error(store: ChdbStore, args: list[str]) -> None:
    """--database 'x; DROP DATABASE y' exits 2 naming the option, before any query runs."""
    result = runner.invoke(
        app, [*args, "--store", str(store.path), "--database", "x; DROP DATABASE y"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --database: database name 'x; DROP DATABASE y'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unanticipated_error_is_one_line_and_verbose_adds_the_traceback(
    tmp_path: Path,
) -> None:
    """An error no command catches (export-gx writing into a missing folder) ends in one
    `error:` line and exit 1; with --verbose the traceback follows through logging."""
    pytest.importorskip("great_expectations")
    target = tmp_path / "missing" / "suite.json"
    args = ["rules", "export-gx", str(MARKET_RULES), "--output", str(target)]
    quiet = _run(*args)
    assert quiet.returncode == 1
    errors = [ln for ln in quiet.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: FileNotFoundError: [Errno 2] No such file or directory: '{target}' "
        "(run with --verbose for the traceback)"
    ]
    assert "Traceback" not in quiet.stderr
    verbose = _run("--verbose", *args)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr
