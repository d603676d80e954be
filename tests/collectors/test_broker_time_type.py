"""Whose clock a record's broker timestamp is reaches the store: the gate (forwarded and
dead-lettered rows) and the tap write the Kafka timestamp type into the trail, through the
trail topic and the recorder, into ``broker_time_type``; replay prints it.

The embedded broker (Tansu) accepts a topic configured ``message.timestamp.type=
LogAppendTime`` but does not apply it: its records come back as CreateTime with the
producer's timestamp. So the LogAppendTime topic is checked against the type the broker
actually gives a plain consumer, and LogAppendTime rows are sent to the recorder as a
version 4 trail message (the gate's mapping of code 2 is unit-tested in
tests/audit/test_broker_time_type.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner

from stampline.audit import ChdbStore, broker_time_type, replay_event
from stampline.audit._trailformat import schema_for
from stampline.cli import app
from stampline.collectors import GateSettings, RecorderSettings, Tap, TapSettings, TrailTopic
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import quote
from tests.collectors.trailmsgs import message, observations, send
from tests.helpers import GateRun, RecorderRun, produce


def _types_given(bootstrap: str, topic: str, n: int) -> dict[int, tuple[int, int]]:
    """offset -> (timestamp type code, ms) as the broker gives them to a plain consumer."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-probe"})
    c.assign([TopicPartition(topic, 0, 0)])
    got: dict[int, tuple[int, int]] = {}
    deadline = time.monotonic() + 60
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got[m.offset()] = m.timestamp()
    finally:
        c.close()
    assert len(got) == n, f"read {len(got)} of {n} records of {topic}"
    return got


def _recorder(bootstrap: str, trail: str, uid: str, store: ChdbStore, messages: int) -> None:
    settings = RecorderSettings(
        bootstrap, trail_topic=trail, group_id=f"{uid}-rec", heads_topic=None, poll_timeout_s=0.1
    )
    rec = RecorderRun(settings, store)
    rec.wait(lambda: rec.recorder.stats.messages >= messages, "the recorder")
    rec.stop()


def _trail_messages(bootstrap: str, trail: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{trail}-count"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(trail, 0), timeout=10)
        return int(high)
    finally:
        c.close()


def test_gate_and_tap_rows_carry_the_broker_timestamp_type_into_the_store(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Records on a CreateTime topic and on a topic configured LogAppendTime go through a
    real gate (forwarded and dead-lettered), a tap reads the clean topic, both send their
    trail to the trail topic, and the recorder's store holds, for every row, the type (and
    time) the broker gave that record; replay shows the broker stamp with its type."""
    created, clean, dlq, trail = make_topics("created", "clean", "dlq", "trail", partitions=1)
    appended = f"{uid}.appended"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(appended, 1, 1, config={"message.timestamp.type": "LogAppendTime"})]
    ).values():
        future.result(30)
    feed = [orjson.dumps(quote("alpha", i)) for i in range(6)] + [b"{broken"]
    produce(bootstrap, created, [(None, v) for v in feed], partition=0)
    produce(bootstrap, appended, [(None, v) for v in feed], partition=0)
    given = {t: _types_given(bootstrap, t, len(feed)) for t in (created, appended)}
    assert {code for code, _ in given[created].values()} == {1}  # CreateTime, Kafka's default

    settings = GateSettings(bootstrap, (created, appended), clean, dlq, group_id=f"{uid}-g")
    gate = GateRun(settings, RuleSet.load([rules_file()]), TrailTopic(trail, "gate@test"))
    gate.wait_for(2 * len(feed))
    gate.stop()
    tap = Tap(TapSettings(bootstrap, (clean,), group_id=f"{uid}-tap"), TrailTopic(trail, "tap"))
    stop = threading.Event()
    thread = threading.Thread(target=tap.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 60
    while tap.stats.records < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(60)
    assert tap.stats.records == 12
    _recorder(bootstrap, trail, uid, store, _trail_messages(bootstrap, trail))

    rows = store.query(
        "SELECT stage, topic, offset, toString(outcome) AS outcome, "
        "toString(broker_time_type) AS type, toUnixTimestamp64Milli(broker_time) AS ms "
        "FROM {db}.observations WHERE stage = 'gate' AND authority = 2"
    )
    assert len(rows) == 2 * len(feed)
    assert {r["outcome"] for r in rows} == {"forwarded", "dead_lettered"}
    for r in rows:
        code, ms = given[r["topic"]][r["offset"]]
        assert (r["type"], r["ms"]) == (broker_time_type(code), ms), r
    assert {r["type"] for r in rows if r["topic"] == created} == {"CreateTime"}
    # the tap's own sightings and its readings of the gate's stamps: the clean topic's type
    sightings = store.query(
        "SELECT toString(broker_time_type) AS type, toUnixTimestamp64Milli(broker_time) AS ms "
        "FROM {db}.observations WHERE authority = 1 AND topic = {t:String}",
        {"t": clean},
    )
    assert len(sightings) == 24
    assert {r["type"] for r in sightings} == {"CreateTime"}  # the gate produced the clean records
    assert all(r["ms"] > 0 for r in sightings)
    report = store.verify()
    assert report.ok, report.findings

    (one,) = store.query(
        "SELECT toString(event_id) AS id FROM {db}.observations "
        "WHERE stage = 'gate' AND topic = {t:String} AND outcome = 'forwarded' AND offset = 0",
        {"t": created},
    )
    stamps = {s.stage: s for s in replay_event(store, one["id"]).events[0].stamps}
    assert stamps[f"kafka:{created}"].time_type == "CreateTime"
    assert stamps[f"kafka:{created}"].to_dict()["time_type"] == "CreateTime"
    shown = CliRunner().invoke(
        app,
        ["replay", one["id"], "--store", str(store.path), "--database", store.database],
        terminal_width=250,
    )
    assert shown.exit_code == 0, shown.output
    assert f"kafka:{created} (CreateTime: the producer's clock)" in shown.stdout


def _version_3(table: pa.Table) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    """``table`` as a sidecar still on trail format 3 sends it (no broker_time_type)."""
    schema = schema_for("observations", 3)
    meta = {
        "stampline.trail.version": "3",
        "stampline.trail.kind": "observations",
        "stampline.trail.rows": str(table.num_rows),
        "stampline.trail.source": "gate@old",
    }
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema.with_metadata(meta)) as writer:
        writer.write_table(table.select(schema.names))
    return sink.getvalue().to_pybytes(), [(k, v.encode()) for k, v in meta.items()]


def test_the_recorder_stores_logappendtime_and_reads_an_older_sidecars_rows_as_not_recorded(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """A version 4 trail message with LogAppendTime rows is stored with that type; a version
    3 message (a sidecar not upgraded yet) is stored too, its type '' (not recorded); the
    store verifies."""
    (trail,) = make_topics("trail", partitions=1)
    appended = observations(5, 0, 0, broker_time_type="LogAppendTime")
    older = observations(4, 0, 100)
    send(bootstrap, trail, 0, [message("observations", appended), _version_3(older)])
    _recorder(bootstrap, trail, uid, store, 2)
    got: dict[str, Any] = {
        r["type"]: r["n"]
        for r in store.query(
            "SELECT toString(broker_time_type) AS type, count() AS n FROM {db}.observations "
            "GROUP BY type"
        )
    }
    assert got == {"LogAppendTime": 5, "": 4}
    report = store.verify()
    assert report.ok, report.findings
