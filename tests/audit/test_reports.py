"""The reports on a feed with faults injected at known places, through the real gate, an SDK
stage and a late tap, over the embedded broker into chDB: exact figures, and nothing else.

The feed (all produced before the gate starts, so the gate ingests it in one batch and
every record shares one ingestion time; its origins are what the test sets):

- 3 providers x 10 instruments x 60 rounds, one round per second of origin time, sequence
  numbers per provider and instrument;
- alpha/I03 skips 20 numbers (30..49) from round 30 on: a sequence gap of 20 on one key;
- bravo is silent for rounds 40-49: an 11 s pause between two of its origins;
- charlie's clock runs 3 ms ahead: each of its origins reads 3 ms later than the truth;
- charlie quotes I05 4 % high for rounds 20-34 (15 s): a sustained divergence of 400 bps;
- bravo quotes I07 6 % high once, at round 10: a single-tick spike of 600 bps;
- a "risk" stage (the SDK) takes each alpha/I00 quote, holds it 30 ms and produces a
  decision derived from it: a slow stage of known hold time, with a lineage hop;
- a tap on the clean and decisions topics starts 2 s after the last decision.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry
from rich.console import Console
from typer.testing import CliRunner

from stampline.audit import (
    ChdbStore,
    completeness,
    heatmap,
    hotspots,
    parse_sequence_key,
    providers_compare,
    replay_event,
)
from stampline.audit._queries import BROKER_RESOLUTION_NS
from stampline.broker import ensure_topics
from stampline.cli import app
from stampline.cli._heatmap import render_heatmap
from stampline.collectors import GateSettings, SidecarMetrics, Tap, TapSettings, stage
from stampline.collectors._kafka import consumer_config, take
from stampline.rules import RuleSet
from tests.helpers import GateRun, produce

pytestmark = pytest.mark.slow

MS = 1_000_000
S = 1_000_000_000
ROUNDS, INSTRUMENTS = 60, 10
PROVIDERS = ("alpha", "bravo", "charlie")
SKEW_MS = 3
HOLD_S = 0.030
TAP_LATE_S = 2.0
GATE_BOUND = 500_000
REASON = "sequence gap: expected 30, got 50 (20 missing)"

RULES = """
version: 2
rules:
  - id: seq.contiguous
    version: 3
    kind: sequence
    field: seq
    severity: warn
  - id: quantity.non_negative
    version: 1
    kind: range
    field: quantity
    min: 0
