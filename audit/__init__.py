"""The system of record: observation trail, ClickHouse schema, store backends and replay.

Imports nothing else of stampline's.
"""

from audit._chdb import ChdbStore
from audit._model import AUTHORITY_STAMPER, AUTHORITY_TAP, DeadLetter, Observation, Outcome
from audit._replay import (
    EventTrail,
    Sighting,
    Stamp,
    Timeline,
    format_ns,
    normalise_id,
    replay_decision,
    replay_event,
)
from audit._schema import check_database_name
from audit.exceptions import AuditError, NotFoundError, StoreError

__all__ = [
    "AUTHORITY_STAMPER",
    "AUTHORITY_TAP",
    "AuditError",
    "ChdbStore",
    "DeadLetter",
    "EventTrail",
    "NotFoundError",
    "Observation",
    "Outcome",
    "Sighting",
    "Stamp",
    "StoreError",
    "Timeline",
    "check_database_name",
    "format_ns",
    "normalise_id",
    "replay_decision",
    "replay_event",
]
