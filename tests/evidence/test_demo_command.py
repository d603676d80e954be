"""The evidence command the demo prints produces a report built from the demo's
configuration."""

from __future__ import annotations

import shlex
from pathlib import Path

import orjson
import yaml
from typer.testing import CliRunner

from stampline._feed import FeedPlan
from stampline.cli import app
from stampline.demo import Topics, alert_definitions, deployment_config, evidence_command
from tests.evidence.conftest import Lineage


def test_the_demos_evidence_command_names_its_configuration(
    lineage: Lineage, tmp_path: Path
) -> None:
    """Run as printed, the command hashes the demo's configuration and its rule files into
    the report, which then never says no configuration was given."""
    alerts = tmp_path / "demo.alerts.yaml"
    alerts.write_text(alert_definitions(FeedPlan()))
    spec = deployment_config(
        bootstrap="127.0.0.1:9092", store=lineage.store.path, database=lineage.store.database,
        topics=Topics.with_prefix(""), alerts_file=alerts, plan=FeedPlan(), group_prefix="",
    )  # fmt: skip
    config = tmp_path / "demo dir" / "stampline.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(spec))
    command = evidence_command(lineage.decision, lineage.store.path, lineage.store.database, config)
    argv = shlex.split(command)
    assert argv[:2] == ["stampline", "evidence"]
    assert argv[argv.index("--config") + 1] == str(config)
    out = tmp_path / "ev"
    argv[argv.index("--out") + 1] = str(out)
    result = CliRunner().invoke(app, [*argv[1:], "--no-pdf", "--no-verify"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads((out / "evidence.json").read_bytes())
    roles = [(i["role"], Path(i["path"]).name) for i in doc["produced"]["inputs"]]
    assert ("config", "stampline.yaml") in roles
    assert any(role == "rules" for role, _ in roles)
    assert "No configuration or rule files were given" not in (out / "report.html").read_text()
