"""Errors raised while loading rules and contracts, under
stampline's root ``StamplineError`` (the whole tree: stampline/_common/_errors.py).

RulesError
├── RuleFileError     a rule file or contract is unreadable or invalid; names file and key
└── GxMissingError    a Great Expectations command without the ``gx`` extra installed
"""

from __future__ import annotations

from stampline._common import StamplineError


class RulesError(StamplineError):
    """Root of every error the rules component raises."""


class RuleFileError(RulesError):
    """A rule file or a contract it names cannot be used. The message names the file and key."""


class GxMissingError(RulesError):
    """Great Expectations is needed and not installed. The message says how to install it."""
