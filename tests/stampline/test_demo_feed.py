"""`stampline demo-feed`: the demo feed on a real broker, as the compose stack runs it."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from stampline.cli import app
from tests.helpers import read_all
from tests.stampline.conftest import MARKET_RULES, WriteConfig

runner = CliRunner()


@pytest.mark.slow
def test_one_run_lands_every_event_on_the_raw_topic(
    bootstrap: str, uid: str, write_config: WriteConfig
) -> None:
    """--runs 1 produces one demo run to the first raw topic; the topic holds exactly that many."""
    raw = f"{uid}.md.raw"
    cfg = write_config(
        f"""version: 1
broker: {{bootstrap_servers: "{bootstrap}"}}
topics: {{raw: [{raw}], clean: {uid}.md.clean, dead_letter: {uid}.md.dlq,
         decisions: {uid}.decisions}}
rules: {{files: ["{MARKET_RULES}"]}}
"""
    )
    result = runner.invoke(
        app, ["demo-feed", "-c", str(cfg), "--runs", "1", "--no-decisions", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert summary["runs"] == 1
    assert summary["events"] > 1000  # 40 rounds of 150 quotes, less a silent stretch
    assert len(read_all(bootstrap, raw, expect=summary["events"])) == summary["events"]


@pytest.mark.slow
def test_sequence_numbers_continue_across_runs_and_invocations(
    bootstrap: str, uid: str, write_config: WriteConfig
) -> None:
    """Two runs of one `demo-feed`, then another `demo-feed`: every provider/instrument's
    sequence numbers only go up on the raw topic, never repeated."""
    raw = f"{uid}.md.raw"
    cfg = write_config(
        f"""version: 1
broker: {{bootstrap_servers: "{bootstrap}"}}
topics: {{raw: [{raw}], clean: {uid}.md.clean, dead_letter: {uid}.md.dlq}}
rules: {{files: ["{MARKET_RULES}"]}}
"""
    )
    events = 0
    for runs in ("2", "1"):
        result = runner.invoke(
            app, ["demo-feed", "-c", str(cfg), "--runs", runs, "--no-decisions", "--json"]
        )
        assert result.exit_code == 0, result.output
        events += orjson.loads(result.stdout)["events"]
    seqs: dict[str, list[int]] = {}
    for record in read_all(bootstrap, raw, expect=events):
        try:
            event = orjson.loads(record.value or b"")
            seqs.setdefault(f"{event['provider']}/{event['instrument']}", []).append(event["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # the feed's bad records
    assert len(seqs) == 150
    rising = {k: v for k, v in seqs.items() if v == sorted(set(v))}
    assert rising == seqs
    assert min(max(v) for v in seqs.values()) >= 83  # three runs of 28 (bravo) to 40 numbers


@pytest.mark.slow
def test_an_embedded_broker_is_refused_saying_what_to_do(
    bootstrap: str, uid: str, write_config: WriteConfig
) -> None:
    """The feed needs a broker others can reach: `embedded: true` is a clear error, exit 1,
    that says how to run it against `stampline run`'s broker; done so, it runs."""
    cfg = write_config(
        f"""version: 1
broker: {{embedded: true}}
topics: {{raw: [{uid}.md.raw], clean: {uid}.md.clean, dead_letter: {uid}.md.dlq}}
rules: {{files: ["{MARKET_RULES}"]}}
"""
    )
    result = runner.invoke(app, ["demo-feed", "-c", str(cfg), "--runs", "1"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert f"start `stampline run -c {cfg}` and pass the address it prints" in said
    assert "--bootstrap HOST:PORT" in said
    result = runner.invoke(
        app,
        ["demo-feed", "-c", str(cfg), "--bootstrap", bootstrap, "--runs", "1", "--no-decisions"],
    )
    assert result.exit_code == 0, result.output
