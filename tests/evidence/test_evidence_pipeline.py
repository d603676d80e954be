"""Evidence on a store the real path wrote: gate → trail topic → recorder, an SDK stage, a tap.

One pipeline for the module, run in two rounds with the rule file edited in between:

- round A: the gate judges quotes under rule file A (one forwarded with a warn verdict, one
  dead-lettered); round B: the same gate group under file B (one more dead-lettered, under a
  rule whose limit was changed without bumping its version);
- a decision stage written with the SDK decides from a quote of each round, its bound read
  with chrony asked for where chrony cannot run (a real fallback), and a tap records it;
- the gate's and the tap's trail messages go to different partitions of the trail topic,
  so the recorder writes two hash chains.

The tests read the store through `stampline evidence` and `stampline audit verify` as a
compliance officer would.
"""

from __future__ import annotations

import hashlib
import shlex
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from typer.testing import CliRunner

from stampline.audit import ChdbStore, read_clock_bound, replay_decision
from stampline.broker import ensure_topics
from stampline.cli import app
from stampline.collectors import (
    H_STAMP,
    GateSettings,
    RecorderSettings,
    StageStamp,
    Tap,
    TapSettings,
    TrailTopic,
    stage,
)
from stampline.collectors._stamps import STAMPED_FALLBACK
from stampline.rules import RulesHolder
from tests.collectors.test_gate import js, quote
from tests.helpers import GateRun, RecorderRun, produce, read_all

runner = CliRunner()

RULES_A = (
    "version: 2\nrules:\n"
    "  - {id: qty.max, version: 1, kind: range, field: quantity, max: 1000}\n"
    "  - {id: price.tick, version: 1, kind: tick_size, field: price, tick: 0.01, severity: warn}\n"
)
# The limit tightened without a new version: only the file's hash tells the two apart.
RULES_B = RULES_A.replace("max: 1000", "max: 500")
TRAIL_PARTITIONS = 2


def _sources_on_different_partitions() -> tuple[str, str]:
    """Trail source names (the messages' keys) that librdkafka's default partitioner
    (consistent_random: CRC-32 of the key modulo the partition count) puts on different
    trail partitions, so the gate's and the tap's rows land in different chains."""
    gate = "gate@evidence"
    part = zlib.crc32(gate.encode()) % TRAIL_PARTITIONS
    tap = next(
        f"tap@evidence-{i}"
        for i in range(100)
        if zlib.crc32(f"tap@evidence-{i}".encode()) % TRAIL_PARTITIONS != part
    )
    return gate, tap


@dataclass(frozen=True)
class Pipeline:
    store: ChdbStore
    trail: str
    rules: Path  # the rule file as it is now (B)
    sha_a: str
    sha_b: str
    warned: str  # round A: forwarded, broke price.tick (warn)
    dead_a: str  # round A: dead-lettered by qty.max (limit 1000)
    dead_b: str  # round B: dead-lettered by qty.max (limit 500, same version)
    decision: str  # the SDK stage's decision from `warned` and a round B quote
    fallback_reason: str
    decision_stamp: StageStamp  # the risk stamp as the decisions topic carries it

    def cli(self, *args: str) -> Any:
        return runner.invoke(
            app, [*args, "--store", str(self.store.path), "--database", self.store.database]
        )


def _take(bootstrap: str, topic: str, n: int) -> list[Message]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[Message] = []
    deadline = time.monotonic() + 30
    while len(got) < n:
        assert time.monotonic() < deadline, f"read {len(got)} of {n} records from {topic}"
        got.extend(m for m in consumer.consume(n, 0.2) if m.error() is None)
    consumer.close()
    return got


def _event_id(m: Message) -> str:
    return bytes(dict(m.headers() or [])["stampline.event_id"] or b"").decode()


def _gate_round(
    bootstrap: str, topics: dict[str, str], holder: RulesHolder, source: str, n: int
) -> None:
    settings = GateSettings(
        bootstrap,
        (topics["raw"],),
        topics["clean"],
        topics["dlq"],
        group_id=f"{topics['raw']}-gate",
        flush_interval_s=0.2,
    )
    run = GateRun(settings, holder, TrailTopic(topics["trail"], source))  # type: ignore[arg-type]
    run.wait_for(n)
    run.stop()


