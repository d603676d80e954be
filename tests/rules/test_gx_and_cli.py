"""Great Expectations agreement, and the `stampline rules` / `audit validate` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from stampline.cli import app
from stampline.rules import RuleSet, export_gx, gx_row_failures
from stampline.rules._synthetic import market_batch

DATA = Path(str(resources.files("stampline").joinpath("data")))
STATELESS = DATA / "market_data_stateless.rules.yaml"
FULL = DATA / "market_data_full.rules.yaml"
EXAMPLES = DATA / "examples" / "market_data"
runner = CliRunner()


class TestGreatExpectations:
    def test_gx_and_stampline_agree_row_by_row(self) -> None:
        """The same batch through the exported GX suite and through stampline fails the same
        rules on every row, and some rows of every rule fail."""
        table = market_batch(3_000, keys=200, bad_every=20)
        rules = RuleSet.load([STATELESS])
        ours = rules.evaluate_table(table, 0)
        exported = export_gx(rules)
        assert len(exported.rule_of) == 8
        assert not exported.skipped
        theirs, _ = gx_row_failures(exported, table.to_pandas())
        mine = [{f.rule_id for f in ours.failing(i)} for i in range(table.num_rows)]
        assert mine == theirs
        assert {r for row in mine for r in row} == {rid for rid, _ in exported.rule_of}

    def test_export_lists_what_gx_cannot_express(self) -> None:
        """Stateful, freshness, tick-size, scoped and shadow rules are skipped with why."""
        exported = export_gx(RuleSet.load([FULL]))
        skipped = {rid: why for rid, _v, why in exported.skipped}
        assert skipped["seq.contiguous"] == "stateful: spans records"
        assert skipped["price.bounded"] == "scoped to topics/providers/instruments"
        assert skipped["price.tick"] == "no GX expectation for kind tick_size"
        assert ("quote.not_crossed", 1) in exported.rule_of

    def test_export_gx_command_writes_a_suite(self, tmp_path: Path) -> None:
        """`rules export-gx` writes a GX suite whose expectations name their rules."""
        out = tmp_path / "suite.json"
        result = runner.invoke(app, ["rules", "export-gx", str(STATELESS), "-o", str(out)])
        assert result.exit_code == 0, result.output
        suite = json.loads(out.read_text())
        assert suite["name"] == "stampline"
        metas = [e["meta"]["stampline_rule_id"] for e in suite["expectations"]]
        assert metas[0] == "instrument.present"
        assert len(metas) == 8
        assert suite["expectations"][2] == {
            "type": "expect_column_values_to_be_between",
            "kwargs": {
                "column": "price",
                "min_value": 0.0,
                "strict_min": True,
            },
            "meta": {"stampline_rule_id": "price.positive", "stampline_rule_version": 1},
            "severity": "critical",
        }


class TestRulesCommands:
    def test_contract_tests_pass_on_the_shipped_examples(self) -> None:
        """The shipped market-data examples all get their expected verdicts."""
        result = runner.invoke(
            app, ["rules", "test", str(FULL), "--examples", str(EXAMPLES), "--json"]
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["examples"] == report["passed"] > 100

    def test_contract_tests_fail_on_an_unexpected_verdict(self, tmp_path: Path) -> None:
        """An example whose verdict differs fails the run naming file:line, both verdicts."""
        (tmp_path / "x.jsonl").write_text(
            '{"event": {"price": -1, "ts": 1}, "expect": "pass"}\n'
            '{"event": {"price": 1, "ts": 1}, "expect": ["price.positive"]}\n'
        )
        result = runner.invoke(app, ["rules", "test", str(STATELESS), "-e", str(tmp_path)])
        assert result.exit_code == 1
        assert f"{tmp_path / 'x.jsonl'}:1: expected pass, got" in result.output
        assert "price.positive@v1: price -1 is below the minimum (exclusive) 0.0" in result.output
        assert f"{tmp_path / 'x.jsonl'}:2: expected price.positive, got" in result.output

    def test_malformed_example_names_its_line(self, tmp_path: Path) -> None:
        """A malformed example line is an error naming file:line."""
        (tmp_path / "x.jsonl").write_text('{"event": {}, "expect": "maybe"}\n')
        result = runner.invoke(app, ["rules", "test", str(STATELESS), "-e", str(tmp_path)])
        assert result.exit_code == 1
        assert "x.jsonl:1: expect: give" in result.output

    def test_check_compat_exit_codes_and_json(self) -> None:
        """check-compat exits 0 when the required level holds, 1 when not, with the breaks."""
        contracts = DATA / "contracts"
        ok = runner.invoke(
            app,
            [
                "rules",
                "check-compat",
                str(contracts / "quote.v1.avsc"),
                str(contracts / "quote.v2.avsc"),
                "--require",
                "full",
                "--json",
            ],
        )
        assert ok.exit_code == 0
        assert json.loads(ok.output)["compatibility"] == "full"
        broken = runner.invoke(
            app,
            [
                "rules",
                "check-compat",
                str(contracts / "quote.v1.avsc"),
                str(contracts / "quote.v3-breaking.avsc"),
            ],
        )
        assert broken.exit_code == 1
        assert "side: field only in the reader's schema and has no default" in broken.output

    def test_diff_shadow_reports_rates(self, tmp_path: Path) -> None:
        """diff-shadow counts each version's violations and the events only one fails."""
        rules = tmp_path / "r.yaml"
        rules.write_text(
            "version: 2\nrules:\n"
            "  - {id: q.max, version: 1, kind: range, field: quantity, max: 1000}\n"
            "  - {id: q.max, version: 2, kind: range, field: quantity, max: 100, shadow: true}\n"
        )
        events = tmp_path / "e.jsonl"
        quantities = [5, 50, 500, 5000]
        events.write_text(
            "".join(orjson.dumps({"quantity": q, "ts": 1}).decode() + "\n" for q in quantities)
        )
        result = runner.invoke(
            app, ["rules", "diff-shadow", str(rules), "--events", str(events), "--json"]
        )
        assert result.exit_code == 0, result.output
        [row] = json.loads(result.output)["rules"]
        assert (row["live_violations"], row["shadow_violations"]) == (1, 2)
        assert (row["live_rate"], row["shadow_rate"]) == (0.25, 0.5)
        assert (row["only_live_fails"], row["only_shadow_fails"]) == (0, 1)

    def test_diff_shadow_without_shadow_rules_is_an_error(self) -> None:
        """diff-shadow on files without shadow rules says how to mark one."""
        result = runner.invoke(app, ["rules", "diff-shadow", str(STATELESS), "--events", "x"])
        assert result.exit_code == 1
        assert "shadow: true" in result.output

    def test_bad_rule_file_is_reported(self, tmp_path: Path) -> None:
        """A rules command given a broken rule file names file:line and key."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 2\nrules:\n  - {id: a, version: 1, kind: enum, field: x}\n")
        result = runner.invoke(app, ["rules", "export-gx", str(bad)])
        assert result.exit_code == 1
        assert "bad.yaml:3: rules.0.enum.values: Field required" in result.output


WRITE_TRAIL = """
import sys, time
from stampline.audit import ChdbStore, DeadLetter, Observation
now = time.time_ns()
with ChdbStore(sys.argv[1], "v") as s:
    s.write_observations([Observation(
        event_id="00000000-0000-0000-0000-00000000000%d" % i, stage="gate", received_ns=now,
        emitted_ns=now, origin_ns=now, ingested_ns=now, clock_err_ns=1, host="h", topic="t",
        partition=0, offset=i, broker_time_ms=0, provider="p", instrument="I", seq=i,
        outcome="forwarded") for i in range(3)])
    s.write_dead_letters([DeadLetter(
        event_id="00000000-0000-0000-0000-000000000009", received_ns=now, topic="t",
        partition=0, offset=9, provider="p", rule_id=sys.argv[2], rule_version=1,
        reason="because", value=b"{}")])
"""


@pytest.mark.slow
@pytest.mark.parametrize(("rule_id", "code"), [("price.positive", 0), ("Not A Rule", 1)])
def test_audit_validate_runs_gx_over_the_trail(tmp_path: Path, rule_id: str, code: int) -> None:
    """`audit validate` runs GX over stored rows, writes Data Docs and exits 1 on a failed
    expectation (a malformed rule id in a dead letter)."""
    store = tmp_path / "store"
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    subprocess.run([sys.executable, "-c", WRITE_TRAIL, str(store), rule_id], check=True, env=env)
    docs = tmp_path / "docs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stampline",
            "audit",
            "validate",
            "--since",
            "1h",
            "--store",
            str(store),
            "--database",
            "v",
            "--docs",
            str(docs),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == code, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["observations"], report["dead_letters"]) == (3, 1)
    failed = [e for e in report["expectations"] if not e["success"]]
    assert [(e["table"], e["kwargs"]["column"]) for e in failed] == (
        [] if code == 0 else [("dead_letters", "rule_id")]
    )
    assert (docs / "index.html").is_file()