"""


def price(provider: str, i: int, r: int) -> float:
    base = 100.0 + i
    if provider == "charlie" and i == 5 and 20 <= r <= 34:
        return base * 1.04
    if provider == "bravo" and i == 7 and r == 10:
        return base * 1.06
    return base


def seq(provider: str, i: int, r: int) -> int:
    if provider == "alpha" and i == 3 and r >= 30:
        return r + 20
    if provider == "bravo" and r >= 50:
        return r - 10  # a silence loses no number: it resumes where it stopped
    return r


def feed(base_ms: int) -> list[tuple[bytes, bytes]]:
    out = []
    for r in range(ROUNDS):
        for p in PROVIDERS:
            if p == "bravo" and 40 <= r <= 49:
                continue
            for i in range(INSTRUMENTS):
                origin = base_ms + r * 1000 + (SKEW_MS if p == "charlie" else 0)
                event = {
                    "provider": p,
                    "instrument": f"I{i:02d}",
                    "seq": seq(p, i, r),
                    "ts": origin,
                    "price": price(p, i, r),
                    "quantity": 100,
                }
                out.append((f"{p}:{i}".encode(), orjson.dumps(event)))
    return out


@dataclass
class Run:
    store: ChdbStore
    base_ns: int
    metrics: SidecarMetrics
    warned: dict[str, int]
    decisions: list[str]
    gap_event: str  # the record after alpha/I03's gap
    store_dir: Path
    database: str


def _risk(bootstrap: str, clean: str, decisions: str, want: int, out: list[str]) -> None:
    """The slow stage: each alpha/I00 quote is held 30 ms, then a decision is made from it."""
    consumer = Consumer(consumer_config(bootstrap, f"risk-{uuid.uuid4().hex[:6]}"))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    consumer.subscribe([clean])
    deadline = time.monotonic() + 90
    try:
        while len(out) < want and time.monotonic() < deadline:
            for m in take(consumer, 500, 0.1):
                if m.error() is not None:
                    continue
                q = orjson.loads(m.value() or b"{}")
                if (q["provider"], q["instrument"]) != ("alpha", "I00"):
                    continue
                with stage("risk", m, producer=producer) as st:
                    time.sleep(HOLD_S)
                    out.append(st.produce(decisions, orjson.dumps({"ref": q["price"]})))
            producer.poll(0)
    finally:
        producer.flush(10)
        consumer.close()


@pytest.fixture(scope="module")
def run(bootstrap: str, chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    uid = uuid.uuid4().hex[:10]
    raw, clean, dlq, decisions = (f"{uid}.{n}" for n in ("raw", "clean", "dlq", "decisions"))
    ensure_topics(bootstrap, [raw], 1)
    ensure_topics(bootstrap, [clean, dlq, decisions], 1)
    rules_path = tmp_path_factory.mktemp("rules") / "reports.rules.yaml"
    rules_path.write_text(RULES)
    rules = RuleSet.load([rules_path])
    # Whole seconds plus half a second, two minutes back: no origin crosses a second edge.
    base_ms = (int(time.time()) - 120) * 1000 + 500
    records = feed(base_ms)
    database = f"reports_{uid}"
    with ChdbStore(chdb_dir, database) as store:
        produce(bootstrap, raw, records, partition=0)
        metrics = SidecarMetrics(CollectorRegistry())
        gate = GateRun(
            GateSettings(
                bootstrap,
                (raw,),
                clean,
                dlq,
                group_id=f"{uid}-gate",
                host="gate-host",
                clock_err_ns=GATE_BOUND,
                consume_batch=5000,
            ),
            rules,
            store,
            metrics,
        )
        made: list[str] = []
        risk = threading.Thread(
            target=_risk, args=(bootstrap, clean, decisions, ROUNDS, made), daemon=True
        )
        risk.start()
        gate.wait_for(len(records))
        risk.join(120)
        assert len(made) == ROUNDS, f"risk made {len(made)} decisions"
        gate.stop()
        time.sleep(TAP_LATE_S)  # the tap starts late: its lag is not pipeline latency
        tap = Tap(
            TapSettings(bootstrap, (clean, decisions), group_id=f"{uid}-tap", host="tap-host"),
            store,
        )
        stop = threading.Event()
        tap_thread = threading.Thread(target=tap.run, args=(stop,), daemon=True)
        tap_thread.start()
        deadline = time.monotonic() + 60
        forwarded = len(records)
        while tap.stats.records < forwarded + ROUNDS:
            assert time.monotonic() < deadline, f"tap read {tap.stats.records} records"
            time.sleep(0.05)
        stop.set()
        tap_thread.join(30)
        (gap,) = store.query(
            """SELECT toString(event_id) AS id FROM {db}.observations
               WHERE provider = 'alpha' AND instrument = 'I03' AND seq = 50"""
        )
        yield Run(
            store,
            base_ms * MS,
            metrics,
            dict(gate.gate.stats.warned),
            made,
            gap["id"],
            chdb_dir,
            database,
        )


WINDOW = 15 * 60 * S


def by_provider(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["provider"]: r for r in rows}


# ---------------------------------------------------------------- completeness


def test_completeness_counts_one_gap_of_20_on_one_key_and_nothing_duplicated(run: Run) -> None:
    """Per provider and instrument, alpha lost exactly 20 on I03; nothing else lost or doubled."""
    result = completeness(run.store, WINDOW, grace_ns=0)
    origin = {r["provider"]: r for r in result["rows"] if r["from_stage"] == "origin"}
    got = {p: (r["keys"], r["upstream"], r["lost"], r["duplicated"]) for p, r in origin.items()}
    assert got == {
        "alpha": (10, 9 * 60 + 80, 20, 0),
        "bravo": (10, 10 * 50, 0, 0),
        "charlie": (10, 10 * 60, 0, 0),
    }
    (gap,) = result["sequence_gaps"]
    assert gap["key"] == {"provider": "alpha", "instrument": "I03"}
    assert (gap["stage"], gap["first_missing"], gap["size"]) == ("gate", 30, 20)
    assert gap["origin_ns"] == run.base_ns + 30 * S  # the first number after the gap
    assert [k["key"] for k in result["sequence_keys"]] == [gap["key"]]
    assert result["unattributed"] == 0, "a tap's rows name no provider and must not count"


def test_completeness_stage_pairs_lose_nothing(run: Run) -> None:
    """Event ids link every stage pair the trail holds; none lost or doubled with no grace."""
    result = completeness(run.store, WINDOW, grace_ns=0)
    pairs = {(r["from_stage"], r["to_stage"]): r for r in result["rows"] if r["provider"] is None}
    clean, decisions = (f"tap:{t}" for t in _topics(run))
    assert {k: (r["upstream"], r["lost"], r["duplicated"]) for k, r in pairs.items()} == {
        ("gate", clean): (1700, 0, 0),
        ("risk", decisions): (ROUNDS, 0, 0),
    }


def test_completeness_cli_accepts_zero_grace_and_a_key(run: Run) -> None:
    """`--grace 0s` is accepted; `--key provider` counts per provider (overlapping numbers)."""
    result = CliRunner().invoke(
        app,
        ["completeness", "--grace", "0s", "--key", "provider", "--json", *_store_args(run)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["grace_ns"] == 0
    assert data["sequence_key"] == ["provider"]
    alpha = next(r for r in data["rows"] if r["provider"] == "alpha")
    assert alpha["keys"] == 1
    assert alpha["duplicated"] > 0  # per-instrument numbers collide
    bad = CliRunner().invoke(app, ["completeness", "--key", "venue", *_store_args(run)])
    assert bad.exit_code == 2
    assert "'venue'" in bad.output


def test_parse_sequence_key_names_the_bad_field() -> None:
    """The sequence key accepts provider and instrument only, and names anything else."""
    assert parse_sequence_key("provider+instrument") == ("provider", "instrument")
    assert parse_sequence_key("instrument") == ("instrument",)
    with pytest.raises(ValueError, match="'seq'"):
        parse_sequence_key("provider,seq")


# ---------------------------------------------------------------- providers compare


def test_providers_compare_rates_over_the_active_span(run: Run) -> None:
    """Rate is (forwarded - 1) over the provider's first-to-last origin, not over the window."""
    rows = by_provider(providers_compare(run.store, WINDOW)["rows"])
    assert rows["alpha"]["updates_per_s"] == round((600 - 1) / 59, 3)
    assert rows["bravo"]["updates_per_s"] == round((500 - 1) / 59, 3)
    assert rows["charlie"]["updates_per_s"] == round((600 - 1) / 59, 3)
    assert {p: r["events"] for p, r in rows.items()} == {"alpha": 600, "bravo": 500, "charlie": 600}
    assert all(r["dead_lettered_share"] == 0 for r in rows.values())


