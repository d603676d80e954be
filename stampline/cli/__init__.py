"""The ``stampline`` command: one module per command group, each registering on ``app``."""

import logging
import sys

from stampline._terminal import line
from stampline.cli import (  # noqa: F401  (registration)
    _alerts,
    _audit_validate,
    _broker,
    _config,
    _demo,
    _demo_feed,
    _evidence,
    _gate,
    _grafana,
    _queries,
    _recorder,
    _replay,
    _rules,
    _run,
    _store,
    _tap,
)
from stampline.cli._app import app, err


def main() -> None:
    """The ``stampline`` command. An error no command anticipated still ends in one line
    (secrets hidden, the traceback logged for --verbose), never a bare traceback."""
    try:
        app()
    except Exception as exc:
        logging.getLogger("stampline").info("unexpected error", exc_info=True)
        err.print(
            line(("error:", "bold red"), f" {type(exc).__name__}: {exc}".split("\n")[0]),
            " (run with --verbose for the traceback)",
            sep="",
        )
        sys.exit(1)


__all__ = ["app", "main"]
