"""The stamping contract v1: header names, encoding, and what may never change."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stampline.audit import ClockBound
from stampline.collectors import (
    H_EVENT_ID,
    H_PARENT_STAMPS,
    H_PARENTS,
    H_STAMP,
    H_VERSION,
    StageStamp,
    StampError,
    Stamps,
    append_stamp,
    dead_letter_headers,
    new_event_id,
    read_stamps,
    source_event_id,
)
from stampline.collectors._stamps import (
    BOUND_SOURCES,
    H_CLOCK_ERR,
    H_INGEST,
    H_ORIGIN,
    MAX_CLOCK_ERR_NS,
    PLAUSIBLE_NS,
    STAMPED_FALLBACK,
)

names = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
ns = st.integers(min_value=PLAUSIBLE_NS[0], max_value=PLAUSIBLE_NS[1] - 1)
T0 = 1_750_000_000_000_000_000  # a time in the plausible window, in ns
ID = str(uuid.uuid4()).encode()


@given(
    names,
    ns,
    st.integers(0, 10**12),
    st.integers(0, MAX_CLOCK_ERR_NS),
    st.from_regex(r"[A-Za-z0-9.-]{0,30}", fullmatch=True),
    st.sampled_from(["", *sorted(BOUND_SOURCES)]),
)
def test_stage_stamp_round_trips(
    stage: str, t_in: int, held: int, err: int, host: str, source: str
) -> None:
    """Any valid stage stamp decodes to exactly what was encoded, its bound's source too."""
    stamp = StageStamp(stage, t_in, min(t_in + held, PLAUSIBLE_NS[1] - 1), err, host, source)
    assert StageStamp.decode(stamp.encode()) == stamp


def test_stamp_source_is_an_optional_last_field() -> None:
    """The source rides as `;src=KIND` after host=, only when known; a stamp without it (as
    every stamper wrote before) reads with no source, and fields in another order read the
    same."""
    stamp = StageStamp("risk", T0, T0 + 5, 700, "risk-1", "chrony")
    assert stamp.encode() == b"stage=risk;in=%d;out=%d;err=700;host=risk-1;src=chrony" % (
        T0,
        T0 + 5,
    )
    assert StageStamp("risk", T0, T0 + 5, 700, "risk-1").encode().endswith(b";host=risk-1")
    old = StageStamp.decode(b"stage=risk;in=%d;out=%d;err=700;host=risk-1" % (T0, T0 + 5))
    assert (old.source, old.bound_label()) == ("", "")
    shuffled = StageStamp.decode(b"src=fallback;host=h;err=1;out=%d;in=%d;stage=s" % (T0, T0))
    assert shuffled == StageStamp("s", T0, T0, 1, "h", "fallback")
    assert shuffled.bound_label() == STAMPED_FALLBACK
    assert StageStamp("s", T0, T0, 1, "h", "configured").bound_label() == "configured"


def test_stamp_bound_labels_read_back_as_their_kind() -> None:
    """What the tap records for a stamp's source is read back by the evidence as that kind."""
    for source in sorted(BOUND_SOURCES):
        label = StageStamp("s", T0, T0, 5, "h", source).bound_label()
        assert ClockBound.from_label(label, 5).kind == source


@given(
    st.sampled_from(["in", "out", "err"]),
    st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=PLAUSIBLE_NS[1]),
        st.integers(min_value=0, max_value=PLAUSIBLE_NS[0] - 1),
    ),
)
def test_stage_stamp_fields_out_of_range_are_refused(field: str, value: int) -> None:
    """A stage stamp time outside 2000-2100, or a bound outside 0 to a day, is a StampError."""
    parts = {"in": T0, "out": T0 + 5, "err": 1000}
    parts[field] = value
    if field == "err" and 0 <= value <= MAX_CLOCK_ERR_NS:
        return  # small numbers are valid bounds
    if field == "out" and PLAUSIBLE_NS[0] <= value < T0:
        parts["in"] = PLAUSIBLE_NS[0]
    raw = f"stage=s;in={parts['in']};out={parts['out']};err={parts['err']};host=h".encode()
    with pytest.raises(StampError):
        StageStamp.decode(raw)