def test_providers_compare_shows_silences_and_sequence_gaps_apart(run: Run) -> None:
    """Bravo's one 11 s silence and alpha's one gap of 20 numbers, each in its own columns."""
    rows = by_provider(providers_compare(run.store, WINDOW, gap_ns=S)["rows"])
    got = {
        p: (
            r["silences"],
            r["silence_longest_ns"],
            r["silence_total_ns"],
            r["sequence_gaps"],
            r["sequence_missing"],
            r["sequence_duplicated"],
        )
        for p, r in rows.items()
    }
    assert got == {
        "alpha": (0, 0, 0, 1, 20, 0),
        "bravo": (1, 11 * S, 11 * S, 0, 0, 0),
        "charlie": (0, 0, 0, 0, 0, 0),
    }


def test_providers_compare_divergence_max_sustained_and_median(run: Run) -> None:
    """Charlie's 15 s at 4 % holds (400 bps sustained); bravo's one 6 % tick does not."""
    rows = by_provider(providers_compare(run.store, WINDOW, sustain_s=5)["rows"])
    got = {
        p: (r["divergence_bps_max"], r["divergence_bps_sustained"], r["divergence_bps_p50"])
        for p, r in rows.items()
    }
    assert got == {
        "alpha": (0, 0, 0),
        "bravo": (pytest.approx(600), 0, 0),
        "charlie": (pytest.approx(400), pytest.approx(400), 0),
    }
    # every (instrument, second) each provider quoted was compared with at least one other
    assert {p: r["divergence_seconds"] for p, r in rows.items()} == {
        "alpha": 600,
        "bravo": 500,
        "charlie": 600,
    }
    # 16 s needed: charlie's 15 s no longer count as sustained
    longer = by_provider(providers_compare(run.store, WINDOW, sustain_s=16)["rows"])
    assert longer["charlie"]["divergence_bps_sustained"] == 0


