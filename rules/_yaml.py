"""YAML from people, read within limits.

A configuration or rule file is small and shallow. A hostile or broken one is not: 1.5 kB
of nested aliases ("billion laughs") expands to billions of nodes, 20,000 nested brackets
exhaust Python's recursion, a multi-gigabyte file exhausts memory. Each is refused here,
fast and with one message naming the limit, before anything walks the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20
"""Largest YAML file read, in bytes (1 MiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
MAX_ALIASES = 100
"""Most ``*alias`` references in one document."""
MAX_NODES = 100_000
"""Most values in the document once every alias is expanded."""


class YamlLimitError(yaml.MarkedYAMLError):
    """The YAML text goes past one of the limits; ``problem`` says which."""


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


def read_yaml_text(path: Path) -> str:
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
