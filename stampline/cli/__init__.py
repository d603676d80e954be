"""The ``stampline`` command: one module per command group, each registering on ``app``."""

from stampline.cli import (  # noqa: F401  (registration)
    _audit_validate,
    _broker,
    _config,
    _demo,
    _evidence,
    _gate,
    _queries,
    _replay,
    _rules,
    _store,
    _tap,
)
from stampline.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
