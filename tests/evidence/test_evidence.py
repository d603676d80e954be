"""The evidence document and its folder, built from a real chDB trail with a known lineage."""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from stampline._common import where
from stampline.audit import NotFoundError, format_ns
from stampline.cli import app
from stampline.evidence import (
    SCHEMA,
    Context,
    decision_evidence,
    event_evidence,
    render_html,
    write_bundle,
)
from tests.evidence.conftest import RULES_SHA, RULES_THEN_SHA, T0, Lineage, lineage_context

runner = CliRunner()


def _ctx(lin: Lineage, tier: str = "other") -> Context:
    return lineage_context(lin, tier)


def _event(doc: dict[str, Any], eid: str) -> dict[str, Any]:
    return next(e for e in doc["events"] if e["event_id"] == eid)


def _stamp(event: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in event["stamps"] if s["stage"] == stage)


def test_decision_lists_every_stamp_with_host_bound_source_and_tier_verdict(
    lineage: Lineage,
) -> None:
    """Each stamp carries its time, host, bound, the bound's source and the tier's verdict."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    assert doc["schema"] == SCHEMA
    assert doc["subject"] == {"kind": "decision", "id": lineage.decision}
    assert [(e["event_id"], e["role"]) for e in doc["events"]] == [
        (lineage.decision, "decision"),
        (lineage.charlie, "input"),  # inputs in id order
        (lineage.alpha, "input"),
    ]
    gate = _stamp(_event(doc, lineage.alpha), "gate")
    assert (gate["time"], gate["host"], gate["bound_ns"]) == (format_ns(T0 + 7_123), "gw-1", 50_000)
    assert gate["bound_source"] == {
        "kind": "chrony",
        "offset_ns": -12_000,
        "root_dispersion_ns": 30_000,
        "root_delay_ns": 16_000,
    }
    assert gate["regime"] == {
        "tier": "other",
        "max_divergence_ns": 1_000_000,
        "granularity_ns": 1_000_000,
        "divergence_ns": 50_000,
        "bound_ok": True,
        "observed_granularity_ns": 1,
        "granularity_from": "digits",
        "granularity_ok": True,
        "verdict": "meets",
    }
    assert _stamp(_event(doc, lineage.charlie), "gate")["bound_source"] == {"kind": "configured"}
    risk = _stamp(_event(doc, lineage.decision), "risk")
    assert risk["bound_source"]["kind"] == "unknown"  # read from headers by a tap
    assert risk["regime"]["verdict"] == "fails"  # 2 ms bound over the 1 ms tier
    origin = _stamp(_event(doc, lineage.alpha), "origin")
    assert (origin["bound_ns"], origin["regime"]) == (None, {"verdict": "outside"})


def test_granularity_a_stamp_cannot_show_is_unproven_for_the_hft_tier(lineage: Lineage) -> None:
    """A stamp ending in 000 ns shows only microsecond granularity: fine for hft's 1 µs, a 2 ms
    bound fails hft, and the ms-granular 'voice' tier takes every bound here."""
    hft = decision_evidence(lineage.store, lineage.decision, _ctx(lineage, "hft")).to_dict()
    charlie_gate = _stamp(_event(hft, lineage.charlie), "gate")
    assert charlie_gate["regime"]["observed_granularity_ns"] == 1_000
    assert charlie_gate["regime"]["verdict"] == "meets"
    assert hft["regime"]["max_divergence_ns"] == 100_000
    voice = decision_evidence(lineage.store, lineage.decision, _ctx(lineage, "voice")).to_dict()
    assert {
        s["regime"]["verdict"] for e in voice["events"] for s in e["stamps"] if s["bound_ns"]
    } == {"meets"}


def test_an_input_born_after_its_decision_is_flagged(lineage: Lineage) -> None:
    """charlie's origin is 7.5 ms after the decision's stamp: flagged with the margin."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    assert doc["order_flags"] == [
        {
            "event_id": lineage.charlie,
            "flag": "input born after its decision",
            "by_ns": 9_000_000 - 1_500_001,
            "bound_ns": None,  # the origin is the provider's clock: no bound known
        }
    ]