def test_providers_compare_flags_the_skewed_clock_only(run: Run) -> None:
    """Charlie's clock, 3 ms ahead, shows 3 ms below its peers' offset and is the only flag.
    The offsets are provider -> broker: as exact as the broker time's millisecond (two
    records produced microseconds apart may straddle one; it failed once at 2 ms)."""
    rows = by_provider(providers_compare(run.store, WINDOW)["rows"])
    charlie = rows["charlie"]
    assert charlie["clock_offset_basis"] == "provider → broker"
    assert abs(charlie["clock_offset_vs_peers_ns"] + SKEW_MS * MS) <= BROKER_RESOLUTION_NS
    assert charlie["clock_bound_ns"] == GATE_BOUND
    (flag,) = charlie["clock_flags"]
    assert "below its peers'" in flag
    for p in ("alpha", "bravo"):
        assert rows[p]["clock_flags"] == []
        assert abs(rows[p]["clock_offset_vs_peers_ns"]) <= BROKER_RESOLUTION_NS
    # the offset is the smallest broker time - origin: each provider's last round, one batch
    assert rows["alpha"]["clock_offset_ns"] - charlie["clock_offset_ns"] == pytest.approx(
        SKEW_MS * MS, abs=BROKER_RESOLUTION_NS
    )


# ---------------------------------------------------------------- hotspots and heat map


def test_hotspots_shows_every_hop_and_nothing_else(run: Run) -> None:
    """Every stage pair in the trail appears once per event: the lineage hop gate → risk too."""
    clean, decisions = (f"tap:{t}" for t in _topics(run))
    raw = f"kafka:{_raw(run)}"
    result = hotspots(run.store, WINDOW)
    hops = {(r["from_stage"], r["to_stage"]): r["hops"] for r in result["rows"]}
    assert hops == {
        # the first hop split at the broker; the tap's reading of the gate stamp not again
        ("origin", raw): 1700,
        (raw, "gate"): 1700,
        ("gate", "risk"): ROUNDS,
        ("gate", clean): 1700,
        ("risk", decisions): ROUNDS,
    }


def test_the_hop_rollup_counts_each_hop_once_as_hotspots_does(run: Run) -> None:
    """The gate records its own stamps and the tap reads them again from headers: the hotspot
    panel (the per-minute rollup) still counts every hop once, lineage hop gate → risk
    included, so its counts per hop are `hotspots`'s."""
    from stampline.dashboards import (
        ALL,
        TimeRange,
        expand,
    )
    from stampline.dashboards._hotspots import HOTSPOTS

    cli = {(r["from_stage"], r["to_stage"]): r["hops"] for r in hotspots(run.store, WINDOW)["rows"]}
    (span,) = run.store.query(
        "SELECT toUnixTimestamp(min(minute)) AS lo, toUnixTimestamp(max(minute)) AS hi"
        " FROM {db}.hop_latency_1m"
    )
    window = TimeRange(int(span["lo"]) * 1000, (int(span["hi"]) + 60) * 1000)
    sql = expand(
        HOTSPOTS.sql.replace("{db}", run.store.database), window, {"provider": ALL, "stage": ALL}
    )
    panel = {(r["from_stage"], r["to_stage"]): r["hops"] for r in run.store.query(sql)}
    assert panel == cli
    raw = f"kafka:{_raw(run)}"
    assert panel[("origin", raw)] == panel[(raw, "gate")] == 1700
    assert panel[("gate", "risk")] == ROUNDS
    (copies,) = run.store.query(
        "SELECT groupUniqArray(authority) AS a FROM {db}.hop_latency_1m WHERE stage = 'gate'"
    )
    assert sorted(copies["a"]) == [1, 2]  # the gate's rows and the tap's: both kept, one read


