"""The trail topic's message format: Arrow IPC per message, versioned headers, strict reading."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stampline.audit import (
    TRAIL_FORMAT_VERSION,
    DeadLetter,
    Observation,
    TrailFormatError,
    canonical_table,
    dead_letter_table,
    decode_trail_message,
    encode_trail_messages,
)

T0 = 1_700_000_000_000_000_000


def _obs(n: int) -> pa.Table:
    return canonical_table(
        [
            Observation(f"0190c6d8-0000-7000-8000-{i:012x}", "gate", T0 + i, T0 + i + 5, T0, T0, 1)
            for i in range(n)
        ]
    )


def _headers(msg_headers: list[tuple[str, object]]) -> dict[str, bytes]:
    return {k: v for k, v in msg_headers if isinstance(v, bytes)}


def test_a_table_round_trips_with_a_header_naming_version_kind_and_rows() -> None:
    """Encoding then decoding gives the same table back; the headers say version, kind, rows."""
    table = _obs(50)
    (msg,) = encode_trail_messages("observations", table, "gate@h1")
    head = _headers(msg.headers)
    assert head["stampline.trail.version"] == str(TRAIL_FORMAT_VERSION).encode()
    assert head["stampline.trail.kind"] == b"observations"
    assert head["stampline.trail.rows"] == b"50"
    assert head["stampline.trail.source"] == b"gate@h1"
    kind, back = decode_trail_message(msg.value, msg.headers)
    assert kind == "observations"
    assert back.equals(table)


def test_a_large_table_is_split_into_messages_under_the_size_bound() -> None:
    """A table bigger than the bound becomes several messages that together hold every row."""
    table = _obs(5000)
    messages = encode_trail_messages("observations", table, "gate", max_bytes=100_000)
    assert len(messages) > 1
    assert all(len(m.value) <= 100_000 for m in messages)
    parts = [decode_trail_message(m.value, m.headers)[1] for m in messages]
    assert pa.concat_tables(parts).equals(table)


def test_dead_letters_keep_the_head_of_the_payload_and_its_size() -> None:
    """A dead letter travels with the first 256 bytes of its payload and the full size."""
    dl = DeadLetter(
        "0190c6d8-0000-7000-8000-000000000001", T0, "raw", 1, 7, "alpha", "r", 2, "bad", b"x" * 1000
    )
    (msg,) = encode_trail_messages("dead_letters", dead_letter_table([dl]), "gate")
    kind, back = decode_trail_message(msg.value, msg.headers)
    assert kind == "dead_letters"
    row = back.to_pylist()[0]
    assert (row["value_size"], len(row["value_head"]), row["reason"]) == (1000, 256, "bad")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.pop("stampline.trail.version"), "no stampline.trail.version header"),
        (lambda h: h.update({"stampline.trail.version": b"99"}), "version '99' is not supported"),
        (lambda h: h.update({"stampline.trail.kind": b"spans"}), "unknown trail kind 'spans'"),
        (lambda h: h.update({"stampline.trail.rows": b"7"}), "header says 7 rows"),
        (lambda h: h.update({"stampline.trail.rows": b"many"}), "is not a row count: 'many'"),
        (lambda h: h.update({"stampline.trail.kind": b"dead_letters"}), "columns do not match"),
    ],
)
def test_a_bad_header_is_refused_with_a_reason(change: object, message: str) -> None:
    """A message with a missing or wrong header is refused with an error naming the problem."""
    (msg,) = encode_trail_messages("observations", _obs(3), "gate")
    head = _headers(msg.headers)
    change(head)  # type: ignore[operator]
    with pytest.raises(TrailFormatError, match=message):
        decode_trail_message(msg.value, list(head.items()))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_as_a_value_are_refused_never_crash(value: bytes) -> None:
    """Whatever bytes a trail message holds, reading it gives a table or a TrailFormatError."""
    (msg,) = encode_trail_messages("observations", _obs(1), "gate")
    with pytest.raises(TrailFormatError):
        decode_trail_message(value, msg.headers)


def _v1_message(table: pa.Table, version: int = 1) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``table`` as a sidecar of an older format ``version`` wrote it: version 1 without
    ``rule_sha256``, ``parent_stamps`` and ``broker_time_type``, version 2 without the last
    two, version 3 without ``broker_time_type``."""
    from stampline.audit._trailformat import schema_for

    schema = schema_for("observations", version)
    meta = {
        "stampline.trail.version": str(version),
        "stampline.trail.kind": "observations",
        "stampline.trail.rows": str(table.num_rows),
        "stampline.trail.source": "gate@old",
    }
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema.with_metadata(meta)) as writer:
        writer.write_table(table.select(schema.names))
    return sink.getvalue().to_pybytes(), [(k, v.encode()) for k, v in meta.items()]