def test_spans_are_value_plus_minus_combined_bound_flagged_when_uncertain(
    lineage: Lineage,
) -> None:
    """A span within its combined bound is flagged uncertain; a negative one is flagged."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    risk = {i["span"]: i for i in _event(doc, lineage.decision)["intervals"]}
    assert list(risk) == ["in risk"], "a decision is born at its stage: no origin/ingest spans"
    assert risk["in risk"]["value_ns"] == 500_001
    assert risk["in risk"]["bound_ns"] == 4_000_000
    assert any("within bound" in f for f in risk["in risk"]["flags"])
    charlie = {i["span"]: i for i in _event(doc, lineage.charlie)["intervals"]}
    skewed = charlie["origin → ingest"]
    assert skewed["value_ns"] == 6_000 - 9_000_000
    assert any(f.startswith("negative") for f in skewed["flags"])
    alpha = {i["span"]: i for i in _event(doc, lineage.alpha)["intervals"]}
    assert alpha["in gate"] == {
        "span": "in gate",
        "value_ns": 2_123,
        "bound_ns": 100_000,
        "flags": ["within bound: the value, and the order of its ends, are uncertain"],
    }


def test_rule_verdicts_include_warnings_and_dead_letters_with_reason_and_file_hash(
    lineage: Lineage,
) -> None:
    """A warn verdict and a dead letter each name rule, version, reason, the rule file's hash
    recorded when the verdict was made, and the file given now with whether it is the same."""
    sha = hashlib.sha256(lineage.rules.read_bytes()).hexdigest()
    assert sha == RULES_SHA != RULES_THEN_SHA
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    assert _event(doc, lineage.alpha)["rules"] == {
        "outcome": "forwarded",
        "verdicts": [
            {
                "rule_id": "price.tick",
                "rule_version": 1,
                "severity": "warn",
                "reason": "",
                "rule_file_sha256": RULES_THEN_SHA,  # the file was edited since
                "rule_file": {
                    "path": str(lineage.rules),
                    "sha256": sha,
                    "version_now": 1,
                    "same_version": True,
                    "same_file": False,
                },
            }
        ],
    }
    dead = event_evidence(lineage.store, lineage.dead, _ctx(lineage)).to_dict()
    (verdict,) = dead["events"][0]["rules"]["verdicts"]
    assert (verdict["rule_id"], verdict["rule_version"], verdict["severity"]) == (
        "qty.max",
        2,
        "error",
    )
    assert verdict["reason"] == "quantity 5000 is above 1000"
    assert verdict["rule_file_sha256"] == sha
    assert verdict["rule_file"]["same_file"] is True
    gate = _stamp(dead["events"][0], "gate")
    assert gate["bound_source"] == {"kind": "fallback", "reason": "chronyc not found"}
    html = render_html(doc)
    assert RULES_THEN_SHA[:16] in html
    src = _event(doc, lineage.alpha)["source"]
    assert f"<p>source {where(src['topic'], src['partition'], src['offset'])}; outcome" in html


def test_integrity_proof_names_the_batches_holding_the_rows_and_the_head(
    lineage: Lineage,
) -> None:
    """The proof lists each ledger entry holding a shown row (its chain, kind, digest and
    link), and the head of the chain as a full verification of the store reports it."""
    report = lineage.store.verify()
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage), report).to_dict()
    proof = doc["integrity"]
    assert [(b["chain_id"], b["batch"], b["kind"]) for b in proof["batches"]] == [
        ("local", 1, "observations"),
        ("local", 2, "observations"),
    ]
    assert proof["batches"][0]["holds"] == sorted(
        [f"{lineage.alpha}/gate", f"{lineage.charlie}/gate"]
    )
    assert proof["batches"][1]["holds"] == [f"{lineage.decision}/risk"]
    assert proof["batches"][1]["prev_chain"] == proof["batches"][0]["chain"]
    # The dead letter's batch (4) is the newest entry of the one chain of direct writes.
    assert proof["chains"] == [
        {
            "chain_id": "local",
            "head_batch": 4,
            "head": report.heads["local"],
            "expect_head": f"local={report.heads['local']}",
        }
    ]
    assert [b["links_to_head"] for b in proof["batches"]] == [3, 2]
    assert proof["unledgered"] == []
    assert proof["verified_at_production"]["ok"] is True
    assert proof["verified_at_production"]["chain_heads"] == report.heads
    assert proof["verify_command"] == (
        f"stampline audit verify --store {lineage.store.path} --database "
        f"{lineage.store.database} --expect-head local={report.heads['local']}"
    )


def test_a_dead_lettered_events_proof_holds_its_dead_letter_batch(lineage: Lineage) -> None:
    """A dead-lettered event's proof names the batch of its observation and the batch of its
    dead letter, each with the digest and chain value the ledger holds for it."""
    doc = event_evidence(lineage.store, lineage.dead, _ctx(lineage)).to_dict()
    batches = doc["integrity"]["batches"]
    assert [(b["batch"], b["kind"], b["holds"]) for b in batches] == [
        (3, "observations", [f"{lineage.dead}/gate"]),
        (4, "dead_letters", [f"{lineage.dead}/dead_letter"]),
    ]
    (entry,) = lineage.store.query(
        "SELECT toString(digest) AS d, toString(chain) AS c, rows FROM {db}.ledger "
        "WHERE chain_id = 'local' AND seq = 4"
    )
    assert (batches[1]["digest"], batches[1]["chain"], batches[1]["rows"]) == (
        entry["d"],
        entry["c"],
        1,
    )
    assert batches[1]["links_to_head"] == 0


def test_a_shown_row_in_no_ledgered_batch_is_listed_as_unledgered(lineage: Lineage) -> None:
    """A row slipped in under a batch number its chain never ledgered is shown apart, as
    vouched for by no chain, and whole-store verification fails on it."""
    lineage.store._execute(
        f"INSERT INTO {lineage.store.database}.observations (event_id, stage, received, "
        f"batch, chain_id) VALUES ('{lineage.alpha}', 'backfill', now64(9), 99, 'local')"
    )
    report = lineage.store.verify()
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage), report).to_dict()
    assert doc["integrity"]["unledgered"] == [
        {
            "chain_id": "local",
            "batch": 99,
            "kind": "observations",
            "holds": [f"{lineage.alpha}/backfill"],
        }
    ]
    assert [b["batch"] for b in doc["integrity"]["batches"]] == [1, 2]
    assert doc["integrity"]["verified_at_production"]["ok"] is False
    assert "Rows in no ledgered batch" in render_html(doc)


def test_a_missing_or_malformed_subject_is_refused(lineage: Lineage) -> None:
    """An id the trail lacks raises NotFoundError; a non-UUID raises ValueError naming it."""
    with pytest.raises(NotFoundError):
        decision_evidence(lineage.store, "01a21ad7-0000-7000-8000-000000000000", _ctx(lineage))
    with pytest.raises(ValueError, match="not-an-id"):
        event_evidence(lineage.store, "not-an-id", _ctx(lineage))


def test_html_is_self_contained_and_escapes_data(lineage: Lineage) -> None:
    """No script, stylesheet link or remote URL; data with markup is escaped, not rendered."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    doc["events"][1]["provider"] = "<script>alert(1)</script>"
    html = render_html(doc)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<link" not in html
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    assert html.count('class="stamp"') == sum(len(e["stamps"]) for e in doc["events"])


