"""The ``trail`` view (migration 033) for a report's events, at the cost of one sort.

The view compares, per (event, stage), every chain's best row with window functions over
every row it reads: a report over a large window spent most of its time there. Yet only an
(event, stage) that more than one chain holds can be contested, and those are few. So a
report asks once, with :func:`contested_keys`, which (event, stage)s of its events the view
finds contested -- reading only those that two or more chains hold through it; the agreement
rule stays in the view alone -- and then reads its figures with :func:`one_per_stage`, the
old ranking, leaving those keys out (:data:`UNCONTESTED`, parameters from
:func:`contested_params`).

Where chains agree, the ranked row is the view's: agreeing rows hold the same stamp, and at
the highest authority the same content (the view compares every stored column but the
bookkeeping), so only ``chain_id``, ``batch`` and ``written`` may differ, which no figure
reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def contested_keys(events: str) -> str:
    """SQL: ``event_id, stage, chains`` of each (event, stage) of the events ``events``
    selects that chains hold differently, as the ``trail`` view judges it.

    Every row of those events is read, by event id, wherever its ``received`` lies: a chain
    holding a different row of an (event, stage) is found even when that row's time puts it
    outside a report's window.
    """
    shared = (
        f"SELECT event_id, stage FROM {{db}}.observations WHERE event_id IN ({events}) "
        "GROUP BY event_id, stage HAVING uniqExact(chain_id) > 1"
    )
    return (
        "SELECT event_id, stage, chains FROM {db}.trail "
        f"WHERE (event_id, stage) IN ({shared}) AND contested"
    )


def one_per_stage(events: str) -> str:
    """SQL for a subquery: per (event, stage) of the events ``events`` selects, its row of
    the highest authority, then the latest batch, over every row of every chain (with the
    stamps under their contract names). Where chains agree, the row the view shows."""
    return f"""(SELECT *, emitted, prev_emitted, ingested, broker_time FROM {{db}}.observations
      WHERE event_id IN ({events})
      ORDER BY event_id, stage, authority DESC, batch DESC LIMIT 1 BY event_id, stage)"""


# SQL condition: the row's (event, stage) is not one of the contested (contested_params).
UNCONTESTED = (
    "(event_id, stage) NOT IN "
    "arrayZip({contested_ids:Array(UUID)}, {contested_stages:Array(String)})"
)


def contested_params(keys: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """The query parameters :data:`UNCONTESTED` reads, from rows of :func:`contested_keys`."""
    rows = list(keys)
    return {
        "contested_ids": [str(r["event_id"]) for r in rows],
        "contested_stages": [str(r["stage"]) for r in rows],
    }
