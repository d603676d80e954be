"""The store's DDL, shipped as SQL files and applied idempotently at start-up."""

from __future__ import annotations

import re
from importlib import resources

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_database_name(name: str) -> str:
    """Return ``name`` if it is a safe ClickHouse identifier, else raise ValueError.

    Raises:
        ValueError: the name would need quoting (it is interpolated into DDL).
    """
    if not _DB_NAME.match(name):
        raise ValueError(
            f"database name {name!r} must be letters, digits and underscores, "
            "not starting with a digit"
        )
    return name


def statements(database: str) -> list[str]:
    """The DDL statements for ``database``, in the order they must run."""
    check_database_name(database)
    text = resources.files("audit").joinpath("sql/001_init.sql").read_text("utf-8")
    parts = re.split(r"^;\s*$", text, flags=re.MULTILINE)
    return [p.replace("{db}", database).strip() for p in parts if _has_sql(p)]


def _has_sql(part: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in part.splitlines())
