"""Errors raised while loading rules and contracts.

RulesError
└── RuleFileError     a rule file or contract is unreadable or invalid; names file and key
"""

from __future__ import annotations


class RulesError(Exception):
    """Root of every error the rules component raises."""


class RuleFileError(RulesError):
    """A rule file or a contract it names cannot be used. The message names the file and key."""
