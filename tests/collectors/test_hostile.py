"""No record can stop the gate: hostile and careless input against the real broker and chDB.

One gate takes every case below in one run; each must land once, forwarded or dead-lettered
with the named rule, with exact counts, and a gate restarted on the same group must not meet
any of them again.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.audit import ChdbStore, DeadLetter, Observation
from stampline.broker import ensure_topics
from stampline.collectors import (
    H_EVENT_ID,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_RULE_ID,
    GateSettings,
    Stamps,
)
from stampline.collectors._dlq import (
    H_ORIGINAL_HEADERS,
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    fit_dead_letter,
)
from stampline.collectors._preflight import (
    Limits,
    check_limits,
    probe_transactions,
    record_bytes,
    topic_limits,
)
from stampline.collectors._recovery import OutputLedger
from stampline.collectors._stamps import H_INGEST, H_ORIGIN, H_PARENT_STAMPS, H_PARENTS, H_STAMP
from stampline.collectors.exceptions import BrokerCheckError, DeliveryError
from stampline.demo import rules_file
from stampline.rules import Extraction, RuleSet
from tests.collectors.test_gate import js, now_ms, quote
from tests.helpers import GateRun, Header, Record, produce, read_all

HUGE = str(10**30).encode()
LIMITS = Limits()  # the defaults a deployment gets: 1 MiB values, 64 KiB keys and headers


def _stamped(**over: object) -> list[Header]:
    """Valid upstream stamps with one field replaced by a hostile value."""
    event_id = str(uuid.uuid4())
    now_ns = now_ms() * 1_000_000
    headers = dict(Stamps(event_id, now_ns, now_ns + 1, 500).headers())
    headers[H_STAMP] = f"stage=adapter;in={now_ns};out={now_ns + 5};err=500;host=h1".encode()
    for k, v in over.items():
        headers[k.replace("__", ".")] = v  # type: ignore[assignment]
    return list(headers.items())


def _stage_stamp(src: str) -> bytes:
    """A stage stamp at the current time naming ``src`` as its bound's source."""
    now_ns = now_ms() * 1_000_000
    return f"stage=a;in={now_ns};out={now_ns};err=0;host=h;src={src}".encode()


PARENT = str(uuid.uuid4()).encode()


def _left() -> bytes:
    """A valid parent stamp (where a parent last left a stage) at the current time."""
    return f"gate/{now_ms() * 1_000_000}/500".encode()


def _sized(n: int) -> bytes:
    """A valid quote whose JSON is exactly ``n`` bytes."""
    base = js(quote("alpha", 1, venue=""))
    return base.replace(b'"venue":""', b'"venue":"' + b"V" * (n - len(base)) + b'"')


# name -> (key, value, headers, rule id that must dead-letter it, or None to forward)
Case = tuple[bytes | None, bytes | None, list[Header], str | None]


def _nested(levels: int, provider: str, seq: int) -> bytes:
    """A good quote holding a field of arrays, ``levels`` levels deep in all (the quote is
    one)."""
    text = js(quote(provider, seq))
    return text[:-1] + b',"deep":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


