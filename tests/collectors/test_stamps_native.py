"""The compiled stamp reader (native/src/stamps.rs) reads every record exactly as the reference
``read_stamps`` does, or leaves it to the reference; the tap's rows are the same either way.

Outcomes are compared by ``repr`` (so an int that became a float, or a str subclass, would
show) and, for errors, by type and message.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stampline import _native  # ./dev test builds it (it needs cargo): its absence is a failure
from stampline.audit import TrailRow
from stampline.broker import ensure_topics
from stampline.collectors import (
    H_EVENT_ID,
    H_INGEST,
    H_STAMP,
    H_TRACEPARENT,
    GateSettings,
    StageStamp,
    StampError,
    Stamps,
    Tap,
    TapSettings,
    TrailTopic,
    _stamps,
    _tap,
    read_stamps,
    stage,
)
from stampline.collectors._stamps import read_stamps_batch
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.stampcorpus import (
    NAMES,
    ODD_SHAPES,
    T0,
    Headers,
    hostile,
    message,
    written,
)
from tests.helpers import GateRun, produce, read_all

SEED = 22
NOW_NS = 1_795_275_946_500_000_000  # the tap's clock, frozen so that both runs' rows match


def outcome(read: Any, headers: Any) -> tuple[str, str]:
    """What ``read(headers)`` gives: ("ok", repr of the result) or ("raise", type: message)."""
    try:
        got = read(headers)
    except Exception as exc:
        return ("raise", f"{type(exc).__name__}: {exc}")
    if isinstance(got, StampError):  # read_stamps_batch returns the error it would raise
        return ("raise", f"{type(got).__name__}: {got}")
    return ("ok", repr(got))


def compiled(batch: list[Any]) -> tuple[list[Any], dict[int, str]]:
    """The compiled reader's own answer: results, and the records it left to the reference."""
    got, unsure = _native.read_stamps_batch(batch, Stamps, StageStamp)
    return got, dict(unsure)


def assert_read_as_the_reference(batch: list[Headers]) -> dict[int, str]:
    """Every record the compiled reader reads gives the reference's result (and the reference
    does not refuse it); through ``read_stamps_batch`` every record gives the reference's
    outcome. Returns the records the compiled reader left to the reference."""
    got, unsure = compiled(batch)
    assert len(got) == len(batch)
    whole = read_stamps_batch(batch)
    for i, headers in enumerate(batch):
        want = outcome(read_stamps, headers)
        if i not in unsure:
            assert ("ok", repr(got[i])) == want, f"record {i}: {headers[:12]!r}"
        else:
            assert got[i] is None
        assert outcome(lambda _, g=whole[i]: g, None) == want, f"record {i}: {headers[:12]!r}"
    return unsure


def test_the_stampers_records_are_all_read_compiled() -> None:
    """Whatever stampline's writers make (Stamps.headers(), the gate's layout, appended
    stamps, the SDK's derived and forwarded events; up to 64 stages and 40 parents with
    their parent stamps) is read by the compiled reader itself, as the reference reads it."""
    batch = written(SEED, 5000)
    assert sum(len(headers) > 20 for headers in batch) > 50  # many stages and parents in it
    assert assert_read_as_the_reference(batch) == {}


def test_hostile_records_are_read_as_the_reference_or_left_to_it() -> None:
    """Broken stampers' headers (respelled numbers, ids and stamps, duplicate, missing,
    renamed and null headers, non-ASCII, huge values, endless names, thousands of headers,
    limits crossed): each is read exactly as the reference reads it, or left to it."""
    batch = hostile(SEED + 1, written(SEED, 2000), 6000)
    unsure = assert_read_as_the_reference(batch)
    refused = sum(outcome(read_stamps, h)[0] == "raise" for h in batch)
    # The corpus has both: records the compiled reader judged, and refusals it left.
    assert refused > 2000
    assert len(batch) - len(unsure) > 1000
    assert len(set(unsure.values())) > 10  # many kinds of doubt, each its own reason


