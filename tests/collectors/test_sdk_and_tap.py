"""The in-app SDK stamps what a stage produces; the tap records those stamps in the trail."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from stampline.audit import AUTHORITY_STAMPER, ChdbStore, Observation, hotspots
from stampline.collectors import (
    H_EVENT_ID,
    H_STAMP,
    StageStamp,
    Stamps,
    Tap,
    TapSettings,
    read_stamps,
    stage,
)
from tests.helpers import produce, read_all

T0 = 1_750_000_000_000_000_000  # ns; stamps hold times between 2000 and 2100


def _stamped_inputs(n: int) -> list[Stamps]:
    return [
        Stamps(
            str(uuid.uuid4()),
            T0 + 1_000 + i,
            T0 + 2_000 + i,
            500,
            stages=(StageStamp("gate", T0 + 2_000 + i, T0 + 2_100 + i, 500),),
            traceparent=f"00-{uuid.uuid4().hex}-{'1' * 16}-01",
        )
        for i in range(n)
    ]


def _consume(bootstrap: str, topic: str, n: int) -> list[Message]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[Message] = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        got.extend(m for m in consumer.consume(n, 0.2) if m.error() is None)
    consumer.close()
    assert len(got) == n
    return got


def test_derived_event_carries_lineage_stage_stamp_and_trace(
    bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """A decision produced in a stage gets a new id, its inputs as parents, and the stage stamp."""
    clean, decisions = make_topics("clean", "decisions", partitions=1)
    inputs = _stamped_inputs(3)
    produce(bootstrap, clean, [(b"k", b"{}", s.headers()) for s in inputs])
    messages = _consume(bootstrap, clean, 3)
    producer = Producer({"bootstrap.servers": bootstrap})
    with stage("risk", *messages, producer=producer, clock_err_ns=777, host="risk-1") as st:
        decision_id = st.produce(decisions, b'{"action":"buy"}', key=b"SYM1", headers=[("x", b"y")])
    producer.flush(10)
    (out,) = read_all(bootstrap, decisions, 1)
    stamps = read_stamps(out.headers)
    assert stamps is not None
    assert stamps.event_id == decision_id
    assert decision_id not in {s.event_id for s in inputs}
    assert stamps.parents == tuple(s.event_id for s in inputs)
    (risk,) = stamps.stages
    assert (risk.stage, risk.clock_err_ns, risk.host) == ("risk", 777, "risk-1")
    assert risk.received_ns <= risk.emitted_ns == stamps.origin_ns == stamps.ingest_ns
    assert stamps.traceparent.split("-")[1] == inputs[0].traceparent.split("-")[1]
    assert out.headers[0] == ("x", b"y")
    assert out.value == b'{"action":"buy"}'
    assert st.produced == [decision_id]


def test_forward_keeps_the_event_and_appends_a_stamp(
    bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """Forwarding keeps event id and earlier stamps, replaces the value if asked, adds a stamp."""
    src, dst = make_topics("src", "dst", partitions=1)
    (inp,) = _stamped_inputs(1)
    produce(bootstrap, src, [(b"k", b"old", inp.headers())])
    (msg,) = _consume(bootstrap, src, 1)
    producer = Producer({"bootstrap.servers": bootstrap})
    with stage("enrich", msg, producer=producer) as st:
        st.forward(dst, msg, value=b"new")
    producer.flush(10)
    (out,) = read_all(bootstrap, dst, 1)
    assert out.header_all(H_EVENT_ID) == [inp.event_id.encode()]
    assert [StageStamp.decode(v or b"").stage for v in out.header_all(H_STAMP)] == [
        "gate",
        "enrich",
    ]
    assert (out.key, out.value) == (b"k", b"new")


def test_stage_rejects_a_bad_name() -> None:
    """A stage name outside the allowed characters is refused before anything is produced."""
    with pytest.raises(ValueError, match="stage name"), stage("risk desk", producer=Producer({})):
        pass


def test_tap_records_stamps_and_counts_what_it_cannot_use(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The tap writes one row per stage stamp plus its own sighting of every record, and
    counts unstamped and badly stamped records."""
    (topic,) = make_topics("decisions", partitions=1)
    good = _stamped_inputs(2)
    parent = str(uuid.uuid4())
    good[1] = Stamps(
        good[1].event_id,
        T0 + 5,
        T0 + 5,
        9,
        stages=(StageStamp("risk", T0 + 3, T0 + 5, 9),),
        parents=(parent,),
    )
    produce(
        bootstrap,
        topic,
        [
            (b"a", b"1", good[0].headers()),
            (b"b", b"2", good[1].headers()),
            (b"c", b"3", []),
            (b"d", b"4", [(H_EVENT_ID, b"x"), (H_STAMP, b"junk")]),
        ],
    )
    tap = Tap(TapSettings(bootstrap, (topic,), group_id=f"{uid}-tap"), store)
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 30
    while tap.stats.records < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    assert (tap.stats.records, tap.stats.unstamped, tap.stats.bad_stamps) == (4, 1, 1)
    rows = store.query(
        "SELECT toString(event_id) AS id, stage, toString(outcome) AS outcome, topic, offset, "
        "arrayMap(p -> toString(p), parents) AS parents "
        "FROM {db}.trail WHERE stage NOT LIKE 'tap:%' ORDER BY offset"
    )
    (sightings,) = store.query(
        "SELECT count() AS n, groupArray(offset) AS offsets FROM {db}.trail "
        "WHERE stage = {s:String}",
        {"s": f"tap:{topic}"},
    )
    assert sightings["n"] == 4
    assert sorted(sightings["offsets"]) == [0, 1, 2, 3]
    assert [(r["id"], r["stage"], r["offset"]) for r in rows] == [
        (good[0].event_id, "gate", 0),
        (good[1].event_id, "risk", 1),
    ]
    assert rows[1]["parents"] == [parent]
    assert {r["outcome"] for r in rows} == {"observed"}