def make_cases() -> dict[str, Case]:
    """The cases, their origins read now (the gate refuses origins older than 5 minutes)."""
    return {
        # deeper than Python's own walks of a payload can go: once it failed the whole batch
        "nested_1000_levels": (None, _nested(1000, "alpha", 21), [], "record.decode"),
        "nested_257_levels": (None, _nested(257, "alpha", 22), [], "record.decode"),
        "nested_256_levels": (None, _nested(256, "alpha", 23), [], None),
        # read leniently for its identity (NaN), its name a lone surrogate: once it failed
        # the whole batch, since the rule state and the trail are UTF-8
        "lone_surrogate_name": (
            None,
            js(quote("alpha", 24))
            .replace(b'"alpha"', b'"\\ud800"')
            .replace(b'"price":', b'"price":NaN,"was":'),
            [],
            "record.non_finite",
        ),
        "valid_million_bytes": (None, _sized(1_000_000), [], None),
        "value_2mb": (None, _sized(2_000_000), [], "record.size"),
        "value_10mb": (None, _sized(10_000_000), [], "record.size"),
        "headers_1_5mb": (None, js(quote()), [("x-pad", b"h" * 100_000)] * 15, "record.size"),
        "key_1mb": (b"k" * 1_000_000, js(quote()), [], "record.size"),
        "origin_header_1e30": (
            None,
            js(quote()),
            _stamped(stampline__origin_ns=HUGE),
            "record.stamps",
        ),
        "ingest_header_1e30": (
            None,
            js(quote()),
            _stamped(stampline__ingest_ns=HUGE),
            "record.stamps",
        ),
        "stamp_in_1e30": (
            None,
            js(quote()),
            _stamped(stampline__stamp=b"stage=a;in=" + HUGE + b";out=1;err=0;host=h"),
            "record.stamps",
        ),
        "stamp_out_1e30": (
            None,
            js(quote()),
            _stamped(
                stampline__stamp=f"stage=a;in={now_ms() * 1_000_000};out=".encode()
                + HUGE
                + b";host=h"
            ),
            "record.stamps",
        ),
        "stamp_src_unknown": (
            None,
            js(quote()),
            _stamped(stampline__stamp=_stage_stamp("ntp")),
            "record.stamps",
        ),
        "stamp_src_chrony_kept": (
            None,
            js(quote("alpha", 11)),
            _stamped(stampline__stamp=_stage_stamp("chrony")),
            None,
        ),
        "parents_not_uuids": (
            None,
            js(quote()),
            _stamped(stampline__parents=b"abc,'); DROP TABLE x; --"),
            "record.stamps",
        ),
        # where a derived event's parents last left a stage: one entry per parent, each a
        # stage name, a time in 2000-2100 and a bound, or the record is refused with the reason
        "parent_stamps_garbage": (
            None,
            js(quote()),
            _stamped(stampline__parents=PARENT, stampline__parent_stamps=b"'); DROP TABLE x; --"),
            "record.stamps",
        ),
        "parent_stamps_1e30": (
            None,
            js(quote()),
            _stamped(stampline__parents=PARENT, stampline__parent_stamps=b"gate/" + HUGE + b"/0"),
            "record.stamps",
        ),
        "parent_stamps_miscounted": (
            None,
            js(quote()),
            _stamped(stampline__parents=PARENT, stampline__parent_stamps=_left() + b",-"),
            "record.stamps",
        ),
        "parent_stamps_kept": (
            None,
            js(quote("alpha", 12)),
            _stamped(stampline__parents=PARENT, stampline__parent_stamps=_left()),
            None,
        ),
        "forwarded_with_hostile_connect_headers": (
            None,
            js(quote("alpha", 9)),
            [("__connect.errors.partition", b"abc"), ("__connect.errors.topic", b"\xff\xfe")],
            None,
        ),
        "non_finite_keeps_identity": (
            None,
            js(quote("charlie")).replace(b'"price":101.25', b'"price":NaN'),
            [],
            "record.non_finite",
        ),
        "provider_100kb": (None, js(quote("P" * 100_000)), [], "record.identity"),
        "instrument_20kb": (None, js(quote(instrument="I" * 20_000)), [], "record.identity"),
        "duplicate_keys": (
            None,
            js(quote(quantity=-5))[:-1] + b',"quantity":300}',
            [],
            "record.duplicate_keys",
        ),
        "origin_float_1e30": (None, js(quote(ts=1e30)), [], "record.origin"),
        "seq_huge_int": (None, js(quote(seq=2**64 - 1)), [], None),
        "header_null_values": (
            None,
            js(quote("alpha", 10)),
            [("a", None), (H_EVENT_ID, None)],
            None,
        ),
        **{
            f"event_id_junk_{i}": (
                None,
                js(quote("alpha", 100 + i)),
                _stamped(stampline__event_id=junk),
                "record.stamps",
            )
            for i, junk in enumerate(
                [b"", b"x", b"0" * 36, b"\xff" * 36, b"g" * 5000, b"{}", b"-1"]
            )
        },
    }


# name -> the rule that must dead-letter it (None: forwarded); the produced values are
# ``Outcome.cases``.
CASE_RULES: dict[str, str | None] = {n: c[3] for n, c in make_cases().items()}