def test_stamps_round_trip_through_headers() -> None:
    """Stamps written as headers read back equal, lineage and stage order included."""
    parents = (str(uuid.uuid4()), str(uuid.uuid4()))
    stamps = Stamps(
        str(uuid.uuid4()),
        T0 + 10,
        T0 + 20,
        1_000,
        stages=(
            StageStamp("gate", T0 + 20, T0 + 25, 1_000),
            StageStamp("risk", T0 + 30, T0 + 40, 2_000, "h2"),
        ),
        parents=parents,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    assert read_stamps(stamps.headers()) == stamps
    assert dict(stamps.headers())[H_VERSION] == b"1"
    assert dict(stamps.headers())[H_PARENTS] == ",".join(parents).encode()


def test_parent_stamps_round_trip_aligned_with_the_parents() -> None:
    """A derived event's parent stamps (one per parent; "-" where not known) read back as
    written, and a record written before the header existed still reads, with none."""
    parents = (str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
    stamps = Stamps(
        str(uuid.uuid4()),
        T0,
        T0,
        1_000,
        stages=(StageStamp("risk", T0 - 50, T0, 1_000),),
        parents=parents,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        parent_stamps=(("gate", T0 - 90, 500), ("origin", T0 - 400, 0), ("", 0, 0)),
    )
    headers = stamps.headers()
    assert dict(headers)[H_PARENT_STAMPS] == f"gate/{T0 - 90}/500,origin/{T0 - 400}/0,-".encode()
    assert read_stamps(headers) == stamps
    older = [(k, v) for k, v in headers if k != H_PARENT_STAMPS]
    back = read_stamps(older)
    assert back is not None
    assert (back.parents, back.parent_stamps) == (parents, ())


@given(
    st.lists(st.tuples(names, ns, st.integers(0, MAX_CLOCK_ERR_NS)) | st.just(("", 0, 0)),
             min_size=1, max_size=20)
)  # fmt: skip
def test_any_valid_parent_stamps_round_trip(left: list[tuple[str, int, int]]) -> None:
    """Every stage name, time and bound the contract allows survives the header."""
    parents = tuple(str(uuid.uuid4()) for _ in left)
    stamps = Stamps(str(uuid.uuid4()), T0, T0, 0, parents=parents, parent_stamps=tuple(left))
    back = read_stamps(stamps.headers())
    assert back is not None
    assert back.parent_stamps == tuple(left)


def test_record_without_event_id_has_no_stamps() -> None:
    """Headers with no event id (an unstamped producer) read as None, not as an error."""
    assert read_stamps(None) is None
    assert read_stamps([("x-app", b"1")]) is None


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ([(H_EVENT_ID, ID), (H_STAMP, b"not a stamp")], "not a stage stamp"),
        ([(H_EVENT_ID, ID), (H_STAMP, b"stage=x;in=1;out=soon")], "not a stage stamp"),
        ([(H_EVENT_ID, ID), ("stampline.origin_ns", b"yesterday")], "malformed"),
        ([(H_EVENT_ID, ID), (H_VERSION, b"2")], "version 2"),
        ([(H_EVENT_ID, b"\xff\xfe")], "not a UUID"),
        ([(H_EVENT_ID, b"e")], "not a UUID"),
        ([(H_EVENT_ID, b"0" * 10_000)], "not a UUID"),
        ([(H_EVENT_ID, ID), (H_ORIGIN, b"1" + b"0" * 30)], "between 2000 and 2100"),
        ([(H_EVENT_ID, ID), (H_INGEST, b"-5")], "between 2000 and 2100"),
        ([(H_EVENT_ID, ID), (H_CLOCK_ERR, b"1" + b"0" * 30)], "clock-error bound"),
        ([(H_EVENT_ID, ID), (H_STAMP, b"stage=x;in=1" + b"0" * 30 + b";out=2;host=")], "2000"),
        ([(H_EVENT_ID, ID), (H_STAMP, b"stage=x;in=%d;out=%d;host=a b" % (T0, T0))], "host"),
        # a trailing newline is not part of a name (a regex's `$` once let it in)
        ([(H_EVENT_ID, ID), (H_STAMP, b"stage=x\n;in=%d;out=%d;host=h" % (T0, T0))], "stage"),
        ([(H_EVENT_ID, ID), (H_STAMP, b"stage=x;in=%d;out=%d;host=h\n" % (T0, T0))], "host"),
        (
            [(H_EVENT_ID, ID), (H_PARENTS, ID), (H_PARENT_STAMPS, b"gate\n/%d/0" % T0)],
            "is not a stage name",
        ),
        ([(H_EVENT_ID, ID), (H_STAMP, b"stage=x;in=%d;out=%d;host=h" % (T0, T0 - 1))], "before"),
        ([(H_EVENT_ID, ID), (H_PARENTS, b"not-a-uuid")], "stampline.parents"),
        (
            [(H_EVENT_ID, ID), (H_STAMP, b"stage=x;in=%d;out=%d;err=1;host=h;src=ntp" % (T0, T0))],
            "src= 'ntp' is not a bound source",
        ),
        (
            [(H_EVENT_ID, ID), (H_STAMP, b"stage=x;in=%d;out=%d;err=1;host=h;src=" % (T0, T0))],
            "src= '' is not a bound source",
        ),
        (
            [(H_EVENT_ID, ID), (H_STAMP, b"src=Chrony;stage=x;in=%d;out=%d;host=h" % (T0, T0))],
            "src= 'Chrony' is not a bound source",
        ),
        ([(H_EVENT_ID, ID), (H_PARENTS, b",".join([ID] * 2000))], "limit"),
        # where each parent last left a stage: aligned with the parents, each a stage, a time
        # and a bound
        ([(H_EVENT_ID, ID), (H_PARENT_STAMPS, b"gate/%d/5" % T0)], "1 entries for 0"),
        (
            [(H_EVENT_ID, ID), (H_PARENTS, ID), (H_PARENT_STAMPS, b"gate/%d/5,-" % T0)],
            "2 entries for 1 stampline.parents id",
        ),
        ([(H_EVENT_ID, ID), (H_PARENTS, ID), (H_PARENT_STAMPS, b"")], "not stage/out_ns/err_ns"),
        (
            [(H_EVENT_ID, ID), (H_PARENTS, ID), (H_PARENT_STAMPS, b"'); DROP TABLE x; --")],
            "entry 1 .* is not stage/out_ns/err_ns",
        ),
        (
            [(H_EVENT_ID, ID), (H_PARENTS, ID), (H_PARENT_STAMPS, b"gate/-5/0")],
            "not stage/out_ns/err_ns",
        ),
        (
            [(H_EVENT_ID, ID), (H_PARENTS, ID), (H_PARENT_STAMPS, b"a b/%d/0" % T0)],
            "'a b' is not a stage name",
        ),
        (
            [(H_EVENT_ID, ID), (H_PARENTS, ID), (H_PARENT_STAMPS, b"gate/1" + b"0" * 30 + b"/0")],
            "out 1000.* is not a time between 2000 and 2100",
        ),
        (
            [
                (H_EVENT_ID, ID),
                (H_PARENTS, ID),
                (H_PARENT_STAMPS, b"gate/%d/1%s" % (T0, b"0" * 30)),
            ],
            "err 1000.* is not a clock-error bound",
        ),
        (
            [
                (H_EVENT_ID, ID),
                (H_PARENTS, ID),
                (H_PARENT_STAMPS, b"gate/%d/%s" % (T0, b"9" * 5000)),
            ],
            "5,0.. bytes is too long for 1 parent",
        ),
        (
            [
                (H_EVENT_ID, ID),
                (H_PARENTS, ID),
                (H_PARENT_STAMPS, b"gate/%d/0" % T0 + "é".encode()),
            ],
            "malformed",
        ),
    ],
)
def test_malformed_stamps_raise_a_clear_error(
    headers: list[tuple[str, bytes]], needle: str
) -> None:
    """A stamp header that breaks the contract raises StampError saying what is wrong."""
    with pytest.raises(StampError, match=needle):
        read_stamps(headers)


