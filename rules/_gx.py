"""Great Expectations interop: the stateless rules as a GX 1.x expectation suite.

GX is an optional extra (``pip install 'stampline[gx]'``); every function here raises
:class:`~stampline.rules.exceptions.GxMissingError` with the install line when it is absent. GX runs
offline: its usage statistics are switched off before it is imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stampline.rules._files import CompareRule, EnumRule, NotNullRule, RangeRule, RegexRule
from stampline.rules._ruleset import RuleSet
from stampline.rules.exceptions import GxMissingError


def gx() -> Any:
    """The ``great_expectations`` module, analytics off.

    Raises:
        GxMissingError: GX is not installed.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    try:
        import great_expectations
    except ImportError as exc:
        raise GxMissingError(
            "Great Expectations is not installed: pip install 'stampline[gx]'"
        ) from exc
    return great_expectations


def quiet_context() -> Any:
    """An ephemeral GX context (nothing on disk) without progress bars."""
    context = gx().get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):  # older or newer GX: bars stay, output is the same
        pass
    return context


@dataclass(slots=True)
class GxSuite:
    """The exported suite, and the rules GX cannot express (with why)."""

    suite: Any
    rule_of: list[tuple[str, int]] = field(default_factory=list)  # per expectation
    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.suite.to_json_dict()
        out.pop("id", None)
        for expectation in out.get("expectations", []):
            expectation.pop("id", None)
        return out


_PAIR = {"<=": ("right", "left", True), "<": ("right", "left", False)}
_PAIR.update({">=": ("left", "right", True), ">": ("left", "right", False)})


def export_gx(rules: RuleSet, name: str = "stampline") -> GxSuite:
    """A GX suite with one expectation per stateless rule GX can express.

    Raises:
        GxMissingError: GX is not installed.
    """
    quiet_context()  # GX builds suites inside an active context
    gxe = gx().expectations
    out = GxSuite(gx().ExpectationSuite(name))
    for rule in rules.rules:
        spec = rule.spec
        meta = {"stampline_rule_id": rule.id, "stampline_rule_version": rule.version}
        expectation: Any = None
        if rule.stateful is not None or rule.shadow:
            why = "stateful: spans records" if rule.stateful is not None else "shadow rule"
            out.skipped.append((rule.id, rule.version, why))
            continue
        if not rule.scope.everything:
            out.skipped.append((rule.id, rule.version, "scoped to topics/providers/instruments"))
            continue
        if isinstance(spec, NotNullRule):
            expectation = gxe.ExpectColumnValuesToNotBeNull(column=spec.field, meta=meta)
        elif isinstance(spec, RangeRule):
            expectation = gxe.ExpectColumnValuesToBeBetween(
                column=spec.field,
                min_value=spec.min,
                max_value=spec.max,
                strict_min=spec.min_exclusive,
                strict_max=spec.max_exclusive,
                meta=meta,
            )
        elif isinstance(spec, EnumRule):
            expectation = gxe.ExpectColumnValuesToBeInSet(
                column=spec.field, value_set=list(spec.values), meta=meta
            )
        elif isinstance(spec, RegexRule):
            expectation = gxe.ExpectColumnValuesToMatchRegex(
                column=spec.field, regex=spec.pattern, meta=meta
            )
        elif isinstance(spec, CompareRule) and spec.op in _PAIR:
            a, b, or_equal = _PAIR[spec.op]
            expectation = gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=getattr(spec, a),
                column_B=getattr(spec, b),
                or_equal=or_equal,
                ignore_row_if="either_value_is_missing",
                meta=meta,
            )
        elif isinstance(spec, CompareRule) and spec.op == "==":
            expectation = gxe.ExpectColumnPairValuesToBeEqual(
                column_A=spec.left,
                column_B=spec.right,
                ignore_row_if="either_value_is_missing",
                meta=meta,
            )
        if expectation is None:
            out.skipped.append((rule.id, rule.version, f"no GX expectation for kind {rule.kind}"))
            continue
        out.suite.add_expectation(expectation)
        out.rule_of.append((rule.id, rule.version))
    return out


def gx_batch(exported: GxSuite, frame: Any) -> tuple[Any, Any]:
    """A GX batch over a pandas DataFrame and the exported suite, in a fresh quiet context.

    Raises:
        GxMissingError: GX is not installed.
    """
    context = quiet_context()
    batch = (
        context.data_sources.add_pandas("stampline")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    return batch, context.suites.add(exported.suite)


def gx_row_failures(exported: GxSuite, frame: Any) -> tuple[list[set[str]], Any]:
    """Run the suite over a pandas DataFrame: the rule ids each row failed, and GX's result.

    Raises:
        GxMissingError: GX is not installed.
    """
    batch, suite = gx_batch(exported, frame)
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    rows: list[set[str]] = [set() for _ in range(len(frame))]
    for outcome in result.results:
        rule_id = outcome.expectation_config.meta["stampline_rule_id"]
        for index in outcome.result.get("unexpected_index_list") or ():
            rows[int(index)].add(rule_id)
    return rows, result


def validate_frames(
    frames: Sequence[tuple[str, Any, Any]], docs_dir: str | None
) -> tuple[bool, list[dict[str, Any]], str | None]:
    """Validate each (name, DataFrame, suite) with a checkpoint; Data Docs into ``docs_dir``.

    Returns (all passed, a summary per expectation, the Data Docs index page or None).

    Raises:
        GxMissingError: GX is not installed.
    """
    g = gx()
    context = quiet_context()
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="stampline",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": docs_dir,
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    source = context.data_sources.add_pandas("trail")
    summary: list[dict[str, Any]] = []
    passed = True
    for name, frame, suite in frames:
        definition = context.validation_definitions.add(
            g.ValidationDefinition(
                name=name,
                data=source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name),
                suite=context.suites.add(suite),
            )
        )
        actions = [g.checkpoint.UpdateDataDocsAction(name="docs")] if docs_dir else []
        checkpoint = context.checkpoints.add(
            g.Checkpoint(
                name=f"{name}-checkpoint", validation_definitions=[definition], actions=actions
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        passed = passed and bool(run.success)
        for result in run.run_results.values():
            for outcome in result.results:
                config = outcome.expectation_config
                summary.append(
                    {
                        "table": name,
                        "expectation": config.type,
                        "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
                        "success": bool(outcome.success),
                        "unexpected": int(outcome.result.get("unexpected_count") or 0),
                        "rows": int(outcome.result.get("element_count") or len(frame)),
                    }
                )
    index = None
    if docs_dir is not None:
        index = context.build_data_docs(site_names=["stampline"]).get("stampline")
    return passed, summary, index