@dataclass
class Outcome:
    cases: dict[str, Case]
    raw: str
    clean: list[Record]
    dlq: list[Record]
    store: ChdbStore
    run: GateRun
    placed: dict[str, tuple[int, int]]
    restarted_in: int
    batch_errors: list[str]  # what the gate logged of a batch the rules raised on

    def dead(self, case: str) -> list[Record]:
        p, o = self.placed[case]
        return [
            r
            for r in self.dlq
            if (r.header_all(H_PARTITION)[-1], r.header_all(H_OFFSET)[-1])
            == (str(p).encode(), str(o).encode())
        ]


@pytest.fixture(scope="module")
def outcome(own_bootstrap: str, chdb_dir: Path) -> Iterator[Outcome]:
    bootstrap = own_bootstrap  # 10 MB records: kept off the session's broker
    uid = uuid.uuid4().hex[:10]
    raw, clean, dlq = (f"{uid}.{n}" for n in ("raw", "clean", "dlq"))
    ensure_topics(bootstrap, [raw, clean, dlq], 3)
    rules = RuleSet.load([rules_file()], Extraction(max_message_bytes=LIMITS.max_value_bytes))
    cases = make_cases()
    names = list(cases)
    placed = produce(bootstrap, raw, [cases[n][:3] for n in names])
    settings_ = GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-gate")
    batch_errors = _Lines()
    gate_log = logging.getLogger("stampline.gate")
    gate_log.addHandler(batch_errors)
    with ChdbStore(chdb_dir, f"hostile_{uid}") as store:
        run = GateRun(settings_, rules, store)
        try:
            run.wait_for(len(cases))
        finally:
            gate_log.removeHandler(batch_errors)
        run.stop()
        # A restart on the same group must find every offset committed past these records.
        again = GateRun(settings_, RuleSet.load([rules_file()]), store)
        produce(bootstrap, raw, [(None, js(quote("alpha", 999)))])
        again.wait_for(1)
        time.sleep(1.0)
        again.stop()
        forwarded = sum(1 for c in cases.values() if c[3] is None)
        yield Outcome(
            cases,
            raw,
            read_all(bootstrap, clean, forwarded + 1, extra={"fetch.max.bytes": 50_000_000}),
            read_all(bootstrap, dlq, len(cases) - forwarded),
            store,
            run,
            dict(zip(names, placed, strict=True)),
            again.gate.stats.events_in,
            [line for line in batch_errors.lines if "rules raised on a batch" in line],
        )


