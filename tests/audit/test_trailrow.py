"""The trail row builder: one definition of an observation's columns, in the store's order."""

from __future__ import annotations

from typing import get_args

import pytest

from stampline.audit import TrailRow, canonical_table, trail_fields, trail_row

COLUMNS = canonical_table([]).schema


def test_each_argument_lands_in_its_own_column() -> None:
    """``trail_row`` puts each named value at its canonical column's position, for every column."""
    names = COLUMNS.names
    assert trail_row(**{name: name for name in names}) == tuple(names)


def test_the_row_type_matches_the_column_types() -> None:
    """``TrailRow`` has one element per column: str for strings, int for integers, and a float
    for the price (the table keeps its bits as an integer)."""
    expected = [float if f.name == "price" else int if f.type == "int64" else str for f in COLUMNS]
    assert list(get_args(TrailRow)) == expected


def test_trail_fields_reads_columns_by_name() -> None:
    """A getter made by ``trail_fields`` returns the named columns of a row, in the order named."""
    row = trail_row(**{name: name for name in COLUMNS.names})
    assert trail_fields("outcome")(row) == "outcome"
    assert trail_fields("provider", "received", "rule_id")(row) == (
        "provider",
        "received",
        "rule_id",
    )


def test_trail_fields_refuses_an_unknown_column_when_made() -> None:
    """Naming a column the trail lacks fails at once, naming it."""
    with pytest.raises(ValueError, match="'outcom'"):
        trail_fields("outcome", "outcom")
