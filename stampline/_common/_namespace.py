"""Components are importable only as ``stampline.<component>``.

The component folders sit at the repository's top level (``rules/``, ``audit/``, ...), and
``stampline/<component>`` links to each. From the repository root, Python would also find
``rules/`` as a top-level package ``rules``: a second copy of the component with its own
module state, and a name that collides with other distributions. Each component's
``__init__`` refuses that with one clear error.
"""

from __future__ import annotations


def imported_as_part_of_stampline(name: str) -> None:
    """Raise ImportError unless the module ``name`` is inside the ``stampline`` package.

    Call it with ``__name__`` first thing in a component's ``__init__``.
    """
    if not name.startswith("stampline."):
        raise ImportError(
            f"{name!r} is part of stampline: import it as 'stampline.{name}'", name=name
        )
