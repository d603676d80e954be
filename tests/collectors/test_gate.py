"""The gate against the real broker (Tansu over TCP) and a real chDB store."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.audit import ChdbStore, replay_event
from stampline.broker import ensure_topics
from stampline.collectors import (
    H_CLOCK_ERR,
    H_EVENT_ID,
    H_INGEST,
    H_OFFSET,
    H_ORIGIN,
    H_PARTITION,
    H_REASON,
    H_RULE_ID,
    H_RULE_VERSION,
    H_STAMP,
    H_TOPIC,
    H_TRACEPARENT,
    Gate,
    GateSettings,
    StageStamp,
    Stamps,
    TrailTopic,
    source_event_id,
)
from stampline.collectors._preflight import Limits, header_bytes
from stampline.demo import rules_file
from stampline.rules import Extraction, RuleSet
from tests.helpers import GateRun, Record, produce, read_all

MAX_BYTES = 64 * 1024


def now_ms() -> int:
    """The wall clock in ms. Event times must be read when a record is made, never at import:
    the gate refuses an origin more than 5 minutes old (``origin.window``), and a full test
    run takes longer than that."""
    return time.time_ns() // 1_000_000


def quote(provider: str = "alpha", seq: int = 0, **over: object) -> dict[str, object]:
    event: dict[str, object] = {
        "provider": provider,
        "instrument": "SYM001",
        "seq": seq,
        "ts": now_ms(),
        "type": "quote",
        "price": 101.25,
        "quantity": 300,
    }
    event.update(over)
    return event


def js(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)


UPSTREAM_ID = str(uuid.uuid4())

Case = tuple[bytes | None, list[tuple[str, bytes | None]], str | None]


def upstream_stamp(now: int) -> StageStamp:
    return StageStamp("venue-adapter", now * 1_000_000, now * 1_000_000 + 5, 500, "h1")


def make_cases(now: int) -> dict[str, Case]:
    """name -> (value, extra headers, rule id expected to dead-letter it, or None to forward),
    with origins at ``now`` (ms)."""

    def q(provider: str = "alpha", seq: int = 0, **over: object) -> dict[str, object]:
        return quote(provider, seq, **{"ts": now, **over})

    return {
        "good_alpha": (js(q("alpha", 1)), [], None),
        "good_bravo": (js(q("bravo", 1, price=99.5)), [], None),
        "good_with_headers": (
            js(q("alpha", 2)),
            [("x-app", b"feed-7"), ("x-null", None), ("x-app", b"again")],
            None,
        ),
        "good_upstream_stamped": (
            js(q("alpha", 3)),
            Stamps(
                UPSTREAM_ID,
                now * 1_000_000,
                now * 1_000_000 + 1,
                500,
                stages=(upstream_stamp(now),),
            ).headers(),
            None,
        ),
        "broken_stamp_header": (
            js(q("alpha", 4)),
            [(H_EVENT_ID, str(uuid.uuid4()).encode()), (H_STAMP, b"garbage")],
            "record.stamps",
        ),
        "malformed_json": (js(q())[:-5], [], "record.decode"),
        "json_array": (b"[1, 2, 3]", [], "record.decode"),
        "empty_value": (None, [], "record.decode"),
        "wrong_type_price": (js(q(price="101.25")), [], "contract.market_data"),
        "wrong_type_seq": (js(q(seq=1.5)), [], "contract.market_data"),
        "nan_price": (js(q()).replace(b'"price":101.25', b'"price":NaN'), [], "record.non_finite"),
        "infinite_quantity": (
            js(q()).replace(b'"quantity":300', b'"quantity":-Infinity'),
            [],
            "record.non_finite",
        ),
        "overflow_to_infinity": (
            js(q()).replace(b'"price":101.25', b'"price":1e400'),
            [],
            "record.non_finite",
        ),
        "negative_quantity": (js(q(quantity=-5)), [], "quantity.non_negative"),
        "zero_price": (js(q(price=0)), [], "price.positive"),
        "future_origin": (js(q(ts=now + 2 * 3_600_000)), [], "origin.window"),
        "past_origin": (js(q(ts=now - 3 * 86_400_000)), [], "origin.window"),
        "missing_origin": (js({k: v for k, v in q().items() if k != "ts"}), [], "record.origin"),
        "origin_not_a_number": (js(q(ts="yesterday")), [], "record.origin"),
        "oversized": (js(q(venue="V" * (MAX_BYTES + 10))), [], "record.size"),
    }


# name -> the rule expected to dead-letter it (None: forwarded); the values are made when the
# records are produced (``Outcome.cases``).
CASE_RULES: dict[str, str | None] = {n: c[2] for n, c in make_cases(now_ms()).items()}

REASON_MENTIONS = {
    "negative_quantity": "-5",
    "zero_price": "0",
    "nan_price": "price",
    "infinite_quantity": "quantity",
    "future_origin": "future",
    "past_origin": "past",
    "oversized": f"{MAX_BYTES:,}",
    "wrong_type_price": "price",
    "missing_origin": "'ts'",
    "malformed_json": "JSON",
    "broken_stamp_header": "garbage",
}


@dataclass
class Outcome:
    cases: dict[str, Case]  # what was produced
    now: int  # the cases' origin (ms)
    topics: dict[str, str]
    where: dict[str, tuple[int, int]]  # case -> (partition, offset) on the raw topic
    clean: list[Record]
    dlq: list[Record]
    store: ChdbStore
    bootstrap: str
    group: str

    def clean_for(self, case: str) -> list[Record]:
        p, o = self.where[case]
        return [r for r in self.clean if _source(r) == (p, o)]

    def dlq_for(self, case: str) -> list[Record]:
        p, o = self.where[case]
        return [
            r
            for r in self.dlq
            if (int(r.header(H_PARTITION) or -1), int(r.header(H_OFFSET) or -1)) == (p, o)
        ]


def _source(r: Record) -> tuple[int, int]:
    # Forwarded records carry no source headers; the trail maps them by event id instead.
    return SOURCE_BY_ID.get((r.header(H_EVENT_ID) or b"").decode(), (-1, -1))


SOURCE_BY_ID: dict[str, tuple[int, int]] = {}


@pytest.fixture(scope="module")
def outcome(bootstrap: str, chdb_dir: Path) -> Iterator[Outcome]:
    uid = uuid.uuid4().hex[:10]
    topics = {n: f"{uid}.{n}" for n in ("raw", "clean", "dlq")}
    ensure_topics(bootstrap, topics.values(), 3)
    rules = RuleSet.load([rules_file()], Extraction(max_message_bytes=MAX_BYTES))
    now = now_ms()
    cases = make_cases(now)
    with ChdbStore(chdb_dir, f"gate_{uid}") as store:
        names = list(cases)
        placed = produce(
            bootstrap,
            topics["raw"],
            [(n.encode(), cases[n][0], cases[n][1]) for n in names],
        )
        where = dict(zip(names, placed, strict=True))
        run = GateRun(
            GateSettings(
                bootstrap,
                (topics["raw"],),
                topics["clean"],
                topics["dlq"],
                group_id=f"{uid}-gate",
                host="test-host",
                clock_err_ns=250_000,
            ),
            rules,
            store,
        )
        run.wait_for(len(cases))
        run.stop()
        rows = store.query("SELECT toString(event_id) AS id, partition, offset FROM {db}.trail")
        SOURCE_BY_ID.update({r["id"]: (r["partition"], r["offset"]) for r in rows})
        yield Outcome(
            cases,
            now,
            topics,
            where,
            read_all(bootstrap, topics["clean"], sum(1 for c in cases.values() if c[2] is None)),
            read_all(bootstrap, topics["dlq"], sum(1 for c in cases.values() if c[2])),
            store,
            bootstrap,
            f"{uid}-gate",
        )


def test_every_record_is_forwarded_or_dead_lettered_exactly_once(outcome: Outcome) -> None:
    """Each input lands once, in the clean topic or the dead-letter topic, never both or neither."""
    assert len(outcome.clean) + len(outcome.dlq) == len(CASE_RULES)
    for case, rule in CASE_RULES.items():
        clean, dead = outcome.clean_for(case), outcome.dlq_for(case)
        if rule is None:
            assert (len(clean), len(dead)) == (1, 0), case
        else:
            assert (len(clean), len(dead)) == (0, 1), case


@pytest.mark.parametrize("case", [c for c, rule in CASE_RULES.items() if rule])
def test_bad_input_is_dead_lettered_with_rule_and_reason(outcome: Outcome, case: str) -> None:
    """A bad record reaches the DLQ byte-for-byte, naming its source, rule, version and reason."""
    value, headers, rule = outcome.cases[case]
    (dead,) = outcome.dlq_for(case)
    assert dead.value == value
    assert dead.key == case.encode()
    assert dead.headers[: len(headers)] == headers, "original headers must come first, untouched"
    assert dead.header(H_TOPIC) == outcome.topics["raw"].encode()
    assert (
        int(dead.header(H_PARTITION) or b""),
        int(dead.header(H_OFFSET) or b""),
    ) == outcome.where[case]
    assert dead.header(H_RULE_ID) == (rule or "").encode()
    assert dead.header(H_RULE_VERSION) == b"1"
    reason = (dead.header(H_REASON) or b"").decode()
    assert REASON_MENTIONS.get(case, "") in reason
    assert dead.header("__connect.errors.exception.message") == dead.header(H_REASON)


def test_forwarded_record_keeps_payload_and_headers_and_gains_stamps(outcome: Outcome) -> None:
    """The clean copy has the original bytes and headers, then the v1 stamp headers."""
    value, headers, _ = outcome.cases["good_with_headers"]
    (rec,) = outcome.clean_for("good_with_headers")
    assert rec.value == value
    assert rec.key == b"good_with_headers"
    assert rec.headers[:3] == headers
    event_id = (rec.header(H_EVENT_ID) or b"").decode()
    p, o = outcome.where["good_with_headers"]
    raw = [
        r
        for r in read_all(outcome.bootstrap, outcome.topics["raw"], len(CASE_RULES))
        if (r.partition, r.offset) == (p, o)
    ]
    assert event_id == source_event_id(outcome.topics["raw"], p, o, raw[0].timestamp_ms)
    assert int(rec.header(H_ORIGIN) or b"") == outcome.now * 1_000_000
    ingest = int(rec.header(H_INGEST) or b"")
    assert rec.header(H_CLOCK_ERR) == b"250000"
    (stamp_raw,) = rec.header_all(H_STAMP)
    stamp = StageStamp.decode(stamp_raw or b"")
    assert (stamp.stage, stamp.host, stamp.clock_err_ns) == ("gate", "test-host", 250_000)
    assert stamp.received_ns == ingest <= stamp.emitted_ns
    trace = (rec.header(H_TRACEPARENT) or b"").decode()
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", trace)
    assert trace.split("-")[1] == event_id.replace("-", "")


def test_upstream_stamped_record_keeps_its_id_and_gains_one_stamp(outcome: Outcome) -> None:
    """A record stamped upstream keeps its event id, origin and stamps; the gate appends its own."""
    (rec,) = [r for r in outcome.clean if r.header(H_EVENT_ID) == UPSTREAM_ID.encode()]
    assert rec.header_all(H_EVENT_ID) == [UPSTREAM_ID.encode()]
    stamps = [StageStamp.decode(v or b"") for v in rec.header_all(H_STAMP)]
    assert [s.stage for s in stamps] == ["venue-adapter", "gate"]
    assert stamps[0] == upstream_stamp(outcome.now)


def test_trail_has_one_row_per_event_with_outcome_and_rule(outcome: Outcome) -> None:
    """The trail holds exactly one gate observation per input, with its outcome and rule."""
    rows = outcome.store.query(
        "SELECT partition, offset, toString(outcome) AS outcome, rule_id, rule_version, "
        "clock_err_ns, host FROM {db}.trail WHERE stage = 'gate'"
    )
    assert len(rows) == len(CASE_RULES)
    by_source = {(r["partition"], r["offset"]): r for r in rows}
    for case, rule in CASE_RULES.items():
        row = by_source[outcome.where[case]]
        assert row["outcome"] == ("forwarded" if rule is None else "dead_lettered"), case
        assert row["rule_id"] == (rule or ""), case
        assert (row["clock_err_ns"], row["host"]) == (250_000, "test-host")
    dead = outcome.store.query("SELECT rule_id, reason, value_size FROM {db}.dead_letters FINAL")
    assert sorted(d["rule_id"] for d in dead) == sorted(r for r in CASE_RULES.values() if r)
    assert all(d["reason"] for d in dead)
    oversized = next(d for d in dead if d["rule_id"] == "record.size")
    assert oversized["value_size"] == len(outcome.cases["oversized"][0] or b"")


def test_offsets_are_committed_after_a_clean_stop(outcome: Outcome) -> None:
    """After the gate stops, its group's committed offsets cover every record it took in."""
    consumer = Consumer({"bootstrap.servers": outcome.bootstrap, "group.id": outcome.group})
    try:
        parts = [TopicPartition(outcome.topics["raw"], p) for p in range(3)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
        for p in range(3):
            offsets = [o for part, o in outcome.where.values() if part == p]
            assert committed[p] == (max(offsets) + 1 if offsets else -1001), p
    finally:
        consumer.close()


def test_replay_of_a_forwarded_event_shows_its_stamps_in_order(outcome: Outcome) -> None:
    """Replaying a forwarded event lists origin, broker, ingestion and gate stamps in time order."""
    (rec,) = outcome.clean_for("good_alpha")
    timeline = replay_event(outcome.store, (rec.header(H_EVENT_ID) or b"").decode())
    kinds = [s.kind for s in timeline.events[0].stamps]
    assert set(kinds) == {"origin", "broker", "ingest", "stage"}
    times = [s.time_ns for s in timeline.events[0].stamps]
    assert times == sorted(times)
    assert timeline.events[0].provider == "alpha"
    assert timeline.events[0].topic == outcome.topics["raw"]


_KEY = st.one_of(st.none(), st.binary(max_size=14))
_HEADERS = st.one_of(
    st.none(),
    st.just([]),
    st.lists(st.tuples(st.just("x-pad"), st.binary(max_size=12)), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KEY, _HEADERS), max_size=12))
def test_the_screen_refuses_exactly_the_keys_and_headers_over_their_limits(
    batch: list[tuple[bytes | None, list[tuple[str, bytes]] | None]],
) -> None:
    # Limits small enough that a batch's keys often add up past one key's limit with none
    # over it: the screen's batch-wide shortcut must not refuse those, nor miss one that is.
    limits = Limits(max_key_bytes=10, max_header_bytes=20)
    settings = GateSettings("127.0.0.1:9", ("raw",), "clean", "dlq", limits=limits)
    gate = Gate(settings, RuleSet([]), TrailTopic())
    keys = [k for k, _ in batch]
    headers = [h for _, h in batch]
    sized, priors = gate._screen(keys, headers, [])
    over = {
        i for i, (k, h) in enumerate(batch) if len(k or b"") > 10 or (h and header_bytes(h) > 20)
    }
    assert set(sized) == over
    assert all(f.rule_id == "record.size" for f in sized.values())
    assert priors == [None] * len(batch)  # no stamp among these headers
