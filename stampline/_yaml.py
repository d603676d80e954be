"""YAML with line numbers, so errors can point at the line a person must fix."""

from __future__ import annotations

from typing import Any

import yaml

from stampline.rules import load_yaml

KeyPath = tuple[str | int, ...]


def load_with_lines(text: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; return the data and the 1-based line of every key path in it.

    Raises:
        yaml.YAMLError: the text is not YAML, or goes past the limits on size, nesting and
            aliases of :func:`rules.load_yaml` (its message carries the line).
    """
    data, node = load_yaml(text)
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            _walk(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


def line_for(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor present in the file."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None
