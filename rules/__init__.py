"""Data contracts and business rules: rule files compiled into checks, one verdict per record.

Imports nothing else of stampline's.
"""

from rules._compat import Compatibility, check_compat
from rules._durations import format_duration, parse_duration_ns
from rules._examples import ExampleOutcome, ExampleReport, run_examples
from rules._files import (
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
from rules._gx import GxSuite, export_gx, gx_row_failures, validate_frames
from rules._gx import gx as gx_module
from rules._origin import OriginUnit, origin_ns
from rules._reload import RulesHolder
from rules._ruleset import (
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
from rules._stateful import GapEvent
from rules._verdict import Failure, Verdict
from rules._yaml import YamlLimitError, load_yaml, read_yaml_text
from rules.exceptions import GxMissingError, RuleFileError, RulesError

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
    "YamlLimitError",
    "check_compat",
    "export_gx",
    "format_duration",
    "gx_module",
    "gx_row_failures",
    "load_rule_file",
    "load_yaml",
    "origin_ns",
    "parse_duration_ns",
    "read_yaml_text",
    "run_examples",
    "validate_frames",
]
