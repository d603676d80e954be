"""Trail rows kept as columns while a sidecar works, written as one canonical Arrow table.

A sidecar used to make one ``Observation`` per record and let the store turn the list into
Arrow; building the columns as it goes costs a fraction of that (no object per row, no
second pass), and the store writes them as they are (``write_observation_table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from audit import DeadLetter, Observation, canonical_table

CANONICAL_SCHEMA = canonical_table([]).schema  # the store's canonical columns and types

# Columns that vary per row, in canonical order; the rest are the same for every row a
# collector writes (stage, host, clock error, authority) or are filled in when absent.
_VARYING = (
    "event_id",
    "prev_stage",
    "received",
    "emitted",
    "prev_emitted",
    "origin",
    "ingested",
    "prev_clock_err_ns",
    "topic",
    "partition",
    "offset",
    "broker_time",
    "provider",
    "instrument",
    "seq",
    "price",
    "outcome",
    "rule_id",
    "rule_version",
    "parents",
)


class TrailColumns:
    """Observations of one collector stage, one Python list per column."""

    __slots__ = ("_constant", "stage", *_VARYING)

    def __init__(self, stage: str, host: str, clock_err_ns: int, authority: int) -> None:
        self.stage = stage
        self._constant = (host, clock_err_ns, authority)
        self.event_id: list[str] = []
        self.prev_stage: list[str] = []
        self.received: list[int] = []
        self.emitted: list[int] = []
        self.prev_emitted: list[int] = []
        self.origin: list[int] = []
        self.ingested: list[int] = []
        self.prev_clock_err_ns: list[int] = []
        self.topic: list[str] = []
        self.partition: list[int] = []
        self.offset: list[int] = []
        self.broker_time: list[int] = []
        self.provider: list[str] = []
        self.instrument: list[str] = []
        self.seq: list[int] = []
        self.price: list[float] = []
        self.outcome: list[str] = []
        self.rule_id: list[str] = []
        self.rule_version: list[int] = []
        self.parents: list[str] = []

    def __len__(self) -> int:
        return len(self.event_id)

    def fresh(self) -> TrailColumns:
        """An empty set of columns for the same stage."""
        host, err, authority = self._constant
        return TrailColumns(self.stage, host, err, authority)

    def table(self) -> pa.Table:
        """The rows as the store's canonical table (see ``audit.canonical_table``)."""
        n = len(self)
        host, err, authority = self._constant
        i64 = pa.int64()
        columns: dict[str, Any] = {name: getattr(self, name) for name in _VARYING}
        for name in _VARYING:
            if CANONICAL_SCHEMA.field(name).type == i64 and name != "price":
                columns[name] = pa.array(columns[name], i64)
        columns["price"] = pa.array(np.asarray(self.price, "<f8").view("<i8"), i64)
        columns["stage"] = pa.array([self.stage] * n, pa.string())
        columns["host"] = pa.array([host] * n, pa.string())
        columns["clock_err_ns"] = pa.array(np.full(n, err, np.int64))
        columns["authority"] = pa.array(np.full(n, authority, np.int64))
        return pa.table({name: columns[name] for name in CANONICAL_SCHEMA.names}).cast(
            CANONICAL_SCHEMA
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
            )
        )
    return out
