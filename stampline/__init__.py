"""The application shell: CLI, configuration, wiring and the demo. Imported by no component."""

__version__ = "0.1.0"

__all__ = ["__version__"]