class _Lines(logging.Handler):
    """Every line logged to it, as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_every_hostile_record_lands_once_and_the_gate_keeps_running(outcome: Outcome) -> None:
    """Each case is forwarded or dead-lettered under its rule, exactly once, and the counts add
    up: the gate neither stopped nor lost a record."""
    stats = outcome.run.gate.stats
    assert stats.events_in == len(CASE_RULES)
    assert stats.events_in == stats.forwarded + stats.dead_lettered_total
    expected_dead = [rule for rule in CASE_RULES.values() if rule is not None]
    assert sorted(stats.dead_lettered.elements()) == sorted(expected_dead)
    for name, rule in CASE_RULES.items():
        dead = outcome.dead(name)
        if rule is None:
            assert dead == [], name
        else:
            assert len(dead) == 1, name
            assert dead[0].header_all(H_RULE_ID)[-1] == rule.encode(), name
    assert len(outcome.clean) == len(CASE_RULES) - len(expected_dead) + 1  # + the restart's record


def test_records_that_once_failed_their_batch_are_refused_alone(outcome: Outcome) -> None:
    """A record nested past 256 levels is dead-lettered saying how deep it is, and one whose
    leniently read name is a lone surrogate is dead-lettered with that name escaped, each in
    the batch with the others (each once made the rules raise for the whole batch, which the
    gate then judged one record at a time)."""
    (dead,) = outcome.dead("nested_1000_levels")
    assert dead.header_all(H_REASON)[-1] == b"JSON nested 1,000 levels deep, over the limit of 256"
    assert outcome.dead("nested_256_levels") == []
    (dead,) = outcome.dead("lone_surrogate_name")
    (row,) = outcome.store.query(
        "SELECT provider FROM {db}.observations WHERE event_id = {id:String}",
        {"id": dead.header_all(H_EVENT_ID)[-1].decode()},
    )
    assert row == {"provider": "\\ud800"}  # its escape: the name as it was sent
    assert outcome.batch_errors == []


def test_a_restarted_gate_does_not_meet_them_again(outcome: Outcome) -> None:
    """The gate restarted on the same group takes in only the one record produced after."""
    assert outcome.restarted_in == 1


def test_a_million_byte_record_within_the_limit_is_forwarded_whole(outcome: Outcome) -> None:
    """A valid record under gate.max_message_bytes is forwarded, not refused by the producer."""
    sizes = [len(r.value or b"") for r in outcome.clean]
    assert 1_000_000 in sizes


@pytest.mark.parametrize("case", ["value_2mb", "value_10mb"])
def test_an_oversized_dead_letter_is_truncated_and_says_what_it_was(
    outcome: Outcome, case: str
) -> None:
    """A dead letter too big for its topic keeps its reason and source, and names the original
    value's size and SHA-256 beside the truncated value."""
    (dead,) = outcome.dead(case)
    original = outcome.cases[case][1] or b""
    assert dead.header(H_TRUNCATED) == b"value"
    assert dead.header(H_ORIGINAL_SIZE) == str(len(original)).encode()
    assert dead.header(H_ORIGINAL_SHA256) == hashlib.sha256(original).hexdigest().encode()
    assert original.startswith(dead.value or b"")
    size = record_bytes(dead.key, dead.value, dead.headers)
    assert size <= LIMITS.out_limit(dead_letter=True)


def test_a_dead_letter_with_too_many_header_bytes_drops_them_and_keeps_their_digest(
    outcome: Outcome,
) -> None:
    """1.5 MB of headers cannot travel on: the dead letter names their count, size and digest."""
    (dead,) = outcome.dead("headers_1_5mb")
    assert b"headers" in (dead.header(H_TRUNCATED) or b"").split(b",")
    assert (dead.header(H_ORIGINAL_HEADERS) or b"").startswith(b"count=15;")
    assert dead.header("x-pad") is None


def test_refused_records_keep_their_identity_and_junk_ids_never_share_a_row(
    outcome: Outcome,
) -> None:
    """A non-finite record is filed under the provider its payload names, and every record has
    its own trail row (ids that are not UUIDs are refused, not collapsed into one)."""
    rows = outcome.store.query(
        "SELECT provider, rule_id FROM {db}.trail WHERE rule_id = 'record.non_finite'"
        " ORDER BY provider"
    )
    assert rows == [
        {"provider": "\\ud800", "rule_id": "record.non_finite"},  # lone_surrogate_name
        {"provider": "charlie", "rule_id": "record.non_finite"},
    ]
    (count,) = outcome.store.query(
        "SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.trail"
    )
    assert count == {"n": len(CASE_RULES) + 1, "ids": len(CASE_RULES) + 1}
    long_names = outcome.store.query(
        "SELECT max(length(provider)) AS p, max(length(instrument)) AS i FROM {db}.trail"
    )
    assert long_names == [{"p": 256, "i": 256}]  # kept to the name limit in the trail