def test_version_2_adds_the_rule_file_hashes_and_version_1_is_still_read() -> None:
    """Version 2's observations carry ``rule_sha256``; a version 1 message (an older
    sidecar's) still reads, its rows with no hash recorded; a version 1 message carrying the
    newer columns is refused (its columns are not version 1's)."""
    rows = [
        Observation(
            "0190c6d8-0000-7000-8000-000000000001", "gate", T0, T0 + 5, T0, T0, 1,
            outcome="dead_lettered", rule_id="qty.max", rule_version=2,
            rule_sha256=("qty.max@v2=" + "ab" * 32,),
        )
    ]  # fmt: skip
    table = canonical_table(rows)
    (msg,) = encode_trail_messages("observations", table, "gate")
    kind, back = decode_trail_message(msg.value, msg.headers)
    assert back.column("rule_sha256").to_pylist() == ["qty.max@v2=" + "ab" * 32]
    value, headers = _v1_message(table)
    kind, old = decode_trail_message(value, headers)
    assert kind == "observations"
    assert old.schema.equals(back.schema)
    assert old.column("rule_sha256").to_pylist() == [""]
    assert old.column("parent_stamps").to_pylist() == [""]
    assert old.drop_columns(["rule_sha256"]).equals(back.drop_columns(["rule_sha256"]))
    relabelled = [(k, b"1" if k == "stampline.trail.version" else v) for k, v in headers]
    with pytest.raises(TrailFormatError, match="schema of version 1"):
        decode_trail_message(msg.value, relabelled)


def test_version_3_adds_the_parent_stamps_and_version_2_is_still_read() -> None:
    """Version 3's observations carry ``parent_stamps`` (a derived event's lineage: where
    each parent last left a stage); a version 2 message still reads, with none recorded; a
    version 2 message carrying version 3's columns is refused."""
    rows = [
        Observation(
            "0190c6d8-0000-7000-8000-000000000002", "risk", T0 + 9, T0 + 20, T0 + 20, T0 + 20,
            7, parents=("0190c6d8-0000-7000-8000-00000000000a",
                        "0190c6d8-0000-7000-8000-00000000000b"),
            parent_stamps=(("gate", T0 + 3, 500), ("", 0, 0)),
        )
    ]  # fmt: skip
    table = canonical_table(rows)
    (msg,) = encode_trail_messages("observations", table, "tap")
    _, back = decode_trail_message(msg.value, msg.headers)
    assert back.column("parent_stamps").to_pylist() == [f"gate/{T0 + 3}/500,-"]
    assert "parent_stamps" in back.schema.names
    value, headers = _v1_message(table, version=2)
    kind, old = decode_trail_message(value, headers)
    assert kind == "observations"
    assert old.schema.equals(back.schema)
    assert old.column("parent_stamps").to_pylist() == [""]
    assert old.drop_columns(["parent_stamps"]).equals(back.drop_columns(["parent_stamps"]))
    relabelled = [(k, b"2" if k == "stampline.trail.version" else v) for k, v in headers]
    with pytest.raises(TrailFormatError, match="schema of version 2"):
        decode_trail_message(msg.value, relabelled)


def test_version_4_adds_the_broker_time_type_and_version_3_is_still_read() -> None:
    """Writers write version 4, whose observations carry ``broker_time_type`` (whose clock
    ``broker_time`` is); a version 3 message (a sidecar not yet upgraded) still reads, its
    rows with the type not recorded (''); a version 3 message carrying version 4's columns
    is refused."""
    assert TRAIL_FORMAT_VERSION == 4
    rows = [
        Observation(
            f"0190c6d8-0000-7000-8000-00000000000{i}", "gate", T0 + i, T0 + 20, T0, T0, 7,
            topic="md.raw", broker_time_ms=T0 // 1_000_000 + i, broker_time_type=kind,
        )
        for i, kind in enumerate(("LogAppendTime", "CreateTime", ""))
    ]  # fmt: skip
    table = canonical_table(rows)
    (msg,) = encode_trail_messages("observations", table, "gate")
    _, back = decode_trail_message(msg.value, msg.headers)
    assert back.column("broker_time_type").to_pylist() == ["LogAppendTime", "CreateTime", ""]
    assert back.schema.names[-1] == "broker_time_type"
    value, headers = _v1_message(table, version=3)
    kind, old = decode_trail_message(value, headers)
    assert kind == "observations"
    assert old.schema.equals(back.schema)
    assert old.column("broker_time_type").to_pylist() == ["", "", ""]
    assert old.column("broker_time").equals(back.column("broker_time"))
    drop = ["broker_time_type"]
    assert old.drop_columns(drop).equals(back.drop_columns(drop))
    relabelled = [(k, b"3" if k == "stampline.trail.version" else v) for k, v in headers]
    with pytest.raises(TrailFormatError, match="schema of version 3"):
        decode_trail_message(msg.value, relabelled)


def test_a_message_over_the_row_cap_is_refused_by_its_header_and_by_its_batches() -> None:
    """A message with more rows than ``max_rows`` is refused naming both counts; one whose
    header understates its rows is refused at the first record batch that passes the header."""
    (msg,) = encode_trail_messages("observations", _obs(50), "gate@h1")
    assert decode_trail_message(msg.value, msg.headers, max_rows=50)[1].num_rows == 50
    with pytest.raises(TrailFormatError, match="50 rows: more than the 49 a message may hold"):
        decode_trail_message(msg.value, msg.headers, max_rows=49)
    lying = {**_headers(msg.headers), "stampline.trail.rows": b"10"}
    with pytest.raises(TrailFormatError, match="header says 10 rows, the table holds more"):
        decode_trail_message(msg.value, lying, max_rows=49)
