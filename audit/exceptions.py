"""Errors raised by the audit store, under
stampline's root ``StamplineError`` (the whole tree: stampline/_common/_errors.py).

AuditError
├── StoreError        the store could not be opened, written or queried
│   └── BatchRefusedError  a batch holds a value the store would refuse or change
└── NotFoundError     a replay asked for an event or decision the trail does not hold
"""

from __future__ import annotations

from stampline._common import StamplineError


class AuditError(StamplineError):
    """Root of every error the audit component raises."""


class StoreError(AuditError):
    """The store could not be opened, written or queried."""


class BatchRefusedError(StoreError):
    """A batch holds a value the store would refuse or silently change: its content is at
    fault, not the store, so writing it again cannot succeed (the reason names the value)."""


class NotFoundError(AuditError):
    """The trail holds no observation of the requested event."""
