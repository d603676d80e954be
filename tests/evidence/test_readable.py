"""Verdicts a regulator can read: the declared tier, each clock's own granularity, the
decision's latency, a failed verification on page 1, and packs that never overwrite another."""

from __future__ import annotations

import re
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from stampline.audit import AUTHORITY_TAP, ChdbStore, Observation
from stampline.cli import app
from stampline.evidence import (
    Context,
    decision_evidence,
    event_evidence,
    parse_period,
    period_evidence,
    regime_tier,
    render_html,
)
from tests.evidence.conftest import T0, Lineage, lineage_context

runner = CliRunner()
MS = 1_000_000
# The tap read the decision record 2 ms after T0, by the broker's millisecond timestamp.
TAP_BROKER_MS = T0 // MS + 2


def _ctx(lin: Lineage, tier: str = "other", stages: dict[str, str] | None = None) -> Context:
    return replace(lineage_context(lin, tier, stages), declared="declared by the test")


def _tap_sighting(store: ChdbStore, event_id: str, broker_ms: int, bound: int = 2 * MS) -> None:
    """The tap's own sighting of a record on `decisions`: received at the broker's
    millisecond timestamp, emitted when the tap read it; its bound the tap's 1 ms + 1 ms."""
    store.write_observations(
        [
            Observation(
                event_id, "tap:decisions", broker_ms * MS, broker_ms * MS + 345_678, 0,
                broker_ms * MS, bound, host="tap-1", topic="decisions", offset=7,
                broker_time_ms=broker_ms, authority=AUTHORITY_TAP, clock_source="configured",
            )
        ]
    )  # fmt: skip


def _event(doc: dict[str, Any], eid: str) -> dict[str, Any]:
    return next(e for e in doc["events"] if e["event_id"] == eid)


def _stamp(event: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in event["stamps"] if s["stage"] == stage)


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_a_tap_sighting_is_judged_on_the_brokers_millisecond(lineage: Lineage) -> None:
    """A tap's time is the broker's millisecond timestamp: its granularity is 1 ms, said to be
    the broker's, and the millisecond the tap adds to its bound is granularity, not
    divergence, so the 'other' tier is met; the page never claims "≤ 1 ns" for it."""
    _tap_sighting(lineage.store, lineage.decision, TAP_BROKER_MS)
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    tap = _stamp(_event(doc, lineage.decision), "tap:decisions")
    assert tap["bound_ns"] == 2 * MS
    assert tap["regime"] == {
        "tier": "other",
        "max_divergence_ns": MS,
        "granularity_ns": MS,
        "divergence_ns": MS,
        "bound_ok": True,
        "observed_granularity_ns": MS,
        "granularity_from": "broker",
        "granularity_ok": True,
        "verdict": "meets",
    }
    row = re.search(r'<tr class="stamp-row[^"]*"><td>tap:decisions</td>.*?</tr>', render_html(doc))
    assert row is not None
    assert "1 ns" not in _text(row[0])
    assert "broker" in _text(row[0])
    # A stage's own stamp still shows the granularity its digits prove.
    risk = _stamp(_event(doc, lineage.decision), "risk")
    assert (risk["regime"]["observed_granularity_ns"], risk["regime"]["granularity_from"]) == (
        1,
        "digits",
    )


def test_each_stamp_is_judged_against_the_tier_declared_for_its_stage(lineage: Lineage) -> None:
    """A stage given its own tier is judged against it, the others against the deployment's
    tier; the report names both and where they were declared, and says why a stamp fails."""
    doc = decision_evidence(
        lineage.store, lineage.decision, _ctx(lineage, "hft", {"risk": "voice"})
    ).to_dict()
    risk = _stamp(_event(doc, lineage.decision), "risk")
    assert (risk["regime"]["tier"], risk["regime"]["verdict"]) == ("voice", "meets")
    gate = _stamp(_event(doc, lineage.charlie), "gate")
    assert (gate["regime"]["tier"], gate["regime"]["max_divergence_ns"]) == ("hft", 100_000)
    assert doc["regime"]["tier"] == "hft"
    assert doc["regime"]["declared"] == "declared by the test"
    assert doc["regime"]["stages"] == {"risk": "voice"}
    text = _text(render_html(doc))
    assert "declared by the test" in text
    assert "risk: voice" in text
    failing = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    row = re.search(r'<tr class="stamp-row[^"]*"><td>risk</td>.*?</tr>', render_html(failing))
    assert row is not None
    assert "fails: bound 2.000 ms > 1.000 ms" in _text(row[0])


