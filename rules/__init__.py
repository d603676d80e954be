"""Data contracts and business rules: rule files compiled into checks, one verdict per record.

Imports nothing else of stampline's.
"""

from stampline._common import format_duration, imported_as_part_of_stampline, parse_duration_ns
from stampline.rules._compat import Compatibility, check_compat
from stampline.rules._examples import ExampleOutcome, ExampleReport, run_examples
from stampline.rules._files import (
    CompareRule,
    Contract,
    DivergenceRule,
    EnumRule,
    FreshnessRule,
    NotNullRule,
    RangeRule,
    RegexRule,
    RuleFile,
    SchemaRule,
    Scope,
    SequenceRule,
    Severity,
    StaleRule,
    TickSizeRule,
    load_rule_file,
)
from stampline.rules._gx import GxSuite, export_gx, gx_row_failures, validate_frames
from stampline.rules._gx import gx as gx_module
from stampline.rules._origin import OriginUnit, origin_ns
from stampline.rules._reload import RulesHolder
from stampline.rules._ruleset import (
    BUILTIN_RULES,
    DECODE_RULE,
    NON_FINITE_RULE,
    ORIGIN_RULE,
    SIZE_RULE,
    BatchResult,
    Extraction,
    RuleSet,
    RuleStats,
)
from stampline.rules._stateful import GapEvent
from stampline.rules._verdict import Failure, Verdict
from stampline.rules.exceptions import GxMissingError, RuleFileError, RulesError

__all__ = [
    "BUILTIN_RULES",
    "DECODE_RULE",
    "NON_FINITE_RULE",
    "ORIGIN_RULE",
    "SIZE_RULE",
    "BatchResult",
    "CompareRule",
    "Compatibility",
    "Contract",
    "DivergenceRule",
    "EnumRule",
    "ExampleOutcome",
    "ExampleReport",
    "Extraction",
    "Failure",
    "FreshnessRule",
    "GapEvent",
    "GxMissingError",
    "GxSuite",
    "NotNullRule",
    "OriginUnit",
    "RangeRule",
    "RegexRule",
    "RuleFile",
    "RuleFileError",
    "RuleSet",
    "RuleStats",
    "RulesError",
    "RulesHolder",
    "SchemaRule",
    "Scope",
    "SequenceRule",
    "Severity",
    "StaleRule",
    "TickSizeRule",
    "Verdict",
    "check_compat",
    "export_gx",
    "format_duration",
    "gx_module",
    "gx_row_failures",
    "load_rule_file",
    "origin_ns",
    "parse_duration_ns",
    "run_examples",
    "validate_frames",
]

# Never as a top-level `rules` (from the repository root): see stampline/_common/_namespace.py.
imported_as_part_of_stampline(__name__)
