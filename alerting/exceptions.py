"""Errors raised by the alerting component, under
stampline's root ``StamplineError`` (the whole tree: stampline/_common/_errors.py).

AlertingError
├── DefinitionError      an alert definitions file is unreadable or invalid; names file:line, key
└── AlertDeliveryError   Alertmanager refused or could not be reached (raised only by calls a
                         person waits on, such as a snooze; in-stream delivery never raises)
"""

from __future__ import annotations

from stampline._common import StamplineError


class AlertingError(StamplineError):
    """Root of every error the alerting component raises."""


class DefinitionError(AlertingError):
    """An alert definitions file cannot be used. ``problems`` lists each reason, pinned to a key."""

    def __init__(self, path: object, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class AlertDeliveryError(AlertingError):
    """Alertmanager (or another sink) refused a request the caller waits on."""
