"""Trail rows kept as plain tuples while a sidecar works, written as one canonical Arrow table.

A sidecar used to make one ``Observation`` per record and let the store turn the list into
Arrow field by field; a tuple per row converted in one pass costs a fraction of that, and
the store writes the table as it is (``write_observation_table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pyarrow as pa

from stampline.audit import (
    DeadLetter,
    Observation,
    TrailRow,
    canonical_table,
    decode_parent_stamps,
)

CANONICAL_SCHEMA = canonical_table([]).schema  # the store's canonical columns and types


class TrailRows:
    """Observations as ``audit.trail_row`` tuples, in the canonical table's column order, and
    record batches of rows built elsewhere (the tap's compiled loop), kept in the order added.

    One tuple per row is the cheapest thing to make per record in Python; the columns are
    made once per write by transposing.
    """

    __slots__ = ("_batched", "batches", "rows")

    def __init__(self) -> None:
        self.rows: list[TrailRow] = []
        self.batches: list[pa.RecordBatch] = []  # each in CANONICAL_SCHEMA, before ``rows``
        self._batched = 0

    def __len__(self) -> int:
        return self._batched + len(self.rows)

    def add_batch(self, batch: pa.RecordBatch, ordered: bool = True) -> None:
        """Add rows as a record batch of the canonical columns, after every row so far;
        with ``ordered=False``, before the tuples not yet made a batch (the gate's: its rows
        carry no order, and making a few tuples a batch each time costs more than the batch)."""
        if self.rows and ordered:  # the tuples so far become a batch, so rows keep their order
            self.batches.extend(self._tuples().to_batches())
            self._batched += len(self.rows)
            self.rows.clear()
        if batch.num_rows:
            self.batches.append(batch)
            self._batched += batch.num_rows

    def clear(self) -> None:
        self.rows.clear()
        self.batches.clear()
        self._batched = 0

    def table(self) -> pa.Table:
        """The rows as the store's canonical table (see ``audit.canonical_table``)."""
        if not self.batches:
            return self._tuples()
        tail = self._tuples().to_batches() if self.rows else []
        return pa.Table.from_batches([*self.batches, *tail], schema=CANONICAL_SCHEMA)

    def _tuples(self) -> pa.Table:
        if not self.rows:
            return CANONICAL_SCHEMA.empty_table()
        # pyarrow converts the tuples in one pass as a struct array; the price goes in as a
        # float and is kept as its bits, as canonical_table stores it.
        columns = pa.array(self.rows, _ROW_TYPE).flatten()
        columns[_PRICE] = columns[_PRICE].view(pa.int64())
        return pa.Table.from_arrays(columns, schema=CANONICAL_SCHEMA)


_PRICE = CANONICAL_SCHEMA.get_field_index("price")
_ROW_TYPE = pa.struct(
    [pa.field(f.name, pa.float64()) if f.name == "price" else f for f in CANONICAL_SCHEMA]
)


class TrailSink(Protocol):
    """Where a sidecar writes its trail: the audit store, or anything with the same calls.

    A sink with ``write_observation_table`` (the store has it) is given the columns as an
    Arrow table; one with only ``write_observations`` gets ``Observation`` objects.
    """

    def write_observations(self, rows: Sequence[Observation]) -> None: ...

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None: ...


def write_table(sink: TrailSink, table: pa.Table) -> None:
    """Write a canonical table to ``sink``, as a table where it takes one."""
    if table.num_rows == 0:
        return
    write = getattr(sink, "write_observation_table", None)
    if write is not None:
        write(table)
    else:
        sink.write_observations(observations_of(table))


def observations_of(table: pa.Table) -> list[Observation]:
    """A canonical table's rows as ``Observation`` objects (for sinks that want those)."""
    out = []
    prices = table.column("price").to_numpy().view("<f8").tolist()
    for row, price in zip(table.to_pylist(), prices, strict=True):
        out.append(
            Observation(
                event_id=row["event_id"],
                stage=row["stage"],
                received_ns=row["received"],
                emitted_ns=row["emitted"],
                origin_ns=row["origin"],
                ingested_ns=row["ingested"],
                clock_err_ns=row["clock_err_ns"],
                host=row["host"],
                topic=row["topic"],
                partition=row["partition"],
                offset=row["offset"],
                broker_time_ms=row["broker_time"],
                provider=row["provider"],
                instrument=row["instrument"],
                seq=row["seq"],
                outcome=row["outcome"],
                rule_id=row["rule_id"],
                rule_version=row["rule_version"],
                parents=tuple(p for p in row["parents"].split(",") if p),
                authority=row["authority"],
                prev_stage=row["prev_stage"],
                prev_emitted_ns=row["prev_emitted"],
                prev_clock_err_ns=row["prev_clock_err_ns"],
                price=price,
                clock_source=row["clock_source"],
                warnings=tuple(w for w in row["warnings"].split(",") if w),
                rule_sha256=tuple(h for h in row["rule_sha256"].split(",") if h),
                parent_stamps=decode_parent_stamps(row["parent_stamps"]),
                broker_time_type=row["broker_time_type"],
            )
        )
    return out