def test_every_limit_and_its_neighbour() -> None:
    """At and one past each limit (stages, parents, parent-stamp length, times, bounds,
    name and host lengths) both readers agree."""
    ids = [str(uuid.UUID(int=i + 1)) for i in range(1025)]
    eid, low, high = ids[0], *_stamps.PLAUSIBLE_NS
    max_err = _stamps.MAX_CLOCK_ERR_NS

    def staged(*stages: StageStamp) -> Stamps:
        return Stamps(eid, T0, T0, 0, stages=stages)

    def derived(n: int, left: tuple[str, int, int] | None) -> Stamps:
        return Stamps(
            eid, T0, T0, 0, parents=tuple(ids[1 : n + 1]), parent_stamps=(left,) * n if left else ()
        )

    cases = [
        *(staged(*[StageStamp("s", T0, T0, 0, "h")] * n) for n in (0, 1, 63, 64, 65)),
        *(derived(n, None) for n in (1023, 1024)),
        *(derived(n, ("a" * 64, T0, 0)) for n in (1, 1023, 1024)),
        *(Stamps(eid, t, t, 0) for t in (low - 1, low, high - 1, high, 0, 1)),
        *(staged(StageStamp("s", t, t, 0)) for t in (low - 1, low, high - 1, high)),
        *(derived(1, ("s", t, 0)) for t in (low - 1, low, high - 1, high)),
        *(Stamps(eid, T0, T0, err) for err in (0, max_err, max_err + 1)),
        *(staged(StageStamp("s", T0, T0, err)) for err in (0, max_err, max_err + 1)),
        *(derived(1, ("s", T0, err)) for err in (0, max_err, max_err + 1)),
        *(staged(StageStamp(name, T0, T0, 0)) for name in ("a" * 64, "a" * 65, "", "a\n", "a b")),
        *(staged(StageStamp("s", T0, T0, 0, h)) for h in ("h" * 255, "h" * 256, "h\n", "h;", "é")),
    ]
    batch = [c.headers() for c in cases]
    # Over 1024 parents, and 105 zeros as a bound (the reference's int() reads them as 0)
    batch.append([(H_EVENT_ID, eid.encode()), ("stampline.parents", ",".join(ids).encode())])
    left = b"s/" + str(T0).encode() + b"/" + b"0" * 105
    batch.append([(H_EVENT_ID, eid.encode()), ("stampline.parents", ids[1].encode()),
                  ("stampline.parent_stamps", left)])  # fmt: skip
    assert_read_as_the_reference(batch)


def test_odd_header_shapes_give_the_references_outcome() -> None:
    """Header lists confluent-kafka never gives (str or bytearray values, bytes or unhashable
    names, pairs as lists, three-item tuples, a dict, lone surrogates): read_stamps_batch
    gives what read_stamps gives, result or exception, for each."""
    for headers in ODD_SHAPES:
        batch_outcome = outcome(lambda h: read_stamps_batch([h])[0], headers)
        assert batch_outcome == outcome(read_stamps, headers), repr(headers)


# Arbitrary header lists: the contract's names (and near misses) with values that are often
# valid, often nearly so, and sometimes anything at all.
_ID = b"8e36dfa3-ed6e-80cb-91d9-d638b45704dd"  # hex letters: its upper case differs
_VALID = {
    "stampline.v": [b"1"],
    H_EVENT_ID: [_ID, _ID.upper()],
    "stampline.origin_ns": [str(T0).encode(), b"0"],
    "stampline.ingest_ns": [str(T0 + 5).encode(), b"0"],
    "stampline.clock_err_ns": [b"1000000", b"0"],
    H_STAMP: [
        f"stage=gate;in={T0};out={T0 + 9};err=5;host=h".encode(),
        f"stage=risk;in={T0};out={T0};err=0;host=;src=chrony".encode(),
    ],
    "stampline.parents": [_ID, _ID + b"," + _ID],
    "stampline.parent_stamps": [b"-", f"gate/{T0}/0".encode(), f"-,origin/{T0}/0".encode()],
    "traceparent": [b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"],
}
names = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(str.upper),
    st.sampled_from(NAMES).map(lambda n: n + " "),
    st.text(max_size=20),
)


@st.composite
def header(draw: st.DrawFn) -> tuple[str, bytes | None]:
    name = draw(names)
    pick = draw(st.integers(0, 9))
    if pick == 0:
        return (name, None)
    if pick <= 3 or name not in _VALID:
        return (name, draw(st.binary(max_size=80)))
    value = draw(st.sampled_from(_VALID[name]))
    if pick <= 6:
        return (name, value)
    at = draw(st.integers(0, len(value)))
    cut = draw(st.integers(0, 2))
    return (name, value[:at] + draw(st.binary(max_size=3)) + value[at + cut :])


