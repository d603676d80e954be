"""Errors raised by the collectors, under
stampline's root ``StamplineError`` (the whole tree: stampline/_common/_errors.py).

CollectorError
├── StampError       stamp headers present but unreadable (a producer broke the contract)
├── DeliveryError    the broker did not accept a forwarded or dead-lettered record
└── BrokerCheckError the broker cannot give what the configuration asks (checked at start)
"""

from __future__ import annotations

from stampline._common import StamplineError


class CollectorError(StamplineError):
    """Root of every error the collectors raise."""


class StampError(CollectorError):
    """Stamp headers are present but do not follow the stamping contract."""


class DeliveryError(CollectorError):
    """The broker refused or lost a record the collector produced; offsets were not committed."""


class BrokerCheckError(CollectorError):
    """The broker cannot give what the configuration asks; found before any record is read."""
