"""The store's commands: migrate, audit verify, providers compare, hotspots, completeness."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
from typer.testing import CliRunner

from stampline.audit import ChdbStore
from stampline.cli import app
from tests.audit.test_store_suite import SHIPPED_MIGRATIONS, pipeline

runner = CliRunner()


def _args(store: ChdbStore) -> list[str]:
    return ["--store", str(store.path), "--database", store.database, "--json"]


def test_migrate_reports_nothing_to_apply_on_a_current_store(store: ChdbStore) -> None:
    """`store migrate --json` lists every migration as already applied."""
    result = runner.invoke(app, ["store", "migrate", *_args(store)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["already_applied"] == SHIPPED_MIGRATIONS


def test_verify_exits_1_and_names_the_batch_when_tampered(store: ChdbStore) -> None:
    """`audit verify` passes on an intact trail and fails, naming the batch, after tampering."""
    store.write_observations(pipeline(5))
    ok = runner.invoke(app, ["audit", "verify", *_args(store)])
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.stdout)["ok"] is True
    store._execute(
        f"ALTER TABLE {store.database}.observations UPDATE seq = 99 WHERE stage = 'risk' "
        "SETTINGS mutations_sync = 2"
    )
    bad = runner.invoke(app, ["audit", "verify", *_args(store)])
    assert bad.exit_code == 1
    (finding,) = orjson.loads(bad.stdout)["findings"]
    assert (finding["batch"], finding["problem"], finding["changed_columns"]) == (
        1,
        "changed",
        ["seq"],
    )


def test_verify_checks_expected_heads_and_refuses_a_malformed_one(store: ChdbStore) -> None:
    """`audit verify --expect-head` passes for a head in the chain, fails (exit 1) for one
    that is not, and refuses (exit 2, naming it) a value that is not 64 hex digits."""
    store.write_observations(pipeline(3))
    head = store.chain_head("local").chain
    good = runner.invoke(app, ["audit", "verify", *_args(store), "--expect-head", f"local={head}"])
    assert good.exit_code == 0, good.output
    assert orjson.loads(good.stdout)["chain_heads"] == {"local": head}
    other = "ab" * 32
    bad = runner.invoke(app, ["audit", "verify", *_args(store), "--expect-head", other])
    assert bad.exit_code == 1
    missing, unaccounted = orjson.loads(bad.stdout)["findings"]
    assert (missing["problem"], missing["missing_head"]) == ("head_missing", other)
    assert (unaccounted["chain"], unaccounted["problem"]) == ("local", "chain_without_head")
    typo = runner.invoke(app, ["audit", "verify", *_args(store), "--expect-head", "local=xyz"])
    assert typo.exit_code == 2
    assert "--expect-head 'local=xyz'" in typo.stderr
    assert "64 hex digits" in typo.stderr
    newline = runner.invoke(app, ["audit", "verify", *_args(store), "--expect-head", head + "\n"])
    assert newline.exit_code == 2, newline.output


def test_the_three_queries_answer_in_json_and_as_tables(store: ChdbStore) -> None:
    """compare, hotspots and completeness print JSON with --json and a table without."""
    store.write_observations(pipeline(20))
    for cmd in (["providers", "compare"], ["hotspots"], ["completeness"]):
        as_json = runner.invoke(app, [*cmd, *_args(store)])
        assert as_json.exit_code == 0, as_json.output
        assert orjson.loads(as_json.stdout)["rows"], cmd
        table = runner.invoke(app, [*cmd, *_args(store)[:-1]])
        assert table.exit_code == 0, table.output
        assert "alpha" in table.stdout or "gate" in table.stdout


def test_a_bad_window_is_a_usage_error_naming_the_option(store: ChdbStore) -> None:
    """--since that is not a duration exits 2 and says which option was wrong."""
    result = runner.invoke(app, ["hotspots", "--since", "soon", *_args(store)])
    assert result.exit_code == 2
    assert "--since" in result.stderr


def test_a_missing_store_folder_is_a_clear_error(tmp_path: Path) -> None:
    """Pointing a query at a folder that holds no store says so."""
    result = runner.invoke(app, ["completeness", "--store", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no store at" in result.stderr


def test_names_from_the_data_are_shown_literally_in_every_table(store: ChdbStore) -> None:
    """A provider or stage named like rich markup is printed as written, never interpreted."""
    rows = [
        replace(r, provider="[red]evil", stage="[bold]s" if r.stage == "risk" else r.stage)
        for r in pipeline(10)
    ]
    store.write_observations([replace(r, seq=r.seq + 5 * (r.seq >= 5)) for r in rows])
    for cmd, text in (
        (["providers", "compare"], "[red]evil"),
        (["hotspots"], "[bold]s"),
        (["hotspots", "--heatmap"], "[bold]s"),
        (["completeness", "--key", "provider"], "[red]evil"),
    ):
        table = runner.invoke(app, [*cmd, *_args(store)[:-1]], terminal_width=200)
        assert table.exit_code == 0, table.output
        assert text in table.stdout, (cmd, table.stdout)


def test_zero_grace_is_accepted_and_a_negative_one_refused(store: ChdbStore) -> None:
    """`completeness --grace 0s` runs; a grace that is not a duration names the option."""
    store.write_observations(pipeline(5))
    ok = runner.invoke(app, ["completeness", "--grace", "0s", *_args(store)])
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.stdout)["grace_ns"] == 0
    bad = runner.invoke(app, ["completeness", "--grace", "later", *_args(store)])
    assert bad.exit_code == 2
    assert "--grace" in bad.stderr


def test_migrate_creates_a_store_that_does_not_exist(tmp_path: Path) -> None:
    """`store migrate --store NEW` creates the folder and applies every migration, listed as
    applied (its own process: chDB opens one folder per process)."""
    new = tmp_path / "new-store"
    result = subprocess.run(
        [sys.executable, "-m", "stampline", "store", "migrate", "--store", str(new), "--json"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert (report["applied"], report["already_applied"]) == (SHIPPED_MIGRATIONS, [])
    assert new.is_dir()


def test_hotspots_with_nothing_to_show_says_why_and_what_to_do(store: ChdbStore) -> None:
    """An empty store's `hotspots` prints no empty tables but why nothing shows (no trail
    rows yet) and what to do."""
    result = runner.invoke(app, ["hotspots", *_args(store)[:-1]])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert said.startswith("no hops: the store holds no trail rows yet.")
    assert "stampline run --config FILE" in said
    assert "hop latency over the last" not in said  # no empty table