@st.composite
def header_list(draw: st.DrawFn) -> Headers:
    """Headers, half of them after an event id (without one, nothing else is read)."""
    headers = draw(st.lists(header(), max_size=14))
    if draw(st.booleans()):
        headers.insert(0, (H_EVENT_ID, draw(st.sampled_from(_VALID[H_EVENT_ID]))))
    return headers


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(header_list(), min_size=1, max_size=8))
def test_arbitrary_header_lists_read_as_the_reference(batch: list[Headers]) -> None:
    """Hypothesis: any lists of (name, value) headers, read in one batch."""
    assert_read_as_the_reference(batch)


def test_a_new_fallback_reason_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each record the compiled reader leaves is counted under its reason, logged the first
    time only; what it reads is counted as native."""
    why = "a contract version other than a plain 1"
    monkeypatch.setattr(_stamps, "STAMP_PATHS", Counter())
    odd = [("stampline.v", b"2"), (H_EVENT_ID, _ID)]
    with caplog.at_level(logging.INFO, logger="stampline.collectors.stamps"):
        read_stamps_batch([odd, odd, [(H_EVENT_ID, _ID)], None])
        read_stamps_batch([odd])
    assert dict(_stamps.STAMP_PATHS) == {f"python: {why}": 3, "native": 2}
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [f"stamps read on the Python path: {why}"]


def test_without_the_compiled_module_the_reference_reads_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Built without cargo (no stampline._native), read_stamps_batch is read_stamps per record."""
    batch = hostile(SEED + 2, written(SEED + 2, 300), 300)
    monkeypatch.setattr(_stamps, "_native", None)
    monkeypatch.setattr(_stamps, "STAMP_PATHS", Counter())
    whole = read_stamps_batch(batch)
    assert dict(_stamps.STAMP_PATHS) == {"python: no compiled module": len(batch)}
    for headers, got in zip(batch, whole, strict=True):
        assert outcome(lambda _, g=got: g, None) == outcome(read_stamps, headers)


def test_classes_it_cannot_build_as_their_init_does_are_refused() -> None:
    """The compiled reader sets the fields of slotted dataclasses itself (as their __init__
    does); a class with a __post_init__, or without slots, is refused with a ValueError, which
    read_stamps_batch answers with the reference."""

    @dataclass(frozen=True, slots=True)
    class Checked:
        event_id: str

        def __post_init__(self) -> None:
            raise AssertionError("never built without its __post_init__")

    batch = [[(H_EVENT_ID, _ID)]]
    for cls in (Checked, SimpleNamespace):
        with pytest.raises(ValueError, match="not a slotted dataclass without __post_init__"):
            _native.read_stamps_batch(batch, cls, StageStamp)
        with pytest.raises(ValueError, match="not a slotted dataclass"):
            _native.read_stamps_batch(batch, Stamps, cls)


def tap_rows(
    messages: Sequence[Message], monkeypatch: pytest.MonkeyPatch, fast: bool
) -> tuple[list[str], tuple[int, ...]]:
    """The tap's rows (as reprs) and counts for ``messages``, its clock frozen, with the
    compiled reader on or forced off."""
    with monkeypatch.context() as m:
        m.setattr(_tap, "time", SimpleNamespace(time_ns=lambda: NOW_NS))
        if not fast:
            m.setattr(_stamps, "_native", None)
        tap = Tap(TapSettings("unused:9092", ("md.clean",), host="tap-1"), TrailTopic())
        rows: list[TrailRow] = []
        for at in range(0, len(messages), 500):  # in batches, as the tap takes them
            tap._observe(messages[at : at + 500], rows)
    s = tap.stats
    return [repr(r) for r in rows], (s.records, s.observations, s.unstamped, s.keyed, s.bad_stamps)