def test_html_shows_bidi_and_control_characters_as_marked_escapes(lineage: Lineage) -> None:
    """A name holding U+202E (right-to-left override) or ESC reaches the page as a visible
    escape in a marked span, in text and attributes alike, never as the raw character."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    doc["events"][1]["provider"] = "alpha\u202egpj.exe"
    doc["events"][1]["stamps"][0]["stage"] = "gate\x1b[31m"
    html = render_html(doc)
    assert "\u202e" not in html
    assert "\x1b" not in html
    assert 'alpha<span class="ctl">\\u202e</span>gpj.exe' in html
    assert '<td>gate<span class="ctl">\\x1b</span>[31m</td>' in html
    assert 'data-stage="gate\\x1b[31m"' in html  # no markup fits in an attribute


def test_bundle_manifest_hashes_every_file_and_input(lineage: Lineage, tmp_path: Path) -> None:
    """manifest.json and SHA256SUMS hold the SHA-256 of each file; the inputs are listed."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    bundle = write_bundle(tmp_path / "ev", doc, pdf=False)
    folder = tmp_path / "ev"
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    assert set(manifest["files"]) == {"evidence.json", "evidence.schema.json", "report.html"}
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha
    assert manifest["inputs"] == [
        {
            "role": "rules",
            "path": str(lineage.rules),
            "sha256": hashlib.sha256(lineage.rules.read_bytes()).hexdigest(),
            "rules": {"price.tick": 1, "qty.max": 2},
        }
    ]
    sums = dict(
        reversed(line.split("  ")) for line in (folder / "SHA256SUMS").read_text().splitlines()
    )
    assert sums == bundle.files
    assert (
        sums["manifest.json"] == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    )
    assert orjson.loads((folder / "evidence.json").read_bytes()) == doc


