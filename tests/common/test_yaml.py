"""The leaf's YAML reader: a problem is ``file:line: what``, and a validation error's key path
finds its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from stampline._common import YamlFileError, line_of, load_yaml, read_yaml_file

TEXT = """\
gate:
  origin:
    field: ts
rules:
  - id: a
    range: {min: 0}
  - id: b
"""


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        ((), 1),
        (("gate", "origin", "field"), 3),
        (("gate", "origin", "unit"), 2),  # a missing key: the line of its parent's key
        (("rules", 1), 7),
        (("rules", 0, "range", "min"), 6),
        (("rules", 0, "RangeRule", "range", "min"), 6),  # a union tag is passed over
        (("rules", 5, "id"), 4),  # past the list's end: the list's key
    ],
)
def test_line_of_a_key_path(loc: tuple[str | int, ...], line: int) -> None:
    """Each key path reads the line of its deepest part present in the text."""
    _, node = load_yaml(TEXT)
    assert line_of(node, loc) == line


def test_an_empty_document_has_no_lines() -> None:
    """An empty text has no node, so no line for any path."""
    assert line_of(load_yaml("")[1], ("a",)) is None


@pytest.mark.parametrize(
    ("content", "problem", "line"),
    [
        (b"a: [1\n", "not valid YAML: while parsing a flow sequence, expected ',' or ']', "
         "but got '<stream end>' (line 2, column 1)", 2),
        (b"a: \xff\n", "not UTF-8 text (byte 3): invalid start byte", None),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_problem_naming_file_and_line(
    tmp_path: Path, content: bytes, problem: str, line: int | None
) -> None:
    """Bad YAML or bad bytes raise YamlFileError reading ``file:line: problem``."""
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    with pytest.raises(YamlFileError) as caught:
        read_yaml_file(path)
    assert (caught.value.problem, caught.value.line) == (problem, line)
    assert str(caught.value) == f"{path}{f':{line}' if line else ''}: {problem}"
