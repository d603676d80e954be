"""The store's DDL: versioned migrations shipped as SQL files, applied once each, in order.

``sql/NNN_name.sql`` is migration NNN. The store records each applied migration (version,
name, checksum of the file) in ``schema_migrations``; applying is idempotent, and a file
changed after it was applied is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from stampline.audit.exceptions import StoreError

_DB_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")  # \Z: `$` lets a trailing newline in
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
DAY_S = 86_400


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


@dataclass(frozen=True, slots=True)
class Retention:
    """How long the store keeps data before TTL removes it."""

    raw_s: int = 30 * DAY_S  # the per-event trail and dead letters
    rollups_s: int = 400 * DAY_S  # per-minute rollups

    def __post_init__(self) -> None:
        if self.raw_s < 3600 or self.rollups_s < 3600:
            raise ValueError("retention must be at least one hour")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self, database: str, retention: Retention) -> list[str]:
        parts = re.split(r"^;\s*$", self.text, flags=re.MULTILINE)
        return [
            p.replace("{db}", database)
            .replace("{raw_ttl_s}", str(retention.raw_s))
            .replace("{rollup_ttl_s}", str(retention.rollups_s))
            .strip()
            for p in parts
            if _has_sql(p)
        ]


def migrations() -> list[Migration]:
    """Every migration shipped with this version, in order."""
    folder = resources.files("stampline.audit").joinpath("sql")
    found = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def statements(database: str, retention: Retention | None = None) -> list[str]:
    """All DDL statements for ``database``, every migration in order."""
    check_database_name(database)
    return [s for m in migrations() for s in m.statements(database, retention or Retention())]


_LEDGER_DDL = """CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(version UInt32, name String, checksum String, applied DateTime64(3, 'UTC'))
ENGINE = ReplacingMergeTree ORDER BY version"""

# TTL clauses follow the configuration: re-stated at every migrate, without rewriting parts.
_TTL = [
    ("observations", "written + toIntervalSecond({raw})"),
    ("dead_letters", "written + toIntervalSecond({raw})"),
    ("warnings", "written + toIntervalSecond({raw})"),
    ("hop_latency_1m", "written + toIntervalSecond({rollups})"),
    ("provider_activity_1m", "written + toIntervalSecond({rollups})"),
    ("provider_seconds_1s", "written + toIntervalSecond({rollups})"),
]


@dataclass(frozen=True, slots=True)
class MigrationReport:
    applied: list[str]
    already: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "already_applied": self.already}


def apply_migrations(
    execute: Callable[[str], Any],
    select: Callable[[str], list[dict[str, Any]]],
    database: str,
    retention: Retention,
) -> MigrationReport:
    """Bring ``database`` to the newest schema; returns what was applied now and before.

    Raises:
        StoreError: an applied migration's file has changed since it was applied.
    """
    check_database_name(database)
    execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    execute(_LEDGER_DDL.replace("{db}", database))
    done = {
        r["version"]: r["checksum"]
        for r in select(f"SELECT version, checksum FROM {database}.schema_migrations FINAL")
    }
    applied, already = [], []
    for m in migrations():
        label = f"{m.version:03d}_{m.name}"
        if m.version in done:
            if done[m.version] != m.checksum:
                raise StoreError(
                    f"migration {label} was changed after it was applied to {database}; "
                    "ship a new migration instead of editing an applied one"
                )
            already.append(label)
            continue
        for sql in m.statements(database, retention):
            execute(sql)
        execute(
            f"INSERT INTO {database}.schema_migrations VALUES "
            f"({m.version}, '{m.name}', '{m.checksum}', now64(3))"
        )
        applied.append(label)
    for table, expr in _TTL:
        ttl = expr.format(raw=retention.raw_s, rollups=retention.rollups_s)
        execute(
            f"ALTER TABLE {database}.{table} MODIFY TTL {ttl} "
            "SETTINGS materialize_ttl_after_modify = 0"
        )
    return MigrationReport(applied, already)


def _has_sql(part: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in part.splitlines())