def test_tap_row_never_replaces_the_stampers_own_row(store: ChdbStore) -> None:
    """For one (event, stage), the gate's own row wins over a tap's reading of the same stamp."""
    eid = str(uuid.uuid4())
    gate_row = Observation(
        eid,
        "gate",
        10,
        20,
        5,
        10,
        1,
        topic="md.raw",
        offset=7,
        provider="alpha",
        authority=AUTHORITY_STAMPER,
    )
    tap_row = Observation(eid, "gate", 10, 20, 5, 10, 1, topic="md.clean", offset=99, authority=1)
    store.write_observations([gate_row])
    store.write_observations([tap_row])
    (row,) = store.query(
        "SELECT topic, offset, provider FROM {db}.trail WHERE event_id = {id:UUID}",
        {"id": eid},
    )
    assert row == {"topic": "md.raw", "offset": 7, "provider": "alpha"}


def test_a_decision_with_n_parents_adds_n_lineage_hops(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """A decision made from three inputs carries where each last left a stage (its latest
    stamp; the origin for one with no stage stamp); the tap keeps them on the decision's row,
    and the rollup and `hotspots` each count three lineage hops into the deciding stage, of
    exactly `received` minus each parent's last `emitted`, bounded by both stamps' bounds."""
    clean, decisions = make_topics("clean", "decisions", partitions=1)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    inputs = [
        Stamps(ids[0], T0, T0 + 10, 500, stages=(
            StageStamp("gate", T0 + 10, T0 + 20, 500),
            StageStamp("enrich", T0 + 30, T0 + 45, 300),
        )),
        Stamps(ids[1], T0 + 1, T0 + 11, 500, stages=(StageStamp("gate", T0 + 11, T0 + 27, 400),)),
        Stamps(ids[2], T0 + 2, T0 + 2, 800),  # no stage stamp: it left its origin
    ]  # fmt: skip
    produce(bootstrap, clean, [(b"k", b"{}", s.headers()) for s in inputs])
    messages = _consume(bootstrap, clean, 3)
    producer = Producer({"bootstrap.servers": bootstrap})
    with stage("risk", *messages, producer=producer, clock_err_ns=70) as st:
        decision = st.produce(decisions, b"{}")
    producer.flush(10)
    left = [("enrich", T0 + 45, 300), ("gate", T0 + 27, 400), ("origin", T0 + 2, 0)]
    assert st.parent_stamps == tuple(left)
    tap = Tap(TapSettings(bootstrap, (decisions,), group_id=f"{uid}-tap"), store)
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 30
    while tap.stats.records < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    (row,) = store.query(
        "SELECT toUnixTimestamp64Nano(received) AS received, parent_stage,"
        " arrayMap(t -> toUnixTimestamp64Nano(t), parent_emitted) AS parent_emitted,"
        " parent_clock_err_ns FROM {db}.trail WHERE event_id = {id:UUID} AND stage = 'risk'",
        {"id": decision},
    )
    assert row["received"] == st.received_ns
    assert list(zip(row["parent_stage"], row["parent_emitted"], row["parent_clock_err_ns"],
                    strict=True)) == left  # fmt: skip
    expected = {(s, "risk"): (st.received_ns - t, 70 + e) for s, t, e in left}
    rollup = store.query(
        "SELECT prev_stage, stage, sum(hops) AS n, max(bound_max_ns) AS bound,"
        " quantilesTDigestMerge(0.5)(latency)[1] AS p50"
        " FROM {db}.hop_latency_1m WHERE stage = 'risk' GROUP BY prev_stage, stage"
    )
    assert {(r["prev_stage"], r["stage"]): (r["n"], r["bound"]) for r in rollup} == {
        pair: (1, bound) for pair, (_, bound) in expected.items()
    }
    for r in rollup:
        hop = expected[(r["prev_stage"], r["stage"])][0]
        assert r["p50"] == pytest.approx(hop, rel=1e-6)  # the digest keeps float32
    ranked = {
        (r["from_stage"], r["to_stage"]): (r["hops"], r["max_ns"], r["clock_bound_ns"])
        for r in hotspots(store, 3600 * 10**9)["rows"]
        if r["to_stage"] == "risk"
    }
    assert ranked == {pair: (1, hop, bound) for pair, (hop, bound) in expected.items()}
