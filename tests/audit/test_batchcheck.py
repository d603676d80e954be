"""A batch holding a value the store would refuse or silently change is refused before
anything is written, so what is stored is what the ledger chained."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import pytest

from stampline.audit import (
    BatchRefusedError,
    ChdbStore,
    DeadLetter,
    Observation,
    canonical_table,
    check_batch,
    dead_letter_table,
)
from stampline.audit._store import _INSERTS


def _table(n: int = 3, **over: Any) -> pa.Table:
    now = time.time_ns()
    table = canonical_table(
        [
            Observation(str(uuid.uuid4()), "gate", now + i, now + i + 5, now - 9, now - 1, 100,
                        offset=i, outcome="forwarded")
            for i in range(n)
        ]
    )  # fmt: skip
    for name, value in over.items():
        i = table.schema.get_field_index(name)
        values = list(table.column(name).to_pylist())
        values[-1] = value  # the last row only: the reason names it
        table = table.set_column(i, name, pa.array(values, table.schema.field(name).type))
    return table


U = "0189a3f6-1c2b-7d3e-8f40-123456789abc"
BAD = {
    # silently changed by the store before: nil UUID, lower case, a wrapped integer, ...
    "event_id": "not-a-uuid",
    "event_id ": U.upper(),
    "parents": f"{U},,{U}",
    "partition": 2**31,
    "rule_version": -1,
    "authority": 256,
    "clock_err_ns": -1,  # a UInt64 column: read back as 2**64 - 1
    "prev_clock_err_ns": -(2**63),
    "parent_stamps": "gate/0012/5",
    "parent_stamps ": "/5/6",
    # refused by the store before, and retried like an outage
    "outcome": "weird",
    "broker_time_type": "logappendtime",  # an Enum8 of exactly Kafka's three names
    "parents ": "not-a-uuid",
    "parent_stamps  ": "gate/x/y",
}


@pytest.mark.parametrize("column", list(BAD))
def test_a_value_the_store_would_change_or_refuse_refuses_the_batch(
    store: ChdbStore, column: str
) -> None:
    """Each such value refuses the whole batch with a reason naming the column and row, and
    leaves the store untouched (verify stays clean)."""
    table = _table(**{column.strip(): BAD[column]})
    with pytest.raises(BatchRefusedError, match=rf"column {column.strip()}: .* at row 2"):
        store.write_batch("observations", table, chain_id="t/0", source_offset=5)
    assert store.query("SELECT count() AS n FROM {db}.observations") == [{"n": 0}]
    assert store.chain_head("t/0").seq == 0
    assert store.verify().ok


def test_values_at_the_edges_are_kept_exactly(store: ChdbStore) -> None:
    """The extreme values each column holds unchanged are written, and verify passes."""
    table = _table(partition=-(2**31), rule_version=2**32 - 1, authority=255,
                   parents=f"{U},{U}", parent_stamps=f"gate/{-(2**63)}/{2**64 - 1},-",
                   clock_err_ns=2**63 - 1, prev_clock_err_ns=0,
                   broker_time_type="LogAppendTime")  # fmt: skip
    assert check_batch("observations", table) is None
    store.write_batch("observations", table, chain_id="t/0", source_offset=1)
    assert store.verify().ok
    types = store.query(
        "SELECT toString(broker_time_type) AS t FROM {db}.observations ORDER BY offset"
    )
    assert [r["t"] for r in types] == ["", "", "LogAppendTime"]
    (last,) = store.query(
        "SELECT clock_err_ns, prev_clock_err_ns FROM {db}.observations WHERE offset = 2"
    )
    assert (int(last["clock_err_ns"]), int(last["prev_clock_err_ns"])) == (2**63 - 1, 0)


def test_a_dead_letter_twice_in_a_batch_is_refused(store: ChdbStore) -> None:
    """Two dead letters of one source position in a batch would fold into one row on merge:
    refused; warn verdicts for one record (kept elsewhere) are not repeats."""
    dl = DeadLetter(U, time.time_ns(), "md.raw", 1, 7, "p", "r", 1, "bad", b"x")
    warn = DeadLetter(U, time.time_ns(), "md.raw", 1, 8, "p", "w", 1, "odd", b"x", severity="warn")
    with pytest.raises(BatchRefusedError, match=r"md.raw\[1\]@7 appears 2 times"):
        store.write_batch("dead_letters", dead_letter_table([dl, dl]))
    store.write_batch("dead_letters", dead_letter_table([dl, warn, warn]))
    assert store.verify().ok


def test_dead_letters_are_checked_even_when_their_parts_were(store: ChdbStore) -> None:
    """``checked`` (each concatenated table was checked) spares observations a second check,
    never dead letters: one source position in two messages' tables repeats in their batch."""
    dl = DeadLetter(U, time.time_ns(), "md.raw", 1, 7, "p", "r", 1, "bad", b"x")
    part = dead_letter_table([dl])
    assert check_batch("dead_letters", part) is None
    with pytest.raises(BatchRefusedError, match=r"md.raw\[1\]@7 appears 2 times"):
        store.write_batch(
            "dead_letters", pa.concat_tables([part, part]), source_offset=3, checked=True
        )
    assert store.query("SELECT count() AS n FROM {db}.dead_letters") == [{"n": 0}]


def test_the_store_refusing_the_data_is_told_from_an_outage(store: ChdbStore) -> None:
    """An insert the store refuses for a value raises BatchRefusedError (content), not a
    plain StoreError (which the recorder retries)."""
    names, select = _INSERTS["observations"]
    bad = _table(outcome="weird")
    with pytest.raises(BatchRefusedError, match=r"the store refused the batch: .*691"):
        store._refusing(
            store._insert, "observations", names, select.format(batch=1, chain_id="'x'"), bad, None
        )


def test_rows_over_more_days_than_one_insert_may_create_are_refused_as_content(
    store: ChdbStore,
) -> None:
    """Rows whose times span 101 days pass the pre-insert check, and the store's refusal of
    them (too many partitions for one insert) is BatchRefusedError, not an outage to retry."""
    day = 86_400 * 10**9
    table = _table(101)
    first = time.time_ns() - 101 * day
    received = pa.array([first + k * day for k in range(101)], pa.int64())
    table = table.set_column(table.schema.get_field_index("received"), "received", received)
    assert check_batch("observations", table) is None
    with pytest.raises(BatchRefusedError, match=r"the store refused the batch: .*252.*partitions"):
        store.write_batch("observations", table, chain_id="t/0", source_offset=0)
    assert store.chain_head("t/0").seq == 0
