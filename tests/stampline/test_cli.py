"""The CLI as people and scripts use it: replay, and the gate run as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from stampline.audit import AUTHORITY_TAP, ChdbStore, Observation
from stampline.cli import app
from stampline.collectors import H_EVENT_ID
from stampline.demo import rules_file
from tests.helpers import produce, read_all, record_until

runner = CliRunner()
STAMPLINE = [sys.executable, "-m", "stampline"]
T0 = 1_700_000_000_000_000_000


def _lineage(store: ChdbStore) -> tuple[str, str]:
    quote, decision = str(uuid.uuid4()), str(uuid.uuid4())
    store.write_observations(
        [
            Observation(
                quote,
                "gate",
                T0 + 10,
                T0 + 20,
                T0,
                T0 + 10,
                1_000,
                topic="md.raw",
                provider="alpha",
            ),
            Observation(
                decision,
                "risk",
                T0 + 30,
                T0 + 40,
                T0 + 40,
                T0 + 40,
                1_000,
                parents=(quote,),
                authority=AUTHORITY_TAP,
            ),
        ]
    )
    return quote, decision


def test_replay_decision_json_holds_decision_and_inputs_in_order(store: ChdbStore) -> None:
    """`replay --decision --json` prints the decision and its inputs, stamps in time order."""
    quote, decision = _lineage(store)
    result = runner.invoke(
        app,
        [
            "replay",
            "--decision",
            decision,
            "--store",
            str(store.path),
            "--database",
            store.database,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [e["event_id"] for e in doc["events"]] == [decision, quote]
    for e in doc["events"]:
        assert [s["time_ns"] for s in e["stamps"]] == sorted(s["time_ns"] for s in e["stamps"])
        assert {s["stage"] for s in e["stamps"]} >= {"origin", "ingest"}
    assert [s["stage"] for s in doc["events"][1]["stamps"]] == ["origin", "ingest", "gate"]


def test_replay_table_names_stages_and_deltas(store: ChdbStore) -> None:
    """The table form shows each sighting with its stage and delta from the first origin."""
    _, decision = _lineage(store)
    result = runner.invoke(
        app, ["replay", "-d", decision, "--store", str(store.path), "--database", store.database]
    )
    assert result.exit_code == 0, result.output
    for text in ("gate", "risk", "origin", "ingest", "2023-11-14T22:13:20.000000040Z", "alpha"):
        assert text in result.stdout


def test_replay_errors_are_clear(store: ChdbStore, tmp_path: Path) -> None:
    """Bad ids, unknown ids, missing stores and missing arguments each get a clear message."""
    db = ["--store", str(store.path), "--database", store.database]
    cases = [
        (["replay", "nope", *db], 2, "not a UUID"),
        (["replay", str(uuid.uuid4()), *db], 1, "no observation"),
        (["replay", "--decision", str(uuid.uuid4()), *db], 1, "no observation of decision"),
        (["replay", str(uuid.uuid4()), "--store", str(tmp_path / "nothing")], 1, "no store at"),
        (["replay", *db], 2, "exactly one of"),
        (["replay", str(uuid.uuid4())], 2, "--store PATH"),
    ]
    for args, code, text in cases:
        result = runner.invoke(app, args, env={"STAMPLINE_CONFIG": ""})
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr, (args, result.stderr)


def test_help_teaches_every_command() -> None:
    """Every command has help text that says what it does."""
    for cmd, text in [
        ([], "demo"),
        (["demo"], "replays"),
        (["replay"], "sighting"),
        (["gate"], "SIGTERM"),
        (["config", "check"], "problem"),
        (["broker"], "bootstrap"),
    ]:
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, (cmd, result.output)
        assert text in result.stdout, (cmd, result.stdout)


@pytest.mark.parametrize("cmd", [["run"], ["recorder"], ["alerts", "snooze"]])
def test_help_paragraphs_wrap_to_the_terminal_not_mid_sentence(cmd: list[str]) -> None:
    """On an 80-column terminal a command's description is reflowed: every line of a
    paragraph but its last fills the width (no lone word left by a docstring's own line
    break), and the text reads as written."""
    result = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 2
    end = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    body = [line.strip() for line in lines[start:end]]
    for line, following in pairwise(body):
        if line and following:  # inside a paragraph, the line is full
            assert len(line) + 1 + len(following.split()[0]) > 78, (line, following)
    if cmd == ["run"]:
        assert "logs to <name>.log in the log folder" in " ".join(body)


def _warn_rules(tmp_path: Path) -> Path:
    """A warn rule beside the demo rules: large trades are forwarded, flagged and counted."""
    path = tmp_path / "warn.rules.yaml"
    path.write_text(
        "version: 2\nrules:\n  - id: quantity.large\n    version: 2\n    kind: range\n"
        "    field: quantity\n    max: 1000\n    severity: warn\n"
    )
    return path


def _config(
    tmp_path: Path, bootstrap: str, raw: str, clean: str, dlq: str, group: str, trail: str = "t"
) -> Path:
    path = tmp_path / "stampline.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"bootstrap_servers": bootstrap},
                "topics": {"raw": [raw], "clean": clean, "dead_letter": dlq, "trail": trail},
                "store": {"path": "trail", "flush_interval": "100ms"},
                "gate": {"group_id": group, "max_message_bytes": 4096},
                "rules": {"files": [str(rules_file()), str(_warn_rules(tmp_path))]},
            }
        )
    )
    return path


def test_gate_process_runs_until_sigterm_then_flushes_and_exits_cleanly(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    uid: str,
    tmp_path: Path,
    store: ChdbStore,
    chdb_dir: Path,
) -> None:
    """`stampline gate` forwards and dead-letters, and on SIGTERM sends its trail to the trail
    topic and exits 0; once recorded, the forwarded event replays."""
    raw, clean, dlq, trail = make_topics("raw", "clean", "dlq", "trail")
    config = _config(tmp_path, bootstrap, raw, clean, dlq, f"{uid}-gate", trail)
    now = int(time.time() * 1000)
    good = [
        orjson.dumps(
            {
                "provider": "alpha",
                "instrument": "X",
                "seq": i,
                "ts": now,
                "type": "trade",
                "price": 10.5,
                "quantity": 5000 if i == 7 else 3,  # one large trade: a warning
            }
        )
        for i in range(30)
    ]
    produce(bootstrap, raw, [(None, v) for v in [*good, b"{broken", b"x" * 5000]])
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    proc = subprocess.Popen(
        [*STAMPLINE, "gate", "--config", str(config)], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        forwarded = read_all(bootstrap, clean, 30, idle_s=0.5)
        dead = read_all(bootstrap, dlq, 2, idle_s=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped cleanly" in stderr
    assert "in 32" in stderr
    assert "warned 1 (quantity.large 1)" in stderr  # the progress line shows warn verdicts
    assert (len(forwarded), len(dead)) == (30, 2)
    event_id = (forwarded[0].header(H_EVENT_ID) or b"").decode()
    # Recorded into the session's store folder (one chDB folder per process), and replayed by
    # the CLI in this process for the same reason.
    record_until(
        bootstrap,
        trail,
        store,
        f"{uid}-rec",
        lambda: store.query("SELECT count() AS n FROM {db}.observations")[0]["n"] >= 32,
    )
    replay = runner.invoke(
        app, ["replay", event_id, "--store", str(chdb_dir), "--database", store.database, "--json"]
    )
    assert replay.exit_code == 0, replay.output
    (event,) = json.loads(replay.stdout)["events"]
    assert event["outcome"] == "forwarded"
    assert event["source"]["topic"] == raw


def test_gate_refuses_a_bad_config_with_the_key_named(tmp_path: Path) -> None:
    """A gate started on an invalid file exits 1 naming the bad key, before touching Kafka."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nbroker: {embedded: true}\ntopics: {raw: [a], clean: a, dead_letter: d}\n"
        "rules: {files: [x.yaml]}\ngate: {clock_error: soon}\n"
    )
    result = runner.invoke(app, ["gate", "--config", str(bad)])
    assert result.exit_code == 1
    assert "topics" in result.stderr
    assert "loop" in result.stderr


def test_progress_is_printed_only_when_it_changed(capsys: pytest.CaptureFixture[str]) -> None:
    """A sidecar's progress line (the recorder's, the tap's) is printed when it differs from
    the last one printed: an idle process does not repeat `messages 0 rows 0`."""
    from stampline.cli._start import report_progress

    lines = iter(["messages 0 rows 0"] * 4 + ["messages 5 rows 9"] * 3 + ["messages 0 rows 0"])
    stop = threading.Event()
    done = threading.Event()

    def line() -> str:
        got = next(lines, None)
        if got is None:  # the feed is over: the same line again, then stop
            stop.set()
            done.set()
            return "messages 0 rows 0"
        return got

    report_progress(stop, line, every_s=0.01)
    assert done.wait(30)
    time.sleep(0.05)  # the loop's last print, if any, lands
    assert capsys.readouterr().err.splitlines() == [
        "messages 0 rows 0", "messages 5 rows 9", "messages 0 rows 0",
    ]  # fmt: skip
