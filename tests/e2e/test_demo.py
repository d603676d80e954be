"""The demo end to end: exact counts, every injected fault caught, and a replayable decision."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from stampline._feed import BAD_KINDS, FeedPlan
from stampline.audit import ChdbStore
from stampline.collectors import H_OFFSET, H_PARTITION, H_RULE_ID
from stampline.config import load_config
from stampline.demo import DemoResult, rules_file, run_demo, stateful_rules_file
from tests.e2e.test_run import STAMPLINE, _query, _wait_log
from tests.helpers import read_all

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# bravo silent for 16 rounds of 50 ms: past the demo's 500 ms max_gap, so it alerts; the
# feed's other faults (a gap of 3 on charlie SYM005 at round 15, alpha SYM010 10% off for
# rounds 25-32, a one-round spike on alpha SYM020 at 27) are at their defaults.
PLAN = FeedPlan(rounds=34, silent_rounds=(8, 24), bad_per_kind=2)
DEMO_ALERTS = {
    ("provider.silent", "provider_silent"): {"provider": "bravo", "venue": "DEMO"},
    ("sequence.gap", "sequence_gap"): {"provider": "charlie", "venue": "DEMO",
                                       "instrument": "SYM005"},
    ("price.divergence", "divergence"): {"provider": "alpha", "venue": "DEMO",
                                         "instrument": "SYM010"},
}  # fmt: skip


def check_demo_alerts(alerts: list[dict[str, object]]) -> None:
    """Exactly the silent provider, the gap and the sustained divergence, each fired and
    resolved; nothing for the spike or anyone else."""
    got = {(a["id"], a["kind"]): a["labels"] for a in alerts}
    assert len(alerts) == 3, alerts
    assert got == DEMO_ALERTS
    for a in alerts:
        assert isinstance(a["fired_at"], str)
        assert isinstance(a["resolved_at"], str)
        assert a["fired_at"] < a["resolved_at"], a
    (gap,) = [a for a in alerts if a["id"] == "sequence.gap"]
    assert gap["summary"] == "charlie SYM005: 3 sequence number(s) missing"


@pytest.fixture(scope="module")
def demo(bootstrap: str, chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    # The demo's recorder (a child process) holds the session's chDB folder while it runs:
    # this process opens it only afterwards.
    return run_demo(
        chdb_dir,
        database="e2e_demo",
        fresh=False,
        data_dir=tmp_path_factory.mktemp("e2e-demo"),
        plan=PLAN,
        bootstrap=bootstrap,
        topic_prefix="e2e-demo.",
    )


def test_the_demo_is_stampline_run_plus_a_feed_and_a_decision_stage(
    demo: DemoResult, chdb_dir: Path
) -> None:
    """The demo wrote a real deployment config (broker, topics, store, rules incl. the
    stateful demo rules, alert definitions, no metrics) and ran the gate, the recorder and
    the tap from it as child processes that each stopped cleanly on SIGTERM."""
    cfg = load_config(demo.config)
    assert cfg.broker.bootstrap_servers == demo.bootstrap
    assert cfg.topics.raw == [demo.topics.raw]
    assert cfg.tap.topics == [demo.topics.decisions]
    assert (cfg.store.path, cfg.store.database) == (chdb_dir.resolve(), "e2e_demo")
    assert cfg.rules.files == [rules_file(), stateful_rules_file()]
    assert cfg.alerting.definitions is not None
    assert cfg.alerting.definitions.exists()
    assert (cfg.alerting.topic, cfg.alerting.watch_clock) == (demo.topics.alerts, "event")
    assert cfg.metrics.enabled is False
    assert [(c["name"], c["last_exit"]) for c in demo.children] == [
        ("gate-1", 0), ("recorder", 0), ("tap", 0)
    ]  # fmt: skip
    assert all(c["pid"] != os.getpid() for c in demo.children)
    assert demo.summary["config_path"] == str(demo.config)
    logs = demo.config.parent / "logs"
    assert "gate: stopped cleanly" in (logs / "gate-1.log").read_text()
    assert "recorder: stopped cleanly" in (logs / "recorder.log").read_text()


def test_events_in_equals_forwarded_plus_dead_lettered(demo: DemoResult) -> None:
    """Every event the feed sent is accounted for exactly once in the summary."""
    s = demo.summary
    assert s["events_in"] == s["gate_seen"]
    assert s["events_in"] == s["forwarded"] + sum(s["dead_lettered"].values())


def test_topics_match_the_summary(demo: DemoResult, bootstrap: str) -> None:
    """The clean and dead-letter topics hold exactly the counts the summary reports."""
    s = demo.summary
    clean = read_all(bootstrap, demo.topics.clean, s["forwarded"])
    dlq = read_all(bootstrap, demo.topics.dead_letter, sum(s["dead_lettered"].values()))
    assert len(clean) == s["forwarded"]
    assert len(dlq) == sum(s["dead_lettered"].values())


def test_every_injected_fault_is_dead_lettered_with_its_reason_and_nothing_else(
    demo: DemoResult, bootstrap: str
) -> None:
    """The DLQ holds exactly the injected bad records, each under the rule that must catch it."""
    assert len(demo.injected) == PLAN.bad_per_kind * len(BAD_KINDS)
    dlq = read_all(bootstrap, demo.topics.dead_letter, len(demo.injected))
    got = {
        (int(r.header(H_PARTITION) or b""), int(r.header(H_OFFSET) or b"")): (
            r.header(H_RULE_ID) or b""
        ).decode()
        for r in dlq
    }
    want = {(i.partition, i.offset): i.rule_id for i in demo.injected}
    assert got == want
    assert demo.summary["dead_lettered"] == dict(Counter(want.values()))


def test_injected_behaviours_show_in_the_summary(demo: DemoResult) -> None:
    """The silent provider has the longest gap, the skewed one negative latency, risk the spike."""
    providers = demo.summary["providers"]
    silent = PLAN.silent_rounds[1] - PLAN.silent_rounds[0]
    assert providers["bravo"]["max_gap_ms"] >= silent * PLAN.round_interval_s * 1000 * 0.9
    # Longest, not "twice alpha's": alpha's gap is the feed's own longest stall between rounds
    # (600 ms once on a loaded CI machine). Bravo is sent in the same rounds minus the silent
    # ones, so its gaps hold every stall alpha's do, and the silence besides.
    others = [p["max_gap_ms"] for name, p in providers.items() if name != "bravo"]
    assert providers["bravo"]["max_gap_ms"] >= max(others)
    assert providers["charlie"]["latency_p50_ms"] < 0 < providers["alpha"]["latency_p50_ms"]
    assert demo.summary["decision_stage_ms"] >= 25.0
    assert set(demo.summary["stages"]) == {"gate", "risk"}, "only stages that hold events"


def test_cli_demo_then_replay_shows_decision_and_inputs(tmp_path: Path) -> None:
    """`stampline demo --json` (its default feed) lists exactly its three alerts — silence,
    sequence gap, sustained divergence, each fired and resolved, none for the one-round
    spike — and `replay --decision --json` on its store shows the lineage; the demo's stderr
    holds only its own progress lines, none of librdkafka's (`%6|...`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    store = tmp_path / "demo-store"
    run = subprocess.run(
        [sys.executable, "-m", "stampline", "demo", "--json", "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    assert [ln for ln in run.stderr.splitlines() if not ln.startswith("demo: ")] == []
    summary = json.loads(run.stdout)
    config = summary["config_path"]
    assert f"demo: query it live: stampline hotspots --config {config}" in run.stderr
    assert Path(config).parent == Path(summary["store_path"])
    for key in (
        "events_in",
        "forwarded",
        "dead_lettered",
        "decision_id",
        "store_path",
        "evidence_command",
        "replay_command",
        "config_path",
    ):
        assert key in summary
    assert isinstance(summary["dead_lettered"], dict)
    check_demo_alerts(summary["alerts"])
    # The README shows what the demo prints: its figures, decisions within a few.
    shown = re.search(
        r"events in ([\d,]+)   forwarded ([\d,]+)   dead-lettered (\d+)   decisions (\d+)",
        (REPO / "README.md").read_text(),
    )
    assert shown is not None
    events_in, forwarded, dead, decisions = (int(g.replace(",", "")) for g in shown.groups())
    assert (events_in, forwarded, dead) == (
        summary["events_in"], summary["forwarded"], sum(summary["dead_lettered"].values()),
    )  # fmt: skip
    assert abs(decisions - summary["decisions"]) <= 10
    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "stampline",
            "replay",
            "--decision",
            summary["decision_id"],
            "--store",
            summary["store_path"],
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    events = json.loads(replay.stdout)["events"]
    assert events[0]["event_id"] == summary["decision_id"]
    inputs = [e for e in events if e["event_id"] in events[0]["parents"]]
    assert len(inputs) >= 1
    for e in events:
        stages = [s["stage"] for s in e["stamps"]]
        assert {"origin", "ingest"} <= set(stages)
        assert any(s["kind"] == "stage" for s in e["stamps"])
        times = [s["time_ns"] for s in e["stamps"]]
        assert times == sorted(times)
    assert {s["stage"] for e in inputs for s in e["stamps"]} >= {"gate"}
    assert any(s["stage"] == "risk" for s in events[0]["stamps"])


def test_the_demo_raises_exactly_its_three_alerts(demo: DemoResult, chdb_dir: Path) -> None:
    """The summary's alerts are the silent provider, the sequence gap and the sustained
    divergence, each fired and resolved; the one-round spike and the other providers raised
    none; the store's alert history holds the same firings and resolves."""
    check_demo_alerts(demo.summary["alerts"])
    with ChdbStore(chdb_dir, "e2e_demo") as store:
        rows = store.query(
            "SELECT alert_id, state, labels['provider'] AS provider FROM {db}.alert_history "
            "FINAL ORDER BY alert_id, state"
        )
    assert [(r["alert_id"], r["state"], r["provider"]) for r in rows] == [
        ("price.divergence", "firing", "alpha"), ("price.divergence", "resolved", "alpha"),
        ("provider.silent", "firing", "bravo"), ("provider.silent", "resolved", "bravo"),
        ("sequence.gap", "firing", "charlie"), ("sequence.gap", "resolved", "charlie"),
    ]  # fmt: skip


def test_evidence_for_the_demo_decision_holds_the_facts_and_its_head_verifies(
    demo: DemoResult, chdb_dir: Path, tmp_path: Path
) -> None:
    """`stampline evidence --decision` on the demo's store writes HTML, PDF, JSON and manifest;
    the JSON lists the decision and its inputs with each stamp's time, bound, bound source and
    tier verdict (a tap's sighting meeting the default tier on the broker's millisecond), the
    decision's latency per input, the rule verdicts and the integrity proof, whose head `audit
    verify` reports; an input born after its decision by its own clock (the skewed provider) is
    flagged."""
    from typer.testing import CliRunner

    from stampline.cli import app

    runner = CliRunner()
    store = ["--store", str(chdb_dir), "--database", "e2e_demo"]
    out = tmp_path / "evidence"
    made = runner.invoke(
        app, ["evidence", "--decision", demo.summary["decision_id"], "--out", str(out), *store]
    )
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS",
        "evidence.json",
        "evidence.schema.json",
        "manifest.json",
        "report.html",
        "report.pdf",
    ]
    doc = json.loads((out / "evidence.json").read_text())
    decision, *inputs = doc["events"]
    assert decision["event_id"] == demo.summary["decision_id"]
    assert {e["event_id"] for e in inputs} == set(decision["parents"])
    assert {e["provider"] for e in inputs} == set(PLAN.providers)
    for e in doc["events"]:
        assert e["rules"]["outcome"] in ("forwarded", "observed")
        for s in e["stamps"]:
            assert s["time"].endswith("Z")
            assert s["regime"]["verdict"] in ("meets", "fails", "unproven", "outside")
            if s["kind"] in ("ingest", "stage"):
                assert s["bound_ns"] > 0
                assert s["bound_source"]["kind"] in ("configured", "unknown")
        if e["role"] == "input":
            gate = next(s for s in e["stamps"] if s["stage"] == "gate")
            assert gate["bound_source"] == {"kind": "configured"}
    risk = next(s for s in decision["stamps"] if s["stage"] == "risk")
    assert risk["bound_source"] == {"kind": "configured"}  # the SDK's stamp says so
    decided = risk["time_ns"]
    born_late = {
        e["event_id"]
        for e in inputs
        if next(s["time_ns"] for s in e["stamps"] if s["kind"] == "origin") > decided
    }
    flagged = {f["event_id"] for f in doc["order_flags"] if "after" in f["flag"]}
    assert flagged == born_late
    # A tap's sighting is timed by the broker's millisecond: the default tier is met, and
    # the granularity said to be the broker's.
    taps = [s for e in doc["events"] for s in e["stamps"] if s["stage"].startswith("tap:")]
    assert taps
    for s in taps:
        assert (s["regime"]["verdict"], s["regime"]["granularity_from"]) == ("meets", "broker")
    # The decision's latency: one line per input, received -> decided, with its bound.
    lines = doc["latency"]["inputs"]
    assert {i["event_id"] for i in lines} == set(decision["parents"])
    assert doc["latency"]["decided"]["stage"] == "risk"
    for i in lines:
        assert i["value_ns"] == decided - i["received_ns"]
        assert i["bound_ns"] > 0
    proof = doc["integrity"]
    assert proof["verified_at_production"]["ok"] is True
    held = {h.split("/")[0] for b in proof["batches"] for h in b["holds"]}
    assert held == {e["event_id"] for e in doc["events"]}
    argv = shlex.split(proof["verify_command"])
    assert argv.count("--expect-head") >= len(proof["chains"]) >= 1  # every chain in the store
    verify = runner.invoke(app, [*argv[1:], "--json"])
    assert verify.exit_code == 0, verify.output
    heads = json.loads(verify.stdout)["chain_heads"]
    assert {c["chain_id"]: c["head"] for c in proof["chains"]}.items() <= heads.items()


def test_the_demo_answers_live_queries_and_fails_naming_a_crashed_child(tmp_path: Path) -> None:
    """While `stampline demo` runs, `stampline hotspots --config` from another process
    answers through the recorder's live endpoint; a SIGKILLed gate then fails the demo at
    once with one line naming the gate (no restart, no hang)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    log = tmp_path / "demo.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*STAMPLINE, "demo", "--json", "--rounds", "2000", "--store", str(tmp_path / "s")],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        config = _wait_log(log, r"demo: query it live: stampline hotspots --config (\S+)", proc)
        gate_pid = int(_wait_log(log, r"demo: started gate-1 pid (\d+)", proc).group(1))
        _wait_log(log, r"demo: feed: round 10/", proc)
        deadline = time.monotonic() + 60
        while True:  # the recorder writes what the gate stamped a moment later
            rows = _query(["hotspots", "--config", config.group(1)])["rows"]
            assert isinstance(rows, list)
            if any(r["to_stage"] == "gate" for r in rows):
                break
            assert time.monotonic() < deadline, rows
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        os.kill(gate_pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the demo stops its children on SIGTERM
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        assert proc.stdout is not None
        proc.stdout.close()
    text = log.read_text()
    assert proc.returncode == 1, text
    assert out == b""
    (last,) = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert last.startswith("error: the gate-1 child stopped (signal SIGKILL)"), text
    assert text.count("started gate-1") == 1, "not restarted"
    assert not (tmp_path / "s" / ".stampline-live.json").exists(), "the recorder was stopped"


def test_sigterm_stops_the_demo_and_its_children(tmp_path: Path) -> None:
    """SIGTERM to a running demo stops it with a clear error and stops every child it
    started (none is left running behind it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    log = tmp_path / "demo.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*STAMPLINE, "demo", "--rounds", "2000", "--store", str(tmp_path / "s")],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    try:
        _wait_log(log, r"demo: feed: round 10/", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    text = log.read_text()
    assert proc.returncode == 1, text
    assert "error: stopped before the end (its children are stopped too)" in text
    pids = [int(p) for p in re.findall(r"demo: started \S+ pid (\d+)", text)]
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