def test_tap_rows_are_identical_with_the_fast_path_on_and_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tap's trail rows and counts for stamped, hostile and unstamped records are the same
    whether the compiled reader reads the stamps or the reference does."""
    base = written(SEED + 3, 1500)
    corpus: list[Any] = [*base, *hostile(SEED + 4, base, 1500), None, [], [("x", b"y")]]
    messages = [message(h, i) for i, h in enumerate(corpus)]
    before = _stamps.STAMP_PATHS["native"]
    fast = tap_rows(messages, monkeypatch, fast=True)
    assert _stamps.STAMP_PATHS["native"] - before > 1500
    slow = tap_rows(messages, monkeypatch, fast=False)
    assert fast[1] == slow[1]
    assert fast[1][4] > 500  # bad stamps among them
    assert fast[0] == slow[0]


# ---- through the real broker and the real gate ----


def _quote(seq: int) -> bytes:
    return orjson.dumps(
        {
            "provider": f"p{seq % 5}",
            "instrument": "SYM001",
            "seq": seq,
            "ts": time.time_ns() // 1_000_000,
            "type": "quote",
            "price": 101.25,
            "quantity": 300,
        }
    )


class _Recording:
    def __init__(self) -> None:
        self.sent: list[Headers] = []

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        self.sent.append(list(kwargs.get("headers") or []))


def _consume(bootstrap: str, topic: str, n: int) -> list[Message]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    got: list[Message] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got.extend(m for m in consumer.consume(n, 0.2) if m.error() is None)
    consumer.close()
    assert len(got) == n
    return got


@dataclass
class Run:
    clean: list[Message]
    dead: list[Message]
    hostile: list[Message]


@pytest.fixture(scope="module")
def run(bootstrap: str) -> Run:
    """The real gate's output (clean and dead-letter) over quotes: raw, after a producer's own
    headers, derived by SDK stages from stamped inputs (parents, parent stamps, several
    stages), and with broken stamps; and a hostile corpus as the broker gives it back."""
    uid = uuid.uuid4().hex[:10]
    raw, clean, dlq, trail, bad = (f"{uid}.{n}" for n in ("raw", "clean", "dlq", "trail", "bad"))
    ensure_topics(bootstrap, [raw, clean, dlq, trail, bad], 2)
    records: list[tuple[bytes | None, bytes | None, list[Any]]] = []
    upstream = written(SEED + 5, 150)
    for seq in range(400):
        headers: list[Any] = []
        if seq % 4 == 1:
            headers = [("x-app", b"feed-7"), ("x-null", None)]
        elif seq % 4 == 2:  # an SDK stage's derived event, or an input it forwarded
            sent = _Recording()
            inputs = [message(upstream[(seq + k) % len(upstream)], k) for k in range(3)]
            with stage("risk", *inputs, producer=sent, host="risk-1") as ctx:
                ctx.produce("decisions", b"{}")
                ctx.forward("enriched", inputs[0])
            headers = sent.sent[seq % 8 // 4]
        elif seq % 20 == 3:
            headers = [(H_EVENT_ID, str(uuid.uuid4()).encode()), (H_STAMP, b"garbage")]
        value = _quote(seq) if seq % 25 else b"{not json"
        records.append((str(seq).encode(), value, headers))
    produce(bootstrap, raw, records)
    gate = GateRun(
        GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-gate", host="gw-1"),
        RuleSet.load([rules_file()]),
        TrailTopic(trail, "gate"),
    )
    gate.wait_for(len(records))
    gate.stop()
    forwarded = gate.gate.stats.forwarded
    # The hostile corpus through the broker (values it takes: no megabyte headers).
    odd = [
        h
        for h in hostile(SEED + 6, written(SEED + 6, 500), 1500)
        if sum(len(k) + len(v or b"") for k, v in h) < 200_000
    ]
    produce(bootstrap, bad, [(b"k", b"{}", h) for h in odd])
    return Run(
        _consume(bootstrap, clean, forwarded),
        _consume(bootstrap, dlq, len(records) - forwarded),
        _consume(bootstrap, bad, len(odd)),
    )


def test_the_gates_output_is_read_compiled_as_the_reference_reads_it(run: Run) -> None:
    """Every record the real gate forwarded or dead-lettered, as the broker gives it back, is
    read by the compiled reader itself, with the reference's result."""
    clean = [m.headers() for m in run.clean]
    # SDK stages' derived events among them, with their lineage
    assert sum(any(k == "stampline.parents" for k, _ in h or ()) for h in clean) > 20
    assert assert_read_as_the_reference(clean) == {}
    dead = [m.headers() for m in run.dead]
    unsure = assert_read_as_the_reference(dead)
    # Only the dead letters whose stamps are broken are left to the reference.
    assert 0 < len(unsure) < len(dead)
    assert all(outcome(read_stamps, dead[i])[0] == "raise" for i in unsure)