def test_the_stage_time_rollup_counts_each_event_once(run: Run) -> None:
    """With the tap reading the gate's stamps again, the decomposition panel and the providers'
    update rate (the stage-time rollup) count every gate event once: as many as `hotspots`
    holds at the gate, though the rollup keeps both copies."""
    from stampline.dashboards import (
        ALL,
        TimeRange,
        expand,
    )
    from stampline.dashboards._hotspots import DECOMPOSITION
    from stampline.dashboards._providers import RATE

    gate_events = next(r for r in hotspots(run.store, WINDOW)["holds"] if r["stage"] == "gate")
    (span,) = run.store.query(
        "SELECT toUnixTimestamp(min(minute)) AS lo, toUnixTimestamp(max(minute)) AS hi"
        " FROM {db}.stage_time_1m"
    )
    window = TimeRange(int(span["lo"]) * 1000, (int(span["hi"]) + 60) * 1000)
    every = {"provider": ALL, "topic": ALL, "stage": ALL}

    def panel(sql: str) -> list[dict[str, Any]]:
        return run.store.query(expand(sql.replace("{db}", run.store.database), window, every))

    (gate,) = [r for r in panel(DECOMPOSITION.sql) if r["stage"] == "gate"]
    assert gate["events"] == gate_events["events"] == 1700
    assert sum(r["updates_per_s"] for r in panel(RATE.sql)) * 60 == pytest.approx(1700)
    (copies,) = run.store.query(
        "SELECT groupUniqArray(authority) AS a FROM {db}.stage_time_1m WHERE stage = 'gate'"
    )
    assert sorted(copies["a"]) == [1, 2]  # the gate's rows and the tap's: both kept, one read


def test_hotspots_hold_time_shows_the_slow_stage(run: Run) -> None:
    """Risk held each event at least 30 ms; its max equals the slowest hold replay shows."""
    result = hotspots(run.store, WINDOW)
    holds = {r["stage"]: r for r in result["holds"]}
    assert set(holds) == {"gate", "risk"}
    risk = holds["risk"]
    assert risk["events"] == ROUNDS
    assert risk["p50_ns"] >= HOLD_S * S
    replayed = []
    for d in run.decisions:
        (st,) = (s for s in replay_event(run.store, d).events[0].stamps if s.stage == "risk")
        assert st.received_ns is not None
        replayed.append(st.time_ns - st.received_ns)
    assert risk["max_ns"] == max(replayed)
    assert min(replayed) >= HOLD_S * S


def test_hotspots_keeps_a_late_taps_lag_out_of_the_hops(run: Run) -> None:
    """A tap started 2 s late lags ≥ 2 s, yet its hops run from the broker time: far below."""
    clean, decisions = (f"tap:{t}" for t in _topics(run))
    result = hotspots(run.store, WINDOW)
    lags = {r["stage"]: r for r in result["tap_lags"]}
    assert set(lags) == {clean, decisions}
    assert lags[decisions]["events"] == ROUNDS
    assert lags[clean]["events"] == 1700
    hops = {(r["from_stage"], r["to_stage"]): r for r in result["rows"]}
    for pair, tap in (("gate", clean), ("risk", decisions)):
        assert lags[tap]["p50_ns"] >= TAP_LATE_S * S
        assert hops[(pair, tap)]["max_ns"] < lags[tap]["p50_ns"] - TAP_LATE_S * S / 2
    # replay marks the tap's sighting as such: its time - received is the tap's lag
    stamps = {s.stage: s for s in replay_event(run.store, run.decisions[0]).events[0].stamps}
    assert (stamps[decisions].tap, stamps["risk"].tap) == (True, False)


