"""Errors raised by the evidence report, under
stampline's root ``StamplineError`` (the whole tree: stampline/_common/_errors.py).

EvidenceError
└── BrowserError      Chromium is missing, or did not print the PDF or the DOM it was asked for
"""

from __future__ import annotations

from stampline._common import StamplineError


class EvidenceError(StamplineError):
    """Root of every error the evidence component raises."""


class BrowserError(EvidenceError):
    """Chromium is missing or did not produce what it was asked for."""
