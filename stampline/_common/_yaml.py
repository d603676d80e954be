"""YAML from people, read within limits, with the line of every problem.

A configuration, rule or alert definitions file is small and shallow. A hostile or broken
one is not: 1.5 kB of nested aliases ("billion laughs") expands to billions of nodes, 20,000
nested brackets exhaust Python's recursion, a multi-gigabyte file exhausts memory. Each is
refused here, fast and with one message naming the limit, before anything walks the data.

:func:`read_yaml_file` reads a file (:func:`parse_yaml` a text) and raises every problem as
one :class:`YamlFileError` reading ``file:line: problem``, never quoting the text. A file that
loads can still be wrong: :func:`line_of` finds the line of the key a validation error names,
so those messages read ``file:line: key: problem`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stampline._common._errors import StamplineError

MAX_BYTES = 1 << 20
"""Largest YAML file read, in bytes (1 MiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_ALIASES = 100
"""Most ``*alias`` references in one document."""
MAX_NODES = 100_000
"""Most values in the document once every alias is expanded."""


class YamlLimitError(yaml.MarkedYAMLError, StamplineError):
    """The YAML text goes past one of the limits; ``problem`` says which.

    A ``yaml.YAMLError`` too, so a handler for bad YAML reports it the same way.
    """


class YamlFileError(StamplineError):
    """A YAML file cannot be read or parsed: ``problem`` says why, ``line`` where (or None).

    The message is ``path:line: problem``; a component re-raises it as its own error.
    """

    def __init__(self, path: Path | str, problem: str, line: int | None = None) -> None:
        self.path = path
        self.problem = problem
        self.line = line
        super().__init__(f"{file_line(path, line)}: {problem}")


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file as read: its text, its data, and its node tree (for :func:`line_of`)."""

    text: str
    data: Any
    node: yaml.Node | None


class _LimitedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimitError(
                    problem=f"more than {MAX_ALIASES} aliases (*name)", problem_mark=mark
                )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(
                problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_text(path: Path) -> str:
    """The text of ``path``, refusing a file larger than :data:`MAX_BYTES`.

    Raises:
        OSError: the file cannot be read.
        UnicodeDecodeError: it is not UTF-8.
        YamlLimitError: it is too large (only ``MAX_BYTES + 1`` bytes are ever read).
    """
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlLimitError(problem=f"the file is larger than {MAX_BYTES:,} bytes")
    return data.decode("utf-8")


def read_yaml_file(path: Path) -> YamlDocument:
    """Read and parse the YAML file ``path`` within the limits.

    Raises:
        YamlFileError: unreadable, not UTF-8, not YAML, or past a limit.
    """
    try:
        text = _read_text(path)
    except OSError as exc:
        raise YamlFileError(path, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise YamlFileError(path, f"not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(path, *_problem(exc)) from None
    data, node = parse_yaml(text, path)
    return YamlDocument(text, data, node)


def parse_yaml(text: str, path: Path | str) -> tuple[Any, yaml.Node | None]:
    """:func:`load_yaml`, with a problem raised as a :class:`YamlFileError` naming ``path``.

    Raises:
        YamlFileError: not YAML, or past a limit.
    """
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise YamlFileError(path, *_problem(exc)) from None


def load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """Parse one YAML document safely; return the data and its node tree (for line numbers).

    Raises:
        yaml.YAMLError: not YAML, or past a limit (:class:`YamlLimitError`); the message
            names the line.
    """
    if len(text) > MAX_BYTES:
        raise YamlLimitError(problem=f"the text is larger than {MAX_BYTES:,} characters")
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    # An alias shares its node, so the tree is a DAG: count each node's expanded size once.
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key not in sizes:
            sizes[key] = 1  # a node being counted (a cycle counts once)
            total = 1
            if isinstance(node, yaml.MappingNode):
                total += sum(size(k) + size(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                total += sum(size(item) for item in node.value)
            sizes[key] = total
            if total > MAX_NODES:
                raise YamlLimitError(
                    problem=f"more than {MAX_NODES:,} values once aliases are expanded",
                    problem_mark=node.start_mark,
                )
        return sizes[key]

    size(root)


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest part of the key path ``loc`` present under ``node``.

    A part absent from a mapping is passed over: pydantic puts union tags and validator names
    in its error paths, and a missing key is reported at the line of its parent.
    """
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _problem(exc: yaml.YAMLError) -> tuple[str, int | None]:
    """What is wrong with a YAML text, and the 1-based line where the parser stopped.

    The message says what and where (line and column) and never quotes the text: the lines
    around an error may hold a secret the parser never got to.
    """
    mark = getattr(exc, "problem_mark", None)
    what = ", ".join(
        str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part
    )
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    kind = "YAML past a limit" if isinstance(exc, YamlLimitError) else "not valid YAML"
    return f"{kind}: {what or type(exc).__name__}{where}", mark.line + 1 if mark else None


def file_line(path: Path | str, line: int | None) -> str:
    """``path:line``, or the path alone when the line is not known: how a problem is placed."""
    return f"{path}:{line}" if line else str(path)