def test_hotspots_window_is_exact(run: Run) -> None:
    """A window ending after the gate's one batch leaves its hops out; the rest stay."""
    (row,) = run.store.query(
        """SELECT toUnixTimestamp64Nano(max(received)) AS gate,
                  (SELECT greatest(toUnixTimestamp64Nano(max(received)),
                                   toUnixTimestamp64Nano(max(emitted)))
                   FROM {db}.observations) AS anchor
           FROM {db}.observations WHERE stage = 'gate'"""
    )
    since = row["anchor"] - row["gate"]  # starts exactly at the gate's batch
    inside = {(r["from_stage"], r["to_stage"]) for r in hotspots(run.store, since)["rows"]}
    outside = {(r["from_stage"], r["to_stage"]) for r in hotspots(run.store, since - 1)["rows"]}
    queue = (f"kafka:{_raw(run)}", "gate")
    assert queue in inside
    assert queue not in outside
    assert ("gate", "risk") in outside


def test_heatmap_matrix_has_every_pair_and_counts_every_hop(run: Run) -> None:
    """The matrix: one row per stage pair, hop counts summing to the hotspots' counts."""
    matrix = heatmap(run.store, WINDOW, buckets=12)
    assert len(matrix["buckets"]) == 12
    assert matrix["bucket_ns"] == WINDOW // 12
    pairs = [(p["from_stage"], p["to_stage"]) for p in matrix["pairs"]]
    ranked = {(r["from_stage"], r["to_stage"]): r for r in hotspots(run.store, WINDOW)["rows"]}
    assert sorted(pairs) == sorted(ranked)
    for pair, counts, p99 in zip(pairs, matrix["hops"], matrix["p99_ns"], strict=True):
        assert sum(counts) == ranked[pair]["hops"]
        assert all((c == 0) == (v is None) for c, v in zip(counts, p99, strict=True))
        assert max(v for v in p99 if v is not None) <= ranked[pair]["max_ns"]
    with pytest.raises(ValueError, match="buckets"):
        heatmap(run.store, WINDOW, buckets=0)