def test_append_stamp_never_replaces_or_reorders() -> None:
    """Appending a stage stamp keeps every existing header, null values included, in order."""
    original: list[tuple[str, bytes | None]] = [
        ("a", b"1"),
        (H_STAMP, StageStamp("s1", T0 + 1, T0 + 2, 0).encode()),
        ("n", None),
        ("a", b"2"),
    ]
    out = append_stamp(original, StageStamp("s2", T0 + 3, T0 + 4, 0))
    assert out[:4] == original
    assert [StageStamp.decode(v or b"").stage for k, v in out if k == H_STAMP] == ["s1", "s2"]


def test_source_event_ids_are_deterministic_uuid_v8() -> None:
    """The same source coordinates give the same id; any change gives another."""
    a = source_event_id("md.raw", 1, 42, 1_700_000_000_000)
    assert a == source_event_id("md.raw", 1, 42, 1_700_000_000_000)
    assert uuid.UUID(a).version == 8
    others = {
        source_event_id("md.raw", 1, 43, 1_700_000_000_000),
        source_event_id("md.raw", 2, 42, 1_700_000_000_000),
        source_event_id("md.raw2", 1, 42, 1_700_000_000_000),
        source_event_id("md.raw", 1, 42, 1_700_000_000_001),
    }
    assert a not in others
    assert len(others) == 4


