"""Data shown in a terminal is text: markup, emoji codes and control sequences from data or
from the user are shown as they are, never interpreted (through real chDB stores and the CLI)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stampline._terminal import SafeConsole, clean, line
from stampline.audit import ChdbStore, Observation
from stampline.cli import app
from stampline.cli._demo import _print_summary
from tests.audit.test_store_suite import pipeline
from tests.stampline.conftest import MARKET_RULES

runner = CliRunner()

HOSTILE = [
    "[/bold]",
    "[link=http://evil.example]click[/link]",
    "[bold red]alarm",
    ":warning:",
    "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[31mred",
    "abc\u202edcba",
]


def _store_args(store: ChdbStore, *extra: str) -> list[str]:
    return ["--store", str(store.path), "--database", store.database, *extra]


def _no_live_sequences(text: str) -> None:
    # A hyperlink is OSC 8 (ESC ] 8); any ESC at all would mean data reached the terminal raw.
    assert "\x1b" not in text
    assert "\u202e" not in text


@pytest.mark.parametrize("provider", HOSTILE)
def test_queries_show_a_hostile_provider_name_verbatim(store: ChdbStore, provider: str) -> None:
    """providers compare, completeness and hotspots print a markup-like or escape-laden
    provider name as text, without crashing, and --json keeps it byte for byte."""
    store.write_observations(pipeline(12, provider=provider))
    shown = clean(provider)
    for cmd in (
        ["providers", "compare"],
        ["providers", "compare", "--by", "instrument"],
        ["completeness"],
    ):
        table = runner.invoke(app, [*cmd, *_store_args(store)])
        assert table.exit_code == 0, table.output
        # A wide table may cut a long name with "…"; what it shows is the escaped text.
        assert shown[:30] in table.stdout, (cmd, table.stdout)
        _no_live_sequences(table.stdout)
        as_json = runner.invoke(app, [*cmd, *_store_args(store, "--json")])
        assert as_json.exit_code == 0, as_json.output
        providers = {r["provider"] for r in orjson.loads(as_json.stdout)["rows"]}
        assert provider in providers
    hot = runner.invoke(app, ["hotspots", *_store_args(store)])
    assert hot.exit_code == 0, hot.output


def test_replay_of_a_markup_id_prints_no_hyperlink(store: ChdbStore) -> None:
    """`replay '[link=...]click[/link]'` fails with the id shown as typed, not as a live link."""
    bad = "[link=http://evil.example]click[/link]"
    result = runner.invoke(app, ["replay", bad, *_store_args(store)])
    assert result.exit_code != 0
    assert bad in result.stderr
    _no_live_sequences(result.stderr)
    decision = runner.invoke(app, ["replay", "--decision", bad, *_store_args(store)])
    assert bad in decision.stderr


def test_replay_table_shows_a_hostile_provider_and_stage_as_text(store: ChdbStore) -> None:
    """A replayed event whose provider and stage hold markup prints them literally."""
    eid = str(uuid.uuid4())
    provider = "[link=http://evil.example]click[/link]"
    t0 = 1_700_000_000_000_000_000
    store.write_observations(
        [Observation(eid, "gate", t0 + 10, t0 + 20, t0, t0 + 10, 1_000, provider=provider)]
    )
    result = runner.invoke(app, ["replay", eid, *_store_args(store)])
    assert result.exit_code == 0, result.output
    assert provider in result.stdout


def test_an_error_quoting_a_hostile_value_shows_it_verbatim() -> None:
    """A usage error that quotes the user's value (--since) prints the markup as typed."""
    result = runner.invoke(app, ["hotspots", "--since", "[/bold]", "--store", "/nonexistent"])
    assert result.exit_code == 2
    assert "[/bold]" in result.stderr


def test_demo_summary_prints_hostile_names_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's summary table and lines show provider, rule and stage names literally."""
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, width=300, force_terminal=True)
    name = "[link=http://evil.example]click[/link]\x1b[31m"
    summary = {
        "events_in": 1,
        "forwarded": 0,
        "decisions": 0,
        "dead_lettered": {"[/bold]": 1},
        "providers": {
            name: {
                "events": 1,
                "forwarded": 0,
                "dead_lettered": 1,
                "latency_p50_ms": -1.0,
                "latency_p99_ms": -1.0,
                "max_gap_ms": 0,
            }
        },
        "stages": {"[/red]": {"events": 1, "p50_ms": 0.1, "p99_ms": 0.2}},
        "decision_id": "[/]",
        "decision_stage_ms": 1.0,
        "replay_command": "replay [/]",
        "evidence_command": "evidence --decision [/]",
    }
    monkeypatch.setattr("stampline.cli._demo.out", console)
    _print_summary(summary)
    text = buffer.getvalue()
    plain = text.replace("\x1b[", "")  # rich's own styling codes are CSI; data's are escaped
    assert "[link=http://evil.example]click[/link]\\x1b[31m" in text
    for literal in ("[/bold]", "[/red]", "replay [/]"):
        assert literal in text
    assert "\x1b]8;" not in text
    assert "http://evil.example\x1b" not in plain


def test_safe_console_never_interprets_markup_emoji_or_controls() -> None:
    """Strings, table cells and styled lines printed through SafeConsole come out literal."""
    from rich.table import Table

    buffer = io.StringIO()
    console = SafeConsole(file=buffer, width=300, color_system=None)
    table = Table(title="[bold]title[/]")
    table.add_column("c")
    for value in HOSTILE:
        console.print(value)
        table.add_row(value)
    console.print(table)
    console.print(line(("ok", "bold"), " ", HOSTILE[1]))
    text = buffer.getvalue()
    assert "\x1b" not in text
    for value in HOSTILE:
        assert clean(value) in text
    assert "[bold]title[/]" in text
    assert ":warning:" in text


def test_rules_commands_show_a_markup_file_name_and_value_as_text(tmp_path: Path) -> None:
    """`rules test` prints an example file named like markup, and the failing value it
    quotes, literally."""
    examples = tmp_path / "[red]evil"
    examples.mkdir()
    (examples / "[bold]x.jsonl").write_text(
        '{"event": {"provider": "[link=http://evil.example]p", "instrument": "[/]", "seq": 1,'
        ' "ts": 1700000000000, "type": "quote", "price": -1, "quantity": 1}, "expect": "pass"}\n'
    )
    result = runner.invoke(app, ["rules", "test", str(MARKET_RULES), "-e", str(examples)])
    assert result.exit_code == 1
    assert f"FAIL {examples / '[bold]x.jsonl'}:1: expected pass" in result.stdout
    _no_live_sequences(result.stdout)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_no_text_reaches_the_terminal_as_control_codes(value: str) -> None:
    """Whatever a value holds, SafeConsole prints no control character but newline and tab
    (no colour system: rich adds none of its own), as a line, a styled line and a cell."""
    from rich.table import Table

    buffer = io.StringIO()
    console = SafeConsole(file=buffer, width=200, color_system=None, soft_wrap=True)
    table = Table()
    table.add_column("c")
    table.add_row(value)
    console.print(value)
    console.print(line(("x", "bold"), value))
    console.print(table)
    printed = buffer.getvalue()
    assert not [c for c in printed if c not in "\n\t" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)]
    assert not set(printed) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