@pytest.fixture(scope="module")
def pipeline(
    bootstrap: str, chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    uid = uuid.uuid4().hex[:10]
    topics = {n: f"{uid}.{n}" for n in ("raw", "clean", "dlq", "decisions")}
    ensure_topics(bootstrap, list(topics.values()), 1)
    topics["trail"] = f"{uid}.trail"
    ensure_topics(bootstrap, [topics["trail"]], TRAIL_PARTITIONS)
    gate_source, tap_source = _sources_on_different_partitions()
    folder = tmp_path_factory.mktemp("pipeline")
    rules = folder / "market.rules.yaml"
    rules.write_text(RULES_A, "utf-8")
    sha_a = hashlib.sha256(RULES_A.encode()).hexdigest()
    sha_b = hashlib.sha256(RULES_B.encode()).hexdigest()
    holder = RulesHolder([rules], interval_s=0)

    # Round A: a good quote, one off the price tick (warn), one over 1000 (dead letter).
    produce(
        bootstrap,
        topics["raw"],
        [
            (b"alpha", js(quote("alpha", 1))),
            (b"alpha", js(quote("alpha", 2, price=101.255))),
            (b"alpha", js(quote("alpha", 3, quantity=5000))),
        ],
    )
    _gate_round(bootstrap, topics, holder, gate_source, 3)
    # Round B: the same gate group under the edited file; 700 is over its new limit.
    rules.write_text(RULES_B, "utf-8")
    produce(
        bootstrap,
        topics["raw"],
        [(b"bravo", js(quote("bravo", 1))), (b"bravo", js(quote("bravo", 2, quantity=700)))],
    )
    _gate_round(bootstrap, topics, holder, gate_source, 2)
    clean = _take(bootstrap, topics["clean"], 3)
    dead = _take(bootstrap, topics["dlq"], 2)

    # The decision stage (SDK): chrony asked for, unreadable here, so the bound falls back.
    clock = read_clock_bound("chrony", 250_000, chronyc=str(folder / "no-chronyc"))
    assert clock.kind == "fallback"
    producer = Producer({"bootstrap.servers": bootstrap})
    with stage("risk", clean[1], clean[2], producer=producer, clock=clock, host="risk-1") as st:
        decision = st.produce(topics["decisions"], b'{"action":"reprice"}', key=b"SYM001")
    assert producer.flush(10) == 0
    (out,) = read_all(bootstrap, topics["decisions"], 1)
    (stamp_raw,) = out.header_all(H_STAMP)
    decision_stamp = StageStamp.decode(stamp_raw or b"")

    tap = Tap(
        TapSettings(bootstrap, (topics["decisions"],), group_id=f"{uid}-tap"),
        TrailTopic(topics["trail"], tap_source),
    )
    stop = threading.Event()
    tap_thread = threading.Thread(target=tap.run, args=(stop,), daemon=True)
    tap_thread.start()
    with ChdbStore(chdb_dir, f"evpipe_{uid}") as store:
        recorder = RecorderRun(
            RecorderSettings(
                bootstrap,
                topics["trail"],
                group_id=f"{uid}-recorder",
                heads_topic=None,
                poll_timeout_s=0.1,
            ),
            store,
        )

        def recorded() -> bool:
            (row,) = store.query(
                "SELECT countIf(stage = 'gate') AS gate, countIf(stage = 'risk') AS risk "
                "FROM {db}.trail"
            )
            (dl,) = store.query("SELECT count() AS n FROM {db}.dead_letters")
            return (row["gate"], row["risk"], dl["n"]) == (5, 1, 2)

        recorder.wait(recorded, "the recorder to write both rounds and the decision")
        stop.set()
        tap_thread.join(30)
        recorder.stop()
        yield Pipeline(
            store=store,
            trail=topics["trail"],
            rules=rules,
            sha_a=sha_a,
            sha_b=sha_b,
            warned=_event_id(clean[1]),
            dead_a=_event_id(dead[0]),
            dead_b=_event_id(dead[1]),
            decision=decision,
            fallback_reason=clock.reason,
            decision_stamp=decision_stamp,
        )


def _evidence(p: Pipeline, tmp_path: Path, *subject: str) -> dict[str, Any]:
    out = tmp_path / "ev"
    made = p.cli("evidence", *subject, "--out", str(out), "--no-pdf", "--rules", str(p.rules))
    assert made.exit_code == 0, made.output
    return dict(orjson.loads((out / "evidence.json").read_bytes()))


def _verdicts(doc: dict[str, Any], eid: str) -> list[dict[str, Any]]:
    return next(e for e in doc["events"] if e["event_id"] == eid)["rules"]["verdicts"]


def test_an_sdk_stage_shows_its_real_bound_source(pipeline: Pipeline, tmp_path: Path) -> None:
    """The SDK writes the bound's source into its stamp; the tap records it through the trail
    topic and the recorder; replay and the evidence show the fallback, not 'unknown'."""
    assert pipeline.decision_stamp.source == "fallback"
    assert pipeline.decision_stamp.clock_err_ns == 250_000
    timeline = replay_decision(pipeline.store, pipeline.decision)
    risk = next(s for s in timeline.events[0].stamps if s.stage == "risk" and s.kind == "stage")
    assert risk.clock_source == STAMPED_FALLBACK
    assert risk.to_dict()["clock_source"] == STAMPED_FALLBACK
    doc = _evidence(pipeline, tmp_path, "--decision", pipeline.decision)
    stamps = {s["stage"]: s for s in doc["events"][0]["stamps"]}
    assert stamps["risk"]["bound_source"] == {
        "kind": "fallback",
        "reason": STAMPED_FALLBACK.removeprefix("fallback: "),
    }
    assert stamps["ingest"]["bound_source"]["kind"] == "fallback"  # a decision's own stamp


def test_each_verdict_shows_the_rule_file_hash_recorded_when_it_was_made(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The rule file changed between the two rounds: the round A verdicts carry file A's
    hash, the round B verdict file B's, though qty.max kept version 1; compared with the file
    given now (B), only the round B verdict is under the same file."""
    assert pipeline.sha_a != pipeline.sha_b
    doc = _evidence(pipeline, tmp_path, "--decision", pipeline.decision)
    (warn,) = _verdicts(doc, pipeline.warned)
    assert (warn["rule_id"], warn["severity"], warn["rule_file_sha256"]) == (
        "price.tick",
        "warn",
        pipeline.sha_a,
    )
    assert warn["rule_file"]["same_file"] is False
    recorded = {}
    for eid in (pipeline.dead_a, pipeline.dead_b):
        one = _evidence(pipeline, tmp_path / eid, "--event", eid)
        (verdict,) = _verdicts(one, eid)
        assert (verdict["rule_id"], verdict["rule_version"], verdict["severity"]) == (
            "qty.max",
            1,
            "error",
        )
        assert verdict["rule_file"]["same_version"] is True
        recorded[eid] = (verdict["rule_file_sha256"], verdict["rule_file"]["same_file"])
    assert recorded == {
        pipeline.dead_a: (pipeline.sha_a, False),
        pipeline.dead_b: (pipeline.sha_b, True),
    }


def test_the_proof_names_each_chain_its_rows_are_in(pipeline: Pipeline, tmp_path: Path) -> None:
    """The decision's rows are in the tap's chain, its inputs' in the gate's: the proof names
    both chains with their heads, and a dead-lettered event's proof holds the batch of its
    dead letter; every batch is the ledger's entry of that chain and number."""
    doc = _evidence(pipeline, tmp_path, "--decision", pipeline.decision)
    proof = doc["integrity"]
    chains = {c["chain_id"] for c in proof["chains"]}
    assert chains == {f"{pipeline.trail}/0", f"{pipeline.trail}/1"}
    by_event = {h.split("/")[0]: b["chain_id"] for b in proof["batches"] for h in b["holds"]}
    assert by_event[pipeline.decision] != by_event[pipeline.warned]
    assert {b["kind"] for b in proof["batches"]} == {"observations"}
    assert proof["unledgered"] == []
    assert all(b["trail_offset"] >= 0 for b in proof["batches"])
    for b in proof["batches"]:
        (entry,) = pipeline.store.query(
            "SELECT toString(chain) AS chain, toString(digest) AS digest FROM {db}.ledger "
            "WHERE chain_id = {c:String} AND seq = {s:UInt64}",
            {"c": b["chain_id"], "s": b["batch"]},
        )
        assert (b["chain"], b["digest"]) == (entry["chain"], entry["digest"])
    dead = _evidence(pipeline, tmp_path / "dead", "--event", pipeline.dead_a)
    kinds = {b["kind"]: b["holds"] for b in dead["integrity"]["batches"]}
    assert kinds == {
        "observations": [f"{pipeline.dead_a}/gate"],
        "dead_letters": [f"{pipeline.dead_a}/dead_letter"],
    }


def test_audit_verify_with_the_heads_in_the_json_passes_untouched_and_fails_after_a_change(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """`stampline audit verify --expect-head CHAIN=HEX …`, exactly as the evidence gives it,
    passes on the store the pipeline wrote and fails once one row is changed. (The row is
    changed back at the end, and verifies again, for the tests after this one.)"""
    doc = _evidence(pipeline, tmp_path, "--decision", pipeline.decision)
    argv = shlex.split(doc["integrity"]["verify_command"])
    heads = [argv[i + 1] for i, a in enumerate(argv) if a == "--expect-head"]
    # Every chain in the store, so verify can account for each: the decision's two among them.
    assert {c["expect_head"] for c in doc["integrity"]["chains"]} <= set(heads)
    assert len(doc["integrity"]["chains"]) == 2
    assert argv[:3] == ["stampline", "audit", "verify"]

    def verify() -> Any:
        return runner.invoke(app, [*argv[1:], "--json"])

    ok = verify()
    assert ok.exit_code == 0, ok.output
    report = orjson.loads(ok.stdout)
    assert report["findings"] == []
    assert report["chain_heads"] == dict(h.split("=") for h in heads)
    db, eid = pipeline.store.database, pipeline.warned
    pipeline.store._execute(
        f"ALTER TABLE {db}.observations UPDATE price = 99.0 "
        f"WHERE event_id = '{eid}' AND stage = 'gate' SETTINGS mutations_sync = 2"
    )
    try:
        bad = verify()
        assert bad.exit_code == 1
        (finding,) = orjson.loads(bad.stdout)["findings"]
        held = next(b for b in doc["integrity"]["batches"] if f"{eid}/gate" in b["holds"])
        assert (finding["chain"], finding["batch"], finding["problem"]) == (
            held["chain_id"],
            held["batch"],
            "changed",
        )
        assert finding["changed_columns"] == ["price"]
    finally:
        pipeline.store._execute(
            f"ALTER TABLE {db}.observations UPDATE price = 101.255 "
            f"WHERE event_id = '{eid}' AND stage = 'gate' SETTINGS mutations_sync = 2"
        )
    assert verify().exit_code == 0