def test_refused_record_does_not_move_event_time(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """A record dated a day ahead is dead-lettered and leaves its provider's watermark and
    clock-offset estimate alone: the good records after it are not late."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    day_ms = 86_400_000
    records = [(None, js(quote("delta", 0, ts=now_ms() + day_ms)))]
    records += [(None, js(quote("delta", i, ts=int(time.time() * 1000)))) for i in range(1, 6)]
    produce(bootstrap, raw, records)
    run = GateRun(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g"),
        RuleSet.load([rules_file()]),
        store,
    )
    run.wait_for(len(records))
    run.stop()
    forwarded = read_all(bootstrap, clean, 5)
    assert len(forwarded) == 5
    assert all(r.header("stampline.late_ns") is None for r in forwarded)
    offset = run.gate.event_time.clock_offset_ns("delta")
    assert offset is not None
    assert offset > -1_000_000_000  # not minus a day
    assert run.gate.stats.late == 0


class _FailingStore:
    """A trail sink that always fails, standing for a store that refuses every row."""

    def __init__(self) -> None:
        self.calls = 0

    def write_observations(self, rows: Sequence[Observation]) -> None:
        self.calls += 1
        raise RuntimeError("store refuses every row")

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        raise RuntimeError("store refuses every row")


def test_a_stop_ends_the_gate_while_the_trail_write_is_retrying(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """With the trail failing and 300 s of retries ahead, a stop ends the gate at once, with
    a DeliveryError that says the offsets were not committed."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    produce(bootstrap, raw, [(None, js(quote("alpha", i))) for i in range(20)])
    sink = _FailingStore()
    run = GateRun(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-g", store_retry_s=300.0),
        RuleSet.load([rules_file()]),
        sink,
    )
    run.wait_for(20)
    deadline = time.monotonic() + 30
    while sink.calls < 2:  # retrying
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.stop_event.set()
    run.thread.join(30)  # far less than the 300 s of retries left
    assert not run.thread.is_alive()
    assert isinstance(run.error, DeliveryError)
    assert "offsets not committed" in str(run.error)


def test_the_recovery_scan_reads_only_the_gates_own_headers(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """Hostile ``__connect.errors.*`` and id headers carried by records on the output topics do
    not stop the scan, and dead letters are matched by the source the gate itself wrote."""
    clean, dlq = make_topics("clean", "dlq", partitions=1)
    good_id = str(uuid.uuid4())
    produce(
        bootstrap,
        clean,
        [
            (None, b"{}", [("__connect.errors.partition", b"abc"), (H_EVENT_ID, good_id.encode())]),
            (None, b"{}", [(H_EVENT_ID, b"not-a-uuid")]),
            (None, b"{}", [(H_EVENT_ID, b"\xff" * 5000)]),
        ],
    )
    produce(
        bootstrap,
        dlq,
        [
            (
                None,
                b"x",
                [
                    ("__connect.errors.topic", b"elsewhere"),  # the record's own, re-driven
                    ("__connect.errors.partition", b"abc"),
                    ("__connect.errors.topic", b"md.raw"),  # the gate's, appended last
                    ("__connect.errors.partition", b"0"),
                    ("__connect.errors.offset", b"41"),
                    (H_RULE_ID, b"price.positive"),
                ],
            ),
            (None, b"x", [("__connect.errors.topic", b"md.raw"), ("__connect.errors.offset", b"")]),
        ],
    )
    ledger = OutputLedger(bootstrap, f"{uid}-g", (clean, dlq), "gate")
    found = ledger.scan({}, {("md.raw", 0)})
    assert set(found.by_id) == {good_id}
    assert set(found.by_source) == {("md.raw", 0, 41)}
    assert found.by_source[("md.raw", 0, 41)].rule_id == "price.positive"


def test_exactly_once_is_refused_on_a_broker_without_transaction_markers(bootstrap: str) -> None:
    """The embedded broker shows aborted records to read_committed readers: the probe finds it
    and refuses, saying what to use instead."""
    with pytest.raises(BrokerCheckError, match="at_least_once"):
        probe_transactions(bootstrap, f"probe-{uuid.uuid4().hex[:8]}")


def test_a_gate_asked_for_exactly_once_there_stops_with_that_reason(
    bootstrap: str, store: ChdbStore, make_topics: Callable[..., list[str]], uid: str
) -> None:
    """The gate runs the probe before reading anything and stops with the probe's error."""
    raw, clean, dlq = make_topics("raw", "clean", "dlq", partitions=1)
    settings_ = GateSettings(
        bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"{uid}-g",
        delivery="exactly_once",
        probe_topic=f"{uid}.probe",
    )
    run = GateRun(settings_, RuleSet.load([rules_file()]), store)
    run.thread.join(60)
    assert isinstance(run.error, BrokerCheckError)
    assert run.gate.stats.events_in == 0


def test_a_dead_letter_topic_too_small_for_any_dead_letter_is_refused_at_start() -> None:
    """A dead-letter topic that cannot take even a truncated dead letter is a start error
    naming the topic and its limit."""
    with pytest.raises(BrokerCheckError, match=r"'dlq'.*1,000 bytes"):
        check_limits(Limits(dead_letter_bytes=1000), "clean", "dlq")


def test_output_limits_a_silent_broker_does_not_give_are_not_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An admin client that gets no answer in time leaves each output topic's limit unknown
    (the gate then starts on the input limits alone), as other failures to learn it do; the
    timeout once escaped as a bare TimeoutError and stopped the gate at start."""
    with caplog.at_level(logging.INFO, logger="stampline"):
        found = topic_limits("127.0.0.1:9", ["clean", "dlq"], timeout_s=0.2)
    assert found == {"clean": None, "dlq": None}
    assert "max.message.bytes of topic=clean not known" in caplog.text


headers_st = st.lists(
    st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=3000))), max_size=30
)


@given(
    key=st.one_of(st.none(), st.binary(max_size=5000)),
    value=st.one_of(st.none(), st.binary(max_size=20_000)),
    original=headers_st,
    limit=st.integers(2_000, 30_000),
)
@settings(max_examples=300, deadline=None)
def test_a_fitted_dead_letter_always_fits_and_keeps_its_reasons(
    key: bytes | None, value: bytes | None, original: list[Header], limit: int
) -> None:
    """Whatever the record, the fitted dead letter fits the limit, keeps the gate's headers
    whole and in order, and keeps a prefix of the value."""
    added: list[Header] = [("stampline.rule.id", b"record.size"), ("stampline.reason", b"r" * 900)]
    k, v, headers = fit_dead_letter(key, value, original, added, limit, record_bytes)
    assert record_bytes(k, v, headers) <= limit
    gate_headers = [h for h in headers if h in added]
    assert gate_headers == added
    assert (value or b"").startswith(v or b"")


def test_cases_cover_every_header_the_contract_reads() -> None:
    """The hostile cases reach each stamp header the gate parses."""
    touched = {k for c in make_cases().values() for k, _v in c[2]}
    assert {H_ORIGIN, H_INGEST, H_STAMP, H_PARENTS, H_PARENT_STAMPS, H_EVENT_ID} <= touched


def test_a_stamp_naming_an_unknown_bound_source_is_refused_with_the_reason(
    outcome: Outcome,
) -> None:
    """A stage stamp whose src= is not a known bound source is a broken contract: its record
    is dead-lettered under record.stamps with the reason naming the value; a known one passes
    with the stamp kept as it came."""
    (dead,) = outcome.dead("stamp_src_unknown")
    assert b"src= 'ntp' is not a bound source" in (dead.header("stampline.reason") or b"")
    (kept,) = [
        r for r in outcome.clean if any(b"src=chrony" in (v or b"") for v in r.header_all(H_STAMP))
    ]
    assert kept.header_all(H_STAMP)[0].endswith(b";src=chrony")  # type: ignore[union-attr]


def test_parent_stamps_out_of_contract_are_refused_with_the_reason(outcome: Outcome) -> None:
    """A parent stamps header that is garbage, holds a time far outside 2000-2100, or does
    not have one entry per parent is a broken contract, dead-lettered naming the header and
    what is wrong; a valid one is forwarded as it came."""
    reasons = {
        case: (outcome.dead(case)[0].header("stampline.reason") or b"").decode()
        for case in ("parent_stamps_garbage", "parent_stamps_1e30", "parent_stamps_miscounted")
    }
    assert "stampline.parent_stamps entry 1" in reasons["parent_stamps_garbage"]
    assert "is not stage/out_ns/err_ns" in reasons["parent_stamps_garbage"]
    assert "is not a time between 2000 and 2100" in reasons["parent_stamps_1e30"]
    assert "holds 2 entries for 1 stampline.parents id(s)" in reasons["parent_stamps_miscounted"]
    sent = dict(outcome.cases["parent_stamps_kept"][2])[H_PARENT_STAMPS]
    (kept,) = [r for r in outcome.clean if r.header(H_PARENT_STAMPS) is not None]
    assert kept.header(H_PARENT_STAMPS) == sent
