"""The application shell: CLI, configuration, wiring and the demo. Imported by no component.

Every component imports this package first: it imports only the leaf, ``stampline._common``.
"""

from stampline._common import StamplineError

__version__ = "0.1.0"

__all__ = ["StamplineError", "__version__"]
