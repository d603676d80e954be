"""Alert definitions files are read within the limits config and rule files get (size,
nesting, aliases, expanded values): a hostile file is one clear error naming file and limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from stampline._common._yaml import MAX_ALIASES, MAX_BYTES, MAX_DEPTH
from stampline.alerting import DefinitionError, load_alerts, parse_alerts
from tests.alerting.test_definitions import GOOD
from tests.stampline.test_config_limits import HOSTILE as CONFIG_HOSTILE


def _nested(levels: int) -> str:
    """``levels`` levels of nesting: the document's mapping, then lists inside lists."""
    lists = levels - 1
    return "deep: " + "[" * lists + "]" * lists + "\n"


# (what, appended to a good file, what the message says)
HOSTILE = [
    ("aliases", CONFIG_HOSTILE["many aliases"], "more than 100 aliases"),
    ("nesting", _nested(MAX_DEPTH + 1), "nested more than 64 levels deep"),
    ("expansion", CONFIG_HOSTILE["billion laughs"], "more than 100,000 values once aliases are"),
]


def _refusal(path: Path) -> str:
    with pytest.raises(DefinitionError) as caught:
        load_alerts(path)
    (problem,) = caught.value.problems
    return problem


@pytest.mark.parametrize(("what", "text", "says"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_alerts_file_is_refused_naming_file_line_and_limit(
    tmp_path: Path, what: str, text: str, says: str
) -> None:
    """101 aliases, 65 levels or a billion laughs: one problem, ``file:line: YAML past a
    limit: ...``, before anything is built from the file."""
    path = tmp_path / "alerts.yaml"
    path.write_text(GOOD + text)
    problem = _refusal(path)
    first_added = GOOD.count("\n") + 1
    assert problem.startswith(f"{path}:"), problem
    line = int(problem.removeprefix(f"{path}:").split(":")[0])
    assert line >= first_added, problem  # the line is in the hostile part, not the good one
    assert f": YAML past a limit: {says}" in problem


def test_the_limits_end_just_past_what_is_allowed(tmp_path: Path) -> None:
    """100 aliases and 64 levels still parse (and fail only as unknown keys): the limits
    refuse only what goes past them."""
    many = "x: &x 1\ny: [" + ",".join(["*x"] * MAX_ALIASES) + "]\n"
    with pytest.raises(DefinitionError, match="y: unknown key"):
        parse_alerts(GOOD + many, "a.yaml")
    deep = _nested(MAX_DEPTH)
    with pytest.raises(DefinitionError, match="deep: unknown key"):
        parse_alerts(GOOD + deep, "a.yaml")


def test_an_oversized_alerts_file_is_refused_naming_file_and_limit(tmp_path: Path) -> None:
    """A file over 1 MiB is refused without being parsed, the message naming file and size."""
    path = tmp_path / "alerts.yaml"
    path.write_text(GOOD + "# " + "x" * MAX_BYTES + "\n")
    problem = _refusal(path)
    assert problem == f"{path}: YAML past a limit: the file is larger than 1,048,576 bytes"