def _cli(lineage: Lineage, *args: str) -> Any:
    return runner.invoke(
        app,
        [
            "evidence",
            *args,
            "--store",
            str(lineage.store.path),
            "--database",
            lineage.store.database,
        ],
    )


def test_cli_without_chromium_writes_html_and_json_and_says_how_to_get_the_pdf(
    lineage: Lineage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no browser the command still succeeds, writes HTML and JSON, and names the fix."""
    monkeypatch.setenv("STAMPLINE_CHROMIUM", str(tmp_path / "no-such-browser"))
    out = tmp_path / "ev"
    result = _cli(lineage, "--decision", lineage.decision, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert summary["pdf"] is False
    assert "apt-get install chromium" in summary["pdf_error"]
    assert "apt-get install chromium" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS",
        "evidence.json",
        "evidence.schema.json",
        "manifest.json",
        "report.html",
    ]


def test_cli_verify_command_passes_untouched_and_fails_after_a_row_changes(
    lineage: Lineage, tmp_path: Path
) -> None:
    """The report's verify_command, run as it is written, passes on the untouched store and
    fails once a row is changed; evidence made on the changed trail says so and exits 1."""
    out = tmp_path / "ev"
    made = _cli(lineage, "--decision", lineage.decision, "--out", str(out), "--no-pdf", "--json")
    assert made.exit_code == 0, made.output
    doc = orjson.loads((out / "evidence.json").read_bytes())
    assert orjson.loads(made.stdout)["chain_heads"] == {
        "local": doc["integrity"]["chains"][0]["head"]
    }
    argv = shlex.split(doc["integrity"]["verify_command"])
    assert argv[:3] == ["stampline", "audit", "verify"]
    ok = runner.invoke(app, [*argv[1:], "--json"])
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.stdout)["expected_heads"] == [
        ["local", doc["integrity"]["chains"][0]["head"]]
    ]
    lineage.store._execute(
        f"ALTER TABLE {lineage.store.database}.observations UPDATE stage_ns = stage_ns - 1 "
        f"WHERE event_id = '{lineage.alpha}' SETTINGS mutations_sync = 2"
    )
    bad = runner.invoke(app, [*argv[1:], "--json"])
    assert bad.exit_code == 1
    (finding,) = orjson.loads(bad.stdout)["findings"]
    assert (finding["chain"], finding["batch"], finding["problem"]) == ("local", 1, "changed")
    again = _cli(lineage, "--decision", lineage.decision, "--out", str(tmp_path / "b"), "--no-pdf")
    assert again.exit_code == 1, "evidence on a tampered trail says so and exits 1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--decision", "x", "--event", "y"], "exactly one of"),
        ([], "exactly one of"),
        (["--event", "01a21ad7-0000-7000-8000-000000000000", "--tier", "fast"], "no tier 'fast'"),
        (["--event", "nope"], "'nope' is not a UUID"),
        (["--event", "01a21ad7-0000-7000-8000-000000000000", "--host", "h"], "--host goes with"),
        (["--period", "2026-01-01T00:00Z"], "is not FROM..TO"),
        (["--period", "2026-01-02T00:00Z..2026-01-01T00:00Z"], "ends before it starts"),
    ],
)
def test_cli_usage_errors_exit_2_naming_the_problem(
    lineage: Lineage, args: list[str], message: str
) -> None:
    """Bad options exit 2 with a one-line error naming the bad value."""
    result = _cli(lineage, *args, "--no-pdf")
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_cli_unknown_decision_exits_1(lineage: Lineage, tmp_path: Path) -> None:
    """A decision the trail does not hold is an error (exit 1), and nothing is written."""
    result = _cli(
        lineage,
        "--decision",
        "01a21ad7-0000-7000-8000-000000000000",
        "--out",
        str(tmp_path / "ev"),
        "--no-pdf",
    )
    assert result.exit_code == 1
    assert "no observation of decision" in result.stderr
    assert not (tmp_path / "ev").exists()


def test_every_document_kind_validates_against_the_shipped_json_schema(
    lineage: Lineage, tmp_path: Path
) -> None:
    """Decision, event and period documents all pass the schema written into the folder;
    a stamp without its bound source, or with an unknown verdict, or a decision without its
    latency or a latency line without its bound, does not."""
    import fastjsonschema

    from stampline.evidence import (
        period_evidence,
    )

    ctx = _ctx(lineage)
    docs = [
        decision_evidence(lineage.store, lineage.decision, ctx).to_dict(),
        event_evidence(lineage.store, lineage.dead, ctx).to_dict(),
        period_evidence(lineage.store, T0, T0 + 10**9, ctx).to_dict(),
    ]
    write_bundle(tmp_path / "ev", docs[0], pdf=False)
    validate = fastjsonschema.compile(
        orjson.loads((tmp_path / "ev" / "evidence.schema.json").read_bytes())
    )
    for doc in docs:
        validate(doc)
    broken = orjson.loads(orjson.dumps(docs[0]))
    del broken["events"][1]["stamps"][1]["bound_source"]
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate(broken)
    broken = orjson.loads(orjson.dumps(docs[0]))
    broken["events"][1]["stamps"][1]["regime"]["verdict"] = "fine"
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate(broken)
    broken = orjson.loads(orjson.dumps(docs[0]))
    del broken["latency"]["inputs"][0]["bound_ns"]
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate(broken)
    broken = orjson.loads(orjson.dumps(docs[0]))
    del broken["latency"]
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate(broken)


def test_a_store_refusing_to_migrate_is_a_one_line_error(lineage: Lineage) -> None:
    """A store whose applied migration differs from the shipped one: exit 1, one line, no
    traceback."""
    lineage.store._execute(
        f"INSERT INTO {lineage.store.database}.schema_migrations "
        "VALUES (10, 'bound_source', 'edited', now64(3) + 1)"
    )
    lineage.store._execute(f"OPTIMIZE TABLE {lineage.store.database}.schema_migrations FINAL")
    result = _cli(lineage, "--decision", lineage.decision, "--no-pdf")
    assert result.exit_code == 1
    assert "migration 010_bound_source was changed" in result.stderr
    assert "Traceback" not in result.output


def test_cli_with_a_configuration_hashes_it_and_its_rule_files(
    lineage: Lineage, tmp_path: Path
) -> None:
    """With --config the manifest holds the configuration's and its rule files' SHA-256, the
    configuration hash covers them, and the re-verify command names the same configuration."""
    from tests.stampline.conftest import EXAMPLE, MARKET_RULES

    cfg = tmp_path / "stampline.yaml"
    cfg.write_text(
        EXAMPLE.read_text("utf-8")
        .replace("../stampline/data/market_data.rules.yaml", str(MARKET_RULES))
        .replace("path: ../stampline-data", f"path: {lineage.store.path}")
        .replace("database: stampline", f"database: {lineage.store.database}"),
        "utf-8",
    )
    out = tmp_path / "ev"
    result = runner.invoke(
        app,
        ["evidence", "--event", lineage.alpha, "--config", str(cfg), "--out", str(out),
         "--no-pdf", "--no-verify", "--rules", str(lineage.rules)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = orjson.loads((out / "evidence.json").read_bytes())
    inputs = {(i["role"], Path(i["path"]).name): i for i in doc["produced"]["inputs"]}
    assert set(inputs) == {
        ("config", "stampline.yaml"),
        ("rules", lineage.rules.name),
        ("rules", MARKET_RULES.name),
    }
    assert (
        inputs[("config", "stampline.yaml")]["sha256"]
        == hashlib.sha256(cfg.read_bytes()).hexdigest()
    )
    assert len(doc["produced"]["config_sha256"]) == 64
    assert f"--config {cfg.resolve()}" in doc["integrity"]["verify_command"]
    assert doc["integrity"]["verified_at_production"] is None
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["inputs"] == doc["produced"]["inputs"]
