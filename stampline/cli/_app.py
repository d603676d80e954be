"""The command's root, and what every command group shares: consoles, options, errors."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer

from stampline import __version__
from stampline._redact import RedactingFormatter, scrub_data
from stampline._terminal import SafeConsole, line
from stampline.audit import AuditError, Store, check_database_name, store_holder
from stampline.config import ENV_CONFIG_FILE, ENV_PART_NAME, ConfigError, StoreConfig, load_config

app = typer.Typer(
    help="Audit streaming pipelines for latency and data quality.\n\n"
    "Start with `stampline demo`, then replay the decision it prints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# Command groups more than one module adds to; each module registers its own commands.
audit_app = typer.Typer(help="Verify and validate the audit trail.", no_args_is_help=True)
rules_app = typer.Typer(help="Work with rule files and data contracts.", no_args_is_help=True)
store_app = typer.Typer(help="Manage the audit store.", no_args_is_help=True)
providers_app = typer.Typer(help="Compare data providers.", no_args_is_help=True)
for _group, _name in [
    (audit_app, "audit"),
    (rules_app, "rules"),
    (store_app, "store"),
    (providers_app, "providers"),
]:
    app.add_typer(_group, name=_name)

# Piped output keeps whole lines: tables are for people, --json is for scripts. Both
# consoles show data as text (no markup, control codes escaped, secrets hidden).
out = SafeConsole(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = SafeConsole(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=f"Deployment YAML (default: ${ENV_CONFIG_FILE})."),
]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="chDB store folder.")]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database", help="Database in the store (default: the config's).")
]


def emit_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document on stdout (with no remembered secret in it)."""
    sys.stdout.write(orjson.dumps(scrub_data(obj), option=orjson.OPT_INDENT_2).decode() + "\n")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code`` (1: a problem, 2: a usage error)."""
    err.print(line(("error:", "bold red"), " "), message, sep="", highlight=False)
    raise typer.Exit(code)


def config_path(config: Path | None) -> Path:
    if config is not None:
        return config
    env = os.environ.get(ENV_CONFIG_FILE)
    if env:
        return Path(env)
    fail(f"no configuration: pass --config FILE or set ${ENV_CONFIG_FILE}", 2)


def open_store_for_query(
    store: Path | None,
    database: str | None,
    config: Path | None,
    *,
    follow_live: bool = True,
    create: bool = False,
) -> Store:
    """The store named by ``--store`` or the configuration. A chDB folder that a running
    recorder holds is read through the live endpoint its ``.stampline-live.json`` names,
    unless ``follow_live`` is false (verification: nothing inside the store may vouch for it),
    which refuses a held folder instead. With ``create`` a chDB folder that does not exist
    yet is created, with no schema (the caller migrates); else it is refused."""
    if database is not None:
        try:
            check_database_name(database)
        except ValueError as exc:
            fail(f"--database: {exc}", 2)
    if store is None:
        if config is None and not os.environ.get(ENV_CONFIG_FILE):
            fail("say which trail: --store PATH (a chDB folder) or --config FILE", 2)
        try:
            settings = load_config(config_path(config)).store
        except ConfigError as exc:
            fail(str(exc))
    else:
        settings = StoreConfig(path=store)
    if settings.backend == "chdb" and not settings.path.is_dir() and not create:
        fail(f"no store at {settings.path} (run `stampline demo` first, or pass the right --store)")
    from stampline.wiring import open_store

    if settings.backend == "chdb" and not follow_live:
        holder = store_holder(settings.path)
        if holder is not None:
            fail(
                f"the store at {settings.path} is open in process {holder} (a running recorder "
                "or `stampline run`?). Verification reads the folder's files itself, never "
                "through an endpoint the folder names: stop that process and verify again, "
                "or verify a copy made while it was stopped (or a filesystem snapshot)"
            )
    try:
        return open_store(settings, database, live=follow_live, migrate=not create)
    except AuditError as exc:
        message = str(exc)
        # chDB's errors append the SQL and engine trace; the first line says what failed.
        fail(message.splitlines()[0] if settings.backend == "chdb" else message)


_NOISY_LIBRARIES = ("urllib3", "clickhouse_connect")


def _version(value: bool) -> None:
    if value:
        out.print(f"stampline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what the sidecars do.")
    ] = False,
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    part = os.environ.get(ENV_PART_NAME, "")
    label = f"[{part.replace('%', '%%')}] " if part.isprintable() and 0 < len(part) <= 64 else ""
    handler.setFormatter(
        RedactingFormatter(f"%(asctime)s %(levelname)s {label}%(name)s %(message)s")
    )
    if not verbose:
        # The HTTP stack's retry warnings repeat what the one-line error then says (and
        # clickhouse-connect sets urllib3's level itself, so a level here would not hold).
        handler.addFilter(
            lambda r: r.levelno >= logging.ERROR or not r.name.startswith(_NOISY_LIBRARIES)
        )
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