@given(
    st.lists(st.integers(0, 2**48 - 1), min_size=2, max_size=50, unique=True),
    st.integers(0, 2**31 - 1),
)
def test_source_event_ids_are_time_ordered_by_broker_timestamp(
    stamps_ms: list[int], offset: int
) -> None:
    """Source ids carry the broker time in their first 48 bits, so they sort by it."""
    ids = [source_event_id("md.raw", 0, offset + i, ms) for i, ms in enumerate(stamps_ms)]
    assert [int(uuid.UUID(i).hex[:12], 16) for i in ids] == stamps_ms
    assert sorted(ids, key=uuid.UUID) == [
        ids[i] for i in sorted(range(len(ids)), key=stamps_ms.__getitem__)
    ]
    assert all(uuid.UUID(i).version == 8 for i in ids)


def test_source_event_id_of_a_record_without_timestamp_is_valid() -> None:
    """A record with no broker timestamp (-1) still gets a deterministic version-8 id."""
    a = source_event_id("md.raw", 0, 7, -1)
    assert a == source_event_id("md.raw", 0, 7, -1)
    assert uuid.UUID(a).version == 8
    assert a.startswith("00000000-0000-8")


def test_new_event_ids_are_uuid_v7_and_time_ordered() -> None:
    """Ids born in stages are UUIDv7, unique, and sort by creation time at ms granularity."""
    ids = [new_event_id() for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(uuid.UUID(i).version == 7 for i in ids)
    prefixes = [i[:13] for i in ids]
    assert prefixes == sorted(prefixes)


def test_dead_letter_headers_follow_the_original_ones() -> None:
    """DLQ headers keep the originals first and add Connect's and stampline's names after."""
    original: list[tuple[str, bytes | None]] = [("x", b"1"), ("n", None)]
    out = dead_letter_headers(
        original,
        topic="t",
        partition=2,
        offset=9,
        rule_id="record.decode",
        rule_version=3,
        reason="not valid JSON",
        collector="stampline-gate",
    )
    assert out[:2] == original
    added = dict(out[2:])
    assert added["__connect.errors.topic"] == b"t"
    assert added["__connect.errors.partition"] == b"2"
    assert added["__connect.errors.offset"] == b"9"
    assert added["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert added["stampline.rule.version"] == b"3"
    assert added["stampline.reason"] == b"not valid JSON"