def _config(lineage: Lineage, tmp_path: Path, evidence: str) -> Path:
    from tests.stampline.conftest import EXAMPLE, MARKET_RULES

    cfg = tmp_path / "stampline.yaml"
    cfg.write_text(
        EXAMPLE.read_text("utf-8")
        .replace("../stampline/data/market_data.rules.yaml", str(MARKET_RULES))
        .replace("path: ../stampline-data", f"path: {lineage.store.path}")
        .replace("database: stampline", f"database: {lineage.store.database}")
        + evidence,
        "utf-8",
    )
    return cfg


def test_the_cli_judges_against_the_tier_the_configuration_declares(
    lineage: Lineage, tmp_path: Path
) -> None:
    """`evidence.tier` and `evidence.stages` in the configuration are the tiers used and
    shown; `--tier` overrides the deployment's tier and says so."""
    cfg = _config(lineage, tmp_path, "evidence:\n  tier: hft\n  stages:\n    risk: voice\n")
    base = ["evidence", "--decision", lineage.decision, "--config", str(cfg), "--no-pdf"]
    result = runner.invoke(app, [*base, "--no-verify", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    doc = orjson.loads((tmp_path / "a" / "evidence.json").read_bytes())
    assert (doc["regime"]["tier"], doc["regime"]["stages"]) == ("hft", {"risk": "voice"})
    assert doc["regime"]["declared"] == f"evidence.tier in {cfg.resolve()}"
    assert _stamp(_event(doc, lineage.decision), "risk")["regime"]["tier"] == "voice"
    result = runner.invoke(
        app, [*base, "--no-verify", "--tier", "other", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0, result.output
    doc = orjson.loads((tmp_path / "b" / "evidence.json").read_bytes())
    assert (doc["regime"]["tier"], doc["regime"]["declared"]) == ("other", "--tier")


def test_a_tier_the_regime_lacks_is_a_configuration_error(tmp_path: Path) -> None:
    """`evidence.stages` naming an unknown tier is refused by `config check`, naming the key."""
    from stampline.config import check_config
    from tests.stampline.conftest import EXAMPLE, MARKET_RULES

    cfg = tmp_path / "stampline.yaml"
    cfg.write_text(
        EXAMPLE.read_text("utf-8").replace(
            "../stampline/data/market_data.rules.yaml", str(MARKET_RULES)
        )
        + "evidence:\n  stages:\n    risk: fast\n",
        "utf-8",
    )
    config, problems = check_config(cfg)
    assert config is None
    (problem,) = problems
    assert "evidence" in problem.key
    assert "no tier 'fast'" in problem.message


def test_the_decisions_latency_is_a_line_per_input(lineage: Lineage) -> None:
    """Each input's receipt (its ingest stamp) to the decision made (the deciding stage's
    stamp) is a line: value ± the two bounds, flagged when the bound covers it; an event's
    report has none."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    lat = doc["latency"]
    assert lat["decided"] == {
        "stage": "risk",
        "time": _stamp(_event(doc, lineage.decision), "risk")["time"],
        "time_ns": T0 + 1_500_001,
        "bound_ns": 2 * MS,
    }
    lines = {i["event_id"]: i for i in lat["inputs"]}
    assert set(lines) == {lineage.alpha, lineage.charlie}
    alpha = lines[lineage.alpha]
    assert (alpha["received_ns"], alpha["value_ns"], alpha["bound_ns"]) == (
        T0 + 5_000,
        1_495_001,
        2_050_000,
    )
    assert alpha["flags"] == ["within bound: the value, and the order of its ends, are uncertain"]
    text = _text(render_html(doc))
    assert "Decision latency" in text
    assert "1.495 ms ± 2.050 ms" in text
    assert event_evidence(lineage.store, lineage.alpha, _ctx(lineage)).to_dict()["latency"] is None


def _tamper(lineage: Lineage) -> None:
    lineage.store._execute(
        f"ALTER TABLE {lineage.store.database}.observations UPDATE stage_ns = stage_ns - 1 "
        f"WHERE event_id = '{lineage.alpha}' SETTINGS mutations_sync = 2"
    )


def test_a_failed_verification_is_a_banner_and_marks_each_affected_value(
    lineage: Lineage,
) -> None:
    """On a tampered store the page opens with a banner naming the findings, and every
    value from a batch that failed is marked, in the JSON and on the page; values from
    batches that verified are not."""
    _tamper(lineage)
    verified = lineage.store.verify()
    assert not verified.ok
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage), verified).to_dict()
    alpha_gate = _stamp(_event(doc, lineage.alpha), "gate")
    assert alpha_gate["affected"] == ["local batch 1: changed"]
    # charlie's row is in the same batch: its digest no longer vouches for it either.
    assert _stamp(_event(doc, lineage.charlie), "gate")["affected"] == ["local batch 1: changed"]
    assert all("affected" not in s for s in _event(doc, lineage.decision)["stamps"])
    assert {i["event_id"]: i["affected"] for i in doc["latency"]["inputs"]} == {
        lineage.alpha: True,
        lineage.charlie: True,
    }
    html = render_html(doc)
    banner = html.find('id="verification-failed"')
    assert 0 < banner < html.find("<h2>"), "the banner comes before every section"
    assert "VERIFICATION FAILED" in _text(html)
    assert "local batch 1: changed" in _text(html[banner:])
    marked = re.findall(r'<tr class="stamp-row affected">(.*?)</tr>', html)
    assert len(marked) == 2 * 3, "alpha's and charlie's origin, ingest and gate stamps"
    assert all("⚠" in m for m in marked)
    untouched = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    assert 'id="verification-failed"' not in render_html(untouched)


def _cli(lineage: Lineage, *args: str) -> Any:
    return runner.invoke(
        app,
        ["evidence", *args, "--store", str(lineage.store.path),
         "--database", lineage.store.database, "--no-pdf", "--no-verify"],
    )  # fmt: skip


def test_out_refuses_a_folder_holding_another_subjects_pack(
    lineage: Lineage, tmp_path: Path
) -> None:
    """`--out` into another decision's pack exits 2 naming it and leaves every file of it as
    it was (its PDF included); the same subject's pack is produced again in place."""
    out = tmp_path / "ev"
    assert _cli(lineage, "--decision", lineage.decision, "--out", str(out)).exit_code == 0
    (out / "report.pdf").write_bytes(b"%PDF- the other pack's printout")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = _cli(lineage, "--event", lineage.alpha, "--out", str(out))
    assert other.exit_code == 2, other.output
    assert f"{out} holds the evidence for decision {lineage.decision}" in other.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    again = _cli(lineage, "--decision", lineage.decision, "--out", str(out))
    assert again.exit_code == 0, again.output


def test_a_period_counts_only_the_time_its_stamps_cover(store: ChdbStore) -> None:
    """Tap sightings (broker milliseconds, bound 1 ms + 1 ms) over two seconds of an hour are
    all within the 'other' tier, with no excursion; the chart paints only those two seconds,
    and its legend says what each colour means."""
    ids = [f"01a21ad7-0000-7000-8000-{i:012d}" for i in range(11)]
    for i, eid in enumerate(ids):
        _tap_sighting(store, eid, T0 // MS + 200 * i)
    lo, hi = parse_period("2023-11-14T22:00:00Z..2023-11-14T23:00:00Z")
    reg, tier = regime_tier("rts25/2017/574", "other")
    doc = period_evidence(store, lo, hi, Context("t", reg, tier, "--store x")).to_dict()
    (clock,) = doc["clocks"]
    assert clock["stage"] == "tap:decisions"
    assert clock["within_tier_stamps_share"] == 1.0
    assert clock["within_tier_time_share"] == 1.0
    assert clock["excursions"] == []
    assert (clock["observed_granularity_ns"], clock["granularity_from"]) == (MS, "broker")
    assert clock["covered_ns"] == 2_000 * MS
    html = render_html(doc)
    (lane,) = re.findall(r'<rect class="covered"[^>]*width="([\d.]+)"', html)
    assert 0 < float(lane) < 2, "two seconds of an hour on a 780-pixel axis"
    legend = _text(re.search(r'<p class="legend">.*?</p>', html)[0])  # type: ignore[index]
    for words in ("within the tier", "beyond the tier", "no stamps: not counted"):
        assert words in legend
    assert "2.000 s" in _text(html)


def test_a_finding_about_a_whole_chain_marks_every_value_read_from_it(lineage: Lineage) -> None:
    """A head the chain no longer holds puts the whole chain in doubt: every stamp read from
    it is marked with the finding, and the banner names it."""
    verified = lineage.store.verify(expect_heads=[("local", "ab" * 32)])
    assert [f.problem for f in verified.findings] == ["head_missing"]
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage), verified).to_dict()
    stamps = [s for e in doc["events"] for s in e["stamps"]]
    assert {tuple(s["affected"]) for s in stamps} == {("local: head_missing",)}
    html = render_html(doc)
    assert "local: head_missing" in _text(html[html.find('id="verification-failed"') :])


def test_a_value_another_chain_holds_differently_is_contested_on_page_one(
    lineage: Lineage,
) -> None:
    """A made-up chain re-stating alpha's gate row with another host (its id sorting before
    the real chain's) does not replace it silently: the report's first banner says the value
    is contested, naming both chains, and the stamp, the values read from alpha's rows and
    alpha's latency line are marked; the JSON meets its schema."""
    import fastjsonschema

    from stampline.evidence import EVIDENCE_JSON_SCHEMA

    db = lineage.store.database
    lineage.store._execute(
        f"INSERT INTO {db}.observations SELECT * REPLACE ('a.forged/0' AS chain_id, 1 AS batch, "
        f"'mallory' AS host) FROM (SELECT * FROM {db}.observations "
        f"WHERE event_id = '{lineage.alpha}' AND stage = 'gate')"
    )
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    fastjsonschema.compile(EVIDENCE_JSON_SCHEMA)(doc)
    note = "contested: chains a.forged/0, local hold different rows"
    alpha = _event(doc, lineage.alpha)
    assert _stamp(alpha, "gate")["affected"] == [note]
    assert _stamp(alpha, "origin")["affected"] == [note]
    assert alpha["affected"] == [note]
    assert "affected" not in _stamp(_event(doc, lineage.charlie), "gate")
    assert doc["integrity"]["contested"] == [
        {"event_id": lineage.alpha, "stage": "gate", "chains": ["a.forged/0", "local"]}
    ]
    assert {i["event_id"]: i["affected"] for i in doc["latency"]["inputs"]} == {
        lineage.alpha: True,
        lineage.charlie: False,
    }
    html = render_html(doc)
    banner = html.find('id="contested"')
    assert 0 < banner < html.find("<h2>"), "the banner comes before every section"
    assert f"{lineage.alpha} gate: chains a.forged/0, local" in _text(html[banner:])
    marked = re.findall(r'<tr class="stamp-row affected">(.*?)</tr>', html)
    assert len(marked) == 3, "alpha's origin, ingest and gate stamps"
    assert all(note in _text(m) for m in marked)