def test_the_tap_over_broker_records_gives_the_same_rows_either_way(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tap's rows over what the broker gives back (the gate's output, hostile headers)
    are identical with the compiled reader on and forced off."""
    for messages in (run.clean, run.dead, run.hostile):
        assert_read_as_the_reference([m.headers() for m in messages])
        fast = tap_rows(messages, monkeypatch, fast=True)
        assert fast == tap_rows(messages, monkeypatch, fast=False)
        assert fast[1][0] == len(messages)


def test_one_broken_record_does_not_stop_its_batch() -> None:
    """A record the reference refuses gets its StampError in its place; the others in the
    same batch are read."""
    batch = [*written(SEED + 7, 2000), [(H_EVENT_ID, b"x")], *written(SEED + 8, 10)]
    got = read_stamps_batch(batch)
    assert isinstance(got[2000], StampError)
    assert str(got[2000]) == "stampline.event_id 'x' is not a UUID"
    assert all(isinstance(g, Stamps) or g is None for i, g in enumerate(got) if i != 2000)


def _gate_output(
    bootstrap: str, raw: str, n: int, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> dict[bytes, tuple[str, list[tuple[str, bytes | None]]]]:
    """The real gate's output over ``raw`` (one partition), by key: which topic the record
    went to and its headers, with the values that differ run by run (this gate's stamp, the
    batch's ingest time, the traceparent's random span) blanked."""
    uid = uuid.uuid4().hex[:10]
    clean, dlq, trail = (f"{uid}.{n}" for n in ("clean", "dlq", "trail"))
    ensure_topics(bootstrap, [clean, dlq, trail], 1)
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(_stamps, "_native", None)
        gate = GateRun(
            GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-gate", stage="gate-ut"),
            RuleSet.load([rules_file()]),
            TrailTopic(trail, "gate"),
        )
        gate.wait_for(n)
        gate.stop()
    own = b"stage=gate-ut;"
    out: dict[bytes, tuple[str, list[tuple[str, bytes | None]]]] = {}
    for topic, records in (
        ("clean", read_all(bootstrap, clean)),
        ("dlq", read_all(bootstrap, dlq)),
    ):
        for r in records:
            assert r.key is not None
            assert r.key not in out
            blanked = [
                (k, None if k in (H_INGEST, H_TRACEPARENT) or (v or b"").startswith(own) else v)
                for k, v in r.headers
            ]
            out[r.key] = (topic, blanked)
    assert len(out) == n
    return out


def test_the_gate_judges_stamps_the_same_with_the_compiled_reader_on_and_off(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate reads its batches' stamps with the batch reader: over stamped, hostile and
    unstamped records it forwards and dead-letters the same records, with the same headers
    and reasons, whether the compiled reader reads them or the reference does."""
    raw = f"{uuid.uuid4().hex[:10]}.raw"
    ensure_topics(bootstrap, [raw], 1)
    base = written(SEED + 9, 300)
    odd = [
        h
        for h in hostile(SEED + 10, base, 400)
        if sum(len(k) + len(v or b"") for k, v in h) < 200_000
    ]
    corpus: list[Any] = [*base, *odd, *([None] * 50)]
    produce(bootstrap, raw, [(str(i).encode(), _quote(i), h or []) for i, h in enumerate(corpus)])
    before = _stamps.STAMP_PATHS["native"]
    fast = _gate_output(bootstrap, raw, len(corpus), monkeypatch, fast=True)
    assert _stamps.STAMP_PATHS["native"] - before >= len(base)
    slow = _gate_output(bootstrap, raw, len(corpus), monkeypatch, fast=False)
    assert fast == slow
    dead = [headers for topic, headers in fast.values() if topic == "dlq"]
    # broken stamps among the hostile records are dead-lettered as such
    assert sum((b"stamp" in (v or b"")) for h in dead for k, v in h if k.endswith("reason")) > 20
