"""The root of stampline's exceptions: every error stampline raises on purpose is one.

Each component hangs its own tree under it (``RuleError``, ``AuditError``,
``CollectorError``, ``AlertingError``, ``DashboardError``, ...), so a caller can catch
``StamplineError`` for anything stampline refused, and let a real bug through.
"""

from __future__ import annotations


class StamplineError(Exception):
    """Something stampline refused or could not do, with a message saying what."""