def test_hotspots_cli_heatmap_json_is_the_matrix(run: Run) -> None:
    """`hotspots --heatmap --json` prints the same matrix as the library call."""
    result = CliRunner().invoke(
        app, ["hotspots", "--heatmap", "--buckets", "6", "--json", *_store_args(run)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(
        json.dumps(heatmap(run.store, 15 * 60 * S, buckets=6))
    )


# ---------------------------------------------------------------- warnings


def test_warn_verdict_is_in_the_trail_metrics_and_replay(run: Run) -> None:
    """The one record after the gap is forwarded with its warn rule's id, version and reason
    in the trail, counted per rule and provider, and shown by replay; nothing else warned."""
    rows = run.store.query(
        """SELECT toString(event_id) AS id, outcome, rule_id, rule_version
           FROM {db}.observations WHERE rule_id != ''"""
    )
    assert [(r["id"], r["outcome"], r["rule_id"], r["rule_version"]) for r in rows] == [
        (run.gap_event, "forwarded", "seq.contiguous", 3)
    ]
    stored = run.store.query("SELECT toString(event_id) AS id, reason FROM {db}.warnings")
    assert stored == [{"id": run.gap_event, "reason": REASON}]
    assert run.warned == {"seq.contiguous": 1}
    sample = run.metrics.registry.get_sample_value(
        "stampline_events_warned_total", {"provider": "alpha", "rule": "seq.contiguous"}
    )
    assert sample == 1.0
    (event,) = replay_event(run.store, run.gap_event).events
    assert [v.to_dict() for v in event.verdicts] == [
        {
            "severity": "warn",
            "rule_id": "seq.contiguous",
            "rule_version": 3,
            "reason": "sequence gap: expected 30, got 50 (20 missing)",
        }
    ]
    shown = CliRunner().invoke(app, ["replay", run.gap_event, *_store_args(run)])
    assert shown.exit_code == 0, shown.output
    assert "seq.contiguous@v3: sequence gap: expected 30, got 50 (20 missing)" in " ".join(
        shown.output.split()
    )


# ---------------------------------------------------------------- helpers


def _topics(run: Run) -> tuple[str, str]:
    rows = run.store.query("SELECT DISTINCT topic FROM {db}.observations ORDER BY topic")
    names = [r["topic"] for r in rows]
    clean = next(t for t in names if t.endswith(".clean"))
    decisions = next(t for t in names if t.endswith(".decisions"))
    return clean, decisions


def _raw(run: Run) -> str:
    """The feed topic the gate read."""
    rows = run.store.query("SELECT DISTINCT topic FROM {db}.observations ORDER BY topic")
    return next(r["topic"] for r in rows if r["topic"].endswith(".raw"))


def _store_args(run: Run) -> list[str]:
    return ["--store", str(run.store_dir), "--database", run.database]


def test_heatmap_renders_as_in_the_snapshot() -> None:
    """The terminal heat map of a fixed matrix matches its snapshot, colours included."""
    matrix = {
        "window": {"start": 1_700_000_000 * S, "end": 1_700_000_060 * S},
        "bucket_ns": 10 * S,
        "buckets": [1_700_000_000 * S + b * 10 * S for b in range(6)],
        "pairs": [
            {"from_stage": "origin", "to_stage": "gate"},
            {"from_stage": "gate", "to_stage": "risk"},
            {"from_stage": "risk", "to_stage": "tap:[red]x"},
        ],
        "p99_ns": [
            [50_000, 60_000, None, 55_000, 52_000, 51_000],
            [2 * MS, 2 * MS, 50 * MS, 3 * MS, 2 * MS, None],
            [None, -1 * MS, 400_000, 300_000, 200_000, 100_000],
        ],
        "hops": [[5, 5, 0, 5, 5, 5], [1, 1, 1, 1, 1, 0], [0, 2, 2, 2, 2, 2]],
    }
    buf = io.StringIO()
    console = Console(file=buf, width=100, color_system="truecolor", force_terminal=True)
    console.print(render_heatmap(matrix, "p99 hop latency over the last 1m"))
    snapshot = Path(__file__).parent / "snapshots" / "heatmap.ansi"
    assert buf.getvalue() == snapshot.read_text(encoding="utf-8")


# ---------------------------------------------------------------- expected providers

ALERTS = """
version: 1
providers:
  - {provider: alpha, venue: XLON, max_gap: 2s}
  - {provider: delta, venue: XNYS, max_gap: 2s}
alerts:
  - id: provider.silent
    kind: provider_silent
"""


def _first_and_anchor(run: Run) -> tuple[int, int]:
    (row,) = run.store.query(
        """SELECT toUnixTimestamp64Nano(min(received)) AS first,
                  greatest(toUnixTimestamp64Nano(max(received)),
                           toUnixTimestamp64Nano(max(emitted))) AS anchor
           FROM {db}.observations"""
    )
    return int(row["first"]), int(row["anchor"])


def test_a_registered_provider_that_sent_nothing_is_absent_in_both_reports(run: Run) -> None:
    """delta is registered and never sent a record: providers compare has it as a row marked
    absent and completeness lists it, silent since the deployment's start (the store's
    first record), last event never; registered alpha, which sent, is not absent."""
    first, anchor = _first_and_anchor(run)
    compared = providers_compare(run.store, WINDOW, expected=["alpha", "delta"])
    rows = by_provider(compared["rows"])
    assert set(rows) == {"alpha", "bravo", "charlie", "delta"}
    assert (rows["alpha"]["absent"], rows["delta"]["absent"]) == (False, True)
    (alpha_last,) = run.store.query(
        """SELECT toUnixTimestamp64Nano(max(received)) AS t FROM {db}.observations
           WHERE provider = 'alpha' AND outcome = 'forwarded'"""
    )
    assert rows["alpha"]["last_event_ns"] == alpha_last["t"]
    assert rows["alpha"]["silent_for_ns"] == anchor - alpha_last["t"]
    assert rows["delta"]["events"] == 0
    expected = [
        {
            "provider": "delta",
            "last_event_ns": None,
            "silent_for_ns": anchor - first,
            "silent_since": "deployment start",
        }
    ]
    assert compared["absent"] == expected
    assert rows["delta"]["silent_for_ns"] == anchor - first
    assert completeness(run.store, WINDOW, expected=["alpha", "delta"])["absent"] == expected
    assert completeness(run.store, WINDOW)["absent"] == []


def test_a_registered_provider_silent_in_the_window_counts_from_its_last_event(
    run: Run,
) -> None:
    """In a window after the gate's one batch, alpha sent nothing: it is absent, silent since
    its last accepted event (the gate's batch), not since the deployment's start."""
    (row,) = run.store.query(
        """SELECT toUnixTimestamp64Nano(max(received)) AS gate FROM {db}.observations
           WHERE stage = 'gate' AND provider = 'alpha' AND outcome = 'forwarded'"""
    )
    _, anchor = _first_and_anchor(run)
    since = anchor - row["gate"] - 1  # the window starts just after the gate's batch
    (absent,) = providers_compare(run.store, since, expected=["alpha"])["absent"]
    assert absent["last_event_ns"] == row["gate"]
    assert absent["silent_for_ns"] == anchor - row["gate"]
    assert absent["silent_since"] == "last event"


def test_reports_cli_list_the_absent_provider_from_the_alert_definitions(
    run: Run, tmp_path: Path
) -> None:
    """`providers compare` and `completeness` with --alerts print delta as absent, never seen;
    --json carries the same row."""
    alerts = tmp_path / "a.alerts.yaml"
    alerts.write_text(ALERTS)
    for cmd in (["providers", "compare"], ["completeness"]):
        result = CliRunner().invoke(
            app, [*cmd, "--since", "15m", "--alerts", str(alerts), *_store_args(run)]
        )
        assert result.exit_code == 0, result.output
        assert "absent: delta: nothing in the window; last event never" in result.stdout
        assert "absent: alpha" not in result.stdout
        as_json = CliRunner().invoke(
            app, [*cmd, "--since", "15m", "--alerts", str(alerts), *_store_args(run), "--json"]
        )
        (absent,) = orjson.loads(as_json.stdout)["absent"]
        assert (absent["provider"], absent["last_event_ns"]) == ("delta", None)


def test_silence_panel_shows_a_gap_shorter_than_a_minute(run: Run) -> None:
    """bravo's 11 s pause (rounds 40-49) is shorter than a minute (and all of it reached the
    gate in one batch): the Providers dashboard's "Silence and gaps" table, run on chDB,
    shows it as bravo's one gap of 11 s; alpha and charlie, a quote every second, have
    none. (Silent minutes count by the gate's receipt, here minutes after the origins.)"""
    from stampline.dashboards import ALL, TimeRange, expand
    from stampline.dashboards._providers import SILENCE

    (span,) = run.store.query(
        "SELECT toUnixTimestamp(min(second)) AS lo,"
        " (SELECT toUnixTimestamp(max(received)) FROM {db}.observations) AS hi"
        " FROM {db}.provider_seconds_1s"
    )  # from the first origin to past the gate's receipt (the providers' registry is there)
    window = TimeRange(int(span["lo"]) * 1000, (int(span["hi"]) + 60) * 1000)
    sql = expand(
        SILENCE.sql.replace("{db}", run.store.database), window, {"provider": ALL, "topic": ALL}
    )
    rows = by_provider(run.store.query(sql))
    assert set(rows) == {"alpha", "bravo", "charlie"}
    assert (rows["bravo"]["gaps"], rows["bravo"]["status"]) == (1, "gaps")
    assert rows["bravo"]["longest_gap_s"] == pytest.approx(11.0)
    for p in ("alpha", "charlie"):
        assert rows[p]["gaps"] == 0
        assert rows[p]["longest_gap_s"] == pytest.approx(1.0)
