"""Data contracts and business rules: rule files compiled into checks, one verdict per record.

Imports nothing else of stampline's.
"""

from rules._durations import parse_duration_ns
from rules._files import FreshnessRule, RangeRule, RuleFile, SchemaRule, load_rule_file
from rules._origin import OriginUnit, origin_ns
from rules._ruleset import (
    BUILTIN_RULES,
    DECODE_RULE,
    NON_FINITE_RULE,
    ORIGIN_RULE,
    SIZE_RULE,
    Extraction,
    RuleSet,
    format_duration,
)
from rules._verdict import Failure, Verdict
from rules.exceptions import RuleFileError, RulesError

__all__ = [
    "BUILTIN_RULES",
    "DECODE_RULE",
    "NON_FINITE_RULE",
    "ORIGIN_RULE",
    "SIZE_RULE",
    "Extraction",
    "Failure",
    "FreshnessRule",
    "OriginUnit",
    "RangeRule",
    "RuleFile",
    "RuleFileError",
    "RuleSet",
    "RulesError",
    "SchemaRule",
    "Verdict",
    "format_duration",
    "load_rule_file",
    "origin_ns",
    "parse_duration_ns",
]
